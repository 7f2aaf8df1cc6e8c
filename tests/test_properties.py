"""Property tests (hypothesis) of the prox operators and transformations.

Random shapes (rank 0-3, small), dtypes (float32, bfloat16, float16; float64
under x64 in one test), values and steps (a scalar or one per coordinate,
``>= 0``). Every property is checked against an independent float64 NumPy
reference: the subgradient optimality conditions of the convex proxes,
non-expansiveness, sign / magnitude bounds, idempotence, a brute-force grid
for the non-convex proxes, jit/eager agreement (bitwise where XLA does not
contract a multiply-add, to round-off elsewhere: see ``BITWISE``), the NaN /
Inf policy, and how the transformations treat None / empty / scalar leaves
and ``optax.MaskedNode``.

Inputs are generated exactly representable in the dtype under test (values,
steps and ``lam`` are rounded to it first), so the reference sees exactly what
the operator sees. Tolerances are a small multiple ``C`` of the dtype's unit
round-off times the size of the quantities involved, plus a few of its
smallest normal numbers (XLA on CPU may flush subnormals to zero).

Conditions are written multiplied by the step, which is equivalent for a
positive step and also covers step 0 (the prox is then the identity):

* L1:  ``x_i != 0 -> x_i - z_i + s_i lam sign(x_i) = 0``;
  ``x_i == 0 -> |z_i| <= s_i lam``.
* group: ``x_g == 0 <-> ||z_g / s_g|| <= lam_g``; otherwise
  ``x_i - z_i + s_i lam_g x_i / ||x_g|| = 0``.

Cost: compilation per new (shape, dtype) dominates, so shapes come from short
lists, separable ops run eagerly (each primitive compiles once per shape and
dtype and is shared by all ops), and the group proxes with a per-coordinate
step (a Newton loop) run under one cached ``jax.jit`` per (case, dtype).

Library bugs found here (a mask tree with None entries, underflow in the
group prox and in L0, a pinned or zero coordinate in the diagonal group
prox, MCP's sign at its threshold, groups over an empty axis) are fixed; the
regression tests at the end of the file keep them fixed.
"""

from __future__ import annotations

import functools
import math

import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import optax_l1
from optax_l1 import ops

try:  # Being written concurrently: test it only if its pure API is there.
  from optax_l1._nm import nm_mask
  from optax_l1._ranking import magnitude_mask
  HAVE_MASKS = True
except Exception:  # pylint: disable=broad-except
  HAVE_MASKS = False

# No example database written into the repository; derandomized, so that CI
# runs the same examples every time (a failure reproduces).
hypothesis.settings.register_profile(
    "optax_l1_properties", database=None, derandomize=True,
    suppress_health_check=[hypothesis.HealthCheck.too_slow,
                           hypothesis.HealthCheck.data_too_large])
PROFILE = hypothesis.settings.get_profile("optax_l1_properties")

DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)
# Unit round-off of each dtype.
UNIT = {jnp.dtype(jnp.float32): 2.0 ** -24, jnp.dtype(jnp.bfloat16): 2.0 ** -8,
        jnp.dtype(jnp.float16): 2.0 ** -11, jnp.dtype(jnp.float64): 2.0 ** -53}
C = 8.0  # round-off multiple allowed in every residual

SHAPES = [(), (4,), (2, 3), (3, 1), (1, 2, 3)]
# (shape, group axes, scale_by_size): group sizes 1 to 6, one group or several.
GROUP_CASES = [((4,), (0,), False), ((2, 3), (1,), False),
               ((2, 3), (0,), True), ((3, 1), (1,), False),
               ((1, 2, 3), (0, 2), True), ((2, 3), (0, 1), False)]
# The per-coordinate path compiles a Newton loop per (case, dtype): fewer.
PER_COORDINATE_CASES = [((4,), (0,), False), ((2, 3), (1,), False),
                        ((1, 2, 3), (0, 2), True)]


def f32(lo, hi):
  """Floats of width 32 in [lo, hi] (bounds rounded inwards to float32)."""
  lo32, hi32 = np.float32(lo), np.float32(hi)
  if lo32 < lo:
    lo32 = np.nextafter(lo32, np.float32(np.inf))
  if hi32 > hi:
    hi32 = np.nextafter(hi32, np.float32(-np.inf))
  return st.floats(float(lo32), float(hi32), width=32)


VALUES = st.floats(-10, 10, allow_nan=False, allow_infinity=False, width=32)
# The group proxes square z / max|z_g| in float32: entries below ~1e-19 times
# the group's largest underflow (an inherent float32 limit, not tested here;
# uniformly tiny groups are, in test_group_lasso_tiny_entries).
GROUP_VALUES = VALUES.map(lambda v: 0.0 if abs(v) < 1e-18 else v)
# XLA on CPU flushes subnormal float32 results to zero (so does the ranking
# of the magnitude masks): no subnormal inputs where that matters.
NORMAL_VALUES = VALUES.map(
    lambda v: 0.0 if abs(v) < float(np.finfo(np.float32).tiny) else v)
STEPS = st.one_of(st.just(0.0), st.floats(0, 4, width=32))
LAMS = st.floats(0, 3, width=32)
# Per-coordinate steps include 0 (a pinned coordinate); where the drawn step
# is 0, z is made nonzero, so a pinned zero entry is left to the regression
# tests at the end (test_bug_group_lasso_zero_step_zero_entry_zeroes_group).
PER_COORDINATE_STEPS = st.one_of(st.just(0.0), f32(1e-2, 4))


# --- helpers ------------------------------------------------------------------

def rnd(v, dtype):
  """``v`` rounded to ``dtype``, as float64 NumPy (exact)."""
  return np.asarray(jnp.asarray(np.asarray(v, np.float32), dtype)
                    .astype(jnp.float32), np.float64)


def f64(x):
  return np.asarray(jnp.asarray(x).astype(jnp.float32), np.float64)


def unit(dtype):
  return UNIT[jnp.dtype(dtype)]


def tiny(dtype):
  return 4.0 * float(jnp.finfo(dtype).tiny)


def step_arg(s, dtype):
  """The step as the operator gets it: a Python float or a dtype array."""
  return float(s) if np.ndim(s) == 0 else jnp.asarray(s, dtype)


@st.composite
def problems(draw, shapes=SHAPES, dtypes=DTYPES, per_coordinate=None):
  """``(dtype, z, step, lam)`` with ``z``, ``step``, ``lam`` exact in dtype."""
  dtype = draw(st.sampled_from(dtypes))
  shape = draw(st.sampled_from(shapes))
  z = rnd(draw(hnp.arrays(np.float64, shape, elements=VALUES)), dtype)
  per = draw(st.booleans()) if per_coordinate is None else per_coordinate
  if per:
    s = rnd(draw(hnp.arrays(np.float64, shape, elements=STEPS)), dtype)
  else:
    s = rnd(draw(STEPS), dtype)
  lam = float(rnd(draw(LAMS), dtype))
  return dtype, z, s, lam


@st.composite
def group_problems(draw, per_coordinate):
  """``(dtype, z, step, lam, axes, scale)`` for the group proxes."""
  dtype = draw(st.sampled_from(DTYPES))
  cases = PER_COORDINATE_CASES if per_coordinate else GROUP_CASES
  shape, axes, scale = draw(st.sampled_from(cases))
  z = rnd(draw(hnp.arrays(np.float64, shape, elements=GROUP_VALUES)), dtype)
  if per_coordinate:
    s = rnd(draw(hnp.arrays(np.float64, shape,
                            elements=PER_COORDINATE_STEPS)), dtype)
    z = np.where((s == 0) & (z == 0), 1.0, z)
  else:
    s = rnd(draw(STEPS), dtype)
  lam = float(rnd(draw(LAMS), dtype))
  return dtype, z, s, lam, axes, scale


def groups(a, axes):
  """``a`` as ``(n_groups, group_size)``: one row per group."""
  rest = [i for i in range(a.ndim) if i not in axes]
  size = int(np.prod([a.shape[i] for i in axes]))
  return np.transpose(a, rest + list(axes)).reshape(-1, size)


@functools.lru_cache(maxsize=None)
def _jitted_group(name, axes, scale):
  if name == "group":
    return jax.jit(lambda z, s, lam: ops.group_lasso(z, s, lam, axes, scale))
  return jax.jit(lambda z, s, l1, lam: ops.sparse_group_lasso(
      z, s, l1, lam, axes, scale))


def group_lasso(z, s, lam, axes, scale, dtype):
  """Eager for a scalar step; cached jit (Newton loop) per coordinate."""
  zj = jnp.asarray(z, dtype)
  if np.ndim(s) == 0:
    return ops.group_lasso(zj, float(s), lam, axes, scale)
  return _jitted_group("group", axes, scale)(zj, jnp.asarray(s, dtype), lam)


def sparse_group_lasso(z, s, l1, lam, axes, scale, dtype):
  zj = jnp.asarray(z, dtype)
  if np.ndim(s) == 0:
    return ops.sparse_group_lasso(zj, float(s), l1, lam, axes, scale)
  return _jitted_group("sparse", axes, scale)(zj, jnp.asarray(s, dtype), l1,
                                              lam)


# --- optimality conditions (float64 NumPy) ------------------------------------

def assert_l1_optimal(x, z, s, lam, dtype):
  s = np.broadcast_to(s, z.shape)
  t = s * lam
  tol = C * unit(dtype) * (np.abs(z) + t) + tiny(dtype)
  nz = x != 0
  res = x - z + t * np.sign(x)
  bad = nz & (np.abs(res) > tol)
  assert not bad.any(), (x[bad], z[bad], s[bad], lam, res[bad])
  bad = ~nz & (np.abs(z) > t + tol)
  assert not bad.any(), ("zeroed although |z| > step * lam", z[bad], s[bad],
                         lam)


def assert_nonneg_l1_optimal(x, z, s, lam, dtype):
  s = np.broadcast_to(s, z.shape)
  t = s * lam
  tol = C * unit(dtype) * (np.abs(z) + t) + tiny(dtype)
  assert (x >= 0).all(), x
  pos = x > 0
  res = x - z + t
  assert (np.abs(res[pos]) <= tol[pos]).all(), (x, z, s, lam)
  assert (z[~pos] <= t[~pos] + tol[~pos]).all(), (x, z, s, lam)


def assert_elastic_net_optimal(x, z, s, l1, l2, dtype):
  s = np.broadcast_to(s, z.shape)
  t = s * l1
  tol = C * unit(dtype) * (np.abs(z) + t + s * l2 * np.abs(x)) + tiny(dtype)
  nz = x != 0
  res = x - z + t * np.sign(x) + s * l2 * x
  assert (np.abs(res[nz]) <= tol[nz]).all(), (x, z, s, l1, l2, res)
  assert (np.abs(z[~nz]) <= t[~nz] + tol[~nz]).all(), (x, z, s, l1, l2)


def _norm(a, keepdims=False):
  """L2 norm over the last axis, scaled so that squares cannot underflow."""
  with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
    m = np.max(np.abs(a), axis=-1, keepdims=True)
    m = np.where((m > 0) & np.isfinite(m), m, 1.0)
    out = m * np.sqrt(np.sum((a / m) ** 2, axis=-1, keepdims=True))
  return out if keepdims else out[..., 0]


def _dnorm(zg, sg):
  """``||z_g / s_g||`` with ``0 / 0 = 0`` (a zero step pins a zero)."""
  with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
    d = np.where(zg == 0, 0.0, zg / sg)
  return _norm(d)


def group_prox_reference(z, s, lam_g):
  """Exact float64 prox of ``lam_g ||x||`` in the metric ``diag(1/s)``.

  One group (1-D ``z``, ``s``). ``x = 0`` iff ``||z/s|| <= lam_g``; else
  ``x_i = z_i rho / (rho + s_i lam_g)`` with ``rho = ||x||`` the root of
  ``sum_i z_i^2 / (rho + s_i lam_g)^2 = 1``, found by 200 bisections.
  """
  z, s = np.asarray(z, np.float64), np.asarray(s, np.float64)
  if _dnorm(z[None], s[None])[0] <= lam_g:
    return np.zeros_like(z)
  # prox_{lam}(z) = a prox_{lam / a}(z / a): work with max |z| = 1.
  a = float(np.max(np.abs(z)))
  z, lam_g = z / a, lam_g / a
  c = s * lam_g
  lo, hi = 0.0, float(_norm(z))
  with np.errstate(divide="ignore", invalid="ignore"):
    for _ in range(200):
      mid = 0.5 * (lo + hi)
      h = np.sum(np.where(z == 0, 0.0, z * z / (mid + c) ** 2))
      if h > 1.0:
        lo = mid
      else:
        hi = mid
    rho = 0.5 * (lo + hi)
    return a * np.where(rho + c > 0, z * rho / (rho + c), z)


def assert_group_optimal(x, z, s, lam, axes, scale, dtype):
  gsize = int(np.prod([z.shape[i] for i in axes]))
  lam_g = lam * (math.sqrt(gsize) if scale else 1.0)
  u = unit(dtype)
  uc = unit(jnp.promote_types(dtype, jnp.float32))  # compute dtype
  xg, zg = groups(x, axes), groups(z, axes)
  sg = groups(np.broadcast_to(s, z.shape), axes)
  dnorm = _dnorm(zg, sg)
  zero = (xg == 0).all(axis=-1)
  rel = C * uc * (gsize + 1)
  # A nonzero group must have ||z/s|| > lam_g (up to round-off).
  assert (dnorm[~zero] >= lam_g * (1 - rel)).all(), (x, z, s, lam_g)
  # A zero group must have ||z/s|| <= lam_g, unless the exact prox is so
  # small that it underflows in the dtype.
  for k in np.nonzero(zero & (dnorm > lam_g * (1 + rel)))[0]:
    xmax = np.max(np.abs(group_prox_reference(zg[k], sg[k], lam_g)))
    assert xmax <= C * u * np.max(np.abs(zg[k])) + tiny(dtype), (
        "zeroed a group with ||z/s|| > lam_g", z, s, lam_g, xmax)
  nrm = _norm(xg, keepdims=True)
  with np.errstate(invalid="ignore", divide="ignore"):
    direction = np.where(nrm > 0, xg / nrm, 0.0)
  res = xg - zg + sg * lam_g * direction
  tol = C * u * (np.abs(zg) + sg * lam_g) + C * tiny(dtype)
  bad = ~zero[:, None] & (np.abs(res) > tol)
  assert not bad.any(), ("group residual", x, z, s, lam_g, res)


def assert_sparse_group_optimal(x, z, s, l1, lam, axes, scale, dtype):
  """0 in (x - z)/s + l1 d|x| + lam_g d||x_g||, elementwise and per group."""
  gsize = int(np.prod([z.shape[i] for i in axes]))
  lam_g = lam * (math.sqrt(gsize) if scale else 1.0)
  u = unit(dtype)
  uc = unit(jnp.promote_types(dtype, jnp.float32))  # compute dtype
  xg, zg = groups(x, axes), groups(z, axes)
  sg = groups(np.broadcast_to(s, z.shape), axes)
  zero = (xg == 0).all(axis=-1)
  # Zero group iff ||soft(z/s, l1)|| <= lam_g (the minimal-norm subgradient).
  with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
    d = np.where(zg == 0, 0.0, zg / sg)
    sd = np.sign(d) * np.maximum(np.abs(d) - l1, 0)
  snorm, dmag = _norm(sd), _norm(d)
  slack = C * uc * (gsize + 1) * (dmag + lam_g) + tiny(dtype)
  assert (snorm[~zero] >= lam_g - slack[~zero]).all(), (x, z, s, l1, lam_g)
  soft = np.sign(zg) * np.maximum(np.abs(zg) - sg * l1, 0)
  for k in np.nonzero(zero & (snorm > lam_g + slack))[0]:
    xmax = np.max(np.abs(group_prox_reference(soft[k], sg[k], lam_g)))
    assert xmax <= C * u * np.max(np.abs(zg[k])) + tiny(dtype), (
        "zeroed a group", z, s, l1, lam_g, xmax)
  # Inside a nonzero group: x_i == 0 -> |z_i| <= s_i l1; else the residual.
  nz = xg != 0
  tol = C * u * (np.abs(zg) + sg * (l1 + lam_g)) + C * tiny(dtype)
  live = ~zero[:, None]
  assert (np.abs(zg)[live & ~nz] <= (sg * l1 + tol)[live & ~nz]).all(), (
      x, z, s, l1, lam_g)
  nrm = _norm(xg, keepdims=True)
  with np.errstate(invalid="ignore", divide="ignore"):
    direction = np.where(nrm > 0, xg / nrm, 0.0)
  res = xg - zg + sg * l1 * np.sign(xg) + sg * lam_g * direction
  bad = live & nz & (np.abs(res) > tol)
  assert not bad.any(), ("sparse group residual", x, z, s, l1, lam_g, res)


# --- optimality ---------------------------------------------------------------

@settings(PROFILE, max_examples=100, deadline=None)
@given(problems())
def test_l1_optimality(p):
  dtype, z, s, lam = p
  x = ops.l1(jnp.asarray(z, dtype), step_arg(s, dtype), lam)
  assert x.dtype == dtype and x.shape == z.shape
  assert_l1_optimal(f64(x), z, s, lam, dtype)


@settings(PROFILE, max_examples=50, deadline=None)
@given(problems(), LAMS)
def test_weighted_l1_optimality(p, w):
  dtype, z, s, lam = p
  w = float(rnd(w, dtype))
  x = ops.l1(jnp.asarray(z, dtype), step_arg(s, dtype), lam, weights=w)
  # Weighted L1 is L1 with lam * w (one more rounding in the dtype).
  assert_l1_optimal(f64(x), z, s, lam * w, dtype)


@settings(PROFILE, max_examples=60, deadline=None)
@given(problems())
def test_nonneg_l1_optimality(p):
  dtype, z, s, lam = p
  x = ops.nonneg_l1(jnp.asarray(z, dtype), step_arg(s, dtype), lam)
  assert x.dtype == dtype
  assert_nonneg_l1_optimal(f64(x), z, s, lam, dtype)


@settings(PROFILE, max_examples=60, deadline=None)
@given(problems(), LAMS)
def test_elastic_net_optimality(p, l2):
  dtype, z, s, l1 = p
  l2 = float(rnd(l2, dtype))
  x = ops.elastic_net(jnp.asarray(z, dtype), step_arg(s, dtype), l1, l2)
  assert x.dtype == dtype
  assert_elastic_net_optimal(f64(x), z, s, l1, l2, dtype)


@settings(PROFILE, max_examples=80, deadline=None)
@given(group_problems(per_coordinate=False))
def test_group_lasso_optimality_scalar_step(p):
  dtype, z, s, lam, axes, scale = p
  x = group_lasso(z, s, lam, axes, scale, dtype)
  assert x.dtype == dtype and x.shape == z.shape
  assert_group_optimal(f64(x), z, s, lam, axes, scale, dtype)


@settings(PROFILE, max_examples=100, deadline=None)
@given(group_problems(per_coordinate=True))
def test_group_lasso_optimality_per_coordinate_step(p):
  dtype, z, s, lam, axes, scale = p
  x = group_lasso(z, s, lam, axes, scale, dtype)
  assert x.dtype == dtype and x.shape == z.shape
  assert_group_optimal(f64(x), z, s, lam, axes, scale, dtype)


@settings(PROFILE, max_examples=100, deadline=None)
@given(st.booleans(), st.data(), LAMS)
def test_sparse_group_lasso_optimality(per_coordinate, data, l1):
  dtype, z, s, lam, axes, scale = data.draw(group_problems(per_coordinate))
  l1 = float(rnd(l1, dtype))
  x = sparse_group_lasso(z, s, l1, lam, axes, scale, dtype)
  assert x.dtype == dtype and x.shape == z.shape
  assert_sparse_group_optimal(f64(x), z, s, l1, lam, axes, scale, dtype)


@settings(PROFILE, max_examples=25, deadline=None)
@given(hnp.arrays(np.float64, (2, 3), elements=st.floats(-10, 10).map(
    lambda v: 0.0 if abs(v) < 1e-150 else v)),
       hnp.arrays(np.float64, (2, 3), elements=st.floats(0.25, 4)),
       st.floats(0, 3))
def test_optimality_float64_under_x64(z, s, lam):
  with jax.enable_x64(True):
    zj, sj = jnp.asarray(z, jnp.float64), jnp.asarray(s, jnp.float64)
    x = ops.l1(zj, sj, lam)
    assert x.dtype == jnp.float64
    assert_l1_optimal(np.asarray(x), z, s, lam, jnp.float64)
    g = ops.group_lasso(zj, float(s[0, 0]), lam, 1)
    assert g.dtype == jnp.float64
    assert_group_optimal(np.asarray(g), z, s[0, 0], lam, (1,), False,
                         jnp.float64)
    g = _jitted_group("group", (1,), False)(zj, sj, lam)
    assert g.dtype == jnp.float64
    assert_group_optimal(np.asarray(g), z, s, lam, (1,), False, jnp.float64)


# --- non-expansiveness ----------------------------------------------------------

CONVEX = {
    "l1": lambda z, s, axes: ops.l1(z, s, 0.75),
    "nonneg_l1": lambda z, s, axes: ops.nonneg_l1(z, s, 0.75),
    "elastic_net": lambda z, s, axes: ops.elastic_net(z, s, 0.75, 1.5),
    "group_lasso": lambda z, s, axes: ops.group_lasso(z, s, 0.75, axes),
    "sparse_group_lasso": lambda z, s, axes: ops.sparse_group_lasso(
        z, s, 0.5, 0.75, axes),
}


@settings(PROFILE, max_examples=120, deadline=None)
@given(st.sampled_from(sorted(CONVEX)), st.sampled_from(DTYPES),
       st.sampled_from(GROUP_CASES), STEPS, st.data())
def test_convex_prox_is_nonexpansive(name, dtype, case, s, data):
  shape, axes, _ = case
  draw = lambda: rnd(data.draw(hnp.arrays(np.float64, shape,
                                          elements=GROUP_VALUES)), dtype)
  a, b = draw(), draw()
  s = float(rnd(s, dtype))
  op = CONVEX[name]
  pa = f64(op(jnp.asarray(a, dtype), s, axes))
  pb = f64(op(jnp.asarray(b, dtype), s, axes))
  lhs = np.linalg.norm(pa - pb)
  rhs = np.linalg.norm(a - b)
  tol = C * unit(dtype) * (np.linalg.norm(a) + np.linalg.norm(b)) + tiny(dtype)
  assert lhs <= rhs + tol, (name, a, b, s, pa, pb)


# --- signs, magnitudes, idempotence -------------------------------------------

SEPARABLE = {
    "soft_threshold": lambda z, s, lam: ops.soft_threshold(z, s * lam),
    "l1": lambda z, s, lam: ops.l1(z, s, lam),
    "nonneg_l1": lambda z, s, lam: ops.nonneg_l1(z, s, lam),
    "elastic_net": lambda z, s, lam: ops.elastic_net(z, s, lam, 2.0),
    "l0": lambda z, s, lam: ops.l0(z, s, lam),
    "mcp": lambda z, s, lam: ops.mcp(z, s, lam, 3.0),
    "scad": lambda z, s, lam: ops.scad(z, s, lam, 3.7),
    "lq_half": lambda z, s, lam: ops.lq(z, s, lam, 0.5),
    "lq_two_thirds": lambda z, s, lam: ops.lq(z, s, lam, 2.0 / 3.0),
}


# Below these, z * z is 0 in the dtype (float32 / bfloat16: XLA flushes
# subnormals; float16: below half its smallest subnormal).
_SQUARE_UNDERFLOW = {jnp.dtype(jnp.float32): float(jnp.finfo(jnp.float32).tiny),
                     jnp.dtype(jnp.bfloat16): float(jnp.finfo(jnp.float32).tiny),
                     jnp.dtype(jnp.float16): 2.0 ** -25}


@settings(PROFILE, max_examples=150, deadline=None)
@given(st.sampled_from(sorted(SEPARABLE)), problems())
def test_thresholds_keep_signs_and_never_grow(name, p):
  dtype, z, s, lam = p
  x = SEPARABLE[name](jnp.asarray(z, dtype), step_arg(s, dtype), lam)
  assert x.dtype == dtype and x.shape == z.shape
  x = f64(x)
  assert not (x * z < 0).any(), (name, z, s, lam, x)
  assert (np.abs(x) <= np.abs(z)).all(), (name, z, s, lam, x)
  # Step 0 is the identity for every prox (nonneg_l1: the projection), up to
  # XLA on CPU flushing subnormal results to zero.
  if np.ndim(s) == 0 and s == 0:
    ref = np.maximum(z, 0) if name == "nonneg_l1" else z
    ok = (x == ref) | ((x == 0) & (np.abs(ref) < float(jnp.finfo(dtype).tiny)))
    if name == "l0":
      # BUG (test_bug_l0_zeroes_small_weights_at_lam_zero): z * z underflows
      # in the dtype and such z are zeroed.
      ok |= (x == 0) & (z * z < _SQUARE_UNDERFLOW[jnp.dtype(dtype)])
    assert ok.all(), (name, z, x)


@settings(PROFILE, max_examples=60, deadline=None)
@given(problems())
def test_l0_is_idempotent_and_hard(p):
  dtype, z, s, lam = p
  sa = step_arg(s, dtype)
  x = ops.l0(jnp.asarray(z, dtype), sa, lam)
  xx = ops.l0(x, sa, lam)
  np.testing.assert_array_equal(f64(xx), f64(x))
  # Hard: every output is z or 0, and z is kept iff z^2 > 2 s lam (the
  # product rounded in the dtype: allow a tie band of round-off width).
  x = f64(x)
  assert ((x == z) | (x == 0)).all()
  thr = 2 * np.broadcast_to(s, z.shape) * lam
  band = C * unit(dtype) * (thr + z * z) + tiny(dtype)
  kept, dropped = x != 0, (x == 0) & (z != 0)
  assert (z[kept] ** 2 > thr[kept] - band[kept]).all()
  assert (z[dropped] ** 2 <= thr[dropped] + band[dropped]).all()


_MAGNITUDE_MASK = jax.jit(magnitude_mask) if HAVE_MASKS else None


@pytest.mark.skipif(not HAVE_MASKS, reason="optax_l1._masks not importable")
@settings(PROFILE, max_examples=50, deadline=None)
@given(st.sampled_from(DTYPES),
       hnp.arrays(np.float64, (2, 4), elements=st.one_of(st.just(0.0),
                                                          NORMAL_VALUES)),
       st.integers(-1, 9), st.integers(1, 4))
def test_magnitude_masks_are_idempotent(dtype, x, k, n):
  x = rnd(x, dtype)
  xj = jnp.asarray(x, dtype)
  keep = np.asarray(_MAGNITUDE_MASK(xj, k))
  # Reference: stable argsort of |x|; the k smallest (lower index first) go.
  ref = np.ones(x.size, bool)
  ref[np.argsort(np.abs(x).reshape(-1), kind="stable")[:max(0, min(k, 8))]] = (
      False)
  np.testing.assert_array_equal(keep.reshape(-1), ref)
  pruned = xj * jnp.asarray(keep, dtype)
  np.testing.assert_array_equal(np.asarray(_MAGNITUDE_MASK(pruned, k)), keep)
  # N:M: per block of 4 the n largest |x| (lower index first) stay.
  nm = np.asarray(nm_mask(xj, n, 4))
  ref_nm = np.zeros((2, 4), bool)
  for i, blk in enumerate(np.abs(x)):
    ref_nm[i, np.argsort(-blk, kind="stable")[:n]] = True
  np.testing.assert_array_equal(nm, ref_nm)
  again = np.asarray(nm_mask(xj * jnp.asarray(nm, dtype), n, 4))
  np.testing.assert_array_equal(again, nm)


# --- non-convex: global minimizer against a NumPy grid ------------------------

def _penalty(kind, x, lam, h):
  ax = np.abs(x)
  if kind == "mcp":
    return np.where(ax <= h * lam, lam * ax - ax ** 2 / (2 * h),
                    h * lam ** 2 / 2)
  if kind == "scad":
    mid = (2 * h * lam * ax - ax ** 2 - lam ** 2) / (2 * (h - 1))
    return np.where(ax <= lam, lam * ax,
                    np.where(ax <= h * lam, mid, (h + 1) * lam ** 2 / 2))
  return lam * ax ** h


def _grid_min(kind, z, s, lam, h):
  """min over x of s F(x) = (x - z)^2 / 2 + s P(x): a grid, refined 3x."""
  g = lambda x: 0.5 * (x - z) ** 2 + s * _penalty(kind, x, lam, h)
  lo, hi = -abs(z) - 1.0, abs(z) + 1.0
  xs = np.concatenate([np.linspace(lo, hi, 20_001), [0.0, z]])
  best = xs[np.argmin(g(xs))]
  width = (hi - lo) / 20_000
  for _ in range(3):
    xs = np.linspace(best - width, best + width, 2_001)
    if g(xs).min() < g(best):
      best = xs[np.argmin(g(xs))]
    width /= 500
  return float(min(g(best), g(0.0), g(z)))


NONCONVEX = st.one_of(
    st.tuples(st.just("mcp"), f32(0.2, 6.0)),
    st.tuples(st.just("scad"), f32(2.05, 6.0)),
    st.tuples(st.just("lq"), st.sampled_from([0.5, 2.0 / 3.0])))


@settings(PROFILE, max_examples=60, deadline=None)
@given(NONCONVEX, f32(-8, 8), f32(0.01, 6), f32(0, 2))
def test_nonconvex_prox_is_global_minimizer(kind_h, z, s, lam):
  kind, h = kind_h
  op = {"mcp": ops.mcp, "scad": ops.scad, "lq": ops.lq}[kind]
  x = float(op(jnp.full((1,), z, jnp.float32), s, lam, h)[0])
  hh = h if kind == "lq" else float(np.float32(h))
  g = lambda v: 0.5 * (v - z) ** 2 + s * float(_penalty(kind, v, lam, hh))
  ref = _grid_min(kind, z, s, lam, hh)
  # The objective at the op's point may exceed the grid's minimum by no more
  # than float32 round-off of the point.
  tol = 2e-6 * (1.0 + z * z + s * lam * abs(z))
  assert g(x) <= ref + tol, (kind, h, z, s, lam, x, g(x), ref)
  assert abs(x) <= abs(z)


# --- jit and eager --------------------------------------------------------------

ALL_OPS = dict(SEPARABLE)
ALL_OPS.update({
    "group_lasso": lambda z, s, lam: ops.group_lasso(z, s, lam, 1),
    "group_lasso_scaled": lambda z, s, lam: ops.group_lasso(z, s, lam, (0, 1),
                                                            True),
    "sparse_group_lasso": lambda z, s, lam: ops.sparse_group_lasso(
        z, s, 0.5 * lam, lam, 1),
})
_JIT_OPS = {k: jax.jit(v) for k, v in ALL_OPS.items()}

# (op, per-coordinate step) pairs whose float32 results are bitwise equal
# under jit and eagerly on CPU. The others are not: XLA contracts
# `|z| - step * lam` into one fused multiply-add when both sit in one fused
# kernel (l1, soft_threshold, nonneg_l1, elastic_net, sparse_group_lasso with
# a per-coordinate step) and rewrites `x / scalar` as `x * (1 / scalar)`
# (elastic_net, mcp, scad with a scalar step; lq's closed forms), so they
# agree to round-off only (test_jit_matches_eager_to_round_off).
BITWISE = [("l0", False), ("l0", True), ("soft_threshold", False),
           ("l1", False), ("nonneg_l1", False), ("mcp", True),
           ("scad", True), ("group_lasso", False), ("group_lasso", True),
           ("group_lasso_scaled", False), ("group_lasso_scaled", True),
           ("sparse_group_lasso", False)]
SMALL_STEPS = st.one_of(st.just(0.0), f32(0, 1.5))


def _call(fn, z, s, per, lam):
  sj = jnp.asarray(s) if per else jnp.asarray(s[0, 0])
  return np.asarray(fn(jnp.asarray(z), sj, jnp.float32(lam)))


@settings(PROFILE, max_examples=60, deadline=None)
@given(st.sampled_from(BITWISE),
       hnp.arrays(np.float32, (2, 3), elements=VALUES),
       hnp.arrays(np.float32, (2, 3), elements=SMALL_STEPS), LAMS)
def test_jit_equals_eager_bitwise_float32(name_per, z, s, lam):
  name, per = name_per
  if name.startswith(("group", "sparse")) and per:
    s = np.where(s < 0.25, np.float32(0.25), s)  # see PER_COORDINATE_STEPS
  eager = _call(ALL_OPS[name], z, s, per, lam)
  jitted = _call(_JIT_OPS[name], z, s, per, lam)
  assert eager.dtype == jitted.dtype == np.float32
  np.testing.assert_array_equal(eager.view(np.uint32), jitted.view(np.uint32))
  # And the common value is the prox (spot check against NumPy for l1; XLA
  # flushes subnormal results to zero).
  if name == "l1":
    ref = np.float32(np.sign(z) * np.maximum(
        np.abs(z) - np.float32(np.float32(s[0, 0]) * np.float32(lam)), 0))
    flushed = np.where(np.abs(ref) < np.finfo(np.float32).tiny, 0, ref)
    assert ((eager == ref) | (eager == flushed)).all(), (z, s, lam, eager)


# Jump thresholds |z| of the hard-thresholding proxes, in float64.
_JUMPS = {
    "l0": lambda s, lam: np.sqrt(2 * s * lam),
    "lq_half": lambda s, lam: 1.5 * (s * lam) ** (2 / 3),
    "lq_two_thirds": lambda s, lam: (4 / 3) * 1.5 ** 0.25 * (s * lam) ** 0.75,
}


@settings(PROFILE, max_examples=80, deadline=None)
@given(st.sampled_from(sorted(ALL_OPS)), st.booleans(),
       hnp.arrays(np.float32, (2, 3), elements=VALUES),
       hnp.arrays(np.float32, (2, 3), elements=SMALL_STEPS), LAMS)
def test_jit_matches_eager_to_round_off(name, per, z, s, lam):
  if name.startswith(("group", "sparse")) and per:
    s = np.where(s < 0.25, np.float32(0.25), s)
  eager = _call(ALL_OPS[name], z, s, per, lam).astype(np.float64)
  jitted = _call(_JIT_OPS[name], z, s, per, lam).astype(np.float64)
  sb = np.broadcast_to(s if per else s[0, 0], z.shape).astype(np.float64)
  # Hyperparameters here are <= 3.7 and steps <= 1.5, so every correction
  # term is at most ~20 (|z| + s lam): a few roundings of that size.
  tol = 16 * 2.0 ** -24 * 20 * (np.abs(z) + sb * lam) + tiny(jnp.float32)
  ok = np.abs(eager - jitted) <= tol
  if name in _JUMPS:  # at a jump the two may fall on either side
    thr = _JUMPS[name](sb, lam)
    ok |= np.abs(np.abs(z) - thr) <= 1e-5 * thr
  assert ok.all(), (name, per, z, s, lam, eager, jitted)
  # Where no multiply-add is contracted into the zeroing test, the exact
  # zeros are the same (away from jumps).
  if name in ("mcp", "scad", "group_lasso", "group_lasso_scaled", "l0"):
    away = ~(np.abs(np.abs(z) - _JUMPS["l0"](sb, lam))
             <= 1e-5 * _JUMPS["l0"](sb, lam)) if name == "l0" else True
    np.testing.assert_array_equal((eager == 0) & away, (jitted == 0) & away)


# --- NaN / Inf policy -----------------------------------------------------------

MAYBE_NAN = st.one_of(st.just(float("nan")), VALUES)


@settings(PROFILE, max_examples=80, deadline=None)
@given(st.sampled_from(sorted(ALL_OPS)), st.sampled_from(DTYPES), st.booleans(),
       hnp.arrays(np.float32, (2, 3), elements=MAYBE_NAN),
       hnp.arrays(np.float32, (2, 3), elements=STEPS), LAMS)
def test_nan_in_z_stays_nan_in_every_op(name, dtype, per, z, s, lam):
  zj = jnp.asarray(z, dtype)
  if name == "group_lasso" and per:  # the Newton path: cached jit
    out = _jitted_group("group", (1,), False)(zj, jnp.asarray(s, dtype), lam)
  elif name.startswith(("group", "sparse")) and per:
    out = _JIT_OPS[name](zj, jnp.asarray(s, dtype), jnp.float32(lam))
  else:
    out = ALL_OPS[name](zj, step_arg(s if per else s[0, 0], dtype), lam)
  out = f64(out)
  assert np.isnan(out[np.isnan(z)]).all(), (name, z, s, lam, out)
  # Separable ops leave the other entries finite; a group is NaN as a whole.
  if name in SEPARABLE:
    assert np.isfinite(out[~np.isnan(z)]).all()


INF_OPS = ["l1", "soft_threshold", "elastic_net", "nonneg_l1", "l0", "mcp",
           "scad", "lq_half", "lq_two_thirds"]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize("name", INF_OPS)
def test_inf_stays_inf_with_finite_threshold(name, dtype):
  z = jnp.asarray([np.inf, -np.inf, 1.0, np.nan], dtype)
  for s in (0.0, 0.5, 3.5):  # mcp / scad: both branches (gamma 3, a - 1 2.7)
    out = f64(ALL_OPS[name](z, s, 1.5))
    want_neg = 0.0 if name == "nonneg_l1" else -np.inf
    assert out[0] == np.inf and out[1] == want_neg, (name, s, out)
    assert np.isnan(out[3])


def _transformations():
  lr = 0.1
  return {
      "prox_l1": optax_l1.prox_l1(0.5, lr),
      "prox_l1_nonneg": optax_l1.prox_l1(0.5, lr, nonnegative=True),
      "prox_l1_weighted": optax_l1.prox_l1(0.5, lr, weights=2.0),
      "prox_l1_schedule": optax_l1.prox_l1(optax.linear_schedule(0.5, 0.1, 5),
                                           lr),
      "prox_elastic_net": optax_l1.prox_elastic_net(0.5, 1.0, lr),
      "prox_group_lasso": optax_l1.prox_group_lasso(0.5, lr, axis=-1),
      "prox_sparse_group_lasso": optax_l1.prox_sparse_group_lasso(
          0.2, 0.5, lr, axis=-1),
      "hard_threshold": optax_l1.hard_threshold(0.5, lr),
      "prox_mcp": optax_l1.prox_mcp(0.5, 3.0, lr),
      "prox_scad": optax_l1.prox_scad(0.5, 3.7, lr),
      "prox_lq": optax_l1.prox_lq(0.5, lr, q=2 / 3),
  }


@pytest.mark.parametrize("name", sorted(_transformations()))
@pytest.mark.parametrize("wrap", ["chain", "proximal_sgd", "proximal_adam"])
def test_nan_stays_nan_in_every_transformation(name, wrap):
  tx = _transformations()[name]
  params = {"w": jnp.asarray([[0.3, -0.01, 2.0], [0.0, 1.0, -1.0]]),
            "b": jnp.asarray([0.5, 0.02])}
  grads = {"w": jnp.asarray([[np.nan, 0.1, 0.0], [0.0, 0.2, 0.1]]),
           "b": jnp.asarray([0.1, np.nan])}
  opt = {"chain": lambda: optax.chain(optax.sgd(0.1), tx),
         "proximal_sgd": lambda: optax_l1.proximal(optax.sgd(0.1), tx),
         "proximal_adam": lambda: optax_l1.proximal(optax.adam(0.1), tx)}[wrap]()
  updates, _ = opt.update(grads, opt.init(params), params)
  new = optax.apply_updates(params, updates)
  w, b = np.asarray(new["w"]), np.asarray(new["b"])
  assert np.isnan(w[0, 0]) and np.isnan(b[1])
  if wrap == "chain" and "group" not in name:
    # A separable prox after plain SGD leaves the finite entries finite.
    assert np.isfinite(w.reshape(-1)[1:]).all() and np.isfinite(b[0])


# --- structure: None, empty, scalar, MaskedNode ------------------------------

def _np_soft(z, t):
  return np.sign(z) * np.maximum(np.abs(z) - t, 0)


def _np_block(z, t):
  n = np.linalg.norm(z)
  return z * (0.0 if n <= t else 1 - t / n)


STRUCT_REFS = {
    # name: (factory(mask), NumPy reference of the leaf prox with step 0.1)
    "prox_l1": (lambda m: optax_l1.prox_l1(0.5, 0.1, mask=m),
                lambda z: _np_soft(z, 0.05)),
    "prox_l1_nonneg": (
        lambda m: optax_l1.prox_l1(0.5, 0.1, nonnegative=True, mask=m),
        lambda z: np.maximum(z - 0.05, 0)),
    "prox_elastic_net": (lambda m: optax_l1.prox_elastic_net(0.5, 1.0, 0.1,
                                                             mask=m),
                         lambda z: _np_soft(z, 0.05) / 1.1),
    "hard_threshold": (lambda m: optax_l1.hard_threshold(0.5, 0.1, mask=m),
                       lambda z: np.where(z * z > 0.1, z, 0.0)),
    "prox_mcp": (lambda m: optax_l1.prox_mcp(0.5, 3.0, 0.1, mask=m),
                 lambda z: np.where(np.abs(z) <= 0.05, 0.0, np.where(
                     np.abs(z) <= 1.5,
                     np.sign(z) * (np.abs(z) - 0.05) / (1 - 0.1 / 3), z))),
    "prox_scad": (lambda m: optax_l1.prox_scad(0.5, 3.7, 0.1, mask=m),
                  lambda z: np.where(
                      np.abs(z) <= 0.55, _np_soft(z, 0.05),
                      np.where(np.abs(z) <= 1.85,
                               (2.7 * z - np.sign(z) * 3.7 * 0.05) / 2.6, z))),
    "prox_group_lasso": (
        lambda m: optax_l1.prox_group_lasso(0.5, 0.1, axis=-1, mask=m),
        lambda z: _np_block(z, 0.05)),
    "prox_sparse_group_lasso": (
        lambda m: optax_l1.prox_sparse_group_lasso(0.2, 0.5, 0.1, axis=-1,
                                                   mask=m),
        lambda z: _np_block(_np_soft(z, 0.02), 0.05)),
}


def _struct_params():
  return {"none": None,
          "empty": jnp.zeros((0,)),
          "empty2": jnp.zeros((3, 0)),
          "scalar": jnp.asarray(0.7),
          "vec": jnp.asarray([0.3, -0.02, 2.0, -1.0]),
          "nested": [None, jnp.asarray([[0.04, -0.5]])]}


@pytest.mark.parametrize("name", sorted(STRUCT_REFS))
def test_none_empty_scalar_leaves_pass_through(name):
  factory, ref = STRUCT_REFS[name]
  params = _struct_params()
  grouped = "group" in name
  # The group proxes need rank >= 1: leave the scalar leaf out by mask (bools
  # for None params too, as optax.masked allows).
  mask = ({"none": False, "empty": True, "empty2": True, "scalar": False,
           "vec": True, "nested": [False, True]} if grouped else None)
  tx = optax.chain(optax.sgd(1.0), factory(mask))
  grads = jax.tree.map(lambda p: jnp.full_like(p, -0.25), params)
  state = tx.init(params)
  update = jax.jit(tx.update) if name in ("prox_l1",
                                          "prox_group_lasso") else tx.update
  updates, _ = update(grads, state, params)
  assert jax.tree.structure(updates) == jax.tree.structure(params)
  new = optax.apply_updates(params, updates)
  assert new["none"] is None and new["nested"][0] is None
  assert new["empty"].shape == (0,) and new["empty2"].shape == (3, 0)
  for key in ("scalar", "vec"):
    assert new[key].shape == params[key].shape
    assert new[key].dtype == params[key].dtype
  z = {k: np.asarray(params[k], np.float64) + 0.25 for k in ("scalar", "vec")}
  zn = np.asarray(params["nested"][1], np.float64) + 0.25
  want_scalar = z["scalar"] if grouped else ref(z["scalar"])
  np.testing.assert_allclose(np.asarray(new["scalar"]), want_scalar,
                             rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(np.asarray(new["vec"]), ref(z["vec"]), rtol=1e-6,
                             atol=1e-7)
  want_nested = ref(zn[0])[None] if grouped else ref(zn)
  np.testing.assert_allclose(np.asarray(new["nested"][1]), want_nested,
                             rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", sorted(STRUCT_REFS))
def test_masked_node_under_optax_masked(name):
  factory, ref = STRUCT_REFS[name]
  params = {"w": jnp.asarray([[0.3, -0.02, 2.0]]), "b": jnp.asarray([0.01]),
            "none": None}
  mask = {"w": True, "b": False, "none": False}
  tx = optax.chain(optax.sgd(1.0), optax.masked(factory(None), mask))
  grads = {"w": jnp.full((1, 3), -0.25), "b": jnp.asarray([-0.25]),
           "none": None}
  state = tx.init(params)
  updates, _ = jax.jit(tx.update)(grads, state, params)
  assert jax.tree.structure(updates) == jax.tree.structure(params)
  new = optax.apply_updates(params, updates)
  np.testing.assert_allclose(
      np.asarray(new["w"]),
      ref(np.asarray(params["w"], np.float64)[0] + 0.25)[None], rtol=1e-6,
      atol=1e-7)
  # The masked-out leaf takes the plain step: 0.01 + 0.25.
  np.testing.assert_allclose(np.asarray(new["b"]), [0.26], rtol=1e-6)
  assert new["none"] is None


def test_none_leaves_under_proximal_adam():
  params = {"w": jnp.asarray([0.3, -0.02, 2.0]), "none": None,
            "e": jnp.zeros((0, 2))}
  opt = optax_l1.proximal(optax.adam(0.1), optax_l1.prox_l1(0.5, 0.1))
  grads = {"w": jnp.asarray([0.5, -1.0, 0.0]), "none": None,
           "e": jnp.zeros((0, 2))}
  updates, _ = jax.jit(opt.update)(grads, opt.init(params), params)
  new = optax.apply_updates(params, updates)
  assert new["none"] is None and new["e"].shape == (0, 2)
  # NumPy Adam, first step, with optax's float32 decay constants (the bias
  # correction 1 - b^t is computed in float32): u = -lr m_hat / (sqrt(v_hat)
  # + eps) and the threshold lr lam P with P = 1 / (sqrt(v_hat) + eps).
  # optax: mu = (1 - b1) g with 1 - b1 taken in float64 then rounded;
  # mu_hat = mu / (1 - b1^t) with b1^t in float32.
  a1, c1 = np.float32(1 - 0.9), np.float32(1) - np.float32(0.9)
  a2, c2 = np.float32(1 - 0.999), np.float32(1) - np.float32(0.999)
  g = np.asarray([0.5, -1.0, 0.0])
  m_hat = float(a1) * g / float(c1)
  v_hat = float(a2) * g * g / float(c2)
  p = 1 / (np.sqrt(v_hat) + 1e-8)
  z = np.asarray([0.3, -0.02, 2.0]) - 0.1 * m_hat * p
  # No gradient has reached w[2] (v = 0): its metric is the identity
  # (step lr), not 1 / eps.
  p[g == 0] = 1.0
  ref = _np_soft(z, 0.1 * 0.5 * p)
  np.testing.assert_allclose(np.asarray(new["w"]), ref, rtol=1e-6, atol=1e-7)


# --- regressions: library bugs found by this file, since fixed --------------

# Regressions: both were library bugs found by this file, since fixed.


def test_mask_tree_mirroring_none_leaves_is_accepted():
  # A mask with None where params are None (what a callable mask mapping
  # params returns) used to raise TypeError in resolve_mask.
  params = {"w": jnp.asarray([0.3, -0.02]), "n": None}
  mask_fn = lambda p: jax.tree.map(lambda x: x.ndim > 0, p)
  assert mask_fn(params) == {"w": True, "n": None}
  ref_tx = optax.masked(optax.scale(2.0), mask_fn)  # optax accepts it
  ref_u, _ = ref_tx.update(params, ref_tx.init(params), params)
  assert ref_u["n"] is None
  tx = optax.chain(optax.sgd(1.0), optax_l1.prox_l1(0.5, 0.1, mask=mask_fn))
  grads = {"w": jnp.zeros(2), "n": None}
  updates, _ = tx.update(grads, tx.init(params), params)
  new = optax.apply_updates(params, updates)
  np.testing.assert_allclose(np.asarray(new["w"]),
                             _np_soft(np.asarray([0.3, -0.02]), 0.05),
                             rtol=1e-6)
  assert new["n"] is None


@pytest.mark.parametrize("per_coordinate", [False, True])
def test_group_lasso_tiny_entries(per_coordinate):
  # Squares of |z| < 1e-19 underflow in float32; such groups used to get
  # norm 0 and be zeroed even at lam = 0 (the identity).
  z = jnp.asarray([[3e-26, -3e-26], [1e-30, 0.0]], jnp.float32)
  step = jnp.full((2, 2), 0.5) if per_coordinate else 0.5
  zn = np.asarray(z, np.float64)
  out = np.asarray(ops.group_lasso(z, step, 0.0, axis=1), np.float64)
  np.testing.assert_allclose(out, zn, rtol=1e-6)
  # lam = 1e-26: row 0 has ||z|| = 4.24e-26 > 0.5e-26 (scaled by 1 - t/||z||),
  # row 1 has ||z|| = 1e-30 <= t and is zeroed.
  out = np.asarray(ops.group_lasso(z, step, 1e-26, axis=1), np.float64)
  ref = np.stack([_np_block(zn[0], 0.5e-26), _np_block(zn[1], 0.5e-26)])
  np.testing.assert_allclose(out, ref, rtol=1e-5)
  assert (out[1] == 0).all()


@pytest.mark.parametrize("z, s, lam", [
    ([-6.6327996253967285, 0.0003915496345143765], [3.60356068611145, 0.0],
     2.022369623184204),
    ([2.1831822395324707, 2.3860313376644626e-05], [3.5380806922912598, 0.0],
     0.9008990526199341),
])
def test_group_lasso_newton_with_pinned_coordinate(z, s, lam):
  # A coordinate with step 0 and z != 0 makes the root tiny; the Newton
  # solve used to stop far from it (off by up to 100x).
  z32, s32 = np.float32(z), np.float32(s)
  lam = float(np.float32(lam))
  x = np.asarray(ops.group_lasso(jnp.asarray(z32), jnp.asarray(s32), lam,
                                 axis=0), np.float64)
  ref = group_prox_reference(z32, s32, lam)
  scale = np.abs(z32) + s32 * lam
  assert (np.abs(x - ref) <= C * 2.0 ** -24 * scale).all(), (x, ref)


def test_mcp_never_flips_sign_just_above_threshold():
  # |z| - s (gamma lam - |z|) / (gamma - s) used to round below 0 here.
  s, lam, gamma = 0.2346467524766922, 1.6576244831085205, 1.3505185842514038
  t = np.float32(np.float32(s) * np.float32(lam))
  z = [np.nextafter(t, np.float32(10))]
  for _ in range(15):
    z.append(np.nextafter(z[-1], np.float32(10)))
  z = np.asarray(z, np.float32)
  for sign in (1.0, -1.0):
    x = np.asarray(ops.mcp(jnp.asarray(sign * z), s, lam, gamma), np.float64)
    # Reference: (|z| - s lam) / (1 - s / gamma) >= 0, times sign(z).
    assert (x * sign >= 0).all(), x


@pytest.mark.parametrize("shape", [(0,), (3, 0)])
def test_group_lasso_over_empty_axis(shape):
  # A group over a zero-length axis used to raise in jnp.max.
  for step in (0.5, jnp.full(shape, 0.5)):
    out = ops.group_lasso(jnp.zeros(shape), step, 1.0, axis=-1)
    assert out.shape == shape
  params = {"e": jnp.zeros(shape)}
  tx = optax.chain(optax.sgd(1.0), optax_l1.prox_group_lasso(0.5, 0.1,
                                                             axis=-1))
  updates, _ = tx.update(params, tx.init(params), params)
  assert updates["e"].shape == shape


def test_group_lasso_zero_step_zero_entry_regression():
  z = np.asarray([1.0, 0.0, 5.25], np.float32)
  s = np.asarray([2.0, 0.0, 1.0], np.float32)
  lam = 3.0 * math.sqrt(3.0)
  assert _dnorm(np.float64(z)[None], np.float64(s)[None])[0] > lam
  ref = group_prox_reference(z, s, lam)  # [0.00745, 0, 0.0776]
  x = np.asarray(ops.group_lasso(jnp.asarray(z), jnp.asarray(s), lam, axis=0),
                 np.float64)
  np.testing.assert_allclose(x, ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("z, s, lam", [
    ([1.0, 0.0, 1.0], [1.0, 0.0, 3.0], 1.0),
    ([-2.368736505508423, -0.5867252945899963, -1.73292875289917, 0.0,
      2.3024306297302246],
     [3.994485855102539, 0.43365657329559326, 2.016082525253296, 0.0,
      1.5751248598098755], 1.5925841331481934),
])
def test_bug_group_lasso_zero_step_zero_entry_zeroes_group(z, s, lam):
  z, s, lam = np.float32(z), np.float32(s), float(np.float32(lam))
  assert _dnorm(np.float64(z)[None], np.float64(s)[None])[0] > lam
  ref = group_prox_reference(z, s, lam)
  assert np.abs(ref).max() > 0.05
  x = np.asarray(ops.group_lasso(jnp.asarray(z), jnp.asarray(s), lam, axis=0),
                 np.float64)
  np.testing.assert_allclose(x, ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype, value", [(jnp.float16, 1e-4),
                                          (jnp.float32, 1e-20),
                                          (jnp.bfloat16, 1e-20)])
def test_bug_l0_zeroes_small_weights_at_lam_zero(dtype, value):
  z = jnp.asarray([value, -value], dtype)
  zn = f64(z)
  for step, lam in ((1.0, 0.0), (0.0, 0.5)):
    np.testing.assert_array_equal(f64(ops.l0(z, step, lam)), zn)
  # A threshold well below z^2 keeps z, too.
  np.testing.assert_array_equal(f64(ops.l0(z, 1.0, value ** 2 / 100)), zn)


def test_bug_group_lasso_pinned_tiny_entry_underflows():
  # A pinned coordinate (step 0) keeps its value whatever it is; computing
  # z * rho before dividing by rho + 0 underflowed 1e-20 * 1e-20 to 0.
  z = np.float32([1.0, 1e-20, 1.0])
  s = np.float32([1.0, 0.0, 1.0])
  x = np.asarray(ops.group_lasso(jnp.asarray(z), jnp.asarray(s), 2.0, axis=0))
  assert x[1] == z[1]
  ref = group_prox_reference(z, s, 2.0)
  np.testing.assert_allclose(x, ref, rtol=0, atol=1e-7)


# --- zero-size leaves pass through every transformation -----------------------

ALL_TRANSFORMS = {
    "prox_l1": lambda: optax_l1.prox_l1(0.3, 0.1),
    "prox_elastic_net": lambda: optax_l1.prox_elastic_net(0.3, 0.1, 0.1),
    "prox_group_lasso_0": lambda: optax_l1.prox_group_lasso(0.3, 0.1, axis=0),
    "prox_group_lasso_1": lambda: optax_l1.prox_group_lasso(0.3, 0.1, axis=-1),
    "prox_sparse_group_lasso": lambda: optax_l1.prox_sparse_group_lasso(
        0.1, 0.3, 0.1, axis=0),
    "hard_threshold": lambda: optax_l1.hard_threshold(0.3, 0.1),
    "prox_mcp": lambda: optax_l1.prox_mcp(0.3, 3.0, 0.1),
    "prox_scad": lambda: optax_l1.prox_scad(0.3, 3.7, 0.1),
    "prox_lq": lambda: optax_l1.prox_lq(0.3, 0.1),
    "magnitude_prune": lambda: optax_l1.magnitude_prune(0.5),
    "magnitude_prune_global": lambda: optax_l1.magnitude_prune(
        0.5, scope="global"),
    "keep_zeros": lambda: optax_l1.keep_zeros(),
    "nm_prune": lambda: optax_l1.nm_prune(1, 2),
}


@pytest.mark.parametrize("where", ["chain", "proximal"])
@pytest.mark.parametrize("name", sorted(ALL_TRANSFORMS))
def test_zero_size_leaves_pass_through_every_transformation(name, where):
  """Empty leaves of every shape come back empty, and the other leaves get
  exactly what they get without them."""
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.normal(size=(2, 4)), jnp.float32)
  g = jnp.asarray(rng.normal(size=(2, 4)), jnp.float32)
  empties = {"a": jnp.zeros((3, 0)), "b": jnp.zeros((0, 4)),
             "c": jnp.zeros((0,)), "d": jnp.zeros((0, 0, 2))}
  if name.startswith("prox_group") or name.startswith("prox_sparse"):
    empties.pop("c")  # rank 1 has no axis -1 group structure to test here

  def make():
    inner = optax.sgd(0.1) if where == "chain" else optax.adam(0.1)
    tx = ALL_TRANSFORMS[name]()
    return (optax.chain(inner, tx) if where == "chain"
            else optax_l1.proximal(inner, tx))

  full = {"w": w, **empties}
  grads = {"w": g, **{k: jnp.zeros_like(v) for k, v in empties.items()}}
  opt = make()
  u, _ = jax.jit(opt.update)(grads, opt.init(full), full)
  for k, v in empties.items():
    assert u[k].shape == v.shape and u[k].dtype == v.dtype
  alone = make()
  u_ref, _ = jax.jit(alone.update)({"w": g}, alone.init({"w": w}), {"w": w})
  np.testing.assert_array_equal(np.asarray(u["w"]), np.asarray(u_ref["w"]))
