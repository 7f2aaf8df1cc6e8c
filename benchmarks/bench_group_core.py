"""Where the diagonal-metric group prox spends its time, in cache.

``_group._diagonal`` (the root-find of ``optax_l1._group``) on one slab of
``2**18`` float32 entries (rows of ``--group`` entries, Adam-like steps
``lr / (|g| + 1e-8)``), run ``--slabs`` times in a ``fori_loop`` so that the
operands stay in cache and no full-size buffer is allocated: the cost of the
arithmetic alone, against single reductions of the same slab. Variants,
interleaved in a random order per round; median and min ms for the
``slabs * 2**18`` entries:

* ``full``: the prox as ``proximal`` runs it on a slab;
* ``setup (0 Newton iterations)``: the same with ``MAX_ITERS = 0`` (group
  scale, zero test, bracket, start point, final scaling);
* ``one group max`` / ``one group sum (dot with ones)``: one reduction.

  PYTHONPATH=. python benchmarks/bench_group_core.py --group 1024
"""

import argparse
import json
import os
import random
import statistics
import time

import jax
import jax.numpy as jnp

from optax_l1 import _group
from _machine import loadavg, machine_info  # benchmarks/_machine.py


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--group", type=int, default=1024)
  ap.add_argument("--slabs", type=int, default=38)
  ap.add_argument("--repeats", type=int, default=10)
  ap.add_argument("--out", default=os.path.join(
      os.path.dirname(os.path.abspath(__file__)), "results", "group_core"))
  args = ap.parse_args()
  g = args.group
  rows = _group.BLOCK_ELEMENTS // g
  z = jax.random.normal(jax.random.key(0), (rows, g)) * 0.01
  s = 1e-3 / (jnp.abs(jax.random.normal(jax.random.key(1), (rows, g))) + 1e-8)
  lam = jnp.float32(1.0)
  groups = _group._Groups.single((rows, g), (1,), True)

  def full(z, s):
    return _group._diagonal([z], [s], lam, groups)[0]

  def setup(z, s):
    old = _group.MAX_ITERS
    _group.MAX_ITERS = 0
    try:
      return _group._diagonal([z], [s], lam, groups)[0]
    finally:
      _group.MAX_ITERS = old

  variants = {
      "full": full,
      "setup (0 Newton iterations)": setup,
      "one group max": lambda z, s: groups.max([z * s]) + z * 0,
      "one group sum (dot with ones)": lambda z, s: groups.sum([z * s]) + z * 0,
  }

  def looped(fn):
    def f(z, s):
      def body(i, acc):
        return acc + fn(z + acc * 0, s)[0, 0]
      return jax.lax.fori_loop(0, args.slabs, body, jnp.float32(0))
    return jax.jit(f).lower(z, s).compile()

  command = ("PYTHONPATH=. python benchmarks/bench_group_core.py "
             f"--group {g} --slabs {args.slabs} --repeats {args.repeats}")
  info = machine_info(command)
  compiled = {name: looped(fn) for name, fn in variants.items()}
  times = {name: [] for name in compiled}
  for rep in range(args.repeats):
    names = list(compiled)
    random.Random(rep).shuffle(names)
    for name in names:
      t = time.perf_counter()
      jax.block_until_ready(compiled[name](z, s))
      times[name].append(time.perf_counter() - t)
  info["loadavg_end"] = loadavg()
  n = args.slabs * rows * g
  rows_out = [{"variant": k, "median_ms": 1e3 * statistics.median(v),
               "min_ms": 1e3 * min(v)} for k, v in times.items()]
  lines = [f"{n} entries ({args.slabs} slabs of {rows} x {g}, in cache), "
           f"{args.repeats} interleaved repeats, {info['cpu_model']}, "
           f"jax {info['jax']}", "",
           "| variant | median ms | min ms |", "|---|---:|---:|"]
  lines += [f"| {r['variant']} | {r['median_ms']:.2f} | {r['min_ms']:.2f} |"
            for r in rows_out]
  text = "\n".join(lines)
  print(text)
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out + ".md", "w") as fh:
    fh.write(f"{text}\n\nCommand: `{command}`; {info['date']}; load average "
             f"{info.get('loadavg_start')} .. {info.get('loadavg_end')}\n")
  with open(args.out + ".json", "w") as fh:
    json.dump({"entries": n, "rows": rows_out, "machine": info}, fh, indent=1)


if __name__ == "__main__":
  main()
