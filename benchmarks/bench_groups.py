"""Group-lasso step cost vs group count at a fixed total size.

Times one jitted, donated step of ``proximal(adam, prox_group_lasso(axis))``
and ``chain(adam, prox_group_lasso(axis))`` on one float32 matrix of N
parameters with ``N / g`` groups of size ``g``: rows of a ``(N / g, g)``
matrix (``--axis 1``, the default) or columns of a ``(g, N / g)`` one
(``--axis 0``), for several
``g``, interleaved with plain ``optax.adam``, and prints / saves the median ms
per step, its ratio to the same step at the largest group size and to adam.

  PYTHONPATH=. python benchmarks/bench_groups.py --n 4e6 --repeats 20
"""

import argparse
import json
import os
import random
import statistics
import time

import jax
import jax.numpy as jnp
import optax

import optax_l1
from _machine import machine_info  # benchmarks/_machine.py


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--n", type=float, default=4e6)
  ap.add_argument("--sizes", default="16,64,256,1024,4096")
  ap.add_argument("--repeats", type=int, default=20)
  ap.add_argument("--axis", type=int, choices=(0, 1), default=1,
                  help="1: groups are rows; 0: groups are columns")
  ap.add_argument("--out", default=os.path.join(
      os.path.dirname(os.path.abspath(__file__)), "results", "groups"))
  args = ap.parse_args()
  sizes = [int(s) for s in args.sizes.split(",")]
  n = int(args.n) // max(sizes) * max(sizes)
  lr, lam = 1e-3, 1.0
  variants = {
      "adam": lambda: optax.adam(lr),
      "proximal": lambda: optax_l1.proximal(
          optax.adam(lr), optax_l1.prox_group_lasso(lam, lr, axis=args.axis)),
      "chain": lambda: optax.chain(
          optax.adam(lr), optax_l1.prox_group_lasso(lam, lr, axis=args.axis)),
  }
  runs = {}
  for g in sizes:
    for name, make in variants.items():
      opt = make()
      shape = (n // g, g) if args.axis == 1 else (g, n // g)
      p = jax.random.normal(jax.random.key(0), shape) * 0.01
      grad = jax.random.normal(jax.random.key(1), shape)
      s = opt.init(p)

      def step(p, s, grad, opt=opt):
        u, s = opt.update(grad, s, p)
        return optax.apply_updates(p, u), s
      f = jax.jit(step, donate_argnums=(0, 1))
      for _ in range(2):
        p, s = f(p, s, grad)
      jax.block_until_ready(p)
      runs[(name, g)] = [f, p, s, grad, []]
  keys = list(runs)
  for rep in range(args.repeats):
    random.Random(rep).shuffle(keys)  # no fixed predecessor (see bench_step)
    for key in keys:
      r = runs[key]
      f, p, s, grad, times = r
      t = time.perf_counter()
      p, s = f(p, s, grad)
      jax.block_until_ready(p)
      times.append(time.perf_counter() - t)
      r[1], r[2] = p, s
  rows = []
  for name in variants:
    base = statistics.median(runs[(name, max(sizes))][4])
    for g in sizes:
      med = statistics.median(runs[(name, g)][4])
      adam = statistics.median(runs[("adam", g)][4])
      rows.append({"variant": name, "group_size": g, "groups": n // g,
                   "median_ms": 1e3 * med, "x_largest_groups": med / base,
                   "x_adam": med / adam})
  command = ("PYTHONPATH=. python benchmarks/bench_groups.py "
             f"--n {args.n:g} --sizes {args.sizes} --repeats {args.repeats} "
             f"--axis {args.axis}")
  info = machine_info(command)
  lines = [f"N = {n}, groups along axis {args.axis}, {args.repeats} interleaved "
           f"repeats, {info['cpu_model']}"
           f", {info['cpu_count']} cores, jax {info['jax']}", "",
           "| variant | group size | groups | median ms | x (largest groups) "
           "| x adam |", "|---|---:|---:|---:|---:|---:|"]
  lines += [f"| {r['variant']} | {r['group_size']} | {r['groups']} | "
            f"{r['median_ms']:.2f} | {r['x_largest_groups']:.2f} | "
            f"{r['x_adam']:.2f} |"
            for r in rows]
  text = "\n".join(lines)
  print(text)
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  with open(args.out + ".md", "w") as fh:
    fh.write(f"{text}\n\nCommand: `{command}`\n")
  with open(args.out + ".json", "w") as fh:
    json.dump({"n": n, "axis": args.axis, "rows": rows, "machine": info}, fh,
              indent=1)


if __name__ == "__main__":
  main()
