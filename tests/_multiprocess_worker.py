"""One process of the multi-process test (tests/test_multiprocess.py).

Run as ``python _multiprocess_worker.py PORT PROCESS_ID NUM_PROCESSES`` with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``: every process joins
the coordinator on 127.0.0.1:PORT, the processes' devices form one global
mesh, and each process feeds only its own rows of the params
(``jax.make_array_from_process_local_data``), as on a TPU pod. Every case
runs ``STEPS`` donated, jitted steps (blocking on each: queuing many steps
that hold a cross-process collective can deadlock the CPU collectives),
gathers the result and, on process 0, compares it with the same run on one
local device. Process 0 prints one JSON line prefixed ``@@JSON@@``.
"""

import json
import sys

import jax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np
import optax

import optax_l1

STEPS = 20
LR = 0.05
SHAPES = {"w": (64, 48), "b": (48,)}
SPECS = {"w": P("x", None), "b": P("x")}

CASES = {
    "proximal_l1": lambda: optax_l1.proximal(optax.adam(LR),
                                             optax_l1.prox_l1(0.6)),
    # Groups are columns: the norm runs over axis 0, which is split over
    # the 8 devices of both processes, so every group crosses the process
    # boundary.
    "proximal_group_across_processes": lambda: optax_l1.proximal(
        optax.adam(LR), optax_l1.prox_group_lasso(
            2.6, axis=0, mask=lambda p: {"w": True, "b": False})),
    "chain_prune_global": lambda: optax.chain(
        optax.adam(LR), optax_l1.magnitude_prune(
            0.6, begin_step=0, end_step=10, update_every=2, power=1,
            scope="global")),
}


def data(seed):
  rng = np.random.default_rng(seed)
  params = {k: (0.1 * rng.normal(size=s)).astype(np.float32)
            for k, s in SHAPES.items()}
  grads = [{k: rng.normal(size=s).astype(np.float32)
            for k, s in SHAPES.items()} for _ in range(STEPS)]
  return params, grads


def local_rows(sharding, x):
  """This process's block of ``x`` (rows along axis 0)."""
  idx = sharding.addressable_devices_indices_map(x.shape).values()
  lo = min(i[0].start or 0 for i in idx)
  hi = max(x.shape[0] if i[0].stop is None else i[0].stop for i in idx)
  return x[lo:hi]


def run(opt, params, grads, put):
  p = put(params)
  state = opt.init(p)

  def step(p, s, g):
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s

  jstep = jax.jit(step, donate_argnums=(0, 1))
  for g in grads:
    p, state = jax.block_until_ready(jstep(p, state, put(g)))
  return p


def main(port, proc, nproc):
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
      coordinator_address=f"127.0.0.1:{port}",
      coordinator_bind_address=f"127.0.0.1:{port}",
      num_processes=nproc, process_id=proc, initialization_timeout=60)
  mesh = jax.make_mesh((jax.device_count(),), ("x",))
  shardings = {k: NamedSharding(mesh, SPECS[k]) for k in SHAPES}

  def put_global(tree):
    return {k: jax.make_array_from_process_local_data(
        shardings[k], local_rows(shardings[k], tree[k]), tree[k].shape)
            for k in tree}

  dev0 = jax.local_devices()[0]

  def put_local(tree):
    return {k: jax.device_put(v, dev0) for k, v in tree.items()}

  out = {"processes": jax.process_count(), "devices": jax.device_count(),
         "local_devices": jax.local_device_count(), "cases": {}}
  for seed, (name, make) in enumerate(CASES.items()):
    params, grads = data(seed)
    with jax.set_mesh(mesh):
      sharded = run(make(), params, grads, put_global)
      gathered = {k: np.asarray(multihost_utils.process_allgather(
          v, tiled=True)) for k, v in sharded.items()}
      spec_kept = all(sharded[k].sharding.spec == shardings[k].spec
                      for k in SHAPES)
    ref = {k: np.asarray(v) for k, v in
           run(make(), params, grads, put_local).items()}
    out["cases"][name] = {
        "max_abs_diff": max(float(np.max(np.abs(gathered[k] - ref[k])))
                            for k in SHAPES),
        "same_zeros": all(bool(np.array_equal(gathered[k] == 0, ref[k] == 0))
                          for k in SHAPES),
        "zeros": int(sum(np.count_nonzero(gathered[k] == 0) for k in SHAPES)),
        "size": int(sum(gathered[k].size for k in SHAPES)),
        "zero_columns": int(np.sum(np.all(gathered["w"] == 0, axis=0))),
        "sharding_kept": bool(spec_kept),
    }
  if proc == 0:
    print("@@JSON@@" + json.dumps(out), flush=True)
  jax.distributed.shutdown()


if __name__ == "__main__":
  main(*(int(a) for a in sys.argv[1:4]))
