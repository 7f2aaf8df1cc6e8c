"""A per-coordinate step evaluated where it is used (see :class:`LazyStep`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax


class LazyStep:
  """A per-coordinate step written as ``fn(*operands)``, evaluated where used.

  :func:`optax_l1.proximal` passes one per leaf, ``operands`` the optimizer's
  moments for that leaf, to the proxes whose update has the attribute
  ``lazy_step = True`` (the group proxes): they evaluate it slab by slab, so
  that the full-size step is never a separate buffer. Everyone else gets
  ``step()``, the array.
  """

  __slots__ = ("fn", "operands")

  def __init__(self, fn: Callable[..., jax.Array],
               operands: tuple[jax.Array, ...]):
    self.fn = fn
    self.operands = tuple(operands)

  def __call__(self) -> jax.Array:
    return self.fn(*self.operands)

  def map(self, g: Callable[[jax.Array], jax.Array]) -> "LazyStep":
    """The step ``g(fn(*operands))``, still lazy."""
    fn = self.fn
    return LazyStep(lambda *ops: g(fn(*ops)), self.operands)


def materialize(step: Any) -> Any:
  """A step tree with every :class:`LazyStep` evaluated."""
  return jax.tree.map(lambda s: s() if isinstance(s, LazyStep) else s, step,
                      is_leaf=lambda x: x is None or isinstance(x, LazyStep))
