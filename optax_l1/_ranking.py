"""Exact k-smallest selection by magnitude, with only counts crossing devices.

:func:`magnitude_prune` and :func:`magnitude_mask` remove exactly ``k``
weights: the ``k`` smallest ``|x|``, and among equal magnitudes the lowest
index first (row-major within a leaf; across leaves, the earlier leaf in
``jax.tree.leaves`` order). Nothing is sorted, reshaped or gathered:

1. Magnitudes are compared through the bit patterns of ``|x|`` (non-negative
   IEEE floats order like their bits read as signed integers, NaN above
   ``inf``). A bisection over those integers finds the ``k``-th smallest
   key ``v``: each of its 32 passes (64 for float64) counts ``key <= t``,
   one integer per leaf.
2. Every key below ``v`` is removed, and of the keys equal to ``v`` the
   ``need = k - count(key < v)`` of lowest index. If ``need`` is 0 or all of
   them, that is the rule; otherwise a second bisection finds the index
   ``J`` below which exactly ``need`` ties lie, counting ``key == v and
   index < J`` (at most 31 passes, run only then).

Every pass is an elementwise test and a sum per leaf, so on a sharded array
the only collective is an all-reduce of one integer per leaf (or per ranking
group), never anything the size of the parameters. Indices are int32, so a
leaf, or all leaves ranked jointly, can hold at most ``2**31 - 2`` weights.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

MAX_RANKED = 2**31 - 2


def key_dtypes(dtypes: Sequence[Any]) -> tuple[Any, Any, int]:
  """Float dtype to rank in, the same-width int dtype, and its bit count."""
  if any(jnp.dtype(d) == jnp.float64 for d in dtypes):
    return jnp.float64, jnp.int64, 64
  return jnp.float32, jnp.int32, 32


def magnitude_keys(x: jax.Array, fdtype: Any, idtype: Any) -> jax.Array:
  """Integers of ``x``'s shape that order like ``|x|`` (NaN above ``inf``).

  ``|x|`` is cast to ``fdtype`` (exact: bfloat16/float16/float32 widen to
  float32 or float64); ``abs`` clears the sign bit of ``-0.0`` and of NaN.
  """
  a = jnp.abs(jnp.asarray(x)).astype(fdtype)
  return jax.lax.bitcast_convert_type(a, idtype)


def _flat_index(shape: tuple[int, ...], offset: int) -> jax.Array:
  """``offset`` plus the row-major index of every entry, as int32, built
  from iotas so that no array is reshaped (sharded axes stay as they are)."""
  idx = jnp.full((), offset, jnp.int32)
  stride = 1
  for d in reversed(range(len(shape))):
    if shape[d] > 1:
      idx = idx + jax.lax.broadcasted_iota(jnp.int32, shape, d) * stride
    stride *= shape[d]
  return jnp.broadcast_to(idx, shape)


def _count(b: jax.Array) -> jax.Array:
  """The number of True entries of ``b``, int32, exactly.

  On a single device, summed as float32 ones along the last axis first
  (XLA:CPU vectorizes that about twice as fast as an int32 sum; exact below
  2^24 per row), then the row counts as int32. On several devices, one int32
  sum: the row counts of a leaf sharded along its last axis would be
  all-reduced, an operand that grows with the leaf.
  """
  if (b.ndim == 0 or b.shape[-1] >= 2**24 or jax.device_count() > 1
      or jax.default_backend() != "cpu"):
    return jnp.sum(b, dtype=jnp.int32)
  rows = jnp.sum(jnp.where(b, jnp.float32(1), jnp.float32(0)), axis=-1)
  return jnp.sum(rows.astype(jnp.int32), dtype=jnp.int32)


def prune_by_rank(keys: Sequence[jax.Array], joint: bool, ks: jax.Array,
                  nbits: int) -> list[jax.Array]:
  """Keep-masks that remove exactly ``k`` smallest keys per ranking group.

  Args:
    keys: integer arrays (one per leaf, any shape) from
      :func:`magnitude_keys`, optionally with entries set to ``-1`` (below
      every magnitude: removed before any weight, e.g. weights already
      pruned).
    joint: rank all leaves together (one group, ``ks`` of shape ``(1,)``) or
      each leaf on its own (``ks`` of shape ``(len(keys),)``).
    ks: int32 counts, each in ``[0, group size]``.
    nbits: bit width of the keys (32 or 64): the magnitude bisection runs
      this many passes, which makes it exact.

  Returns:
    Boolean keep-masks of the keys' shapes (``True`` = kept). Ties are
    removed in order of (leaf position in ``keys``, row-major index).
  """
  num = len(keys)
  if num == 0:
    return []
  idtype = keys[0].dtype
  group = [0] * num if joint else list(range(num))
  sizes = [int(np.prod(k.shape, dtype=np.int64)) for k in keys]
  offsets = (list(np.cumsum([0] + sizes[:-1])) if joint else [0] * num)
  group_size = jnp.asarray([sum(sizes)] if joint else sizes, jnp.int32)

  def counts(pred) -> jax.Array:
    """``sum(pred(leaf, key))`` per ranking group, int32."""
    per_leaf = jnp.stack([_count(pred(i, k)) for i, k in enumerate(keys)])
    return jnp.sum(per_leaf, keepdims=True) if joint else per_leaf

  # Magnitude bisection. Keys are >= -1. Invariant: count(key <= hi) >= k;
  # lo < hi and count(key <= lo) < k (or lo = -2 with k = 0, where hi then
  # walks down to -1). hi - lo starts at 2**(nbits - 1) + 1, so nbits
  # halvings reach 1.
  lo = jnp.full(ks.shape, -2, idtype)
  hi = jnp.full(ks.shape, jnp.iinfo(idtype).max, idtype)

  def body(_, carry):
    lo, hi = carry
    mid = (lo >> 1) + (hi >> 1) + (lo & hi & 1)  # floor((lo + hi) / 2)
    ok = counts(lambda i, k: k <= mid[group[i]]) >= ks
    return jnp.where(ok, lo, mid), jnp.where(ok, mid, hi)

  _, v = jax.lax.fori_loop(0, nbits, body, (lo, hi))
  # v[g] is the k-th smallest key of group g (or -1 when k = 0).
  need = ks - counts(lambda i, k: k < v[group[i]])
  ties = counts(lambda i, k: k == v[group[i]])

  def tie_before(i, k, j):
    return (k == v[group[i]]) & (
        _flat_index(k.shape, offsets[i]) < j[group[i]])

  # Index bisection where only some ties go: the smallest J with
  # count(tie & index < J) >= need. Invariant count(lo) < need <= count(hi);
  # groups with nothing to search start closed (hi - lo == 1).
  search = (need > 0) & (need < ties)
  hi = jnp.where(need > 0, group_size, 0)
  lo = jnp.where(search, 0, hi - 1)

  def open_(carry):
    lo, hi = carry
    return jnp.any(hi - lo > 1)

  def halve(carry):
    lo, hi = carry
    mid = lo + (hi - lo) // 2
    ok = counts(lambda i, k: tie_before(i, k, mid)) >= need
    active = hi - lo > 1
    return (jnp.where(active & ~ok, mid, lo), jnp.where(active & ok, mid, hi))

  _, cut = jax.lax.while_loop(open_, halve, (lo, hi))
  return [~((k < v[group[i]]) | tie_before(i, k, cut))
          for i, k in enumerate(keys)]


def check_total(fn: str, total: int) -> None:
  if total > MAX_RANKED:
    raise ValueError(f"`{fn}` counts in int32 and ranks at most 2**31 - 2 "
                     f"weights jointly; got {total}. Use scope='layer' (or "
                     "rank smaller pytrees).")


def magnitude_mask(x: Any, k: Any) -> Any:
  """Keep-mask that removes exactly the ``k`` smallest-magnitude weights.

  ``x`` may be one array or a pytree of arrays; a pytree is ranked jointly
  (global magnitude pruning). Among equal magnitudes the lower flat index is
  pruned first (across leaves: the earlier leaf in ``jax.tree.leaves`` order).
  ``-0.0`` and ``0.0`` tie; NaN ranks above ``inf`` and is pruned last. Exact
  and jit-compatible: ``k`` may be a traced integer. On sharded arrays only
  one count per leaf crosses devices (see :mod:`optax_l1._ranking`).

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
  total = sum(math.prod(l.shape) for l in leaves)
  check_total("magnitude_mask", total)
  fdtype, idtype, nbits = key_dtypes([l.dtype for l in leaves])
  keys = [magnitude_keys(l, fdtype, idtype) for l in leaves]
  kk = jnp.clip(jnp.asarray(k), 0, total).astype(jnp.int32).reshape(1)
  return treedef.unflatten(prune_by_rank(keys, True, kk, nbits))
