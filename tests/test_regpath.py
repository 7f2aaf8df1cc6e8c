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
                             metric_fn=objective, progress=False)
  np.testing.assert_array_equal(path.lams, alphas)
  sk_kept = coefs != 0
  np.testing.assert_array_equal(path.kept, sk_kept)
  np.testing.assert_array_equal(path.n_kept, sk_kept.sum(axis=1))
  sk_importance = np.where(sk_kept, alphas[:, None], 0.0).max(axis=0)
  np.testing.assert_array_equal(path.importance, sk_importance)
  # The truly nonzero coefficients 0, 3, 5, 8 enter first.
  assert sorted(path.ranking()[:4].tolist()) == [0, 3, 5, 8]
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
                             keep_params=True, progress=False)
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
