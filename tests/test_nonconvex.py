"""Non-convex prox operators (MCP, SCAD, L_q) against a NumPy brute force.

The reference knows nothing of the closed forms: for each scalar ``z`` it
minimizes ``step * F(x) = (x - z)^2 / 2 + step * P(x)`` in float64 over a
dense grid spanning ``[-|z| - 1, |z| + 1]`` plus the candidates ``x = 0`` and
``x = z``, then refines around the best point three times. Every operator
result must attain the reference objective (to a small relative tolerance)
and, away from a jump of the prox, equal the reference argmin. A point counts
as near a jump when the reference argmins at ``z -/+ 1e-3 max(1, |z|)`` differ
by far more than a continuous prox could move there; the minimizer may be
set-valued at such points, so only the objective is checked.
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

GRID = 20_001          # coarse grid points over [-|z| - 1, |z| + 1]
REFINE_ROUNDS = 3      # each shrinks the spacing 100x around the best point
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


# Penalties, straight from their definitions (float64, NumPy).
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


def penalty(kind, hyper):
  """``P`` as a NumPy function for ``kind`` in mcp/scad/lq."""
  if kind == "mcp":
    lam, gamma = hyper
    return lambda x: mcp_penalty(x, lam, gamma)
  if kind == "scad":
    lam, a = hyper
    return lambda x: scad_penalty(x, lam, a)
  lam, q = hyper
  return lambda x: lq_penalty(x, lam, q)


def scaled_objective(x, z, s, pen):
  """``step * F(x)``: finite for a huge step, no division by the step."""
  return 0.5 * (x - z) ** 2 + s * pen(x)


def brute_force(z, s, pen, refine=True, chunk=64):
  """Global argmin and minimum of ``step * F`` per element (float64)."""
  z, s = np.broadcast_arrays(np.asarray(z, np.float64),
                             np.asarray(s, np.float64))
  shape = z.shape
  z, s = z.ravel(), s.ravel()
  xs, fs = np.empty_like(z), np.empty_like(z)
  unit = np.linspace(-1.0, 1.0, GRID)
  fine = np.linspace(-2.0, 2.0, 401)
  for lo in range(0, z.size, chunk):
    zc, sc = z[lo:lo + chunk, None], s[lo:lo + chunk, None]
    half = np.abs(zc) + 1
    grid = np.concatenate([unit[None, :] * half, np.zeros_like(zc), zc], 1)
    f = scaled_objective(grid, zc, sc, pen)
    i = np.argmin(f, axis=1)[:, None]
    xb = np.take_along_axis(grid, i, 1)
    fb = np.take_along_axis(f, i, 1)
    if refine:
      h = 2 * half / (GRID - 1)
      for _ in range(REFINE_ROUNDS):
        local = np.concatenate([xb + fine[None, :] * h, xb], 1)
        f = scaled_objective(local, zc, sc, pen)
        i = np.argmin(f, axis=1)[:, None]
        xb = np.take_along_axis(local, i, 1)
        fb = np.take_along_axis(f, i, 1)
        h = h * 4 / 400
    xs[lo:lo + chunk], fs[lo:lo + chunk] = xb[:, 0], fb[:, 0]
  return xs.reshape(shape), fs.reshape(shape)


def near_jump(z, s, pen):
  """True where the prox jumps within ``JUMP_DZ * max(1, |z|)`` of ``z``.

  The continuous pieces of these proxes have slope at most about 2 in the
  tested ranges, so over the window they move by < 1% of ``max(1, |z|)``;
  a change of more than 4% is a jump (the set-valued points lie there).
  """
  z = np.asarray(z, np.float64)
  scale = np.maximum(1.0, np.abs(z))
  lo, _ = brute_force(z - JUMP_DZ * scale, s, pen, refine=False)
  hi, _ = brute_force(z + JUMP_DZ * scale, s, pen, refine=False)
  return np.abs(hi - lo) > 0.04 * scale


@functools.lru_cache(maxsize=None)
def _cached_reference(kind, hyper, s, zmax, n):
  z = f32(np.linspace(-zmax, zmax, n))
  pen = penalty(kind, hyper)
  x, fmin = brute_force(z, s, pen)
  return z, x, fmin, near_jump(z, s, pen)


def reference(kind, hyper, s, zmax, n=81):
  """(z grid, ref argmin, ref min of step*F, near-jump mask), cached."""
  return _cached_reference(kind, tuple(float(h) for h in hyper), float(s),
                           float(zmax), n)


def check_against_reference(out, z, s, pen, x_ref=None, f_ref=None,
                            skip=None, arg_tol=ARG_TOL):
  """Objective within tolerance everywhere, argmin away from jumps.

  Returns the number of points whose argmin was compared.
  """
  out = np.asarray(out, np.float64)
  z, s = np.broadcast_arrays(np.asarray(z, np.float64),
                             np.asarray(s, np.float64))
  assert out.shape == z.shape
  assert np.all(np.isfinite(out))
  if x_ref is None:
    x_ref, f_ref = brute_force(z, s, pen)
  if skip is None:
    skip = near_jump(z, s, pen)
  f_out = scaled_objective(out, z, s, pen)
  excess = f_out - f_ref
  bound = OBJ_RTOL * (1 + np.abs(f_ref))
  bad = excess > bound
  assert not bad.any(), (
      f"objective above brute force at z={z[bad][:5]}, s={s[bad][:5]}: "
      f"op x={out[bad][:5]} F={f_out[bad][:5]}; ref x={x_ref[bad][:5]} "
      f"F={f_ref[bad][:5]}")
  keep = ~skip
  err = np.abs(out - x_ref)
  bad = keep & (err > arg_tol * np.maximum(1.0, np.abs(z)))
  assert not bad.any(), (
      f"argmin differs at z={z[bad][:5]}, s={s[bad][:5]}: "
      f"op={out[bad][:5]} ref={x_ref[bad][:5]}")
  # The operators' exact zeros agree with the reference's zeros.
  np.testing.assert_array_equal((out == 0)[keep], (x_ref == 0)[keep])
  return int(keep.sum())


# --- the three operators over grids of z and scalar steps -------------------

def mcp_zmax(s, lam=LAM, gamma=GAMMA):
  return 2 * max(gamma * lam, lam * math.sqrt(gamma * s)) + 1


def scad_zmax(s, lam=LAM, a=A):
  return 2 * max(a * lam, lam * math.sqrt(s * (a + 1))) + 1


def lq_zmax(s, lam, q):
  return 2 * 1.5 * (s * lam) ** (1 / (2 - q)) + 2


MCP_STEPS = [0.1, 0.5, 1.0, 2.0, GAMMA, 5.0, 1e3]
SCAD_STEPS = [0.1, 0.5, 1.0, 2.0, 3.0, 6.0, 1e3]
LQ_STEPS = [0.1, 0.5, 1.0, 3.0, 1e3]


@pytest.mark.parametrize("s", MCP_STEPS)
def test_mcp_matches_brute_force(s):
  hyper = (f32(LAM), f32(GAMMA))
  z, x_ref, f_ref, skip = reference("mcp", hyper, f32(s), mcp_zmax(s))
  out = mcp(jnp.asarray(z, jnp.float32), s, LAM, GAMMA)
  assert out.dtype == jnp.float32 and out.shape == z.shape
  n = check_against_reference(out, z, f32(s), penalty("mcp", hyper),
                              x_ref, f_ref, skip)
  assert n >= 70  # all but a few points near the jumps
  assert np.any(np.asarray(out) == 0) and np.any(np.asarray(out) != 0)
  if s >= GAMMA:  # hard thresholding: every kept entry is z itself
    kept = np.asarray(out) != 0
    np.testing.assert_array_equal(np.asarray(out)[kept], z[kept])


@pytest.mark.parametrize("a", [A, A_EXACT])
@pytest.mark.parametrize("s", SCAD_STEPS + [A_EXACT - 1])
def test_scad_matches_brute_force(s, a):
  hyper = (f32(LAM), f32(a))
  z, x_ref, f_ref, skip = reference("scad", hyper, f32(s), scad_zmax(s, a=a))
  out = scad(jnp.asarray(z, jnp.float32), s, LAM, a)
  assert out.dtype == jnp.float32 and out.shape == z.shape
  n = check_against_reference(out, z, f32(s), penalty("scad", hyper),
                              x_ref, f_ref, skip)
  assert n >= 70
  assert np.any(np.asarray(out) == 0) and np.any(np.asarray(out) != 0)


@pytest.mark.parametrize("q", [0.5, 2 / 3])
@pytest.mark.parametrize("s", LQ_STEPS)
def test_lq_matches_brute_force(s, q):
  hyper = (f32(LAM), q)
  z, x_ref, f_ref, skip = reference("lq", hyper, f32(s), lq_zmax(s, LAM, q))
  out = lq(jnp.asarray(z, jnp.float32), s, LAM, q)
  assert out.dtype == jnp.float32 and out.shape == z.shape
  n = check_against_reference(out, z, f32(s), penalty("lq", hyper),
                              x_ref, f_ref, skip)
  assert n >= 70
  assert np.any(np.asarray(out) == 0) and np.any(np.asarray(out) != 0)


# --- thresholds and jump values ----------------------------------------------

def _threshold_cases():
  """(name, op, kind, hyper, step, threshold, |x| just above it)."""
  lam = 0.7
  cases = []
  for s in (3.0, 7.5, 1e3):  # MCP, step >= gamma: jump 0 -> z
    thr = lam * math.sqrt(GAMMA * s)
    cases.append((f"mcp-s{s}", lambda z, s: mcp(z, s, lam, GAMMA), "mcp",
                  (lam, GAMMA), s, thr, thr))
  for s in (0.1, 1.0, 1e3):  # L_1/2: (3/2) t^(2/3) -> t^(2/3)
    t = s * lam
    cases.append((f"lq0.5-s{s}", lambda z, s: lq(z, s, lam, 0.5), "lq",
                  (lam, 0.5), s, 1.5 * t ** (2 / 3), t ** (2 / 3)))
  for s in (0.1, 1.0, 1e3):  # L_2/3: (4/3)(3/2)^(1/4) t^(3/4) -> (2t/3)^(3/4)
    t = s * lam
    cases.append((f"lq2/3-s{s}", lambda z, s: lq(z, s, lam, 2 / 3), "lq",
                  (lam, 2 / 3), s, (4 / 3) * 1.5 ** 0.25 * t ** 0.75,
                  (2 * t / 3) ** 0.75))
  return cases


@pytest.mark.parametrize("case", _threshold_cases(), ids=lambda c: c[0])
def test_jump_threshold_and_jump_value(case):
  _, op, kind, hyper, s, thr, jump = case
  z = f32([-thr * 1.001, -thr * 0.999, thr * 0.999, thr * 1.001])
  pen = penalty(kind, (f32(hyper[0]), hyper[1] if kind == "lq"
                       else f32(hyper[1])))
  x_ref, f_ref = brute_force(z, f32(s), pen)
  # The reference itself confirms the threshold: 0 below, ~jump above.
  np.testing.assert_array_equal(x_ref[1:3], [0.0, 0.0])
  np.testing.assert_allclose(np.abs(x_ref[[0, 3]]), jump, rtol=2e-3)
  out = op(jnp.asarray(z, jnp.float32), s)
  check_against_reference(out, z, f32(s), pen, x_ref, f_ref,
                          skip=np.zeros(4, bool))
  np.testing.assert_allclose(np.abs(np.asarray(out)[[0, 3]]), jump, rtol=2e-3)


# --- step = 0, per-coordinate steps ------------------------------------------

OPS = {
    "mcp": (lambda z, s: mcp(z, s, LAM, GAMMA), "mcp", (LAM, GAMMA)),
    "scad": (lambda z, s: scad(z, s, LAM, A), "scad", (LAM, A)),
    "lq0.5": (lambda z, s: lq(z, s, LAM, 0.5), "lq", (LAM, 0.5)),
    "lq2/3": (lambda z, s: lq(z, s, LAM, 2 / 3), "lq", (LAM, 2 / 3)),
}


def _pen(name):
  _, kind, (lam, h) = OPS[name]
  return penalty(kind, (f32(lam), h if kind == "lq" else f32(h)))


@pytest.mark.parametrize("name", list(OPS))
def test_step_zero_returns_z(name):
  op = OPS[name][0]
  z = np.asarray([-5.0, -1.3, -1e-3, 0.0, 1e-3, 0.37, 2.0, 40.0], np.float32)
  out = np.asarray(op(jnp.asarray(z), 0.0))
  np.testing.assert_array_equal(out, z)
  # The reference with a vanishing step agrees: the prox tends to z.
  x_ref, _ = brute_force(z, 1e-9, _pen(name))
  np.testing.assert_allclose(out, x_ref, atol=1e-6)
  # A zero step inside a per-coordinate step array pins that coordinate.
  steps = np.where(np.arange(z.size) % 2 == 0, 0.0, 1.0).astype(np.float32)
  out = np.asarray(op(jnp.asarray(z), jnp.asarray(steps)))
  np.testing.assert_array_equal(out[::2], z[::2])
  x_ref, _ = brute_force(z[1::2], 1.0, _pen(name))
  np.testing.assert_allclose(out[1::2], x_ref, atol=1e-4)


@pytest.mark.parametrize("name", list(OPS))
def test_per_coordinate_step(name):
  op = OPS[name][0]
  rng = np.random.default_rng(0)
  shape = (8, 30)
  # Steps from 0.02 to 2000, straddling gamma = 3 (MCP) and a - 1 = 2.7
  # (SCAD); z scaled to each coordinate's jump threshold.
  s = np.float32(10.0 ** rng.uniform(-1.7, 3.3, size=shape))
  scale = 1.0 + 2.0 * LAM * np.sqrt((A + 1) * np.asarray(s, np.float64))
  z = np.float32(rng.uniform(-1.0, 1.0, size=shape) * scale)
  out = op(jnp.asarray(z), jnp.asarray(s))
  assert out.shape == shape and out.dtype == jnp.float32
  pen = _pen(name)
  n = check_against_reference(out, z, s, pen)
  assert n >= 0.9 * z.size
  # Identical to applying the scalar-step operator coordinate by coordinate.
  flat = [np.asarray(op(jnp.asarray(zi), float(si)))
          for zi, si in zip(z.ravel()[:40], s.ravel()[:40])]
  np.testing.assert_array_equal(np.asarray(out).ravel()[:40], flat)


# --- dtypes, NaN, jit, strict promotion ----------------------------------------

@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("name", list(OPS))
def test_low_precision_dtypes(name, dtype):
  op = OPS[name][0]
  s = 1.0
  z_lp = jnp.asarray(np.linspace(-6, 6, 49), dtype)
  out = op(z_lp, s)
  assert out.dtype == dtype and out.shape == z_lp.shape
  z = np.asarray(z_lp.astype(jnp.float32), np.float64)
  pen = _pen(name)
  x_ref, _ = brute_force(z, s, pen)
  keep = ~near_jump(z, s, pen)
  got = np.asarray(out.astype(jnp.float32), np.float64)
  # Zeros are exact zeros exactly where the reference is zero.
  np.testing.assert_array_equal((got == 0)[keep], (x_ref == 0)[keep])
  assert np.sum(got == 0) >= 5
  # Nonzeros equal the reference up to rounding to the output dtype.
  rtol = 2.0 ** -7 if dtype == jnp.bfloat16 else 2.0 ** -10
  np.testing.assert_allclose(got[keep], x_ref[keep], rtol=rtol, atol=1e-6)
  # And the low-precision result is the float32 result of the same input
  # rounded once.
  want = op(z_lp.astype(jnp.float32), s).astype(dtype)
  np.testing.assert_array_equal(np.asarray(out.astype(jnp.float32)),
                                np.asarray(want.astype(jnp.float32)))


@pytest.mark.parametrize("name", list(OPS))
def test_float64_under_x64(name):
  op = OPS[name][0]
  _, kind, (lam, h) = OPS[name]
  pen = penalty(kind, (lam, h))  # hyperparameters exact in float64
  for s in (0.5, 5.0):
    z = np.linspace(-8, 8, 41)
    with jax.enable_x64(True):
      out = op(jnp.asarray(z, jnp.float64), s)
      assert out.dtype == jnp.float64
      out = np.asarray(out)
    check_against_reference(out, z, s, pen, arg_tol=1e-6)


@pytest.mark.parametrize("name", list(OPS))
def test_nan_and_inf(name):
  op = OPS[name][0]
  z = np.asarray([np.nan, -2.5, np.inf, 0.3, -np.inf, np.nan, 4.0, 0.0],
                 np.float32)
  pen = _pen(name)
  finite = np.isfinite(z)
  for s in (0.5, 1e3, np.full(z.shape, 5.0, np.float32)):
    out = np.asarray(op(jnp.asarray(z), s))
    assert np.isnan(out[np.isnan(z)]).all()
    inf = np.isinf(z)
    np.testing.assert_array_equal(out[inf], z[inf])
    s_fin = np.broadcast_to(np.asarray(s, np.float32), z.shape)[finite]
    check_against_reference(out[finite], z[finite], s_fin, pen)


@pytest.mark.parametrize("name", ["mcp", "scad", "lq0.5", "lq2/3"])
def test_jit_matches_eager_and_reference(name):
  # The hyperparameters are traced arrays under jit; only q is static.
  if name == "mcp":
    fn, hyper, kind = mcp, (LAM, GAMMA), "mcp"
  elif name == "scad":
    fn, hyper, kind = scad, (LAM, A), "scad"
  else:
    q = 0.5 if name == "lq0.5" else 2 / 3
    fn, hyper, kind = (lambda z, s, lam, q=q: lq(z, s, lam, q)), (LAM,), "lq"
  jitted = jax.jit(fn)
  rng = np.random.default_rng(1)
  z = np.float32(rng.uniform(-30, 30, size=200))
  s = np.float32(10.0 ** rng.uniform(-1, 2, size=200))
  args = [jnp.asarray(h, jnp.float32) for h in hyper]
  for step in (jnp.float32(0.5), jnp.float32(5.0), jnp.asarray(s)):
    eager = np.asarray(fn(jnp.asarray(z), step, *args))
    compiled = np.asarray(jitted(jnp.asarray(z), step, *args))
    np.testing.assert_array_equal(compiled == 0, eager == 0)
    np.testing.assert_allclose(compiled, eager, rtol=1e-6, atol=0)
    pen = _pen(name)
    check_against_reference(compiled, z, np.asarray(step, np.float32), pen)


def test_strict_dtype_promotion():
  z = np.float32(np.linspace(-6, 6, 61))
  s = np.full(z.shape, 0.8, np.float32)
  with jax.numpy_dtype_promotion("strict"):
    outs = {
        "mcp": mcp(jnp.asarray(z), jnp.asarray(s), LAM, GAMMA),
        "scad": scad(jnp.asarray(z), 4.0, jnp.float32(LAM), A),
        "lq0.5": lq(jnp.asarray(z), jnp.asarray(s), LAM, 0.5),
        "lq2/3": lq(jnp.asarray(z, jnp.bfloat16), 0.8, LAM, 2 / 3),
    }
  for name, out in outs.items():
    step = 4.0 if name == "scad" else 0.8
    zz = np.asarray(jnp.asarray(z, out.dtype).astype(jnp.float32), np.float64)
    pen = _pen(name)
    if out.dtype == jnp.float32:
      check_against_reference(out, zz, f32(step), pen)
    else:
      x_ref, _ = brute_force(zz, f32(step), pen)
      keep = ~near_jump(zz, f32(step), pen)
      got = np.asarray(out.astype(jnp.float32), np.float64)
      np.testing.assert_allclose(got[keep], x_ref[keep], rtol=2.0 ** -7,
                                 atol=1e-6)


@pytest.mark.parametrize("name", list(OPS))
def test_sign_symmetry_and_shrinkage(name):
  op = OPS[name][0]
  z = np.float32(np.linspace(0.0, 50.0, 201))
  pen = _pen(name)
  for s in (0.3, 2.0, 40.0):
    pos = np.asarray(op(jnp.asarray(z), s))
    neg = np.asarray(op(jnp.asarray(-z), s))
    np.testing.assert_array_equal(neg, -pos)
    assert np.all(np.abs(pos) <= z)
    assert np.all(pos >= 0)
    check_against_reference(pos[::10], z[::10], f32(s), pen)


# --- q validation ---------------------------------------------------------------

@pytest.mark.parametrize("bad", [1.0, 0.3, 0.0, 0.5 + 1e-6, 2 / 3 + 1e-7,
                                 float("nan"), True, "0.5", None])
def test_invalid_q_raises(bad):
  with pytest.raises(ValueError, match=r"q"):
    lq(jnp.ones(3), 1.0, 1.0, bad)


def test_q_tolerance_accepted_and_traced_q_rejected():
  z = np.float32(np.linspace(-5, 5, 41))
  for q_in, q in [(2 / 3 + 5e-10, 2 / 3), (0.6666666667, 2 / 3),
                  (np.float64(0.5), 0.5)]:
    out = lq(jnp.asarray(z), 1.0, LAM, q_in)
    np.testing.assert_array_equal(np.asarray(out),
                                  np.asarray(lq(jnp.asarray(z), 1.0, LAM, q)))
    check_against_reference(out, z, 1.0, penalty("lq", (f32(LAM), q)))
  with pytest.raises(ValueError, match=r"q"):
    jax.jit(lambda z, q: lq(z, 1.0, LAM, q))(jnp.asarray(z), 0.5)


# --- random hyperparameters -----------------------------------------------------

@settings(max_examples=25, deadline=None, derandomize=True)
@given(kind=st.sampled_from(["mcp", "scad", "lq0.5", "lq2/3"]),
       log_s=st.floats(-2.0, 3.0),
       lam=st.floats(0.05, 3.0),
       shape_param=st.floats(0.0, 1.0))
def test_random_hyperparameters(kind, log_s, lam, shape_param):
  s = f32(10.0 ** log_s)
  lam = f32(lam)
  if kind == "mcp":
    h = f32(0.5 + 9.5 * shape_param)
    out_fn = lambda z: mcp(z, s, lam, h)
    pen = penalty("mcp", (lam, h))
    zmax = mcp_zmax(float(s), float(lam), float(h))
  elif kind == "scad":
    h = f32(2.1 + 6.0 * shape_param)
    out_fn = lambda z: scad(z, s, lam, h)
    pen = penalty("scad", (lam, h))
    zmax = scad_zmax(float(s), float(lam), float(h))
  else:
    q = 0.5 if kind == "lq0.5" else 2 / 3
    out_fn = lambda z: lq(z, s, lam, q)
    pen = penalty("lq", (lam, q))
    zmax = lq_zmax(float(s), float(lam), q)
  z = f32(np.linspace(-zmax, zmax, 41))
  out = out_fn(jnp.asarray(z, jnp.float32))
  check_against_reference(out, z, s, pen)
