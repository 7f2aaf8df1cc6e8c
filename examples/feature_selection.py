"""Feature selection with group lasso on an MLP's input rows (Flax NNX).

The reports this answers: "L1 on the first layer never gives true zeros, no
matter how high lam" (PyTorch, 10 features, only the first 2 informative) and
"parameters reach 1e-3 and stop, I want to select features" (TensorFlow).

In one line, with scikit-learn's conventions (step 0 below):

    from optax_l1.selection import FeatureSelector
    support = FeatureSelector(n_features_to_select=2,
                              task="regression").fit(X, y).support_

The rest of this script does by hand what FeatureSelector does inside, to
show the parts:

The first Dense kernel ``(inputs, hidden)`` carries ``lam * sum_j ||W[j, :]||``
(one group per input row), applied as an exact proximal step in Adam's metric:

    optax_l1.proximal(optax.adam(lr), optax_l1.prox_group_lasso(
        lam, axis=1, mask=optax_l1.mask_by_path(r"^hidden1/kernel$")))

A zero row is an input the network no longer reads. The other kernels carry a
small ridge penalty: without it a ReLU network dodges a first-layer penalty by
shrinking the first layer and growing the next (``relu(c x) = c relu(x)``).

Steps:

0. ``FeatureSelector(n_features_to_select=k, task=...)`` with k the number
   of informative inputs: the whole path and selection in one call.
1. Regularization path, dense to sparse as in LassoNet: a dense fit, then
   increasing lams, each fit warm-started from the last. Inputs drop out one
   by one; the largest lam at which an input survives ranks it.
2. Selection: refit an unpenalized network on the top-k inputs of that
   ranking for k = 1, 2, ... (until the validation score has not improved for
   PATIENCE values of k), and keep the smallest k whose validation score is
   within a tolerance of the best (the penalty's shrinkage biases the path's
   own scores, so they are not used to pick k).
3. ``compact_mlp`` turns the sparsest model of the path into a smaller network
   on its surviving inputs, with the same outputs.

Two problems, each with a 75/25 train/validation split:

* classification: ``make_classification(n_samples=1000, n_features=20,
  n_informative=5, n_redundant=0, n_repeated=0, shuffle=False,
  random_state=0)``; the informative inputs are columns 0-4;
* regression (the PyTorch report's setup): 1000 rows of 10 standard-normal
  features, ``y = 2 sin(2 x0) + x1^2 - 1 + 0.1 noise``; informative: 0, 1.

Training is full-batch (one epoch = one Adam step).

    python examples/feature_selection.py           # full run
    python examples/feature_selection.py --quick   # smoke test
"""

from __future__ import annotations

import functools
import pathlib
import sys
import time
from collections.abc import Sequence
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import optax_l1
from optax_l1.selection import FeatureSelector

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _common  # pylint: disable=g-import-not-at-top,g-bad-import-order

HIDDEN = 64
LR = 1e-2
RIDGE = 1e-2  # on hidden2 and out kernels
FIRST_KERNEL = r"^hidden1/kernel$"
EPOCHS, EPOCHS_QUICK = 300, 150  # full-batch steps per fit
LONG_FIT = 2  # fits from scratch (dense start, refits): LONG_FIT * epochs
PATIENCE = 3
# lam grid (geometric, min to max, number of lams) and selection tolerance
# (validation accuracy for classification, R^2 for regression).
PATH = {"classification": (0.005, 0.5, 12), "regression": (0.01, 1.0, 12)}
N_LAMS_QUICK = 8
TOL = {"classification": 0.01, "regression": 0.01}


def make_problem(name: str) -> dict[str, Any]:
  # pylint: disable=g-import-not-at-top
  from sklearn.datasets import make_classification
  from sklearn.model_selection import train_test_split
  from sklearn.preprocessing import StandardScaler
  if name == "classification":
    X, y = make_classification(n_samples=1000, n_features=20, n_informative=5,
                               n_redundant=0, n_repeated=0, shuffle=False,
                               random_state=0)
    informative = [0, 1, 2, 3, 4]
    strat = y
  else:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1000, 10))
    y = (2 * np.sin(2 * X[:, 0]) + X[:, 1] ** 2 - 1
         + 0.1 * rng.standard_normal(1000))
    informative = [0, 1]
    strat = None
  X_tr, X_va, y_tr, y_va = train_test_split(X, y, test_size=0.25,
                                            random_state=0, stratify=strat)
  scaler = StandardScaler().fit(X_tr)
  ydt = jnp.int32 if name == "classification" else jnp.float32
  return {"name": name, "informative": informative,
          "X_tr": jnp.asarray(scaler.transform(X_tr), jnp.float32),
          "X_va": jnp.asarray(scaler.transform(X_va), jnp.float32),
          "y_tr": jnp.asarray(y_tr, ydt), "y_va": jnp.asarray(y_va, ydt)}


def make_opt(lam):
  # `lam` may be traced: one compiled fit serves every lam of the path.
  return optax_l1.proximal(
      optax.adam(LR),
      optax_l1.prox_group_lasso(lam, axis=1,
                                mask=optax_l1.mask_by_path(FIRST_KERNEL)))


def run(problem: dict[str, Any], epochs: int, n_lams: Optional[int],
        seed: int) -> dict[str, Any]:
  """Path, ranking, top-k refits and compaction for one problem."""
  name = problem["name"]
  classify = name == "classification"
  X_tr, y_tr = problem["X_tr"], problem["y_tr"]
  X_va, y_va = problem["X_va"], problem["y_va"]
  n_in = X_tr.shape[1]
  model = _common.MLP(n_in, HIDDEN, 2 if classify else 1,
                      rngs=nnx.Rngs(seed))
  graphdef, init_params, rest = nnx.split(model, nnx.Param, ...)

  def predict(params, x):
    out = nnx.merge(graphdef, params, rest)(x)
    return out if classify else out[:, 0]

  def loss_fn(params, x, target):
    out = predict(params, x)
    if classify:
      fit = optax.softmax_cross_entropy_with_integer_labels(out, target).mean()
    else:
      fit = 0.5 * jnp.mean((out - target) ** 2)
    ridge = sum(jnp.sum(params[n]["kernel"][...] ** 2)
                for n in ("hidden2", "out"))
    return fit + 0.5 * RIDGE * ridge

  @functools.partial(jax.jit, static_argnames="steps")
  def fit(params, lam, columns, steps):
    """``steps`` full-batch steps at ``lam`` on inputs ``X * columns``."""
    opt = make_opt(lam)
    x = X_tr * columns

    def step(carry, _):
      params, opt_state = carry
      grads = jax.grad(loss_fn)(params, x, y_tr)
      updates, opt_state = opt.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None
    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None,
                                  length=steps)
    return params

  @jax.jit
  def score(params, columns):  # validation accuracy, or R^2
    out = predict(params, X_va * columns)
    if classify:
      return jnp.mean(out.argmax(-1) == y_va)
    return 1 - jnp.mean((out - y_va) ** 2) / jnp.var(y_va)

  # 0. The one-liner.
  start = time.perf_counter()
  k_inf = len(problem["informative"])
  selector = FeatureSelector(n_features_to_select=k_inf, task=name,
                             random_state=seed).fit(np.asarray(X_tr),
                                                    np.asarray(y_tr))
  selector_selected = selector.get_support(indices=True).tolist()
  selector_seconds = time.perf_counter() - start

  every = jnp.ones(n_in, jnp.float32)
  start = time.perf_counter()
  # 1. Dense start, then the dense-to-sparse path.
  dense = fit(init_params, jnp.float32(0.0), every, LONG_FIT * epochs)
  dense_score = float(score(dense, every))
  lam_min, lam_max, n_full = PATH[name]
  lams = np.geomspace(lam_min, lam_max, n_lams or n_full)
  path = optax_l1.regularization_path(
      lambda p, lam: fit(p, jnp.float32(lam), every, epochs), lams, dense,
      metric_fn=lambda p: float(score(p, every)), kernel=FIRST_KERNEL,
      increasing=True, keep_params=True)
  ranking = path.ranking()

  # 2. Refit without the penalty on the top-k inputs, k = 1, 2, ...
  refit = []
  for k in _common.progress(range(1, n_in + 1), f"{name}: top-k refits"):
    columns = np.zeros(n_in, np.float32)
    columns[ranking[:k]] = 1.0
    columns = jnp.asarray(columns)
    refit.append(float(score(fit(init_params, jnp.float32(0.0), columns,
                                 LONG_FIT * epochs), columns)))
    if k - 1 - int(np.argmax(refit)) >= PATIENCE:
      break
  refit = np.asarray(refit)
  k_sel = int(np.flatnonzero(refit >= refit.max() - TOL[name])[0]) + 1
  selected = sorted(ranking[:k_sel].tolist())

  # 3. The sparsest model on the path, rebuilt on its surviving inputs.
  sparsest = path.params[-1]
  small = optax_l1.compact_mlp(_common.layers_of(sparsest), jax.nn.relu)
  small_out = _common.mlp_apply(small.layers, X_va[:, small.inputs])
  small_out = small_out if classify else small_out[:, 0]
  compact_diff = float(jnp.max(jnp.abs(predict(sparsest, X_va) - small_out)))
  return {
      "selector_selected": selector_selected,
      "selector_exact": selector_selected == problem["informative"],
      "selector_seconds": selector_seconds,
      "selector_lams": len(selector.path_.lams),
      "name": name, "informative": problem["informative"], "path": path,
      "dense_score": dense_score, "ranking": ranking.tolist(),
      "top_k_is_informative": sorted(ranking[:k_inf].tolist())
                              == problem["informative"],
      "refit_scores": refit.tolist(), "k_selected": k_sel,
      "selected": selected, "exact": selected == problem["informative"],
      "compact_inputs": small.inputs.tolist(),
      "compact_widths": [len(small.inputs)] + [len(u) for u in small.units],
      "compact_max_diff": compact_diff,
      "epochs": epochs, "seconds": time.perf_counter() - start,
  }


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
  """Runs both problems; returns every number it prints."""
  args = _common.parse(
      argv, __doc__, EPOCHS, EPOCHS_QUICK,
      epochs_help="full-batch steps per fit", seed_help="init seed",
      quick_help=f"{N_LAMS_QUICK} lams and fewer steps, for smoke tests",
      out_help="folder for the PNGs")
  epochs, out = args.epochs, args.out
  n_lams = N_LAMS_QUICK if args.quick else None
  start = time.perf_counter()
  results, files = {}, []
  for name in ("classification", "regression"):
    problem = make_problem(name)
    r = run(problem, epochs, n_lams, args.seed)
    results[name] = r
    p = r["path"]
    metric = "val acc" if name == "classification" else "val R^2"
    n_in = problem["X_tr"].shape[1]
    print(f"\n{name}: {n_in} inputs, informative {r['informative']}; MLP "
          f"{n_in}-{HIDDEN}-{HIDDEN}, group lasso on hidden1's rows under "
          f"proximal(adam({LR:g})), ridge {RIDGE:g} on the other kernels; "
          f"{epochs} full-batch steps per fit ({r['seconds']:.1f} s in all)")
    print(f"  FeatureSelector(n_features_to_select="
          f"{len(r['informative'])}, task={name!r}): inputs "
          f"{r['selector_selected']} "
          f"({'exactly the informative set' if r['selector_exact'] else 'NOT the informative set'}; "
          f"{r['selector_lams']} lams, {r['selector_seconds']:.1f} s)")
    print("  by hand:")
    print(f"  dense start: {metric} {r['dense_score']:.4f}")
    print(f"  {'lam':>8}  {'kept':>4}  {metric:>8}  surviving inputs")
    for lam, kept_row, m in zip(p.lams, p.kept, p.metrics):
      print(f"  {lam:>8.4f}  {kept_row.sum():>4d}  {m:>8.4f}  "
            f"{np.flatnonzero(kept_row).tolist()}")
    print(f"  ranking (largest lam at which each input survives): "
          f"{r['ranking']}; top {len(r['informative'])} = informative: "
          f"{r['top_k_is_informative']}")
    print("  refit on the top-k inputs, " + metric + ": " + ", ".join(
        f"k={k + 1}: {s:.3f}" for k, s in enumerate(r["refit_scores"])))
    print(f"  selected: smallest k within {TOL[name]:g} of the best refit -> "
          f"k={r['k_selected']}, inputs {r['selected']}: "
          f"{'exactly the informative set' if r['exact'] else 'NOT the informative set'}")
    print(f"  compact_mlp on the sparsest path model: inputs "
          f"{r['compact_inputs']}, widths {r['compact_widths']}, max |output "
          f"diff| {r['compact_max_diff']:.1e}")
    png = out / f"feature_selection_{name}.png"
    optax_l1.plot_path(p, png, metric_name=metric,
                       highlight=r["informative"],
                       title=f"{name}: group lasso on the input rows, dense to "
                       f"sparse (informative {r['informative']} in red)")
    files.append(str(png))
  seconds = time.perf_counter() - start
  print(f"\nwrote {', '.join(files)} ({seconds:.1f} s)")
  return {"results": results, "files": files, "seconds": seconds,
          "epochs": epochs}


if __name__ == "__main__":
  main()
