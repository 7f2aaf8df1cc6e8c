"""Group-lasso proximal operators: groups in one array, or across arrays.

The penalty is ``R(x) = sum_g lam_g ||x_g||_2``. A group is either the
entries of one array that share an index of its non-group axes
(:func:`group_lasso`, ``axis=`` the axes the norm runs over), or, for
:func:`group_lasso_sets`, the slices at index ``g`` along one axis of each of
several arrays (an attention head is its query, key and value columns and its
output rows; a hidden unit is its input column and its output row).

Scalar step ``t``: the block soft threshold
``x_g = max(0, 1 - t lam_g / ||z_g||) z_g``.

Per-coordinate step ``s`` (a diagonal metric, what an adaptive optimizer
uses): the optimality condition ``(x_i - z_i) / s_i + lam_g x_i / ||x_g|| = 0``
gives ``x_g = 0`` iff ``||z_g / s_g||_2 <= lam_g``; otherwise
``x_i = z_i rho / (rho + c_i)`` with ``c_i = s_i lam_g`` and
``rho = ||x_g|| > 0`` the unique root of the secular equation

.. math::

  h(\\rho) = \\sum_{i \\in g} \\frac{z_i^2}{(\\rho + c_i)^2} = 1,

``h`` decreasing. The root lies in ``[0, ||z_g||]`` (``h(0) >= 1`` for a
group that is not zeroed, and every term of ``h(||z_g||)`` is at most
``z_i^2 / ||z_g||^2``); tighter bounds would cost a group reduction each,
as much as a Newton iteration. We solve
``q(rho) = h(rho)^(-1/2) - 1 = 0`` by Newton's method from the root for the
group's ``z^2``-weighted mean ``cbar`` of ``c`` (exact for a constant
metric, where ``q`` is linear). ``q`` is increasing and concave (it is the
trust-region secular function ``1 / ||p(lambda)|| - 1 / Delta`` of Moré &
Sorensen 1983), and the start is left of the root (``1 / (rho + c)^2`` is
convex in ``c``, so by Jensen ``h(||z_g|| - cbar) >= 1``): Newton's iterates
rise monotonically to the root, quadratically; every evaluation also
shrinks a bracket with the sign of ``q``, and a point not strictly inside it
(round-off) is replaced by bisection.

What a stop certifies: ``x(rho) = z rho / (rho + c)`` is, for *any*
``rho > 0``, the exact prox for the penalty ``lam_g' = lam_g (1 + q(rho))^-1``
(then ``||x|| = rho h^(1/2)``, and the optimality condition with
``lam_g'`` holds term by term), so ``|q(rho)|`` is the relative residual of
the optimality condition for ``lam_g``. A group stops when
``|q(rho)| <= 16 eps`` (``eps`` the machine epsilon of the computation
dtype, float32 or wider; :data:`TOLERANCE`), or when its bracket is within
``16 eps rho``, or when two evaluations in a row did not narrow the bracket
(round-off in ``h`` then decides the sign of ``q``: a group that barely
survives has a nearly flat ``q``); the loop ends when every group has
stopped, or after :data:`MAX_ITERS` evaluations. One more Newton step from
the last point is free (``q`` and its slope are known there) and is taken
where it provably does not increase ``|q|``: from the left it lands between
the point and the root; from the right, at ``rho (1 - delta)``, with
``h(r) <= h(rho) (rho / r)^2`` for ``r <= rho`` it gives
``q_new >= q - delta (1 + q)``, so it is taken when
``delta <= 2 q / (1 + q)``. Measured against ``tests/test_group.py``'s
float64 bisections (groups of 1 to 1000 entries whose metrics span 1e-8 ..
1e8, with pinned coordinates, in float32 and float64), every entry is within
``0.9 eps ||z_g||`` of the exact prox; the test asserts ``4 eps``. With
Adam's metric most groups stop after 2 evaluations; a slab's loop runs until
its slowest group stops: 2-3 evaluations on rows of 1024 or 4096, 3-4 on
rows of 64, 4-5 on rows of 16. The derivative of ``rho`` is taken by the
implicit function theorem on ``h(rho) = 1``, not through the iteration.

Squares must neither underflow nor overflow: the prox of ``lam ||.||`` at
``z`` is ``a`` times the prox of ``(lam / a) ||.||`` at ``z / a``, so
the root-find runs in units of each group's largest ``|z|`` (one more group
reduction) on several devices, GPU and TPU, and on one CPU device where a
group's ``||z||`` or ``||z / s||`` is outside a safe range (see ``_setup``
and ``_diagonal``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import functools
import math
from typing import Any, NamedTuple, Union

import jax
import jax.numpy as jnp

from optax_l1._lazy import LazyStep
from optax_l1._lazy import single_cpu_device
from optax_l1._lazy import slab_loop

ArrayLike = jax.typing.ArrayLike
Axis = Union[int, Sequence[int]]

# Cap of the safeguarded Newton iteration (see the module docstring); never
# reached in the tests.
MAX_ITERS = 100

# The iteration stops for a group when |q(rho)| <= TOLERANCE * eps (the
# relative residual of its optimality condition) or its bracket is within
# TOLERANCE * eps * rho (eps: machine epsilon of the
# computation dtype).
TOLERANCE = 16

# On a single CPU device the single-array group proxes run over slabs of whole
# groups of about this many elements (1 MiB in float32; all but the block soft
# threshold of groups along the trailing axes, see group_lasso_one), so that
# the Newton passes stay in cache and need no full-size temporaries beyond their two
# inputs (tests/test_compiled.py). Elsewhere (GPU, TPU, several devices) they
# run on the whole array at once, which XLA fuses and partitions. 2^18 was the
# fastest of 2^14 .. 2^20 at 1e7 parameters on the 2-core development machine.
BLOCK_ELEMENTS = 1 << 18


def normalize_axis(axis: Axis, ndim: int, name: str = "axis") -> tuple[int, ...]:
  """Validates ``axis`` for an array of rank ``ndim``; returns sorted axes.

  Raises:
    ValueError: if an axis is out of range, repeated, or none is given.
    TypeError: if an axis is not an integer.
  """
  if isinstance(axis, int) and not isinstance(axis, bool):
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


def _trailing(axes: tuple[int, ...], ndim: int) -> bool:
  """Whether the sorted ``axes`` are the last ``len(axes)`` of ``ndim``
  (groups are rows, contiguous in memory)."""
  return axes == tuple(range(ndim - len(axes), ndim))


def _compute_dtype(dtype: Any) -> Any:
  """At least float32 (written without promote_types, which strict dtype
  promotion refuses for bfloat16)."""
  return dtype if jnp.finfo(dtype).bits >= 32 else jnp.dtype(jnp.float32)


def _soft(z: jax.Array, t: jax.Array) -> jax.Array:
  return jnp.sign(z) * jnp.maximum(jnp.abs(z) - t, jnp.zeros((), z.dtype))


def _safe_sqrt(x: jax.Array) -> jax.Array:
  """``sqrt(x)`` whose gradient at ``x = 0`` is 0, not NaN (a zeroed or
  all-zero group has a finite, zero derivative); NaN stays NaN."""
  pos = x > 0
  out = jnp.where(pos, jnp.sqrt(jnp.where(pos, x, jnp.ones((), x.dtype))),
                  jnp.zeros((), x.dtype))
  return jnp.where(jnp.isnan(x), x, out)


# ---------------------------------------------------------------------------
# Groups: how per-entry quantities reduce to one value per group and back.
# ---------------------------------------------------------------------------


class _Groups:
  """Reductions over the groups of a list of arrays.

  ``sum``/``max``/``min`` map a list of arrays (one per leaf, the leaves'
  shapes) to one array of group values (the "group shape"); ``expand(v, i)``
  broadcasts group values back against leaf ``i``.
  """

  def __init__(self, shapes, to_group, expand, dot_sums=False):
    self.shapes = shapes
    self._to_group = to_group  # (x, i, op) -> group-shaped
    self._expand = expand
    self.dot_sums = dot_sums

  @staticmethod
  def single(shape: tuple[int, ...], axes: tuple[int, ...],
             dot_sums: bool = False) -> "_Groups":
    """One array; the norm runs over ``axes`` (kept as size-1 axes)."""
    def dot_ones(x):
      # A contraction of ``axes`` with ones (float32 or better): XLA:CPU
      # runs it up to 13x faster than its reductions over short rows or
      # columns. Axes of ``x`` after the array's own are kept.
      ones = jnp.ones(tuple(shape[a] for a in axes), x.dtype)
      contract = ((axes, tuple(range(len(axes)))), ((), ()))
      return jax.lax.dot_general(x, ones, contract,
                                 precision=jax.lax.Precision.HIGHEST)

    def to_group(x, i, op):
      del i
      if op == "sum" and dot_sums:
        return jnp.expand_dims(dot_ones(x), axes)
      fn = {"sum": jnp.sum, "max": jnp.max, "min": jnp.min}[op]
      kw = {} if op == "sum" else {"initial": _INITIAL[op](x.dtype)}
      return fn(x, axis=axes, keepdims=True, **kw)
    def expand(v, i):
      del i
      if not dot_sums:
        return v
      # In slabs (XLA:CPU): group values broadcast to the slab's shape as a
      # buffer of their own; fused into the elementwise passes, a broadcast
      # along short rows kept them from vectorizing (rows of 16: a loop of
      # Newton evaluations alone took 1.2-1.5x as long; in the full step
      # the difference is within the machine's noise).
      return jax.lax.optimization_barrier(jnp.broadcast_to(v, shape))
    groups = _Groups([shape], to_group, expand)
    if (dot_sums and _trailing(axes, len(shape))
        and math.prod(shape[a] for a in axes) >= 64):
      # Rows of 64 or more: two sums in one contraction of the stacked
      # terms: the prox alone 5-15% faster on XLA:CPU (slower on shorter
      # rows, 3x slower on columns, and 2x slower for the setup's three
      # sums; in the full step within the machine's noise).
      def pair(x, y):
        both = dot_ones(jnp.stack([x, y], -1))
        return (jnp.expand_dims(both[..., 0], axes),
                jnp.expand_dims(both[..., 1], axes))
      groups.pair = pair
    return groups

  @staticmethod
  def across(shapes: Sequence[tuple[int, ...]],
             axes: Sequence[int]) -> "_Groups":
    """Several arrays; group ``g`` is index ``g`` along ``axes[i]`` of each."""
    def to_group(x, i, op):
      other = tuple(d for d in range(x.ndim) if d != axes[i])
      fn = {"sum": jnp.sum, "max": jnp.max, "min": jnp.min}[op]
      kw = {} if op == "sum" else {"initial": _INITIAL[op](x.dtype)}
      return fn(x, axis=other, **kw)

    def expand(v, i):
      shape = [1] * len(shapes[i])
      shape[axes[i]] = v.shape[0]
      return v.reshape(shape)
    return _Groups(list(shapes), to_group, expand)

  def reduce(self, xs: Sequence[jax.Array], op: str) -> jax.Array:
    parts = [self._to_group(x, i, op) for i, x in enumerate(xs)]
    combine = {"sum": jnp.add, "max": jnp.maximum, "min": jnp.minimum}[op]
    return functools.reduce(combine, parts)

  def sum(self, xs):
    return self.reduce(xs, "sum")

  def pair(self, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The group sums of two arrays of one leaf's shape (one group
    structure over a single array may do both in one pass)."""
    return self.sum([x]), self.sum([y])

  def max(self, xs):
    return self.reduce(xs, "max")

  def min(self, xs):
    return self.reduce(xs, "min")

  def expand(self, v: jax.Array, i: int) -> jax.Array:
    return self._expand(v, i)


_INITIAL = {"max": lambda dt: -jnp.inf, "min": lambda dt: jnp.inf}


def _scale(zs: Sequence[jax.Array], groups: _Groups) -> jax.Array:
  """Each group's largest ``|z|`` (1 for an all-zero, NaN or inf group), so
  that the prox works in units where squares neither underflow nor
  overflow: the prox of ``lam ||.||`` at ``z`` is ``a`` times the prox of
  ``(lam / a) ||.||`` at ``z / a``. A NaN or infinite group keeps ``a = 1``,
  so its NaN / inf propagate."""
  amax = groups.max([jnp.abs(z) for z in zs])
  one = jnp.ones((), amax.dtype)
  return jnp.where((amax > 0) & (amax < jnp.inf), amax, one)


# ---------------------------------------------------------------------------
# The two proxes on lists of arrays (one group structure).
# ---------------------------------------------------------------------------


def _block_soft(zs: list[jax.Array], step: jax.Array, lam_g: jax.Array,
                groups: _Groups) -> list[jax.Array]:
  """Scalar step: ``x_g = max(0, 1 - step lam_g / ||z_g||) z_g``."""
  ct = zs[0].dtype
  a = _scale(zs, groups)
  norm = _safe_sqrt(groups.sum(
      [(z / groups.expand(a, i)) ** 2 for i, z in enumerate(zs)]))
  thr = step * (lam_g / a)
  safe = jnp.where(norm > 0, norm, jnp.ones((), ct))
  # `<=` so that a NaN norm fails the test and the NaN propagates.
  factor = jnp.where(norm <= thr, jnp.zeros((), ct), 1 - thr / safe)
  return [z * groups.expand(factor, i) for i, z in enumerate(zs)]


class _Setup(NamedTuple):
  """The root-find's inputs in units of ``a`` (see :func:`_setup`)."""
  cs: list[jax.Array]       # c = s lam / a (>= 0; 1 in zeroed groups)
  zr: list[jax.Array]       # z / a (1 in zeroed groups)
  zero_group: jax.Array
  z2sum: jax.Array          # sum (z / a)^2
  zcsum: jax.Array          # sum (z / a)^2 c
  ok: jax.Array             # (unscaled only) every group in range


def _setup(zs, ss, lam_g, groups, scale):
  """Zero test and root-find inputs in units of ``a`` (``scale``: each
  group's largest ``|z|``, or None for ``a = 1``).

  Unscaled, ``ok`` says whether every group is safely in range for it:
  ``sum z^2`` in ``[2^-40, 2^40]`` (and ``sum (z / s)^2`` not NaN; an
  infinite one, from a pinned coordinate, keeps the group as in any units),
  or ``sum (z / s)^2 < 2^-100`` with ``lam >= 2^-40`` (zeroed, whatever
  underflowed). Then no square that matters under- or overflows, and the
  two computations differ by rounding only (``h`` and ``q`` do not depend
  on the units)."""
  ct = zs[0].dtype
  one = jnp.ones((), ct)
  zero = jnp.zeros((), ct)
  ex = groups.expand
  if scale is None:
    zn, lam_s = list(zs), lam_g
    cs = [s * lam_g for s in ss]  # shrinkage, >= 0
  else:
    zn = [z / ex(scale, i) for i, z in enumerate(zs)]
    lam_s = lam_g / scale
    cs = [s * ex(lam_s, i) for i, s in enumerate(ss)]
  # ||D z|| with D = 1/s; a zero step pins its coordinate (infinite metric).
  dz = [jnp.where(z == 0, zero, z / jnp.where(z == 0, one, s))
        for z, s in zip(zn, ss)]
  z2 = [z * z for z in zn]
  dnorm2, z2sum, zcsum = [groups.sum(t) for t in (
      [d * d for d in dz], z2, [q * c for q, c in zip(z2, cs)])]
  zero_group = _safe_sqrt(dnorm2) <= lam_s
  if scale is None:
    in_range = ((z2sum >= 2.0 ** -40) & (z2sum <= 2.0 ** 40)
                & ~jnp.isnan(dnorm2))
    zeroed_anyway = (dnorm2 < 2.0 ** -100) & (lam_s >= 2.0 ** -40)
    ok = jnp.all(in_range | zeroed_anyway)
  else:
    ok = jnp.ones((), bool)
  # Zeroed groups return `z * 0`; the root-find runs on a stand-in there
  # (z = c = 1), so that no inf or NaN of theirs reaches a derivative.
  zr = [jnp.where(ex(zero_group, i), one, z) for i, z in enumerate(zn)]
  cs = [jnp.where(ex(zero_group, i), one, c) for i, c in enumerate(cs)]
  n = [jnp.where(zero_group, one, v) for v in (z2sum, zcsum)]
  return _Setup(cs, zr, zero_group, n[0], n[1], ok)


def _diagonal(zs: list[jax.Array], ss: list[jax.Array], lam_g: jax.Array,
              groups: _Groups) -> list[jax.Array]:
  """Per-coordinate steps ``ss``: the root-find of the module docstring.

  On one CPU device it runs on ``z`` itself where every group of the call
  (a slab) is safely in range (:func:`_setup`), else in units of each
  group's largest ``|z|`` (one more group reduction). Elsewhere (several
  devices, GPU, TPU) always in those units: there the conditional would
  cost a collective or a round trip to the host, and compiling both
  branches doubled the sharded tests' compile time."""
  ct = zs[0].dtype
  one = jnp.ones((), ct)
  ex = groups.expand

  def finish(st):
    rho = _root(groups)(st.zr, st.cs, st.zero_group, st.z2sum, st.zcsum)
    out = []
    for i, (z, c) in enumerate(zip(zs, st.cs)):
      denom = ex(rho, i) + c
      # The ratio first (z * rho can underflow where denom is tiny), applied
      # to the unscaled z. A pinned coordinate (c = 0) keeps its value
      # exactly, even where its z^2 underflowed out of h and rho came out as
      # 0.
      x = jnp.where(c == 0, z,
                    z * (ex(rho, i) / jnp.where(denom > 0, denom, one)))
      # `z * 0` keeps a NaN in a zeroed group visible.
      out.append(jnp.where(ex(st.zero_group, i), z * 0, x))
    return out

  scaled = lambda: finish(_setup(zs, ss, lam_g, groups, _scale(zs, groups)))
  if not single_cpu_device():
    return scaled()
  plain = _setup(zs, ss, lam_g, groups, None)
  return jax.lax.cond(plain.ok, lambda: finish(plain), scaled)


def _ratios(groups, zs, cs, rho):
  """``[(r_i, z_i r_i)]`` per array, ``r_i = 1 / (rho + c_i)`` (``rho + c_i
  = 0``, a pinned coordinate at ``rho = 0``, counts as the smallest normal
  number: its term is then as large as can be represented)."""
  tiny = jnp.finfo(zs[0].dtype).tiny
  out = []
  for i, (z, c) in enumerate(zip(zs, cs)):
    r = 1 / jnp.maximum(groups.expand(rho, i) + c, tiny)
    out.append((r, z * r))
  return out


def _secular(groups, zs, cs, rho):
  """``sum_i z_i^2 / (rho + c_i)^2`` and ``sum_i z_i^2 / (rho + c_i)^3``
  per group."""
  rw = _ratios(groups, zs, cs, rho)
  if len(rw) == 1:
    (r, w), = rw
    return groups.pair(w * w, w * w * r)
  return (groups.sum([w * w for _, w in rw]),
          groups.sum([w * w * r for r, w in rw]))


def _root(groups: _Groups) -> Callable[..., jax.Array]:
  """``rho(zs, cs, zero_group, z2sum, zcsum)``: the secular equation's root
  per group (``z2sum``, ``zcsum``: ``sum z^2`` and ``sum z^2 c``).

  Differentiable through the implicit function theorem (``h(rho) = 1``), so
  gradients need no pass through the iteration.
  """

  @jax.custom_jvp
  def root(zs, cs, zero_group, z2sum, zcsum):
    return _solve(groups, zs, cs, zero_group, z2sum, zcsum)

  @root.defjvp
  def root_jvp(primals, tangents):
    zs, cs, zero_group, _, _ = primals
    dzs, dcs, _, _, _ = tangents
    rho = root(*primals)
    ct = rho.dtype
    zero = jnp.zeros((), ct)
    # h(rho; z, c) = sum z^2 / (rho + c)^2 = 1: d rho = -(dh/dz dz + dh/dc
    # dc) / (dh/drho), with dh/dz = 2 z r^2, dh/dc = -2 z^2 r^3 and dh/drho
    # = -2 sum z^2 r^3 (r = 1 / (rho + c)).
    rw = _ratios(groups, zs, cs, rho)
    dh = groups.sum([2 * w * r * (dz - w * dc)
                     for (r, w), dz, dc in zip(rw, dzs, dcs)])
    dh_drho = -2 * groups.sum([w * w * r for r, w in rw])
    safe = jnp.where(dh_drho < 0, dh_drho, -jnp.ones((), ct))
    drho = jnp.where(zero_group | (dh_drho >= 0), zero, -dh / safe)
    return rho, drho

  return root


def _solve(groups: _Groups, zs: list[jax.Array], cs: list[jax.Array],
           zero_group: jax.Array, z2sum: jax.Array,
           zcsum: jax.Array) -> jax.Array:
  """The safeguarded Newton iteration of the module docstring."""
  ct = zs[0].dtype
  one = jnp.ones((), ct)
  tiny = jnp.finfo(ct).tiny
  norm = jnp.sqrt(z2sum)
  # h(0) >= 1 >= h(norm) (every term of h(norm) is at most z_i^2 / norm^2):
  # the root is in [0, norm]. (Tighter bounds cost a group reduction each.)
  lo = jnp.zeros_like(norm)
  hi = norm
  # Start from the root for the group's z^2-weighted mean of c.
  cbar = zcsum / jnp.where(z2sum > 0, z2sum, one)
  rho = jnp.clip(norm - cbar, lo, hi)
  tol = TOLERANCE * jnp.finfo(ct).eps

  def cond(carry):
    it, _, _, _, _, finished, _, _ = carry
    return (it < MAX_ITERS) & ~jnp.all(finished)

  def body(carry):
    it, rho, lo, hi, stalled, finished, q_end, dq_end = carry
    h, h3 = _secular(groups, zs, cs, rho)
    h = jnp.where(h > 0, h, tiny)
    q = jax.lax.rsqrt(h) - 1
    dq = h3 * h ** (-1.5)  # = -(1/2) h' h^(-3/2) > 0: q increases with rho
    width = hi - lo
    lo = jnp.where(q < 0, jnp.maximum(lo, rho), lo)
    hi = jnp.where(q > 0, jnp.minimum(hi, rho), hi)
    # Round-off in q bounds how closely the root can be located (for a
    # group that barely survives, q is nearly flat): two evaluations in a
    # row that do not narrow the bracket end the group there.
    stalled = jnp.where(hi - lo < width, 0, stalled + 1)
    now = ~finished & (zero_group | (jnp.abs(q) <= tol) | jnp.isnan(q)
                       | (hi - lo <= tol * rho) | (stalled >= 2))
    q_end = jnp.where(now, q, q_end)
    dq_end = jnp.where(now, dq, dq_end)
    step = -q / jnp.where(dq > 0, dq, tiny)
    # q is concave (More & Sorensen 1983), so from the left of the root
    # Newton's iterates rise monotonically to it, and from the right its
    # step lands left of it: a step below lo is replaced by lo; a point not
    # strictly inside the bracket (round-off) by bisection.
    nxt = jnp.maximum(rho + step, lo)
    ok = (nxt > lo) & (nxt < hi)
    new_rho = jnp.where(ok, nxt, 0.5 * (lo + hi))
    finished = finished | now
    rho = jnp.where(finished, rho, new_rho)
    return it + 1, rho, lo, hi, stalled, finished, q_end, dq_end

  zeros = jnp.zeros_like(rho)
  _, rho, lo, hi, _, _, q, dq = jax.lax.while_loop(
      cond, body, (jnp.zeros((), jnp.int32), rho, lo, hi,
                   jnp.zeros_like(rho, dtype=jnp.int32),
                   jnp.zeros_like(rho, dtype=bool), zeros, zeros))
  # A last Newton step from the point where the group stopped, free (q and
  # its slope are known there), kept where it provably does not raise |q|:
  # from the left it lands in [rho, root]; from the right at rho (1 - delta)
  # with -(delta (1 + q) - q) <= q(new) <= 0 (h(r) <= h(rho) (rho / r)^2 for
  # r <= rho, and concavity), so it is kept when delta <= 2 q / (1 + q).
  step = -q / jnp.where(dq > 0, dq, tiny)
  nxt = rho + step
  delta = -step / jnp.where(rho > 0, rho, one)
  keep = ((q < 0) | ((q > 0) & (delta <= 2 * q / (1 + q)))) & (
      nxt >= lo) & (nxt <= hi) & (dq > 0)
  return jnp.where(keep & ~zero_group, nxt, rho)


# ---------------------------------------------------------------------------
# One array: slabs of whole groups on a single CPU device.
# ---------------------------------------------------------------------------


def _block_elements() -> int:
  """Slab size for the single-array group proxes (0: the whole array).

  Slabs pay off on XLA:CPU, which materializes every reduction's inputs (a
  fresh full-size buffer per Newton pass, page-faulted in at every step)
  and runs reductions over short rows or columns slowly. The loop over slabs
  is sequential and slices its operands, which would make an SPMD partitioner
  gather a sharded array, so it is used on a single CPU device only.
  """
  return BLOCK_ELEMENTS if single_cpu_device() else 0


def _by_slabs(core: Callable[..., jax.Array], zc: jax.Array,
              s: Any, axes: tuple[int, ...], block: int) -> jax.Array:
  """``core(zc, s)``, or with ``block > 0`` slab by slab.

  The array is cut along its longest non-group axis into slabs of about
  ``block`` entries (whole groups, no transpose) that ``core(zb, sb,
  dot_sums=True)`` processes one at a time in a loop that overwrites ``zc``
  in place; the result is the same computation group by group. ``s`` is
  None, an array of ``zc``'s shape, or a :class:`LazyStep` whose operands
  have ``zc``'s shape: then each slab's step is computed from the operands'
  slabs and the full-size step is never a buffer of its own.
  """
  if isinstance(s, LazyStep) and not (block and zc.size):
    s = s()
  size = math.prod(zc.shape[a] for a in axes)
  rest = [i for i in range(zc.ndim) if i not in axes]
  if not zc.size:
    return zc  # no groups, or only empty ones: nothing to do
  whole = lambda: core(zc, s() if isinstance(s, LazyStep) else s)
  if not block or not size or not rest:
    return whole()
  ax = max(rest, key=lambda i: zc.shape[i])  # the axis cut into slabs
  n = zc.shape[ax]
  width = max(1, block // (zc.size // n))  # slab width along `ax`
  if n < 2 * width:
    return whole()

  # Groups of the shifted last slab that the slab before has done keep their
  # values.
  def body(start, fresh, out):
    zb = jax.lax.dynamic_slice_in_dim(out, start, width, ax)
    cut = lambda a: jax.lax.dynamic_slice_in_dim(a, start, width, ax)
    if s is None:
      sb = None
    elif isinstance(s, LazyStep):
      sb = s.fn(*[cut(o) for o in s.operands])
    else:
      sb = cut(s)
    new = jnp.where(fresh, core(zb, sb, dot_sums=True), zb)
    return jax.lax.dynamic_update_slice_in_dim(out, new, start, ax)

  # zc is overwritten in place, slab by slab.
  return slab_loop(n, width, ax, zc.ndim, body, zc)


@functools.partial(jax.jit, static_argnames=("axes", "block"))
def _single_scalar(zc, step, lam_g, l1, axes, block):
  """Block soft threshold of one array (of its soft threshold by
  ``step * l1`` unless ``l1`` is None); slabs: see `_by_slabs`."""
  def core(zb, _, dot_sums=False):
    if l1 is not None:
      zb = _soft(zb, step * l1)
    return _block_soft([zb], step, lam_g,
                       _Groups.single(zb.shape, axes, dot_sums))[0]
  return _by_slabs(core, zc, None, axes, block)


def _diagonal_slabs(zc, s, lam_g, l1, axes, block):
  """Diagonal-metric group prox of one array; ``s`` an array or a
  :class:`LazyStep`."""
  def core(zb, sb, dot_sums=False):
    if l1 is not None:
      zb = _soft(zb, sb * l1)
    return _diagonal([zb], [sb], lam_g,
                     _Groups.single(zb.shape, axes, dot_sums))[0]
  return _by_slabs(core, zc, s, axes, block)


# Jitted so that eager calls compile once per shape; under an outer jit it is
# inlined.
_single_diagonal = functools.partial(jax.jit, static_argnames=(
    "axes", "block"))(_diagonal_slabs)


def group_lasso_one(z: ArrayLike, step: ArrayLike, lam: ArrayLike,
                    axis: Axis, scale_by_size: bool,
                    l1: ArrayLike | None) -> jax.Array:
  """Group prox of one array (of its soft threshold by ``step * l1`` unless
  ``l1`` is None): :func:`optax_l1.ops.group_lasso` and
  :func:`optax_l1.ops.sparse_group_lasso`."""
  z = jnp.asarray(z)
  axes = normalize_axis(axis, z.ndim)
  dtype = z.dtype
  ct = _compute_dtype(dtype)
  zc = z.astype(ct)
  lam_g = jnp.asarray(lam).astype(ct)
  if scale_by_size:
    lam_g = lam_g * jnp.sqrt(jnp.asarray(
        math.prod(z.shape[a] for a in axes), ct))
  if isinstance(step, LazyStep):
    # From proximal (inside its jit): evaluated slab by slab.
    lazy = step.map(lambda x: x.astype(ct))
    if l1 is not None:
      l1 = jnp.asarray(l1).astype(ct)
      if l1.ndim:
        lazy = lazy()
        zc, l1 = _soft(zc, lazy * l1), None
    return _diagonal_slabs(zc, lazy, lam_g, l1, axes,
                           _block_elements()).astype(dtype)
  step = jnp.asarray(step)
  if l1 is not None:
    l1 = jnp.asarray(l1).astype(ct)
    if l1.ndim:  # per-coordinate: threshold up front (the slabs take scalars)
      zc, l1 = _soft(zc, step.astype(ct) * l1), None
  if step.ndim == 0:
    # Groups along the trailing axes (rows): one pass for the norms and one
    # for the result over the whole array beat the slabs by 20% in the step
    # chain(adam, prox_group_lasso) at 4e6 parameters for rows of 16, 64,
    # 1024 and 4096 on XLA:CPU; along leading axes (columns) the slabs were
    # up to 3.5x faster for short groups.
    block = 0 if _trailing(axes, z.ndim) else _block_elements()
    return _single_scalar(zc, step.astype(ct), lam_g, l1, axes,
                          block).astype(dtype)
  s = jnp.broadcast_to(step.astype(ct), z.shape)
  return _single_diagonal(zc, s, lam_g, l1, axes,
                          _block_elements()).astype(dtype)


# ---------------------------------------------------------------------------
# Groups across arrays.
# ---------------------------------------------------------------------------


def group_lasso_sets(zs: Sequence[ArrayLike], steps: Sequence[ArrayLike],
                     lam: ArrayLike, axes: Sequence[int],
                     scale_by_size: bool = False,
                     l1: ArrayLike | None = None) -> list[jax.Array]:
  """Prox of ``R = lam_g sum_g ||x_g||_2`` with groups spanning arrays.

  Group ``g`` is the union over ``i`` of the slices ``zs[i]`` at index ``g``
  along ``axes[i]`` (every array has the same length ``G`` along its axis).
  For a Flax attention layer with query / key / value kernels of shape
  ``(d, heads, head_dim)`` and an output kernel ``(heads, head_dim, d)``,
  ``axes = (1, 1, 1, 0)`` makes each head one group; for an MLP,
  ``W_in (d, h)``, ``b_in (h,)``, ``W_out (h, d)`` with ``axes = (1, 0, 0)``
  make each hidden unit one group. ``lam_g = lam``, or ``lam * sqrt(group
  size)`` with ``scale_by_size``. With ``l1`` (sparse group lasso) each
  entry is first soft-thresholded by ``step * l1``. The math, a scalar or a
  per-coordinate step, is :func:`optax_l1.ops.group_lasso`'s.

  Args:
    zs: arrays, any shapes.
    steps: one step per array: scalars (all of them, one value) or
      per-coordinate arrays of the arrays' shapes (a scalar is broadcast).
    lam: group penalty strength, >= 0.
    axes: for each array, the axis that indexes the groups.
    scale_by_size: multiply ``lam`` by ``sqrt(group size)``.
    l1: optional elementwise L1 strength (sparse group lasso).

  Returns:
    The prox: a list of arrays of the inputs' shapes and dtypes.

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_l1 import ops
    >>> w_in = jnp.array([[3.0, 0.1], [0.0, 0.2]])   # (inputs, hidden)
    >>> w_out = jnp.array([[4.0], [0.1]])            # (hidden, outputs)
    >>> x_in, x_out = ops.group_lasso_sets([w_in, w_out], [1.0, 1.0], 1.0,
    ...                                    axes=(1, 0))
    >>> x_in, x_out  # unit 0 has norm 5: scaled by 4/5; unit 1 is removed
    (Array([[2.4, 0. ],
           [0. , 0. ]], dtype=float32), Array([[3.2],
           [0. ]], dtype=float32))
  """
  zs = [jnp.asarray(z) for z in zs]
  if len(steps) != len(zs) or len(axes) != len(zs):
    raise ValueError(f"group_lasso_sets: {len(zs)} arrays need as many steps "
                     f"and axes; got {len(steps)} steps and {len(axes)} axes.")
  if not zs:
    return []
  for a in axes:
    if isinstance(a, bool) or not isinstance(a, int):
      raise TypeError(f"group_lasso_sets: each axis must be one int; got "
                      f"axes={list(axes)!r}.")
  axes = [normalize_axis(a, z.ndim)[0] for a, z in zip(axes, zs)]
  sizes = {z.shape[a] for z, a in zip(zs, axes)}
  if len(sizes) != 1:
    raise ValueError(
        "group_lasso_sets: every array needs the same length along its group "
        f"axis; got shapes {[z.shape for z in zs]} with axes {list(axes)}.")
  ct = _compute_dtype(functools.reduce(jnp.promote_types,
                                       [z.dtype for z in zs]))
  zc = [z.astype(ct) for z in zs]
  lam_g = jnp.asarray(lam).astype(ct)
  if scale_by_size:
    per_group = sum(z.size // z.shape[a] for z, a in zip(zs, axes))
    lam_g = lam_g * jnp.sqrt(jnp.asarray(per_group, ct))
  # One scalar step (the same object for every array, as in a chain or under
  # a scalar metric): the block soft threshold. Scalars that may differ, or
  # arrays: the diagonal metric.
  one_scalar = all(s is steps[0] for s in steps) and jnp.ndim(steps[0]) == 0
  steps = [jnp.asarray(s).astype(ct) for s in steps]
  if not next(iter(sizes)):
    return list(zs)  # no groups
  groups = _Groups.across([z.shape for z in zs], axes)
  if l1 is not None:
    l1 = jnp.asarray(l1).astype(ct)
    zc = [_soft(z, s * l1) for z, s in zip(zc, steps)]
  if one_scalar:
    out = _block_soft(zc, steps[0], lam_g, groups)
    return [x.astype(z.dtype) for x, z in zip(out, zs)]
  ss = [jnp.broadcast_to(s, z.shape) for s, z in zip(steps, zc)]
  out = _diagonal(zc, ss, lam_g, groups)
  return [x.astype(z.dtype) for x, z in zip(out, zs)]
