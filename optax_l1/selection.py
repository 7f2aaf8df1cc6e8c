"""Neural feature selection in one line: :class:`FeatureSelector`.

.. code-block:: python

  from optax_l1.selection import FeatureSelector
  X_k = FeatureSelector(n_features_to_select=5).fit_transform(X, y)

A scikit-learn selector (``fit``, ``transform``, ``get_support``,
``support_``, ``ranking_``, ``feature_importances_``, ``path_``) backed by a
Flax MLP trained with ``optax_l1.proximal(optax.adam(lr), ...)``: a group
lasso on the first layer's input rows (or, with ``skip=True``, LassoNet's
skip connection and hierarchical prox), over a warm-started regularization
path that runs itself dense to sparse until no input is left. The path
ranks every input; the first ``n_refine`` of its ranking are then re-ranked
by backward elimination with refits of the unpenalized model.

scikit-learn and flax are optional: ``pip install "optax_l1[examples]"``.
They are imported when :class:`FeatureSelector` is first used, not when
``optax_l1`` is imported.
"""

from __future__ import annotations

import functools
import math
import numbers
import time
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_l1 import _regpath
from optax_l1._hier import prox_hier
from optax_l1._proximal import proximal
from optax_l1._transforms import prox_group_lasso

__all__ = ["FeatureSelector"]

_EXTRA = 'pip install "optax_l1[examples]"'
_FIRST = "hidden_0/kernel"
_SKIP = "skip/kernel"


def _require() -> None:
  missing = []
  for module in ("sklearn", "flax"):
    try:
      __import__(module)
    except ImportError:
      missing.append({"sklearn": "scikit-learn"}.get(module, module))
  if missing:
    raise ImportError(
        f"optax_l1.selection.FeatureSelector needs {' and '.join(missing)}, "
        f"which optax_l1 does not install by default. Install the extra: "
        f"{_EXTRA}")


class _Config(NamedTuple):
  """What the compiled functions depend on (hashable: one compile each)."""

  classification: bool
  n_out: int
  hidden: tuple[int, ...]
  skip: bool
  M: float
  lr: float
  momentum: float
  ridge: float


@functools.lru_cache(maxsize=32)
def _engine(cfg: _Config) -> dict[str, Any]:
  """Model, losses and jitted training / evaluation for one configuration."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top

  class Net(nn.Module):
    """MLP ``d -> hidden... -> n_out`` (ReLU), plus a linear skip."""

    hidden: tuple[int, ...]
    n_out: int
    skip: bool

    @nn.compact
    def __call__(self, x):
      h = x
      for i, units in enumerate(self.hidden):
        h = nn.relu(nn.Dense(units, name=f"hidden_{i}")(h))
      out = nn.Dense(self.n_out, name="out")(h)
      if self.skip:
        out = out + nn.Dense(self.n_out, use_bias=False, name="skip")(x)
      return out

  net = Net(cfg.hidden, cfg.n_out, cfg.skip)
  first = ("hidden_0", "kernel") if cfg.hidden else ("out", "kernel")

  def apply(params, x):
    return net.apply({"params": params}, x)

  def data_loss(params, x, y):
    out = apply(params, x)
    if cfg.classification:
      return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
    return 0.5 * jnp.mean(jnp.sum((out - y) ** 2, axis=-1))

  def loss(params, x, y):
    # Ridge on every kernel but the first layer's (and the skip's): without
    # it a ReLU network dodges a first-layer penalty by shrinking that layer
    # and growing the next (relu(c x) = c relu(x)).
    ridge = sum(jnp.sum(params[name]["kernel"] ** 2) for name in params
                if (name, "kernel") != first and name != "skip")
    return data_loss(params, x, y) + 0.5 * cfg.ridge * ridge

  def first_mask(params):
    return {name: {k: (name, k) == first for k in leaf}
            for name, leaf in params.items()}

  def make_opt(lam):
    if cfg.skip:
      return proximal(
          optax.sgd(cfg.lr, momentum=cfg.momentum or None),
          prox_hier(lam, M=cfg.M, skip=f"^{_SKIP}$",
                    first_layer=f"^{first[0]}/{first[1]}$"))
    return proximal(optax.adam(cfg.lr),
                    prox_group_lasso(lam, axis=1, mask=first_mask))

  def fit(opt, params, opt_state, x, y, steps):
    """``steps`` full-batch steps of ``opt`` on the training objective."""
    def step(_, carry):
      p, s = carry
      updates, s = opt.update(jax.grad(loss)(p, x, y), s, p)
      return optax.apply_updates(p, updates), s
    return jax.lax.fori_loop(0, steps, step, (params, opt_state))

  @jax.jit
  def train(params, opt_state, x, y, lam, steps):
    # `lam` and `steps` are traced: one compiled loop serves the dense fit
    # and every point of the path.
    return fit(make_opt(lam), params, opt_state, x, y, steps)

  def row_norms(params):
    rows = params[first[0]][first[1]]
    n = jnp.sqrt(jnp.sum(rows ** 2, axis=1))
    if cfg.skip:
      n = n + jnp.sqrt(jnp.sum(params["skip"]["kernel"] ** 2, axis=1))
    return n

  def kept(params):
    if cfg.skip:
      return jnp.any(params["skip"]["kernel"] != 0, axis=1)
    return jnp.any(params[first[0]][first[1]] != 0, axis=1)

  @jax.jit
  def evaluate(params, x, y):
    out = apply(params, x)
    if cfg.classification:
      score = jnp.mean(out.argmax(-1) == y)
    else:
      resid = jnp.sum((out - y) ** 2)
      score = 1 - resid / jnp.maximum(jnp.sum((y - y.mean(0)) ** 2), 1e-30)
    return score, kept(params), row_norms(params)

  @jax.jit
  def zero_thresholds(params, x, y):
    """Per input, the smallest lam at which removing it alone is stationary.

    Group lasso: ``||d loss / d W_j||`` at the model with row ``j`` zeroed.
    Hierarchical: ``||d / d theta_j|| + M ||d / d W_j||_1`` there (the
    prox of a zero input stays zero exactly below it).
    """
    d = params[first[0]][first[1]].shape[0]

    def one(j):
      p = jax.tree.map(lambda a: a, params)
      p[first[0]] = dict(p[first[0]])
      p[first[0]][first[1]] = p[first[0]][first[1]].at[j].set(0)
      if cfg.skip:
        p["skip"] = {"kernel": p["skip"]["kernel"].at[j].set(0)}
      g = jax.grad(loss)(p, x, y)
      gw = g[first[0]][first[1]][j]
      if cfg.skip:
        return (jnp.sqrt(jnp.sum(g["skip"]["kernel"][j] ** 2))
                + cfg.M * jnp.sum(jnp.abs(gw)))
      return jnp.sqrt(jnp.sum(gw ** 2))
    return jax.lax.map(one, jnp.arange(d), batch_size=min(d, 16))

  @functools.partial(jax.jit, static_argnames="d")
  def init_jit(key, d, live):
    params = net.init(key, jnp.zeros((1, d), jnp.float32))["params"]
    params = {k: dict(v) for k, v in params.items()}
    # An input constant on the training rows (standardized to 0) can never
    # matter: its first-layer row starts at 0 and, with a gradient of 0,
    # stays there (it is never kept). Left at its random init it would only
    # shrink at the identity metric's rate and look important.
    w = jnp.where(live[:, None], params[first[0]][first[1]], 0)
    params[first[0]][first[1]] = w
    if cfg.skip:
      # Inputs start in the model: a skip weight large enough for the
      # first layer's init (the hierarchy |W_j| <= M |theta_j|).
      need = jnp.max(jnp.abs(w), axis=1, keepdims=True) / cfg.M
      theta = params["skip"]["kernel"]
      theta = jnp.where(jnp.abs(theta) >= need, theta,
                        jnp.where(theta < 0, -need, need))
      params["skip"]["kernel"] = jnp.where(live[:, None], theta, 0)
    return params, make_opt(0.0).init(params)

  def init(seed, live):
    live = jnp.asarray(live)
    return init_jit(jax.random.key(seed), live.shape[0], live)

  @jax.jit
  def refit(params, x, y, masks, steps):
    """For each row of ``masks`` (one 0/1 per column of ``x``), ``steps``
    steps at ``lam = 0`` (a fresh optimizer state) on the inputs it keeps,
    from ``params``; the fitted params and the training objective, stacked.
    ``params``' first layer (and skip) has one row per column of ``x``."""
    # No penalty: the inner optimizer alone (the prox at lam = 0 is the
    # identity for the group lasso; for the hierarchy it would still
    # project onto |W_j| <= M |theta_j|, a constraint a refit does not need).
    opt = (optax.sgd(cfg.lr, momentum=cfg.momentum or None) if cfg.skip
           else optax.adam(cfg.lr))

    def one(mask):
      xm = x * mask
      p, _ = fit(opt, params, opt.init(params), xm, y, steps)
      return p, loss(p, xm, y)
    return jax.vmap(one)(masks)

  return {"train": train, "evaluate": evaluate, "init": init,
          "zero_thresholds": zero_thresholds, "refit": refit,
          "apply": jax.jit(apply)}


# An input set is linearly dependent when the smallest eigenvalue of its
# correlation matrix is below this fraction of the largest. Exact linear
# combinations give about 1e-16 (float64 data, or float64 data stored as
# float32); breast_cancer's 30 strongly correlated measurements give 1e-5.
_DEPENDENT = 1e-9


def _volume_drop(corr: np.ndarray) -> int | None:
  """The input to set aside from a linearly dependent set, or None.

  ``corr``: the inputs' correlation matrix. If it is singular, the members
  of a dependency are the inputs whose removal lowers its nullity (the
  number of eigenvalues below ``_DEPENDENT`` times the largest); the one
  returned leaves the largest volume, the log pseudo-determinant of the
  others' correlation (the product of its eigenvalues above the threshold):
  the same span, and the best conditioned set of inputs spanning it.
  Equal volumes (a symmetric dependency, e.g. two copies of a column): the
  one listed last (lowest on the path) goes.
  """
  ev = np.linalg.eigvalsh(corr)
  tol = _DEPENDENT * max(ev[-1], 1e-300)
  nullity = int(np.sum(ev < tol))
  if not nullity:
    return None
  n = corr.shape[0]
  vol = np.full(n, -np.inf)
  for i in range(n):
    keep = np.delete(np.arange(n), i)
    e = np.linalg.eigvalsh(corr[np.ix_(keep, keep)])
    if np.sum(e < tol) < nullity:
      vol[i] = float(np.sum(np.log(e[e >= tol])))
  return n - 1 - int(np.argmax(vol[::-1]))


def _check_int_tuple(name: str, value: Any) -> tuple[int, ...]:
  if isinstance(value, numbers.Integral) and not isinstance(value, bool):
    value = (int(value),)
  try:
    out = tuple(int(v) for v in value)
    ok = all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
             and v >= 1 for v in value)
  except TypeError:
    ok = False
  if not ok:
    raise ValueError(f"FeatureSelector({name}=...) must be a tuple of "
                     f"positive ints; got {value!r}.")
  return out


def _positive(name: str, value: Any, *, integer: bool = False,
              allow_zero: bool = False) -> None:
  bad = isinstance(value, bool) or not isinstance(value, numbers.Real)
  if integer:
    bad = bad or not isinstance(value, numbers.Integral)
  if not bad:
    bad = not math.isfinite(value) or value < 0 or (value == 0
                                                   and not allow_zero)
  if bad:
    kind = "an int" if integer else "a finite number"
    raise ValueError(f"FeatureSelector({name}=...) must be {kind} "
                     f"{'>= 0' if allow_zero else '> 0'}; got {value!r}.")


def _make_class():
  _require()
  # pylint: disable=g-import-not-at-top
  from sklearn.base import BaseEstimator
  from sklearn.feature_selection import SelectorMixin
  from sklearn.model_selection import train_test_split
  from sklearn.preprocessing import LabelEncoder
  from sklearn.utils.multiclass import type_of_target
  from sklearn.utils.validation import check_is_fitted
  try:
    from sklearn.utils.validation import validate_data
  except ImportError:  # scikit-learn < 1.6
    validate_data = None
  # pylint: enable=g-import-not-at-top

  class FeatureSelector(SelectorMixin, BaseEstimator):
    """Selects inputs with a sparse neural network and a regularization path.

    ``FeatureSelector(n_features_to_select=5).fit(X, y).support_`` trains an
    MLP on ``(X, y)`` with an exact group-lasso proximal step on its first
    layer's input rows (``proximal(optax.adam(lr), prox_group_lasso(lam,
    axis=1))``), dense first, then along increasing ``lam`` (each fit warm
    started from the last) until no input is left; the inputs that stay in
    the model the longest make a short list, which backward elimination
    with refits puts in its final order.

    **1. The path.** ``lam`` starts (``lam_start="auto"``) at half the
    smallest penalty at which removing one input alone is stationary for the
    trained dense model (the norm of the loss gradient of its first-layer
    row, computed with that row set to 0), grows by ``path_multiplier``, and
    stops after the first fit that keeps no input. Input ``j``'s importance
    is ``I_j = max {lam_t : row j is nonzero after the fit at lam_t}`` (0 if
    never); the path order sorts by ``I_j``, inputs that leave at the same
    grid point by their row norm at ``lam = I_j``, never by index.

    **2. The refinement.** The path judges inputs where the model is shrunk
    hardest, and there the group lasso prefers a column that is a cheap
    linear combination of several useful ones (``make_classification``'s
    redundant inputs) and ranks weak useful inputs among noise. So the first
    ``m = min(n_refine, #{j : I_j > 0})`` inputs of the path order, ``S``,
    are re-ranked by the loss of models that are not shrunk. With ``A = S``
    and ``theta`` the dense fit's parameters restricted to ``S``, while
    ``|A| > 1`` one input leaves ``A``:

    * if the standardized training columns of ``A`` are linearly dependent
      (their correlation matrix ``C_A`` has an eigenvalue below ``1e-9``
      times its largest), no fit can tell the members of a dependency apart:
      any of them can go and the span of ``A`` (every model's reach) stays
      the same. The one set aside (``dependent_``) is
      ``argmax_j log pdet C_{A - j}`` over the members (the inputs whose
      removal lowers the nullity of ``C_A``; ``pdet``: the product of the
      eigenvalues above the threshold): the inputs left are the best
      conditioned set spanning the same space. No refit.
    * otherwise, for every ``j`` in ``A``, ``theta_j`` is ``theta`` after
      ``refine_steps`` full-batch steps of the training objective at
      ``lam = 0`` (the loss plus ``ridge``; Adam, or SGD with momentum for
      ``skip=True``, from a fresh state), with input ``j`` masked out. The
      input that leaves is ``argmin_j L(theta_j)``, the one the refit
      misses least (``refit_objective_``), and ``theta = theta_{j*}``.

    The inputs of ``S`` rank in the reverse order of their removal (the last
    one left first); the inputs outside ``S`` follow in path order. The
    ``m - 1`` rounds of ``m`` refits each run batched (``jax.vmap``) in one
    compiled call per round: about 1 s on one CPU thread for ``m = 16`` on
    ``make_classification(2000, 50)``, as long again as the path.
    ``n_refine=0`` ranks by the path alone.

    One consequence of the dependency rule: of a column that is the exact
    sum of two others, the two parts are kept and the sum is set aside,
    which is right for inputs generated as combinations of others
    (``make_classification``'s ``n_redundant``) and wrong when ``y``
    depends on the sum alone and fewer inputs than its parts are asked for
    (the path alone, ``n_refine=0``, keeps the sum).

    With ``skip=True`` the model is LassoNet's: a linear skip connection plus
    the MLP, where input ``j``'s first-layer row may be nonzero only if
    ``||W_j||_inf <= M ||theta_j||`` (its skip weight), with the exact
    hierarchical prox (:func:`optax_l1._hier.prox_hier`). Its optimizer is
    ``proximal(optax.sgd(lr, momentum), ...)``, as in LassoNet: the
    hierarchical prox is exact for a step that is one number per input's
    skip weights, which Adam's metric is not when there are several outputs.

    Inputs are standardized internally (mean 0, standard deviation 1 on the
    training data; constant inputs are never kept); a regression target is
    standardized too. Training is full batch.

    Parameters:
      n_features_to_select: int >= 1 (the top of the ranking), a float in
        (0, 1) (that fraction of the inputs, at least 1), or None: the path
        point with the best validation score, or the sparsest one within
        ``tol`` of it.
      task: ``"classification"`` (softmax cross-entropy, accuracy) or
        ``"regression"`` (squared error, R^2); one or more targets.
      hidden: hidden layer widths of the MLP (``()``: a linear model).
      skip: LassoNet's skip connection and hierarchical prox.
      M: LassoNet's hierarchy multiplier (``skip=True`` only).
      learning_rate: the optimizer's (Adam's; SGD's with ``skip=True``).
      momentum: SGD's momentum (``skip=True`` only).
      dense_steps: full-batch steps of the dense fit (``lam = 0``).
      path_steps: full-batch steps at each ``lam`` of the path.
      path_multiplier: ratio of consecutive ``lam`` values, > 1.
      lam_start: ``"auto"`` or the first ``lam`` (> 0).
      max_lams: most ``lam`` values fitted; a path that still keeps inputs
        then warns.
      ridge: L2 penalty on the kernels after the first layer.
      n_refine: how many of the path's top inputs the backward elimination
        re-ranks (0: none, the path order alone).
      refine_steps: full-batch steps of each refit of the elimination.
      validation_fraction: share of the rows held out to score each path
        point (``path_.metrics``) and choose ``n_features_to_select=None``;
        0 scores on the training rows.
      tol: tolerance of that choice (accuracy, or R^2).
      random_state: int seed of the initialization and the validation split.
      verbose: 0 silent; 1 prints a line every 16 points of the path.

    Attributes:
      n_features_in_: number of inputs.
      feature_names_in_: input names (when ``X`` has string column names).
      support_: ``(n_features_in_,)`` bool: the selected inputs.
      n_features_: number selected.
      ranking_: ``(n_features_in_,)`` int: 1 for the most important input, 2 for
        the next, ... (a strict order: RFE gives every selected input rank
        1; here the selected ones are ranks 1 to ``n_features_``): the
        refined order of ``shortlist_``, then the path order.
      feature_importances_: ``(n_features_in_,)`` float: the largest ``lam`` at
        which each input is kept (0: never kept): the path's importance,
        which orders the inputs outside ``shortlist_``.
      tie_break_: the weight norm at the last point each input survived,
        which orders inputs of equal importance on the path.
      ties_: list of groups of inputs with equal path importance (ordered by
        ``tie_break_``).
      shortlist_: the inputs the elimination re-ranked, most important
        first (the path's first ``n_refine`` inputs kept at some ``lam``).
      dependent_: those of them set aside as members of an exact linear
        dependency (or constant on the training rows), in the order set
        aside (they rank last in the short
        list, the first one set aside last).
      refit_objective_: for each input of ``shortlist_``, the training
        objective of the refit without it, in the round it left (NaN for
        the first input, which never leaves, and for ``dependent_``).
      path_: the :class:`optax_l1.RegularizationPath`: ``lams``, ``kept``
        (inputs kept at each point), ``metrics`` (validation score at each
        point), ``norms``.
      lam_start_: the first ``lam`` of the path.
      dense_score_: validation score of the dense model.
      classes_: the class labels (classification).
      fit_seconds_: wall time of ``fit``.
    """

    def __init__(self, n_features_to_select=None, *, task="classification",
                 hidden=(64,), skip=False, M=10.0, learning_rate=1e-3,
                 momentum=0.9, dense_steps=1000, path_steps=100,
                 path_multiplier=1.1, lam_start="auto", max_lams=500,
                 ridge=0.1, n_refine=16, refine_steps=50,
                 validation_fraction=0.1, tol=0.01, random_state=0,
                 verbose=0):
      self.n_features_to_select = n_features_to_select
      self.task = task
      self.hidden = hidden
      self.skip = skip
      self.M = M
      self.learning_rate = learning_rate
      self.momentum = momentum
      self.dense_steps = dense_steps
      self.path_steps = path_steps
      self.path_multiplier = path_multiplier
      self.lam_start = lam_start
      self.max_lams = max_lams
      self.ridge = ridge
      self.n_refine = n_refine
      self.refine_steps = refine_steps
      self.validation_fraction = validation_fraction
      self.tol = tol
      self.random_state = random_state
      self.verbose = verbose

    # -- scikit-learn plumbing ---------------------------------------------

    def __sklearn_tags__(self):
      tags = super().__sklearn_tags__()
      tags.target_tags.required = True
      return tags

    def _more_tags(self):  # scikit-learn < 1.6
      return {"requires_y": True}

    def _validate_fit(self, X, y):
      kw = dict(dtype=np.float64, multi_output=True,
                y_numeric=self.task == "regression")
      if validate_data is not None:
        return validate_data(self, X, y, reset=True, **kw)
      if y is None:  # scikit-learn < 1.6 checks this in _validate_data only
        raise ValueError(f"This {type(self).__name__} estimator requires y to "
                         "be passed, but the target y is None.")
      return self._validate_data(X, y, reset=True, **kw)

    def _get_support_mask(self):
      check_is_fitted(self, "support_")
      return self.support_

    # -- the work ------------------------------------------------------------

    def _check_params(self, n_features):
      if self.task not in ("classification", "regression"):
        raise ValueError("FeatureSelector(task=...) must be "
                         f"'classification' or 'regression'; got "
                         f"{self.task!r}.")
      hidden = _check_int_tuple("hidden", self.hidden) if self.hidden != () \
          else ()
      if not isinstance(self.skip, (bool, np.bool_)):
        raise ValueError(f"FeatureSelector(skip=...) must be a bool; got "
                         f"{self.skip!r}.")
      if self.skip and not hidden:
        raise ValueError("FeatureSelector(skip=True) needs a hidden layer "
                         "(hidden=(64,), ...); got hidden=().")
      _positive("M", self.M)
      _positive("learning_rate", self.learning_rate)
      _positive("momentum", self.momentum, allow_zero=True)
      if self.momentum >= 1:
        raise ValueError(f"FeatureSelector(momentum=...) must be < 1; got "
                         f"{self.momentum!r}.")
      _positive("dense_steps", self.dense_steps, integer=True,
                allow_zero=True)
      _positive("path_steps", self.path_steps, integer=True)
      _positive("max_lams", self.max_lams, integer=True)
      _positive("ridge", self.ridge, allow_zero=True)
      _positive("n_refine", self.n_refine, integer=True, allow_zero=True)
      _positive("refine_steps", self.refine_steps, integer=True)
      _positive("tol", self.tol, allow_zero=True)
      _positive("path_multiplier", self.path_multiplier)
      if self.path_multiplier <= 1:
        raise ValueError(f"FeatureSelector(path_multiplier=...) must be > 1; "
                         f"got {self.path_multiplier!r}.")
      if not (isinstance(self.lam_start, str) and self.lam_start == "auto"):
        _positive("lam_start", self.lam_start)
      vf = self.validation_fraction
      if (isinstance(vf, bool) or not isinstance(vf, numbers.Real)
          or not 0 <= vf < 1):
        raise ValueError(f"FeatureSelector(validation_fraction=...) must be "
                         f"in [0, 1); got {vf!r}.")
      if not isinstance(self.random_state, (numbers.Integral, type(None))) \
          or isinstance(self.random_state, bool):
        raise ValueError(f"FeatureSelector(random_state=...) must be an int "
                         f"or None; got {self.random_state!r}.")
      k = self.n_features_to_select
      if k is not None:
        if isinstance(k, bool) or not isinstance(k, numbers.Real):
          raise ValueError(f"FeatureSelector(n_features_to_select=...) must "
                           f"be None, an int >= 1 or a float in (0, 1); got "
                           f"{k!r}.")
        if isinstance(k, numbers.Integral):
          if not 1 <= k <= n_features:
            raise ValueError(
                f"FeatureSelector(n_features_to_select={k!r}) must be "
                f"between 1 and the number of inputs, {n_features}.")
        elif not 0 < k < 1:
          raise ValueError(f"FeatureSelector(n_features_to_select={k!r}): a "
                           "float must be in (0, 1).")
      return hidden

    def fit(self, X, y):
      """Runs the path on ``(X, y)`` and selects the inputs.

      Args:
        X: (n_samples, n_features) array-like of numbers.
        y: (n_samples,) labels (classification), or (n_samples,) /
          (n_samples, n_targets) numbers (regression).

      Returns:
        self.
      """
      start = time.perf_counter()
      X, y = self._validate_fit(X, y)
      n, d = X.shape
      hidden = self._check_params(d)
      classification = self.task == "classification"
      seed = 0 if self.random_state is None else int(self.random_state)
      if classification:
        kind = type_of_target(y, input_name="y")
        if kind == "unknown":
          raise ValueError(f"Unknown label type: y of dtype {y.dtype} holds "
                           "no class labels FeatureSelector can read.")
        if kind not in ("binary", "multiclass"):
          raise ValueError(f"FeatureSelector(task='classification') needs "
                           f"class labels; y is {kind!r}. Use "
                           "task='regression' for a continuous target.")
        enc = LabelEncoder().fit(y)
        self.classes_ = enc.classes_
        if len(self.classes_) < 2:
          raise ValueError("FeatureSelector(task='classification') needs at "
                           f"least 2 classes; got 1 class.")
        target = enc.transform(y).astype(np.int32)
        n_out = len(self.classes_)
      else:
        target = np.asarray(y, np.float64)
        if target.ndim == 1:
          target = target[:, None]
        mu, sd = target.mean(0), target.std(0)
        if not np.any(sd > 0):
          raise ValueError("FeatureSelector(task='regression'): y is "
                           "constant, so no input can explain it.")
        target = ((target - mu) / np.where(sd > 0, sd, 1.0)).astype(np.float32)
        n_out = target.shape[1]
      mean, std = X.mean(0), X.std(0)
      Xs = ((X - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)

      idx_tr, idx_va = np.arange(n), np.arange(n)
      if self.validation_fraction > 0:
        n_va = int(round(self.validation_fraction * n))
        if 1 <= n_va <= n - 2:
          strat = target if classification else None
          try:
            idx_tr, idx_va = train_test_split(
                np.arange(n), test_size=n_va, random_state=seed,
                stratify=strat)
          except ValueError:  # a class too small to stratify
            idx_tr, idx_va = train_test_split(
                np.arange(n), test_size=n_va, random_state=seed)
      x_tr, y_tr = jnp.asarray(Xs[idx_tr]), jnp.asarray(target[idx_tr])
      x_va, y_va = jnp.asarray(Xs[idx_va]), jnp.asarray(target[idx_va])

      cfg = _Config(classification, n_out, hidden, bool(self.skip),
                    float(self.M), float(self.learning_rate),
                    float(self.momentum) if self.skip else 0.0,
                    float(self.ridge))
      eng = _engine(cfg)
      params, opt_state = eng["init"](seed, Xs[idx_tr].std(0) > 0)
      if self.dense_steps:
        params, opt_state = eng["train"](params, opt_state, x_tr, y_tr,
                                         jnp.float32(0.0),
                                         jnp.int32(self.dense_steps))
      self.dense_score_ = float(eng["evaluate"](params, x_va, y_va)[0])
      dense_params = params

      if isinstance(self.lam_start, str):
        g = np.asarray(eng["zero_thresholds"](params, x_tr, y_tr),
                       np.float64)
        positive = g[g > 1e-6 * max(g.max(initial=0.0), 1e-30)]
        if not positive.size:
          raise ValueError(
              "FeatureSelector: the dense model's loss does not depend on any "
              "input (every first-layer gradient is 0), so no path can rank "
              "them. Check that X varies and y is not constant.")
        lam0 = 0.5 * float(positive.min())
      else:
        lam0 = float(self.lam_start)
      self.lam_start_ = lam0

      state = {"opt": opt_state}

      def train_fn(p, lam):
        p, state["opt"] = eng["train"](p, state["opt"], x_tr, y_tr,
                                       jnp.float32(lam),
                                       jnp.int32(self.path_steps))
        return p

      def metric_fn(p):
        return float(eng["evaluate"](p, x_va, y_va)[0])

      def kept_fn(p):
        return np.asarray(eng["evaluate"](p, x_va, y_va)[1])

      def norm_fn(p):
        return np.asarray(eng["evaluate"](p, x_va, y_va)[2])

      kw = dict(metric_fn=metric_fn, kept_fn=kept_fn, norm_fn=norm_fn,
                progress=False)
      chunk = 16
      mult = float(self.path_multiplier)
      grid = lambda i0, i1: lam0 * mult ** np.arange(i0, i1, dtype=np.float64)
      path = _regpath.regularization_path(
          train_fn, grid(0, min(chunk, self.max_lams)), params, **kw)
      while path.kept[-1].any() and len(path.lams) < self.max_lams:
        done = len(path.lams)
        path = _regpath.extend_path(
            path, train_fn, grid(done, min(done + chunk, self.max_lams)),
            **kw)
        if self.verbose:
          print(f"FeatureSelector: lam {path.lams[-1]:.4g}, "
                f"{int(path.n_kept[-1])} inputs kept, validation score "
                f"{path.metrics[-1]:.4f}")
      if path.kept[-1].any():
        warnings.warn(
            f"FeatureSelector: after max_lams={self.max_lams} values of lam "
            f"(up to {path.lams[-1]:.4g}) {int(path.n_kept[-1])} inputs are "
            "still kept; their order is by weight norm only. Raise max_lams "
            "or path_multiplier.", stacklevel=2)
      self.path_ = path._replace(last_params=None)
      order = self._path_order(path)
      self._refine(eng, dense_params, X[idx_tr], x_tr, y_tr, order,
                   path.importance)
      self._select(path)
      self.fit_seconds_ = time.perf_counter() - start
      return self

    def _path_order(self, path):
      if not np.any(path.importance > 0):
        raise ValueError(
            "FeatureSelector: no input was kept at any point of the path, so "
            "nothing can be ranked (the dense fit removed every input). "
            "Lower lam_start or raise dense_steps.")
      return path.ranking(warn=False)

    def _refine(self, eng, dense_params, x64, x_tr, y_tr, order, imp):
      """Backward elimination on the path's first ``n_refine`` inputs.

      Sets ``_order`` (every input, most important first), ``shortlist_``
      (the inputs it re-ranked, in their new order), ``dependent_`` and
      ``refit_objective_``.
      """
      m = min(int(self.n_refine), int(np.sum(imp > 0)))
      self.dependent_ = np.zeros(0, np.int64)
      self.refit_objective_ = np.zeros(0)
      if m < 2:
        self.shortlist_ = order[:m].copy()
        self._order = order
        return
      short = order[:m]
      first = "hidden_0" if self.hidden else "out"
      params = {name: dict(leaf) for name, leaf in dense_params.items()}
      params[first]["kernel"] = params[first]["kernel"][short]
      if self.skip:
        params["skip"]["kernel"] = params["skip"]["kernel"][short]
      xs = x_tr[:, short]
      # A column constant on the training rows is the bias's twin: set
      # aside first, and kept out of the correlations (0/0).
      constant = ~(np.std(x64[:, short], axis=0) > 0)
      with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.corrcoef(x64[:, short], rowvar=False)
      active = np.ones(m, bool)
      removed, objective, dependent = [], [], []
      steps = jnp.int32(self.refine_steps)
      while active.sum() > 1:
        live = np.flatnonzero(active)
        if np.any(constant[live]):
          drop = int(np.flatnonzero(constant[live])[-1])
        else:
          drop = _volume_drop(corr[np.ix_(live, live)])
        if drop is not None:
          # Dependent: no refit can tell these inputs apart (any member can
          # go without changing the span); keep the best conditioned set.
          j = int(live[drop])
          dependent.append(short[j])
          objective.append(np.nan)
        else:
          masks = np.tile(active.astype(np.float32), (m, 1))
          masks[np.arange(m), np.arange(m)] = 0
          fitted, obj = eng["refit"](params, xs, y_tr, jnp.asarray(masks),
                                     steps)
          obj = np.asarray(obj, np.float64)
          # A refit that diverged (NaN) is the worst, not the best.
          obj = np.where(np.isnan(obj), np.finfo(np.float64).max, obj)
          j = int(np.argmin(np.where(active, obj, np.inf)))
          objective.append(float(obj[j]))
          params = jax.tree.map(lambda a, j=j: a[j], fitted)
        active[j] = False
        removed.append(j)
      removed.append(int(np.flatnonzero(active)[0]))
      new = short[np.asarray(removed[::-1])]
      self.shortlist_ = new
      self.dependent_ = np.asarray(dependent, np.int64)
      # Objective after each removal, in the shortlist's new order (the
      # first input is never removed: NaN; an input set aside as dependent:
      # NaN).
      self.refit_objective_ = np.asarray([np.nan] + objective[::-1])
      self._order = np.concatenate([new, order[m:]])
      if self.verbose:
        print(f"FeatureSelector: refined order of the path's first {m} "
              f"inputs: {new.tolist()}"
              + (f" ({self.dependent_.tolist()} set aside as linearly "
                 "dependent)" if len(dependent) else ""))

    def _select(self, path):
      d = path.kept.shape[1]
      imp = path.importance
      order = self._order
      rank = np.empty(d, np.int64)
      rank[order] = np.arange(1, d + 1)
      self.feature_importances_ = imp
      self.tie_break_ = path.tie_break
      porder = path.ranking(warn=False)
      prank = np.empty(d, np.int64)
      prank[porder] = np.arange(d)
      self.ties_ = [g[np.argsort(prank[g])] for g in path.ties()]
      self.ranking_ = rank
      k = self.n_features_to_select
      if k is None:
        scores = np.asarray(path.metrics, np.float64)
        n_kept = path.n_kept
        valid = (n_kept > 0) & np.isfinite(scores)
        if not valid.any():
          raise ValueError("FeatureSelector(n_features_to_select=None): no "
                           "point of the path with inputs kept has a finite "
                           "validation score; give n_features_to_select.")
        ok = valid & (scores >= scores[valid].max() - self.tol)
        k = int(n_kept[ok].min())
      elif isinstance(k, numbers.Integral):
        k = int(k)
      else:
        k = max(1, int(k * d))
      # Is the cut between rank k and k + 1 decided by the path? (Inside
      # the shortlist the elimination decides it.)
      if len(self.shortlist_) <= k < d:
        a, b = porder[k - 1], porder[k]
        tb = path.tie_break
        if imp[a] == imp[b] and (tb is None or tb[a] == tb[b]):
          warnings.warn(
              f"FeatureSelector: inputs {int(a)} and {int(b)} (the path's "
              f"ranks {k} and {k + 1}) are tied in importance and weight norm"
              + (" (neither was ever kept)" if imp[a] == 0 else "")
              + f"; the choice of the {k}th input between them is by index. "
              "Use a smaller path_multiplier.", stacklevel=3)
      support = np.zeros(d, bool)
      support[order[:k]] = True
      self.support_ = support
      self.n_features_ = k

  FeatureSelector.__module__ = __name__
  FeatureSelector.__qualname__ = "FeatureSelector"
  return FeatureSelector


@functools.lru_cache(maxsize=None)
def _feature_selector_class():
  return _make_class()


def __getattr__(name: str) -> Any:
  if name == "FeatureSelector":
    return _feature_selector_class()
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
