"""``proximal``: proximal steps in the optimizer's own metric.

This is the one module that reads optimizer states.

An adaptive optimizer takes the step ``u = -eta * P * m`` where ``m`` estimates
the gradient (``m -> grad f`` at a fixed point) and ``P`` is a per-coordinate
preconditioner read from its state (Adam: ``1 / (sqrt(v_hat) + eps)``). The
proximal step that solves ``min f + R`` with that optimizer is the prox in the
metric ``D = diag(1 / (eta P))``:

.. math::

  w_{t+1} = \\operatorname*{argmin}_x \\; \\tfrac12 \\|x - (w_t + u_t)\\|_{D}^2
            + R(x).

At a fixed point ``w* = prox_D(w* - D^{-1} grad f(w*))``, which is the
optimality condition ``0 in grad f(w*) + dR(w*)`` for any positive ``D``: the
same solution scikit-learn finds. A plain threshold ``eta * lam`` after Adam has
a different fixed point (a lasso reweighted by ``sqrt(v_hat)``), which is why
this module exists (ProxGen, Yun et al. 2021; Deleu & Bengio 2021).

Preconditioners read here (``P``; the learning rate ``eta`` comes from each
prox transformation's own ``learning_rate``):

================================  =============================================
optax state                       ``P``
================================  =============================================
``ScaleByAdamState`` (adam,       ``1 / (sqrt(nu / (1 - b2^t) + eps_root) + eps)``
adamw, nadam, nadamw)
``ScaleByRmsState`` (rmsprop)     ``rsqrt(nu_hat + eps)`` or
                                  ``1 / (sqrt(nu_hat) + eps)`` (``eps_in_sqrt``)
``ScaleByRStdDevState``           the same with ``nu_hat - mu_hat^2``
(centered rmsprop)
``ScaleByRssState`` (adagrad)     ``rsqrt(sum_sq + eps)`` where ``sum_sq > 0``,
                                  else ``0``
``TraceState`` (momentum,         scalar ``1 / (1 - decay)``: a heavy-ball or
nesterov)                         Nesterov step with constant gradient ``g`` is
                                  ``eta g / (1 - decay)``
================================  =============================================

Hyperparameters that are not in the state (``b2``, ``eps``, ``decay``, ...) are
read from ``optax.inject_hyperparams``'s state when the optimizer was built
with it, and otherwise once, at construction, from the optax update functions
the optimizer is built of. An optimizer with a state this module does not know
is refused with an error naming the state; nothing is guessed.
"""

from __future__ import annotations

import types
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax
from optax._src import transform as _otx  # state types (public via optax.*)
from optax.schedules import _inject as _oinj

from optax_l1._transforms import ProxTransformation
from optax_l1._transforms import PruneTransformation

_ADAM = "adam"
_RMS = "rms"
_STDDEV = "stddev"
_RSS = "rss"
_TRACE = "trace"

# State type -> kind. Types are looked up by class, never by field name.
_KINDS: dict[type, str] = {
    optax.ScaleByAdamState: _ADAM,
    _otx.ScaleByRmsState: _RMS,
    _otx.ScaleByRmsWithCountState: _RMS,
    _otx.ScaleByRStdDevState: _STDDEV,
    _otx.ScaleByRStdDevWithCountState: _STDDEV,
    _otx.ScaleByRssState: _RSS,
    optax.TraceState: _TRACE,
}

# States that do not change the per-coordinate step (containers are walked).
_NEUTRAL: tuple[type, ...] = (
    optax.EmptyState,
    optax.ScaleByScheduleState,
)
_INJECT: tuple[type, ...] = tuple(
    t for t in (getattr(_oinj, "InjectHyperparamsState", None),
                getattr(_oinj, "InjectStatefulHyperparamsState", None))
    if t is not None)

# optax update functions (by qualified name) whose closures hold the
# hyperparameters of each kind.
_UPDATE_FNS = {
    "scale_by_adam.<locals>.update_fn": _ADAM,
    "scale_by_rms.<locals>.update_fn": _RMS,
    "scale_by_stddev.<locals>.update_fn": _STDDEV,
    "scale_by_rss.<locals>.update_fn": _RSS,
    "trace.<locals>.update_fn": _TRACE,
}
_NEEDS = {
    _ADAM: ("b2", "eps", "eps_root"),
    _RMS: ("decay", "eps", "eps_in_sqrt", "bias_correction"),
    _STDDEV: ("decay", "eps", "eps_in_sqrt", "bias_correction"),
    _RSS: ("eps",),
    _TRACE: ("decay",),
}
# Names of the same hyperparameters in the alias factories that
# optax.inject_hyperparams wraps (optax.sgd / rmsprop call trace's decay
# `momentum`).
_INJECT_NAMES = {_TRACE: {"decay": "momentum"}}
_DEFAULTS = {"eps_root": 0.0, "eps_in_sqrt": True, "bias_correction": False}


class ProximalState(NamedTuple):
  """State of :func:`proximal`."""

  inner_state: optax.OptState  # the wrapped optimizer's state, unchanged.
  prox_states: tuple[optax.OptState, ...]  # one per prox transformation.


def _closure_hyperparams(tx: Any) -> tuple[dict[str, list[dict[str, Any]]],
                                           list[dict[str, Any]]]:
  """Finds optax update functions in ``tx``'s closures.

  Returns ``(found, injected)``: ``found[kind]`` lists the hyperparameter
  dicts of every update function of that kind; ``injected`` lists the static
  (non-numeric) arguments of every ``inject_hyperparams`` wrapper.
  """
  found: dict[str, list[dict[str, Any]]] = {}
  injected: list[dict[str, Any]] = []
  seen: set[int] = set()

  def cells(f):
    out = {}
    for name, cell in zip(f.__code__.co_freevars, f.__closure__ or ()):
      try:
        out[name] = cell.cell_contents
      except ValueError:  # empty cell
        pass
    return out

  def walk(obj):
    if id(obj) in seen:
      return
    seen.add(id(obj))
    if isinstance(obj, types.FunctionType):
      free = cells(obj)
      kind = _UPDATE_FNS.get(obj.__qualname__)
      if kind is not None and obj.__module__.startswith("optax"):
        found.setdefault(kind, []).append(
            {k: free[k] for k in _NEEDS[kind] if k in free})
      if "inner_factory" in free and "other_hps" in free:
        injected.append(dict(free["other_hps"]))
      for v in free.values():
        walk(v)
    elif isinstance(obj, (tuple, list)):
      for v in obj:
        walk(v)
    elif isinstance(obj, dict):
      for v in obj.values():
        walk(v)
    elif isinstance(obj, optax.GradientTransformation):
      walk(obj.update)

  walk(tx)
  return found, injected


def _unique(kind: str, records: list[dict[str, Any]]) -> Optional[dict]:
  distinct = []
  for r in records:
    if not any(r.keys() == d.keys() and all(
        _same(r[k], d[k]) for k in r) for d in distinct):
      distinct.append(r)
  if len(distinct) > 1:
    raise ValueError(
        f"proximal(): the optimizer holds {len(distinct)} `{kind}` "
        f"transformations with different hyperparameters {distinct}; it "
        "cannot tell which state each belongs to. Use one per optimizer.")
  return distinct[0] if distinct else None


def _same(a, b) -> bool:
  try:
    return bool(a == b)
  except Exception:  # pylint: disable=broad-except
    return a is b


def _walk_states(state: Any, inject: Optional[dict[str, Any]], out: list):
  """Collects ``(kind, state, injected_hyperparams)`` in state order."""
  if isinstance(state, _INJECT):
    _walk_states(state.inner_state, dict(state.hyperparams), out)
    return
  kind = _KINDS.get(type(state))
  if kind is not None:
    out.append((kind, state, inject))
    return
  if isinstance(state, _NEUTRAL) or state is None:
    return
  if isinstance(state, tuple) and not hasattr(state, "_fields"):
    for s in state:
      _walk_states(s, inject, out)
    return
  if isinstance(state, (list, dict)):
    for s in (state.values() if isinstance(state, dict) else state):
      _walk_states(s, inject, out)
    return
  if isinstance(state, (jax.Array, float, int)):
    return
  raise ValueError(
      f"proximal() does not know how the optimizer state "
      f"`{type(state).__name__}` scales the step, so it cannot take the prox "
      "in that optimizer's metric. Supported: adam, adamw, nadam, nadamw, "
      "rmsprop (plain or centered, with or without momentum), adagrad, sgd "
      "(with or without momentum / nesterov), plain or under "
      "optax.inject_hyperparams, with constant or scheduled learning rates. "
      "For another optimizer, chain the prox after it instead: "
      "optax.chain(opt, prox) (a plain learning-rate threshold).")


def _hyper(kind: str, injected: Optional[dict[str, Any]],
           static_inject: dict[str, Any], closure: Optional[dict]) -> dict:
  """The hyperparameters of one state, from inject_hyperparams or closures."""
  out: dict[str, Any] = {}
  for name in _NEEDS[kind]:
    if injected is not None:
      src = _INJECT_NAMES.get(kind, {}).get(name, name)
      if src in injected:
        out[name] = injected[src]
      elif src in static_inject:
        out[name] = static_inject[src]
      elif name in _DEFAULTS:
        out[name] = _DEFAULTS[name]
    elif closure is not None and name in closure:
      out[name] = closure[name]
    elif closure is not None and name in _DEFAULTS:
      out[name] = _DEFAULTS[name]
    if name not in out:
      raise ValueError(
          f"proximal(): could not read `{name}` of the optimizer's `{kind}` "
          "state. Build the optimizer with optax's own factories (optax.adam, "
          "optax.rmsprop, ...) or under optax.inject_hyperparams.")
  return out


def _preconditioner(inner_state, found, static_inject, params):
  """Per-coordinate step multiplier ``P`` (a pytree like params)."""
  states: list = []
  _walk_states(inner_state, None, states)
  elementwise = None
  factor = 1.0
  for kind, st, injected in states:
    hp = _hyper(kind, injected, static_inject, _unique(kind, found.get(kind, [])))
    if kind == _TRACE:
      decay = hp["decay"]
      factor = factor / (1.0 - jnp.asarray(decay, jnp.float32))
      continue
    if elementwise is not None:
      raise ValueError(
          "proximal(): the optimizer has more than one per-coordinate "
          "scaling state (e.g. two adams); it can only read one.")
    elementwise = _elementwise(kind, st, hp)
  if elementwise is None:
    return jax.tree.map(lambda p: factor, params)
  if isinstance(factor, float) and factor == 1.0:
    return elementwise
  return jax.tree.map(lambda e: e * factor.astype(e.dtype), elementwise)


def _elementwise(kind: str, st: Any, hp: dict[str, Any]):
  """``P`` from one scaling state (the state *after* this step's update)."""
  eps = hp["eps"]
  if kind == _ADAM:
    b2, eps_root = hp["b2"], hp["eps_root"]
    c2 = 1 - jnp.asarray(b2, jnp.float32) ** st.count.astype(jnp.float32)

    def adam(nu):
      v_hat = nu / c2.astype(nu.dtype)
      return 1 / (jnp.sqrt(v_hat + jnp.asarray(eps_root, nu.dtype))
                  + jnp.asarray(eps, nu.dtype))
    return jax.tree.map(adam, st.nu)
  if kind == _RSS:
    return jax.tree.map(
        lambda s: jnp.where(s > 0, jax.lax.rsqrt(s + jnp.asarray(eps, s.dtype)),
                            jnp.zeros((), s.dtype)), st.sum_of_squares)
  # rms / stddev
  count = getattr(st, "count", None)
  if hp["bias_correction"]:
    c = 1 - jnp.asarray(hp["decay"], jnp.float32) ** count.astype(jnp.float32)
  else:
    c = jnp.ones((), jnp.float32)

  def scale(nu, mu=None):
    n = nu / c.astype(nu.dtype)
    if mu is not None:
      m = mu / c.astype(mu.dtype)
      n = n - m * m
    e = jnp.asarray(eps, nu.dtype)
    if hp["eps_in_sqrt"]:
      return jax.lax.rsqrt(n + e)
    return 1 / (jnp.sqrt(n) + e)
  if kind == _STDDEV:
    return jax.tree.map(scale, st.nu, st.mu)
  return jax.tree.map(scale, st.nu)


def _is_injected_prox(tx: Any) -> bool:
  """``optax.inject_hyperparams(optax_l1.prox_...)(...)``: its update forwards
  extra args (the preconditioner) to the prox it rebuilds every step."""
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


# Fields of each known state that hold one value per parameter.
_MOMENT_FIELDS = {
    optax.ScaleByAdamState: ("mu", "nu"),
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
  down. ``proximal(optax.adam(lr), prox_l1(lam, lr))`` thresholds by
  ``lr * lam / (sqrt(v_hat) + eps)``, the prox in Adam's metric, whose fixed
  point is the true optimum of ``f + R`` (see the module docstring for every
  supported optimizer and its metric).

  Each prox takes ``z = params + u`` with ``u`` the inner update, and a
  per-coordinate step ``learning_rate * P`` with ``P`` read from the inner
  state after this step. Mask transformations (``magnitude_prune``,
  ``nm_prune``, ``keep_zeros``) may be given too: they need no metric, and the
  inner optimizer's moments of the weights they zero are reset to 0. Several proxes are applied in order (use ``mask`` to
  give different leaves different penalties). No copy of any moment is kept:
  the state is the inner state plus the proxes' (usually empty) states.

  With ``optax.adamw(weight_decay > 0)`` the decoupled decay stays in the
  inner update; the fixed point is then that of AdamW's decay plus the prox.
  With momentum SGD, ``P = 1 / (1 - momentum)``: the step the heavy ball takes
  on a constant gradient.

  Args:
    inner: an optax optimizer (adam, adamw, nadam, nadamw, rmsprop, adagrad,
      sgd with or without (nesterov) momentum; constant or scheduled learning
      rate; plain or under ``optax.inject_hyperparams``).
    *proxes: :class:`ProxTransformation` s (``prox_l1``, ``prox_group_lasso``,
      ...), or such a factory under ``optax.inject_hyperparams``, with
      ``learning_rate`` equal to ``inner``'s (the same float or schedule
      object: the prox cannot see ``inner``'s learning rate, and a different
      one changes the problem it solves).

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with state
    :class:`ProximalState`.

  Raises:
    TypeError: if a prox is not a :class:`ProxTransformation`.
    ValueError: (at ``init``) if ``inner`` holds a state whose metric is
      unknown.

  Examples:
    >>> import jax, jax.numpy as jnp, optax, optax_l1
    >>> X = jax.random.normal(jax.random.key(0), (50, 5))
    >>> y = X[:, 0] * 2.0
    >>> loss = lambda w: 0.5 * jnp.mean((X @ w - y) ** 2)
    >>> opt = optax_l1.proximal(optax.adam(0.05), optax_l1.prox_l1(0.1, 0.05))
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
  if not isinstance(inner, optax.GradientTransformation):
    raise TypeError(f"proximal(inner=...) must be an optax "
                    f"GradientTransformation; got {type(inner).__name__}.")
  if not proxes:
    raise ValueError("proximal() needs at least one prox transformation, "
                     "e.g. proximal(optax.adam(lr), optax_l1.prox_l1(lam, lr)).")
  for i, p in enumerate(proxes):
    if not (isinstance(p, ProxTransformation) or _is_injected_prox(p)):
      raise TypeError(
          f"proximal(): argument {i + 1} after the optimizer must be an "
          f"optax_l1 prox transformation (prox_l1, prox_group_lasso, ...); "
          f"got {type(p).__name__}. Chain other transformations into `inner`.")
  inner = optax.with_extra_args_support(inner)
  found, injected = _closure_hyperparams(inner)
  static_inject = _unique("inject_hyperparams", injected) or {}

  def init_fn(params):
    inner_state = inner.init(params)
    _walk_states(inner_state, None, [])  # refuse unknown states early
    return ProximalState(inner_state, tuple(p.init(params) for p in proxes))

  def update_fn(updates, state, params=None, **extra_args):
    if params is None:
      raise ValueError("proximal() computes new parameters: pass `params` to "
                       "`update(updates, state, params)`.")
    updates, inner_state = inner.update(updates, state.inner_state, params,
                                        **extra_args)
    pre = _preconditioner(inner_state, found, static_inject, params)
    new_states = []
    pruned = None
    for p, s in zip(proxes, state.prox_states):
      updates, s = p.update(updates, s, params, preconditioner=pre)
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
