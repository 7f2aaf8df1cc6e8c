"""Pytree helpers: masks that follow ``optax.masked``, readable leaf paths."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

import jax
import optax

MaskOrFn = Union[Any, Callable[[optax.Params], Any], None]


def path_str(path: tuple[Any, ...]) -> str:
  """``('layers', 0, 'kernel')``-style key path as ``layers/0/kernel``.

  A final ``.value`` attribute (how a Flax NNX ``Variable`` holds its array)
  is dropped, so Linen params, NNX state and plain dicts read alike.
  """
  path = tuple(path)
  if (path and isinstance(path[-1], jax.tree_util.GetAttrKey)
      and path[-1].name == "value"):
    path = path[:-1]
  parts = []
  for k in path:
    if isinstance(k, jax.tree_util.DictKey):
      parts.append(str(k.key))
    elif isinstance(k, jax.tree_util.SequenceKey):
      parts.append(str(k.idx))
    elif isinstance(k, jax.tree_util.GetAttrKey):
      parts.append(str(k.name))
    elif isinstance(k, jax.tree_util.FlattenedIndexKey):
      parts.append(str(k.key))
    else:
      parts.append(str(k))
  return "/".join(parts) if parts else "<root>"


def _is_none(x: Any) -> bool:
  return x is None


def resolve_mask(fn: str, mask: MaskOrFn, params: optax.Params) -> Any:
  """Returns a pytree of Python bools with the structure of ``params``.

  ``mask`` follows ``optax.masked``: ``None`` (every leaf), a pytree of bools
  whose structure is ``params``' or a prefix of it (a bool then covers a whole
  subtree), or a callable that maps ``params`` to such a pytree. ``None``
  leaves of ``params`` get ``False``.

  Raises:
    ValueError: if the mask's structure does not match ``params``.
    TypeError: if a mask leaf is not a Python or NumPy bool.
  """
  if mask is None:
    return jax.tree.map(lambda p: p is not None, params, is_leaf=_is_none)
  m = mask(params) if callable(mask) else mask
  try:
    full = jax.tree.map(
        # A None in the mask stands for a None parameter (what a callable
        # mask mapped over params returns there), as in optax.masked.
        lambda b, sub: jax.tree.map(
            lambda p: b is not None and _as_bool(fn, b) and p is not None,
            sub, is_leaf=_is_none),
        m, params, is_leaf=_is_none)
  except ValueError as e:
    raise ValueError(
        f"`{fn}(mask=...)` must have the structure of params (or a prefix of "
        f"it). mask: {jax.tree.structure(m)}; params: "
        f"{jax.tree.structure(params)}.") from e
  return full


def _as_bool(fn: str, b: Any) -> bool:
  if isinstance(b, bool):
    return b
  try:
    import numpy as np  # pylint: disable=g-import-not-at-top
    if isinstance(b, np.bool_) or (hasattr(b, "dtype") and b.dtype == bool
                                   and getattr(b, "ndim", 1) == 0):
      return bool(b)
  except jax.errors.ConcretizationTypeError:
    pass
  raise TypeError(f"`{fn}(mask=...)` leaves must be Python bools (one per "
                  f"parameter leaf, as in optax.masked); got {b!r}.")
