"""How an optax optimizer scales its step: the metric :func:`proximal` uses.

This module and :mod:`optax_l1._proximal` are the only places that read
optax's internals (the closures of its update functions and its state types).

Model. An optimizer built from optax's links maps the gradient ``g`` to the
update ``u = G_t * m`` where ``m`` estimates ``grad f`` (``m -> g`` at a fixed
point) and the gain ``G_t`` is the product of what each link does to it:

==============================================  ===============================
link (optax function)                           factor
==============================================  ===============================
``scale(s)``, ``scale_by_learning_rate(lr)``    ``s``, ``-lr``
``scale_by_schedule(f)`` (scheduled lr)         ``f(count)``
``clip_by_global_norm(c)``                      ``min(1, c / ||x||)``, ``x``
                                                the gradient it receives
``trace(decay)`` (momentum, Nesterov)           ``1 / (1 - decay)``: the step of
                                                a constant gradient
``ema(decay)``                                  ``1``
``scale_by_adam`` (adam, adamw, nadam, nadamw)  ``1 / (sqrt(nu_hat + eps_root)
                                                + eps)``
``scale_by_amsgrad`` (amsgrad)                  the same with ``nu_max``
``scale_by_rms`` (rmsprop)                      ``rsqrt(nu_hat + eps)`` or
                                                ``1 / (sqrt(nu_hat) + eps)``
``scale_by_stddev`` (centered rmsprop)          the same, ``nu_hat - mu_hat^2``
``scale_by_rss`` (adagrad)                      ``rsqrt(sum_sq + eps)``
``add_decayed_weights``, ``identity``,          ``1`` (they do not scale ``g``)
``masked`` of those
``MultiSteps(k)``                               ``0`` on the steps that only
                                                accumulate (``k`` with
                                                ``use_grad_mean=False``)
``apply_if_finite``                             ``0`` on the steps it skips
==============================================  ===============================

``chain`` / ``named_chain`` multiply their links' factors;
``inject_hyperparams`` rebuilds its optimizer from the hyperparameters in its
state, as it does itself, so injected values are read at every step. A
preconditioner's factor is taken from its state after this step's update.

A linear scaling ``s`` before the preconditioner changes the gradient the
moments see (``m -> s g``), after it the step; either way the update of the
true gradient is multiplied by ``s``, so every factor enters ``G_t`` the same
way. Where a coordinate's second moment is exactly 0 (no gradient has reached
it yet: an embedding row not seen so far, a zero input, a dead unit) the
preconditioner has no information and its factor is ``1``: the identity
metric, ISTA's step, instead of ``1 / eps``.

The proximal step then uses ``step = -G_t`` (per coordinate), which must be
``>= 0``: a step of 0 (a learning rate at 0, a skipped or accumulating step)
leaves the point unchanged, and a negative one (an ascending optimizer) gives
a NaN update.

Anything else is refused by name: an unknown link is never taken as neutral.
"""

from __future__ import annotations

import dataclasses
import types
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_l1._lazy import LazyStep

# Kinds of link.
SCALE = "scale"
SCHEDULE = "schedule"
CLIP = "clip"
NEUTRAL = "neutral"
TRACE = "trace"
EMA = "ema"
CHAIN = "chain"
INJECT = "inject"
MULTISTEPS = "multisteps"
IF_FINITE = "if_finite"
PRECONDITIONERS = ("adam", "amsgrad", "rms", "stddev", "rss")
# Links whose update is a cheap pure function of (input, state, params):
# proximal re-runs them to know what a later clip_by_global_norm receives.
_RERUNNABLE = (SCALE, SCHEDULE, CLIP, NEUTRAL)

# Qualified name of an optax update function -> (kind, closure variables).
_LEAVES: dict[str, tuple[str, tuple[str, ...]]] = {
    "scale.<locals>.update_fn": (SCALE, ("step_size",)),
    "scale_by_schedule.<locals>.update_fn": (SCHEDULE, ("step_size_fn",)),
    "clip_by_global_norm.<locals>.update_fn": (CLIP, ("max_norm",)),
    "add_decayed_weights.<locals>.update_fn": (NEUTRAL, ()),
    "identity.<locals>.update_fn": (NEUTRAL, ()),
    "trace.<locals>.update_fn": (TRACE, ("decay",)),
    # An exponential moving average of the gradient: gain 1 at a fixed point.
    "ema.<locals>.update_fn": (EMA, ()),
    "scale_by_adam.<locals>.update_fn": ("adam", ("b2", "eps", "eps_root")),
    "scale_by_amsgrad.<locals>.update_fn": (
        "amsgrad", ("eps", "eps_root")),
    "scale_by_rms.<locals>.update_fn": (
        "rms", ("decay", "eps", "eps_in_sqrt", "bias_correction")),
    "scale_by_stddev.<locals>.update_fn": (
        "stddev", ("decay", "eps", "eps_in_sqrt", "bias_correction")),
    "scale_by_rss.<locals>.update_fn": ("rss", ("eps",)),
}
# Closure variables that older optax versions do not have, with the value
# those versions behave as.
_DEFAULTS = {"eps_root": 0.0, "eps_in_sqrt": True, "bias_correction": False}

_INJECT = ("inject_hyperparams.<locals>.wrapped_transform.<locals>.update_fn",
           "inject_stateful_hyperparams.<locals>.wrapped_transform.<locals>."
           "update_fn")

# Links that have no per-coordinate metric, by optax function name: the
# optimizers that use them and why no prox step can be taken in them.
_REFUSED: dict[str, tuple[str, str]] = {
    "scale_by_trust_ratio": (
        "lamb, lars, fromage",
        "a trust ratio rescales each layer's step by its weight norm, so the "
        "step is not a per-coordinate metric of the gradient"),
    "scale_by_sign": (
        "sign_sgd, signum",
        "a sign step does not shrink with the gradient, so no threshold has "
        "the lasso as its fixed point"),
    "scale_by_lion": ("lion", "its step is the sign of a momentum"),
    "scale_by_novograd": (
        "novograd", "its second moments are per layer, not per coordinate"),
    "scale_by_factored_rms": (
        "adafactor",
        "factored second moments with relative step sizes and update "
        "clipping"),
    "scale_by_sm3": ("sm3", "its second moments are shared by cover sets"),
    "scale_by_adamax": (
        "adamax, adamaxw",
        "its infinity-norm metric max(b2 u, |g| + eps) is never without "
        "eps, so a weight with no gradient gets the step lr / eps"),
    "scale_by_yogi": (
        "yogi", "its second moment moves additively by sign, not as a "
        "moment of g^2"),
    "scale_by_radam": (
        "radam",
        "its rectification switches between momentum SGD and Adam steps"),
    "scale_by_belief": (
        "adabelief",
        "its second moment (g - m)^2 goes to 0 at a fixed point, so its "
        "metric there is 1 / eps"),
    "scale_by_adadelta": ("adadelta", "its step depends on past updates"),
    "scale_by_adan": ("adan", "it mixes gradient differences into the step"),
    "scale_by_rprop": ("rprop", "its step is sign-based"),
    "scale_by_polyak": ("polyak_sgd", "its step size comes from the loss "
                        "value"),
    "scale_by_lbfgs": ("lbfgs", "its metric is not diagonal"),
    "scale_by_optimistic_gradient": (
        "optimistic_gradient_descent, optimistic_adam, optimistic_adam_v2",
        "it extrapolates with the previous gradient"),
    "add_noise": ("noisy_sgd", "it adds noise to the gradient"),
    "set_to_zero": (
        "optax.set_to_zero / freezing with optax.masked",
        "a frozen leaf has no step, and proximal would still shrink it; "
        "leave such leaves out of the prox with its mask= and freeze them "
        "outside proximal"),
    "partition": (
        "optax.partition / optax.multi_transform",
        "different optimizers for different leaves are not supported; give "
        "each group its own proximal(...) inside optax.partition"),
}
_REFUSED["multi_transform"] = _REFUSED["partition"]

SUPPORTED = (
    "adam, adamw (with or without a weight-decay mask), nadam, nadamw, "
    "amsgrad, rmsprop (plain or centered, with or without momentum), "
    "adagrad and sgd (with or without momentum / nesterov), with constant or "
    "scheduled learning rates, optionally after optax.clip_by_global_norm / "
    "optax.scale / optax.add_decayed_weights in an optax.chain, and under "
    "optax.inject_hyperparams, optax.MultiSteps or optax.apply_if_finite")


class RefusedError(ValueError):
  """``proximal`` cannot take a prox in this optimizer's metric."""


@dataclasses.dataclass(frozen=True)
class Link:
  """One link of an optimizer, in the order its update runs.

  ``update`` is the link's optax update function; ``hp`` the hyperparameters
  read from its closure; ``children`` ``(state key, Link)`` pairs of a chain
  or the wrapped optimizer of a wrapper (key into the wrapper's state).
  """

  kind: str
  name: str
  update: Callable[..., Any]
  hp: dict[str, Any] = dataclasses.field(default_factory=dict)
  children: tuple[tuple[Any, "Link"], ...] = ()
  obj: Any = None  # MultiSteps instance; inject's (factory, other_hps)


def _cells(fn: Any) -> dict[str, Any]:
  out = {}
  for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
    try:
      out[name] = cell.cell_contents
    except ValueError:  # empty cell
      pass
  return out


def _fn_name(fn: Any) -> str:
  qual = getattr(fn, "__qualname__", type(fn).__name__)
  return qual.split(".<locals>")[0]


def _refuse(fn: Any) -> RefusedError:
  name = _fn_name(fn)
  module = getattr(fn, "__module__", "") or ""
  if name in _REFUSED:
    users, why = _REFUSED[name]
    return RefusedError(
        f"proximal() cannot take a prox in the metric of `{name}` (used by "
        f"{users}): {why}. Supported: {SUPPORTED}.")
  where = f"optax's `{name}`" if module.startswith("optax") else (
      f"`{module}.{name}`" if module else f"`{name}`")
  return RefusedError(
      f"proximal() does not know how {where} scales the step, so it cannot "
      f"take the prox in the optimizer's metric (nothing unknown is assumed "
      f"to be neutral). Supported: {SUPPORTED}.")


def link_of(tx_or_update: Any) -> Link:
  """The :class:`Link` tree of an optax transformation (or update function).

  Raises:
    RefusedError: naming the first link that has no per-coordinate metric or
      that this module does not know.
  """
  fn = getattr(tx_or_update, "update", tx_or_update)
  if isinstance(fn, types.MethodType) and isinstance(fn.__self__,
                                                     optax.MultiSteps):
    ms = fn.__self__
    inner = link_of(ms.inner_opt)
    return Link(MULTISTEPS, "MultiSteps", fn,
                children=(("inner_opt_state", inner),), obj=ms)
  if not isinstance(fn, types.FunctionType):
    raise _refuse(fn)
  qual = fn.__qualname__
  module = fn.__module__ or ""
  if not module.startswith("optax"):
    raise _refuse(fn)
  free = _cells(fn)
  if qual == "with_extra_args_support.<locals>.update":
    return link_of(free["tx"])
  if qual == "chain.<locals>.update_fn":
    return Link(CHAIN, "chain", fn, children=tuple(
        (i, link_of(f)) for i, f in enumerate(free["update_fns"])))
  if qual == "named_chain.<locals>.update_fn":
    return Link(CHAIN, "named_chain", fn, children=tuple(
        (name, link_of(t)) for name, t in free["transforms"]))
  if qual == "masked.<locals>.update_fn":
    inner = link_of(free["inner"])
    if not _all_neutral(inner):
      raise RefusedError(
          f"proximal(): optax.masked(...) around `{_first_name(inner)}` gives "
          "the masked leaves a different step from the others, which is not "
          f"supported (only masked weight decay is). Supported: {SUPPORTED}.")
    return Link(NEUTRAL, "masked", fn)
  if qual in _INJECT:
    return Link(INJECT, "inject_hyperparams", fn,
                obj=(free["inner_factory"], dict(free["other_hps"]),
                     dict(free.get("sched_hps", {}))))
  if qual == "apply_if_finite.<locals>.update":
    return Link(IF_FINITE, "apply_if_finite", fn,
                hp={"max_consecutive_errors": free["max_consecutive_errors"]},
                children=(("inner_state", link_of(free["inner"])),))
  if qual in _LEAVES:
    kind, names = _LEAVES[qual]
    hp = {}
    for n in names:
      if n in free:
        hp[n] = free[n]
      elif n in _DEFAULTS:
        hp[n] = _DEFAULTS[n]
      else:
        raise RefusedError(
            f"proximal(): could not read `{n}` of optax's `{_fn_name(fn)}` "
            "(an optax version this library does not know).")
    return Link(kind, _fn_name(fn), fn, hp=hp)
  raise _refuse(fn)


def _all_neutral(link: Link) -> bool:
  if link.kind == CHAIN:
    return all(_all_neutral(c) for _, c in link.children)
  return link.kind == NEUTRAL


def _first_name(link: Link) -> str:
  for _, c in link.children:
    if not _all_neutral(c):
      return _first_name(c)
  return link.name


def inject_link(link: Link, hyperparams: dict[str, Any]) -> Link:
  """The optimizer an ``inject_hyperparams`` link runs with ``hyperparams``."""
  factory, other, _ = link.obj
  return link_of(factory(**other, **hyperparams))


def _inner_state(link: Link, state: Any) -> Any:
  return None if state is None else getattr(state, link.children[0][0])


def check_order(link: Link, state: Any = None) -> None:
  """Refuses what the gain model cannot account for.

  At most one preconditioner, and a ``clip_by_global_norm`` only where the
  gradient it receives can be recomputed (after scalings, clips and weight
  decay only). ``state`` is the optimizer's state (from ``init``): it gives
  the hyperparameters of ``inject_hyperparams`` links, which are skipped
  when it is ``None``.
  """
  found: list[str] = []

  def walk(l: Link, st: Any, tracked: Optional[str]) -> Optional[str]:
    """Returns the name of the first link whose output is not recomputed
    (None: every link so far is)."""
    if l.kind == CHAIN:
      for key, c in l.children:
        tracked = walk(c, None if st is None else st[key], tracked)
      return tracked
    if l.kind == INJECT:
      if st is None:
        return tracked or l.name
      return walk(inject_link(l, dict(st.hyperparams)), st.inner_state,
                  tracked)
    if l.kind in (MULTISTEPS, IF_FINITE):
      walk(l.children[0][1], _inner_state(l, st), tracked)
      return tracked or l.name
    if l.kind == CLIP and tracked is not None:
      raise RefusedError(
          f"proximal(): optax.clip_by_global_norm comes after `{tracked}`, "
          "so the factor it applies cannot be recomputed. Clip the gradient "
          "first: optax.chain(optax.clip_by_global_norm(...), optimizer).")
    if l.kind in PRECONDITIONERS:
      found.append(l.name)
      if len(found) > 1:
        raise RefusedError(
            f"proximal(): the optimizer has more than one per-coordinate "
            f"preconditioner ({', '.join(found)}); it can only take the prox "
            "in one metric.")
    if l.kind in _RERUNNABLE:
      return tracked
    return tracked or l.name

  walk(link, state, None)


# ---------------------------------------------------------------------------
# The gain at one step.
# ---------------------------------------------------------------------------


def _tree_norm(x: Any) -> jax.Array:
  leaves = [l for l in jax.tree.leaves(x) if hasattr(l, "dtype")]
  if not leaves:
    return jnp.zeros((), jnp.float32)
  sq = [jnp.sum(jnp.square(l.astype(jnp.promote_types(l.dtype, jnp.float32))))
        for l in leaves]
  return jnp.sqrt(sum(sq[1:], sq[0]))


def _preconditioner(kind: str, hp: dict[str, Any], st: Any) -> Any:
  """Per-coordinate factor of one preconditioner, from its state after the
  step (``1`` where the second moment is exactly 0), in each moment's dtype,
  as a :class:`optax_l1._lazy.LazyStep` per leaf."""
  eps = hp["eps"]

  def none_safe(fn, *trees):
    # Lazy: proximal passes fn and the moments to the proxes, which evaluate
    # it where they use it (fused, or slab by slab).
    return jax.tree.map(
        lambda *a: None if a[0] is None else LazyStep(fn, a),
        *trees, is_leaf=lambda x: x is None)

  def no_info(v, p):
    return jnp.where(v == 0, jnp.ones((), p.dtype), p)

  def like(value, x):
    return jnp.asarray(value).astype(x.dtype)

  if kind == "adam":
    def adam(nu):
      c2 = 1 - like(hp["b2"], nu) ** st.count.astype(nu.dtype)
      v_hat = nu / c2
      return no_info(nu, 1 / (jnp.sqrt(v_hat + like(hp["eps_root"], nu))
                              + like(eps, nu)))
    return none_safe(adam, st.nu)
  if kind == "amsgrad":
    def ams(nu_max):
      return no_info(nu_max, 1 / (jnp.sqrt(nu_max + like(hp["eps_root"],
                                                         nu_max))
                                  + like(eps, nu_max)))
    return none_safe(ams, st.nu_max)
  if kind == "rss":
    return none_safe(lambda s: no_info(s, jax.lax.rsqrt(s + like(eps, s))),
                     st.sum_of_squares)

  def rms(nu, mu=None):
    if hp["bias_correction"]:
      c = 1 - like(hp["decay"], nu) ** st.count.astype(nu.dtype)
    else:
      c = jnp.ones((), nu.dtype)
    n = nu / c
    if mu is not None:
      m = mu / c
      n = n - m * m
    e = like(eps, nu)
    p = jax.lax.rsqrt(n + e) if hp["eps_in_sqrt"] else 1 / (jnp.sqrt(n) + e)
    return no_info(nu, p)
  if kind == "stddev":
    return none_safe(rms, st.nu, st.mu)
  return none_safe(rms, st.nu)


def _rerun(link: Link, x: Any, old: Any, params: Any) -> Any:
  if x is None:
    return None
  out, _ = link.update(x, old, params)
  return out


def gain(link: Link, x: Any, old: Any, new: Any, params: Any,
         dtype: Any) -> tuple[jax.Array, Any, Any]:
  """``(scalar, elementwise, x_out)``: this step's gain ``G_t`` of ``link``.

  Args:
    link: from :func:`link_of`.
    x: what the link received (the gradient, for the first link), or
      ``None`` once it cannot be recomputed cheaply.
    old, new: the link's state before and after this step's update.
    params: the params passed to ``update``.
    dtype: float dtype of the scalar factors (the params' widest).

  Returns:
    A scalar factor, a per-coordinate factor tree (or ``None``), and what the
    link passed on (or ``None``).
  """
  one = jnp.ones((), dtype)
  k = link.kind
  if k == CHAIN:
    s, e = one, None
    for key, child in link.children:
      cs, ce, x = gain(child, x, old[key], new[key], params, dtype)
      s = s * cs
      e = ce if ce is not None else e
    return s, e, x
  if k == SCALE:
    return (jnp.asarray(link.hp["step_size"]).astype(dtype), None,
            _rerun(link, x, old, params))
  if k == SCHEDULE:
    return (jnp.asarray(link.hp["step_size_fn"](old.count)).astype(dtype),
            None, _rerun(link, x, old, params))
  if k == CLIP:
    norm = _tree_norm(x).astype(dtype)
    max_norm = jnp.asarray(link.hp["max_norm"]).astype(dtype)
    # optax's test (`norm < max_norm`: not clipped); a NaN norm gives NaN.
    c = jnp.where(norm < max_norm, one, max_norm / norm)
    return c, None, _rerun(link, x, old, params)
  if k == NEUTRAL:
    return one, None, _rerun(link, x, old, params)
  if k == EMA:
    return one, None, None
  if k == TRACE:
    return 1 / (1 - jnp.asarray(link.hp["decay"]).astype(dtype)), None, None
  if k in PRECONDITIONERS:
    return one, _preconditioner(k, link.hp, new), None
  if k == INJECT:
    inner = inject_link(link, dict(new.hyperparams))
    return gain(inner, x, old.inner_state, new.inner_state, params, dtype)
  if k == IF_FINITE:
    s, e, _ = gain(link.children[0][1], x, old.inner_state, new.inner_state,
                   params, dtype)
    applied = new.last_finite | (
        new.notfinite_count > link.hp["max_consecutive_errors"])
    return jnp.where(applied, s, jnp.zeros((), dtype)), e, None
  if k == MULTISTEPS:
    ms = link.obj
    acc = None
    if x is not None:
      acc = jax.tree.map(
          lambda g, a: ms._acc_update(g, a.astype(g.dtype),  # pylint: disable=protected-access
                                      n_acc=old.mini_step),
          x, old.acc_grads)
    s, e, _ = gain(link.children[0][1], acc, old.inner_opt_state,
                   new.inner_opt_state, params, dtype)
    if not ms._use_grad_mean:  # pylint: disable=protected-access
      # The inner optimizer sees the sum of k gradients.
      s = s * jnp.asarray(
          ms._every_k_schedule(old.gradient_step)).astype(dtype)  # pylint: disable=protected-access
    emitted = new.gradient_step != old.gradient_step
    return jnp.where(emitted, s, jnp.zeros((), dtype)), e, None
  raise AssertionError(k)  # link_of admits no other kind


# ---------------------------------------------------------------------------
# The learning rate, for checking a prox's own `learning_rate`.
# ---------------------------------------------------------------------------


def learning_rate_at(link: Link, state: Any, count: int) -> Optional[float]:
  """``|product of the scalings after the preconditioner|`` at ``count``.

  Those scalings are the learning rate (``scale_by_learning_rate`` is a
  ``scale`` or ``scale_by_schedule`` after the preconditioner); with no
  preconditioner every scaling is. ``state`` is the optimizer's state from
  ``init`` (for ``inject_hyperparams``). Returns ``None`` where a value is
  not known at ``count`` (a traced state under ``jax.jit``, a stateful
  schedule).
  """
  before: list[Any] = []
  after: list[Any] = []
  seen = [False]

  def inject_hparams(l: Link, st: Any) -> Optional[dict]:
    hp = dict(st.hyperparams)
    for k, sched in l.obj[2].items():
      fn = getattr(sched, "schedule_fn", None)
      if fn is not None:
        hp[k] = fn(jnp.asarray(count, jnp.int32))
      elif count:
        return None
    return hp

  def walk(l: Link, st: Any) -> bool:
    if l.kind == CHAIN:
      return all(walk(c, st[key]) for key, c in l.children)
    if l.kind == INJECT:
      hp = inject_hparams(l, st)
      return hp is not None and walk(inject_link(l, hp), st.inner_state)
    if l.kind in (MULTISTEPS, IF_FINITE):
      return walk(l.children[0][1], _inner_state(l, st))
    if l.kind in PRECONDITIONERS:
      seen[0] = True
    elif l.kind == SCALE:
      (after if seen[0] else before).append(l.hp["step_size"])
    elif l.kind == SCHEDULE:
      (after if seen[0] else before).append(
          l.hp["step_size_fn"](jnp.asarray(count, jnp.int32)))
    return True

  if not walk(link, state):
    return None
  out = 1.0
  for v in (after if seen[0] else before):
    if isinstance(v, jax.core.Tracer):
      return None
    out *= float(np.asarray(v))
  return abs(out)
