"""N:M structured sparsity: ``n`` nonzeros in every ``m`` consecutive weights.

:func:`nm_mask` computes the keep-mask on an array; :func:`nm_prune` applies
it as the last link of an ``optax.chain`` (or inside
:func:`optax_l1.proximal`), recomputed at every step. The blocks of ``m``
run along one axis; on a sharded array whose shards along that axis hold
whole blocks the mask is computed shard by shard, with no collective
(explicit-axis meshes included); otherwise the leaf is regathered along that
axis for the mask.
"""

from __future__ import annotations

import operator
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from optax_l1 import _ranking
from optax_l1 import _validation as val
from optax_l1._masks import _check_int
from optax_l1._masks import _drop
from optax_l1._masks import _is_none
from optax_l1._masks import _plain_point
from optax_l1._masks import _stateless_prune
from optax_l1._transforms import PruneTransformation
from optax_l1._tree import MaskOrFn, path_str

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


def _explicit_spec(x: jax.Array) -> tuple[Any, Any]:
  """``(mesh, spec)`` of ``x`` if some axis is sharded over explicit mesh
  axes (jax's sharding-in-types), else ``(None, None)``."""
  typeof = getattr(jax, "typeof", None)
  sharding = getattr(typeof(x), "sharding", None) if typeof else None
  spec = getattr(sharding, "spec", None)
  if spec is None or all(s is None for s in spec):
    return None, None
  return sharding.mesh, spec


def _shards(mesh: Any, entry: Any) -> int:
  names = entry if isinstance(entry, tuple) else (entry,)
  return int(np.prod([mesh.shape[n] for n in names]))


def _nm_keep(x: jax.Array, n: int, m: int, ax: int) -> jax.Array:
  if n == m:
    return jnp.ones(x.shape, jnp.bool_)
  mesh, spec = _explicit_spec(x)
  entry = None if spec is None else spec[ax]
  if entry is not None and (x.shape[ax] // _shards(mesh, entry)) % m:
    # Blocks straddle shards: rank with the axis whole, then shard back.
    P = jax.sharding.PartitionSpec
    whole = jax.sharding.NamedSharding(
        mesh, P(*[None if d == ax else s for d, s in enumerate(spec)]))
    keep = _nm_keep(jax.sharding.reshard(x, whole), n, m, ax)
    return jax.sharding.reshard(keep, jax.sharding.NamedSharding(mesh, spec))
  fdtype, idtype, _ = _ranking.key_dtypes([x.dtype])
  key = _ranking.magnitude_keys(x, fdtype, idtype)
  # Split the axis into (blocks, m); each shard along it holds whole blocks,
  # so under explicit sharding the blocks axis carries the axis's sharding.
  split = x.shape[:ax] + (x.shape[ax] // m, m) + x.shape[ax + 1:]
  if spec is None:
    blocks = key.reshape(split)
  else:
    P = jax.sharding.PartitionSpec
    out = jax.sharding.NamedSharding(
        mesh, P(*spec[:ax], entry, None, *spec[ax + 1:]))
    blocks = jax.lax.reshape(key, split, out_sharding=out)
  # Descending by magnitude; stable, so among ties the lower index comes
  # first. rank[i] = position of weight i in that order.
  order = jnp.argsort(-blocks, axis=ax + 1, stable=True)
  rank = jnp.argsort(order, axis=ax + 1, stable=True)
  keep = rank < n
  if spec is None:
    return keep.reshape(x.shape)
  return jax.lax.reshape(keep, x.shape,
                         out_sharding=jax.sharding.NamedSharding(mesh, spec))


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
