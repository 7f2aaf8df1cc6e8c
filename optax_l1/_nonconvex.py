"""Proximal operators of separable non-convex sparsity penalties.

The contract is that of every operator in :mod:`optax_l1.ops`: given ``z``, a
step ``step`` (a scalar or an array of ``z``'s shape, ``>= 0``) and the
penalty's hyperparameters, each function returns

.. math::

  \\operatorname{prox}(z) = \\operatorname*{argmin}_x \\;
  \\sum_i \\frac{(x_i - z_i)^2}{2\\,\\mathrm{step}_i} + \\sum_i P(x_i).

The penalties here are *not convex*, so this is the global minimizer of a
non-convex one-dimensional problem per coordinate. It is unique except on a
set of measure zero of ``z`` (a jump threshold, where two points tie, or a
step at which the objective is flat on an interval); there the operators
return the tied point of smallest magnitude, which is 0 at every jump from
zero. A zero step returns ``z`` unchanged.

Every function works in ``z``'s dtype promoted to at least float32 and casts
the result back; zeros are exact zeros, NaN inputs stay NaN (every zeroing
comparison is written so that NaN fails it), and nothing branches in Python on
a value, so hyperparameters may be traced arrays under :func:`jax.jit`.
This module is imported by :mod:`optax_l1.ops`, which re-exports it.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp

ArrayLike = jax.typing.ArrayLike

__all__ = ["mcp", "scad", "lq"]

# Jump thresholds of the L_q prox in units of t = step * lam (see `lq`):
# z is zeroed iff |z| <= coefficient * t ** (1 / (2 - q)).
_HALF_THRESHOLD = 1.5                             # q = 1/2: (3/2) t^(2/3)
_TWO_THIRDS_THRESHOLD = (4.0 / 3.0) * 1.5 ** 0.25  # q = 2/3: ~1.4756 t^(3/4)


def _setup(z: ArrayLike, step: ArrayLike):
  """``z``, its dtype, the compute dtype, and ``z`` and ``step`` in it."""
  z = jnp.asarray(z)
  dtype = z.dtype
  # At least float32. Chosen by width, not `jnp.promote_types`, which raises
  # for (bfloat16, float32) under jax_numpy_dtype_promotion='strict'.
  wide = jnp.issubdtype(dtype, jnp.floating) and jnp.finfo(dtype).bits >= 32
  ct = dtype if wide else jnp.dtype(jnp.float32)
  return z, dtype, ct, z.astype(ct), jnp.asarray(step).astype(ct)


def _cast(value: ArrayLike, ct) -> jax.Array:
  return jnp.asarray(value).astype(ct)


def mcp(z: ArrayLike, step: ArrayLike, lam: ArrayLike,
        gamma: ArrayLike) -> jax.Array:
  """Prox of the minimax concave penalty (MCP; Zhang 2010). Not convex.

  The penalty, with ``lam >= 0`` and ``gamma > 0``, is

  .. math::

    P(x) = \\begin{cases}
      \\lambda |x| - \\frac{x^2}{2\\gamma} & |x| \\le \\gamma\\lambda, \\\\
      \\frac{\\gamma \\lambda^2}{2} & |x| > \\gamma\\lambda,
    \\end{cases}

  and ``prox(z) = argmin_x (x - z)^2 / (2 step) + P(x)`` per coordinate.
  ``P`` is concave on each half-line, so this is the global minimizer of a
  non-convex 1-D problem. Writing ``s = step``:

  * ``s < gamma`` (the objective is strongly convex): firm thresholding,
    ``x = 0`` if ``|z| <= s lam``;
    ``x = sign(z) (|z| - s lam) / (1 - s / gamma)`` if
    ``s lam < |z| <= gamma lam``; ``x = z`` if ``|z| > gamma lam``.
  * ``s >= gamma`` (the objective is concave, or linear at ``s = gamma``, on
    ``|x| <= gamma lam``): hard thresholding, ``x = z`` if
    ``|z| > lam sqrt(gamma s)`` and ``0`` otherwise. At
    ``|z| = lam sqrt(gamma s)`` the points 0 and ``z`` tie (for
    ``s = gamma`` the whole segment between them does) and 0 is returned.

  The case is chosen per coordinate, so a per-coordinate step may straddle
  ``gamma``. As ``gamma -> inf`` this tends to the L1 prox; the hard-threshold
  branch is the L0 prox with penalty ``gamma lam^2 / 2``.

  Args:
    z: input array.
    step: scalar, or per-coordinate step of ``z``'s shape; ``>= 0``.
    lam: penalty strength, ``>= 0``.
    gamma: concavity parameter, ``> 0`` (Zhang's default is 3; larger is
      closer to the lasso).

  Returns:
    The prox, of ``z``'s shape and dtype, with exact zeros where
    ``|z| <= step lam`` (``step < gamma``) or ``|z| <= lam sqrt(gamma step)``
    (``step >= gamma``); NaN entries stay NaN.

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_l1 import ops
    >>> z = jnp.array([-0.5, 1.0, 2.0, -4.0])
    >>> ops.mcp(z, step=0.5, lam=1.0, gamma=3.0)  # firm thresholding
    Array([ 0. ,  0.6,  1.8, -4. ], dtype=float32)
    >>> ops.mcp(z, step=3.0, lam=1.0, gamma=3.0)  # hard, keeps |z| > 3
    Array([ 0.,  0.,  0., -4.], dtype=float32)
  """
  z, dtype, ct, zc, s = _setup(z, step)
  lam = _cast(lam, ct)
  gamma = _cast(gamma, ct)
  zero = jnp.zeros((), ct)
  w = jnp.abs(zc)
  firm_case = s < gamma

  # Firm thresholding, written as z minus a correction so that s = 0 gives z
  # exactly: (w - s lam) / (1 - s / gamma) = w - s (gamma lam - w) / (gamma - s).
  denom = jnp.where(firm_case, gamma - s, jnp.ones((), ct))
  # Clamped at 0: just above |z| = s lam round-off could flip the sign.
  middle = jnp.sign(zc) * jnp.maximum(w - s * (gamma * lam - w) / denom, zero)
  firm = jnp.where(w <= s * lam, zero, jnp.where(w <= gamma * lam, middle, zc))

  # `<=` so that NaN fails the zeroing test and stays NaN.
  hard = jnp.where(w <= lam * jnp.sqrt(gamma) * jnp.sqrt(s), zero, zc)
  return jnp.where(firm_case, firm, hard).astype(dtype)


def scad(z: ArrayLike, step: ArrayLike, lam: ArrayLike,
         a: ArrayLike) -> jax.Array:
  """Prox of the smoothly clipped absolute deviation (SCAD; Fan & Li 2001).

  Not convex. The penalty, with ``lam >= 0`` and ``a > 2``, is

  .. math::

    P(x) = \\begin{cases}
      \\lambda |x| & |x| \\le \\lambda, \\\\
      \\frac{2 a \\lambda |x| - x^2 - \\lambda^2}{2 (a - 1)}
        & \\lambda < |x| \\le a\\lambda, \\\\
      \\frac{(a + 1) \\lambda^2}{2} & |x| > a\\lambda,
    \\end{cases}

  and ``prox(z) = argmin_x (x - z)^2 / (2 step) + P(x)`` per coordinate, the
  global minimizer of a non-convex 1-D problem. Writing ``s = step``:

  * ``s < a - 1``: the objective is strongly convex and the prox is
    ``soft(z, s lam)`` if ``|z| <= lam (1 + s)``;
    ``((a - 1) z - sign(z) a s lam) / (a - 1 - s)`` if
    ``lam (1 + s) < |z| <= a lam``; ``z`` if ``|z| > a lam``
    (for ``s = 1`` this is Fan & Li's thresholding rule).
  * ``s >= a - 1``: the objective is concave (linear at ``s = a - 1``) on
    ``lam <= |x| <= a lam``, so its minimum over that piece is at an endpoint,
    and each endpoint is dominated by the minimizer of the neighbouring piece:
    ``u1 = min(max(|z| - s lam, 0), lam)`` on ``|x| <= lam`` and
    ``u3 = max(|z|, a lam)`` on ``|x| >= a lam``. The prox is
    ``sign(z) u3`` if ``g(u3) < g(u1)`` and ``sign(z) u1`` otherwise, where
    ``g(u) = (u - |z|)^2 / 2 + s P(u)`` is the objective times ``s`` (which
    stays finite for a huge step). At a tie the smaller magnitude ``u1`` is
    returned; it is 0 whenever ``|z| <= s lam``.

  The case is chosen per coordinate, so a per-coordinate step may straddle
  ``a - 1``.

  Args:
    z: input array.
    step: scalar, or per-coordinate step of ``z``'s shape; ``>= 0``.
    lam: penalty strength, ``>= 0``.
    a: shape parameter, ``> 2`` (Fan & Li suggest 3.7).

  Returns:
    The prox, of ``z``'s shape and dtype, with exact zeros where the minimizer
    is 0 (``|z| <= step lam`` for ``step < a - 1``); NaN entries stay NaN.

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_l1 import ops
    >>> z = jnp.array([-0.5, 1.5, 3.0, 5.0])
    >>> ops.scad(z, step=1.0, lam=1.0, a=3.7)
    Array([0.       , 0.5      , 2.5882354, 5.       ], dtype=float32)
    >>> ops.scad(z, step=4.0, lam=1.0, a=3.7)  # concave middle piece
    Array([0., 0., 0., 5.], dtype=float32)
  """
  z, dtype, ct, zc, s = _setup(z, step)
  lam = _cast(lam, ct)
  a = _cast(a, ct)
  zero = jnp.zeros((), ct)
  w = jnp.abs(zc)
  sign = jnp.sign(zc)
  convex_case = s < a - 1

  # Convex case. The middle piece is written as z minus a correction so that
  # s = 0 gives z exactly: ((a-1) w - a s lam) / (a-1-s)
  # = w - s (a lam - w) / (a - 1 - s).
  soft = jnp.where(w <= s * lam, zero, sign * (w - s * lam))
  denom = jnp.where(convex_case, a - 1 - s, jnp.ones((), ct))
  middle = sign * (w - s * (a * lam - w) / denom)
  convex = jnp.where(w <= lam * (1 + s), soft,
                     jnp.where(w <= a * lam, middle, zc))

  # Concave case: compare the best points of the two outer pieces.
  # `<=` so that NaN fails the zeroing test and u1 (hence the result) is NaN.
  u1 = jnp.where(w <= s * lam, zero, jnp.minimum(w - s * lam, lam))
  g1 = 0.5 * (u1 - w) ** 2 + s * lam * u1
  u3 = jnp.maximum(w, a * lam)
  # Written piecewise so that an infinite |z| gives g3 finite, not inf - inf.
  g3 = (jnp.where(w >= a * lam, zero, 0.5 * (a * lam - w) ** 2)
        + 0.5 * s * (a + 1) * lam * lam)
  concave = sign * jnp.where(g3 < g1, u3, u1)
  # sign(z) * 0 may be -0.0; make the zeros plain zeros.
  concave = jnp.where(concave == 0, zero, concave)
  return jnp.where(convex_case, convex, concave).astype(dtype)


def _check_q(q: float) -> float:
  """``q`` as 0.5 or 2/3, or a ValueError naming it."""
  # A static real number: not a bool, a string, or a (traced) array.
  if isinstance(q, bool) or not isinstance(q, numbers.Real):
    raise ValueError(f"`lq(q=...)` must be a static Python float, 0.5 or "
                     f"2/3; got {q!r}.")
  value = float(q)
  if math.isfinite(value):
    if abs(value - 0.5) <= 1e-9:
      return 0.5
    if abs(value - 2.0 / 3.0) <= 1e-9:
      return 2.0 / 3.0
  raise ValueError(f"`lq(q=...)` must be 0.5 or 2/3 (the q with closed-form "
                   f"thresholding); got q={q!r}.")


def lq(z: ArrayLike, step: ArrayLike, lam: ArrayLike, q: float) -> jax.Array:
  """Prox of ``R(x) = lam * sum_i |x_i|^q`` for ``q`` in ``{1/2, 2/3}``.

  Not convex: ``prox(z) = argmin_x (x - z)^2 / (2 step) + lam |x|^q`` is the
  global minimizer of a non-convex 1-D problem per coordinate. With
  ``t = step * lam`` it is 0 up to a threshold and jumps there to a nonzero
  stationary point: writing ``w = |z|``, the minimum over ``x != 0`` of
  ``(x - z)^2 / 2 + t |x|^q`` equals ``z^2 / 2`` (the value at 0) exactly at

  .. math::

    w^\\star = (2 - q)\\,\\bigl(2 (1 - q)\\bigr)^{-\\frac{1 - q}{2 - q}}\\,
      t^{\\frac{1}{2 - q}},
    \\qquad |x| = \\bigl(2 t (1 - q)\\bigr)^{\\frac{1}{2 - q}} \\text{ there,}

  i.e. ``(3/2) t^(2/3)`` (jump to ``t^(2/3)``) for ``q = 1/2`` and
  ``(4/3) (3/2)^(1/4) t^(3/4) ~= 1.4756 t^(3/4)`` (jump to
  ``(2t/3)^(3/4)``) for ``q = 2/3``. At ``|z| = w*`` both points are
  minimizers and 0 is returned. Above it ``x = sign(z) u`` with the closed
  forms of the papers below, which minimize ``(x - z)^2 + mu |x|^q``, so
  ``mu = 2 t``:

  * ``q = 1/2`` (half thresholding; Xu, Chang, Xu & Zhang 2012, "L1/2
    regularization: a thresholding representation theory and a fast
    solver", IEEE TNNLS):
    ``u = (2/3) w (1 + cos(2 pi / 3 - (2/3) phi))`` with
    ``phi = arccos((mu / 8) (w / 3)^(-3/2))``; we evaluate the argument as
    ``(3 sqrt(3) / 4) r^(3/2)``, ``r = t^(2/3) / w <= 2/3``.
  * ``q = 2/3`` (Cao, Sun & Xu 2013, "Fast image deconvolution using
    closed-form thresholding formulas of L_q regularization", as used by
    ProxGen, Yun, Lozano & Yang 2021): with ``y = u^(1/3)`` the stationary
    equation is the quartic ``y^4 - w y + mu / 3 = 0`` and
    ``y = (A + sqrt(2 w / A - A^2)) / 2`` where
    ``A^2 = (4/3) sqrt(mu) cosh(phi / 3)``,
    ``phi = arccosh(27 w^2 / (16 mu^(3/2)))`` (the root of Ferrari's
    resolvent cubic). We evaluate ``A^2`` in the overflow-free form
    ``A^2 = w^(2/3) (2/3) (e + r^(4/3) / e)`` with ``r = mu^(3/4) / w``,
    ``e = (27/16)^(1/3) (1 + sqrt(1 - (16 r^2 / 27)^2))^(1/3)``.

  The result is clipped to ``|x| <= |z|`` (exact in real arithmetic) to
  absorb round-off.

  Args:
    z: input array.
    step: scalar, or per-coordinate step of ``z``'s shape; ``>= 0``.
    lam: penalty strength, ``>= 0``.
    q: the exponent, a static Python float: 0.5 or 2/3 (values within 1e-9 of
      either are accepted).

  Returns:
    The prox, of ``z``'s shape and dtype, with exact zeros where
    ``|z| <= w*``; NaN entries stay NaN.

  Raises:
    ValueError: if ``q`` is not (within 1e-9 of) 0.5 or 2/3, or is not a
      static number.

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_l1 import ops
    >>> z = jnp.array([1.4, 1.6, -3.0])
    >>> ops.lq(z, step=1.0, lam=1.0, q=0.5)  # zeroes |z| <= 1.5
    Array([ 0.       ,  1.1295449, -2.6954532], dtype=float32)
    >>> ops.lq(z, step=1.0, lam=1.0, q=2/3)  # zeroes |z| <= 1.4756
    Array([ 0.       ,  0.9127288, -2.5094106], dtype=float32)
  """
  q = _check_q(q)
  z, dtype, ct, zc, s = _setup(z, step)
  t = s * _cast(lam, ct)
  zero = jnp.zeros((), ct)
  one = jnp.ones((), ct)
  w = jnp.abs(zc)
  # Entries that are zeroed, or have t = 0, never use `u`; give the
  # formulas harmless inputs there.
  w_safe = jnp.where(w > 0, w, one)

  if q == 0.5:
    thr = _HALF_THRESHOLD * t ** (2.0 / 3.0)
    r = jnp.minimum(t ** (2.0 / 3.0) / w_safe, 2.0 / 3.0)
    phi = jnp.arccos((0.75 * math.sqrt(3.0)) * r ** 1.5)
    u = w * (2.0 / 3.0) * (1 + jnp.cos(2.0 * math.pi / 3.0 - phi * (2.0 / 3.0)))
  else:
    mu = 2 * t
    thr = _TWO_THIRDS_THRESHOLD * t ** 0.75
    r = jnp.minimum(mu ** 0.75 / w_safe, 1.2)
    inv_x = jnp.minimum((16.0 / 27.0) * r * r, one)  # 1 / arccosh argument
    e = (27.0 / 16.0) ** (1.0 / 3.0) * jnp.cbrt(1 + jnp.sqrt(1 - inv_x * inv_x))
    b = (2.0 / 3.0) * (e + r ** (4.0 / 3.0) / e)  # A^2 / w^(2/3)
    sqrt_b = jnp.sqrt(b)
    eta = 0.5 * (sqrt_b + jnp.sqrt(jnp.maximum(2 / sqrt_b - b, zero)))
    u = w * eta ** 3  # eta = y / w^(1/3)

  nonzero = jnp.where(t == 0, zc, jnp.sign(zc) * jnp.minimum(u, w))
  # `<=` so that NaN fails the zeroing test and stays NaN.
  return jnp.where(w <= thr, zero, nonzero).astype(dtype)
