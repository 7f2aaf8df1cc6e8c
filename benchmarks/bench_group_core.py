"""Where the diagonal-metric group prox spends its time, outside the optimizer.

``_group._diagonal_slabs`` (the slab loop of ``optax_l1._group`` with its
root-find) on one float32 array of ``--n`` entries in rows of ``--group``
(Adam-like steps ``lr / (|g| + 1e-8)``), jitted with the array donated, so
that what is timed is the prox alone: no optimizer, no ``params + updates``
temporary. Variants, interleaved in a random order per round; median and min
ms per call:

* ``prox``: the prox as ``proximal`` runs it;
* ``setup only (0 Newton evaluations)``: the same with ``MAX_ITERS = 0``
  (zero test, start point, final scaling);
* ``one group sum per slab``: the same slab loop with one group sum and one
  division per entry, a floor for any root-find written this way;
* ``one division per entry``: ``1 / (z + s)`` on the whole array, the
  memory and division floor.

(An earlier version looped over one slab in cache; XLA hoisted the
loop-invariant work out of that loop, which made the root-find look about
2x cheaper than it is.)

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


def _one_sum(zc, s, lam, l1, axes, block):
  """The slab loop with one group sum: ``z rho / (rho + s lam)``."""
  del l1

  def core(zb, sb, dot_sums=False):
    groups = _group._Groups.single(zb.shape, axes, dot_sums)
    rho = jnp.sqrt(groups.sum([zb * zb]))
    return zb * (rho / (rho + sb * lam))
  return _group._by_slabs(core, zc, s, axes, block)


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--n", type=float, default=1e7)
  ap.add_argument("--group", type=int, default=1024)
  ap.add_argument("--repeats", type=int, default=10)
  ap.add_argument("--out", default=os.path.join(
      os.path.dirname(os.path.abspath(__file__)), "results", "group_core"))
  args = ap.parse_args()
  g = args.group
  shape = (int(args.n) // g, g)
  z = jax.random.normal(jax.random.key(0), shape) * 0.02
  s = 1e-3 / (jnp.abs(jax.random.normal(jax.random.key(1), shape)) + 1e-8)
  lam = jnp.float32(1.0)
  block = _group.BLOCK_ELEMENTS

  def compiled(fn, max_iters=_group.MAX_ITERS):
    old = _group.MAX_ITERS
    _group.MAX_ITERS = max_iters
    jax.clear_caches()  # JAX reuses traces of the root-find otherwise
    try:
      return jax.jit(fn, donate_argnums=0).lower(z, s).compile()
    finally:
      _group.MAX_ITERS = old

  prox = lambda z, s: _group._diagonal_slabs(z, s, lam, None, (1,), block)
  variants = {
      "prox": compiled(prox),
      "setup only (0 Newton evaluations)": compiled(prox, 0),
      "one group sum per slab": compiled(
          lambda z, s: _one_sum(z, s, lam, None, (1,), block)),
      "one division per entry": compiled(lambda z, s: 1 / (z + s)),
  }
  command = ("PYTHONPATH=. python benchmarks/bench_group_core.py "
             f"--n {args.n:g} --group {g} --repeats {args.repeats}")
  info = machine_info(command)
  bufs = {name: z + 0 for name in variants}
  for name, fn in variants.items():  # warm-up
    for _ in range(2):
      bufs[name] = fn(bufs[name], s)
  times = {name: [] for name in variants}
  for rep in range(args.repeats):
    names = list(variants)
    random.Random(rep).shuffle(names)
    for name in names:
      t = time.perf_counter()
      bufs[name] = jax.block_until_ready(variants[name](bufs[name], s))
      times[name].append(time.perf_counter() - t)
  info["loadavg_end"] = loadavg()
  rows_out = [{"variant": k, "median_ms": 1e3 * statistics.median(v),
               "min_ms": 1e3 * min(v)} for k, v in times.items()]
  lines = [f"{shape[0] * g} float32 entries in rows of {g}, "
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
    json.dump({"entries": shape[0] * g, "rows": rows_out, "machine": info},
              fh, indent=1)


if __name__ == "__main__":
  main()
