"""Full-batch regression problems with scikit-learn reference solutions.

The loss everywhere is scikit-learn's ``f(W) = ||Y - X W||_F^2 / (2 n)``, so
``Lasso(alpha)``, ``ElasticNet``, ``MultiTaskLasso`` solve ``f + R`` with the
penalties of optax_l1 exactly as documented.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn import linear_model

SK_TOL = dict(tol=1e-12, max_iter=200_000, fit_intercept=False)

# jax.enable_x64 (a context manager) is public from jax 0.7.1; the oldest jax
# CI tests (0.7.0) has it in jax.experimental.
enable_x64 = getattr(jax, "enable_x64", None)
if enable_x64 is None:
  from jax.experimental import enable_x64  # pylint: disable=g-import-not-at-top


class Problem(NamedTuple):
  name: str
  X: np.ndarray  # (n, d) float32
  y: np.ndarray  # (n,) or (n, k) float32
  lipschitz: float  # largest eigenvalue of X^T X / n


def make_problem(name: str, n: int, d: int, k: int = 0, informative: int = 3,
                 dead_column: bool = False, noise_only: bool = False,
                 seed: int = 0) -> Problem:
  rng = np.random.default_rng(seed)
  X = rng.normal(size=(n, d))
  if not noise_only:
    # Correlated columns make the problem less trivial for first-order methods.
    X[:, 1:] += 0.3 * X[:, :-1]
  if dead_column:
    X[:, 0] = 0.0
  shape = (d, k) if k else (d,)
  w = np.zeros(shape)
  w[dead_column:dead_column + informative] = rng.normal(
      size=(informative,) + shape[1:]) * 1.5
  y = X @ w + 0.5 * rng.normal(size=(n,) + shape[1:])
  if noise_only:
    y = rng.normal(size=(n,) + shape[1:])
  X = X.astype(np.float32)
  y = y.astype(np.float32)
  lip = float(np.linalg.eigvalsh(X.astype(np.float64).T @ X / n).max())
  return Problem(name, X, y, lip)


# The Keras report: 1000 x 20, first feature all zeros, y pure noise.
KERAS = make_problem("keras", 1000, 20, dead_column=True, noise_only=True,
                     seed=1)
SMALL = make_problem("small", 80, 12, informative=3, seed=2)
WIDE = make_problem("wide", 60, 100, informative=5, dead_column=True, seed=3)
TALL = make_problem("tall", 500, 30, informative=6, seed=4)
LASSO_PROBLEMS = (KERAS, SMALL, WIDE, TALL)
MULTITASK = make_problem("multitask", 200, 15, k=4, informative=4,
                         dead_column=True, seed=5)


@functools.lru_cache(maxsize=None)
def _sk(kind: str, problem_name: str, alpha: float, extra: tuple) -> np.ndarray:
  p = {q.name: q for q in (*LASSO_PROBLEMS, MULTITASK)}[problem_name]
  X = p.X.astype(np.float64)
  y = p.y.astype(np.float64)
  kw = dict(extra)
  if kind == "lasso":
    est = linear_model.Lasso(alpha=alpha, **SK_TOL, **kw)
  elif kind == "enet":
    est = linear_model.ElasticNet(alpha=alpha, **SK_TOL, **kw)
  elif kind == "multitask":
    est = linear_model.MultiTaskLasso(alpha=alpha, **SK_TOL, **kw)
  else:
    raise ValueError(kind)
  coef = est.fit(X, y).coef_
  return coef.T if kind == "multitask" else coef  # (d, k) for multitask


def sklearn_lasso(p: Problem, alpha: float, positive: bool = False):
  return _sk("lasso", p.name, alpha, (("positive", positive),))


def sklearn_enet(p: Problem, alpha: float, l1_ratio: float):
  return _sk("enet", p.name, alpha, (("l1_ratio", l1_ratio),))


def sklearn_multitask(p: Problem, alpha: float):
  return _sk("multitask", p.name, alpha, ())


def loss_fn(p: Problem):
  X, y = jnp.asarray(p.X), jnp.asarray(p.y)

  def loss(w):
    r = X @ w - y
    return 0.5 * jnp.sum(r * r) / X.shape[0]
  return loss


def fit(p: Problem, opt: optax.GradientTransformation, steps: int,
        w0=None) -> np.ndarray:
  """Runs ``steps`` full-batch steps of ``opt`` from zeros under one jit."""
  shape = (p.X.shape[1],) + p.y.shape[1:]
  w = jnp.zeros(shape, jnp.float32) if w0 is None else w0
  return np.asarray(fit_params(loss_fn(p), w, opt, steps))


def fit_params(loss, params, opt: optax.GradientTransformation, steps: int):
  """``steps`` full-batch steps of ``opt`` on ``loss(params)`` from
  ``params`` (any pytree), under one jit; returns the params."""

  @jax.jit
  def run(params):
    state = opt.init(params)

    def body(_, carry):
      params, state = carry
      updates, state = opt.update(jax.grad(loss)(params), state, params)
      return optax.apply_updates(params, updates), state
    return jax.lax.fori_loop(0, steps, body, (params, state))[0]
  return run(params)


def assert_solution(w: np.ndarray, ref: np.ndarray, tol: float) -> None:
  """Same support (exact zeros where the reference is zero) and max diff."""
  np.testing.assert_array_equal(w == 0, ref == 0,
                                err_msg=f"support differs: {w} vs {ref}")
  np.testing.assert_allclose(w, ref, rtol=0, atol=tol)
