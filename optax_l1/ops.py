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
    "normalize_axis",
    "GROUP_NEWTON_ITERS",
]

# Safeguarded Newton iterations for the group prox in a diagonal metric. The
# secular function below is exactly linear when the metric is constant on a
# group, and the start is exact in that case. On 3000 random groups (sizes
# 2-63, Student-t(2) entries, log-normal metrics spanning up to e^8) the worst
# relative error of ||x_g|| in float64 was 1.8e-3 after 4 steps, 6e-7 after 5
# and 1e-13 after 6.
GROUP_NEWTON_ITERS = 6

# On a single CPU device the group proxes run over slabs of whole groups of
# about this many elements (1 MiB in float32), so that the diagonal-metric
# Newton passes stay in cache and need no full-size temporaries beyond their
# two inputs (tests/test_compiled.py). Elsewhere (GPU, TPU, several
# devices) it runs on the whole array at once, which XLA fuses and
# partitions. See `_group_block_elements`. 2^18 was the fastest of 2^14 ..
# 2^20 at 1e7 parameters on the 2-core development machine.
GROUP_BLOCK_ELEMENTS = 1 << 18


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


def normalize_axis(axis: Axis, ndim: int, name: str = "axis") -> tuple[int, ...]:
  """Validates ``axis`` for an array of rank ``ndim``; returns sorted axes.

  Raises:
    ValueError: if an axis is out of range, repeated, or none is given.
    TypeError: if an axis is not an integer.
  """
  if isinstance(axis, int):
    axes = (axis,)
  elif isinstance(axis, (tuple, list)):
    axes = tuple(axis)
  else:
    raise TypeError(f"`{name}` must be an int or a sequence of ints; "
                    f"got {axis!r}.")
  if not axes:
    raise ValueError(f"`{name}` must name at least one axis; got {axis!r}.")
  for a in axes:
    if isinstance(a, bool) or not isinstance(a, int):
      raise TypeError(f"`{name}` must be an int or a sequence of ints; "
                      f"got {axis!r}.")
    if not -ndim <= a < ndim:
      raise ValueError(f"`{name}`={axis!r} is out of range for a parameter "
                       f"of rank {ndim}.")
  norm = tuple(sorted(a % ndim for a in axes))
  if len(set(norm)) != len(norm):
    raise ValueError(f"`{name}`={axis!r} repeats an axis.")
  return norm


def _group_size(shape: tuple[int, ...], axes: tuple[int, ...]) -> int:
  size = 1
  for a in axes:
    size *= shape[a]
  return size


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
  unique root of ``sum_i z_i^2 / (rho + s_i lam_g)^2 = 1``. The root lies in
  ``[||z_g|| - lam_g max s, ||z_g|| - lam_g min s]``; we solve
  ``q(rho) = (sum_i z_i^2 / (rho + s_i lam_g)^2)^(-1/2) - 1 = 0`` (linear
  in ``rho`` when ``s`` is constant on the group) with
  :data:`GROUP_NEWTON_ITERS` bracketed Newton steps from
  ``||z_g|| - sum z_i^2 s_i lam_g / ||z_g||^2`` (exact for a constant metric),
  in at least float32. On a single CPU device (either step), an array of
  at least two slabs of about ``GROUP_BLOCK_ELEMENTS`` entries (cut along
  its longest non-group axis, so each holds whole groups) is processed one
  slab at a time, so that the Newton passes run in cache; the arithmetic per
  group is the same.

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
  return _group_lasso(z, step, lam, axis, scale_by_size, None)


def _group_lasso(z: ArrayLike, step: ArrayLike, lam: ArrayLike, axis: Axis,
                 scale_by_size: bool, l1: ArrayLike | None) -> jax.Array:
  """Group prox of the soft-thresholded point (no soft threshold if ``l1``
  is None); see :func:`group_lasso` and :func:`sparse_group_lasso`."""
  z = jnp.asarray(z)
  axes = normalize_axis(axis, z.ndim)
  dtype = z.dtype
  # At least float32 (written without promote_types, which strict dtype
  # promotion refuses for bfloat16).
  ct = dtype if jnp.finfo(dtype).bits >= 32 else jnp.dtype(jnp.float32)
  zc = z.astype(ct)
  lam_g = jnp.asarray(lam).astype(ct)
  if scale_by_size:
    lam_g = lam_g * jnp.sqrt(jnp.asarray(_group_size(z.shape, axes), ct))
  step = jnp.asarray(step)
  if l1 is not None:
    l1 = jnp.asarray(l1).astype(ct)
    if l1.ndim:  # per-coordinate: threshold up front (the slabs take scalars)
      zc, l1 = soft_threshold(zc, step.astype(ct) * l1), None
  if step.ndim == 0:
    return _group_prox_scalar(zc, step.astype(ct), lam_g, l1, axes,
                              _group_block_elements()).astype(dtype)
  s = jnp.broadcast_to(step.astype(ct), z.shape)
  # The soft threshold goes inside, slab by slab: `s` then stays the only
  # full-size operand of the slab loop besides `zc`.
  return _group_prox_diagonal(zc, s, lam_g, l1, axes,
                              _group_block_elements()).astype(dtype)


def _safe_sqrt(x: jax.Array) -> jax.Array:
  """``sqrt(x)`` whose gradient at ``x = 0`` is 0, not NaN (a zeroed or
  all-zero group has a finite, zero derivative)."""
  pos = x > 0
  return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, jnp.ones((), x.dtype))),
                   jnp.zeros((), x.dtype))


def _group_scale(zc: jax.Array, axes: tuple[int, ...]) -> jax.Array:
  """Each group's largest ``|z|`` (1 for an all-zero, NaN or inf group).

  The group proxes work in these units so that squares cannot underflow
  (``|z| < 1e-19`` in float32) or overflow: the prox of ``lam ||.||`` at
  ``z`` is ``a`` times the prox of ``(lam / a) ||.||`` at ``z / a``. A NaN or
  infinite group keeps ``a = 1``, so its NaN / inf propagate.
  """
  amax = jnp.max(jnp.abs(zc), axis=axes, keepdims=True, initial=0)  # empty ok
  return jnp.where((amax > 0) & (amax < jnp.inf), amax,
                   jnp.ones((), zc.dtype))


@functools.partial(jax.jit, static_argnames=("axes", "block"))
def _group_prox_scalar(zc: jax.Array, step: jax.Array, lam_g: jax.Array,
                       l1: jax.Array | None, axes: tuple[int, ...],
                       block: int) -> jax.Array:
  """Block soft threshold (of the soft threshold by ``step * l1`` unless
  ``l1`` is None); see :func:`group_lasso`. Slabs: see `_by_slabs`."""
  def core(zc, _, dot_sums=False):
    ct = zc.dtype
    if l1 is not None:
      zc = soft_threshold(zc, step * l1)
    a = _group_scale(zc, axes)
    zs = zc / a
    sq = _group_sum(axes, zs.shape, ct, dot_sums)(zs * zs)
    norm = jnp.where(jnp.isnan(sq), sq, _safe_sqrt(sq))  # NaN stays NaN
    thr = step * (lam_g / a)
    safe = jnp.where(norm > 0, norm, jnp.ones((), ct))
    # `<=` so that a NaN norm fails the test and the NaN propagates.
    factor = jnp.where(norm <= thr, jnp.zeros((), ct), 1 - thr / safe)
    return zc * factor
  return _by_slabs(core, zc, None, axes, block)


def _group_sum(axes: tuple[int, ...], shape: tuple[int, ...], ct: Any,
               dot: bool) -> Callable[[jax.Array], jax.Array]:
  """Sums over ``axes`` (kept as size-1 axes). ``dot``: as a contraction with
  ones (float32 or better), which XLA:CPU runs up to 13x faster than its
  reductions over short rows or columns."""
  if not dot:
    return lambda x: jnp.sum(x, axis=axes, keepdims=True)
  ones = jnp.ones(tuple(shape[i] for i in axes), ct)
  contract = ((axes, tuple(range(len(axes)))), ((), ()))
  return lambda x: jnp.expand_dims(jax.lax.dot_general(
      x, ones, contract, precision=jax.lax.Precision.HIGHEST), axes)


def _group_block_elements() -> int:
  """Slab size for the group proxes (0: the whole array at once).

  Slabs pay off on XLA:CPU, which materializes every reduction's inputs (a
  fresh full-size buffer per Newton pass, page-faulted in at every step)
  and runs reductions over short rows or columns slowly.
  The loop over slabs is sequential and slices its operands, which would
  make an SPMD partitioner gather a sharded array, so it is used on a single
  CPU device only.
  """
  if jax.default_backend() == "cpu" and jax.device_count() == 1:
    return GROUP_BLOCK_ELEMENTS
  return 0


@functools.partial(jax.jit, static_argnames=("axes", "block"))
def _group_prox_diagonal(zc: jax.Array, s: jax.Array, lam_g: jax.Array,
                         l1: jax.Array | None, axes: tuple[int, ...],
                         block: int) -> jax.Array:
  """Group prox in the metric ``diag(1/s)``; see :func:`group_lasso`.

  Slabs: see `_by_slabs`. Jitted (as is `_group_prox_scalar`) so that eager
  calls compile once per shape; under an outer jit it is inlined.
  """
  core = functools.partial(_group_prox_diagonal_core, lam_g=lam_g, l1=l1,
                           axes=axes)
  return _by_slabs(core, zc, s, axes, block)


def _by_slabs(core: Callable[..., jax.Array], zc: jax.Array,
              s: jax.Array | None, axes: tuple[int, ...],
              block: int) -> jax.Array:
  """``core(zc, s)``, or with ``block > 0`` slab by slab.

  The array is cut along its longest non-group axis into slabs of about
  ``block`` entries (whole groups, no transpose) that ``core(zb, sb,
  dot_sums=True)`` processes one at a time in a loop that overwrites ``zc``
  in place; the result is the same computation group by group.
  """
  size = _group_size(zc.shape, axes)
  rest = [i for i in range(zc.ndim) if i not in axes]
  if not zc.size:
    return zc  # no groups, or only empty ones: nothing to do
  if not block or not size or not rest:
    return core(zc, s)
  ax = max(rest, key=lambda i: zc.shape[i])  # the axis cut into slabs
  n = zc.shape[ax]
  width = max(1, block // (zc.size // n))  # slab width along `ax`
  if n < 2 * width:
    return core(zc, s)

  # The last slab is shifted back to end at the array's end; the groups it
  # shares with the slab before (done already) keep their values. (A tail
  # computed after the loop, or padding, made XLA keep full-size copies of
  # the inputs alive.)
  shape = [1] * zc.ndim
  shape[ax] = width
  pos = jax.lax.broadcasted_iota(jnp.int32, shape, ax)

  def body(i, out):
    start = jnp.minimum(i * width, n - width)
    zb = jax.lax.dynamic_slice_in_dim(out, start, width, ax)
    sb = None if s is None else jax.lax.dynamic_slice_in_dim(s, start,
                                                             width, ax)
    new = jnp.where(start + pos >= i * width, core(zb, sb, dot_sums=True), zb)
    return jax.lax.dynamic_update_slice_in_dim(out, new, start, ax)

  # zc is overwritten in place, slab by slab.
  return jax.lax.fori_loop(0, -(-n // width), body, zc)


def _group_prox_diagonal_core(zc: jax.Array, s: jax.Array, lam_g: jax.Array,
                              l1: jax.Array | None, axes: tuple[int, ...],
                              dot_sums: bool = False) -> jax.Array:
  """The diagonal-metric group prox of every group of ``zc`` at once (of its
  soft threshold by ``s * l1`` unless ``l1`` is None).

  ``dot_sums``: group sums as contractions with ones (see `_group_sum`).
  """
  ct = zc.dtype
  gsum = _group_sum(axes, zc.shape, ct, dot_sums)
  if l1 is not None:
    zc = soft_threshold(zc, s * l1)
  a = _group_scale(zc, axes)
  zs = zc / a
  lam_s = lam_g / a
  c = s * lam_s  # per-coordinate shrinkage, >= 0
  # ||D z|| with D = 1/s; a zero step pins its coordinate (infinite metric).
  dz = jnp.where(zs == 0, jnp.zeros((), ct),
                 zs / jnp.where(zs == 0, jnp.ones((), ct), s))
  dsq = gsum(dz * dz)
  dnorm = jnp.where(jnp.isnan(dsq), dsq, _safe_sqrt(dsq))  # NaN stays NaN
  zero_group = dnorm <= lam_s
  # Zeroed groups return `z * 0` below; the root-find runs on a stand-in
  # there (z = c = 1), so that no inf or NaN of theirs reaches a derivative.
  one = jnp.ones((), ct)
  zs = jnp.where(zero_group, one, zs)
  c = jnp.where(zero_group, one, c)
  z2 = zs * zs
  norm = jnp.sqrt(gsum(z2))

  cmax = jnp.max(c, axis=axes, keepdims=True, initial=0)
  cmin = jnp.min(c, axis=axes, keepdims=True, initial=jnp.inf)
  # Each term of the secular sum is <= 1, so rho >= |z_i| - c_i for every i;
  # this bound is what finds a root set by one pinned coordinate (c_i = 0).
  lo = jnp.maximum(jnp.maximum(norm - cmax, 0),
                   jnp.max(jnp.abs(zs) - c, axis=axes, keepdims=True,
                           initial=0))
  hi = jnp.maximum(norm - cmin, 0)
  tiny = jnp.finfo(ct).tiny

  def newton(_, carry):
    rho, lo, hi = carry
    d = rho + c
    r = 1 / jnp.where(d > 0, d, tiny)
    # A zero entry adds nothing (also where r overflows: no 0 * inf).
    t2 = jnp.where(z2 > 0, z2 * r * r, jnp.zeros((), ct))
    h = gsum(t2)
    dh = -2 * gsum(t2 * r)
    h = jnp.where(h > 0, h, tiny)
    q = jax.lax.rsqrt(h) - 1
    dq = -0.5 * dh * h ** (-1.5)  # > 0: q increases with rho
    lo = jnp.where(q < 0, jnp.maximum(lo, rho), lo)
    hi = jnp.where(q > 0, jnp.minimum(hi, rho), hi)
    nxt = rho - q / jnp.where(dq > 0, dq, tiny)
    inside = (nxt >= lo) & (nxt <= hi)
    rho = jnp.where(inside, nxt, 0.5 * (lo + hi))
    return rho, lo, hi

  # Start from the root for the metric's z^2-weighted mean on the group.
  z2sum = gsum(z2)
  cbar = gsum(z2 * c) / jnp.where(
      z2sum > 0, z2sum, jnp.ones((), ct))
  rho0 = jnp.clip(norm - cbar, lo, hi)
  rho, _, _ = jax.lax.fori_loop(0, GROUP_NEWTON_ITERS, newton,
                                (rho0, lo, hi), unroll=True)
  denom = rho + c
  # The ratio first (z * rho can underflow where denom is tiny), applied to
  # the unscaled z: a pinned coordinate (c = 0) keeps its value exactly.
  x = zc * (rho / jnp.where(denom > 0, denom, jnp.ones((), ct)))
  # `z * 0` keeps a NaN in a zeroed group visible.
  return jnp.where(zero_group, zc * 0, x)


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
  return _group_lasso(z, step, lam, axis, scale_by_size, l1)


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
