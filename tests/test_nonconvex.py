"""Non-convex prox operators (MCP, SCAD, L_q) against a NumPy brute force.

The reference knows nothing of the closed forms: for each scalar ``z`` it
minimizes ``step * F(x) = (x - z)^2 / 2 + step * P(x)`` in float64 over a
dense grid spanning ``[-|z| - 1, |z| + 1]`` plus the candidates ``x = 0`` and
``x = z``, then refines around the best point four times (each round shrinks
the spacing 100x). Every operator result must attain the reference objective
(to a small relative tolerance) and, away from a jump of the prox, equal the
reference argmin. A point counts as near a jump when the reference argmins at
``z -/+ 1e-3 max(1, |z|)`` differ by far more than a continuous prox could
move there; the minimizer may be set-valued at such points, so only the
objective is checked there.

Every eager call uses one shape, ``(N,)``, and weakly typed Python-float
hyperparameters, so that JAX compiles each primitive once for the whole file
(a new shape or dtype costs a fresh compile of every primitive).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from optax_l1._nonconvex import lq, mcp, scad

jax.config.update("jax_enable_x64", False)

N = 81                 # length of every array handed to an operator
GRID = 2_001           # coarse grid points over [-|z| - 1, |z| + 1]
JUMP_GRID = 801        # grid points for the jump detection (no refinement)
REFINE_ROUNDS = 4      # each shrinks the spacing 100x around the best point
OBJ_RTOL = 1e-6        # objective: op <= ref + OBJ_RTOL * (1 + |ref|)
ARG_TOL = 1e-4         # argmin: |op - ref| <= ARG_TOL * max(1, |z|)
JUMP_DZ = 1e-3         # half-width (relative) of the window around a jump

LAM = 0.7
GAMMA = 3.0            # MCP: hard thresholding from step >= 3
A = 3.7                # SCAD: concave middle piece from step >= 2.7
A_EXACT = 3.5          # SCAD with a - 1 = 2.5 exact in float32


def f32(v):
  """The float32 value of ``v`` as float64: what the operator really sees."""
  return np.asarray(np.asarray(v, np.float32), np.float64)


def fill(special, lo, hi):
  """``special`` values followed by a float32 grid on [lo, hi], N in all."""
  special = np.asarray(special, np.float64)
  rest = np.linspace(lo, hi, N - special.size)
  return np.float32(np.concatenate([special, rest]))


# --- the reference --------------------------------------------------------------

def mcp_penalty(x, lam, gamma):
  ax = np.abs(x)
  return np.where(ax <= gamma * lam, lam * ax - ax ** 2 / (2 * gamma),
                  gamma * lam ** 2 / 2)


def scad_penalty(x, lam, a):
  ax = np.abs(x)
  mid = (2 * a * lam * ax - ax ** 2 - lam ** 2) / (2 * (a - 1))
  return np.where(ax <= lam, lam * ax,
                  np.where(ax <= a * lam, mid, (a + 1) * lam ** 2 / 2))


def lq_penalty(x, lam, q):
  return lam * np.abs(x) ** q


def penalty(kind, lam, h):
  """``P`` in float64 for kind mcp (h = gamma), scad (h = a), lq (h = q).

  ``lam`` and ``gamma``/``a`` are rounded to float32, as the operators see
  them; ``q`` is used as given.
  """
  lam = f32(lam)
  if kind == "mcp":
    h = f32(h)
    return lambda x: mcp_penalty(x, lam, h)
  if kind == "scad":
    h = f32(h)
    return lambda x: scad_penalty(x, lam, h)
  return lambda x: lq_penalty(x, lam, h)


def scaled_objective(x, z, s, pen):
  """``step * F(x)``: finite for a huge step, no division by the step."""
  return 0.5 * (x - z) ** 2 + s * pen(x)


def brute_force(z, s, pen, refine=True, grid_points=GRID):
  """Global argmin and minimum of ``step * F`` per element (float64)."""
  z, s = np.broadcast_arrays(np.asarray(z, np.float64),
                             np.asarray(s, np.float64))
  shape = z.shape
  zc, sc = z.reshape(-1, 1), s.reshape(-1, 1)
  half = np.abs(zc) + 1
  unit = np.linspace(-1.0, 1.0, grid_points)[None, :]
  grid = np.concatenate([unit * half, np.zeros_like(zc), zc], 1)
  f = scaled_objective(grid, zc, sc, pen)
  i = np.argmin(f, axis=1)[:, None]
  xb, fb = np.take_along_axis(grid, i, 1), np.take_along_axis(f, i, 1)
  if refine:
    fine = np.linspace(-2.0, 2.0, 401)[None, :]
    h = 2 * half / (grid_points - 1)
    for _ in range(REFINE_ROUNDS):
      local = np.concatenate([xb + fine * h, xb], 1)
      f = scaled_objective(local, zc, sc, pen)
      i = np.argmin(f, axis=1)[:, None]
      xb, fb = np.take_along_axis(local, i, 1), np.take_along_axis(f, i, 1)
      h = h / 100
  return xb.reshape(shape), fb.reshape(shape)


def near_jump(z, s, pen):
  """True where the prox jumps within ``JUMP_DZ * max(1, |z|)`` of ``z``.

  The continuous pieces of these proxes have slope at most about 2 in the
  tested ranges, so over the window they move by < 1% of ``max(1, |z|)``;
  a change of more than 4% is a jump (the set-valued points lie there).
  """
  z = np.asarray(z, np.float64)
  scale = np.maximum(1.0, np.abs(z))
  lo, _ = brute_force(z - JUMP_DZ * scale, s, pen, False, JUMP_GRID)
  hi, _ = brute_force(z + JUMP_DZ * scale, s, pen, False, JUMP_GRID)
  return np.abs(hi - lo) > 0.04 * scale


def check(out, z, s, pen, arg_tol=ARG_TOL, skip=None):
  """Objective within tolerance everywhere, argmin away from jumps.

  Returns the reference argmin and the mask of points whose argmin was
  compared.
  """
  out = np.asarray(out, np.float64)
  z, s = np.broadcast_arrays(np.asarray(z, np.float64),
                             np.asarray(s, np.float64))
  assert out.shape == z.shape
  assert np.all(np.isfinite(out))
  x_ref, f_ref = brute_force(z, s, pen)
  if skip is None:
    skip = near_jump(z, s, pen)
  f_out = scaled_objective(out, z, s, pen)
  bad = f_out - f_ref > OBJ_RTOL * (1 + np.abs(f_ref))
  assert not bad.any(), (
      f"objective above brute force at z={z[bad][:5]}, s={s[bad][:5]}: "
      f"op x={out[bad][:5]} F={f_out[bad][:5]}; ref x={x_ref[bad][:5]} "
      f"F={f_ref[bad][:5]}")
  keep = ~skip
  bad = keep & (np.abs(out - x_ref) > arg_tol * np.maximum(1.0, np.abs(z)))
  assert not bad.any(), (
      f"argmin differs at z={z[bad][:5]}, s={s[bad][:5]}: "
      f"op={out[bad][:5]} ref={x_ref[bad][:5]}")
  # The operator's exact zeros are where the reference argmin is zero.
  np.testing.assert_array_equal((out == 0)[keep], (x_ref == 0)[keep])
  return x_ref, keep


# --- the operators, as (function of z and step, penalty) ----------------------

OPS = {
    "mcp": (lambda z, s: mcp(z, s, LAM, GAMMA), penalty("mcp", LAM, GAMMA)),
    "scad": (lambda z, s: scad(z, s, LAM, A), penalty("scad", LAM, A)),
    "lq0.5": (lambda z, s: lq(z, s, LAM, 0.5), penalty("lq", LAM, 0.5)),
    "lq2/3": (lambda z, s: lq(z, s, LAM, 2 / 3), penalty("lq", LAM, 2 / 3)),
}


def mcp_zmax(s, lam=LAM, gamma=GAMMA):
  return 2 * max(gamma * lam, lam * math.sqrt(gamma * s)) + 1


def scad_zmax(s, lam=LAM, a=A):
  return 2 * max(a * lam, lam * math.sqrt(s * (a + 1))) + 1


def lq_zmax(s, lam, q):
  return 3 * (s * lam) ** (1 / (2 - q)) + 2


def grid_z(zmax):
  return fill([0.0], -zmax, zmax)


# --- grids of z, scalar steps below and above the convexity limits ---------------

@pytest.mark.parametrize("s", [0.1, 0.5, 1.0, 2.0, GAMMA, 5.0, 1e3, 1e8])
def test_mcp_matches_brute_force(s):
  z = grid_z(mcp_zmax(s))
  out = mcp(jnp.asarray(z), s, LAM, GAMMA)
  assert out.dtype == jnp.float32 and out.shape == z.shape
  out = np.asarray(out)
  _, keep = check(out, z, f32(s), OPS["mcp"][1])
  assert keep.sum() >= N - 6  # all but a few points next to the jumps
  assert np.any(out == 0) and np.any(out != 0)
  if s >= GAMMA:  # hard thresholding: every kept entry is z itself
    np.testing.assert_array_equal(out[out != 0], z[out != 0])
    assert np.all(np.abs(z[out != 0]) > LAM * math.sqrt(GAMMA * s) * 0.9999)


@pytest.mark.parametrize("a", [A, A_EXACT])
@pytest.mark.parametrize("s", [0.1, 0.5, 1.0, 2.0, A_EXACT - 1, 3.0, 6.0, 1e3,
                               1e8])
def test_scad_matches_brute_force(s, a):
  z = grid_z(scad_zmax(s, a=a))
  out = scad(jnp.asarray(z), s, LAM, a)
  assert out.dtype == jnp.float32 and out.shape == z.shape
  out = np.asarray(out)
  _, keep = check(out, z, f32(s), penalty("scad", LAM, a))
  assert keep.sum() >= N - 6
  assert np.any(out == 0) and np.any(out != 0)


@pytest.mark.parametrize("q", [0.5, 2 / 3])
@pytest.mark.parametrize("s", [0.1, 0.5, 1.0, 3.0, 1e3, 1e8])
def test_lq_matches_brute_force(s, q):
  z = grid_z(lq_zmax(s, LAM, q))
  out = lq(jnp.asarray(z), s, LAM, q)
  assert out.dtype == jnp.float32 and out.shape == z.shape
  out = np.asarray(out)
  _, keep = check(out, z, f32(s), penalty("lq", LAM, q))
  assert keep.sum() >= N - 6
  assert np.any(out == 0) and np.any(out != 0)


# --- thresholds and jump values --------------------------------------------------

def _threshold_cases():
  """(id, op, penalty, step, jump threshold, |prox| just above it)."""
  cases = []
  for s in (3.0, 7.5, 1e3, 1e8):  # MCP, step >= gamma: 0 -> z at lam sqrt(gamma s)
    thr = LAM * math.sqrt(GAMMA * s)
    cases.append((f"mcp-s{s}", "mcp", s, thr, thr))
  for s in (0.1, 1.0, 1e3, 1e8):  # L_1/2: 0 -> t^(2/3) at (3/2) t^(2/3)
    t = s * LAM
    cases.append((f"lq0.5-s{s}", "lq0.5", s, 1.5 * t ** (2 / 3),
                   t ** (2 / 3)))
  for s in (0.1, 1.0, 1e3, 1e8):  # L_2/3: 0 -> (2t/3)^(3/4) at 1.4756 t^(3/4)
    t = s * LAM
    cases.append((f"lq2/3-s{s}", "lq2/3", s,
                   (4 / 3) * 1.5 ** 0.25 * t ** 0.75, (2 * t / 3) ** 0.75))
  return cases


@pytest.mark.parametrize("case", _threshold_cases(), ids=lambda c: c[0])
def test_jump_threshold_and_jump_value(case):
  _, name, s, thr, jump = case
  op, pen = OPS[name]
  # Just below / above the threshold (1e-3), right above it (1e-5).
  special = thr * np.array([-1.00001, -0.999, 0.999, 1.00001, 1.001])
  z = fill(special, -2 * thr, 2 * thr)
  x_ref, _ = brute_force(z[:5], f32(s), pen)
  # The reference itself confirms the threshold and the jump value.
  np.testing.assert_array_equal(x_ref[1:3], [0.0, 0.0])
  assert x_ref[4] != 0
  np.testing.assert_allclose(np.abs(x_ref[[0, 3]]), jump, rtol=1e-4)
  out = np.asarray(op(jnp.asarray(z), s))
  check(out, z, f32(s), pen)
  np.testing.assert_array_equal(out[1:3], [0.0, 0.0])
  assert out[4] != 0
  np.testing.assert_allclose(np.abs(out[[0, 3]]), jump, rtol=1e-4)


# --- step = 0, per-coordinate steps --------------------------------------------

@pytest.mark.parametrize("name", list(OPS))
def test_step_zero_returns_z(name):
  op, pen = OPS[name]
  z = fill([-5.0, -1.3, -1e-3, 0.0, 1e-3, 0.37, 2.0, 40.0, 1e6], -9, 9)
  out = np.asarray(op(jnp.asarray(z), 0.0))
  np.testing.assert_array_equal(out, z)
  # The reference with a vanishing step agrees: the prox tends to z.
  x_ref, _ = brute_force(z, 1e-12, pen)
  np.testing.assert_allclose(out, x_ref, rtol=1e-6, atol=1e-6)
  # A zero step inside a per-coordinate step array pins that coordinate.
  steps = np.where(np.arange(N) % 2 == 0, 0.0, 1.0).astype(np.float32)
  out = np.asarray(op(jnp.asarray(z), jnp.asarray(steps)))
  np.testing.assert_array_equal(out[::2], z[::2])
  check(out, z, steps, pen)


@pytest.mark.parametrize("name", list(OPS))
def test_per_coordinate_step(name):
  op, pen = OPS[name]
  rng = np.random.default_rng(0)
  # Nine steps from 0.02 to 1e8, straddling gamma = 3 (MCP) and a - 1 = 2.7
  # (SCAD), each used by nine coordinates; z scaled to the jump thresholds.
  levels = np.float32([0.02, 0.3, 1.0, 2.5, 2.9, 3.5, 10.0, 2e3, 1e8])
  s = np.repeat(levels, N // levels.size)
  rng.shuffle(s)
  scale = 1.0 + 2.0 * LAM * np.sqrt((A + 1) * np.asarray(s, np.float64))
  z = np.float32(rng.uniform(-1.0, 1.0, size=N) * scale)
  out = op(jnp.asarray(z), jnp.asarray(s))
  assert out.shape == z.shape and out.dtype == jnp.float32
  out = np.asarray(out)
  _, keep = check(out, z, s, pen)
  assert keep.sum() >= 0.9 * N
  # Identical to the scalar-step operator, one step value at a time.
  for level in levels:
    at = s == level
    np.testing.assert_array_equal(out[at],
                                  np.asarray(op(jnp.asarray(z), float(level)))[at])


# --- dtypes, NaN, jit, strict promotion ------------------------------------------

@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("name", list(OPS))
def test_low_precision_dtypes(name, dtype):
  op, pen = OPS[name]
  s = 1.0
  z_lp = jnp.asarray(fill([0.0], -6, 6), dtype)
  out = op(z_lp, s)
  assert out.dtype == dtype and out.shape == z_lp.shape
  z = np.asarray(z_lp.astype(jnp.float32), np.float64)
  x_ref, _ = brute_force(z, s, pen)
  keep = ~near_jump(z, s, pen)
  got = np.asarray(out.astype(jnp.float32), np.float64)
  # Zeros are exact zeros, exactly where the reference is zero.
  np.testing.assert_array_equal((got == 0)[keep], (x_ref == 0)[keep])
  assert np.sum(got == 0) >= 5
  # Nonzeros equal the reference up to rounding to the output dtype.
  rtol = 2.0 ** -8 if dtype == jnp.bfloat16 else 2.0 ** -11
  np.testing.assert_allclose(got[keep], x_ref[keep], rtol=rtol * 1.01,
                             atol=1e-6)


@pytest.mark.parametrize("name", list(OPS))
def test_float64_under_x64(name):
  op, _ = OPS[name]
  kind, h = ("lq", 2 / 3 if name == "lq2/3" else 0.5) if name.startswith(
      "lq") else (name, GAMMA if name == "mcp" else A)
  lam64 = LAM
  pen = {"mcp": lambda x: mcp_penalty(x, lam64, h),
         "scad": lambda x: scad_penalty(x, lam64, h),
         "lq": lambda x: lq_penalty(x, lam64, h)}[kind]  # exact in float64
  z = np.linspace(-8, 8, N)
  s = np.where(np.arange(N) % 2 == 0, 0.5, 5.0)
  with jax.enable_x64(True):
    # Under jit: eager float64 would recompile every primitive (slow), and
    # the traced code is the same.
    out = jax.jit(op)(jnp.asarray(z, jnp.float64), jnp.asarray(s, jnp.float64))
    assert out.dtype == jnp.float64
    out = np.asarray(out)
  check(out, z, s, pen, arg_tol=1e-6)


@pytest.mark.parametrize("name", list(OPS))
def test_nan_and_inf(name):
  op, pen = OPS[name]
  z = fill([np.nan, -2.5, np.inf, 0.3, -np.inf, np.nan, 4.0, 0.0], -9, 9)
  finite = np.isfinite(z)
  for s in (0.5, 1e3, np.full(N, 5.0, np.float32)):
    out = np.asarray(op(jnp.asarray(z), s))
    assert np.isnan(out[np.isnan(z)]).all()
    np.testing.assert_array_equal(out[np.isinf(z)], z[np.isinf(z)])
    s_fin = np.broadcast_to(np.asarray(s, np.float32), z.shape)[finite]
    check(out[finite], z[finite], s_fin, pen)


def _traced_op(name):
  """(fn(z, step, *hyper), hyper): every hyperparameter an argument."""
  if name == "mcp":
    return mcp, (LAM, GAMMA)
  if name == "scad":
    return scad, (LAM, A)
  q = 0.5 if name == "lq0.5" else 2 / 3
  return (lambda z, s, lam: lq(z, s, lam, q)), (LAM,)


@pytest.mark.parametrize("name", list(OPS))
def test_jit_matches_eager_and_reference(name):
  fn, hyper = _traced_op(name)
  jitted = jax.jit(fn)  # the hyperparameters are traced arrays
  pen = OPS[name][1]
  rng = np.random.default_rng(1)
  z = np.float32(rng.uniform(-30, 30, size=N))
  s = np.float32(10.0 ** rng.uniform(-1, 2, size=N))
  traced = [jnp.float32(h) for h in hyper]
  for step in (0.5, 5.0, s):
    eager = np.asarray(fn(jnp.asarray(z), step, *hyper))
    compiled = np.asarray(jitted(jnp.asarray(z), jnp.asarray(step), *traced))
    np.testing.assert_array_equal(compiled == 0, eager == 0)
    # Not bitwise in general: under jit XLA may contract a multiply-add into
    # an FMA or reorder the transcendental functions (test_properties'
    # BITWISE lists the ops whose jit and eager results are bitwise equal).
    np.testing.assert_allclose(compiled, eager, rtol=1e-6, atol=0)
    check(compiled, z, np.asarray(step, np.float32), pen)


@pytest.mark.parametrize("name", list(OPS))
def test_strict_dtype_promotion(name):
  fn, hyper = _traced_op(name)
  pen = OPS[name][1]
  z = fill([0.0], -6, 6)
  s = np.full(N, 0.8, np.float32)
  with jax.numpy_dtype_promotion("strict"):
    # Traced under strict promotion, float32 and bfloat16 inputs, with
    # Python-float and float32-array hyperparameters.
    out = jax.jit(fn)(jnp.asarray(z), jnp.asarray(s), *hyper)
    out_bf16 = jax.jit(fn)(jnp.asarray(z, jnp.bfloat16), 0.8,
                           *[jnp.float32(h) for h in hyper])
  assert out.dtype == jnp.float32 and out_bf16.dtype == jnp.bfloat16
  check(out, z, f32(s), pen)
  zb = np.asarray(jnp.asarray(z, jnp.bfloat16).astype(jnp.float32), np.float64)
  x_ref, _ = brute_force(zb, f32(0.8), pen)
  keep = ~near_jump(zb, f32(0.8), pen)
  got = np.asarray(out_bf16.astype(jnp.float32), np.float64)
  np.testing.assert_allclose(got[keep], x_ref[keep], rtol=2.0 ** -8 * 1.01,
                             atol=1e-6)


@pytest.mark.parametrize("name", list(OPS))
def test_sign_symmetry_and_shrinkage(name):
  op, pen = OPS[name]
  z = np.float32(np.linspace(0.0, 50.0, N))
  # Tiny steps too: there the L_1/2 formula alone rounds |x| above |z|.
  for s in (1e-6, 1e-3, 0.3, 2.0, 40.0):
    pos = np.asarray(op(jnp.asarray(z), s))
    neg = np.asarray(op(jnp.asarray(-z), s))
    np.testing.assert_array_equal(neg, -pos)
    assert np.all(np.abs(pos) <= z)
    assert np.all(pos >= 0)
    check(pos, z, f32(s), pen)


# --- q validation -----------------------------------------------------------------

@pytest.mark.parametrize("bad", [1.0, 0.3, 0.0, 0.5 + 1e-6, 2 / 3 + 1e-7,
                                 float("nan"), True, "0.5", None])
def test_invalid_q_raises(bad):
  with pytest.raises(ValueError, match=r"q"):
    lq(jnp.ones(N), 1.0, 1.0, bad)


def test_q_tolerance_accepted_and_traced_q_rejected():
  z = fill([0.0], -5, 5)
  for q_in, q in [(2 / 3 + 5e-10, 2 / 3), (0.6666666667, 2 / 3),
                  (np.float64(0.5), 0.5), (0.5 - 1e-10, 0.5)]:
    out = np.asarray(lq(jnp.asarray(z), 1.0, LAM, q_in))
    np.testing.assert_array_equal(out,
                                  np.asarray(lq(jnp.asarray(z), 1.0, LAM, q)))
    check(out, z, 1.0, penalty("lq", LAM, q))
  with pytest.raises(ValueError, match=r"q"):
    jax.jit(lambda z, q: lq(z, 1.0, LAM, q))(jnp.asarray(z), 0.5)


# --- random hyperparameters ---------------------------------------------------------

@settings(max_examples=20, deadline=None, derandomize=True)
@given(kind=st.sampled_from(["mcp", "scad", "lq0.5", "lq2/3"]),
       log_s=st.floats(-2.0, 3.0),
       lam=st.floats(0.05, 3.0),
       shape_param=st.floats(0.0, 1.0))
def test_random_hyperparameters(kind, log_s, lam, shape_param):
  # Python floats (weakly typed, as float32 values) keep one compiled shape.
  s = float(f32(10.0 ** log_s))
  lam = float(f32(lam))
  if kind == "mcp":
    h = float(f32(0.5 + 9.5 * shape_param))
    op, pen, zmax = mcp, penalty("mcp", lam, h), mcp_zmax(s, lam, h)
  elif kind == "scad":
    h = float(f32(2.1 + 6.0 * shape_param))
    op, pen, zmax = scad, penalty("scad", lam, h), scad_zmax(s, lam, h)
  else:
    h = 0.5 if kind == "lq0.5" else 2 / 3
    op, pen, zmax = lq, penalty("lq", lam, h), lq_zmax(s, lam, h)
  z = grid_z(zmax)
  out = np.asarray(op(jnp.asarray(z), s, lam, h))
  check(out, z, s, pen)
