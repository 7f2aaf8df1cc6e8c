"""Tests for masks by path, surviving groups, MLP compaction, sparse export
and checkpointing of the optimizer states.

References are independent: hand-written expected sets, dense NumPy
matmuls in float64 for compaction and BCOO, bit patterns for the file format,
and uninterrupted training runs for checkpoint resumption.
"""

import os

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest
from flax import nnx

from optax_l1 import _export
from optax_l1._export import compact_mlp
from optax_l1._export import leaf_path
from optax_l1._export import load_sparse
from optax_l1._export import mask_by_path
from optax_l1._export import mask_by_predicate
from optax_l1._export import save_sparse
from optax_l1._export import surviving
from optax_l1._export import surviving_filters
from optax_l1._export import surviving_inputs
from optax_l1._export import surviving_units
from optax_l1._export import to_bcoo
from optax_l1._proximal import proximal
from optax_l1._transforms import prox_group_lasso
from optax_l1._transforms import prox_l1


def linen_like_params():
  return {"params": {
      "Dense_0": {"kernel": jnp.ones((3, 4)), "bias": jnp.ones(4)},
      "LayerNorm_0": {"scale": jnp.ones(4), "bias": jnp.zeros(4)},
      "Dense_1": {"kernel": jnp.ones((4, 2)), "bias": jnp.ones(2)},
  }}


class NnxMLP(nnx.Module):

  def __init__(self, rngs):
    self.hidden = nnx.Linear(3, 4, rngs=rngs)
    self.norm = nnx.LayerNorm(4, rngs=rngs)
    self.out = nnx.Linear(4, 2, rngs=rngs)

  def __call__(self, x):
    return self.out(nnx.relu(self.norm(self.hidden(x))))


def nnx_params():
  _, params, _ = nnx.split(NnxMLP(nnx.Rngs(0)), nnx.Param, ...)
  return params


def selected_paths(params, mask):
  m = mask(params)
  return sorted(leaf_path(p) for (p, _), b in zip(
      jax.tree_util.tree_flatten_with_path(params)[0], jax.tree.leaves(m))
                if b)


# ---------------------------------------------------------------------------
# Masks.
# ---------------------------------------------------------------------------


def test_mask_by_path_dict_selects_kernels_only():
  params = linen_like_params()
  assert selected_paths(params, mask_by_path("kernel")) == [
      "params/Dense_0/kernel", "params/Dense_1/kernel"]
  assert selected_paths(params, mask_by_path(r"^params/Dense_0/")) == [
      "params/Dense_0/bias", "params/Dense_0/kernel"]
  assert selected_paths(params, mask_by_path("Dense_1/kernel", "scale")) == [
      "params/Dense_1/kernel", "params/LayerNorm_0/scale"]
  assert selected_paths(params, mask_by_path("nothing")) == []
  # The mask is a pytree of Python bools with params' structure.
  m = mask_by_path("kernel")(params)
  assert jax.tree.structure(m) == jax.tree.structure(params)
  assert all(type(b) is bool for b in jax.tree.leaves(m))


def test_mask_by_path_lists_and_none_leaves():
  params = {"layers": [{"kernel": jnp.ones((2, 2)), "bias": None},
                       {"kernel": jnp.ones((2, 1)), "bias": jnp.ones(1)}]}
  m = mask_by_path(r"^layers/1/")(params)
  assert m == {"layers": [{"kernel": False, "bias": False},
                          {"kernel": True, "bias": True}]}


def test_mask_by_path_nnx_state_drops_value_suffix():
  params = nnx_params()
  paths = sorted(leaf_path(p) for p, _ in
                 jax.tree_util.tree_flatten_with_path(params)[0])
  assert paths == ["hidden/bias", "hidden/kernel", "norm/bias", "norm/scale",
                   "out/bias", "out/kernel"]
  assert selected_paths(params, mask_by_path("kernel")) == [
      "hidden/kernel", "out/kernel"]
  # Anchored patterns work because the Variable's `.value` is not in the path.
  assert selected_paths(params, mask_by_path(r"^hidden/kernel$")) == [
      "hidden/kernel"]


def test_mask_by_path_on_nnx_state_in_proximal_adam():
  """Only kernels are thresholded; biases and norms take the plain Adam step."""
  params = nnx_params()
  grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), params)
  lr = 0.1

  def step(opt):
    state = opt.init(params)
    updates, _ = jax.jit(opt.update)(grads, state, params)
    return optax.apply_updates(params, updates)

  plain = step(optax.adam(lr))
  # lam huge: every masked (kernel) weight is thresholded to exactly 0.
  sparse = step(proximal(optax.adam(lr),
                         prox_l1(1e6, lr, mask=mask_by_path("kernel"))))
  assert isinstance(sparse, nnx.State)
  for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(sparse)[0],
                          jax.tree.leaves(plain)):
    if leaf_path(path).endswith("kernel"):
      assert np.all(np.asarray(a) == 0.0), leaf_path(path)
    else:
      np.testing.assert_array_equal(a, b, err_msg=leaf_path(path))


def test_mask_by_path_works_with_optax_masked():
  params = linen_like_params()
  opt = optax.masked(optax.set_to_zero(), mask_by_path("bias"))
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = opt.update(grads, opt.init(params), params)
  for path, u in jax.tree_util.tree_flatten_with_path(updates)[0]:
    expected = 0.0 if leaf_path(path).endswith("bias") else 1.0
    assert np.all(np.asarray(u) == expected), leaf_path(path)


def test_mask_by_predicate():
  params = linen_like_params()
  big = mask_by_predicate(lambda path, x: x.ndim == 2 and x.shape[0] > 3)
  assert selected_paths(params, big) == ["params/Dense_1/kernel"]
  by_path = mask_by_predicate(lambda path, x: path.startswith("params/Layer"))
  assert selected_paths(params, by_path) == ["params/LayerNorm_0/bias",
                                             "params/LayerNorm_0/scale"]
  # On an nnx.State the predicate sees the array and the short path.
  seen = []
  mask_by_predicate(lambda path, x: seen.append((path, x.shape)) or True)(
      nnx_params())
  assert ("hidden/kernel", (3, 4)) in seen


def test_mask_errors():
  with pytest.raises(ValueError, match="at least one pattern"):
    mask_by_path()
  with pytest.raises(TypeError, match="strings"):
    mask_by_path(1)
  with pytest.raises(TypeError, match="callable"):
    mask_by_predicate("kernel")
  with pytest.raises(TypeError, match="must return a bool"):
    mask_by_predicate(lambda path, x: x)({"a": jnp.ones(2)})


# ---------------------------------------------------------------------------
# Surviving groups.
# ---------------------------------------------------------------------------


def test_surviving_inputs_units_filters():
  w = np.zeros((5, 4), np.float32)
  w[1, 2] = 1.0
  w[3, 0] = -2.0
  w[3, 2] = 1e-30
  np.testing.assert_array_equal(surviving_inputs(w), [1, 3])
  np.testing.assert_array_equal(surviving_units(w), [0, 2])
  np.testing.assert_array_equal(surviving_inputs(jnp.asarray(w)), [1, 3])
  k = np.zeros((3, 3, 2, 6), np.float32)
  k[0, 2, 1, 4] = 0.5
  k[1, 1, 0, 1] = -0.1
  np.testing.assert_array_equal(surviving_filters(k), [1, 4])
  np.testing.assert_array_equal(surviving(k, axis=(0, 1, 2)), [1, 4])
  assert surviving_inputs(w).dtype.kind == "i"


def test_surviving_general_axes_and_nan():
  w = np.zeros((2, 3, 4))
  w[1, 0, 2] = 1.0
  # Groups over axis 2: the remaining (2, 3) grid gives argwhere indices.
  np.testing.assert_array_equal(surviving(w, axis=2), [[1, 0]])
  np.testing.assert_array_equal(surviving(w, axis=-1), [[1, 0]])
  v = np.zeros((3, 2))
  v[2, 1] = np.nan  # a NaN group is not "removed"
  np.testing.assert_array_equal(surviving_inputs(v), [2])
  with pytest.raises(ValueError, match="2-D"):
    surviving_inputs(np.zeros((2, 2, 2)))
  with pytest.raises(ValueError, match="rank >= 2"):
    surviving_filters(np.zeros(3))


def test_surviving_after_group_lasso_training():
  """Rows zeroed by prox_group_lasso are exactly the ones not reported."""
  kernel = jnp.asarray(np.random.default_rng(0).normal(size=(6, 3)),
                       jnp.float32) * jnp.array([[3.0], [0.1], [2.0], [0.1],
                                                 [0.1], [4.0]])
  opt = optax.chain(optax.sgd(1.0), prox_group_lasso(1.0, 1.0, axis=1))
  updates, _ = opt.update(jnp.zeros_like(kernel), opt.init(kernel), kernel)
  new = optax.apply_updates(kernel, updates)
  norms = np.linalg.norm(np.asarray(kernel, np.float64), axis=1)
  np.testing.assert_array_equal(surviving_inputs(new),
                                np.flatnonzero(norms > 1.0))


# ---------------------------------------------------------------------------
# compact_mlp.
# ---------------------------------------------------------------------------


def np_mlp(layers, x, act):
  h = np.asarray(x, np.float64)
  for i, (w, b) in enumerate(layers):
    h = h @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
    if i < len(layers) - 1:
      h = act(h)
  return h


def sparse_mlp(seed=0):
  """A 10-8-6-3 MLP with dead inputs, constant units, unused units and a
  cascade (a unit that only feeds a unit that is itself removed)."""
  rng = np.random.default_rng(seed)
  sizes = [10, 8, 6, 3]
  ws = [rng.normal(size=(a, b)).astype(np.float32)
        for a, b in zip(sizes[:-1], sizes[1:])]
  bs = [rng.normal(size=b).astype(np.float32) for b in sizes[1:]]
  ws[0][[2, 7], :] = 0.0          # inputs 2 and 7 unused
  ws[0][:, 3] = 0.0               # hidden1 unit 3: constant act(b)
  bs[0][3] = 1.5                  # ... and nonzero after relu: must fold
  ws[1][5, :] = 0.0               # hidden1 unit 5 feeds nothing
  ws[1][:, 4] = 0.0               # hidden2 unit 4: constant
  bs[1][4] = -0.7                 # ... relu(-0.7) = 0, tanh(-0.7) != 0
  ws[2][1, :] = 0.0               # hidden2 unit 1 feeds nothing, so ...
  ws[1][6 % 8, :] = 0.0           # (hidden1 unit 6 also feeds nothing)
  ws[1][0, :] = 0.0
  ws[1][0, 1] = 2.0               # hidden1 unit 0 only feeds hidden2 unit 1
  ws[0][:, 0] = 0.0
  ws[0][9, :] = 0.0
  ws[0][9, 0] = 1.0               # ... and is the only reader of input 9
  return list(zip(ws, bs))


ACTIVATIONS = {  # (the model's JAX activation, a float64 NumPy reference)
    "relu": (jax.nn.relu, lambda h: np.maximum(h, 0.0)),
    "tanh": (jnp.tanh, np.tanh),
    "gelu": (jax.nn.gelu, lambda h: 0.5 * h * (1 + np.tanh(
        np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))),
}


@pytest.mark.parametrize("act_name", sorted(ACTIVATIONS))
def test_compact_mlp_same_outputs_fewer_units(act_name):
  layers = sparse_mlp()
  jax_act, np_act = ACTIVATIONS[act_name]
  small = compact_mlp(layers, jax_act)
  # Independent expectations, worked out by hand from sparse_mlp's comments:
  np.testing.assert_array_equal(small.inputs, [0, 1, 3, 4, 5, 6, 8])
  np.testing.assert_array_equal(small.units[0], [1, 2, 4, 7])
  np.testing.assert_array_equal(small.units[1], [0, 2, 3, 5])
  assert [w.shape for w, _ in small.layers] == [(7, 4), (4, 4), (4, 3)]
  assert all(w.dtype == np.float32 and b.dtype == np.float32
             for w, b in small.layers)
  x = np.random.default_rng(1).normal(size=(256, 10)).astype(np.float32)
  want = np_mlp(layers, x, np_act)
  got = np_mlp(small.layers, x[:, small.inputs], np_act)
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)


def test_compact_mlp_folds_constant_units_exactly():
  w0 = np.array([[1.0, 0.0], [2.0, 0.0]], np.float32)
  b0 = np.array([0.0, 3.0], np.float32)
  w1 = np.array([[1.0], [-2.0]], np.float32)
  b1 = np.array([0.25], np.float32)
  small = compact_mlp([(w0, b0), (w1, b1)], jax.nn.relu)
  np.testing.assert_array_equal(small.units[0], [0])
  np.testing.assert_array_equal(small.layers[1][1], [0.25 - 6.0])


def test_compact_mlp_dense_network_unchanged_and_single_layer():
  rng = np.random.default_rng(0)
  layers = [(rng.normal(size=(4, 5)), rng.normal(size=5)),
            (rng.normal(size=(5, 2)), rng.normal(size=2))]
  small = compact_mlp(layers)
  for (w, b), (w2, b2) in zip(layers, small.layers):
    np.testing.assert_array_equal(w, w2)
    np.testing.assert_array_equal(b, b2)
  w = np.array([[1.0, 2.0], [0.0, 0.0], [0.0, 3.0]])
  one = compact_mlp([(w, np.zeros(2))])
  np.testing.assert_array_equal(one.inputs, [0, 2])
  assert one.units == []


def test_compact_mlp_all_dead():
  w0 = np.zeros((3, 4), np.float32)
  b0 = np.ones(4, np.float32)
  w1 = np.ones((4, 2), np.float32)
  b1 = np.zeros(2, np.float32)
  small = compact_mlp([(w0, b0), (w1, b1)], jax.nn.relu)
  assert small.inputs.size == 0 and small.units[0].size == 0
  np.testing.assert_array_equal(small.layers[1][1], [4.0, 4.0])
  out = np_mlp(small.layers, np.zeros((5, 0)), lambda h: np.maximum(h, 0))
  np.testing.assert_array_equal(out, np.full((5, 2), 4.0))


def test_compact_mlp_errors():
  with pytest.raises(ValueError, match="at least one"):
    compact_mlp([])
  with pytest.raises(ValueError, match="expected"):
    compact_mlp([(np.zeros((2, 3)), np.zeros(2))])
  with pytest.raises(ValueError, match="takes 4 inputs"):
    compact_mlp([(np.zeros((2, 3)), np.zeros(3)),
                 (np.zeros((4, 1)), np.zeros(1))])
  with pytest.raises(TypeError, match="pair"):
    compact_mlp([np.zeros((2, 3))])


# ---------------------------------------------------------------------------
# BCOO and the sparse file format.
# ---------------------------------------------------------------------------


def sparse_matrix(shape, density, seed=0, dtype=np.float32):
  rng = np.random.default_rng(seed)
  w = rng.normal(size=shape).astype(dtype)
  w[rng.random(shape) >= density] = 0
  return w


def test_to_bcoo_matmul_equals_dense():
  from jax.experimental import sparse  # pylint: disable=g-import-not-at-top
  w = sparse_matrix((64, 32), 0.1)
  params = {"Dense_0": {"kernel": jnp.asarray(w), "bias": jnp.ones(32)}}
  sp = to_bcoo(params)
  assert isinstance(sp["Dense_0"]["kernel"], sparse.BCOO)
  assert not isinstance(sp["Dense_0"]["bias"], sparse.BCOO)  # 1-D: default off
  assert sp["Dense_0"]["kernel"].nse == np.count_nonzero(w)
  x = np.random.default_rng(1).normal(size=(32, 5)).astype(np.float32)
  got = sp["Dense_0"]["kernel"] @ jnp.asarray(x)
  assert isinstance(got, jax.Array)
  np.testing.assert_allclose(np.asarray(got), w.astype(np.float64) @ x,
                             rtol=1e-5, atol=1e-5)
  # The layer's own orientation: inputs (batch, in) @ kernel (in, out).
  xt = np.random.default_rng(2).normal(size=(7, 64)).astype(np.float32)
  np.testing.assert_allclose(
      np.asarray(jnp.asarray(xt) @ sp["Dense_0"]["kernel"]),
      xt.astype(np.float64) @ w, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(sp["Dense_0"]["kernel"].todense(), w)


def test_to_bcoo_mask_and_nnx_state():
  from jax.experimental import sparse  # pylint: disable=g-import-not-at-top
  params = nnx_params()
  sp = to_bcoo(params, mask=mask_by_path(r"^out/kernel$"))
  assert isinstance(sp["out"]["kernel"][...], sparse.BCOO)
  assert not isinstance(sp["hidden"]["kernel"][...], sparse.BCOO)
  np.testing.assert_array_equal(sp["out"]["kernel"][...].todense(),
                                params["out"]["kernel"][...])


def test_save_load_round_trip_bit_exact(tmp_path):
  w = sparse_matrix((50, 40), 0.05)
  w[0, 0] = -0.0           # a sign bit that == 0 would lose
  w[0, 1] = np.nan
  w[0, 2] = np.inf
  bf = sparse_matrix((16, 16), 0.2).astype(ml_dtypes.bfloat16)
  params = {
      "a": {"kernel": w, "bias": np.arange(3, dtype=np.float32)},
      "layers": [{"w": sparse_matrix((8, 8), 0.5, dtype=np.float64)},
                 {"w": bf}],
      "step": np.int32(7),
      "flags": np.array([True, False]),
      "dense": np.random.default_rng(3).normal(size=(4, 4)).astype(np.float16),
      "nothing": None,
  }
  f = tmp_path / "params.npz"
  size = save_sparse(f, params)
  assert size == os.path.getsize(f) and not (tmp_path / "params.npz.npz").exists()
  back = load_sparse(f)
  expected_leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  got_leaves = jax.tree_util.tree_flatten_with_path(back)[0]
  assert [leaf_path(p) for p, _ in got_leaves] == [
      leaf_path(p) for p, _ in expected_leaves]
  for (path, a), (_, b) in zip(expected_leaves, got_leaves):
    a = np.asarray(a)
    assert b.dtype == a.dtype and b.shape == a.shape, leaf_path(path)
    if a.dtype.kind == "f" or a.dtype == ml_dtypes.bfloat16:
      ua = a.view(f"u{a.dtype.itemsize}")
      np.testing.assert_array_equal(b.view(ua.dtype), ua,
                                    err_msg=leaf_path(path))
    else:
      np.testing.assert_array_equal(b, a, err_msg=leaf_path(path))
  assert isinstance(back["layers"], list)


def test_save_load_with_like_nnx_state(tmp_path):
  params = nnx_params()
  params["hidden"]["kernel"][...] = jnp.where(
      jnp.arange(12).reshape(3, 4) % 3 == 0, params["hidden"]["kernel"][...],
      0.0)
  save_sparse(tmp_path / "p.npz", params)
  back = load_sparse(tmp_path / "p.npz", like=params)
  assert isinstance(back, nnx.State)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(back)):
    np.testing.assert_array_equal(np.asarray(a), b)
  # The model can be rebuilt from the loaded state.
  graphdef, _, rest = nnx.split(NnxMLP(nnx.Rngs(1)), nnx.Param, ...)
  model = nnx.merge(graphdef, jax.tree.map(jnp.asarray, back), rest)
  x = jnp.ones((2, 3))
  ref = nnx.merge(graphdef, params, rest)(x)
  np.testing.assert_array_equal(model(x), ref)
  with pytest.raises(ValueError, match="leaves"):
    load_sparse(tmp_path / "p.npz", like={"a": jnp.ones(1)})


def test_sparse_file_smaller_than_dense_at_95_percent(tmp_path):
  w = sparse_matrix((512, 512), 0.05, seed=4)
  assert 0.94 < np.mean(w == 0) < 0.96
  sparse_size = save_sparse(tmp_path / "s.npz", {"kernel": w})
  with open(tmp_path / "d.npz", "wb") as f:
    np.savez(f, kernel=w)
  with open(tmp_path / "dc.npz", "wb") as f:
    np.savez_compressed(f, kernel=w)
  dense = os.path.getsize(tmp_path / "d.npz")
  dense_compressed = os.path.getsize(tmp_path / "dc.npz")
  # Values (5% of 1 MiB) plus a 32 KiB bitmap, deflated: well under a sixth.
  assert sparse_size < dense / 6
  assert sparse_size < dense_compressed
  np.testing.assert_array_equal(load_sparse(tmp_path / "s.npz")["kernel"], w)


def test_save_sparse_layout_follows_mask_and_density(tmp_path):
  params = {"kernel": sparse_matrix((100, 100), 0.001),  # 10 of 10k: gaps
            "mid": sparse_matrix((100, 100), 0.3),       # 30%: bitmap
            "full": sparse_matrix((10, 10), 1.0),        # dense is smaller
            "masked_out": np.zeros((100, 100), np.float32)}
  save_sparse(tmp_path / "p.npz", params,
              mask=mask_by_path("kernel", "mid", "full"))
  with np.load(tmp_path / "p.npz") as z:
    files = set(z.files)
  # Leaves in tree order: full, kernel, masked_out, mid.
  assert {"0.dense", "1.gaps", "1.values", "2.dense", "3.bitmap",
          "3.values", "__meta__"} == files
  back = load_sparse(tmp_path / "p.npz")
  for k, v in params.items():
    np.testing.assert_array_equal(back[k], v)


def test_load_sparse_rejects_other_files(tmp_path):
  with open(tmp_path / "x.npz", "wb") as f:
    np.savez(f, __meta__=np.array('{"format": "other"}'))
  with pytest.raises(ValueError, match="not written by save_sparse"):
    load_sparse(tmp_path / "x.npz")


# ---------------------------------------------------------------------------
# Checkpointing: optimizer states round-trip through orbax, training resumes
# bit-identically.
# ---------------------------------------------------------------------------


def _problem():
  rng = np.random.default_rng(0)
  X = jnp.asarray(rng.normal(size=(64, 12)), jnp.float32)
  W = np.zeros((12, 3), np.float32)
  W[:4] = rng.normal(size=(4, 3))
  Y = X @ W + 0.1 * jnp.asarray(rng.normal(size=(64, 3)), jnp.float32)
  params = {"Dense_0": {"kernel": jnp.asarray(rng.normal(size=(12, 3)),
                                              jnp.float32) * 0.1,
                        "bias": jnp.zeros(3)}}
  loss = lambda p: 0.5 * jnp.mean((X @ p["Dense_0"]["kernel"]
                                   + p["Dense_0"]["bias"] - Y) ** 2)
  return params, loss


def _optimizers():
  kernels = mask_by_path("kernel")
  sched = optax.warmup_cosine_decay_schedule(0.0, 0.05, 5, 40, 1e-3)
  lam_sched = optax.linear_schedule(0.0, 0.5, 20)
  return {
      "proximal_adam_l1": proximal(optax.adam(0.05),
                                   prox_l1(0.05, 0.05, mask=kernels)),
      "proximal_chain_schedules": proximal(
          optax.chain(optax.clip_by_global_norm(1.0), optax.adam(sched)),
          prox_l1(lam_sched, sched, mask=kernels),
          prox_group_lasso(0.02, sched, axis=1, mask=kernels)),
      "chain_schedule": optax.chain(
          optax.sgd(sched, momentum=0.9),
          prox_l1(lam_sched, sched, mask=kernels)),
  }


@pytest.mark.parametrize("name", ["proximal_adam_l1", "proximal_chain_schedules",
                                  "chain_schedule"])
def test_orbax_round_trip_resumes_bit_identically(tmp_path, name):
  ocp = pytest.importorskip("orbax.checkpoint")
  opt = _optimizers()[name]
  params0, loss = _problem()

  @jax.jit
  def step(params, state):
    updates, state = opt.update(jax.grad(loss)(params), state, params)
    return optax.apply_updates(params, updates), state

  def run(params, state, n):
    for _ in range(n):
      params, state = step(params, state)
    return params, state

  n, m = 17, 23
  straight = run(params0, opt.init(params0), n + m)

  mid = run(params0, opt.init(params0), n)
  ckpt = tmp_path / "ckpt"
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(ckpt, {"params": mid[0], "opt_state": mid[1]})
    ckptr.wait_until_finished()
    # Restore into the structure of a fresh state: NamedTuples, EmptyStates
    # and schedule counts come back as they were.
    target = {"params": params0, "opt_state": opt.init(params0)}
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)),
        target)
    restored = ckptr.restore(ckpt, abstract)
  assert (jax.tree.structure(restored["opt_state"])
          == jax.tree.structure(mid[1]))
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(
      {"params": mid[0], "opt_state": mid[1]})):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.asarray(a).dtype == np.asarray(b).dtype

  resumed = run(restored["params"], restored["opt_state"], m)
  for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # The run did reach exact zeros, so the test covers thresholded weights.
  assert np.any(np.asarray(straight[0]["Dense_0"]["kernel"]) == 0.0)
