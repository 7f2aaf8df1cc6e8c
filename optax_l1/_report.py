"""What sparsity did training give? Exact zeros and near-zeros, per leaf."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_l1._tree import path_str


class LeafSparsity(NamedTuple):
  """Counts for one parameter leaf."""

  path: str  # e.g. "Dense_0/kernel"
  size: int  # number of weights
  zeros: int  # weights exactly equal to 0.0
  near_zeros: int  # weights with 0 < |w| < near (not counted in `zeros`)

  @property
  def fraction(self) -> float:
    """Fraction of exact zeros."""
    return self.zeros / self.size if self.size else 0.0


class SparsityReport(NamedTuple):
  """Per-leaf exact zeros and near-zeros; ``str(report)`` is a table."""

  leaves: tuple[LeafSparsity, ...]
  near: float  # the near-zero bound

  @property
  def size(self) -> int:
    return sum(l.size for l in self.leaves)

  @property
  def zeros(self) -> int:
    return sum(l.zeros for l in self.leaves)

  @property
  def near_zeros(self) -> int:
    return sum(l.near_zeros for l in self.leaves)

  @property
  def fraction(self) -> float:
    """Fraction of exact zeros over all counted weights."""
    return self.zeros / self.size if self.size else 0.0

  def __str__(self) -> str:
    rows = [(l.path, l.size, l.zeros, l.fraction, l.near_zeros)
            for l in self.leaves]
    rows.append(("total", self.size, self.zeros, self.fraction,
                 self.near_zeros))
    width = max(len(r[0]) for r in rows)
    head = (f"{'leaf':<{width}}  {'size':>10}  {'exact 0':>10}  {'frac':>7}  "
            f"{f'0<|w|<{self.near:g}':>12}")
    lines = [head, "-" * len(head)]
    for path, size, zeros, frac, near in rows:
      lines.append(f"{path:<{width}}  {size:>10d}  {zeros:>10d}  {frac:>7.1%}  "
                   f"{near:>12d}")
    return "\n".join(lines)


def sparsity_report(params: optax.Params, near: float = 1e-3) -> SparsityReport:
  """Counts exact zeros and near-zeros in each floating-point leaf.

  Exact zeros (``w == 0.0``) are what a proximal step gives; near-zeros
  (``0 < |w| < near``) are what L1 in the loss gives instead, and they are
  counted separately so the two are never confused. Non-float leaves (step
  counters, integer buffers) and ``None`` are skipped. NaNs count as neither.

  Args:
    params: a pytree of arrays.
    near: the near-zero bound, > 0.

  Returns:
    A :class:`SparsityReport`; ``print(report)`` shows a table by leaf path.

  Examples:
    >>> import jax.numpy as jnp, optax_l1
    >>> r = optax_l1.sparsity_report({"w": jnp.array([0.0, 1e-5, 2.0, 0.0])})
    >>> r.zeros, r.near_zeros, r.fraction
    (2, 1, 0.5)
  """
  if not (isinstance(near, (int, float)) and near > 0 and np.isfinite(near)):
    raise ValueError(f"`sparsity_report(near=...)` must be finite and > 0; "
                     f"got {near!r}.")
  rows = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    if leaf is None or not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
      continue
    a = np.asarray(jax.device_get(leaf)).astype(np.float64)
    zeros = int(np.count_nonzero(a == 0))
    near_zeros = int(np.count_nonzero((a != 0) & (np.abs(a) < near)))
    rows.append(LeafSparsity(path_str(path), int(a.size), zeros, near_zeros))
  return SparsityReport(tuple(rows), float(near))


def sparsity(params: optax.Params) -> float:
  """Fraction of floating-point weights in ``params`` that are exactly 0.0.

  Examples:
    >>> import jax.numpy as jnp, optax_l1
    >>> optax_l1.sparsity({"a": jnp.array([0.0, 1.0]), "b": jnp.zeros(2)})
    0.75
  """
  return sparsity_report(params).fraction

