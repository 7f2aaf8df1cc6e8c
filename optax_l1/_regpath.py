"""Regularization paths: warm-started training over a sequence of penalties.

As in LassoNet, a neural network is trained dense first and then at a
sequence of increasing penalties ``lam_1 < lam_2 < ...`` (dense to sparse),
each fit starting from the previous one's parameters, until no input is
left. Inputs leave one by one; the largest penalty at which an input is
still in the model ranks it. For a convex model (a lasso) the glmnet order,
decreasing from ``lam_max``, gives the same path.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Optional, Union

import jax
import numpy as np
import optax

from optax_l1._export import leaf_path


class RegularizationPath(NamedTuple):
  """Result of :func:`regularization_path`; index ``k`` is ``lams[k]``."""

  lams: np.ndarray  # (K,) float64, in the order fitted
  metrics: list[Any]  # metric_fn(params) after each fit (None without one)
  kept: np.ndarray  # (K, n_inputs) bool: input j kept at lams[k]
  seconds: np.ndarray  # (K,) float64: time of each fit
  params: Optional[list[Any]]  # the params after each fit (keep_params=True)
  # (K, n_inputs) float64: the norm of input j's weights at lams[k] (its
  # kernel row, or norm_fn's value); None when unknown (kept_fn without
  # norm_fn). Breaks ties of importance.
  norms: Optional[np.ndarray] = None
  last_params: Any = None  # the params after the last fit (to extend it)
  increasing: Optional[bool] = None  # the order fitted (None: unknown)

  @property
  def n_kept(self) -> np.ndarray:
    """(K,) int: number of inputs kept at each ``lam``."""
    return self.kept.sum(axis=1)

  @property
  def importance(self) -> np.ndarray:
    """(n_inputs,) float64: the largest ``lam`` at which each input is kept.

    Along a path of increasing penalties (dense to sparse), the inputs that
    stay in the model at the largest penalty matter most. An input never kept
    has importance 0. Inputs that leave between the same two grid points
    share an importance: :meth:`ties` lists them and :meth:`ranking` orders
    them by :attr:`tie_break`.
    """
    if not len(self.lams):
      return np.zeros(self.kept.shape[1])
    lam_or_zero = np.where(self.kept, self.lams[:, None], 0.0)
    return lam_or_zero.max(axis=0)

  @property
  def tie_break(self) -> Optional[np.ndarray]:
    """(n_inputs,) float64: each input's weight norm at the last point it
    survived (the point of its importance; 0 if never kept), or ``None``
    when the path has no norms."""
    if self.norms is None:
      return None
    if not len(self.lams):
      return np.zeros(self.kept.shape[1])
    imp = self.importance
    at = self.kept & (self.lams[:, None] == imp[None, :])
    return np.where(at, self.norms, 0.0).max(axis=0)

  def ties(self) -> list[np.ndarray]:
    """Groups (each sorted, size >= 2) of inputs with the same importance.

    Inputs never kept (importance 0) form a group too when there are
    several. An empty list means the importance alone orders every input.
    """
    imp = self.importance
    values, counts = np.unique(imp, return_counts=True)
    return [np.flatnonzero(imp == v) for v, c in zip(values[::-1],
                                                     counts[::-1]) if c > 1]

  def ranking(self, *, warn: bool = True) -> np.ndarray:
    """Input indices, most important first.

    Ordered by :attr:`importance`; inputs of equal importance by
    :attr:`tie_break` (the larger weight norm at the last point they
    survived first). Only inputs tied on both (for instance several inputs
    never kept, whose norms are all 0) are left in index order, and then a
    warning names them (``warn=False`` silences it).

    Raises:
      ValueError: if every importance is 0 (no input was kept at any point:
        the path is empty and ranks nothing). For a neural network this
        happens when a path starts at a ``lam`` that removes every input;
        run it dense to sparse (``increasing=True``) from a trained model.
    """
    imp = self.importance
    n = imp.shape[0]
    if n and not np.any(imp > 0):
      raise ValueError(
          "RegularizationPath.ranking(): every importance is 0: no input was "
          "kept at any lam of the path, so it ranks nothing (the index order "
          "would be returned by chance). Start where inputs are kept: for a "
          "neural network, train it dense and run the path dense to sparse "
          "(regularization_path(..., increasing=True), the default); from "
          "a random init a large lam removes every input at once and none "
          "comes back.")
    tb = self.tie_break
    second = np.zeros(n) if tb is None else tb
    order = np.lexsort((np.arange(n), -second, -imp))
    if warn:
      unresolved = []
      for group in self.ties():
        keys = second[group]
        values, counts = np.unique(keys, return_counts=True)
        for v, c in zip(values, counts):
          if c > 1:
            unresolved.append(group[keys == v])
      if n > 1 and np.all(imp == imp[0]):
        warnings.warn(
            f"RegularizationPath.ranking(): all {n} inputs have the same "
            f"importance {imp[0]:g}: the path never separated them"
            + (" and they are ordered by their weight norms only" if tb is
               not None else "")
            + ". Extend the path to larger lams (extend_path), or use a finer "
            "grid.", stacklevel=2)
      elif unresolved:
        shown = ", ".join(str(g.tolist()) for g in unresolved[:5])
        more = "" if len(unresolved) <= 5 else f" and {len(unresolved) - 5} more"
        if all(imp[g[0]] == 0 for g in unresolved):
          why = ("were never kept on the path; they are listed last in "
                 "index order, which means nothing. A path that goes on to "
                 "smaller lams ranks them")
        else:
          why = ("are tied in importance and " + (
              "no weight norms were recorded (kept_fn without norm_fn)"
              if tb is None else "their weight norms are equal too")
                 + "; they are listed in index order, which means nothing. "
                 "A finer lam grid separates them")
        warnings.warn(f"RegularizationPath.ranking(): inputs {shown}{more} "
                      f"{why}.", stacklevel=2)
    return order


def _default_kernel(params: optax.Params, pattern: Optional[str]) -> Any:
  if pattern is None:
    if not jax.tree_util.treedef_is_leaf(jax.tree.structure(params)):
      pattern = "kernel"
    else:
      return params
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    if re.search(pattern, leaf_path(path)):
      return leaf
  raise ValueError(f"`regularization_path`: no leaf path matches "
                   f"kernel={pattern!r}; paths: "
                   f"{[leaf_path(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]}.")


def regularization_path(
    train_fn: Callable[[optax.Params, float], optax.Params],
    lams: Sequence[float],
    params0: optax.Params,
    *,
    metric_fn: Optional[Callable[[optax.Params], Any]] = None,
    kept_fn: Optional[Callable[[optax.Params], Any]] = None,
    norm_fn: Optional[Callable[[optax.Params], Any]] = None,
    kernel: Optional[str] = None,
    increasing: bool = True,
    stop_when_empty: bool = True,
    keep_params: bool = False,
    progress: bool = True,
) -> RegularizationPath:
  """Trains over a sequence of ``lams``, each fit warm-started from the last.

  For ``lam`` in ``sorted(lams)`` (dense to sparse, LassoNet's order, the
  default; ``increasing=False`` gives glmnet's sparse-to-dense order):
  ``params = train_fn(params, lam)``, then records ``metric_fn(params)``,
  which inputs are kept and their weight norms. An input is kept when its
  row of the input kernel (the leaf ``kernel`` selects) has a nonzero entry;
  for a 1-D kernel (a linear model's weights) when its entry is nonzero.
  ``kept_fn`` replaces that rule (and ``norm_fn`` the norms).

  **Which order.** For a neural network, go dense to sparse: pass the
  params of a trained dense model (or a first ``lam`` of 0) and increasing
  ``lams``; the path stops after the first fit that keeps no input
  (``stop_when_empty``). The sparse-to-dense order is for convex models
  whose ``lam_max`` is known (for the lasso with loss ``||y - Xw||^2 /
  (2n)``, ``lam_max = max|X^T y| / n``): from a random init, a network at a
  large ``lam`` loses every input in the first fit, its zero first layer is
  a stationary point, and no input comes back at any smaller ``lam``; such a
  path has every importance 0, and :meth:`RegularizationPath.ranking` raises
  instead of returning the index order. A decreasing path that never keeps
  an input warns.

  Importance of input ``j`` (:attr:`RegularizationPath.importance`) is the
  largest ``lam`` at which it is kept (0 if never), in either order. Ties
  (inputs that leave between the same two grid points) are broken by the
  input's weight norm at the last point it survived
  (:attr:`RegularizationPath.tie_break`); :meth:`RegularizationPath.ties`
  lists them. :func:`extend_path` continues a path to more ``lams``.

  Args:
    train_fn: ``train_fn(params, lam) -> params``: the user's training loop
      at penalty ``lam`` (a fresh optimizer state each call is fine).
    lams: penalties, >= 0 (sorted; duplicates are fitted again).
    params0: the starting point of the first fit: a trained dense model
      for the default dense-to-sparse order.
    metric_fn: optional ``metric_fn(params)``, e.g. validation accuracy.
    kept_fn: optional ``kept_fn(params) -> (n_inputs,) bools``.
    norm_fn: optional ``norm_fn(params) -> (n_inputs,) floats``: the weight
      norm of each input, used to break ties. Default: the L2 norm of each
      input's kernel row (none when ``kept_fn`` is given without it).
    kernel: regex for the path (as :func:`optax_l1.mask_by_path` matches it)
      of the input kernel; the first leaf in tree order that matches. Default:
      ``params`` itself if it is a single array, else ``"kernel"`` (name
      layers so that the input layer's kernel comes first, or pass e.g.
      ``r"^Dense_0/kernel$"``).
    increasing: run the lams from smallest to largest (default) or, with
      ``False``, from largest to smallest.
    stop_when_empty: in increasing order, stop after the first fit that keeps
      no input (larger lams would keep none either).
    keep_params: also return the params of every fit.
    progress: show a tqdm bar (when tqdm is installed and stderr is a
      terminal).

  Returns:
    A :class:`RegularizationPath`.

  Examples:
    >>> import jax.numpy as jnp, numpy as np, optax_l1
    >>> z = jnp.array([3.0, -1.0, 0.5])    # min_w |w - z|^2 / 2 + lam |w|_1
    >>> soft = lambda w, lam: jnp.sign(z) * jnp.maximum(jnp.abs(z) - lam, 0)
    >>> path = optax_l1.regularization_path(soft, [0.25, 4.0, 2.0, 0.75],
    ...                                     z, progress=False)
    >>> path.lams, path.n_kept, path.importance
    (array([0.25, 0.75, 2.  , 4.  ]), array([3, 2, 1, 0]), array([2.  , 0.75, 0.25]))
    >>> path.ranking()
    array([0, 1, 2])
  """
  lams = np.asarray(lams, np.float64).reshape(-1)
  if lams.size == 0:
    raise ValueError("`regularization_path(lams=...)` is empty.")
  if not np.all(np.isfinite(lams)) or np.any(lams < 0):
    raise ValueError(f"`regularization_path(lams=...)` must be finite and "
                     f">= 0; got {lams}.")
  if not isinstance(increasing, bool):
    raise TypeError(f"`regularization_path(increasing=...)` must be a bool; "
                    f"got {increasing!r}.")
  lams = np.sort(lams) if increasing else np.sort(lams)[::-1].copy()

  def kept_and_norms(params) -> tuple[np.ndarray, Optional[np.ndarray]]:
    norms = None
    if norm_fn is not None:
      norms = np.asarray(jax.device_get(norm_fn(params)), np.float64)
      if norms.ndim != 1:
        raise ValueError(f"`regularization_path`: norm_fn must return a 1-D "
                         f"array; got shape {norms.shape}.")
    if kept_fn is not None:
      k = np.asarray(jax.device_get(kept_fn(params)))
      if k.dtype != bool or k.ndim != 1:
        raise ValueError(f"`regularization_path`: kept_fn must return a 1-D "
                         f"bool array; got {k.dtype} of shape {k.shape}.")
      return k, norms
    w = np.asarray(jax.device_get(_default_kernel(params, kernel)))
    rows = w.reshape(w.shape[0], -1) if w.ndim > 1 else w.reshape(-1, 1)
    if norms is None:
      norms = np.sqrt(np.sum(np.square(rows.astype(np.float64)), axis=1))
    return np.any(rows != 0, axis=1), norms

  bar = None
  if progress:
    try:
      from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
      bar = tqdm(total=len(lams), desc="regularization path", leave=False,
                 disable=None)
    except ImportError:
      pass
  params = params0
  metrics, kept, norms, seconds, all_params = [], [], [], [], []
  try:
    for lam in lams:
      start = time.perf_counter()
      params = train_fn(params, float(lam))
      params = jax.block_until_ready(params)
      seconds.append(time.perf_counter() - start)
      k, nrm = kept_and_norms(params)
      kept.append(k)
      norms.append(nrm)
      metrics.append(None if metric_fn is None else metric_fn(params))
      if keep_params:
        all_params.append(params)
      if bar is not None:
        bar.set_postfix(lam=f"{lam:.3g}", kept=int(kept[-1].sum()))
        bar.update(1)
      if increasing and stop_when_empty and not k.any():
        break
  finally:
    if bar is not None:
      bar.close()
  lams = lams[:len(kept)]
  kept = np.stack(kept)
  if not increasing and not kept.any():
    warnings.warn(
        "regularization_path: no input was kept at any lam of this "
        "decreasing (sparse to dense) path. For a neural network from a "
        "random init, a large first lam removes every input and none comes "
        "back: train it dense and run the path dense to sparse "
        "(increasing=True, the default).", stacklevel=2)
  has_norms = all(n is not None for n in norms)
  return RegularizationPath(
      lams, metrics, kept, np.asarray(seconds),
      all_params if keep_params else None,
      norms=np.stack(norms) if has_norms else None,
      last_params=params, increasing=increasing)


def extend_path(
    path: RegularizationPath,
    train_fn: Callable[[optax.Params, float], optax.Params],
    lams: Sequence[float],
    **kwargs: Any,
) -> RegularizationPath:
  """Continues ``path`` with more ``lams``, warm-started from its last fit.

  The new ``lams`` go on in the path's order (all above its last ``lam``
  for an increasing path, all below for a decreasing one); ``kwargs`` are
  :func:`regularization_path`'s (pass the same ``metric_fn``, ``kept_fn``,
  ``kernel``). Returns the concatenated path. An increasing path that
  already ends with no input kept is returned as it is.

  Raises:
    ValueError: if ``path`` has no ``last_params`` or order, or ``lams``
      do not continue it.
  """
  if path.last_params is None or path.increasing is None:
    raise ValueError("extend_path(path=...) needs a path made by "
                     "regularization_path (it records last_params and the "
                     "order).")
  if "increasing" in kwargs and kwargs.pop("increasing") != path.increasing:
    raise ValueError("extend_path: `increasing` must be the path's order.")
  new = np.asarray(lams, np.float64).reshape(-1)
  last = float(path.lams[-1])
  if new.size and (np.any(new <= last) if path.increasing
                   else np.any(new >= last)):
    raise ValueError(
        f"extend_path(lams=...) must continue the path "
        f"({'above' if path.increasing else 'below'} its last lam {last:g}); "
        f"got {new}.")
  if path.increasing and not path.kept[-1].any() and kwargs.get(
      "stop_when_empty", True):
    return path
  more = regularization_path(train_fn, new, path.last_params,
                             increasing=path.increasing, **kwargs)
  keep = path.params is not None and more.params is not None
  norms = (np.concatenate([path.norms, more.norms])
           if path.norms is not None and more.norms is not None else None)
  return RegularizationPath(
      np.concatenate([path.lams, more.lams]), path.metrics + more.metrics,
      np.concatenate([path.kept, more.kept]),
      np.concatenate([path.seconds, more.seconds]),
      path.params + more.params if keep else None, norms=norms,
      last_params=more.last_params, increasing=path.increasing)


def plot_path(result: RegularizationPath, path_png: Union[str, Any], *,
              metric_name: str = "metric",
              feature_names: Optional[Sequence[str]] = None,
              highlight: Optional[Sequence[int]] = None,
              title: Optional[str] = None) -> None:
  """Draws inputs kept, the metric, and each input's span along the path.

  Three panels against ``lam`` (log scale, decreasing to the right): the
  number of inputs kept; ``metric_fn``'s value (when scalar); and one line
  per input over the ``lam`` values where it is kept, inputs ordered by
  importance.

  Args:
    result: from :func:`regularization_path`.
    path_png: output file (PNG).
    metric_name: y label of the metric panel.
    feature_names: optional names of the inputs.
    highlight: optional input indices to draw in colour (e.g. the truly
      informative ones); the others are grey.
    title: optional figure title.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  lams = result.lams
  positive = lams > 0
  x = np.where(positive, lams, lams[positive].min() / 10 if positive.any()
               else 1.0)
  n_in = result.kept.shape[1]
  names = (list(feature_names) if feature_names is not None
           else [f"x{j}" for j in range(n_in)])
  hl = set(range(n_in)) if highlight is None else set(int(h) for h in highlight)
  has_metric = all(m is not None and np.ndim(m) == 0 for m in result.metrics)
  ncols = 3 if has_metric else 2
  fig, axes = plt.subplots(1, ncols, figsize=(5 * ncols, 4.2 if n_in <= 30
                                              else 6))
  ax = axes[0]
  ax.step(x, result.n_kept, where="mid", color="tab:blue", marker="o", ms=3)
  ax.set_ylabel("inputs kept")
  if has_metric:
    axm = axes[1]
    axm.plot(x, np.asarray(result.metrics, np.float64), color="tab:green",
             marker="o", ms=3)
    axm.set_ylabel(metric_name)
  axs = axes[-1]
  order = (result.ranking(warn=False) if np.any(result.importance > 0)
           else np.arange(n_in))  # an empty path: nothing to rank
  for rank, j in enumerate(order[::-1]):
    on = result.kept[:, j]
    color = "tab:red" if j in hl else "0.6"
    axs.scatter(x[on], np.full(on.sum(), rank), s=10, color=color)
  axs.set_yticks(range(n_in))
  axs.set_yticklabels([names[j] for j in order[::-1]],
                      fontsize=8 if n_in <= 30 else 5)
  axs.set_ylabel("input (most important on top)")
  for a in axes:
    a.set_xscale("log")
    a.invert_xaxis()
    a.set_xlabel("lam (sparser to the left)")
    a.grid(True, alpha=0.3)
  if title:
    fig.suptitle(title, fontsize=11)
  fig.tight_layout()
  fig.savefig(path_png, dpi=110)
  plt.close(fig)
