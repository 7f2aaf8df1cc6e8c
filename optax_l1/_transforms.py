"""Proximal steps as ``optax.GradientTransformation``s.

Each factory here closes over a penalty ``R`` and a learning rate and returns
a transformation that goes **last** in an ``optax.chain``. It receives the
chain's update ``u`` and the current ``params`` and turns the step into a
proximal step:

.. math::

  z = \\mathrm{params} + u, \\qquad
  \\mathrm{new} = \\operatorname{prox}_{\\eta R}(z), \\qquad
  \\text{returned update} = \\mathrm{new} - \\mathrm{params},

so users still call ``optax.apply_updates`` and get ``new`` (exact zeros
included: ``p + (0 - p)`` is exactly ``0`` in IEEE arithmetic). With
``optax.sgd(lr)`` before it and ``learning_rate=lr`` this is ISTA, the
proximal gradient method for ``f + R`` (Beck & Teboulle 2009).

Inside :func:`optax_l1.proximal` the same transformations receive the
per-coordinate step that the optimizer applies (its learning rate times its
metric, read from its links and state) and take the prox in that metric
instead; their own ``learning_rate`` is then optional.
"""

from __future__ import annotations

from collections.abc import Callable
import contextlib
import contextvars
import functools
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_l1 import _group
from optax_l1 import _validation as val
from optax_l1._lazy import LazyStep
from optax_l1._lazy import materialize
from optax_l1 import ops
from optax_l1._tree import MaskOrFn, path_str, resolve_mask

ScalarOrSchedule = optax.ScalarOrSchedule


class ProxState(NamedTuple):
  """State of a proximal transformation whose hyperparameters are scheduled.

  Transformations with constant hyperparameters keep ``optax.EmptyState()``.
  """

  count: jax.Array  # shape=(), int32: number of updates applied so far.


class ProxTransformation(optax.GradientTransformationExtraArgs):
  """An ``optax`` transformation that ends in a proximal step.

  It is an ordinary ``GradientTransformationExtraArgs`` (``init``/``update``),
  so it chains with anything. Its ``update`` also accepts a keyword ``step``:
  a pytree like ``params`` of per-coordinate steps (or scalars), which
  :func:`optax_l1.proximal` passes so that the prox is taken in the
  optimizer's metric. Users never pass it by hand.
  """


class PruneTransformation(ProxTransformation):
  """A mask transformation (``magnitude_prune``, ``keep_zeros``, ``nm_prune``).

  Its step is a projection onto a sparsity pattern, so it needs no metric; it
  is a :class:`ProxTransformation` so that it can go inside
  :func:`optax_l1.proximal`, which then also resets the optimizer's moments of
  the weights it zeroes.
  """


_INSIDE_PROXIMAL = contextvars.ContextVar("optax_l1_inside_proximal",
                                          default=False)


@contextlib.contextmanager
def inside_proximal():
  """Marks ``init`` calls made by :func:`optax_l1.proximal` (which supplies
  the step, so a prox needs no ``learning_rate`` of its own)."""
  token = _INSIDE_PROXIMAL.set(True)
  try:
    yield
  finally:
    _INSIDE_PROXIMAL.reset(token)


def _evaluate(value: ScalarOrSchedule, count: Optional[jax.Array]) -> Any:
  return value(count) if callable(value) else value


# Shared by every transformation that computes new parameters.


def params_required(fn: str) -> ValueError:
  return ValueError(f"`{fn}` computes new parameters: pass `params` to "
                    "`update(updates, state, params)`.")


def check_learning_rate_at_init(fn: str, learning_rate: Any) -> None:
  """A prox without ``learning_rate`` needs :func:`optax_l1.proximal`."""
  if learning_rate is None and not _INSIDE_PROXIMAL.get():
    raise ValueError(
        f"`{fn}` has no learning_rate. In optax.chain(opt, {fn}(...)) it "
        "cannot see opt's learning rate: pass the same one, "
        f"{fn}(..., learning_rate=lr), or use optax_l1.proximal(opt, "
        f"{fn}(...)), which reads it from opt.")


def chain_learning_rate(fn: str, learning_rate: Any,
                        count: Optional[jax.Array]) -> Any:
  """The learning rate of this step in a plain chain (no ``step=``)."""
  if learning_rate is None:
    raise ValueError(
        f"`{fn}` has no learning_rate: pass learning_rate=... (the "
        "optimizer's), or use it inside optax_l1.proximal(opt, ...).")
  return _evaluate(learning_rate, count)


# Run-time constraints of hyperparameters (a schedule or an injected value is
# only known then): name -> test that must hold.
_NONNEGATIVE = lambda v: v >= 0  # pylint: disable=unnecessary-lambda-assignment


def _run_time_ok(value: Any, test: Callable[[jax.Array], jax.Array]) -> Any:
  """``test`` on a JAX value (a schedule's or an injected one), as a traced
  bool; ``None`` for a Python or NumPy constant (checked at construction)."""
  if value is None or isinstance(value, (int, float, np.ndarray, np.generic)):
    return None
  return jnp.all(test(jnp.asarray(value)))


def _prox_transformation(
    fn: str,
    leaf_prox: Callable[..., jax.Array],
    learning_rate: Optional[ScalarOrSchedule],
    hyperparams: dict[str, ScalarOrSchedule],
    mask: MaskOrFn,
    per_leaf: Optional[Any] = None,
    check_leaf: Optional[Callable[[str, jax.Array], None]] = None,
    constraints: Optional[dict[str, Callable[[jax.Array], jax.Array]]] = None,
    lazy_step: bool = False,
) -> ProxTransformation:
  """Builds a proximal transformation from a per-leaf operator.

  Args:
    fn: public factory name, used in error messages.
    leaf_prox: ``leaf_prox(z, step, extra, **hyperparams) -> x`` on one leaf;
      ``extra`` is the leaf's entry of ``per_leaf`` (or ``None``).
    learning_rate: float or schedule, or ``None`` (then the step must come
      from :func:`optax_l1.proximal`).
    hyperparams: penalty hyperparameters, floats, arrays or schedules.
    mask: which leaves the prox acts on (``optax.masked`` convention).
    per_leaf: optional pytree (a prefix of params) of per-leaf extras, such as
      L1 weights.
    check_leaf: optional ``check_leaf(path, leaf)`` run on each masked leaf
      when shapes are known (``init`` and ``update``); raises on bad input.
    constraints: ``name -> test`` for hyperparameters; a scheduled or
      injected value that fails its test at run time makes the update NaN
      (constants are checked at construction). Default: every one ``>= 0``.
    lazy_step: ``leaf_prox`` accepts a :class:`LazyStep` (under
      :func:`optax_l1.proximal`).
  """
  if learning_rate is not None:
    val.check_positive(fn, "learning_rate", learning_rate)
  if constraints is None:
    constraints = {k: _NONNEGATIVE for k in hyperparams}
  scheduled = callable(learning_rate) or any(
      callable(v) for v in hyperparams.values())

  def masked_leaves(params):
    full_mask = resolve_mask(fn, mask, params)
    if per_leaf is None:
      extras = jax.tree.map(lambda _: None, params)
    else:
      try:
        extras = jax.tree.map(
            lambda e, sub: jax.tree.map(lambda _: e, sub), per_leaf, params)
      except ValueError as e:
        raise ValueError(
            f"`{fn}`: per-leaf values must have the structure of params (or "
            f"a prefix of it); got {jax.tree.structure(per_leaf)} for params "
            f"{jax.tree.structure(params)}.") from e
    return full_mask, extras

  def check_shapes(where, p, hp, extra):
    """Array hyperparameters must broadcast to the leaf, keeping its shape."""
    named = list(hp.items()) + ([("weights", extra)] if extra is not None
                                else [])
    for name, v in named:
      shape = tuple(np.shape(v))
      if not shape:
        continue
      try:
        out = np.broadcast_shapes(shape, tuple(np.shape(p)))
      except ValueError:
        out = None
      if out != tuple(np.shape(p)):
        raise ValueError(
            f"`{fn}({name}=...)` of shape {shape} does not broadcast to the "
            f"parameter at {where} of shape {tuple(np.shape(p))} without "
            "changing its shape.")

  def check(params, full_mask, extras, hp):
    def one(path, p, m, extra):
      if m and p is not None:
        where = path_str(path)
        val.check_float_leaf(fn, where, p)
        if check_leaf is not None:
          check_leaf(where, p)
        check_shapes(where, p, hp, extra)
    jax.tree.map_with_path(one, params, full_mask, extras,
                           is_leaf=lambda x: x is None)

  def init_fn(params):
    check_learning_rate_at_init(fn, learning_rate)
    full_mask, extras = masked_leaves(params)
    hp0 = {k: _evaluate(v, jnp.zeros([], jnp.int32))
           for k, v in hyperparams.items()}
    check(params, full_mask, extras, hp0)
    if scheduled:
      return ProxState(count=jnp.zeros([], jnp.int32))
    return optax.EmptyState()

  def update_fn(updates, state, params=None, *, step=None, **extra_args):
    del extra_args
    if params is None:
      raise params_required(fn)
    full_mask, extras = masked_leaves(params)
    count = state.count if scheduled else None
    hp = {k: _evaluate(v, count) for k, v in hyperparams.items()}
    check(params, full_mask, extras, hp)
    if step is None:
      lr = chain_learning_rate(fn, learning_rate, count)
      step = jax.tree.map(lambda p: None if p is None else lr, params,
                          is_leaf=lambda x: x is None)
      tests = [_run_time_ok(lr, _NONNEGATIVE)]
    else:
      tests = []
    tests += [_run_time_ok(hp[k], t) for k, t in constraints.items()]
    tests = [t for t in tests if t is not None]
    ok = functools.reduce(jnp.logical_and, tests) if tests else None

    def leaf(u, p, m, extra, st):
      if u is None or not m:
        return u
      # Same arithmetic as optax.apply_updates, so `z` is the point the
      # unregularized step would have reached.
      z = jnp.asarray(p + u).astype(p.dtype)
      x = leaf_prox(z, st, extra, **hp)
      if ok is not None:  # a hyperparameter out of range: a visible NaN
        x = jnp.where(ok, x, jnp.full((), jnp.nan, x.dtype))
      return (x - p).astype(u.dtype)

    new_updates = jax.tree.map(leaf, updates, params, full_mask, extras,
                               step, is_leaf=lambda x: x is None)
    if scheduled:
      state = ProxState(count=optax.safe_increment(state.count))
    return new_updates, state

  update_fn.prox_info = (fn, learning_rate)
  update_fn.lazy_step = lazy_step
  return ProxTransformation(init_fn, update_fn)


def prox_l1(
    lam: ScalarOrSchedule,
    learning_rate: Optional[ScalarOrSchedule] = None,
    *,
    weights: Optional[Any] = None,
    nonnegative: bool = False,
    mask: MaskOrFn = None,
) -> ProxTransformation:
  """Proximal L1 step (soft thresholding): exact zeros for the lasso.

  Solves ``min_w f(w) + lam * sum_i c_i |w_i|`` when it goes last in a chain:
  with ``z = params + updates`` and step ``eta = learning_rate``
  (times the optimizer's per-coordinate metric under
  :func:`optax_l1.proximal`), the new parameters are

  .. math::

    w_i = \\operatorname{sign}(z_i) \\max(|z_i| - \\eta_i\\, \\lambda c_i, 0),

  or ``max(z_i - eta_i lam c_i, 0)`` with ``nonnegative=True`` (the penalty is
  then ``lam * sum_i c_i w_i`` plus the constraint ``w >= 0``).

  ``optax.chain(optax.sgd(lr), prox_l1(lam, lr))`` is ISTA and converges to
  the lasso solution (``sklearn.linear_model.Lasso(alpha=lam)`` when ``f`` is
  ``||y - Xw||^2 / (2 n)``). After Adam use
  ``optax_l1.proximal(optax.adam(lr), prox_l1(lam))``, which reads the
  learning rate and Adam's metric from the optimizer.

  Args:
    lam: penalty strength, >= 0; a float or an optax schedule.
    learning_rate: the optimizer's learning rate (the same float or schedule),
      > 0. Leave it out under :func:`optax_l1.proximal`, which reads it from
      the optimizer; required in a plain ``optax.chain``.
    weights: optional per-leaf weights ``c`` (weighted / adaptive lasso): a
      pytree with the structure of params (or a prefix of it) of non-negative
      scalars or arrays broadcastable to each leaf.
    nonnegative: constrain the weights to be >= 0.
    mask: which leaves to regularize, as in ``optax.masked``: a pytree of bools
      or a callable of params. Unmasked leaves take the plain step.

  Returns:
    A :class:`ProxTransformation`; its state is ``optax.EmptyState()`` unless
    a hyperparameter is a schedule (then a step count).

  Examples:
    >>> import jax, jax.numpy as jnp, optax, optax_l1
    >>> params = {"w": jnp.array([1.0, 0.02, -0.5]), "b": jnp.array([0.01])}
    >>> opt = optax.chain(optax.sgd(0.1),
    ...                   optax_l1.prox_l1(1.0, 0.1, mask={"w": True, "b": False}))
    >>> state = opt.init(params)
    >>> grads = jax.tree.map(jnp.zeros_like, params)
    >>> updates, state = opt.update(grads, state, params)
    >>> optax.apply_updates(params, updates)["w"]
    Array([ 0.9,  0. , -0.4], dtype=float32)

  References:
    Beck & Teboulle, A Fast Iterative Shrinkage-Thresholding Algorithm for
    Linear Inverse Problems, SIAM J. Imaging Sci. 2009.
  """
  fn = "prox_l1"
  val.check_nonnegative(fn, "lam", lam)
  if weights is not None:
    for w in jax.tree.leaves(weights):
      val.check_nonnegative(fn, "weights", w)
  if not isinstance(nonnegative, bool):
    raise TypeError(f"`{fn}(nonnegative=...)` must be a bool; "
                    f"got {nonnegative!r}.")

  def leaf_prox(z, step, weight, lam):
    if nonnegative:
      t = step if weight is None else step * jnp.asarray(weight)
      return ops.nonneg_l1(z, t, lam)
    return ops.l1(z, step, lam, weight)

  return _prox_transformation(fn, leaf_prox, learning_rate, {"lam": lam},
                              mask, per_leaf=weights)


def prox_elastic_net(
    l1: ScalarOrSchedule,
    l2: ScalarOrSchedule,
    learning_rate: Optional[ScalarOrSchedule] = None,
    *,
    mask: MaskOrFn = None,
) -> ProxTransformation:
  """Proximal elastic-net step: ``R(w) = l1 ||w||_1 + (l2 / 2) ||w||_2^2``.

  .. math::

    w_i = \\frac{\\operatorname{sign}(z_i)\\max(|z_i| - \\eta_i l_1, 0)}
               {1 + \\eta_i l_2}.

  scikit-learn's ``ElasticNet(alpha, l1_ratio)`` is ``l1 = alpha * l1_ratio``,
  ``l2 = alpha * (1 - l1_ratio)``.

  Args:
    l1: L1 strength, >= 0 (float or schedule).
    l2: L2 strength, >= 0 (float or schedule).
    learning_rate: the optimizer's learning rate, > 0 (optional under
      :func:`optax_l1.proximal`; see :func:`prox_l1`).
    mask: which leaves to regularize (``optax.masked`` convention).

  Returns:
    A :class:`ProxTransformation`.

  Examples:
    >>> import jax.numpy as jnp, optax, optax_l1
    >>> params = jnp.array([2.0, 0.05])
    >>> opt = optax.chain(optax.sgd(0.5), optax_l1.prox_elastic_net(1.0, 2.0, 0.5))
    >>> updates, _ = opt.update(jnp.zeros(2), opt.init(params), params)
    >>> optax.apply_updates(params, updates)
    Array([0.75, 0.  ], dtype=float32)
  """
  fn = "prox_elastic_net"
  val.check_nonnegative(fn, "l1", l1)
  val.check_nonnegative(fn, "l2", l2)

  def leaf_prox(z, step, _, l1, l2):
    return ops.elastic_net(z, step, l1, l2)

  return _prox_transformation(fn, leaf_prox, learning_rate,
                              {"l1": l1, "l2": l2}, mask)


def _one_of_axis_groups(fn: str, axis: Any, groups: Any, mask: Any) -> bool:
  """True for ``groups=``, False for ``axis=``; raises unless exactly one."""
  if (axis is None) == (groups is None):
    raise ValueError(f"`{fn}` needs exactly one of `axis=` (groups within "
                     f"each leaf) and `groups=` (groups across leaves); got "
                     f"axis={axis!r}, groups={groups!r}.")
  if groups is not None and mask is not None:
    raise ValueError(f"`{fn}(groups=...)` says which leaves are penalized; "
                     "`mask=` applies to `axis=` only.")
  return groups is not None


def _axis_checker(fn: str, axis: ops.Axis) -> Callable[[str, jax.Array], None]:
  if isinstance(axis, bool) or not (
      isinstance(axis, int)
      or (isinstance(axis, (tuple, list))
          and all(isinstance(a, int) and not isinstance(a, bool)
                  for a in axis))):
    raise TypeError(f"`{fn}(axis=...)` must be an int or a tuple of ints; "
                    f"got {axis!r}.")

  def check_leaf(where: str, p: jax.Array) -> None:
    try:
      ops.normalize_axis(axis, jnp.ndim(p))
    except ValueError as e:
      raise ValueError(f"`{fn}(axis={axis!r})` does not fit the parameter at "
                       f"{where} of shape {jnp.shape(p)}: {e}") from None
  return check_leaf


def prox_group_lasso(
    lam: ScalarOrSchedule,
    learning_rate: Optional[ScalarOrSchedule] = None,
    *,
    axis: Optional[ops.Axis] = None,
    groups: Any = None,
    scale_by_size: bool = False,
    mask: MaskOrFn = None,
) -> ProxTransformation:
  """Proximal group-lasso step: zeroes whole rows / columns / filters / heads.

  ``R(W) = lam_g * sum_g ||W_g||_2`` where the norm runs over ``axis`` and
  every index of the other axes is one group (``lam_g = lam``, or
  ``lam * sqrt(group size)`` with ``scale_by_size``). For a Dense kernel
  ``(inputs, outputs)``: ``axis=1`` groups rows (removes inputs, feature
  selection), ``axis=0`` groups columns (removes neurons); for a conv kernel
  ``(h, w, in, out)``, ``axis=(0, 1, 2)`` groups filters.

  With a scalar step: ``W_g = max(0, 1 - eta lam_g / ||Z_g||) Z_g``. Under
  :func:`optax_l1.proximal` the step is per coordinate and the prox is solved
  exactly in that metric (see :func:`optax_l1.ops.group_lasso`).

  With ``lam`` unscaled this is scikit-learn's ``MultiTaskLasso(alpha=lam)``
  for ``W`` of shape ``(n_features, n_tasks)`` and ``axis=1``.

  Groups that span several leaves (an attention head: its query, key and
  value columns and its output rows; a hidden unit: its input column, bias
  and output row) are given with ``groups=`` instead of ``axis=``: for every
  leaf a ``(set name, axis)`` tuple or ``None``, usually written by
  :func:`optax_l1.group_by_path`. Group ``g`` of a set is the union of its
  leaves' slices at index ``g`` along their axes
  (:func:`optax_l1.ops.group_lasso_sets`); leaves in no set are left alone.

  Args:
    lam: group penalty strength, >= 0 (float or schedule).
    learning_rate: the optimizer's learning rate, > 0 (optional under
      :func:`optax_l1.proximal`; see :func:`prox_l1`).
    axis: axis or axes of each leaf that the group norm runs over; checked
      against every masked leaf's rank. Exactly one of ``axis`` and
      ``groups``.
    groups: group sets across leaves: a callable of params (e.g.
      :func:`optax_l1.group_by_path`) or a pytree like params of
      ``(name, axis)`` / ``None``.
    scale_by_size: multiply ``lam`` by ``sqrt(group size)``.
    mask: which leaves to regularize (``optax.masked`` convention; with
      ``axis`` only).

  Returns:
    A :class:`ProxTransformation`.

  Examples:
    >>> import jax.numpy as jnp, optax, optax_l1
    >>> kernel = jnp.array([[3.0, 4.0], [0.3, 0.4]])  # rows: inputs
    >>> opt = optax.chain(optax.sgd(1.0), optax_l1.prox_group_lasso(1.0, 1.0, axis=1))
    >>> updates, _ = opt.update(jnp.zeros((2, 2)), opt.init(kernel), kernel)
    >>> optax.apply_updates(kernel, updates)
    Array([[2.4, 3.2],
           [0. , 0. ]], dtype=float32)

  References:
    Yuan & Lin, Model selection and estimation in regression with grouped
    variables, JRSS-B 2006; Scardapane et al., Group sparse regularization for
    deep neural networks, Neurocomputing 2017.
  """
  fn = "prox_group_lasso"
  val.check_nonnegative(fn, "lam", lam)
  if _one_of_axis_groups(fn, axis, groups, mask):
    from optax_l1 import _group_sets  # pylint: disable=g-import-not-at-top
    return _group_sets.transformation(fn, groups, lam, learning_rate, None,
                                      scale_by_size)
  check_leaf = _axis_checker(fn, axis)

  def leaf_prox(z, step, _, lam):
    return _group.group_lasso_one(z, step, lam, axis, scale_by_size, None)

  return _prox_transformation(fn, leaf_prox, learning_rate, {"lam": lam},
                              mask, check_leaf=check_leaf, lazy_step=True)


def prox_sparse_group_lasso(
    l1: ScalarOrSchedule,
    lam: ScalarOrSchedule,
    learning_rate: Optional[ScalarOrSchedule] = None,
    *,
    axis: Optional[ops.Axis] = None,
    groups: Any = None,
    scale_by_size: bool = False,
    mask: MaskOrFn = None,
) -> ProxTransformation:
  """Proximal sparse-group-lasso step: ``l1 ||W||_1 + lam_g sum_g ||W_g||_2``.

  Zeroes whole groups and single weights inside the surviving groups. The
  prox is the group prox of the soft-thresholded point (exact, also in a
  diagonal metric): see :func:`optax_l1.ops.sparse_group_lasso`.

  Args:
    l1: elementwise L1 strength, >= 0.
    lam: group strength, >= 0.
    learning_rate: the optimizer's learning rate, > 0 (optional under
      :func:`optax_l1.proximal`; see :func:`prox_l1`).
    axis: axes the group norm runs over (as in :func:`prox_group_lasso`).
    groups: group sets across leaves, instead of ``axis`` (as in
      :func:`prox_group_lasso`).
    scale_by_size: multiply ``lam`` by ``sqrt(group size)``.
    mask: which leaves to regularize (``optax.masked`` convention; with
      ``axis`` only).

  Returns:
    A :class:`ProxTransformation`.

  Examples:
    >>> import jax.numpy as jnp, optax, optax_l1
    >>> w = jnp.array([[4.0, 0.5], [0.6, 0.6]])
    >>> opt = optax.chain(optax.sgd(1.0),
    ...                   optax_l1.prox_sparse_group_lasso(0.5, 1.0, 1.0, axis=1))
    >>> updates, _ = opt.update(jnp.zeros((2, 2)), opt.init(w), w)
    >>> optax.apply_updates(w, updates)
    Array([[2.5, 0. ],
           [0. , 0. ]], dtype=float32)

  References:
    Simon, Friedman, Hastie & Tibshirani, A sparse-group lasso, JCGS 2013.
  """
  fn = "prox_sparse_group_lasso"
  val.check_nonnegative(fn, "l1", l1)
  val.check_nonnegative(fn, "lam", lam)
  if _one_of_axis_groups(fn, axis, groups, mask):
    from optax_l1 import _group_sets  # pylint: disable=g-import-not-at-top
    return _group_sets.transformation(fn, groups, lam, learning_rate, l1,
                                      scale_by_size)
  check_leaf = _axis_checker(fn, axis)

  def leaf_prox(z, step, _, l1, lam):
    return _group.group_lasso_one(z, step, lam, axis, scale_by_size, l1)

  return _prox_transformation(fn, leaf_prox, learning_rate,
                              {"l1": l1, "lam": lam}, mask,
                              check_leaf=check_leaf, lazy_step=True)


def hard_threshold(
    lam: ScalarOrSchedule,
    learning_rate: Optional[ScalarOrSchedule] = None,
    *,
    mask: MaskOrFn = None,
) -> ProxTransformation:
  """Proximal L0 step (hard thresholding): ``R(w) = lam * ||w||_0``.

  Keeps ``z_i`` iff ``z_i^2 > 2 eta_i lam`` (``|z_i| > sqrt(2 eta_i lam)``),
  else sets it to exactly 0. Not convex: the iteration is iterative hard
  thresholding (Blumensath & Davies 2009); it finds a local solution.

  Args:
    lam: price of one non-zero weight, >= 0 (float or schedule).
    learning_rate: the optimizer's learning rate, > 0 (optional under
      :func:`optax_l1.proximal`; see :func:`prox_l1`).
    mask: which leaves to regularize (``optax.masked`` convention).

  Returns:
    A :class:`ProxTransformation`.

  Examples:
    >>> import jax.numpy as jnp, optax, optax_l1
    >>> w = jnp.array([0.5, 1.5, -2.0])
    >>> opt = optax.chain(optax.sgd(1.0), optax_l1.hard_threshold(0.5, 1.0))
    >>> updates, _ = opt.update(jnp.zeros(3), opt.init(w), w)
    >>> optax.apply_updates(w, updates)
    Array([ 0. ,  1.5, -2. ], dtype=float32)
  """
  fn = "hard_threshold"
  val.check_nonnegative(fn, "lam", lam)

  def leaf_prox(z, step, _, lam):
    return ops.l0(z, step, lam)

  return _prox_transformation(fn, leaf_prox, learning_rate, {"lam": lam}, mask)


def prox_mcp(
    lam: ScalarOrSchedule,
    gamma: ScalarOrSchedule,
    learning_rate: Optional[ScalarOrSchedule] = None,
    *,
    mask: MaskOrFn = None,
) -> ProxTransformation:
  """Proximal MCP step (minimax concave penalty, firm thresholding).

  ``P(w) = lam |w| - w^2 / (2 gamma)`` for ``|w| <= gamma lam`` and
  ``gamma lam^2 / 2`` beyond: L1 near zero, no shrinkage of large weights.
  Not convex. See :func:`optax_l1.ops.mcp` for the prox.

  Args:
    lam: penalty strength, >= 0.
    gamma: concavity, > 0 (``gamma -> inf`` is the lasso).
    learning_rate: the optimizer's learning rate, > 0 (optional under
      :func:`optax_l1.proximal`; see :func:`prox_l1`).
    mask: which leaves to regularize (``optax.masked`` convention).

  Returns:
    A :class:`ProxTransformation`.

  Examples:
    >>> import jax.numpy as jnp, optax, optax_l1
    >>> w = jnp.array([0.05, 0.3, 5.0])
    >>> opt = optax.chain(optax.sgd(0.1), optax_l1.prox_mcp(1.0, 3.0, 0.1))
    >>> updates, _ = opt.update(jnp.zeros(3), opt.init(w), w)
    >>> optax.apply_updates(w, updates)  # 0.3 -> (0.3 - 0.1) / (1 - 0.1/3)
    Array([0.        , 0.20689656, 5.        ], dtype=float32)

  References:
    Zhang, Nearly unbiased variable selection under minimax concave penalty,
    Annals of Statistics 2010.
  """
  fn = "prox_mcp"
  val.check_nonnegative(fn, "lam", lam)
  val.check_positive(fn, "gamma", gamma)

  def leaf_prox(z, step, _, lam, gamma):
    return ops.mcp(z, step, lam, gamma)

  return _prox_transformation(fn, leaf_prox, learning_rate,
                              {"lam": lam, "gamma": gamma}, mask,
                              constraints={"lam": _NONNEGATIVE,
                                           "gamma": lambda g: g > 0})


def prox_scad(
    lam: ScalarOrSchedule,
    a: ScalarOrSchedule,
    learning_rate: Optional[ScalarOrSchedule] = None,
    *,
    mask: MaskOrFn = None,
) -> ProxTransformation:
  """Proximal SCAD step (smoothly clipped absolute deviation).

  ``P(w)`` is ``lam |w|`` up to ``lam``, quadratic up to ``a lam``, constant
  ``(a + 1) lam^2 / 2`` beyond. Not convex. See :func:`optax_l1.ops.scad`.

  Args:
    lam: penalty strength, >= 0.
    a: shape parameter, > 2 (Fan & Li suggest 3.7).
    learning_rate: the optimizer's learning rate, > 0 (optional under
      :func:`optax_l1.proximal`; see :func:`prox_l1`).
    mask: which leaves to regularize (``optax.masked`` convention).

  Returns:
    A :class:`ProxTransformation`.

  Examples:
    >>> import jax.numpy as jnp, optax, optax_l1
    >>> w = jnp.array([0.05, 0.5, 5.0])
    >>> opt = optax.chain(optax.sgd(0.1), optax_l1.prox_scad(1.0, 3.7, 0.1))
    >>> updates, _ = opt.update(jnp.zeros(3), opt.init(w), w)
    >>> optax.apply_updates(w, updates)
    Array([0. , 0.4, 5. ], dtype=float32)

  References:
    Fan & Li, Variable selection via nonconcave penalized likelihood and its
    oracle properties, JASA 2001.
  """
  fn = "prox_scad"
  val.check_nonnegative(fn, "lam", lam)
  val.check_greater(fn, "a", a, 2.0)

  def leaf_prox(z, step, _, lam, a):
    return ops.scad(z, step, lam, a)

  return _prox_transformation(fn, leaf_prox, learning_rate,
                              {"lam": lam, "a": a}, mask,
                              constraints={"lam": _NONNEGATIVE,
                                           "a": lambda a: a > 2})


def prox_lq(
    lam: ScalarOrSchedule,
    learning_rate: Optional[ScalarOrSchedule] = None,
    *,
    q: float = 0.5,
    mask: MaskOrFn = None,
) -> ProxTransformation:
  """Proximal Lq step, ``R(w) = lam * sum_i |w_i|^q`` for ``q`` in {1/2, 2/3}.

  Closed-form thresholding (Xu et al. 2012 for 1/2, Cao et al. 2013 for 2/3),
  as in ProxGen. Not convex. See :func:`optax_l1.ops.lq`.

  Args:
    lam: penalty strength, >= 0.
    learning_rate: the optimizer's learning rate, > 0 (optional under
      :func:`optax_l1.proximal`; see :func:`prox_l1`).
    q: ``0.5`` or ``2/3`` (static).
    mask: which leaves to regularize (``optax.masked`` convention).

  Returns:
    A :class:`ProxTransformation`.

  Examples:
    >>> import jax.numpy as jnp, optax, optax_l1
    >>> w = jnp.array([0.1, 3.0])
    >>> opt = optax.chain(optax.sgd(1.0), optax_l1.prox_lq(1.0, 1.0, q=0.5))
    >>> updates, _ = opt.update(jnp.zeros(2), opt.init(w), w)
    >>> new = optax.apply_updates(w, updates)
    >>> bool(new[0] == 0.0), bool(2.5 < new[1] < 3.0)
    (True, True)

  References:
    Yun, Lozano & Yang, Adaptive proximal gradient methods for structured
    neural networks (ProxGen), NeurIPS 2021.
  """
  fn = "prox_lq"
  val.check_nonnegative(fn, "lam", lam)
  ops.lq(jnp.zeros(()), 1.0, 0.0, q)  # validates q at construction

  def leaf_prox(z, step, _, lam):
    return ops.lq(z, step, lam, q)

  return _prox_transformation(fn, leaf_prox, learning_rate, {"lam": lam}, mask)
