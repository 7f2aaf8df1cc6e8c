"""Sharded parameters: same numbers as one device, sharding kept, no
params-sized collective.

The checks need 8 CPU devices, i.e. ``XLA_FLAGS=--xla_force_host_platform_
device_count=8`` set before jax is imported. pytest has already imported jax
for the other test files, so the checks run in subprocesses (``_CHILD``
below, one per mesh axis type: explicit, the default of ``jax.make_mesh``,
and automatic) that print JSON; the tests here assert on it.

In a child, every transformation runs 3 jitted steps (params and state
donated) on a 2-D leaf ``(64, 48)`` and a 4-D conv-like leaf
``(8, 8, 8, 16)``, sharded over 8 devices along each of their axes in turn,
and once with everything on one device (the reference).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all",
               "collective-permute")
STEPS = 3

_CHILD = textwrap.dedent(r'''
import json, re, sys
import jax, jax.numpy as jnp, numpy as np, optax
from jax.sharding import (AxisType, NamedSharding, PartitionSpec as P,
                          SingleDeviceSharding)
import optax_l1

STEPS = %(steps)d
COLLECTIVES = %(collectives)r
AXIS_TYPE = {"explicit": AxisType.Explicit, "auto": AxisType.Auto}[sys.argv[1]]
assert jax.device_count() == 8, jax.devices()
LR = 0.05
mesh = jax.make_mesh((8,), ("x",), axis_types=(AXIS_TYPE,))
dev0 = SingleDeviceSharding(jax.devices()[0])
SHAPES = {"w2": (64, 48), "w4": (8, 8, 8, 16), "b": (48,)}


def spec(ndim, axis):
  return P(*["x" if d == axis else None for d in range(ndim)])


# Each layout shards w2 along one axis and w4 along one axis (every axis of
# both appears once), b along its only axis.
LAYOUTS = {f"w2_{a2}_w4_{a4}": {"w2": spec(2, a2), "w4": spec(4, a4),
                                "b": P("x")}
           for a2, a4 in ((0, 0), (1, 1), (0, 2), (1, 3))}

only = lambda *names: (lambda p: {k: k in names for k in p})
adam = lambda: optax.adam(LR)
CASES = {
    "proximal_l1": lambda: optax_l1.proximal(adam(), optax_l1.prox_l1(0.8)),
    "chain_elastic_net": lambda: optax.chain(
        adam(), optax_l1.prox_elastic_net(0.8, 0.5, LR)),
    "proximal_l0_mcp": lambda: optax_l1.proximal(
        adam(), optax_l1.hard_threshold(0.002, mask=only("w2")),
        optax_l1.prox_mcp(0.8, 3.0, mask=only("w4", "b"))),
    # Groups over axis 0 of w2 (columns) and over (h, w, in) of w4
    # (filters): a group spans the devices whenever those axes are sharded.
    "proximal_group_filters": lambda: optax_l1.proximal(
        adam(), optax_l1.prox_group_lasso(8.0, axis=0, mask=only("w2")),
        optax_l1.prox_group_lasso(22.0, axis=(0, 1, 2), mask=only("w4"))),
    "chain_group_rows": lambda: optax.chain(
        adam(), optax_l1.prox_group_lasso(7.0, LR, axis=1, mask=only("w2")),
        optax_l1.prox_group_lasso(3.5, LR, axis=3, mask=only("w4"))),
    "proximal_sparse_group": lambda: optax_l1.proximal(
        adam(), optax_l1.prox_sparse_group_lasso(
            0.3, 5.0, axis=0, mask=only("w2")),
        optax_l1.prox_sparse_group_lasso(
            0.3, 12.0, axis=(0, 1, 2), mask=only("w4"))),
    "chain_prune_layer": lambda: optax.chain(adam(), optax_l1.magnitude_prune(
        0.6, begin_step=0, end_step=2, power=1)),
    "proximal_prune_global": lambda: optax_l1.proximal(
        adam(), optax_l1.magnitude_prune(0.6, begin_step=0, end_step=2,
                                         power=1, scope="global")),
    "chain_keep_zeros": lambda: optax.chain(adam(), optax_l1.keep_zeros()),
    "proximal_nm_axis0": lambda: optax_l1.proximal(
        adam(), optax_l1.nm_prune(2, 4, axis=0, mask=only("w2", "w4"))),
    "chain_nm_last_axis": lambda: optax.chain(
        adam(), optax_l1.nm_prune(1, 4, axis=-1)),
    "chain_scad_lq": lambda: optax.chain(
        adam(), optax_l1.prox_scad(0.8, 3.7, LR, mask=only("w2")),
        optax_l1.prox_lq(0.3, LR, mask=only("w4", "b"))),
}


def make_params(seed):
  keys = iter(jax.random.split(jax.random.key(seed), 3 * (STEPS + 1)))
  params = {k: 0.1 * jax.random.normal(next(keys), s)
            for k, s in SHAPES.items()}
  # Exact zeros in the params, so that keep_zeros and the ties of the
  # pruning tie-break have something to do.
  params = {k: jnp.where(jnp.abs(v) < 0.03, 0.0, v) for k, v in params.items()}
  grads = [{k: jax.random.normal(next(keys), s) for k, s in SHAPES.items()}
           for _ in range(STEPS)]
  # NumPy, so that every device_put makes a fresh buffer to donate.
  return jax.tree.map(np.asarray, (params, grads))


def run(opt, params, grads, shardings):
  """STEPS donated, jitted steps; returns (params, state, compiled HLO)."""
  put = lambda tree: jax.tree.map(jax.device_put, tree, shardings)
  p = put(params)
  state = opt.init(p)  # eager: every moment takes its leaf's sharding
  def step(p, s, g):
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s
  jstep = jax.jit(step, donate_argnums=(0, 1)).lower(
      p, state, put(grads[0])).compile()
  for g in grads:
    p, state = jstep(p, state, put(g))
  return p, state, jstep.as_text()


def collective_sizes(hlo):
  """Element counts of every collective's result, by kind."""
  out = {c: [] for c in COLLECTIVES}
  for line in hlo.splitlines():
    for c in COLLECTIVES:
      if re.search(r"\b%%s(-start)?\(" %% re.escape(c), line):
        lhs = line.split("=", 1)[1] if "=" in line else line
        sizes = [int(np.prod([int(d) for d in dims.split(",") if d] or [1]))
                 for dims in re.findall(r"\w+\[([\d,]*)\]", lhs.split(c)[0])]
        out[c].append(max(sizes) if sizes else 0)
  return out


def moments(state):
  out = []
  for leaf in jax.tree.leaves(
      state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState)):
    if isinstance(leaf, optax.ScaleByAdamState):
      out += [leaf.mu, leaf.nu]
  return out


results = {}
for ci, (name, make) in enumerate(CASES.items()):
  params, grads = make_params(ci)
  pr, sr, _ = run(make(), params, grads, {k: dev0 for k in SHAPES})
  for layout, specs in LAYOUTS.items():
    shard = {k: NamedSharding(mesh, specs[k]) for k in SHAPES}
    with jax.set_mesh(mesh):  # as the README says: init under the mesh
      ps, ss, hlo = run(make(), params, grads, shard)
    if True:
      res = {"max_abs_diff": {}, "same_zeros": {}, "zero_fraction": {},
             "sharding_kept": {}}
      for k in SHAPES:
        a, b = np.asarray(ps[k]), np.asarray(pr[k])
        res["max_abs_diff"][k] = float(np.max(np.abs(a - b)))
        res["same_zeros"][k] = bool(np.array_equal(a == 0, b == 0))
        res["zero_fraction"][k] = float(np.mean(b == 0))
        res["sharding_kept"][k] = bool(
            ps[k].sharding.is_equivalent_to(shard[k], ps[k].ndim))
      kept = []
      for mom in moments(ss):
        kept += [bool(mom[k].sharding.is_equivalent_to(shard[k], mom[k].ndim))
                 for k in SHAPES]
      res["state_sharding_kept"] = kept
      res["total_zeros"] = int(sum(np.count_nonzero(np.asarray(ps[k]) == 0)
                                   for k in SHAPES))
      res["total_size"] = int(sum(np.asarray(ps[k]).size for k in SHAPES))
      res["collectives"] = collective_sizes(hlo)
      res["partitioned"] = "num_partitions=8" in hlo
      results[f"{name}/{layout}"] = res
print("@@JSON@@" + json.dumps(results))
''') % {"steps": STEPS, "collectives": COLLECTIVES}


def _run_child(axis_type):
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                      " --xla_force_host_platform_device_count=8").strip()
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = os.pathsep.join(
      [REPO] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
  proc = subprocess.run([sys.executable, "-c", _CHILD, axis_type], env=env,
                        cwd=REPO, capture_output=True, text=True, timeout=600,
                        check=False)
  if proc.returncode != 0:
    return None, (f"sharding subprocess ({axis_type}) failed "
                  f"(rc={proc.returncode}):\n{proc.stdout[-3000:]}\n"
                  f"{proc.stderr[-6000:]}")
  line = [l for l in proc.stdout.splitlines() if l.startswith("@@JSON@@")]
  if not line:
    return None, proc.stdout[-3000:] + proc.stderr[-3000:]
  return json.loads(line[-1][len("@@JSON@@"):]), None


@pytest.fixture(scope="module")
def children():
  """Both axis types, run side by side (one subprocess each)."""
  with concurrent.futures.ThreadPoolExecutor(2) as pool:
    futures = {t: pool.submit(_run_child, t) for t in ("explicit", "auto")}
    out = {}
    for t, f in futures.items():
      res, err = f.result()
      if err:
        pytest.fail(err)
      out[t] = res
  return out


CASES = ("proximal_l1", "chain_elastic_net", "proximal_l0_mcp",
         "chain_scad_lq", "proximal_group_filters", "chain_group_rows", "proximal_sparse_group",
         "chain_prune_layer", "proximal_prune_global", "chain_keep_zeros",
         "proximal_nm_axis0", "chain_nm_last_axis")
LAYOUTS = ("w2_0_w4_0", "w2_1_w4_1", "w2_0_w4_2", "w2_1_w4_3")
ELEMENTWISE = ("proximal_l1", "chain_elastic_net", "proximal_l0_mcp",
               "chain_scad_lq", "chain_keep_zeros")
PRUNING = ("chain_prune_layer", "proximal_prune_global")
LEAVES = 3


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("axis_type", ["explicit", "auto"])
def test_every_transformation_on_every_axis_matches_one_device(
    children, axis_type, case, layout):
  res = children[axis_type][f"{case}/{layout}"]
  assert res["partitioned"]  # the compiled step really is partitioned
  for k, d in res["max_abs_diff"].items():
    assert d <= 1e-6, (k, d)
    assert res["same_zeros"][k], k
  assert all(res["sharding_kept"].values()), res["sharding_kept"]
  assert res["state_sharding_kept"] and all(res["state_sharding_kept"])
  # Not trivial: some, not all, of the 2-D leaf is exactly zero.
  assert 0.02 < res["zero_fraction"]["w2"] < 0.98, res["zero_fraction"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", ELEMENTWISE)
@pytest.mark.parametrize("axis_type", ["explicit", "auto"])
def test_elementwise_steps_add_no_collective(children, axis_type, case,
                                             layout):
  res = children[axis_type][f"{case}/{layout}"]
  assert not any(res["collectives"].values()), res["collectives"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", PRUNING)
@pytest.mark.parametrize("axis_type", ["explicit", "auto"])
def test_pruning_moves_no_params_sized_collective(children, axis_type, case,
                                                  layout):
  """Only per-leaf counts cross devices: every collective of the mask-update
  step has at most leaves x 64 elements (the params have 33,840)."""
  res = children[axis_type][f"{case}/{layout}"]
  sizes = res["collectives"]
  assert sizes["all-reduce"], sizes  # the counts do cross devices
  for kind, got in sizes.items():
    assert all(s <= LEAVES * 64 for s in got), (kind, got)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("axis_type", ["explicit", "auto"])
def test_global_pruning_count_is_exact_across_devices(children, axis_type,
                                                      layout):
  res = children[axis_type][f"proximal_prune_global/{layout}"]
  assert res["total_zeros"] == round(0.6 * res["total_size"])


@pytest.mark.parametrize("case, layout", [
    ("chain_group_rows", "w2_0_w4_0"), ("chain_group_rows", "w2_0_w4_2"),
    ("proximal_group_filters", "w2_1_w4_3"),
    ("proximal_sparse_group", "w2_1_w4_3")])
@pytest.mark.parametrize("axis_type", ["explicit", "auto"])
def test_group_lasso_on_local_groups_adds_no_collective(children, axis_type,
                                                        case, layout):
  """Groups that lie within one shard need nothing from other devices but,
  under proximal, the root-find's scalar "every group done" test (one value
  per iteration)."""
  res = children[axis_type][f"{case}/{layout}"]
  sizes = res["collectives"]
  assert all(s == 1 for s in sizes["all-reduce"]), sizes
  assert not any(v for k, v in sizes.items() if k != "all-reduce"), sizes


@pytest.mark.parametrize("case", ["proximal_group_filters",
                                  "proximal_sparse_group"])
@pytest.mark.parametrize("axis_type", ["explicit", "auto"])
def test_group_lasso_across_devices_sums_group_norms_only(children, axis_type,
                                                          case):
  """Groups that span devices: all-reduces of one value per group (48
  columns of w2, 16 filters of w4), never of the weights."""
  res = children[axis_type][f"{case}/w2_0_w4_0"]
  sizes = res["collectives"]
  assert sizes["all-reduce"], sizes
  assert max(sizes["all-reduce"]) <= 48, sizes
  assert not sizes["all-gather"] and not sizes["all-to-all"], sizes


@pytest.mark.parametrize("axis_type", ["explicit", "auto"])
def test_nm_blocks_within_shards_add_no_collective(children, axis_type):
  """2:4 along axis 0 of w2 (8 rows per shard: whole blocks): no
  collective. On an explicit mesh only w4, whose axis 0 has 1 row per shard,
  is regathered (on an automatic one XLA picks how to move it)."""
  res = children[axis_type]["proximal_nm_axis0/w2_0_w4_2"]
  assert not any(res["collectives"].values()), res["collectives"]
  if axis_type == "explicit":
    res = children[axis_type]["proximal_nm_axis0/w2_0_w4_0"]
    sizes = [s for got in res["collectives"].values() for s in got]
    assert sizes and all(s == 8 * 8 * 8 * 16 for s in sizes), sizes
