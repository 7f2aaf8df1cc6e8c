"""The hierarchical proximal operator of LassoNet, and its transformation.

LassoNet (Lemhadri, Ruan, Abraham & Tibshirani, JMLR 2021) adds a linear skip
connection ``x @ theta`` to an MLP and lets input ``j`` reach the MLP's first
layer (row ``W_j`` of its kernel) only as far as its skip weight allows:

.. math::

  \\min_{\\theta, W}\\; f(\\theta, W) + \\lambda \\sum_j \\|\\theta_j\\|_2
  \\quad \\text{s.t.} \\quad \\|W_j\\|_\\infty \\le M \\|\\theta_j\\|_2
  \\quad \\forall j.

An input is out of the model exactly when ``theta_j = 0`` (then ``W_j = 0``
too). :func:`hier_prox` solves the proximal problem of this penalty exactly;
:func:`prox_hier` wraps it into an optax transformation that pairs the skip
weights with the first-layer kernel.
"""

from __future__ import annotations

import re
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_l1 import _transforms
from optax_l1 import _validation as val
from optax_l1._transforms import ProxState
from optax_l1._transforms import ProxTransformation
from optax_l1._tree import path_str

ArrayLike = jax.typing.ArrayLike

__all__ = ["hier_prox", "prox_hier"]


def _row_step(name: str, step: Any, theta_shape: tuple[int, ...], d: int,
              m: int) -> jax.Array:
  """The step of each row of theta, shape ``(d,)`` (or ``()``)."""
  s = jnp.asarray(step)
  if s.ndim == 0:
    return s
  shape = tuple(s.shape)
  if m == 1 and shape in (theta_shape, (d,), (d, 1)):
    return s.reshape(d)
  if shape == (d, 1):
    return s.reshape(d)
  raise ValueError(
      f"`{name}`: the step of theta has shape {shape}, but theta has shape "
      f"{theta_shape} ({m} outputs per input). The hierarchical prox is exact "
      "for a step that is one number per input row of theta (a scalar, or "
      f"shape ({d}, 1)) or, with a single output, one per coordinate. A "
      "per-coordinate step on a multi-output skip (proximal(optax.adam(...), "
      "prox_hier(...)) with m > 1) would solve another problem, so it is "
      "refused: use an optimizer whose step is a scalar per leaf "
      "(optax.sgd(lr, momentum=...)), or a skip with one output.")


def hier_prox(theta: ArrayLike, W: ArrayLike, step: Any, lam: ArrayLike,
              M: ArrayLike) -> tuple[jax.Array, jax.Array]:
  """Exact prox of the LassoNet penalty, one input (row) at a time.

  For each input ``j``, with ``theta_j`` its skip weights (a scalar or ``m``
  outputs) and ``W_j`` its row of the first-layer kernel (``K`` entries, any
  trailing shape), returns

  .. math::

    (b_j, w_j) = \\operatorname*{argmin}_{b, w}\\;
      \\sum_i \\frac{(b_i - \\theta_{ji})^2}{2 s_j}
      + \\sum_k \\frac{(w_k - W_{jk})^2}{2 t_{jk}}
      + \\lambda \\|b\\|_2
      \\quad \\text{s.t.} \\quad \\|w\\|_\\infty \\le M \\|b\\|_2,

  the ops contract ``argmin sum (x - z)^2 / (2 step) + R(x)`` with ``R`` the
  group lasso on ``theta_j`` plus the hierarchy constraint.

  **Solution.** The problem is not convex (the constraint set is not), but
  it is solved exactly. For ``||b|| = r`` fixed, the best ``b`` is ``r
  theta_j / ||theta_j||`` (``s_j`` is one number per row) and the best
  ``w_k`` is ``sign(W_jk) min(|W_jk|, M r)``. What is left is the convex
  piecewise-quadratic problem in ``r >= 0``

  .. math::

    h(r) = \\frac{(r - \\|\\theta_j\\|)^2}{2 s_j} + \\lambda r
           + \\sum_k \\frac{(|W_{jk}| - M r)_+^2}{2 t_{jk}},

  whose derivative is increasing and linear between the breakpoints
  ``|W_jk| / M``. With ``a_(1) >= a_(2) >= ...`` the sorted ``|W_jk|``
  (``rho_k = s_j / t_jk`` in the same order), the root with the top ``m``
  entries active is

  .. math::

    r_m = \\frac{\\max(\\|\\theta_j\\| - s_j\\lambda
                 + M \\sum_{k \\le m} \\rho_k a_{(k)},\\, 0)}
               {1 + M^2 \\sum_{k \\le m} \\rho_k},

  and the solution is ``r_m`` for the ``m`` with ``a_(m+1) <= M r_m <=
  a_(m)``: the number of ``m = 0..K`` with ``a_(m+1) > M r_m`` (each ``r_m``
  is at most the solution, and beyond it every ``r_m`` is past its own
  breakpoint). With a scalar step this is LassoNet's Hier-Prox (Algorithm 2,
  ``lambda`` there being ``step * lam`` here); with one step per row of
  theta and any per-coordinate step on ``W`` it is the same algorithm with
  the weights ``rho_k``.

  An input with ``theta_j = 0`` is a tie in direction: when ``r > 0`` every
  unit direction of ``b`` is optimal and ``b = r e_1`` (its first output) is
  returned. When every step of a row is 0 the ratios ``rho_k`` are taken as
  1 (the limit of equal steps going to 0: the projection onto the
  constraint).

  Args:
    theta: skip weights, shape ``(d,)`` or ``(d, m)``: row ``j`` is input
      ``j``.
    W: first-layer kernel, shape ``(d, ...)`` (a Flax ``Dense`` kernel
      ``(inputs, units)``): row ``j`` is input ``j``.
    step: a scalar, or a pair ``(step_theta, step_W)``. ``step_theta`` is a
      scalar, one number per row (shape ``(d, 1)``), or with ``m == 1`` one
      per coordinate; ``step_W`` is a scalar or broadcasts to ``W``'s shape.
      Steps are > 0.
    lam: group penalty on ``||theta_j||_2``, >= 0.
    M: hierarchy multiplier, > 0.

  Returns:
    ``(theta_new, W_new)`` with the shapes and dtype of the inputs. An input
    removed from the model has ``theta_new[j] = 0`` and ``W_new[j] = 0``
    exactly. A NaN anywhere in a row makes that row NaN.

  Raises:
    ValueError: if the shapes do not match, or ``step_theta`` is per
      coordinate with more than one output (not exact: see above).

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_l1._hier import hier_prox
    >>> theta = jnp.array([2.0, 0.05])          # two inputs, one output
    >>> W = jnp.array([[1.0, -3.0], [0.1, 0.2]])
    >>> b, w = hier_prox(theta, W, step=1.0, lam=0.5, M=1.0)
    >>> b                                        # (2 - 0.5 + 3) / (1 + 1)
    Array([2.25, 0.  ], dtype=float32)
    >>> w                                        # input 1 is out
    Array([[ 1.  , -2.25],
           [ 0.  ,  0.  ]], dtype=float32)

  References:
    Lemhadri, Ruan, Abraham & Tibshirani, LassoNet: A Neural Network with
    Feature Sparsity, JMLR 22(127), 2021.
  """
  name = "hier_prox"
  theta = jnp.asarray(theta)
  W = jnp.asarray(W)
  if theta.ndim not in (1, 2):
    raise ValueError(f"`{name}(theta=...)` must have shape (d,) or (d, m); "
                     f"got {theta.shape}.")
  if W.ndim < 1 or W.shape[0] != theta.shape[0]:
    raise ValueError(f"`{name}`: W must have one row per input, shape "
                     f"({theta.shape[0]}, ...); got theta {theta.shape} and W "
                     f"{W.shape}.")
  dtype = jnp.result_type(theta, W)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f"`{name}` acts on real floating-point arrays; got "
                    f"{theta.dtype} and {W.dtype}.")
  d = theta.shape[0]
  th = theta.reshape(d, -1).astype(dtype)
  m = th.shape[1]
  w2 = W.reshape(d, -1).astype(dtype)
  K = w2.shape[1]
  if isinstance(step, (tuple, list)):
    if len(step) != 2:
      raise ValueError(f"`{name}(step=...)` must be a scalar or a pair "
                       f"(step_theta, step_W); got {len(step)} entries.")
    s_theta, s_w = step
  else:
    s_theta = s_w = step
  s = jnp.broadcast_to(
      _row_step(name, s_theta, tuple(theta.shape), d, m).astype(dtype), (d,))
  s_w = jnp.asarray(s_w).astype(dtype)
  try:
    t = jnp.broadcast_to(s_w, W.shape).reshape(d, K)
  except ValueError:
    raise ValueError(f"`{name}`: the step of W has shape {s_w.shape}, which "
                     f"does not broadcast to W's shape {W.shape}.") from None
  lam = jnp.asarray(lam).astype(dtype)
  M = jnp.asarray(M).astype(dtype)
  b, w_new = _hier_rows(th, w2, s, t, lam, M)
  return b.reshape(theta.shape), w_new.reshape(W.shape)


@jax.jit
def _hier_rows(th: jax.Array, w2: jax.Array, s: jax.Array, t: jax.Array,
               lam: jax.Array, M: jax.Array) -> tuple[jax.Array, jax.Array]:
  """:func:`hier_prox` on ``th (d, m)``, ``w2 (d, K)``, row steps ``s (d,)``
  and steps ``t (d, K)`` (one compiled kernel per shape when called eagerly)."""
  dtype = th.dtype
  d, m = th.shape

  n = jnp.sqrt(jnp.sum(th * th, axis=1))  # ||theta_j||
  a = jnp.abs(w2)
  order = jnp.argsort(-a, axis=1, stable=True)
  a_s = jnp.take_along_axis(a, order, axis=1)
  t_s = jnp.take_along_axis(t, order, axis=1)
  one = jnp.ones((), dtype)
  zero = jnp.zeros((), dtype)
  rho = jnp.where(t_s == s[:, None], one, s[:, None] / t_s)
  zcol = jnp.zeros((d, 1), dtype)
  A = jnp.concatenate([zcol, jnp.cumsum(rho * a_s, axis=1)], axis=1)
  B = jnp.concatenate([zcol, jnp.cumsum(rho, axis=1)], axis=1)
  num = (n - s * lam)[:, None] + M * A
  r_all = jnp.maximum(num, zero) / (one + M * M * B)  # (d, K + 1)
  lower = jnp.concatenate([a_s, zcol], axis=1)         # a_(m+1)
  idx = jnp.sum(lower > M * r_all, axis=1)
  r = jnp.take_along_axis(r_all, idx[:, None], axis=1)[:, 0]
  bad = (jnp.isnan(n) | jnp.any(jnp.isnan(a), axis=1) | jnp.isnan(s)
         | jnp.any(jnp.isnan(t), axis=1) | jnp.isnan(lam) | jnp.isnan(M))
  r = jnp.where(bad, jnp.full((), jnp.nan, dtype), r)

  e1 = jnp.zeros((m,), dtype).at[0].set(1)
  direction = jnp.where((n > 0)[:, None], th / jnp.where(n > 0, n, one)[:, None],
                        e1[None, :])
  b = jnp.where((r > 0)[:, None], r[:, None] * direction, zero)
  b = jnp.where(jnp.isnan(r)[:, None], jnp.full((), jnp.nan, dtype), b)
  cap = M * r
  w_new = jnp.where(a <= cap[:, None], w2, jnp.sign(w2) * cap[:, None])
  w_new = jnp.where((cap > 0)[:, None], w_new, zero)
  w_new = jnp.where(jnp.isnan(r)[:, None], jnp.full((), jnp.nan, dtype),
                    w_new)
  return b, w_new


def _find_leaf(fn: str, arg: str, pattern: str,
               paths: list[str]) -> int:
  hits = [i for i, p in enumerate(paths) if re.search(pattern, p)]
  if len(hits) != 1:
    raise ValueError(
        f"`{fn}({arg}={pattern!r})` must match exactly one parameter leaf; "
        f"it matches {[paths[i] for i in hits]} of {paths}.")
  return hits[0]


def prox_hier(
    lam: optax.ScalarOrSchedule,
    learning_rate: Optional[optax.ScalarOrSchedule] = None,
    *,
    M: float,
    skip: str,
    first_layer: str,
) -> ProxTransformation:
  """LassoNet's hierarchical proximal step on a skip connection and an MLP.

  Solves ``min f + lam * sum_j ||theta_j||_2`` subject to ``||W_j||_inf <= M
  ||theta_j||_2`` for every input ``j``, where ``theta`` is the skip
  connection's kernel (the leaf ``skip`` selects, ``(d,)`` or ``(d, m)``)
  and ``W`` the first hidden layer's kernel (the leaf ``first_layer``
  selects, ``(d, units)``). Each step applies :func:`hier_prox` to ``z =
  params + updates`` of those two leaves; every other leaf takes the plain
  step. An input is out of the model when its skip weight and its whole
  first-layer row are exactly 0.

  In ``optax.chain(optax.sgd(lr), prox_hier(lam, lr, ...))`` this is proximal
  gradient descent with a scalar step (LassoNet's path, which uses SGD with
  momentum). Under :func:`optax_l1.proximal` the step is read from the
  optimizer: with a scalar step per leaf (``optax.sgd``, with or without
  momentum) it is exact; with a per-coordinate metric (Adam) it is exact
  when the skip has one output (``(d,)`` or ``(d, 1)``: regression, one
  logit), and refused with a ``ValueError`` at the first update when it has
  more (the prox in a metric that differs across one input's outputs is not
  solved here).

  Args:
    lam: penalty on ``||theta_j||_2``, >= 0 (float or schedule).
    learning_rate: the optimizer's learning rate, > 0; leave it out under
      :func:`optax_l1.proximal`, required in a plain chain.
    M: hierarchy multiplier, > 0 (LassoNet's default is 10).
    skip: regex (``re.search`` on :func:`optax_l1.leaf_path`'s string) that
      selects exactly one leaf: the skip kernel.
    first_layer: regex that selects exactly one leaf: the first hidden
      layer's kernel, one row per input.

  Returns:
    A :class:`optax_l1.ProxTransformation`.

  Raises:
    ValueError: for ``lam < 0``, ``M <= 0``, ``learning_rate <= 0``, a
      pattern that does not select exactly one leaf, or leaves whose rows do
      not match (at ``init``).
    TypeError: for a non-float leaf or a non-numeric ``M``.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> from optax_l1._hier import prox_hier
    >>> params = {"skip": jnp.array([2.0, 0.05]),
    ...           "hidden": {"kernel": jnp.array([[1.0, -3.0], [0.1, 0.2]])}}
    >>> opt = optax.chain(optax.sgd(1.0), prox_hier(0.5, 1.0, M=1.0,
    ...                   skip="^skip$", first_layer="hidden/kernel"))
    >>> zero = {"skip": jnp.zeros(2), "hidden": {"kernel": jnp.zeros((2, 2))}}
    >>> u, _ = opt.update(zero, opt.init(params), params)
    >>> optax.apply_updates(params, u)["skip"]
    Array([2.25, 0.  ], dtype=float32)
  """
  fn = "prox_hier"
  val.check_nonnegative(fn, "lam", lam)
  if learning_rate is not None:
    val.check_positive(fn, "learning_rate", learning_rate)
  if callable(M) or isinstance(M, jax.core.Tracer):
    raise TypeError(f"`{fn}(M=...)` must be a number; got {M!r}.")
  val.check_positive(fn, "M", M)
  if val.concrete_float(M) is None:
    raise TypeError(f"`{fn}(M=...)` must be a number; got {M!r}.")
  for arg, pattern in (("skip", skip), ("first_layer", first_layer)):
    if not isinstance(pattern, str):
      raise TypeError(f"`{fn}({arg}=...)` must be a regex string; got "
                      f"{pattern!r}.")
  scheduled = callable(lam) or callable(learning_rate)

  def locate(params):
    if params is None:
      raise ValueError(f"`{fn}` needs the params: got params=None.")
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    paths = [path_str(p) for p, _ in flat]
    i_s = _find_leaf(fn, "skip", skip, paths)
    i_w = _find_leaf(fn, "first_layer", first_layer, paths)
    if i_s == i_w:
      raise ValueError(f"`{fn}`: skip={skip!r} and first_layer="
                       f"{first_layer!r} select the same leaf {paths[i_s]}.")
    leaves = [leaf for _, leaf in flat]
    th, w = leaves[i_s], leaves[i_w]
    val.check_float_leaf(fn, paths[i_s], th)
    val.check_float_leaf(fn, paths[i_w], w)
    if jnp.ndim(th) not in (1, 2):
      raise ValueError(f"`{fn}`: the skip kernel at {paths[i_s]} must have "
                       f"shape (d,) or (d, m); got {jnp.shape(th)}.")
    if jnp.ndim(w) < 2 or jnp.shape(w)[0] != jnp.shape(th)[0]:
      raise ValueError(
          f"`{fn}`: the first-layer kernel at {paths[i_w]} must have one row "
          f"per input, shape ({jnp.shape(th)[0]}, units), like the skip "
          f"kernel at {paths[i_s]} of shape {jnp.shape(th)}; got "
          f"{jnp.shape(w)}.")
    return treedef, i_s, i_w, leaves

  def init_fn(params):
    _transforms.check_learning_rate_at_init(fn, learning_rate)
    locate(params)
    if scheduled:
      return ProxState(count=jnp.zeros([], jnp.int32))
    return optax.EmptyState()

  def update_fn(updates, state, params=None, *, step=None, **extra_args):
    del extra_args
    if params is None:
      raise _transforms.params_required(fn)
    treedef, i_s, i_w, leaves = locate(params)
    count = state.count if scheduled else None
    lam_t = lam(count) if callable(lam) else lam
    ups = treedef.flatten_up_to(updates)
    if step is None:
      lr = _transforms.chain_learning_rate(fn, learning_rate, count)
      steps = (lr, lr)
      ok = [jnp.all(jnp.asarray(lr) >= 0)] if not isinstance(
          lr, (int, float)) else []
    else:
      st = treedef.flatten_up_to(step)
      steps = (st[i_s], st[i_w])
      ok = []
    if not isinstance(lam_t, (int, float, np.ndarray, np.generic)):
      ok.append(jnp.all(jnp.asarray(lam_t) >= 0))
    th, w = leaves[i_s], leaves[i_w]
    z_th = jnp.asarray(th + ups[i_s]).astype(th.dtype)
    z_w = jnp.asarray(w + ups[i_w]).astype(w.dtype)
    new_th, new_w = hier_prox(z_th, z_w, steps, lam_t, M)
    if ok:
      good = jnp.all(jnp.stack(ok))
      new_th = jnp.where(good, new_th, jnp.full((), jnp.nan, new_th.dtype))
      new_w = jnp.where(good, new_w, jnp.full((), jnp.nan, new_w.dtype))
    ups = list(ups)
    ups[i_s] = (new_th.astype(th.dtype) - th).astype(ups[i_s].dtype)
    ups[i_w] = (new_w.astype(w.dtype) - w).astype(ups[i_w].dtype)
    new_updates = jax.tree_util.tree_unflatten(treedef, ups)
    if scheduled:
      state = ProxState(count=optax.safe_increment(state.count))
    return new_updates, state

  update_fn.prox_info = (fn, learning_rate)
  return ProxTransformation(init_fn, update_fn)
