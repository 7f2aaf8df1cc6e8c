"""Pruning masks as ``optax.GradientTransformation``s: exact zeros by count.

The proximal transformations decide *how much* to shrink; the ones here decide
*how many* weights are zero. Like the proximal steps they go **last** in an
``optax.chain``: they receive the chain's update ``u`` and the current
``params``, form the point the plain step would reach,

.. math::

  z = \\mathrm{params} + u, \\qquad
  \\mathrm{new} = \\mathrm{keep} \\odot z, \\qquad
  \\text{returned update} = \\mathrm{new} - \\mathrm{params},

and return ``u`` where a weight is kept and ``-params`` where it is removed,
so ``optax.apply_updates`` gives exactly ``params + u`` for kept weights and
exactly ``0.0`` for removed ones (``p + (-p)`` is ``0`` in IEEE arithmetic).

* :func:`magnitude_prune`: gradual magnitude pruning (Zhu & Gupta 2017) with a
  keep-mask in the optimizer state, per leaf or global; the mask is ranked on
  the current ``params`` (the step's ``u`` only enters through ``z``).
* :func:`optax_l1.nm_prune` (in :mod:`optax_l1._nm`): N:M structured
  sparsity (``n`` of every ``m`` consecutive weights kept), recomputed every
  step.
* :func:`keep_zeros`: weights that are exactly zero stay exactly zero (for
  fine-tuning after proximal training, pruning, or loading a sparse
  checkpoint).

The pure helpers :func:`optax_l1.magnitude_mask` and :func:`optax_l1.nm_mask`
compute the same keep-masks on plain arrays.

Ranking is exact and deterministic (:mod:`optax_l1._ranking`): the ``k``
smallest magnitudes, found through the bit patterns of ``|x|``, with ties
removed lowest row-major index first; no sort, reshape or gather. On a
single CPU device by radix histograms (2 passes over the weights for
float32, bfloat16, float16; 4 for float64; 2 more when only some of the
weights tied at the threshold go); elsewhere by a bisection of 32 (64)
counting passes (up to 31 more for a partial tie), so that on sharded
params only one count per leaf crosses devices. NaN ranks above ``inf``: a
NaN weight is never pruned, so it propagates.
"""

from __future__ import annotations

import functools
import math
import numbers
import operator
from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_l1 import _ranking
from optax_l1 import _validation as val
from optax_l1._lazy import LazyStep
from optax_l1._tree import MaskOrFn, path_str, resolve_mask
from optax_l1._transforms import PruneTransformation
from optax_l1._transforms import params_required

_SCOPES = ("layer", "global")

# magnitude_prune evaluates its schedule on the host in float64 and bakes the
# counts into the program as an int32 table (one row per mask update, one
# column per distinct (sparsity, leaf size)); beyond this many entries it
# evaluates the schedule on the device in float32 instead.
_MAX_COUNT_TABLE = 2**20


def _is_none(x: Any) -> bool:
  return x is None


# ---------------------------------------------------------------------------
# Argument checks.
# ---------------------------------------------------------------------------


def _check_int(fn: str, name: str, value: Any, minimum: int) -> int:
  if isinstance(value, bool):
    raise TypeError(f"`{fn}({name}=...)` must be an int; got {value!r}.")
  try:
    v = operator.index(value)
  except TypeError:
    raise TypeError(f"`{fn}({name}=...)` must be an int; "
                    f"got {value!r}.") from None
  if v < minimum:
    raise ValueError(f"`{fn}({name}=...)` must be >= {minimum}; got {v!r}.")
  return v


def _is_scalar(x: Any) -> bool:
  if isinstance(x, numbers.Number):
    return True
  return hasattr(x, "ndim") and hasattr(x, "dtype") and x.ndim == 0


def _check_fraction(fn: str, name: str, value: Any,
                    where: Optional[str] = None) -> None:
  """Raises unless a concrete ``value`` is a real number in ``[0, 1)``."""
  at = "" if where is None else f" at {where}"
  if isinstance(value, jax.core.Tracer):
    return
  if (isinstance(value, (bool, np.bool_)) or not _is_scalar(value)
      or val.concrete_float(value) is None):
    raise TypeError(f"`{fn}({name}=...)` must be a float in [0, 1) or a "
                    f"pytree of them; got {value!r}{at}.")
  v = val.concrete_float(value)
  if not 0.0 <= v < 1.0:  # also rejects NaN
    raise ValueError(f"`{fn}({name}=...)` must be in [0, 1); got {v!r}{at}.")


def _check_float_leaves(fn: str, params: Any, full_mask: Any) -> None:
  def one(path, p, m):
    if m and p is not None:
      val.check_float_leaf(fn, path_str(path), p)
  jax.tree.map_with_path(one, params, full_mask, is_leaf=_is_none)


def _plain_point(p: jax.Array, u: jax.Array) -> jax.Array:
  # Same arithmetic as optax.apply_updates: the point the plain step reaches.
  return jnp.asarray(p + u).astype(p.dtype)


def _drop(u: jax.Array, p: jax.Array, keep: jax.Array) -> jax.Array:
  """``u`` where kept, ``-p`` elsewhere (``p + (-p)`` is exactly ``0``).

  Where ``u`` is NaN or inf the dropped update is NaN, so that it stays
  visible instead of disappearing with the weight. (Written as selects:
  ``-p + 0 * u`` made XLA:CPU materialize ``u``, a full-size buffer at every
  step.)
  """
  bad = jnp.full((), jnp.nan, u.dtype)
  dropped = jnp.where(jnp.isfinite(u), jnp.negative(p).astype(u.dtype), bad)
  return jnp.where(keep, u, dropped).astype(u.dtype)


# ---------------------------------------------------------------------------
# Gradual magnitude pruning.
# ---------------------------------------------------------------------------


class MagnitudePruneState(NamedTuple):
  """State of :func:`magnitude_prune`: a step count and the keep-mask.

  The mask lives in the optimizer state so that it is checkpointed (msgpack,
  orbax) and sharded together with the rest of the optimizer. It is a pytree
  like params: a bool array (1 byte per weight) for every masked leaf,
  ``optax.MaskedNode()`` for unmasked leaves, ``None`` for ``None`` leaves.
  """

  count: jax.Array  # shape=(), int32: number of updates applied so far.
  mask: Any  # shape=each masked leaf's, bool: True = kept, False = pruned.


def magnitude_prune(
    sparsity: Any,
    *,
    begin_step: int = 0,
    end_step: int = 0,
    update_every: int = 1,
    power: float = 3,
    scope: str = "layer",
    mask: MaskOrFn = None,
) -> PruneTransformation:
  """Gradual magnitude pruning (Zhu & Gupta 2017) with an exact zero count.

  Goes last in an ``optax.chain``. With the update count ``t`` (before this
  step), the mask is recomputed at the steps

  .. math::

    \\mathrm{begin} \\le t \\le \\mathrm{end}, \\qquad
    (t - \\mathrm{begin}) \\bmod \\mathrm{update\\_every} = 0,

  to the target fraction of zeros

  .. math::

    s_t = s \\left(1 - (1 - \\pi_t)^{\\mathrm{power}}\\right), \\qquad
    \\pi_t = \\operatorname{clip}\\!\\left(
      \\frac{t - \\mathrm{begin}}{\\mathrm{end} - \\mathrm{begin}}, 0, 1\\right)

  (``pi_t = 1`` when ``end == begin``: one-shot pruning at ``begin``). At an
  update the *current* weights ``params`` (the iterate this step starts from,
  before this step's update ``u``) are ranked by ``|params|``, with the
  weights pruned so far ranked below all others (below exact zeros too), and
  exactly

  * ``round(s_t * size)`` weights of every masked leaf (``scope="layer"``), or
  * ``round(s_t * total)`` weights of all masked leaves ranked jointly
    (``scope="global"``: a leaf of small-magnitude weights loses more)

  are removed: the smallest magnitudes, and among equal magnitudes the lower
  flat index first (under ``"global"``, the earlier leaf in
  ``jax.tree.leaves(params)`` order first). NaN ranks above ``inf``, so a NaN
  weight is never pruned and propagates; a NaN or inf update of a pruned
  weight gives a NaN update there, so it is not hidden by the pruning. Since the weights pruned so far come
  first, the pruned set only grows while ``s_t`` grows (as in Zhu & Gupta);
  should the count ever drop (a mask edited by hand, a state restored under a
  different schedule), the pruned weights of highest flat index are the ones
  that return, from their current value (0).

  The counts are computed on the host in float64, exactly as
  ``round(sparsity * (1 - (1 - progress) ** power) * size)`` in Python
  (``round`` is half-to-even, as ``np.rint``), and stored in the program as an
  int32 table with one row per mask update and one column per distinct
  (sparsity, leaf size); the update step only indexes it. For schedules whose
  table would exceed ``2**20`` entries they are evaluated on the device in
  float32 instead, and may then differ by one where ``s_t * size`` lies within
  float32 round-off of a half-integer. The new parameters are

  .. math::

    \\mathrm{params}_{t+1} = \\mathrm{keep}_t \\odot
      (\\mathrm{params}_t + u_t),

  with ``keep_t`` the mask computed from ``|params_t|`` at an update step
  and the stored mask otherwise: kept weights take exactly the plain step
  ``params + u``, removed ones are exactly ``0.0`` in their dtype, so after
  every update step exactly the counted number of weights is masked to zero.
  (Ranking the weights the step starts from, as Zhu & Gupta prune the
  current weights every ``update_every`` steps, keeps ``u`` out of the mask
  computation: a step that only applies the stored mask then costs what
  ``jnp.where(keep, u, -params)`` costs, fused with the inner optimizer's
  update.)

  Before ``begin_step`` nothing is pruned. Between updates and after
  ``end_step`` the last mask is kept and a pruned weight's step is discarded,
  so pruned weights stay exactly 0 even when the loss pulls them away. Choose
  ``end_step - begin_step`` as a multiple of ``update_every`` so that the last
  update reaches ``sparsity``.

  In a plain chain the inner optimizer's moments of pruned weights are left as
  they are; since pruned weights are held at 0 they do not come back until
  the mask changes. Under ``optax_l1.proximal(opt, magnitude_prune(...))``
  the optimizer's moments of every weight the mask zeroes (Adam's ``mu`` and
  ``nu``, momentum traces, RMSprop / Adagrad accumulators) are also reset to
  0, so a weight that is later revived starts fresh instead of carrying stale
  momentum. (This schedule's pruned set only grows, so for
  ``magnitude_prune`` alone the reset changes nothing; it matters for
  ``nm_prune``, whose pattern can move, and for masks edited by hand.)

  The mask is stored in the state as one ``bool`` (1 byte) per masked weight.
  Recomputing it costs 2 histogram passes over the masked weights on a
  single CPU device, 32 counting passes elsewhere (float64: 4 and 64), plus
  2 (up to 31) when only some of the weights tied at the threshold go, and
  runs only at update steps (``jax.lax.cond`` on ``params`` and the stored
  mask); between updates, with the state donated to ``jax.jit``, the stored
  mask is neither copied nor rewritten. Under ``"global"`` at most
  ``2**31 - 2`` weights can be ranked jointly (under ``"layer"``, per
  leaf). On sharded params the only collective is an all-reduce of one count
  per leaf per pass.

  Args:
    sparsity: final fraction of zeros, a float in ``[0, 1)``; under
      ``scope="layer"`` also a pytree of such floats with the structure of
      params (or a prefix of it), one target per leaf.
    begin_step: first step (update count) at which the mask is computed, >= 0.
    end_step: last step at which the mask is recomputed, >= ``begin_step``
      (the default ``0`` with ``begin_step=0`` prunes once, at the first step).
    update_every: steps between mask updates, >= 1.
    power: exponent of the schedule, > 0 (3 in Zhu & Gupta).
    scope: ``"layer"`` (every masked leaf reaches ``s_t`` exactly) or
      ``"global"`` (the masked leaves together reach ``s_t``).
    mask: which leaves to prune, as in ``optax.masked``: a pytree of bools or
      a callable of params. Unmasked leaves take the plain step.

  Returns:
    A :class:`optax_l1.PruneTransformation` (an ``optax.GradientTransformationExtraArgs``) whose state is a
    :class:`MagnitudePruneState`.

  Raises:
    ValueError: if ``sparsity`` is outside ``[0, 1)`` or NaN, ``scope`` is
      unknown, ``scope="global"`` gets a pytree ``sparsity``,
      ``end_step < begin_step``, ``update_every < 1`` or ``power <= 0``; from
      ``update`` when ``params`` is ``None``.

  Examples:
    >>> import jax.numpy as jnp, optax, optax_l1
    >>> w = jnp.array([0.3, -2.0, 0.1, 1.5, -0.2, 0.7])
    >>> opt = optax.chain(optax.sgd(0.1), optax_l1.magnitude_prune(0.5))
    >>> state = opt.init(w)
    >>> updates, state = opt.update(jnp.zeros(6), state, w)
    >>> optax.apply_updates(w, updates)
    Array([ 0. , -2. ,  0. ,  1.5,  0. ,  0.7], dtype=float32)

    Gradually to 80% zeros from step 0 to step 4, mask updated every 2 steps
    (``s_2 = 0.8 * (1 - 0.5**3) = 0.7``):

    >>> w = jnp.linspace(-1.0, 1.0, 10)
    >>> opt = optax.chain(optax.sgd(0.1), optax_l1.magnitude_prune(
    ...     0.8, begin_step=0, end_step=4, update_every=2))
    >>> state = opt.init(w)
    >>> for _ in range(5):
    ...   updates, state = opt.update(jnp.zeros(10), state, w)
    ...   w = optax.apply_updates(w, updates)
    ...   print(int((w == 0).sum()), end=" ")
    0 0 7 7 8

  References:
    Zhu & Gupta, To prune, or not to prune: exploring the efficacy of pruning
    for model compression, ICLR Workshop 2018 (arXiv:1710.01878, 2017).
  """
  fn = "magnitude_prune"
  if not isinstance(scope, str) or scope not in _SCOPES:
    raise ValueError(f"`{fn}(scope=...)` must be one of {_SCOPES}; "
                     f"got {scope!r}.")
  per_leaf = not (_is_scalar(sparsity) or isinstance(sparsity,
                                                     jax.core.Tracer))
  if per_leaf:
    if scope == "global":
      raise ValueError(f"`{fn}(sparsity=...)` must be a single float with "
                       f"scope='global' (one target for all leaves); got the "
                       f"pytree {sparsity!r}. Use scope='layer' for per-leaf "
                       "targets.")
    leaves = jax.tree.leaves_with_path(sparsity)
    if not leaves:
      raise ValueError(f"`{fn}(sparsity=...)` is an empty pytree: "
                       f"{sparsity!r}.")
    for path, s in leaves:
      _check_fraction(fn, "sparsity", s, path_str(path))
  else:
    _check_fraction(fn, "sparsity", sparsity)
    if not isinstance(sparsity, jax.core.Tracer):
      sparsity = val.concrete_float(sparsity)
  begin_step = _check_int(fn, "begin_step", begin_step, 0)
  end_step = _check_int(fn, "end_step", end_step, 0)
  if end_step < begin_step:
    raise ValueError(f"`{fn}(end_step=...)` must be >= begin_step="
                     f"{begin_step}; got {end_step}.")
  update_every = _check_int(fn, "update_every", update_every, 1)
  if (isinstance(power, (bool, np.bool_)) or callable(power)
      or val.concrete_float(power) is None):
    raise TypeError(f"`{fn}(power=...)` must be a real number; "
                    f"got {power!r}.")
  power_f = val.concrete_float(power)
  if not (math.isfinite(power_f) and power_f > 0):
    raise ValueError(f"`{fn}(power=...)` must be finite and > 0; "
                     f"got {power_f!r}.")
  power = int(power_f) if power_f.is_integer() else power_f

  def leaf_targets(params):
    """Per-leaf sparsity, flattened like params (None leaves included)."""
    if not per_leaf:
      return None
    try:
      full = jax.tree.map(
          lambda s, sub: jax.tree.map(lambda _: s, sub, is_leaf=_is_none),
          sparsity, params, is_leaf=_is_none)
    except ValueError as e:
      raise ValueError(
          f"`{fn}(sparsity=...)` must have the structure of params (or a "
          f"prefix of it); got {jax.tree.structure(sparsity)} for params "
          f"{jax.tree.structure(params)}.") from e
    return [None if s is None else float(s)
            for s in jax.tree.leaves(full, is_leaf=_is_none)]

  schedule = _PruneSchedule(begin_step, end_step, update_every, power)

  def init_fn(params):
    full_mask = resolve_mask(fn, mask, params)
    _check_float_leaves(fn, params, full_mask)
    leaf_targets(params)
    _check_sizes(fn, scope, params, full_mask)

    def one(p, m):
      if p is None:
        return None
      if not m:
        return optax.MaskedNode()
      return jnp.ones_like(p, dtype=jnp.bool_)

    keep = jax.tree.map(one, params, full_mask, is_leaf=_is_none)
    return MagnitudePruneState(count=jnp.zeros([], jnp.int32), mask=keep)

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    if params is None:
      raise params_required(fn)
    full_mask = resolve_mask(fn, mask, params)
    _check_float_leaves(fn, params, full_mask)
    targets = leaf_targets(params)

    p_leaves, treedef = jax.tree.flatten(params, is_leaf=_is_none)
    try:
      u_leaves = treedef.flatten_up_to(updates)
      old_leaves = treedef.flatten_up_to(state.mask)
    except (ValueError, TypeError) as e:
      raise ValueError(f"`{fn}`: updates and the state's mask must have the "
                       f"structure of params {treedef}.") from e
    m_leaves = treedef.flatten_up_to(full_mask)
    idx = [i for i, (p, u, m) in enumerate(zip(p_leaves, u_leaves, m_leaves))
           if m and p is not None and u is not None]

    t = state.count

    def recompute(ps, olds):
      if not ps:
        return []
      # Ranks the current weights (this step's update is not an operand, so
      # XLA keeps fusing the inner optimizer's update with the mask below).
      # Weights pruned so far get the key -1, below every magnitude.
      fdtype, idtype, nbits = _ranking.key_dtypes([p.dtype for p in ps])
      # Computed where they are used (slab by slab while counting), so that
      # the keys are never a full-size buffer of their own.
      keys = [LazyStep(lambda p, o: jnp.where(
          o, _ranking.magnitude_keys(p, fdtype, idtype),
          jnp.asarray(-1, idtype)), (p, o)) for p, o in zip(ps, olds)]
      sizes = [math.prod(p.shape) for p in ps]
      if scope == "global":
        ks = schedule.counts(t, [sparsity], [sum(sizes)])
      else:
        ks = schedule.counts(t, [sparsity if targets is None else targets[i]
                                 for i in idx], sizes)
      return _ranking.prune_by_rank(keys, scope == "global", ks, nbits)

    _check_sizes(fn, scope, params, full_mask)
    in_range = (t >= begin_step) & (t <= end_step)
    on_turn = ((t - begin_step) % update_every) == 0
    # The operands are params and the old mask only, and nothing reads the
    # old mask after the cond: the mask is then updated in place (a donated
    # state is neither copied nor rewritten between updates).
    new_keep = jax.lax.cond(in_range & on_turn, recompute,
                            lambda ps, olds: list(olds),
                            [p_leaves[i] for i in idx],
                            [jnp.asarray(old_leaves[i]) for i in idx])

    out_updates = list(u_leaves)
    out_mask = list(old_leaves)
    for i, keep in zip(idx, new_keep):
      out_updates[i] = _drop(u_leaves[i], p_leaves[i], keep)
      out_mask[i] = keep
    new_state = MagnitudePruneState(count=optax.safe_increment(t),
                                    mask=treedef.unflatten(out_mask))
    return treedef.unflatten(out_updates), new_state

  return PruneTransformation(init_fn, update_fn)


def _check_sizes(fn: str, scope: str, params: Any, full_mask: Any) -> None:
  """int32 ranking: at most 2**31 - 2 weights per leaf, or jointly."""
  sizes = [math.prod(np.shape(p)) for p, m in zip(
      jax.tree.leaves(params, is_leaf=_is_none),
      jax.tree.leaves(full_mask, is_leaf=_is_none)) if m and p is not None]
  if scope == "global":
    _ranking.check_total(fn, sum(sizes))
  elif sizes and max(sizes) > _ranking.MAX_RANKED:
    raise ValueError(f"`{fn}` ranks in int32: a leaf can hold at most "
                     f"2**31 - 2 weights; got one of {max(sizes)}.")


class _PruneSchedule:
  """How many weights to prune at each update step (Zhu & Gupta's schedule).

  ``counts(t, targets, sizes)`` is ``round(target * (1 - (1 - progress)^power)
  * size)`` per ranking group, from an int32 table computed on the host in
  float64 (one row per mask update, one column per distinct (target, size)),
  or on the device in float32 when the table would exceed
  ``_MAX_COUNT_TABLE`` entries or a target is traced.
  """

  def __init__(self, begin_step: int, end_step: int, update_every: int,
               power: float):
    self.begin, self.end, self.every, self.power = (begin_step, end_step,
                                                    update_every, power)
    self.num_updates = (end_step - begin_step) // update_every + 1

  def host_factor(self, t: int) -> float:
    """``1 - (1 - progress)^power`` in float64, as documented."""
    if self.end == self.begin:
      progress = 1.0
    else:
      progress = min(max((t - self.begin) / (self.end - self.begin), 0.0),
                     1.0)
    return 1.0 - (1.0 - progress) ** self.power

  @functools.cached_property
  def host_factors(self) -> np.ndarray:
    return np.array([self.host_factor(self.begin + j * self.every)
                     for j in range(self.num_updates)], np.float64)

  def device_factor(self, t: jax.Array) -> jax.Array:
    """The same in float32 on the device (fallback for huge tables)."""
    if self.end == self.begin:
      return jnp.ones((), jnp.float32)
    progress = jnp.clip(
        (t - self.begin).astype(jnp.float32) / float(self.end - self.begin),
        0.0, 1.0)
    return 1.0 - (1.0 - progress) ** self.power

  def counts(self, t: jax.Array, targets: Sequence[Any],
             sizes: Sequence[int]) -> jax.Array:
    """int32 number of weights to prune per group at update step ``t``."""
    traced = any(isinstance(g, jax.core.Tracer) for g in targets)
    pairs = [] if traced else sorted(set(zip(targets, sizes)))
    if not traced and self.num_updates * len(pairs) <= _MAX_COUNT_TABLE:
      # k[j, pair] at t = begin + j * update_every.
      tgt = np.array([q[0] for q in pairs], np.float64)
      size = np.array([q[1] for q in pairs], np.float64)
      table = np.rint((tgt[None, :] * self.host_factors[:, None])
                      * size[None, :])
      table = np.clip(table, 0, size[None, :]).astype(np.int32)
      where = {q: c for c, q in enumerate(pairs)}
      col = np.array([where[q] for q in zip(targets, sizes)], np.int32)
      j = jnp.clip((t - self.begin) // self.every, 0, self.num_updates - 1)
      return jnp.asarray(table)[j][jnp.asarray(col)]
    factor = self.device_factor(t)
    return jnp.stack([jnp.clip(jnp.round(g * factor * n), 0, n).astype(
        jnp.int32) for g, n in zip(targets, sizes)])


# ---------------------------------------------------------------------------
# Keep exact zeros.
# ---------------------------------------------------------------------------


def keep_zeros(mask: MaskOrFn = None) -> PruneTransformation:
  """Weights that are exactly zero stay exactly zero.

  Goes last in an ``optax.chain``:

  .. math::

    \\mathrm{new}_i = \\begin{cases} 0 & \\mathrm{params}_i = 0 \\\\
                     \\mathrm{params}_i + u_i & \\text{otherwise,}\\end{cases}

  i.e. the returned update is ``0`` where ``params == 0`` (``-0.0`` counts as
  zero) and ``u`` elsewhere. Use it to fine-tune a model sparsified by a
  proximal step, by :func:`magnitude_prune` or :func:`nm_prune` (the N:M
  pattern then stays fixed), or loaded from a pruned checkpoint, without
  letting removed weights grow back. A NaN weight is not zero, so NaN
  propagates; a NaN or inf update of a zero weight gives a NaN update (the
  returned update is ``0 * u`` there), so ``optax.apply_if_finite`` and your
  own checks still see it.

  Args:
    mask: which leaves to hold, as in ``optax.masked``. Unmasked leaves take
      the plain step.

  Returns:
    A :class:`optax_l1.PruneTransformation` (an ``optax.GradientTransformationExtraArgs``) with state
    ``optax.EmptyState()``.

  Raises:
    ValueError: from ``update`` when ``params`` is ``None``.

  Examples:
    >>> import jax.numpy as jnp, optax, optax_l1
    >>> w = jnp.array([0.0, 1.0, 0.0, -2.0])
    >>> opt = optax.chain(optax.sgd(0.5), optax_l1.keep_zeros())
    >>> updates, _ = opt.update(jnp.ones(4), opt.init(w), w)
    >>> optax.apply_updates(w, updates)
    Array([ 0. ,  0.5,  0. , -2.5], dtype=float32)
  """
  fn = "keep_zeros"

  def check(params, full_mask):
    _check_float_leaves(fn, params, full_mask)

  def leaf(u, p):
    # A NaN or inf update of a zero weight stays visible (NaN).
    zero = jnp.where(jnp.isfinite(u), jnp.zeros((), u.dtype),
                     jnp.full((), jnp.nan, u.dtype))
    return jnp.where(p == 0, zero, u)

  return _stateless_prune(fn, mask, check, leaf)


def _stateless_prune(fn: str, mask: MaskOrFn, check: Any,
                     leaf: Any) -> PruneTransformation:
  """A stateless prune transform: ``leaf(u, p) -> u`` on every masked leaf.

  ``check(params, full_mask)`` validates the params at ``init`` and at every
  ``update``; unmasked and None leaves pass through.
  """
  def init_fn(params):
    check(params, resolve_mask(fn, mask, params))
    return optax.EmptyState()

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    if params is None:
      raise params_required(fn)
    full_mask = resolve_mask(fn, mask, params)
    check(params, full_mask)

    def one(u, p, keep):
      if u is None or p is None or not keep:
        return u
      return leaf(u, p)

    return jax.tree.map(one, updates, params, full_mask,
                        is_leaf=_is_none), state

  return PruneTransformation(init_fn, update_fn)
