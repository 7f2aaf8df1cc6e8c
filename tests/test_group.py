"""Group-lasso operators (optax_l1/_group.py, _group_sets.py): exactness of
the diagonal-metric root-find against a float64 bisection, groups spanning
several leaves against NumPy and scikit-learn."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_l1
from optax_l1 import ops
from _problems import (MULTITASK, assert_solution, enable_x64, fit_params,
                       sklearn_multitask)


def _bisect_rho(z, c):
  """float64 bisection of sum z^2 / (rho + c)^2 = 1 to the last ulp."""
  norm = np.linalg.norm(z)
  lo = max(norm - c.max(), 0.0, float(np.max(np.abs(z) - c)))
  hi = max(norm - c.min(), 0.0)
  for _ in range(5000):  # > 2 * 1074: every float64 bracket closes
    mid = 0.5 * (lo + hi)
    if mid <= lo or mid >= hi:
      return mid
    if np.sum(z * z / (mid + c) ** 2) > 1:
      lo = mid
    else:
      hi = mid
  raise AssertionError((z, c))


def _np_group_prox(z, s, lam):
  """float64 prox of lam ||x|| in the metric diag(1/s) for one group
  (s = 0 pins a coordinate)."""
  z, s = np.asarray(z, np.float64), np.asarray(s, np.float64)
  with np.errstate(divide="ignore", invalid="ignore"):
    dz = np.where(z == 0, 0.0, z / s)
  if np.linalg.norm(dz) <= lam:
    return np.zeros_like(z)
  a = np.abs(z).max()
  c = s * lam / a
  rho = _bisect_rho(z / a, c)
  return z * rho / (rho + c)


def _hard_groups(rng, num, size):
  """Student-t(2) entries; metrics spanning 1e-8 .. 1e8 inside each group;
  2% pinned coordinates in the even groups; ||z / s|| between 0.5 and 3 times lam = 1, so that
  some groups are zeroed and some barely survive."""
  z = rng.standard_t(2, size=(num, size))
  s = 10.0 ** rng.uniform(-8, 8, size=(num, size))
  pinned = rng.random((num, size)) < 0.02
  pinned[1::2] = False  # odd groups have none, so that some can be zeroed
  s[pinned] = 0.0
  dz = z / np.where(s == 0, np.inf, s)  # pinned entries left out here
  dnorm = np.linalg.norm(dz, axis=1, keepdims=True)
  dnorm = np.where(dnorm > 0, dnorm, 1.0)  # a group of pinned entries only
  z = z / (dnorm / rng.uniform(0.5, 3.0, size=(num, 1)))
  return z, s


def _in_units(z, s, units):
  """The same groups with z and s both scaled per group (the prox scales
  with them): as drawn (||z_g|| about 1e-8), to ||z_g|| = 1, or alternately
  to 2^-30 and 2^30."""
  if units == "as drawn":
    return z, s
  norm = np.linalg.norm(z, axis=1, keepdims=True)
  target = np.ones_like(norm)
  if units == "extreme":
    target[0::2], target[1::2] = 2.0 ** -30, 2.0 ** 30
  k = target / np.where(norm > 0, norm, 1.0)
  return z * k, s * k


@pytest.mark.parametrize("units", ["as drawn", "norm 1", "extreme"])
@pytest.mark.parametrize("size", [1, 7, 64, 1000])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_diagonal_metric_prox_is_exact_to_4_eps(dtype, size, units):
  """Every group equals the exact prox of its (rounded) inputs, from a
  float64 bisection of its secular equation, to 4 eps ||z_g|| per entry (eps
  of the dtype), with the same zeroed groups. With ||z_g|| = 1 the
  root-find runs on z itself; with ||z_g|| at 2^-30 and 2^30, in units of
  each group's largest |z|."""
  from optax_l1 import _group  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(size)
  z, s = _in_units(*_hard_groups(rng, 300 if size < 1000 else 40, size),
                   units)
  with enable_x64(dtype == "float64"):
    zz = np.asarray(z, dtype)
    ss = np.asarray(s, dtype)
    got = np.asarray(ops.group_lasso(jnp.asarray(zz), jnp.asarray(ss), 1.0,
                                     axis=1), np.float64)
    if units != "as drawn":  # which computation ran
      groups = _group._Groups.single(zz.shape, (1,))
      unscaled = _group._setup([jnp.asarray(zz)], [jnp.asarray(ss)],
                               jnp.asarray(1.0, dtype), groups, None)
      assert bool(unscaled.ok) == (units == "norm 1")
  eps = np.finfo(dtype).eps
  zeroed = 0
  for g in range(z.shape[0]):
    want = _np_group_prox(zz[g], ss[g], 1.0)  # the dtype's inputs, exactly
    if not want.any():
      zeroed += 1
      assert not got[g].any(), g
      continue
    scale = np.linalg.norm(zz[g].astype(np.float64))
    np.testing.assert_allclose(got[g], want, rtol=0, atol=4 * eps * scale,
                               err_msg=f"group {g}")
  assert 0 < zeroed < z.shape[0]


def test_newton_needs_few_iterations_on_adam_like_metrics(monkeypatch):
  """Rows of 1024 with the metric lr / |g| of Adam's first step (g normal):
  3 iterations reach the converged result (the old fixed 6 did not)."""
  from optax_l1 import _group  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  z = jnp.asarray(0.02 * rng.normal(size=(64, 1024)), jnp.float32)
  s = jnp.asarray(1e-3 / (np.abs(rng.normal(size=(64, 1024))) + 1e-8),
                  jnp.float32)
  full = np.asarray(ops.group_lasso(z, s, 1.0, axis=1))
  monkeypatch.setattr(_group, "MAX_ITERS", 3)
  jax.clear_caches()
  three = np.asarray(ops.group_lasso(z, s, 1.0, axis=1))
  jax.clear_caches()
  np.testing.assert_array_equal(three, full)


# --- groups across leaves ------------------------------------------------------


def _leaves(rng):
  """Three arrays whose groups (8 of them) run along axes 1, 0 and 2."""
  return [rng.normal(size=(5, 8)), rng.normal(size=(8,)),
          rng.normal(size=(3, 2, 8))], (1, 0, 2)


def _np_sets(zs, ss, lam, axes, l1=None):
  """NumPy reference: gather each group's slices, prox, scatter back."""
  zs = [np.asarray(z, np.float64) for z in zs]
  ss = [np.broadcast_to(np.asarray(s, np.float64), z.shape)
        for s, z in zip(ss, zs)]
  if l1 is not None:
    zs = [np.sign(z) * np.maximum(np.abs(z) - s * l1, 0)
          for z, s in zip(zs, ss)]
  out = [np.zeros_like(z) for z in zs]
  for g in range(zs[0].shape[axes[0]]):
    zg = np.concatenate([np.take(z, g, axis=a).ravel()
                         for z, a in zip(zs, axes)])
    sg = np.concatenate([np.take(s, g, axis=a).ravel()
                         for s, a in zip(ss, axes)])
    xg = _np_group_prox(zg, sg, lam)
    k = 0
    for i, (z, a) in enumerate(zip(zs, axes)):
      n = np.take(z, g, axis=a).size
      idx = [slice(None)] * z.ndim
      idx[a] = g
      out[i][tuple(idx)] = xg[k:k + n].reshape(np.take(z, g, axis=a).shape)
      k += n
  return out


@pytest.mark.parametrize("metric", ["scalar", "diagonal"])
@pytest.mark.parametrize("l1", [None, 0.3])
def test_groups_across_arrays_match_numpy(metric, l1):
  rng = np.random.default_rng(1)
  zs, axes = _leaves(rng)
  zs[0][:, 3] *= 0.01  # group 3 is zeroed
  zs[1][3] *= 0.01
  zs[2][..., 3] *= 0.01
  if metric == "scalar":
    step = 0.5
    ss = [step] * 3
  else:
    ss = [10.0 ** rng.uniform(-1, 0.5, size=z.shape) for z in zs]
  lam = 1.5
  with enable_x64(True):
    got = ops.group_lasso_sets([jnp.asarray(z) for z in zs],
                               [jnp.asarray(s) for s in ss] if
                               metric == "diagonal" else ss, lam, axes,
                               l1=l1)
    got = [np.asarray(x) for x in got]
  want = _np_sets(zs, ss, lam, axes, l1)
  zero = [~np.any(w != 0, axis=tuple(d for d in range(w.ndim) if d != a))
          for w, a in zip(want, axes)]
  assert zero[0][3] and 0 < zero[0].sum() < 8
  for g, w in zip(got, want):
    np.testing.assert_array_equal(g == 0, w == 0)
    np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)


def test_one_array_set_is_the_single_array_prox():
  """Groups along axis 0 of one array (the slices z[g, :]) are the rows:
  ops.group_lasso with the norm over axis 1."""
  rng = np.random.default_rng(2)
  z = jnp.asarray(rng.normal(size=(6, 9)), jnp.float32)
  s = jnp.asarray(10.0 ** rng.uniform(-1, 0.5, size=(6, 9)), jnp.float32)
  (a,) = ops.group_lasso_sets([z], [s], 1.2, (0,))
  np.testing.assert_allclose(a, ops.group_lasso(z, s, 1.2, axis=1),
                             rtol=1e-6)


def test_groups_across_arrays_have_finite_gradients():
  rng = np.random.default_rng(3)
  zs, axes = _leaves(rng)
  zs = [jnp.asarray(z, jnp.float32) for z in zs]
  zs[0] = zs[0].at[:, 2].set(0.0)
  zs[1] = zs[1].at[2].set(0.0)
  zs[2] = zs[2].at[..., 2].set(0.0)  # group 2: all zero
  ss = [jnp.full(z.shape, 0.3) for z in zs]
  w = [jnp.asarray(rng.normal(size=z.shape), jnp.float32) for z in zs]
  f = lambda zs: sum(jnp.sum(a * b) for a, b in zip(
      ops.group_lasso_sets(zs, ss, 2.0, axes), w))
  grads = jax.grad(f)(zs)
  for g in grads:
    assert np.all(np.isfinite(np.asarray(g)))
  assert np.all(np.asarray(grads[0])[:, 2] == 0)


def _split_multitask():
  """MULTITASK's (features, tasks) kernel as two leaves of 2 tasks each:
  a row (one feature) of both leaves is one group, as in MultiTaskLasso."""
  p = MULTITASK
  X, Y = jnp.asarray(p.X), jnp.asarray(p.y)

  def loss(params):
    w = jnp.concatenate([params["a"], params["b"]], axis=1)
    r = X @ w - Y
    return 0.5 * jnp.sum(r * r) / X.shape[0]
  d = p.X.shape[1]
  params = {"a": jnp.zeros((d, 2)), "b": jnp.zeros((d, 2))}
  groups = optax_l1.group_by_path({r"^(a|b)$": ("features", 0)})
  return loss, params, groups


def _fit(loss, params, opt, steps):
  out = fit_params(loss, params, opt, steps)
  return np.concatenate([np.asarray(out["a"]), np.asarray(out["b"])], 1)


@pytest.mark.parametrize("where", ["ista", "proximal_adam"])
def test_groups_across_leaves_reach_multitask_lasso(where):
  alpha = 0.05
  loss, params, groups = _split_multitask()
  if where == "ista":
    lr = 1.0 / MULTITASK.lipschitz
    opt = optax.chain(optax.sgd(lr),
                      optax_l1.prox_group_lasso(alpha, lr, groups=groups))
    steps = 4000
  else:
    opt = optax_l1.proximal(optax.adam(0.01),
                            optax_l1.prox_group_lasso(alpha, groups=groups))
    steps = 5000
  w = _fit(loss, params, opt, steps)
  assert_solution(w, sklearn_multitask(MULTITASK, alpha), 1e-4)


def test_group_by_path_and_errors():
  params = {"q": jnp.ones((4, 2, 3)), "o": jnp.ones((2, 3, 4)),
            "bias": jnp.ones(4)}
  groups = optax_l1.group_by_path({r"^q$": ("heads", 1),
                                   r"^o$": ("heads", 0)})
  assert groups(params) == {"q": ("heads", 1), "o": ("heads", 0),
                            "bias": None}
  bad = optax_l1.group_by_path({r"^q$": ("heads", 1), r"^o$": ("heads", 2)})
  opt = optax.chain(optax.sgd(0.1),
                    optax_l1.prox_group_lasso(0.1, 0.1, groups=bad))
  with pytest.raises(ValueError, match=r"group set 'heads'.*same length"):
    opt.init(params)
  with pytest.raises(ValueError, match="exactly one of"):
    optax_l1.prox_group_lasso(0.1, 0.1, axis=0, groups=groups)
  with pytest.raises(ValueError, match="exactly one of"):
    optax_l1.prox_group_lasso(0.1, 0.1)
  with pytest.raises(ValueError, match="mask="):
    optax_l1.prox_group_lasso(0.1, 0.1, groups=groups, mask=lambda p: p)
  with pytest.raises(TypeError, match="(name, axis)"):
    optax_l1.group_by_path({r"q": "heads"})
  nothing = optax_l1.group_by_path({r"^nothing$": ("x", 0)})
  with pytest.raises(ValueError, match="no leaf"):
    optax.chain(optax.sgd(0.1), optax_l1.prox_group_lasso(
        0.1, 0.1, groups=nothing)).init(params)
