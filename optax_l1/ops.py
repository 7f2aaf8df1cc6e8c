"""Pure proximal operators on arrays.

Every operator here has the same contract. Given a point ``z``, a step
``step`` (a scalar, or an array of ``z``'s shape: one step per coordinate) and
the penalty's hyperparameters, it returns

.. math::

  \\operatorname{prox}(z) = \\operatorname*{argmin}_x \\;
  \\sum_i \\frac{(x_i - z_i)^2}{2\\,\\mathrm{step}_i} + R(x).

With a scalar step this is the textbook ``argmin 1/2||x - z||^2 + step R(x)``
(Parikh & Boyd 2014). With a per-coordinate step it is the prox in the
diagonal metric ``D = diag(1 / step)``, which is what an adaptive optimizer
such as Adam uses (see :func:`optax_l1.proximal`).

The operators never turn a NaN into a number: zeroing comparisons are written
so that a NaN input fails them and propagates. Zeros they produce are exact
zeros in ``z``'s dtype. No operator here knows about optax; they are plain
functions on arrays that :mod:`optax_l1` wraps into transformations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import functools
from typing import Any, Union

import jax
import jax.numpy as jnp

from optax_l1 import _group
from optax_l1._group import group_lasso_sets
from optax_l1._group import normalize_axis
from optax_l1._hier import hier_prox
from optax_l1._nonconvex import lq, mcp, scad

ArrayLike = jax.typing.ArrayLike
Axis = Union[int, Sequence[int]]

__all__ = [
    "soft_threshold",
    "l1",
    "nonneg_l1",
    "elastic_net",
    "group_lasso",
    "sparse_group_lasso",
    "l0",
    "mcp",
    "scad",
    "lq",
    "group_lasso_sets",
    "hier_prox",
    "normalize_axis",
]



def _like(value: ArrayLike, x: jax.Array) -> jax.Array:
  """`value` as an array of `x`'s dtype (explicit, so strict promotion holds)."""
  return jnp.asarray(value).astype(x.dtype)


def soft_threshold(z: ArrayLike, threshold: ArrayLike) -> jax.Array:
  """Soft thresholding: ``sign(z) * max(|z| - threshold, 0)``.

  This is the prox of ``threshold * |x|`` with unit step.

  Args:
    z: input array.
    threshold: non-negative scalar or array broadcastable to ``z``.

  Returns:
    An array of ``z``'s shape and dtype. Entries with ``|z| <= threshold`` are
    exactly zero; NaN entries stay NaN.

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_l1 import ops
    >>> ops.soft_threshold(jnp.array([-2.0, 0.5, 3.0]), 1.0)
    Array([-1.,  0.,  2.], dtype=float32)
  """
  z = jnp.asarray(z)
  t = _like(threshold, z)
  return jnp.sign(z) * jnp.maximum(jnp.abs(z) - t, jnp.zeros((), z.dtype))


def l1(z: ArrayLike, step: ArrayLike, lam: ArrayLike,
       weights: ArrayLike | None = None) -> jax.Array:
  """Prox of the (weighted) L1 norm ``R(x) = lam * sum_i w_i |x_i|``.

  ``x_i = sign(z_i) max(|z_i| - step_i lam w_i, 0)``.

  Args:
    z: input array.
    step: scalar or per-coordinate step.
    lam: penalty strength, >= 0.
    weights: optional non-negative per-coordinate weights ``w`` (broadcastable
      to ``z``); ``None`` means all ones.

  Returns:
    The prox, with exact zeros where ``|z_i| <= step_i lam w_i``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_l1 import ops
    >>> ops.l1(jnp.array([0.3, -0.05, 0.1]), step=0.1, lam=1.0)
    Array([ 0.2,  0. ,  0. ], dtype=float32)
  """
  z = jnp.asarray(z)
  t = _like(step, z) * _like(lam, z)
  if weights is not None:
    t = t * _like(weights, z)
  return soft_threshold(z, t)


def nonneg_l1(z: ArrayLike, step: ArrayLike, lam: ArrayLike) -> jax.Array:
  """Prox of ``R(x) = lam * sum_i x_i + indicator(x >= 0)``.

  ``x_i = max(z_i - step_i lam, 0)`` (the non-negative lasso,
  ``sklearn.linear_model.Lasso(positive=True)``).

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_l1 import ops
    >>> ops.nonneg_l1(jnp.array([0.5, -0.5, 0.05]), step=0.1, lam=1.0)
    Array([0.4, 0. , 0. ], dtype=float32)
  """
  z = jnp.asarray(z)
  return jnp.maximum(z - _like(step, z) * _like(lam, z),
                     jnp.zeros((), z.dtype))


def elastic_net(z: ArrayLike, step: ArrayLike, l1: ArrayLike,
                l2: ArrayLike) -> jax.Array:
  """Prox of the elastic net ``R(x) = l1 ||x||_1 + (l2 / 2) ||x||_2^2``.

  ``x_i = soft(z_i, step_i l1) / (1 + step_i l2)``. In scikit-learn's
  ``ElasticNet(alpha, l1_ratio)`` terms, ``l1 = alpha * l1_ratio`` and
  ``l2 = alpha * (1 - l1_ratio)``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_l1 import ops
    >>> ops.elastic_net(jnp.array([2.0, 0.5]), step=1.0, l1=1.0, l2=1.0)
    Array([0.5, 0. ], dtype=float32)
  """
  z = jnp.asarray(z)
  s = _like(step, z)
  return soft_threshold(z, s * _like(l1, z)) / (1 + s * _like(l2, z))


def group_lasso(z: ArrayLike, step: ArrayLike, lam: ArrayLike, axis: Axis,
                scale_by_size: bool = False) -> jax.Array:
  """Prox of the group lasso ``R(x) = lam_g * sum_g ||x_g||_2``.

  The norm is taken over ``axis``; every index of the remaining axes is one
  group. For a kernel of shape ``(inputs, outputs)``, ``axis=1`` makes each
  row (each input) a group: that is scikit-learn's ``MultiTaskLasso`` with
  ``W`` of shape ``(n_features, n_tasks)``. ``lam_g = lam``, or
  ``lam * sqrt(group size)`` when ``scale_by_size`` (Yuan & Lin 2006).

  With a scalar step the prox is the block soft threshold
  ``x_g = max(0, 1 - step lam_g / ||z_g||) z_g``.

  With a per-coordinate step ``s`` (a diagonal metric) there is no closed
  form. The optimality condition ``(x_i - z_i) / s_i + lam_g x_i / ||x_g|| = 0``
  gives ``x_g = 0`` iff ``||z_g / s_g||_2 <= lam_g``; otherwise
  ``x_i = z_i rho / (rho + s_i lam_g)`` where ``rho = ||x_g|| > 0`` is the
  unique root of ``sum_i z_i^2 / (rho + s_i lam_g)^2 = 1``, found by a
  safeguarded Newton iteration. It stops once the relative residual of the
  optimality condition is at most ``16 eps`` (``eps`` of float32, or of the
  input's dtype if wider; the result is then the exact prox for a ``lam_g``
  changed by that relative amount), or the root is bracketed that closely,
  or as closely as round-off allows: every entry of the result is within
  ``4 eps ||z_g||`` of the exact prox. See :mod:`optax_l1._group` for the
  certificate, the start and the bound. On a single CPU device an array
  of at least two slabs of about ``optax_l1._group.BLOCK_ELEMENTS`` entries
  (cut along its longest non-group axis, so each holds whole groups) is
  processed one slab at a time, so that the passes run in cache (except
  with a scalar step and ``axis`` the trailing axes, where the whole array
  was faster); the arithmetic per group is the same. For groups that span several arrays
  (attention heads, hidden units) see :func:`group_lasso_sets`.

  Args:
    z: input array.
    step: scalar, or per-coordinate step of ``z``'s shape.
    lam: group penalty strength, >= 0.
    axis: axis or axes the group norm runs over.
    scale_by_size: multiply ``lam`` by ``sqrt(group size)``.

  Returns:
    The prox, of ``z``'s shape and dtype; zeroed groups are exactly zero.

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_l1 import ops
    >>> z = jnp.array([[3.0, 4.0], [0.3, 0.4]])  # row norms 5 and 0.5
    >>> ops.group_lasso(z, step=1.0, lam=1.0, axis=1)
    Array([[2.4, 3.2],
           [0. , 0. ]], dtype=float32)
  """
  return _group.group_lasso_one(z, step, lam, axis, scale_by_size, None)


def sparse_group_lasso(z: ArrayLike, step: ArrayLike, l1: ArrayLike,
                       lam: ArrayLike, axis: Axis,
                       scale_by_size: bool = False) -> jax.Array:
  """Prox of ``R(x) = l1 ||x||_1 + lam_g sum_g ||x_g||_2`` (sparse group lasso).

  The L1 part is separable and sign-preserving, so the prox is the group prox
  of the soft-thresholded point, exactly, for a scalar or a diagonal metric
  (Simon et al. 2013): ``group_lasso(l1(z, step, l1), step, lam, axis)``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_l1 import ops
    >>> ops.sparse_group_lasso(jnp.array([[4.0, 0.5]]), 1.0, l1=1.0, lam=0.5, axis=1)
    Array([[2.5, 0. ]], dtype=float32)
  """
  return _group.group_lasso_one(z, step, lam, axis, scale_by_size, l1)


def l0(z: ArrayLike, step: ArrayLike, lam: ArrayLike) -> jax.Array:
  """Prox of ``R(x) = lam ||x||_0`` (hard thresholding; not convex).

  ``x_i = z_i`` if ``z_i^2 > 2 step_i lam``, else ``0``: keeping ``z_i``
  costs ``lam`` while zeroing it costs ``z_i^2 / (2 step_i)``. At a tie the
  operator returns 0.

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_l1 import ops
    >>> ops.l0(jnp.array([0.5, 1.5, -2.0]), step=1.0, lam=0.5)  # keeps |z| > 1
    Array([ 0. ,  1.5, -2. ], dtype=float32)
  """
  z = jnp.asarray(z)
  # Compared as |z| <= sqrt(2 step lam) in at least float32: z * z would
  # underflow for tiny weights and zero them even at lam = 0.
  ct = z.dtype if jnp.finfo(z.dtype).bits >= 32 else jnp.dtype(jnp.float32)
  thr = jnp.sqrt(2 * jnp.asarray(step).astype(ct) * jnp.asarray(lam).astype(ct))
  # `<=` so that NaN fails the zeroing test and stays NaN.
  return jnp.where(jnp.abs(z).astype(ct) <= thr, jnp.zeros((), z.dtype), z)
