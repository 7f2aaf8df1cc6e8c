"""A per-coordinate step evaluated where it is used (see :class:`LazyStep`),
where that happens slab by slab (:func:`single_cpu_device`), and the loop
over slabs that the group proxes and the ranking share (:func:`slab_loop`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


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


def single_cpu_device() -> bool:
  """Whether computations run on one CPU device: there the group proxes and
  the ranking of the masks loop over slabs that stay in cache (XLA:CPU
  writes the operands of reductions and scatters to buffers first);
  elsewhere a loop slicing a sharded array would make the SPMD partitioner
  gather it, so they run on whole arrays."""
  return jax.default_backend() == "cpu" and jax.device_count() == 1


def materialize(step: Any) -> Any:
  """A step tree with every :class:`LazyStep` evaluated."""
  return jax.tree.map(lambda s: s() if isinstance(s, LazyStep) else s, step,
                      is_leaf=lambda x: x is None or isinstance(x, LazyStep))


def slab_loop(n: int, width: int, axis: int, ndim: int,
              body: Callable[[jax.Array, jax.Array, Any], Any],
              init: Any) -> Any:
  """``body(start, fresh, carry)`` over slabs of ``width`` along ``axis``
  (of length ``n >= width``) of a rank-``ndim`` array, in a ``fori_loop``.

  Slab ``i`` starts at ``start = min(i * width, n - width)``: the last one
  is shifted back to end at ``n`` (a tail computed after the loop, or
  padding, made XLA keep full-size copies of the operands alive). ``fresh``,
  of shape ``width`` along ``axis`` and 1 elsewhere, is True where the
  slab's entries were not in an earlier slab: where the shifted last slab
  overlaps the one before, ``body`` must leave those entries as they are.
  """
  shape = [1] * ndim
  shape[axis] = width
  pos = jax.lax.broadcasted_iota(jnp.int32, shape, axis)

  def step(i, carry):
    start = jnp.minimum(i * width, n - width)
    return body(start, start + pos >= i * width, carry)

  return jax.lax.fori_loop(0, -(-n // width), step, init)
