"""Sharded parameters: same numbers as one device, sharding kept, no collective.

The checks need 8 CPU devices, i.e. ``XLA_FLAGS=--xla_force_host_platform_
device_count=8`` set before jax is imported. pytest has already imported jax
for the other test files, so the checks run once in a subprocess
(``_CHILD`` below) that prints JSON; the tests here assert on it.

In the child, every case runs 5 jitted steps (params and state donated) twice:
with params (and grads) sharded by a ``NamedSharding`` over a
``jax.make_mesh`` mesh, and with everything on one device (the reference).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all",
               "collective-permute")
STEPS = 5

_CHILD = textwrap.dedent(r'''
import json, sys
import jax, jax.numpy as jnp, numpy as np, optax
from jax.sharding import NamedSharding, PartitionSpec as P, SingleDeviceSharding
import optax_l1

STEPS = %(steps)d
COLLECTIVES = %(collectives)r
assert jax.device_count() == 8, jax.devices()
LR = 0.05
mesh8 = jax.make_mesh((8,), ("x",))
mesh42 = jax.make_mesh((4, 2), ("x", "y"))
dev0 = SingleDeviceSharding(jax.devices()[0])


def make_params(shapes, seed):
  keys = jax.random.split(jax.random.key(seed), 2 * len(shapes) * (STEPS + 1))
  ks = iter(keys)
  params = {k: 0.1 * jax.random.normal(next(ks), s) for k, s in shapes.items()}
  grads = [{k: jax.random.normal(next(ks), s) for k, s in shapes.items()}
           for _ in range(STEPS)]
  return params, grads


def run(opt, params, grads, shardings):
  """5 donated, jitted steps; returns (params, state, step, first inputs)."""
  put = lambda tree: jax.tree.map(jax.device_put, tree, shardings)
  p = put(params)
  state = opt.init(p)
  def step(p, s, g):
    u, s = opt.update(g, s, p)
    return optax.apply_updates(p, u), s
  # Compile once (ahead of time) and run that executable: its HLO is the one
  # inspected below.
  jstep = jax.jit(step, donate_argnums=(0, 1)).lower(
      p, state, put(grads[0])).compile()
  for g in grads:
    p, state = jstep(p, state, put(g))
  return p, state, jstep.as_text()


def adam_moments(state):
  out = []
  for leaf in jax.tree.leaves(
      state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState)):
    if isinstance(leaf, optax.ScaleByAdamState):
      out += [leaf.mu, leaf.nu]
  return out


def case(name, opt, shapes, specs, mesh, seed):
  params, grads = make_params(shapes, seed)
  shard = {k: NamedSharding(mesh, specs[k]) for k in shapes}
  single = {k: dev0 for k in shapes}
  ps, ss, hlo = run(opt, params, grads, shard)
  pr, sr, _ = run(opt, params, grads, single)
  out = {"params": {}, "ref": {}, "param_sharding_kept": {},
         "param_spec": {}, "input_spec": {}}
  for k in shapes:
    out["params"][k] = np.asarray(ps[k]).tolist()
    out["ref"][k] = np.asarray(pr[k]).tolist()
    out["param_sharding_kept"][k] = bool(
        ps[k].sharding.is_equivalent_to(shard[k], ps[k].ndim))
    out["param_spec"][k] = str(getattr(ps[k].sharding, "spec", None))
    out["input_spec"][k] = str(specs[k])
  # Adam's moments are dicts like params: each must keep its leaf's sharding.
  kept, diffs = [], []
  for mom_s, mom_r in zip(adam_moments(ss), adam_moments(sr)):
    for k in shapes:
      kept.append(bool(mom_s[k].sharding.is_equivalent_to(shard[k],
                                                          mom_s[k].ndim)))
      diffs.append(float(np.max(np.abs(np.asarray(mom_s[k])
                                       - np.asarray(mom_r[k])))))
  out["state_sharding_kept"] = kept
  out["state_max_abs_diff"] = max(diffs) if diffs else None
  out["n_moments"] = len(kept)
  out["collectives"] = {c: hlo.count(c) for c in COLLECTIVES}
  out["num_partitions"] = "num_partitions=8" in hlo
  return name, out


results = {}
mat = {"w": (64, 48), "b": (64,)}
mat_spec = {"w": P("x", None), "b": P("x")}
l1 = lambda: optax_l1.prox_l1(0.6, LR)
for name, opt, shapes, specs, mesh in [
    ("chain_l1", optax.chain(optax.adam(LR), l1()), mat, mat_spec, mesh8),
    ("proximal_l1", optax_l1.proximal(optax.adam(LR), l1()), mat, mat_spec,
     mesh8),
    ("proximal_l1_mesh42", optax_l1.proximal(optax.adam(LR), l1()),
     {"w": (16, 32), "b": (16,)}, {"w": P("x", "y"), "b": P("x")}, mesh42),
    # Groups are columns (norm over axis 0), and axis 0 is the sharded one:
    # every group spans the 8 devices.
    ("proximal_group_axis0_sharded",
     optax_l1.proximal(optax.adam(LR),
                       optax_l1.prox_group_lasso(5.8, LR, axis=0)),
     {"w": (64, 48)}, {"w": P("x", None)}, mesh8),
    # Groups are rows (norm over axis 1); rows are split across devices but
    # each row lives on one device.
    ("proximal_group_axis1_local",
     optax_l1.proximal(optax.adam(LR),
                       optax_l1.prox_group_lasso(4.8, LR, axis=1)),
     {"w": (64, 48)}, {"w": P("x", None)}, mesh8),
    # Global magnitude pruning ranks across leaves and devices: 0.6 of all
    # 64*48 + 64 weights are zero after the last of 5 mask updates.
    ("chain_prune_global",
     optax.chain(optax.adam(LR), optax_l1.magnitude_prune(
         0.6, begin_step=0, end_step=4, update_every=1, power=1,
         scope="global")),
     mat, mat_spec, mesh8),
]:
  k, v = case(name, opt, shapes, specs, mesh, seed=len(results))
  results[k] = v
print("@@JSON@@" + json.dumps(results))
''') % {"steps": STEPS, "collectives": COLLECTIVES}


@pytest.fixture(scope="module")
def child():
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                      " --xla_force_host_platform_device_count=8").strip()
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONPATH"] = os.pathsep.join(
      [REPO] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
  proc = subprocess.run([sys.executable, "-c", _CHILD], env=env, cwd=REPO,
                        capture_output=True, text=True, timeout=300,
                        check=False)
  if proc.returncode != 0:
    pytest.fail(f"sharding subprocess failed (rc={proc.returncode}):\n"
                f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
  line = [l for l in proc.stdout.splitlines() if l.startswith("@@JSON@@")]
  assert line, proc.stdout[-3000:] + proc.stderr[-3000:]
  return json.loads(line[-1][len("@@JSON@@"):])


ALL = ("chain_l1", "proximal_l1", "proximal_l1_mesh42",
       "proximal_group_axis0_sharded", "proximal_group_axis1_local",
       "chain_prune_global")
ELEMENTWISE = ("chain_l1", "proximal_l1", "proximal_l1_mesh42")


def _assert_same_as_single_device(res):
  for k, ref in res["ref"].items():
    ref = np.asarray(ref, np.float32)
    got = np.asarray(res["params"][k], np.float32)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6, err_msg=k)
    np.testing.assert_array_equal(got == 0, ref == 0, err_msg=k)


def _zero_fraction(res):
  ref = np.concatenate([np.ravel(np.asarray(v)) for v in res["ref"].values()])
  return float(np.mean(ref == 0))


@pytest.mark.parametrize("name", ALL)
def test_sharded_steps_match_single_device(child, name):
  res = child[name]
  assert res["num_partitions"]  # the compiled step really is partitioned
  _assert_same_as_single_device(res)
  # The problem is not trivial: some, not all, weights are exactly zero.
  assert 0.05 < _zero_fraction(res) < 0.95, _zero_fraction(res)
  # Adam's moments agree too.
  assert res["state_max_abs_diff"] <= 1e-6


@pytest.mark.parametrize("name", ALL)
def test_params_and_state_keep_their_sharding(child, name):
  res = child[name]
  _assert_same_as_single_device(res)
  for k, kept in res["param_sharding_kept"].items():
    assert kept, (k, res["param_spec"][k], res["input_spec"][k])
  assert res["n_moments"] == 2 * len(res["params"])  # mu and nu per leaf
  assert all(res["state_sharding_kept"]), res["state_sharding_kept"]


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_prox_adds_no_collective(child, name):
  res = child[name]
  _assert_same_as_single_device(res)
  assert not any(res["collectives"].values()), res["collectives"]


def test_group_lasso_on_local_groups_adds_no_collective(child):
  res = child["proximal_group_axis1_local"]
  _assert_same_as_single_device(res)
  assert not any(res["collectives"].values()), res["collectives"]


def test_group_lasso_across_devices_reduces_and_is_correct(child):
  """Groups that span devices need a cross-device sum; the result is exact."""
  res = child["proximal_group_axis0_sharded"]
  _assert_same_as_single_device(res)
  assert sum(res["collectives"].values()) > 0, res["collectives"]
  # Whole columns are zero, identically on both runs.
  w = np.asarray(res["params"]["w"])
  ref = np.asarray(res["ref"]["w"])
  zero_cols = np.all(ref == 0, axis=0)
  assert 0 < zero_cols.sum() < ref.shape[1], zero_cols.sum()
  np.testing.assert_array_equal(np.all(w == 0, axis=0), zero_cols)
  # A column is either entirely zero or has no zero at all.
  assert np.all(np.any(ref == 0, axis=0) == zero_cols)


def test_global_magnitude_pruning_across_devices_is_exact(child):
  """Exactly round(0.6 * total) zeros over both leaves, same as one device."""
  res = child["chain_prune_global"]
  _assert_same_as_single_device(res)
  flat = np.concatenate([np.ravel(np.asarray(v)) for v in
                         res["params"].values()])
  assert np.count_nonzero(flat == 0) == round(0.6 * flat.size)
