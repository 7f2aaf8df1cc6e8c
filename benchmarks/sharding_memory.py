"""Memory per device of one donated training step under sharding.

Builds a transformer-like parameter tree (``--layers`` blocks of a
``(d, 4d)`` and a ``(4d, d)`` MLP kernel, a ``(d, 3d)`` attention kernel and
a ``(d, d)`` output kernel, plus biases), shards every kernel along its
first axis over ``--devices`` CPU devices of an explicit-axis mesh
(``jax.make_mesh``), initializes each optimizer under ``jax.set_mesh``
(eagerly, so that every moment takes its leaf's sharding) and compiles one
donated step ``params, state <- step(params, state, grads)``. Every figure is
read from the compiled step's ``memory_analysis()`` (bytes per device):
arguments (params + optimizer state + grads) and temporaries; the
optimizer state per device is the arguments minus the params' and grads'
shards (whose sizes are exact).

Usage::

  PYTHONPATH=. python benchmarks/sharding_memory.py            # 8 devices
  PYTHONPATH=. python benchmarks/sharding_memory.py --quick    # small

Writes ``benchmarks/results/sharding_memory.{json,md}`` (``--out PREFIX``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _args(argv):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--devices", type=int, default=8)
  ap.add_argument("--layers", type=int, default=4)
  ap.add_argument("--width", type=int, default=512)
  ap.add_argument("--quick", action="store_true", help="2 layers, width 128")
  ap.add_argument("--out", default="benchmarks/results/sharding_memory")
  return ap.parse_args(argv)


def main(argv=None):
  args = _args(argv)
  if args.quick:
    args.layers, args.width = 2, 128
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_force_host_platform_device_count="
                             f"{args.devices}").strip()
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  # pylint: disable=g-import-not-at-top
  import jax
  import jax.numpy as jnp
  from jax.sharding import NamedSharding, PartitionSpec as P
  import numpy as np
  import optax

  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import _machine  # pylint: disable=import-error
  import optax_l1

  assert jax.device_count() == args.devices, jax.devices()
  mesh = jax.make_mesh((args.devices,), ("x",))
  d = args.width
  shapes = {}
  for i in range(args.layers):
    shapes[f"block{i}/qkv/kernel"] = (d, 3 * d)
    shapes[f"block{i}/out/kernel"] = (d, d)
    shapes[f"block{i}/mlp_in/kernel"] = (d, 4 * d)
    shapes[f"block{i}/mlp_in/bias"] = (4 * d,)
    shapes[f"block{i}/mlp_out/kernel"] = (4 * d, d)
  n_params = sum(int(np.prod(s)) for s in shapes.values())
  specs = {k: P("x", *([None] * (len(s) - 1))) for k, s in shapes.items()}
  kernels = lambda p: {k: k.endswith("kernel") for k in p}
  lr = 1e-3
  variants = {
      "optax.adam": lambda: optax.adam(lr),
      "proximal(adam, prox_l1)": lambda: optax_l1.proximal(
          optax.adam(lr), optax_l1.prox_l1(1e-4, mask=kernels)),
      "chain(adam, prox_l1)": lambda: optax.chain(
          optax.adam(lr), optax_l1.prox_l1(1e-4, lr, mask=kernels)),
      "proximal(adam, prox_group_lasso(axis=0))": lambda: optax_l1.proximal(
          optax.adam(lr), optax_l1.prox_group_lasso(1e-4, axis=0,
                                                    mask=kernels)),
      "optax clip + adamw": lambda: optax.chain(
          optax.clip_by_global_norm(1.0),
          optax.adamw(lr, weight_decay=0.1, mask=kernels)),
      "proximal(clip + adamw, prox_l1)": lambda: optax_l1.proximal(
          optax.chain(optax.clip_by_global_norm(1.0),
                      optax.adamw(lr, weight_decay=0.1, mask=kernels)),
          optax_l1.prox_l1(1e-4, mask=kernels)),
      "chain(adam, magnitude_prune(layer))": lambda: optax.chain(
          optax.adam(lr), optax_l1.magnitude_prune(0.5, mask=kernels)),
      "chain(adam, magnitude_prune(global))": lambda: optax.chain(
          optax.adam(lr), optax_l1.magnitude_prune(0.5, scope="global",
                                                   mask=kernels)),
      "proximal(adam, nm_prune(2, 4, axis=0))": lambda: optax_l1.proximal(
          optax.adam(lr), optax_l1.nm_prune(2, 4, axis=0, mask=kernels)),
  }
  command = "PYTHONPATH=. python benchmarks/sharding_memory.py" + (
      " " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
  info = _machine.machine_info(command)
  rows = []
  with jax.set_mesh(mesh):
    shard = {k: NamedSharding(mesh, specs[k]) for k in shapes}
    params = {k: jax.device_put(jnp.ones(s, jnp.float32), shard[k])
              for k, s in shapes.items()}
    per_device = lambda tree: sum(
        x.addressable_shards[0].data.nbytes for x in jax.tree.leaves(tree))
    params_bytes = per_device(params)
    for name, make in variants.items():
      opt = make()
      state = opt.init(params)

      def step(p, s, g, opt=opt):
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

      compiled = jax.jit(step, donate_argnums=(0, 1)).lower(
          params, state, params).compile()
      mem = compiled.memory_analysis()
      hlo = compiled.as_text()
      state_bytes = mem.argument_size_in_bytes - 2 * params_bytes
      rows.append({
          "variant": name,
          "arguments": mem.argument_size_in_bytes,
          "state": state_bytes,
          "state_per_param": state_bytes * args.devices / n_params,
          "temp": mem.temp_size_in_bytes,
          "all_gather": hlo.count("all-gather("),
          "all_reduce": hlo.count("all-reduce("),
      })
      print(f"{name:<42} state {state_bytes / 2**20:8.2f} MiB/device "
            f"({rows[-1]['state_per_param']:.2f} B/param)  temp "
            f"{mem.temp_size_in_bytes / 2**20:7.2f} MiB", flush=True)
  info["loadavg_end"] = _machine.loadavg()
  result = {"machine": info, "devices": args.devices, "layers": args.layers,
            "width": d, "n_params": n_params,
            "params_per_device_bytes": params_bytes, "rows": rows}
  os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
  with open(args.out + ".json", "w") as f:
    json.dump(result, f, indent=1)
  mib = lambda b: f"{b / 2**20:.2f}"
  lines = [
      "# Memory per device of one donated step, params sharded over "
      f"{args.devices} devices",
      "",
      f"{n_params:,} float32 parameters ({args.layers} blocks, width {d}); "
      "every kernel sharded along its first axis on an explicit-axis mesh; "
      f"params {mib(params_bytes)} MiB and grads {mib(params_bytes)} MiB per "
      "device. From `compiled.memory_analysis()` of the jitted, donated step "
      "(state = arguments - params - grads).",
      "",
      "| variant | optimizer state (MiB/device) | state bytes / param | "
      "temporaries (MiB/device) | all-gathers | all-reduces |",
      "|---|---:|---:|---:|---:|---:|",
  ]
  for r in rows:
    lines.append(f"| `{r['variant']}` | {mib(r['state'])} | "
                 f"{r['state_per_param']:.2f} | {mib(r['temp'])} | "
                 f"{r['all_gather']} | {r['all_reduce']} |")
  lines += ["", f"Command: `{command}`; {info['cpu_model']}, jax "
            f"{info['jax']}, optax {info['optax']}, {info['date']}."]
  with open(args.out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
  print(f"wrote {args.out}.json, {args.out}.md")


if __name__ == "__main__":
  main()
