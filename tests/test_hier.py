"""Tests for the hierarchical prox (LassoNet) and its transformation.

References, none of which shares code with ``optax_l1._hier``:

* brute force: the objective minimized over a fine grid of the skip weight
  ``b`` (for each ``b`` the best ``w`` is the box projection ``clip(W, -M|b|,
  M|b|)``, exact coordinate by coordinate in any diagonal metric), refined by
  SciPy's bounded scalar minimizer (2-D grid and Nelder-Mead for two
  outputs);
* LassoNet's Algorithm 2 (Lemhadri et al. 2021) written as a NumPy loop over
  the candidate counts ``m`` with its interval test;
* the optimality condition of the problem in ``r = ||b||``;
* scikit-learn's ``Lasso`` for a model whose hidden layer does not enter the
  loss (the hierarchical problem is then the lasso on the skip weights).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import optimize
from sklearn.linear_model import Lasso

from optax_l1._hier import hier_prox
from optax_l1._hier import prox_hier
from optax_l1._proximal import proximal

from _problems import enable_x64  # pylint: disable=g-bad-import-order


def objective(b, w, theta, W, s, t, lam, M):
  """The prox objective; +inf where the constraint fails."""
  b, w = np.atleast_1d(b), np.asarray(w, np.float64)
  if np.max(np.abs(w), initial=0.0) > M * np.linalg.norm(b) * (1 + 1e-12) + 1e-15:
    return np.inf
  return (np.sum((b - theta) ** 2 / (2 * s)) + np.sum((w - W) ** 2 / (2 * t))
          + lam * np.linalg.norm(b))


def best_w(r, W, M):
  return np.clip(W, -M * r, M * r)


def brute_force_1d(theta, W, s, t, lam, M):
  """min over scalar b of objective(b, clip(W, M|b|)): grid + refinement."""
  W = np.asarray(W, np.float64)
  t = np.broadcast_to(np.asarray(t, np.float64), W.shape)

  def f_many(b):
    r = np.abs(b)[:, None]
    w = np.clip(W[None], -M * r, M * r)
    return ((b - theta) ** 2 / (2 * s) + np.sum((w - W) ** 2 / (2 * t), axis=1)
            + lam * np.abs(b))
  f = lambda b: float(f_many(np.array([b]))[0])
  R = 1.5 * max(abs(theta), np.abs(W).max(initial=0.0) / M) + 1e-3
  grid = np.linspace(-R, R, 40001)
  vals = f_many(grid)
  i = int(np.argmin(vals))
  lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
  res = optimize.minimize_scalar(f, bounds=(lo, hi), method="bounded",
                                 options={"xatol": 1e-13})
  b = res.x if res.fun <= vals[i] else grid[i]
  if f(0.0) <= f(b):
    b = 0.0
  return b, best_w(abs(b), W, M), f(b)


def lassonet_algorithm2(theta, W, lam, M):
  """LassoNet's Hier-Prox (Algorithm 2), unit step, one input, as a loop."""
  a = np.sort(np.abs(W))[::-1]
  K = len(a)
  norm = np.linalg.norm(np.atleast_1d(theta))
  for m in range(K + 1):
    w_m = M / (1 + m * M ** 2) * max(norm + M * a[:m].sum() - lam, 0.0)
    upper = np.inf if m == 0 else a[m - 1]
    lower = 0.0 if m == K else a[m]
    if lower <= w_m <= upper:
      b = (w_m / M) * np.atleast_1d(theta) / norm if norm > 0 else 0 * theta
      return b, np.sign(W) * np.minimum(np.abs(W), w_m)
  raise AssertionError("no interval found")


def random_case(rng, K, scale_theta=1.0):
  theta = rng.normal() * scale_theta
  W = rng.standard_t(3, size=K)
  return float(theta), W


@pytest.mark.parametrize("seed", range(6))
def test_scalar_step_matches_brute_force_and_algorithm2(seed):
  rng = np.random.default_rng(seed)
  with enable_x64():
    for _ in range(8):
      K = int(rng.integers(1, 7))
      theta, W = random_case(rng, K, scale_theta=rng.choice([0.1, 1.0, 3.0]))
      s = float(rng.choice([0.1, 1.0, 2.5]))
      lam = float(rng.choice([0.0, 0.3, 1.0, 3.0]))
      M = float(rng.choice([0.5, 1.0, 10.0]))
      b, w = hier_prox(jnp.asarray([theta]), jnp.asarray(W[None]), s, lam, M)
      b, w = float(b[0]), np.asarray(w[0])
      b_ref, w_ref, f_ref = brute_force_1d(theta, W, s, s, lam, M)
      f_ours = objective(b, w, theta, W, s, s, lam, M)
      assert np.isfinite(f_ours)                      # feasible
      assert f_ours <= f_ref + 1e-10 * (1 + abs(f_ref))
      np.testing.assert_allclose(b, b_ref, atol=1e-6)
      np.testing.assert_allclose(w, w_ref, atol=1e-6 * M)
      # LassoNet's algorithm with its lambda = step * lam, unit step.
      b2, w2 = lassonet_algorithm2(theta, W, s * lam, M)
      np.testing.assert_allclose(b, b2[0], rtol=1e-12, atol=1e-14)
      np.testing.assert_allclose(w, w2, rtol=1e-12, atol=1e-14)
      assert (b == 0) == (b_ref == 0)


@pytest.mark.parametrize("seed", range(4))
def test_per_coordinate_step_single_output_matches_brute_force(seed):
  """Adam's case with one output: one step on theta_j, one per W_jk."""
  rng = np.random.default_rng(100 + seed)
  d, K = 5, 4
  with enable_x64():
    theta = rng.normal(size=d) * np.array([0.01, 1, 0.01, 0.05, 2])
    W = rng.standard_t(3, size=(d, K)) * np.array([0.01, 1, 0.01, 1, 1])[:, None]
    s = np.exp(rng.normal(size=d) * 1.5)
    t = np.exp(rng.normal(size=(d, K)) * 1.5)
    lam, M = 3.0, 2.0
    b, w = hier_prox(jnp.asarray(theta), jnp.asarray(W),
                     (jnp.asarray(s), jnp.asarray(t)), lam, M)
    b, w = np.asarray(b), np.asarray(w)
  zeros = 0
  for j in range(d):
    b_ref, w_ref, f_ref = brute_force_1d(theta[j], W[j], s[j], t[j], lam, M)
    f_ours = objective(b[j], w[j], theta[j], W[j], s[j], t[j], lam, M)
    assert f_ours <= f_ref + 1e-10 * (1 + abs(f_ref))
    np.testing.assert_allclose(b[j], b_ref, atol=1e-6)
    np.testing.assert_allclose(w[j], w_ref, atol=1e-5)
    zeros += b[j] == 0
    # Optimality in r = |b|: h'(r) = 0 for r > 0, h'(0+) >= 0 for r = 0.
    r, a = abs(b[j]), np.abs(W[j])
    grad = ((r - abs(theta[j])) / s[j] + lam
            - M * np.sum(np.maximum(a - M * r, 0) / t[j]))
    if r > 0:
      assert abs(grad) < 1e-9 * (1 + abs(theta[j]) / s[j] + M * np.sum(a / t[j]))
      assert np.sign(b[j]) == np.sign(theta[j]) or theta[j] == 0
    else:
      assert grad >= -1e-12
      assert np.all(w[j] == 0)
  assert 0 < zeros < d  # both regimes were exercised


def test_two_outputs_scalar_step_matches_brute_force():
  rng = np.random.default_rng(7)
  for trial in range(4):
    theta = rng.normal(size=2) * (0.3 if trial % 2 else 1.5)
    W = rng.standard_t(3, size=5)
    s, lam, M = 0.8, 0.6, 1.5
    with enable_x64():
      b, w = hier_prox(jnp.asarray(theta[None]), jnp.asarray(W[None]), s, lam,
                       M)
      b, w = np.asarray(b[0]), np.asarray(w[0])

    def f(bb):
      return objective(bb, best_w(np.linalg.norm(bb), W, M), theta, W, s, s,
                       lam, M)
    R = 1.5 * max(np.linalg.norm(theta), np.abs(W).max() / M)
    g = np.linspace(-R, R, 401)
    bx, by = np.meshgrid(g, g, indexing="ij")
    r = np.sqrt(bx ** 2 + by ** 2)[..., None]
    w_grid = np.clip(W, -M * r, M * r)
    vals = (((bx - theta[0]) ** 2 + (by - theta[1]) ** 2) / (2 * s)
            + np.sum((w_grid - W) ** 2, axis=-1) / (2 * s) + lam * r[..., 0])
    i, j = np.unravel_index(np.argmin(vals), vals.shape)
    res = optimize.minimize(f, np.array([g[i], g[j]]), method="Nelder-Mead",
                            options={"xatol": 1e-12, "fatol": 1e-14,
                                     "maxiter": 5000})
    f_ref = min(res.fun, vals[i, j], f(np.zeros(2)))
    assert f(b) <= f_ref + 1e-9
    assert abs(f(b) - f_ref) < 1e-7
    np.testing.assert_allclose(w, best_w(np.linalg.norm(b), W, M), atol=1e-12)
    if np.linalg.norm(b) > 0:  # b is parallel to theta
      np.testing.assert_allclose(b / np.linalg.norm(b),
                                 theta / np.linalg.norm(theta), atol=1e-12)


def test_zero_skip_weight_and_edge_cases():
  with enable_x64():
    # theta_j = 0 but a large row: the optimum has r > 0 in any direction.
    b, w = hier_prox(jnp.zeros((1, 2)), jnp.array([[3.0, -2.0]]), 1.0, 0.5,
                     1.0)
    b_ref, w_ref, f_ref = brute_force_1d(0.0, np.array([3.0, -2.0]), 1.0, 1.0,
                                         0.5, 1.0)
    assert np.linalg.norm(b) == pytest.approx(abs(b_ref), abs=1e-6)
    np.testing.assert_allclose(b[0], [abs(b_ref), 0.0], atol=1e-6)  # e_1
    np.testing.assert_allclose(w[0], w_ref, atol=1e-6)
    # K = 0: the constraint is vacuous; group soft threshold of theta.
    b, w = hier_prox(jnp.array([[3.0, 4.0]]), jnp.zeros((1, 0)), 1.0, 1.0,
                     10.0)
    np.testing.assert_allclose(b, [[2.4, 3.2]])
    assert w.shape == (1, 0)
  # Exact zeros, dtype kept, trailing shapes of W kept.
  for dtype in (jnp.float32, jnp.bfloat16, jnp.float16):
    b, w = hier_prox(jnp.array([0.01, 2.0], dtype),
                     jnp.ones((2, 3, 2), dtype) * jnp.array([[[0.001]], [[1.0]]],
                                                             dtype),
                     0.1, 1.0, 10.0)
    assert b.dtype == dtype and w.dtype == dtype and w.shape == (2, 3, 2)
    assert b[0] == 0 and bool(jnp.all(w[0] == 0)) and b[1] != 0


def test_nan_stays_nan_and_bad_steps():
  b, w = hier_prox(jnp.array([jnp.nan, 1.0]), jnp.ones((2, 2)), 0.1, 0.1, 1.0)
  assert bool(jnp.isnan(b[0])) and bool(jnp.all(jnp.isnan(w[0])))
  assert bool(jnp.all(jnp.isfinite(w[1])))
  b, w = hier_prox(jnp.ones(2), jnp.array([[1.0, jnp.nan], [1.0, 1.0]]), 0.1,
                   0.1, 1.0)
  assert bool(jnp.isnan(b[0])) and bool(jnp.all(jnp.isnan(w[0])))
  # Per-coordinate step on a multi-output theta is refused (not exact).
  with pytest.raises(ValueError, match="refused"):
    hier_prox(jnp.ones((3, 2)), jnp.ones((3, 4)),
              (jnp.ones((3, 2)), jnp.ones((3, 4))), 0.1, 1.0)
  # One step per row of theta is exact and accepted.
  hier_prox(jnp.ones((3, 2)), jnp.ones((3, 4)),
            (jnp.ones((3, 1)), jnp.ones((3, 4))), 0.1, 1.0)
  with pytest.raises(ValueError, match="one row per input"):
    hier_prox(jnp.ones(3), jnp.ones((4, 2)), 0.1, 0.1, 1.0)


def _skip_params(rng, d, m, units):
  th = rng.normal(size=(d, m) if m else (d,)).astype(np.float32)
  return {"skip": {"kernel": jnp.asarray(th)},
          "hidden": {"kernel": jnp.asarray(
              rng.normal(size=(d, units)).astype(np.float32)),
                     "bias": jnp.zeros(units)},
          "out": {"kernel": jnp.ones((units, 1))}}


PATTERNS = dict(skip=r"^skip/kernel$", first_layer=r"^hidden/kernel$")


def test_chain_sgd_step_is_the_prox_of_the_sgd_point():
  rng = np.random.default_rng(3)
  params = _skip_params(rng, 6, 0, 4)
  grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape),
                                             p.dtype), params)
  lr, lam, M = 0.1, 2.0, 3.0
  opt = optax.chain(optax.sgd(lr), prox_hier(lam, lr, M=M, **PATTERNS))
  u, _ = opt.update(grads, opt.init(params), params)
  new = optax.apply_updates(params, u)
  z = jax.tree.map(lambda p, g: np.asarray(p, np.float64) - lr * np.asarray(
      g, np.float64), params, grads)
  for j in range(6):
    b_ref, w_ref = lassonet_algorithm2(z["skip"]["kernel"][j],
                                       z["hidden"]["kernel"][j], lr * lam, M)
    np.testing.assert_allclose(new["skip"]["kernel"][j], b_ref[0], atol=2e-6)
    np.testing.assert_allclose(new["hidden"]["kernel"][j], w_ref, atol=2e-6)
  # Other leaves take the plain SGD step.
  np.testing.assert_allclose(new["out"]["kernel"], z["out"]["kernel"],
                             rtol=1e-6)
  np.testing.assert_allclose(new["hidden"]["bias"], z["hidden"]["bias"],
                             rtol=1e-6)


def test_proximal_adam_single_output_first_step_matches_brute_force():
  """Adam's first step is lr * g / (|g| + eps): per coordinate."""
  rng = np.random.default_rng(4)
  params = _skip_params(rng, 5, 1, 3)
  grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape) * 3,
                                             p.dtype), params)
  lr, lam, M, eps = 0.5, 1.0, 2.0, 1e-8
  opt = proximal(optax.adam(lr, eps=eps), prox_hier(lam, M=M, **PATTERNS))
  u, _ = opt.update(grads, opt.init(params), params)
  new = optax.apply_updates(params, u)
  g64 = jax.tree.map(lambda g: np.asarray(g, np.float64), grads)
  step = jax.tree.map(lambda g: lr / (np.abs(g) + eps), g64)
  for j in range(5):
    th = float(params["skip"]["kernel"][j, 0])
    W = np.asarray(params["hidden"]["kernel"][j], np.float64)
    s = step["skip"]["kernel"][j, 0]
    t = step["hidden"]["kernel"][j]
    z_th = th - s * g64["skip"]["kernel"][j, 0]
    z_w = W - t * g64["hidden"]["kernel"][j]
    b_ref, w_ref, _ = brute_force_1d(z_th, z_w, s, t, lam, M)
    np.testing.assert_allclose(new["skip"]["kernel"][j, 0], b_ref, atol=1e-5)
    np.testing.assert_allclose(new["hidden"]["kernel"][j], w_ref, atol=1e-5)


def test_proximal_adam_multi_output_is_refused():
  rng = np.random.default_rng(5)
  params = _skip_params(rng, 4, 3, 2)
  opt = proximal(optax.adam(0.1), prox_hier(0.1, M=1.0, **PATTERNS))
  state = opt.init(params)
  with pytest.raises(ValueError, match="refused"):
    opt.update(jax.tree.map(jnp.ones_like, params), state, params)
  # SGD with momentum: a scalar step per leaf, accepted.
  opt = proximal(optax.sgd(0.1, momentum=0.9),
                 prox_hier(0.1, M=1.0, **PATTERNS))
  opt.update(jax.tree.map(jnp.ones_like, params), opt.init(params), params)


@pytest.mark.parametrize("method", ["chain_sgd", "proximal_sgd_momentum",
                                    "proximal_adam"])
def test_hidden_layer_outside_the_loss_gives_sklearn_lasso(method):
  """With f depending on theta only, the problem is the lasso on theta."""
  rng = np.random.default_rng(6)
  n, d = 200, 8
  X = rng.normal(size=(n, d)).astype(np.float32)
  beta = np.array([2.0, -1.5, 0, 0, 1.0, 0, 0, 0])
  y = (X @ beta + 0.5 * rng.normal(size=n)).astype(np.float32)
  alpha = 0.2
  ref = Lasso(alpha=alpha, fit_intercept=False, tol=1e-12,
              max_iter=100_000).fit(X.astype(np.float64), y).coef_
  params = {"skip": {"kernel": jnp.zeros(d)},
            "hidden": {"kernel": jnp.asarray(rng.normal(size=(d, 3)),
                                             jnp.float32)}}
  Xj, yj = jnp.asarray(X), jnp.asarray(y)
  loss = lambda p: 0.5 * jnp.mean((Xj @ p["skip"]["kernel"] - yj) ** 2)
  lip = float(np.linalg.eigvalsh(X.T.astype(np.float64) @ X / n).max())
  if method == "chain_sgd":
    lr = 1.0 / lip
    opt = optax.chain(optax.sgd(lr), prox_hier(alpha, lr, M=1.0, **PATTERNS))
    steps = 2000
  elif method == "proximal_sgd_momentum":
    opt = proximal(optax.sgd(0.1 / lip, momentum=0.9),
                   prox_hier(alpha, M=1.0, **PATTERNS))
    steps = 3000
  else:
    opt = proximal(optax.adam(optax.exponential_decay(0.05, 300, 0.7)),
                   prox_hier(alpha, M=1.0, **PATTERNS))
    steps = 4000

  @jax.jit
  def run(p):
    def body(_, c):
      p, s = c
      u, s = opt.update(jax.grad(loss)(p), s, p)
      return optax.apply_updates(p, u), s
    return jax.lax.fori_loop(0, steps, body, (p, opt.init(p)))[0]
  out = run(params)
  th = np.asarray(out["skip"]["kernel"])
  np.testing.assert_array_equal(th == 0, ref == 0)
  np.testing.assert_allclose(th, ref, atol=1e-4)
  # The hierarchy holds, and removed inputs have all-zero rows.
  W = np.asarray(out["hidden"]["kernel"])
  assert np.all(np.abs(W).max(axis=1) <= 1.0 * np.abs(th) * (1 + 1e-6) + 1e-7)
  assert np.all(W[ref == 0] == 0)


def test_schedule_jit_and_errors():
  rng = np.random.default_rng(8)
  params = _skip_params(rng, 4, 0, 3)
  grads = jax.tree.map(jnp.zeros_like, params)
  sched = optax.linear_schedule(0.5, 1.0, 10)
  opt = optax.chain(optax.sgd(0.1), prox_hier(sched, 0.1, M=2.0, **PATTERNS))
  state = opt.init(params)
  u1, state1 = opt.update(grads, state, params)
  u2, _ = jax.jit(opt.update)(grads, state, params)
  for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  assert int(state1[1].count) == 1
  # A schedule that goes negative gives a NaN update, never a number.
  neg = optax.chain(optax.sgd(0.1), prox_hier(lambda c: -1.0 + 0 * c, 0.1,
                                              M=2.0, **PATTERNS))
  u, _ = neg.update(grads, neg.init(params), params)
  assert bool(jnp.all(jnp.isnan(u["skip"]["kernel"])))
  with pytest.raises(ValueError, match=r"lam=\.\.\.\)` must be finite and >= 0"):
    prox_hier(-1.0, 0.1, M=1.0, **PATTERNS)
  with pytest.raises(ValueError, match=r"M=\.\.\.\)` must be finite and > 0"):
    prox_hier(1.0, 0.1, M=0.0, **PATTERNS)
  with pytest.raises(TypeError, match="M="):
    prox_hier(1.0, 0.1, M=lambda c: 1.0, **PATTERNS)
  with pytest.raises(ValueError, match="learning_rate"):
    optax.chain(optax.sgd(0.1), prox_hier(1.0, M=1.0, **PATTERNS)).init(params)
  with pytest.raises(ValueError, match="exactly one parameter leaf"):
    prox_hier(1.0, 0.1, M=1.0, skip="kernel",
              first_layer="hidden/kernel").init(params)
  with pytest.raises(ValueError, match="exactly one parameter leaf"):
    prox_hier(1.0, 0.1, M=1.0, skip="nothing",
              first_layer="hidden/kernel").init(params)
  bad = dict(params, hidden={"kernel": jnp.ones((5, 3)), "bias": jnp.zeros(3)})
  with pytest.raises(ValueError, match="one row per input"):
    prox_hier(1.0, 0.1, M=1.0, **PATTERNS).init(bad)
  ints = dict(params, skip={"kernel": jnp.ones(4, jnp.int32)})
  with pytest.raises(TypeError, match="floating-point"):
    prox_hier(1.0, 0.1, M=1.0, **PATTERNS).init(ints)
  assert math.isfinite(float(jnp.sum(u1["skip"]["kernel"])))
