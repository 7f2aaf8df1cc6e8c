"""Argument checks shared by the transformations.

Checks run on concrete values only: a hyperparameter that is a schedule, or a
traced array (under ``optax.inject_hyperparams``), is checked where it is
evaluated, never branched on in Python.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def concrete_float(value: Any) -> float | None:
  """``value`` as a Python float if it is a concrete scalar, else ``None``."""
  if callable(value) or isinstance(value, jax.core.Tracer):
    return None
  try:
    arr = np.asarray(value)
  except Exception:  # pylint: disable=broad-except
    return None
  if arr.ndim != 0:
    return None
  if not (np.issubdtype(arr.dtype, np.floating)
          or np.issubdtype(arr.dtype, np.integer)
          or arr.dtype == np.bool_):
    return None
  return float(arr)


def _check_type(fn: str, name: str, value: Any) -> None:
  if callable(value) or isinstance(value, jax.core.Tracer):
    return
  arr = np.asarray(value) if not isinstance(value, jax.Array) else value
  if isinstance(value, bool) or arr.dtype == np.bool_:
    raise TypeError(f"`{fn}({name}=...)` must be a number or a schedule; "
                    f"got the bool {value!r}.")
  if not (jnp.issubdtype(arr.dtype, jnp.floating)
          or jnp.issubdtype(arr.dtype, jnp.integer)):
    raise TypeError(f"`{fn}({name}=...)` must be a real number or a "
                    f"schedule; got {value!r}.")


def check_nonnegative(fn: str, name: str, value: Any) -> None:
  """Raises if a concrete ``value`` is negative, NaN or infinite."""
  _check_type(fn, name, value)
  v = concrete_float(value)
  if v is None:
    if not callable(value) and np.ndim(value) != 0:
      _check_array_nonnegative(fn, name, value)
    return
  if not math.isfinite(v) or v < 0:
    raise ValueError(f"`{fn}({name}=...)` must be finite and >= 0; got {v!r}.")


def _check_array_nonnegative(fn: str, name: str, value: Any) -> None:
  if isinstance(value, jax.core.Tracer):
    return
  arr = np.asarray(value, dtype=np.float64)
  if not np.all(np.isfinite(arr)) or np.any(arr < 0):
    raise ValueError(f"`{fn}({name}=...)` must be finite and >= 0 "
                     f"everywhere; got {value!r}.")


def check_positive(fn: str, name: str, value: Any) -> None:
  """Raises if a concrete ``value`` is <= 0, NaN or infinite."""
  _check_type(fn, name, value)
  v = concrete_float(value)
  if v is None:
    return
  if not math.isfinite(v) or v <= 0:
    raise ValueError(f"`{fn}({name}=...)` must be finite and > 0; got {v!r}.")


def check_greater(fn: str, name: str, value: Any, bound: float) -> None:
  """Raises if a concrete ``value`` is not finite and > ``bound``."""
  _check_type(fn, name, value)
  v = concrete_float(value)
  if v is None:
    return
  if not math.isfinite(v) or v <= bound:
    raise ValueError(f"`{fn}({name}=...)` must be finite and > {bound}; "
                     f"got {v!r}.")


def check_float_leaf(fn: str, path: str, leaf: Any) -> None:
  """Proximal steps are defined on real floating-point parameters only."""
  dtype = jnp.result_type(leaf)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(f"`{fn}` acts on real floating-point parameters; the leaf "
                    f"at {path} has dtype {dtype}. Leave it out with `mask=`.")
