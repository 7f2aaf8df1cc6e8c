"""Regularization paths: warm-started training over decreasing penalties.

As in glmnet and LassoNet, the model is trained at a sequence of decreasing
penalties ``lam_1 > lam_2 > ... > lam_K``, each fit starting from the previous
one's parameters. Large penalties keep few inputs; inputs enter as the penalty
decreases, and the order in which they enter ranks them.
"""

from __future__ import annotations

import re
import time
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

  @property
  def n_kept(self) -> np.ndarray:
    """(K,) int: number of inputs kept at each ``lam``."""
    return self.kept.sum(axis=1)

  @property
  def importance(self) -> np.ndarray:
    """(n_inputs,) float64: the largest ``lam`` at which each input is kept.

    Along a path of decreasing penalties, the inputs that stay in the model at
    the largest penalty matter most. An input never kept has importance 0.
    """
    lam_or_zero = np.where(self.kept, self.lams[:, None], 0.0)
    return lam_or_zero.max(axis=0) if len(self.lams) else np.zeros(
        self.kept.shape[1])

  def ranking(self) -> np.ndarray:
    """Input indices, most important first (ties: lower index first)."""
    return np.argsort(-self.importance, kind="stable")


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
    kernel: Optional[str] = None,
    increasing: bool = False,
    keep_params: bool = False,
    progress: bool = True,
) -> RegularizationPath:
  """Trains over a sequence of ``lams``, each fit warm-started from the last.

  For ``lam`` in ``sorted(lams, reverse=True)`` (glmnet's sparse-to-dense
  order; ``increasing=True`` gives LassoNet's dense-to-sparse order, started
  from a trained dense model): ``params = train_fn(params, lam)``, then
  records ``metric_fn(params)`` and which inputs are kept. An
  input is kept when its row of the input kernel (the leaf ``kernel`` selects)
  has a nonzero entry; for a 1-D kernel (a linear model's weights) when its
  entry is nonzero. ``kept_fn`` replaces that rule.

  Importance of input ``j`` (:attr:`RegularizationPath.importance`) is the
  largest ``lam`` at which it is kept (0 if never), in either order. A
  decreasing path should start at a ``lam`` large enough to remove every
  input (for the lasso with loss ``||y - Xw||^2 / (2n)``, ``lam_max =
  max|X^T y| / n``), as glmnet's does; an increasing one should end there.

  Args:
    train_fn: ``train_fn(params, lam) -> params``: the user's training loop
      at penalty ``lam`` (a fresh optimizer state each call is fine).
    lams: penalties, >= 0 (sorted; duplicates are fitted again).
    params0: the starting point of the first fit.
    metric_fn: optional ``metric_fn(params)``, e.g. validation accuracy.
    kept_fn: optional ``kept_fn(params) -> (n_inputs,) bools``.
    kernel: regex for the path (as :func:`optax_l1.mask_by_path` matches it)
      of the input kernel; the first leaf in tree order that matches. Default:
      ``params`` itself if it is a single array, else ``"kernel"`` (name
      layers so that the input layer's kernel comes first, or pass e.g.
      ``r"^Dense_0/kernel$"``).
    increasing: run the lams from smallest to largest.
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
    ...                                     jnp.zeros(3), progress=False)
    >>> path.lams, path.n_kept, path.importance
    (array([4.  , 2.  , 0.75, 0.25]), array([0, 1, 2, 3]), array([2.  , 0.75, 0.25]))
  """
  lams = np.asarray(lams, np.float64).reshape(-1)
  if lams.size == 0:
    raise ValueError("`regularization_path(lams=...)` is empty.")
  if not np.all(np.isfinite(lams)) or np.any(lams < 0):
    raise ValueError(f"`regularization_path(lams=...)` must be finite and "
                     f">= 0; got {lams}.")
  lams = np.sort(lams) if increasing else np.sort(lams)[::-1].copy()

  def kept_of(params) -> np.ndarray:
    if kept_fn is not None:
      k = np.asarray(jax.device_get(kept_fn(params)))
      if k.dtype != bool or k.ndim != 1:
        raise ValueError(f"`regularization_path`: kept_fn must return a 1-D "
                         f"bool array; got {k.dtype} of shape {k.shape}.")
      return k
    w = np.asarray(jax.device_get(_default_kernel(params, kernel)))
    if w.ndim == 1:
      return w != 0
    return np.any(w.reshape(w.shape[0], -1) != 0, axis=1)

  bar = None
  if progress:
    try:
      from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
      bar = tqdm(total=len(lams), desc="regularization path", leave=False,
                 disable=None)
    except ImportError:
      pass
  params = params0
  metrics, kept, seconds, all_params = [], [], [], []
  try:
    for lam in lams:
      start = time.perf_counter()
      params = train_fn(params, float(lam))
      params = jax.block_until_ready(params)
      seconds.append(time.perf_counter() - start)
      kept.append(kept_of(params))
      metrics.append(None if metric_fn is None else metric_fn(params))
      if keep_params:
        all_params.append(params)
      if bar is not None:
        bar.set_postfix(lam=f"{lam:.3g}", kept=int(kept[-1].sum()))
        bar.update(1)
  finally:
    if bar is not None:
      bar.close()
  return RegularizationPath(lams, metrics, np.stack(kept),
                            np.asarray(seconds), all_params if keep_params
                            else None)


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
  order = result.ranking()
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
