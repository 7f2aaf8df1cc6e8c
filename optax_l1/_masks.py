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
* :func:`nm_prune`: N:M structured sparsity (``n`` of every ``m`` consecutive
  weights kept), recomputed every step.
* :func:`keep_zeros`: weights that are exactly zero stay exactly zero (for
  fine-tuning after proximal training, pruning, or loading a sparse
  checkpoint).

The pure helpers :func:`magnitude_mask` and :func:`nm_mask` compute the same
keep-masks on plain arrays.

Ranking is exact and deterministic. Magnitudes are compared through the bit
patterns of ``|x|`` (non-negative floats order like their bits), so the ``k``
smallest are found by a bisection over integers that is exact after 32
(float32, bfloat16, float16) or 64 (float64) passes; no sort of a large leaf.
Among equal magnitudes the lower flat (row-major) index is pruned first. NaN
ranks above ``inf``: a NaN weight is never pruned, so it propagates.
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

from optax_l1 import _validation as val
from optax_l1._tree import MaskOrFn, path_str, resolve_mask
from optax_l1._transforms import PruneTransformation

_SCOPES = ("layer", "global")

# magnitude_prune evaluates its schedule on the host in float64 and bakes the
# counts into the program as an int32 table (one row per mask update, one
# column per distinct (sparsity, leaf size)); beyond this many entries it
# evaluates the schedule on the device in float32 instead.
_MAX_COUNT_TABLE = 2**20


def _is_none(x: Any) -> bool:
  return x is None


# ---------------------------------------------------------------------------
# Exact k-smallest selection by bisection on the bit patterns of |x|.
# ---------------------------------------------------------------------------


def _key_dtypes(dtypes: Sequence[Any]) -> tuple[Any, Any, int]:
  """Float dtype to rank in, the same-width int dtype, and its bit count."""
  if any(jnp.dtype(d) == jnp.float64 for d in dtypes):
    return jnp.float64, jnp.int64, 64
  return jnp.float32, jnp.int32, 32


def _magnitude_keys(x: jax.Array, fdtype: Any, idtype: Any) -> jax.Array:
  """Integers that order like ``|x|`` (NaN above ``inf``), as a flat array.

  ``|x|`` is cast to ``fdtype`` (exact: bfloat16/float16/float32 widen to
  float32 or float64). Non-negative IEEE floats order like their bit patterns
  read as signed integers; ``abs`` clears the sign bit of ``-0.0`` and of NaN.
  """
  a = jnp.abs(jnp.asarray(x)).astype(fdtype).reshape(-1)
  return jax.lax.bitcast_convert_type(a, idtype)


def _cumsum_rows(x: jax.Array) -> jax.Array:
  """``jnp.cumsum(x, axis=1)``, also when axis 1 is explicitly sharded.

  Under explicit sharding (``jax.sharding.AxisType.Explicit``, the default of
  ``jax.make_mesh``) a cumulative sum along a sharded axis is refused; the
  rows are then gathered for the scan and the result is resharded back.
  """
  typeof = getattr(jax, "typeof", None)  # jax < 0.6: no explicit sharding
  sharding = getattr(typeof(x), "sharding", None) if typeof else None
  spec = getattr(sharding, "spec", None)
  if spec is None or len(spec) < 2 or spec[1] is None:
    return jnp.cumsum(x, axis=1)
  whole = jax.sharding.NamedSharding(
      sharding.mesh, jax.sharding.PartitionSpec(spec[0], None))
  y = jnp.cumsum(jax.sharding.reshard(x, whole), axis=1)
  return jax.sharding.reshard(y, sharding)


def _prune_by_rank(keys: Sequence[jax.Array], joint: bool, ks: jax.Array,
                   nbits: int) -> list[jax.Array]:
  """Keep-masks that prune exactly ``k`` smallest keys per ranking group.

  Args:
    keys: flat integer arrays (one per leaf) from :func:`_magnitude_keys`,
      optionally with entries set to ``-1`` (below every magnitude: pruned
      before any weight, e.g. weights that are already pruned).
    joint: rank all leaves together (one group, ``ks`` of shape ``(1,)``) or
      each leaf on its own (``ks`` of shape ``(len(keys),)``).
    ks: int32 counts, each in ``[0, group size]``.
    nbits: bit width of the keys (32 or 64); the bisection runs this many
      passes, which makes it exact.

  Returns:
    Flat boolean keep-masks (``True`` = kept), one per leaf. Ties are pruned in
    order of (leaf position in ``keys``, flat index).
  """
  num = len(keys)
  if num == 0:
    return []
  idtype = keys[0].dtype
  # Leaves of equal size are stacked and ranked row-wise, so the program has
  # one reduction per distinct size, not one per leaf (compile time).
  buckets: dict[int, list[int]] = {}
  for i, key in enumerate(keys):
    buckets.setdefault(key.size, []).append(i)
  stacked = [jnp.stack([keys[i] for i in rows]) for rows in buckets.values()]
  row_leaf = [np.array(rows) for rows in buckets.values()]
  inverse = np.argsort(np.concatenate(row_leaf))  # bucket order -> leaf order
  group = np.zeros(num, np.int32) if joint else np.arange(num, dtype=np.int32)

  def per_leaf(parts):
    return jnp.concatenate(parts)[inverse]

  def thresholds(v):  # (num_groups,) -> one column per bucket row
    return [v[group[rows]][:, None] for rows in row_leaf]

  def count_le(v):
    c = per_leaf([jnp.sum(k <= t, axis=1, dtype=jnp.int32)
                  for k, t in zip(stacked, thresholds(v))])
    return jnp.sum(c, keepdims=True) if joint else c

  # Keys are >= -1. Invariant: count(key <= hi) >= k; lo < hi and
  # count(key <= lo) < k (or lo = -2 with k = 0, where hi then walks down to
  # -1). hi - lo starts at 2**(nbits - 1) + 1, so nbits halvings reach 1.
  lo = jnp.full(ks.shape, -2, idtype)
  hi = jnp.full(ks.shape, jnp.iinfo(idtype).max, idtype)

  def body(_, carry):
    lo, hi = carry
    mid = (lo >> 1) + (hi >> 1) + (lo & hi & 1)  # floor((lo + hi) / 2)
    ok = count_le(mid) >= ks
    return jnp.where(ok, lo, mid), jnp.where(ok, mid, hi)

  _, v = jax.lax.fori_loop(0, nbits, body, (lo, hi))
  # v[g] is the k-th smallest key of group g (or -1 when k = 0). Prune every
  # key < v and the first `need` keys == v in (leaf, flat index) order.
  need = ks - count_le(v - 1)
  ties = [k == t for k, t in zip(stacked, thresholds(v))]
  if joint:
    n_ties = per_leaf([jnp.sum(t, axis=1, dtype=jnp.int32) for t in ties])
    offset = jnp.cumsum(n_ties) - n_ties  # ties in earlier leaves
  else:
    offset = jnp.zeros((num,), jnp.int32)
  masks: list[Any] = [None] * num
  for k, tie, t, rows in zip(stacked, ties, thresholds(v), row_leaf):
    tie_i = tie.astype(jnp.int32)
    rank = _cumsum_rows(tie_i) - tie_i + offset[rows][:, None]
    pruned = (k < t) | (tie & (rank < need[group[rows]][:, None]))
    for r, i in enumerate(rows):
      masks[i] = ~pruned[r]
  return masks


def magnitude_mask(x: Any, k: Any) -> Any:
  """Keep-mask that removes exactly the ``k`` smallest-magnitude weights.

  ``x`` may be one array or a pytree of arrays; a pytree is ranked jointly
  (global magnitude pruning). Among equal magnitudes the lower flat index is
  pruned first (across leaves: the earlier leaf in ``jax.tree.leaves`` order).
  ``-0.0`` and ``0.0`` tie; NaN ranks above ``inf`` and is pruned last. Exact
  and jit-compatible: ``k`` may be a traced integer.

  Args:
    x: an array, or a pytree of arrays, of real floating-point values.
    k: number of weights to remove; clipped to ``[0, x.size]``.

  Returns:
    A boolean array (or pytree of them) of ``x``'s shape: ``True`` where the
    weight is kept. Exactly ``clip(k, 0, size)`` entries are ``False``.

  Examples:
    >>> import jax.numpy as jnp, optax_l1
    >>> optax_l1.magnitude_mask(jnp.array([0.5, -0.1, 0.2, 0.1, -3.0]), 2)
    Array([ True, False,  True, False,  True], dtype=bool)
  """
  leaves, treedef = jax.tree.flatten(x)
  leaves = [jnp.asarray(l) for l in leaves]
  for i, l in enumerate(leaves):
    if not jnp.issubdtype(l.dtype, jnp.floating):
      raise TypeError(f"`magnitude_mask(x=...)` must hold real floating-point "
                      f"arrays; leaf {i} has dtype {l.dtype}.")
  total = sum(l.size for l in leaves)
  _check_total("magnitude_mask", total)
  fdtype, idtype, nbits = _key_dtypes([l.dtype for l in leaves])
  keys = [_magnitude_keys(l, fdtype, idtype) for l in leaves]
  kk = jnp.clip(jnp.asarray(k), 0, total).astype(jnp.int32).reshape(1)
  flat = _prune_by_rank(keys, True, kk, nbits)
  return treedef.unflatten(
      [m.reshape(l.shape) for m, l in zip(flat, leaves)])


def _check_total(fn: str, total: int) -> None:
  if total >= 2**31 - 1:
    raise ValueError(f"`{fn}` counts in int32 and ranks at most 2**31 - 2 "
                     f"weights jointly; got {total}. Use scope='layer' (or "
                     "rank smaller pytrees).")


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


def _params_required(fn: str) -> ValueError:
  return ValueError(f"`{fn}` computes new parameters: pass `params` to "
                    "`update(updates, state, params)`.")


def _plain_point(p: jax.Array, u: jax.Array) -> jax.Array:
  # Same arithmetic as optax.apply_updates: the point the plain step reaches.
  return jnp.asarray(p + u).astype(p.dtype)


def _drop(u: jax.Array, p: jax.Array, keep: jax.Array) -> jax.Array:
  """``u`` where kept, ``-p`` elsewhere (``p + (-p)`` is exactly ``0``).

  ``0 * u`` is added where dropped so that a NaN or inf update stays visible
  (as a NaN) instead of disappearing with the weight.
  """
  dropped = jnp.negative(p).astype(u.dtype) + u * jnp.zeros((), u.dtype)
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
  Recomputing it costs 32 passes over the masked weights (64 for float64) and
  runs only at update steps (``jax.lax.cond`` on ``params`` and the stored
  mask); between updates, with the state donated to ``jax.jit``, the stored
  mask is neither copied nor rewritten. Under ``"global"`` at most
  ``2**31 - 2`` weights can be ranked jointly.

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

  num_updates = (end_step - begin_step) // update_every + 1

  def host_factor(t: int) -> float:
    """``1 - (1 - progress)^power`` in float64, as documented."""
    if end_step == begin_step:
      progress = 1.0
    else:
      progress = min(max((t - begin_step) / (end_step - begin_step), 0.0),
                     1.0)
    return 1.0 - (1.0 - progress) ** power

  @functools.lru_cache(maxsize=None)
  def host_factors() -> np.ndarray:
    return np.array([host_factor(begin_step + j * update_every)
                     for j in range(num_updates)], np.float64)

  def device_factor(t):
    """The same in float32 on the device (fallback for huge tables)."""
    if end_step == begin_step:
      return jnp.ones((), jnp.float32)
    progress = jnp.clip(
        (t - begin_step).astype(jnp.float32) / float(end_step - begin_step),
        0.0, 1.0)
    return 1.0 - (1.0 - progress) ** power

  def counts(t, group_targets, group_sizes):
    """Number of weights to prune per group at update step ``t``."""
    traced_target = any(isinstance(g, jax.core.Tracer) for g in group_targets)
    pairs = sorted(set(zip(group_targets, group_sizes))) if not (
        traced_target) else []
    if not traced_target and num_updates * len(pairs) <= _MAX_COUNT_TABLE:
      # Host table in float64: k[j, pair] at t = begin + j * update_every.
      factors = host_factors()
      tgt = np.array([q[0] for q in pairs], np.float64)
      size = np.array([q[1] for q in pairs], np.float64)
      table = np.rint((tgt[None, :] * factors[:, None]) * size[None, :])
      table = np.clip(table, 0, size[None, :]).astype(np.int32)
      where = {q: c for c, q in enumerate(pairs)}
      col = np.array([where[q] for q in zip(group_targets, group_sizes)],
                     np.int32)
      j = jnp.clip((t - begin_step) // update_every, 0, num_updates - 1)
      return jnp.asarray(table)[j][jnp.asarray(col)]
    factor = device_factor(t)
    ks = [jnp.clip(jnp.round(g * factor * n), 0, n).astype(jnp.int32)
          for g, n in zip(group_targets, group_sizes)]
    return jnp.stack(ks)

  def init_fn(params):
    full_mask = resolve_mask(fn, mask, params)
    _check_float_leaves(fn, params, full_mask)
    leaf_targets(params)
    if scope == "global":
      _check_total(fn, _masked_size(params, full_mask))

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
      raise _params_required(fn)
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
      fdtype, idtype, nbits = _key_dtypes([p.dtype for p in ps])
      keys = [jnp.where(o.reshape(-1), _magnitude_keys(p, fdtype, idtype),
                        jnp.asarray(-1, idtype)) for p, o in zip(ps, olds)]
      if scope == "global":
        total = sum(p.size for p in ps)
        _check_total(fn, total)
        ks = counts(t, [sparsity], [total])
      else:
        ks = counts(t, [sparsity if targets is None else targets[i]
                        for i in idx], [p.size for p in ps])
      flat = _prune_by_rank(keys, scope == "global", ks, nbits)
      return [f.reshape(p.shape) for f, p in zip(flat, ps)]

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


def _masked_size(params: Any, full_mask: Any) -> int:
  sizes = jax.tree.map(lambda p, m: int(np.size(p)) if m and p is not None
                       else 0, params, full_mask, is_leaf=_is_none)
  return sum(jax.tree.leaves(sizes))


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
    # `u * 0`: a NaN or inf update of a zero weight stays visible (NaN).
    return jnp.where(p == 0, u * jnp.zeros((), u.dtype), u)

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
      raise _params_required(fn)
    full_mask = resolve_mask(fn, mask, params)
    check(params, full_mask)

    def one(u, p, keep):
      if u is None or p is None or not keep:
        return u
      return leaf(u, p)

    return jax.tree.map(one, updates, params, full_mask,
                        is_leaf=_is_none), state

  return PruneTransformation(init_fn, update_fn)


# ---------------------------------------------------------------------------
# N:M structured sparsity.
# ---------------------------------------------------------------------------


def _check_nm(fn: str, n: Any, m: Any) -> tuple[int, int]:
  m = _check_int(fn, "m", m, 1)
  n = _check_int(fn, "n", n, 1)
  if n > m:
    raise ValueError(f"`{fn}(n=...)` must be <= m={m}; got {n}.")
  return n, m


def _check_axis_int(fn: str, axis: Any) -> int:
  if isinstance(axis, bool):
    raise TypeError(f"`{fn}(axis=...)` must be an int; got {axis!r}.")
  try:
    return operator.index(axis)
  except TypeError:
    raise TypeError(f"`{fn}(axis=...)` must be an int; "
                    f"got {axis!r}.") from None


def _nm_axis(fn: str, axis: int, m: int, shape: tuple[int, ...],
             where: Optional[str]) -> int:
  """Normalized axis; raises if it is out of range or not divisible by m."""
  at = "" if where is None else f"the leaf at {where} of "
  hint = "" if where is None else " Leave the leaf out with `mask=`."
  ndim = len(shape)
  if not -ndim <= axis < ndim:
    raise ValueError(f"`{fn}(axis={axis})` is out of range for {at}shape "
                     f"{shape}.{hint}")
  ax = axis % ndim
  if shape[ax] % m:
    raise ValueError(f"`{fn}(m={m})`: axis {axis} of {at}shape {shape} has "
                     f"length {shape[ax]}, not divisible by m={m}.{hint}")
  return ax


def _nm_keep(x: jax.Array, n: int, m: int, ax: int) -> jax.Array:
  if n == m:
    return jnp.ones(x.shape, jnp.bool_)
  fdtype, idtype, _ = _key_dtypes([x.dtype])
  xm = jnp.moveaxis(x, ax, -1)
  shape = xm.shape
  key = _magnitude_keys(xm, fdtype, idtype).reshape(
      shape[:-1] + (shape[-1] // m, m))
  # Descending by magnitude; stable, so among ties the lower index comes
  # first. rank[i] = position of weight i in that order.
  order = jnp.argsort(-key, axis=-1, stable=True)
  rank = jnp.argsort(order, axis=-1, stable=True)
  return jnp.moveaxis((rank < n).reshape(shape), -1, ax)


def nm_mask(x: Any, n: int, m: int, axis: int = -1) -> jax.Array:
  """N:M keep-mask: the ``n`` largest ``|x|`` of every ``m`` consecutive.

  Along ``axis``, the weights are split into blocks of ``m`` consecutive
  entries (``x.shape[axis]`` must be divisible by ``m``); in every block the
  ``n`` largest magnitudes are kept, and among equal magnitudes the lower
  index is kept first. NaN ranks above ``inf`` (kept first).

  Args:
    x: real floating-point array.
    n: weights kept per block, ``0 < n <= m``.
    m: block length, >= 1.
    axis: the axis the blocks run along.

  Returns:
    A boolean array of ``x``'s shape, ``True`` where kept: exactly ``n``
    ``True`` per block.

  Raises:
    ValueError: if ``n``/``m`` are out of range, ``axis`` is out of range, or
      the axis length is not divisible by ``m``.

  Examples:
    >>> import jax.numpy as jnp, optax_l1
    >>> x = jnp.array([[0.1, -0.9, 0.3, 0.2, 1.0, 1.0, 0.0, -1.0]])
    >>> optax_l1.nm_mask(x, 2, 4).astype(int)
    Array([[0, 1, 1, 0, 1, 1, 0, 0]], dtype=int32)
  """
  fn = "nm_mask"
  n, m = _check_nm(fn, n, m)
  axis = _check_axis_int(fn, axis)
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"`{fn}(x=...)` must be a real floating-point array; "
                    f"got dtype {x.dtype}.")
  ax = _nm_axis(fn, axis, m, x.shape, None)
  return _nm_keep(x, n, m, ax)


def nm_prune(
    n: int,
    m: int,
    *,
    axis: int = -1,
    mask: MaskOrFn = None,
) -> PruneTransformation:
  """N:M structured sparsity: ``n`` nonzeros in every ``m`` consecutive.

  Goes last in an ``optax.chain``. With ``z = params + updates``, every block
  of ``m`` consecutive weights along ``axis`` keeps its ``n`` largest
  ``|z|`` (among equal magnitudes the lower index is kept first; see
  :func:`nm_mask`) and the rest become exactly ``0.0``:

  .. math::

    \\mathrm{new} = \\operatorname{nm\\_mask}(z) \\odot z.

  The pattern is recomputed at every step from ``|z|`` (stateless), so a
  removed weight competes again with the size of its next gradient step, as
  in dynamic N:M training. To freeze the pattern after some steps, switch to
  ``optax.chain(inner, keep_zeros())``. For 2:4 sparsity on GPUs with sparse
  tensor cores, use ``n=2, m=4`` along the input (reduction) axis of each
  kernel, ``axis=0`` for a Dense kernel of shape ``(inputs, outputs)``.

  Args:
    n: weights kept per block, ``0 < n <= m``.
    m: block length, >= 1.
    axis: the axis of each masked leaf the blocks run along; its length must
      be divisible by ``m`` (checked per leaf).
    mask: which leaves to prune, as in ``optax.masked`` (leave out biases and
      other leaves whose ``axis`` does not fit). Unmasked leaves take the
      plain step.

  Returns:
    A :class:`optax_l1.PruneTransformation` (an ``optax.GradientTransformationExtraArgs``) with state
    ``optax.EmptyState()``.

  Raises:
    ValueError: if ``n`` or ``m`` are out of range; from ``init``/``update``
      if ``axis`` does not fit a masked leaf (the message names the leaf and
      its shape), or when ``params`` is ``None``.

  Examples:
    >>> import jax.numpy as jnp, optax, optax_l1
    >>> w = jnp.array([[0.1, -0.9, 0.3, 0.2], [1.0, 0.5, -0.6, 0.0]])
    >>> opt = optax.chain(optax.sgd(0.1), optax_l1.nm_prune(2, 4))
    >>> updates, _ = opt.update(jnp.zeros((2, 4)), opt.init(w), w)
    >>> optax.apply_updates(w, updates)
    Array([[ 0. , -0.9,  0.3,  0. ],
           [ 1. ,  0. , -0.6,  0. ]], dtype=float32)

  References:
    Mishra et al., Accelerating Sparse Deep Neural Networks, arXiv:2104.08378
    (2021); Zhou et al., Learning N:M Fine-grained Structured Sparse Neural
    Networks From Scratch, ICLR 2021.
  """
  fn = "nm_prune"
  n, m = _check_nm(fn, n, m)
  axis = _check_axis_int(fn, axis)

  def check(params, full_mask):
    def one(path, p, keep):
      if keep and p is not None:
        where = path_str(path)
        val.check_float_leaf(fn, where, p)
        _nm_axis(fn, axis, m, tuple(np.shape(p)), where)
    jax.tree.map_with_path(one, params, full_mask, is_leaf=_is_none)

  def leaf(u, p):
    z = _plain_point(p, u)
    return _drop(u, p, _nm_keep(z, n, m, axis % z.ndim))

  return _stateless_prune(fn, mask, check, leaf)
