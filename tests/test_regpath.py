"""Tests for regularization_path and plot_path.

The reference for the lasso path is scikit-learn's ``lasso_path`` (coordinate
descent, float64): at every lam of its grid, the inputs our warm-started
proximal training keeps are exactly the nonzero coefficients of sklearn's
solution, so the kept counts and the importances agree.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.linear_model import lasso_path

from optax_l1._proximal import proximal
from optax_l1._regpath import RegularizationPath
from optax_l1._regpath import extend_path
from optax_l1._regpath import plot_path
from optax_l1._regpath import regularization_path
from optax_l1._transforms import prox_l1


def linear_problem(seed=0, n=200, p=12):
  rng = np.random.default_rng(seed)
  X = rng.normal(size=(n, p))
  beta = np.zeros(p)
  beta[[0, 3, 5, 8]] = [2.0, -1.5, 1.0, 0.5]
  y = X @ beta + 0.5 * rng.normal(size=n)
  return X.astype(np.float32), y.astype(np.float32)


def sklearn_path(X, y, n_alphas=15):
  """sklearn's lasso path on a geometric grid from just below lam_max.

  (lam_max = max|X^T y| / n itself is a breakpoint, where the first input is
  exactly on the edge of entering.)
  """
  X64, y64 = X.astype(np.float64), y.astype(np.float64)
  lam_max = np.abs(X64.T @ y64).max() / len(y)
  grid = np.geomspace(0.95 * lam_max, 0.01 * lam_max, n_alphas)
  alphas, coefs, _ = lasso_path(X64, y64, alphas=grid, tol=1e-12,
                                max_iter=100_000)
  return alphas, coefs.T  # (K,), (K, p)


def make_train_fn(X, y, method):
  Xj, yj = jnp.asarray(X), jnp.asarray(y)
  n = X.shape[0]
  lipschitz = float(np.linalg.eigvalsh(X.T.astype(np.float64) @ X / n).max())
  loss = lambda w: 0.5 * jnp.mean((Xj @ w - yj) ** 2)

  def make_opt(lam):
    if method == "ista":
      lr = 1.0 / lipschitz
      return optax.chain(optax.sgd(lr), prox_l1(lam, lr))
    lr = optax.exponential_decay(0.02, 200, 0.8)
    return proximal(optax.adam(lr), prox_l1(lam, lr))

  steps = 2000 if method == "ista" else 4000

  @jax.jit
  def fit(w, lam):
    opt = make_opt(lam)

    def body(_, carry):
      w, state = carry
      updates, state = opt.update(jax.grad(loss)(w), state, w)
      return optax.apply_updates(w, updates), state
    return jax.lax.fori_loop(0, steps, body, (w, opt.init(w)))[0]

  return lambda w, lam: fit(w, jnp.float32(lam))


def test_sklearn_reference_is_not_degenerate():
  """Every grid point is away from a breakpoint, so supports are well defined."""
  X, y = linear_problem()
  alphas, coefs = sklearn_path(X, y)
  X64, y64 = X.astype(np.float64), y.astype(np.float64)
  for alpha, coef in zip(alphas, coefs):
    corr = np.abs(X64.T @ (y64 - X64 @ coef)) / len(y)
    on = coef != 0
    assert np.all(np.abs(coef[on]) > 1e-3)          # clearly in
    assert np.all(corr[~on] < alpha * (1 - 1e-3))   # clearly out (KKT margin)
  n_kept = (coefs != 0).sum(axis=1)
  assert n_kept[0] == 1 and n_kept[-1] >= 6  # the path goes from none to many


@pytest.mark.parametrize("method", ["ista", "proximal_adam"])
def test_lasso_path_matches_sklearn_support(method):
  X, y = linear_problem()
  alphas, coefs = sklearn_path(X, y)
  w0 = jnp.zeros(X.shape[1])
  objective = lambda w: float(
      0.5 * np.mean((X.astype(np.float64) @ np.asarray(w, np.float64) - y) ** 2))
  # Passed in a shuffled order: the path sorts them (decreasing).
  shuffled = np.random.default_rng(1).permutation(alphas)
  path = regularization_path(make_train_fn(X, y, method), shuffled, w0,
                             metric_fn=objective, increasing=False,
                             progress=False)
  np.testing.assert_array_equal(path.lams, alphas)
  sk_kept = coefs != 0
  np.testing.assert_array_equal(path.kept, sk_kept)
  np.testing.assert_array_equal(path.n_kept, sk_kept.sum(axis=1))
  sk_importance = np.where(sk_kept, alphas[:, None], 0.0).max(axis=0)
  np.testing.assert_array_equal(path.importance, sk_importance)
  # The truly nonzero coefficients 0, 3, 5, 8 enter first. Inputs 4, 7, 9
  # never enter on this grid: ranking says they are left in index order.
  with pytest.warns(UserWarning, match=r"inputs \[4, 7, 9\] were never kept"):
    ranking = path.ranking()
  assert sorted(ranking[:4].tolist()) == [0, 3, 5, 8]
  # Metrics are the data-fit term, which falls as lam decreases.
  assert np.all(np.diff(np.asarray(path.metrics)) <= 1e-6)
  assert path.params is None and path.seconds.shape == alphas.shape


def test_lasso_path_increasing_order():
  X, y = linear_problem()
  alphas, coefs = sklearn_path(X, y)
  ista = make_train_fn(X, y, "ista")
  w_dense = ista(jnp.zeros(X.shape[1]), 0.0)
  path = regularization_path(ista, alphas, w_dense, increasing=True,
                             progress=False)
  np.testing.assert_array_equal(path.lams, alphas[::-1])
  np.testing.assert_array_equal(path.kept, (coefs != 0)[::-1])


def _table_train_fn(table):
  """A 'training' that returns a fixed kernel per lam (and checks warm start)."""
  calls = []

  def train_fn(params, lam):
    calls.append((lam, params))
    return table[lam]
  return train_fn, calls


def test_importance_ranking_and_warm_start():
  k = lambda *rows: {"Dense_0": {"kernel": jnp.asarray(rows, jnp.float32),
                                 "bias": jnp.ones(2)},
                     "Dense_1": {"kernel": jnp.ones((2, 1)), "bias": jnp.ones(1)}}
  table = {
      3.0: k([0, 0], [0, 0], [1, 0], [0, 0]),
      2.0: k([0, 0], [0, 2], [1, 0], [0, 0]),
      1.0: k([0, 0], [0, 0], [1, 1], [0, 0]),  # input 1 leaves again
      0.5: k([3, 0], [0, 2], [1, 1], [0, 0]),
  }
  train_fn, calls = _table_train_fn(table)
  p0 = {"start": 1}
  path = regularization_path(train_fn, [1.0, 0.5, 3.0, 2.0], p0,
                             metric_fn=lambda p: float(
                                 p["Dense_0"]["kernel"].sum()),
                             keep_params=True, increasing=False,
                             progress=False)
  assert isinstance(path, RegularizationPath)
  np.testing.assert_array_equal(path.lams, [3.0, 2.0, 1.0, 0.5])
  assert [c[0] for c in calls] == [3.0, 2.0, 1.0, 0.5]
  assert calls[0][1] is p0 and calls[1][1] is table[3.0]  # warm starts
  np.testing.assert_array_equal(path.n_kept, [1, 2, 1, 3])
  np.testing.assert_array_equal(path.importance, [0.5, 2.0, 3.0, 0.0])
  np.testing.assert_array_equal(path.ranking(), [2, 1, 0, 3])
  assert path.metrics == [1.0, 3.0, 2.0, 7.0]
  assert len(path.params) == 4 and path.params[-1] is table[0.5]


def test_kernel_selection_and_kept_fn():
  params = {"Dense_0": {"kernel": jnp.array([[0.0], [1.0], [0.0]]),
                        "bias": jnp.zeros(1)},
            "Dense_1": {"kernel": jnp.array([[1.0]]), "bias": jnp.zeros(1)}}
  same = lambda p, lam: p
  # Default: the first leaf whose path matches "kernel" (Dense_0's).
  path = regularization_path(same, [1.0], params, progress=False)
  np.testing.assert_array_equal(path.kept, [[False, True, False]])
  path = regularization_path(same, [1.0], params, kernel=r"^Dense_1/kernel$",
                             progress=False)
  np.testing.assert_array_equal(path.kept, [[True]])
  path = regularization_path(
      same, [1.0], params, progress=False,
      kept_fn=lambda p: np.asarray(p["Dense_0"]["kernel"][:, 0] == 0))
  np.testing.assert_array_equal(path.kept, [[True, False, True]])
  # A single array is its own kernel (a linear model's weights).
  path = regularization_path(same, [2.0, 1.0], jnp.array([0.0, 3.0]),
                             progress=False)
  np.testing.assert_array_equal(path.n_kept, [1, 1])
  assert path.metrics == [None, None]


def test_errors():
  same = lambda p, lam: p
  params = {"w": jnp.ones(2)}
  with pytest.raises(ValueError, match="no leaf path matches"):
    regularization_path(same, [1.0], params, progress=False)
  with pytest.raises(ValueError, match="empty"):
    regularization_path(same, [], params, kernel="w", progress=False)
  with pytest.raises(ValueError, match=">= 0"):
    regularization_path(same, [1.0, -1.0], params, kernel="w", progress=False)
  with pytest.raises(ValueError, match="1-D bool"):
    regularization_path(same, [1.0], params, kept_fn=lambda p: p["w"],
                        progress=False)


def test_plot_path_writes_png(tmp_path):
  X, y = linear_problem()
  alphas, _ = sklearn_path(X, y, n_alphas=6)
  path = regularization_path(make_train_fn(X, y, "ista"), alphas,
                             jnp.zeros(X.shape[1]),
                             metric_fn=lambda w: float(jnp.sum(w ** 2)),
                             progress=False)
  out = tmp_path / "path.png"
  plot_path(path, out, metric_name="|w|^2", highlight=[0, 3, 5, 8],
            title="lasso path")
  assert out.stat().st_size > 10_000
  with open(out, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  # Without a scalar metric there are two panels; still a PNG.
  plot_path(path._replace(metrics=[None] * len(alphas)), tmp_path / "b.png",
            feature_names=[f"f{j}" for j in range(X.shape[1])])
  assert (tmp_path / "b.png").stat().st_size > 10_000


def test_default_order_is_dense_to_sparse_and_matches_sklearn():
  """Increasing lams (the default) from zeros: the first fit is the densest;
  every point still has sklearn's support; the path stops once empty."""
  X, y = linear_problem()
  alphas, coefs = sklearn_path(X, y)
  X64, y64 = X.astype(np.float64), y.astype(np.float64)
  lam_max = np.abs(X64.T @ y64).max() / len(y)
  ista = make_train_fn(X, y, "ista")
  lams = np.concatenate([alphas, [1.5 * lam_max, 2 * lam_max, 3 * lam_max]])
  path = regularization_path(ista, lams, jnp.zeros(X.shape[1]),
                             progress=False)
  assert path.increasing
  # Stopped after the first empty fit (1.5 lam_max); 2 and 3 lam_max skipped.
  np.testing.assert_array_equal(path.lams,
                                np.concatenate([alphas[::-1],
                                                [1.5 * lam_max]]))
  np.testing.assert_array_equal(path.kept[:-1], (coefs != 0)[::-1])
  assert not path.kept[-1].any()
  # Same importances as sklearn's path (largest alpha with a nonzero coef).
  sk_importance = np.where(coefs != 0, alphas[:, None], 0.0).max(axis=0)
  np.testing.assert_array_equal(path.importance, sk_importance)
  # Norms are the |w_j| of each fit: at the first point, sklearn's |coef|.
  np.testing.assert_allclose(path.norms[0], np.abs(coefs[-1]), atol=1e-4)


def test_extend_path_continues_bit_for_bit():
  X, y = linear_problem()
  alphas, _ = sklearn_path(X, y)
  ista = make_train_fn(X, y, "ista")
  up = np.sort(alphas)
  w0 = jnp.zeros(X.shape[1])
  full = regularization_path(ista, up, w0, progress=False)
  half = regularization_path(ista, up[:7], w0, progress=False)
  both = extend_path(half, ista, up[7:], progress=False)
  np.testing.assert_array_equal(both.lams, full.lams)
  np.testing.assert_array_equal(both.kept, full.kept)
  np.testing.assert_array_equal(both.norms, full.norms)
  np.testing.assert_array_equal(both.last_params, full.last_params)
  with pytest.raises(ValueError, match="continue the path"):
    extend_path(half, ista, up[:3], progress=False)


def test_ties_are_broken_by_norm_at_the_last_point_survived():
  """Inputs 1, 2 and 3 leave together after lam=2: ordered by their norms
  there (3 > 1 > 2), not by index; input 0 and 4 are never kept."""
  k = lambda *rows: jnp.asarray(rows, jnp.float32)
  table = {
      1.0: k([0, 0], [1, 0], [2, 2], [0, 0.5], [0, 0]),
      2.0: k([0, 0], [0, 0.6], [0.1, 0.2], [3, 0], [0, 0]),
      3.0: k([0, 0], [0, 0], [0, 0], [0, 0], [0, 0]),
  }
  path = regularization_path(lambda p, lam: table[lam], [1.0, 2.0, 3.0],
                             k([1, 1]), progress=False)
  np.testing.assert_array_equal(path.importance, [0, 2, 2, 2, 0])
  np.testing.assert_allclose(path.tie_break,
                             [0, 0.6, np.hypot(0.1, 0.2), 3, 0], rtol=1e-6)
  ties = path.ties()
  assert [t.tolist() for t in ties] == [[1, 2, 3], [0, 4]]
  # Only the never-kept inputs 0 and 4 are left in index order, and said so.
  with pytest.warns(UserWarning, match=r"inputs \[0, 4\] were never kept"):
    order = path.ranking()
  np.testing.assert_array_equal(order, [3, 1, 2, 0, 4])
  # kept_fn without norm_fn: no norms, ties in index order with a warning.
  path = regularization_path(lambda p, lam: table[lam], [1.0, 2.0, 3.0],
                             k([1, 1]), progress=False,
                             kept_fn=lambda w: np.asarray(jnp.any(w != 0, 1)))
  assert path.norms is None and path.tie_break is None
  with pytest.warns(UserWarning, match="no weight norms were recorded"):
    np.testing.assert_array_equal(path.ranking(), [1, 2, 3, 0, 4])


def test_empty_path_raises_instead_of_index_order():
  """The issue's trap: an MLP from random init at a lam that removes every
  input; no input comes back, every importance is 0."""
  rng = np.random.default_rng(0)
  X = jnp.asarray(rng.normal(size=(100, 6)), jnp.float32)
  y = jnp.asarray(X[:, 0] - X[:, 1] ** 2, jnp.float32)
  params = {"Dense_0": {"kernel": jnp.asarray(rng.normal(size=(6, 8)) * 0.1,
                                              jnp.float32),
                        "bias": jnp.zeros(8)},
            "Dense_1": {"kernel": jnp.asarray(rng.normal(size=(8,)) * 0.1,
                                              jnp.float32),
                        "bias": jnp.zeros(())}}

  def loss(p):
    h = jax.nn.relu(X @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
    return 0.5 * jnp.mean((h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"]
                           - y) ** 2)

  @jax.jit
  def train(p, lam):
    opt = proximal(optax.adam(1e-2), optax_l1_group(lam))

    def body(_, c):
      p, s = c
      u, s = opt.update(jax.grad(loss)(p), s, p)
      return optax.apply_updates(p, u), s
    return jax.lax.fori_loop(0, 50, body, (p, opt.init(p)))[0]
  with pytest.warns(UserWarning, match="no input was kept at any lam"):
    path = regularization_path(train, [5.0, 2.0, 1.0], params,
                               kernel=r"^Dense_0/kernel$", increasing=False,
                               progress=False)
  assert not path.kept.any()
  np.testing.assert_array_equal(path.importance, np.zeros(6))
  with pytest.raises(ValueError, match="every importance is 0"):
    path.ranking()


def optax_l1_group(lam):
  from optax_l1._transforms import prox_group_lasso  # pylint: disable=g-import-not-at-top
  return prox_group_lasso(lam, axis=1, mask={
      "Dense_0": {"kernel": True, "bias": False},
      "Dense_1": {"kernel": False, "bias": False}})


def test_all_tied_importance_warns():
  w = jnp.ones((3, 2))
  path = regularization_path(lambda p, lam: p * (1 + lam), [1.0, 2.0], w,
                             progress=False)
  with pytest.warns(UserWarning, match="never separated them"):
    path.ranking()
