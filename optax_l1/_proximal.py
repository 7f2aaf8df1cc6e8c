"""``proximal``: proximal steps in the optimizer's own metric.

This module and :mod:`optax_l1._metric` (which reads how each link of an
optax optimizer scales the step) are the only ones that know optimizer
states.

An optimizer takes the step ``u = -eta * P * m`` where ``m`` estimates the
gradient (``m -> grad f`` at a fixed point) and ``eta * P`` is a
per-coordinate step read from its links and state (Adam:
``lr / (sqrt(v_hat) + eps)``; see :mod:`optax_l1._metric` for every link).
The proximal step that solves ``min f + R`` with that optimizer is the prox in
the metric ``D = diag(1 / (eta P))``:

.. math::

  w_{t+1} = \\operatorname*{argmin}_x \\; \\tfrac12 \\|x - (w_t + u_t)\\|_{D}^2
            + R(x).

At a fixed point ``w* = prox_D(w* - D^{-1} grad f(w*))``, which is the
optimality condition ``0 in grad f(w*) + dR(w*)`` for any positive ``D``: the
same solution scikit-learn finds. A plain threshold ``eta * lam`` after Adam has
a different fixed point (a lasso reweighted by ``sqrt(v_hat)``), which is why
this module exists (ProxGen, Yun et al. 2021; Deleu & Bengio 2021).
"""

from __future__ import annotations

import math
import types
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax._src import transform as _otx  # state types (public via optax.*)

from optax_l1 import _metric
from optax_l1 import _transforms
from optax_l1._lazy import LazyStep
from optax_l1._lazy import materialize
from optax_l1._transforms import ProxTransformation
from optax_l1._transforms import PruneTransformation

# Counts at which a prox's own learning_rate is compared with the optimizer's.
_CHECK_COUNTS = (0, 1, 2, 10, 100, 1_000, 10_000, 100_000, 1_000_000)


class ProximalState(NamedTuple):
  """State of :func:`proximal`."""

  inner_state: optax.OptState  # the wrapped optimizer's state, unchanged.
  prox_states: tuple[optax.OptState, ...]  # one per prox transformation.


def _is_injected_prox(tx: Any) -> bool:
  """``optax.inject_hyperparams(optax_l1.prox_...)(...)``: its update forwards
  extra args (the step) to the prox it rebuilds every step."""
  update = getattr(tx, "update", None)
  if not isinstance(update, types.FunctionType) or not update.__closure__:
    return False
  free = dict(zip(update.__code__.co_freevars, update.__closure__))
  cell = free.get("inner_factory")
  try:
    factory = cell.cell_contents if cell is not None else None
  except ValueError:
    return False
  return (getattr(factory, "__module__", "") or "").startswith("optax_l1.")


def _prox_learning_rate(p: Any, prox_state: Any) -> tuple[str, Any]:
  """``(name, learning_rate)`` a prox was given (``None``: not given)."""
  info = getattr(p.update, "prox_info", None)
  if info is not None:
    return info
  # inject_hyperparams(prox_...): its learning rate is in its state.
  hp = getattr(prox_state, "hyperparams", {}) or {}
  return "the injected prox", hp.get("learning_rate")


def _check_learning_rates(link: _metric.Link, inner_state: Any,
                          proxes: tuple[Any, ...],
                          prox_states: tuple[Any, ...]) -> None:
  for p, st in zip(proxes, prox_states):
    name, lr = _prox_learning_rate(p, st)
    if lr is None:
      continue
    for t in _CHECK_COUNTS:
      want = _metric.learning_rate_at(link, inner_state, t)
      got = lr(jnp.asarray(t, jnp.int32)) if callable(lr) else lr
      if want is None or isinstance(got, jax.core.Tracer):
        continue
      got = float(np.asarray(got))
      if not math.isclose(got, want, rel_tol=1e-6, abs_tol=0.0):
        raise ValueError(
            f"proximal(): `{name}(learning_rate=...)` is {got!r} at step {t}, "
            f"but the optimizer's learning rate there is {want!r}. Under "
            "proximal the prox's step is read from the optimizer; leave out "
            f"the prox's learning_rate (`{name}(...)` without it), or give "
            "the same float or schedule as the optimizer.")


def _widest_float(params: Any) -> Any:
  dtype = jnp.dtype(jnp.float32)
  for leaf in jax.tree.leaves(params):
    d = jnp.result_type(leaf)
    if jnp.issubdtype(d, jnp.floating) and jnp.finfo(d).bits > jnp.finfo(
        dtype).bits:
      dtype = d
  return dtype


def _step(link: _metric.Link, grads: Any, old: Any, new: Any,
          params: Any) -> Any:
  """Per-coordinate step ``-G_t`` of this update, a pytree like params.

  Where the optimizer's gain is positive (it ascends) the step is NaN.
  """
  dtype = _widest_float(params)
  scalar, elem, _ = _metric.gain(link, grads, old, new, params, dtype)
  step = -scalar
  step = jnp.where(step >= 0, step, jnp.full((), jnp.nan, dtype))
  if elem is None:
    return jax.tree.map(lambda p: None if p is None else step, params,
                        is_leaf=lambda x: x is None)
  def leaf(e):
    if e is None:
      return None
    return e.map(lambda p: step.astype(p.dtype) * p)
  return jax.tree.map(
      leaf, elem,
      is_leaf=lambda x: x is None or isinstance(x, LazyStep))


# Fields of each known state that hold one value per parameter.
_MOMENT_FIELDS = {
    optax.ScaleByAdamState: ("mu", "nu"),
    _otx.ScaleByAmsgradState: ("mu", "nu", "nu_max"),
    _otx.ScaleByRmsState: ("nu",),
    _otx.ScaleByRmsWithCountState: ("nu",),
    _otx.ScaleByRStdDevState: ("mu", "nu"),
    _otx.ScaleByRStdDevWithCountState: ("mu", "nu"),
    _otx.ScaleByRssState: ("sum_of_squares",),
    optax.TraceState: ("trace",),
}


def _reset_moments(inner_state: Any, pruned: Any) -> Any:
  """Zeroes the per-parameter moments where ``pruned`` (a bool tree) is True."""
  def reset(st):
    fields = _MOMENT_FIELDS.get(type(st))
    if fields is None:
      return st
    def zero(m, p):
      if m is None or p is None:
        return m
      return jnp.where(p, jnp.zeros((), m.dtype), m)
    return st._replace(**{
        f: jax.tree.map(zero, getattr(st, f), pruned,
                        is_leaf=lambda x: x is None) for f in fields})
  return jax.tree.map(reset, inner_state,
                      is_leaf=lambda x: type(x) in _MOMENT_FIELDS)


def proximal(
    inner: optax.GradientTransformation,
    *proxes: ProxTransformation,
) -> optax.GradientTransformationExtraArgs:
  """Runs ``inner`` and applies ``proxes`` in ``inner``'s per-coordinate metric.

  ``optax.chain(optax.adam(lr), prox_l1(lam, lr))`` thresholds every weight by
  ``lr * lam``, but Adam moves each weight by about ``lr`` whatever its
  gradient, so that chain solves a reweighted problem, not the lasso you wrote
  down. ``proximal(optax.adam(lr), prox_l1(lam))`` thresholds by
  ``lr * lam / (sqrt(v_hat) + eps)``, the prox in Adam's metric, whose fixed
  point is the true optimum of ``f + R``.

  Each prox takes ``z = params + u`` with ``u`` the inner update, and the
  per-coordinate step ``-G_t`` that ``inner`` applies to the gradient at this
  step (:mod:`optax_l1._metric`): its learning rate (constant, scheduled or
  injected, read at every step), the factor of a ``clip_by_global_norm`` or
  ``scale`` before it, ``1 / (1 - momentum)``, and the preconditioner read
  from its state after this step. Where the preconditioner's second moment is
  exactly 0 (no gradient has reached a weight yet) the step is the learning
  rate alone (ISTA's), never ``lr / eps``. Nothing unknown is taken as
  neutral: a link that has no per-coordinate metric, or that this library
  does not know, is refused when ``proximal`` is built (or at ``init`` inside
  ``inject_hyperparams``).

  The proxes' own ``learning_rate`` is optional here: leave it out. If given,
  it must equal ``inner``'s (compared at ``init`` at steps 0, 1, 2, 10, ...,
  10^6); the step always comes from ``inner``.

  Mask transformations (``magnitude_prune``, ``nm_prune``, ``keep_zeros``)
  may be given too: they need no metric, and the inner optimizer's moments of
  the weights they zero are reset to 0. Several proxes are applied in order
  (use ``mask`` to give different leaves different penalties). No copy of any
  moment is kept: the state is the inner state plus the proxes' (usually
  empty) states.

  With ``optax.adamw(weight_decay > 0)`` the decoupled decay stays in the
  inner update; the fixed point is then that of AdamW's decay plus the prox.

  Args:
    inner: an optax optimizer: adam, adamw (with or without a weight-decay
      mask), nadam, nadamw, amsgrad, rmsprop (plain or centered, with or
      without momentum), adagrad, sgd (with or without momentum / nesterov);
      constant or scheduled learning rate; optionally in an ``optax.chain``
      after ``clip_by_global_norm``, ``scale`` or ``add_decayed_weights``;
      plain or under ``optax.inject_hyperparams``, ``optax.MultiSteps`` or
      ``optax.apply_if_finite``.
    *proxes: :class:`ProxTransformation` s (``prox_l1``, ``prox_group_lasso``,
      ...), or such a factory under ``optax.inject_hyperparams``.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with state
    :class:`ProximalState`.

  Raises:
    TypeError: if a prox is not a :class:`ProxTransformation`.
    ValueError: if ``inner`` has a link with no per-coordinate metric or an
      unknown one (at construction; inside ``inject_hyperparams`` at
      ``init``), or (at ``init``) if a prox's ``learning_rate`` differs from
      ``inner``'s.

  Examples:
    >>> import jax, jax.numpy as jnp, optax, optax_l1
    >>> X = jax.random.normal(jax.random.key(0), (50, 5))
    >>> y = X[:, 0] * 2.0
    >>> loss = lambda w: 0.5 * jnp.mean((X @ w - y) ** 2)
    >>> opt = optax_l1.proximal(optax.adam(0.05), optax_l1.prox_l1(0.1))
    >>> w = jnp.zeros(5); state = opt.init(w)
    >>> for _ in range(500):
    ...   updates, state = opt.update(jax.grad(loss)(w), state, w)
    ...   w = optax.apply_updates(w, updates)
    >>> [bool(v == 0.0) for v in w]
    [False, True, True, True, True]

  References:
    Yun, Lozano & Yang, Adaptive proximal gradient methods for structured
    neural networks (ProxGen), NeurIPS 2021. Deleu & Bengio, Structured
    sparsity inducing adaptive optimizers for deep learning, 2021.
  """
  if isinstance(inner, optax.MultiSteps):
    inner = inner.gradient_transformation()
  if not isinstance(inner, optax.GradientTransformation):
    raise TypeError(f"proximal(inner=...) must be an optax "
                    f"GradientTransformation; got {type(inner).__name__}.")
  if not proxes:
    raise ValueError("proximal() needs at least one prox transformation, "
                     "e.g. proximal(optax.adam(lr), optax_l1.prox_l1(lam)).")
  for i, p in enumerate(proxes):
    if not (isinstance(p, ProxTransformation) or _is_injected_prox(p)):
      raise TypeError(
          f"proximal(): argument {i + 1} after the optimizer must be an "
          f"optax_l1 prox transformation (prox_l1, prox_group_lasso, ...); "
          f"got {type(p).__name__}. Chain other transformations into `inner`.")
  inner = optax.with_extra_args_support(inner)
  link = _metric.link_of(inner)  # refuses unknown links now
  _metric.check_order(link)

  def init_fn(params):
    inner_state = inner.init(params)
    _metric.check_order(link, inner_state)  # inside inject_hyperparams too
    with _transforms.inside_proximal():
      prox_states = tuple(p.init(params) for p in proxes)
    _check_learning_rates(link, inner_state, proxes, prox_states)
    return ProximalState(inner_state, prox_states)

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError("proximal() computes new parameters: pass `params` to "
                       "`update(updates, state, params)`.")
    grads = updates
    updates, inner_state = inner.update(grads, state.inner_state, params,
                                        **extra_args)
    step = _step(link, grads, state.inner_state, inner_state, params)
    new_states = []
    pruned = None
    eager_step = None
    for p, s in zip(proxes, state.prox_states):
      if getattr(p.update, "lazy_step", False):
        step_p = step
      else:
        if eager_step is None:
          eager_step = materialize(step)
        step_p = eager_step
      updates, s = p.update(updates, s, params, step=step_p)
      new_states.append(s)
      if isinstance(p, PruneTransformation):
        zero = jax.tree.map(
            lambda u, w: None if u is None else (w + u) == 0, updates, params,
            is_leaf=lambda x: x is None)
        pruned = zero if pruned is None else jax.tree.map(
            jnp.logical_or, pruned, zero)
    if pruned is not None:
      inner_state = _reset_moments(inner_state, pruned)
    return updates, ProximalState(inner_state, tuple(new_states))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
