"""Pure proximal operators against NumPy references and optimality conditions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from optax_l1 import _group
from optax_l1 import ops

RNG = np.random.default_rng(0)


def np_soft(z, t):
  return np.array([np.sign(v) * max(abs(v) - s, 0.0)
                   for v, s in zip(np.ravel(z), np.broadcast_to(t, np.shape(z)).ravel())]
                  ).reshape(np.shape(z))


@pytest.mark.parametrize("step", [0.1, 1.0, "per-coordinate"])
def test_l1_matches_scalar_numpy(step):
  z = RNG.normal(size=(7, 5)).astype(np.float32)
  s = RNG.uniform(0.0, 2.0, size=z.shape).astype(np.float32) if isinstance(
      step, str) else step
  got = np.asarray(ops.l1(jnp.asarray(z), s, 0.4))
  np.testing.assert_allclose(got, np_soft(z.astype(np.float64),
                                          np.asarray(s, np.float64) * 0.4),
                             atol=1e-6)


def test_weighted_l1_and_nonneg_and_enet_scalar_numpy():
  z = RNG.normal(size=20).astype(np.float32)
  w = RNG.uniform(0, 2, size=20).astype(np.float32)
  np.testing.assert_allclose(ops.l1(z, 0.5, 0.3, w),
                             np_soft(z, 0.5 * 0.3 * w), atol=1e-6)
  np.testing.assert_allclose(ops.nonneg_l1(z, 0.5, 0.3),
                             [max(v - 0.15, 0.0) for v in z], atol=1e-6)
  np.testing.assert_allclose(ops.elastic_net(z, 0.5, 0.3, 2.0),
                             np_soft(z, 0.15) / (1 + 0.5 * 2.0), atol=1e-6)


def _group_objective(x, z, s, lam):
  return np.sum((x - z) ** 2 / (2 * s)) + lam * np.linalg.norm(x)


@pytest.mark.parametrize("seed", range(6))
def test_group_lasso_diagonal_metric_is_the_minimizer(seed):
  """Against scipy's minimizer of the prox objective, one group at a time."""
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(4, 6))
  s = rng.uniform(0.05, 3.0, size=z.shape) ** 2  # wide range of metrics
  lam = 0.8
  with jax.enable_x64(True):  # float64 shows the root-find, not round-off
    got = np.asarray(ops.group_lasso(jnp.asarray(z), jnp.asarray(s), lam,
                                     axis=1))
  got32 = np.asarray(ops.group_lasso(jnp.asarray(z, jnp.float32),
                                     jnp.asarray(s, jnp.float32), lam, axis=1),
                     np.float64)
  np.testing.assert_allclose(got32, got, atol=1e-5)
  np.testing.assert_array_equal(got32 == 0, got == 0)
  for g in range(z.shape[0]):
    zero = np.linalg.norm(z[g] / s[g]) <= lam
    assert (not got[g].any()) == zero
    res = optimize.minimize(_group_objective, z[g], args=(z[g], s[g], lam),
                            method="Powell",
                            options=dict(xtol=1e-12, ftol=1e-15, maxiter=100000))
    f_got = _group_objective(got[g], z[g], s[g], lam)
    assert f_got <= res.fun + 1e-6
    if not zero:
      # Stationarity: (x - z)/s + lam x / ||x|| = 0.
      x = got[g]
      np.testing.assert_allclose((x - z[g]) / s[g] + lam * x / np.linalg.norm(x),
                                 0, atol=1e-9)


def _group_prox_rows(z, s, lam):
  """Float64 NumPy diagonal-metric group prox of every row of ``z``.

  ``x_g = 0`` iff ``||z_g / s_g|| <= lam``; else ``x_i = z_i rho /
  (rho + s_i lam)`` with ``rho`` the root of
  ``sum_i z_i^2 / (rho + s_i lam)^2 = 1`` in ``[0, ||z_g||]`` (100
  bisections, all rows at once). No pinned (zero-step) coordinates.
  """
  z, s = np.asarray(z, np.float64), np.asarray(s, np.float64)
  c = s * lam
  lo = np.zeros((z.shape[0], 1))
  hi = np.linalg.norm(z, axis=1, keepdims=True)
  for _ in range(100):
    mid = 0.5 * (lo + hi)
    big = np.sum(z * z / (mid + c) ** 2, axis=1, keepdims=True) > 1
    lo, hi = np.where(big, mid, lo), np.where(big, hi, mid)
  rho = 0.5 * (lo + hi)
  zero = np.linalg.norm(z / s, axis=1, keepdims=True) <= lam
  return np.where(zero, 0.0, z * rho / (rho + c))


@pytest.mark.parametrize("axis, l1", [(1, None), (0, None), (1, 1.0),
                                      (0, 1.0)])
def test_group_lasso_diagonal_metric_in_blocks(axis, l1):
  """Above _group.BLOCK_ELEMENTS the CPU runs the groups in slabs, the last
  one shifted back: every group still matches the float64 reference, for
  the group lasso and (``l1``) the sparse group lasso, the group prox of
  the soft-thresholded point."""
  assert _group._block_elements() == _group.BLOCK_ELEMENTS > 0
  rng = np.random.default_rng(3)
  z = np.float32(rng.normal(size=(1100, 512)) * 0.05)
  s = np.float32(10.0 ** rng.uniform(-3, -1, size=z.shape))
  assert z.size > 2 * _group.BLOCK_ELEMENTS
  zt = np.float64(z)
  if l1 is not None:
    zt = np.sign(zt) * np.maximum(np.abs(zt) - np.float64(s) * l1, 0)
    assert 0.2 < (zt == 0).mean() < 0.8
  # Half the groups are zeroed (||zt_g / s_g|| <= lam), in every slab.
  lam = float(np.median(np.linalg.norm(zt / s, axis=axis)))
  if l1 is None:
    got = ops.group_lasso(z, s, lam, axis=axis)
  else:
    got = ops.sparse_group_lasso(z, s, l1, lam, axis=axis)
  got = np.asarray(got, np.float64)
  t = (lambda a: a) if axis == 1 else np.transpose
  want = t(_group_prox_rows(t(zt), t(s), lam))
  zero = ~want.any(axis=axis)
  assert 0.4 < zero.mean() < 0.6
  np.testing.assert_array_equal(~got.any(axis=axis), zero)
  np.testing.assert_array_equal(got == 0, want == 0)
  # float32 round-off: relative to the group's size near the zeroing
  # threshold, where x is small (the same algorithm in float64 is within
  # 2e-13 of the reference).
  np.testing.assert_allclose(got, want, rtol=1e-5,
                             atol=1e-6 * np.abs(z).max())


def test_sparse_group_lasso_per_coordinate_l1_in_slabs():
  """A per-coordinate ``l1`` (an array) is the group prox of the weighted
  soft threshold (Simon et al. 2013), also where the slabs run: against
  float64 NumPy."""
  rng = np.random.default_rng(5)
  z = np.float32(rng.normal(size=(1100, 512)) * 0.05)
  s = np.float32(10.0 ** rng.uniform(-3, -1, size=z.shape))
  w = np.float32(rng.uniform(0, 2, size=z.shape))
  zt = np.sign(np.float64(z)) * np.maximum(np.abs(np.float64(z)) - s * w, 0)
  lam = float(np.median(np.linalg.norm(zt / s, axis=1)))
  got = np.asarray(ops.sparse_group_lasso(z, s, w, lam, axis=1), np.float64)
  want = _group_prox_rows(zt, s, lam)
  np.testing.assert_array_equal(got == 0, want == 0)
  np.testing.assert_allclose(got, want, rtol=1e-5,
                             atol=1e-6 * np.abs(z).max())


@pytest.mark.parametrize("block", [1, 70, 175, 1000])
def test_group_lasso_block_schedule_is_the_same_prox(block):
  """Every block size (1, 2 or 5 groups of 35 per block: 13 groups fill no
  whole number of blocks; or all at once) gives the whole-array result, over
  non-trailing group axes, with zero groups, a pinned coordinate, a NaN
  group and an infinite entry."""
  rng = np.random.default_rng(4)
  z = rng.normal(size=(5, 13, 7))
  s = 10.0 ** rng.uniform(-1, 0.5, size=z.shape)
  z[:, 1::3, :] *= 0.02  # groups 1, 4, 7, 10: zeroed
  s[2, 3, 4] = 0.0  # pinned coordinate
  z[3, 0, :] = np.nan
  z[4, 5, 0] = np.inf
  zc, sc = jnp.asarray(z, jnp.float32), jnp.asarray(s, jnp.float32)
  lam = jnp.float32(1.5)
  axes = (0, 2)  # groups: the 13 slices z[:, j, :] of 35 entries
  whole = np.asarray(_group._single_diagonal(zc, sc, lam, None, axes, 0))
  blocks = np.asarray(_group._single_diagonal(zc, sc, lam, None, axes,
                                                  block))
  np.testing.assert_array_equal(np.isnan(blocks), np.isnan(whole))
  np.testing.assert_array_equal(blocks == 0, whole == 0)
  np.testing.assert_array_equal(~blocks.any(axis=(0, 2)),
                                np.isin(np.arange(13), [1, 4, 7, 10]))
  np.testing.assert_allclose(blocks, whole, rtol=2e-6, atol=0)
  # And the common value is the prox: the groups without NaN / inf against
  # float64 NumPy; the pinned coordinate keeps its value.
  assert blocks[2, 3, 4] == np.float32(z[2, 3, 4])
  g = np.transpose(np.float32(z), (1, 0, 2)).reshape(13, 35)
  gs = np.transpose(np.float32(s), (1, 0, 2)).reshape(13, 35)
  ok = [j for j in range(13) if j not in (0, 3, 5)]  # NaN, pinned, inf
  want = _group_prox_rows(g[ok], gs[ok], 1.5)
  got = np.transpose(blocks, (1, 0, 2)).reshape(13, 35)[ok]
  np.testing.assert_allclose(got, want, rtol=1e-5,
                             atol=1e-6 * np.abs(g[ok]).max())


def test_group_lasso_scalar_step_block_soft_threshold():
  z = RNG.normal(size=(3, 4, 5)).astype(np.float32)
  got = np.asarray(ops.group_lasso(z, 0.5, 1.2, axis=(0, 2)))
  for j in range(4):
    g = z[:, j, :].astype(np.float64)
    n = np.linalg.norm(g)
    want = max(0.0, 1 - 0.6 / n) * g
    np.testing.assert_allclose(got[:, j, :], want, atol=1e-6)


def test_group_lasso_per_coordinate_constant_equals_scalar():
  z = RNG.normal(size=(5, 3)).astype(np.float32)
  a = ops.group_lasso(z, 0.7, 0.9, axis=1)
  b = ops.group_lasso(z, jnp.full(z.shape, 0.7), 0.9, axis=1)
  np.testing.assert_allclose(a, b, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(a) == 0, np.asarray(b) == 0)


def test_group_lasso_scale_by_size():
  z = np.ones((2, 4), np.float32)  # row norm 2, size 4: lam_g = 0.5 * 2 = 1
  got = ops.group_lasso(z, 1.0, 0.5, axis=1, scale_by_size=True)
  np.testing.assert_allclose(got, 0.5 * z, atol=1e-7)


def test_sparse_group_lasso_kkt():
  rng = np.random.default_rng(3)
  z = rng.normal(size=(6, 5))
  s = rng.uniform(0.2, 2.0, size=z.shape)
  l1, lam = 0.3, 0.5
  x = np.asarray(ops.sparse_group_lasso(jnp.asarray(z, jnp.float32),
                                        jnp.asarray(s, jnp.float32), l1, lam,
                                        axis=1), np.float64)
  for g in range(6):
    if not x[g].any():
      u = np_soft(z[g] / s[g], l1)  # 0 in -z/s + l1 [-1,1] + lam ball
      assert np.linalg.norm(u) <= lam + 1e-5
      continue
    nz = x[g] != 0
    r = ((x[g] - z[g]) / s[g])[nz] + l1 * np.sign(x[g][nz]) + \
        lam * x[g][nz] / np.linalg.norm(x[g])
    np.testing.assert_allclose(r, 0, atol=2e-5)
    assert np.all(np.abs(z[g][~nz]) / s[g][~nz] <= l1 + 1e-5)


def test_l0_keeps_exactly_the_cheaper_choice():
  z = np.linspace(-3, 3, 61).astype(np.float32)
  step, lam = 0.5, 2.0
  got = np.asarray(ops.l0(z, step, lam))
  keep = (z.astype(np.float64) ** 2) / (2 * step) > lam
  np.testing.assert_array_equal(got, np.where(keep, z, 0))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
@pytest.mark.parametrize("op", ["l1", "nonneg_l1", "l0", "group", "group_diag"])
def test_dtypes_exact_zeros_and_nan(dtype, op):
  z = jnp.asarray([[0.5, -0.01, jnp.nan], [2.0, 1e-3, -3.0]], dtype)
  fns = {
      "l1": lambda z: ops.l1(z, 0.1, 0.5),
      "nonneg_l1": lambda z: ops.nonneg_l1(z, 0.1, 0.5),
      "l0": lambda z: ops.l0(z, 0.1, 0.5),
      "group": lambda z: ops.group_lasso(z, 0.1, 0.5, axis=0),
      "group_diag": lambda z: ops.group_lasso(z, jnp.full(z.shape, 0.1), 0.5,
                                              axis=0),
  }
  x = jax.jit(fns[op])(z)
  assert x.dtype == dtype
  x = np.asarray(x, np.float64)
  assert np.isnan(x[0, 2])  # NaN stays NaN
  # Entry (0, 1) = -0.01 is below every threshold (or in a small group).
  if op != "group" and op != "group_diag":
    assert x[0, 1] == 0.0
  else:
    assert x[0, 1] == 0.0 and x[1, 1] == 0.0  # group (-0.01, 1e-3): norm small


def test_axis_validation():
  with pytest.raises(ValueError, match="out of range"):
    ops.group_lasso(jnp.zeros((2, 3)), 1.0, 1.0, axis=2)
  with pytest.raises(ValueError, match="repeats"):
    ops.group_lasso(jnp.zeros((2, 3)), 1.0, 1.0, axis=(1, -1))
  with pytest.raises(TypeError, match="int"):
    ops.group_lasso(jnp.zeros((2, 3)), 1.0, 1.0, axis=1.0)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_strict_dtype_promotion(dtype):
  """Every operator runs under strict promotion and matches NumPy."""
  z = jnp.asarray([[0.5, -0.01], [2.0, -3.0]], dtype)
  z64 = np.asarray(z, np.float64)
  with jax.numpy_dtype_promotion("strict"):
    outs = {
        "l1": ops.l1(z, 0.1, 0.5),
        "enet": ops.elastic_net(z, 0.1, 0.5, 1.0),
        "group": ops.group_lasso(z, 0.1, 0.5, axis=1),
        "group_diag": ops.group_lasso(z, jnp.full(z.shape, 0.1, dtype), 0.5,
                                      axis=1),
        "l0": ops.l0(z, 0.1, 0.5),
    }
  tol = 1e-2 if dtype == jnp.bfloat16 else 1e-6
  np.testing.assert_allclose(np.asarray(outs["l1"], np.float64),
                             np_soft(z64, 0.05), atol=tol)
  np.testing.assert_allclose(np.asarray(outs["enet"], np.float64),
                             np_soft(z64, 0.05) / 1.1, atol=tol)
  norms = np.linalg.norm(z64, axis=1, keepdims=True)
  want = np.maximum(0, 1 - 0.05 / norms) * z64
  np.testing.assert_allclose(np.asarray(outs["group"], np.float64), want,
                             atol=tol * 5)
  np.testing.assert_allclose(np.asarray(outs["group_diag"], np.float64), want,
                             atol=tol * 5)
  np.testing.assert_array_equal(np.asarray(outs["l0"], np.float64),
                                np.where(z64 ** 2 > 0.1, z64, 0))
  assert all(o.dtype == dtype for o in outs.values())


# --- every operator has a finite gradient (zeroed groups give 0) --------------

_Z = np.array([[0.05, -0.02, 0.01], [1.0, -2.0, 0.5], [0.0, 0.0, 0.0],
               [0.7, 0.0, -0.3]])
_S = np.array([[0.1, 0.2, 0.1], [0.1, 0.3, 0.2], [0.1, 0.1, 0.1],
               [0.05, 0.1, 0.4]])

GRAD_OPS = {
    "l1": lambda z, s, lam: ops.l1(z, s, lam),
    "nonneg_l1": lambda z, s, lam: ops.nonneg_l1(z, s, lam),
    "elastic_net": lambda z, s, lam: ops.elastic_net(z, s, lam, 2 * lam),
    "group_lasso_rows": lambda z, s, lam: ops.group_lasso(z, s, lam, 1),
    "group_lasso_cols": lambda z, s, lam: ops.group_lasso(z, s, lam, 0),
    "sparse_group_lasso": lambda z, s, lam: ops.sparse_group_lasso(
        z, s, 0.5 * lam, lam, 1),
    "l0": lambda z, s, lam: ops.l0(z, s, lam),
    "mcp": lambda z, s, lam: ops.mcp(z, s, lam, 3.0),
    "scad": lambda z, s, lam: ops.scad(z, s, lam, 3.7),
    "lq_half": lambda z, s, lam: ops.lq(z, s, lam, 0.5),
    "lq_two_thirds": lambda z, s, lam: ops.lq(z, s, lam, 2 / 3),
}


@pytest.mark.parametrize("metric", ["scalar", "diagonal"])
@pytest.mark.parametrize("name", sorted(GRAD_OPS))
def test_every_operator_has_a_finite_gradient(name, metric):
  """d/dz, d/dstep, d/dlam are finite everywhere (zeroed groups, zero
  entries, all-zero groups), 0 where the output is 0 by a zeroed group, and
  equal central differences (float64) at the coordinates off the kinks."""
  op = GRAD_OPS[name]
  with jax.enable_x64(True):
    z = jnp.asarray(_Z)
    s = jnp.asarray(0.1 if metric == "scalar" else _S)
    lam = jnp.asarray(0.2)
    wts = jnp.asarray(RNG.normal(size=_Z.shape))
    f = lambda z, s, lam: jnp.sum(wts * op(z, s, lam))
    gz, gs, gl = jax.grad(f, argnums=(0, 1, 2))(z, s, lam)
    for g in (gz, gs, gl):
      assert np.all(np.isfinite(np.asarray(g))), (name, g)
    out = np.asarray(op(z, s, lam))
    gz = np.asarray(gz)
    if "group" in name:
      dead = np.all(out == 0, axis=1 if "rows" in name or "sparse" in name
                    else 0)
      if "cols" in name:
        assert np.all(gz[:, dead] == 0)
      else:
        assert np.all(gz[dead] == 0)
    # Central differences at coordinates whose output is nonzero and whose
    # neighbourhood keeps the same branch.
    h = 1e-6
    for i, j in zip(*np.nonzero(out)):
      e = np.zeros_like(_Z)
      e[i, j] = h
      up = np.asarray(op(jnp.asarray(_Z + e), s, lam))
      dn = np.asarray(op(jnp.asarray(_Z - e), s, lam))
      if (np.count_nonzero(up) != np.count_nonzero(out)
          or np.count_nonzero(dn) != np.count_nonzero(out)):
        continue  # a kink within h
      fd = float(np.sum(np.asarray(wts) * (up - dn)) / (2 * h))
      assert gz[i, j] == pytest.approx(fd, rel=1e-5, abs=1e-7), (name, i, j)


@pytest.mark.parametrize("shape, axis", [((3, 0), 0), ((3, 0), 1),
                                         ((0, 3), 1), ((0,), 0)])
def test_group_operators_pass_zero_size_arrays(shape, axis):
  z = jnp.zeros(shape)
  for step in (0.1, jnp.ones(shape)):
    assert ops.group_lasso(z, step, 1.0, axis).shape == shape
    assert ops.sparse_group_lasso(z, step, 0.5, 1.0, axis).shape == shape
