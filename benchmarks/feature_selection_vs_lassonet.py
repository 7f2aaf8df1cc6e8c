"""FeatureSelector vs LassoNet: selection quality and path wall time.

A benchmark, not a test. On four data sets that ship with scikit-learn
(``load_digits``, ``load_breast_cancer``, ``load_wine`` and
``make_classification(2000, 50, n_informative=5, random_state=0)``), for
each of ``--splits`` stratified 75/25 train/test splits (``random_state`` =
the split index; features standardized with the training rows' mean and
std):

* **LassoNet** (``pip`` package ``lassonet``, the reference implementation):
  ``LassoNetClassifier(hidden_dims=(64,), verbose=0, random_state=split,
  torch_seed=split)``, its defaults otherwise (M = 10, path multiplier 1.02,
  Adam dense fit, SGD path with early stopping, 10% validation),
  ``.path(X_train, y_train)``; the top k inputs by ``feature_importances_``
  (the lam at which each input leaves).
* **optax_l1**: ``FeatureSelector(random_state=split).fit(X_train,
  y_train)`` with its defaults (the path, then backward elimination with
  refits on its first 16 inputs); the top k inputs by ``ranking_``
  (``FeatureSelector(n_features_to_select=k)`` selects exactly these:
  neither the path nor the elimination depends on k).

Both run their path once per split (the time of that call, compilation
included for optax_l1, and its elimination too, is the "path" time). The same judge scores every
selection: ``MLPClassifier(hidden_layer_sizes=(64,), max_iter=1000,
random_state=split)`` trained on the k selected training columns, accuracy
on the test rows. k = 5, 10, 20 where k < the number of inputs.

Both libraries run on one CPU thread (``torch.set_num_threads(1)``; XLA's
CPU client with ``--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1``), so the times compare the libraries, not
their use of the machine's cores; the load average is recorded at the start
and the end.

Outputs (``--out PREFIX``, default
``benchmarks/results/feature_selection_vs_lassonet``): ``PREFIX.json``
(every split's selections, accuracies and times, the machine, the command)
and ``PREFIX.md`` (the tables).

Needs torch and lassonet, which the test suite does not::

  pip install torch==2.13.0          # a CPU wheel
  pip install lassonet==0.0.21 --no-deps && pip install sortedcontainers
  PYTHONPATH=. python benchmarks/feature_selection_vs_lassonet.py
  PYTHONPATH=. python benchmarks/feature_selection_vs_lassonet.py --quick --out /tmp/q
"""

from __future__ import annotations

import os

# One CPU thread for XLA, set before jax is imported.
os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

# pylint: disable=g-import-not-at-top,wrong-import-position
import argparse
import json
import pathlib
import shlex
import sys
import time
import warnings
from typing import Any, Optional, Sequence

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE)]
import _machine  # pylint: disable=g-bad-import-order

OUT = "benchmarks/results/feature_selection_vs_lassonet"
KS = (5, 10, 20)
DATASETS = ("digits", "breast_cancer", "wine", "make_classification")


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
  from sklearn import datasets
  if name == "digits":
    return datasets.load_digits(return_X_y=True)
  if name == "breast_cancer":
    return datasets.load_breast_cancer(return_X_y=True)
  if name == "wine":
    return datasets.load_wine(return_X_y=True)
  if name == "make_classification":
    return datasets.make_classification(2000, 50, n_informative=5,
                                        random_state=0)
  raise ValueError(name)


def judge(X_tr, y_tr, X_te, y_te, cols, seed) -> float:
  from sklearn.exceptions import ConvergenceWarning
  from sklearn.neural_network import MLPClassifier
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=1000,
                        random_state=seed).fit(X_tr[:, cols], y_tr)
  return float(clf.score(X_te[:, cols], y_te))


def run_lassonet(X_tr, y_tr, seed) -> tuple[np.ndarray, float, int]:
  """Order of inputs (most important first), path seconds, lams."""
  from lassonet import LassoNetClassifier
  model = LassoNetClassifier(hidden_dims=(64,), verbose=0, random_state=seed,
                             torch_seed=seed)
  start = time.perf_counter()
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    path = model.path(X_tr, y_tr, return_state_dicts=False)
  seconds = time.perf_counter() - start
  imp = model.feature_importances_.numpy()
  # Ties (inputs that leave at the same lam) in index order: LassoNet's.
  return np.argsort(-imp, kind="stable"), seconds, len(path)


def run_optax_l1(X_tr, y_tr, seed) -> tuple[np.ndarray, float, int, Any]:
  from optax_l1.selection import FeatureSelector
  start = time.perf_counter()
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    sel = FeatureSelector(random_state=seed).fit(X_tr, y_tr)
  seconds = time.perf_counter() - start
  return np.argsort(sel.ranking_), seconds, len(sel.path_.lams), sel


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--splits", type=int, default=3)
  parser.add_argument("--datasets", default=",".join(DATASETS))
  parser.add_argument("--quick", action="store_true",
                      help="one split of wine only (smoke run)")
  parser.add_argument("--out", default=OUT)
  args = parser.parse_args(argv)
  names = args.datasets.split(",")
  splits = args.splits
  if args.quick:
    names, splits = ["wine"], 1
  command = "PYTHONPATH=. python benchmarks/feature_selection_vs_lassonet.py" \
      + ("" if argv is None and len(sys.argv) == 1 else " " + " ".join(
          shlex.quote(a) for a in (argv if argv is not None else
                                   sys.argv[1:])))
  import torch
  torch.set_num_threads(1)
  from sklearn.model_selection import train_test_split
  from sklearn.preprocessing import StandardScaler
  info = _machine.machine_info(command)
  info["torch"] = torch.__version__
  info["torch_threads"] = torch.get_num_threads()
  from importlib import metadata
  info["lassonet"] = metadata.version("lassonet")
  start_all = time.perf_counter()
  results: dict[str, Any] = {}
  for name in names:
    X, y = load(name)
    ks = [k for k in KS if k < X.shape[1]]
    rows = []
    for split in range(splits):
      X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25,
                                                stratify=y,
                                                random_state=split)
      scaler = StandardScaler().fit(X_tr)
      X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
      ln_order, ln_s, ln_lams = run_lassonet(X_tr, y_tr, split)
      ox_order, ox_s, ox_lams, sel = run_optax_l1(X_tr, y_tr, split)
      row = {"split": split, "lassonet_seconds": ln_s,
             "optax_l1_seconds": ox_s, "lassonet_lams": ln_lams,
             "optax_l1_lams": ox_lams,
             "optax_l1_ties_broken_by_norm": sum(len(g) for g in sel.ties_),
             "lassonet": {}, "optax_l1": {}}
      for k in ks:
        for key, order in (("lassonet", ln_order), ("optax_l1", ox_order)):
          cols = np.sort(order[:k])
          row[key][str(k)] = {"inputs": cols.tolist(),
                              "accuracy": judge(X_tr, y_tr, X_te, y_te,
                                                cols, split)}
      rows.append(row)
      print(f"{name} split {split}: lassonet {ln_s:.1f} s ({ln_lams} lams) "
            + " ".join(f"k={k}: {row['lassonet'][str(k)]['accuracy']:.3f}"
                       for k in ks)
            + f" | optax_l1 {ox_s:.1f} s ({ox_lams} lams) "
            + " ".join(f"k={k}: {row['optax_l1'][str(k)]['accuracy']:.3f}"
                       for k in ks), flush=True)
    mean = lambda key, k: float(np.mean([r[key][str(k)]["accuracy"]
                                         for r in rows]))
    results[name] = {
        "n_samples": int(X.shape[0]), "n_features": int(X.shape[1]),
        "ks": ks, "splits": rows,
        "accuracy": {key: {str(k): mean(key, k) for k in ks}
                     for key in ("lassonet", "optax_l1")},
        "seconds": {key: float(np.mean([r[f"{key}_seconds"] for r in rows]))
                    for key in ("lassonet", "optax_l1")},
    }
    s = results[name]["seconds"]
    results[name]["speedup"] = s["lassonet"] / s["optax_l1"]
  cells = [(n, k) for n in names for k in results[n]["ks"]]
  diff = {f"{n} k={k}": results[n]["accuracy"]["optax_l1"][str(k)]
          - results[n]["accuracy"]["lassonet"][str(k)] for n, k in cells}
  summary = {
      "mean_accuracy": {key: float(np.mean(
          [results[n]["accuracy"][key][str(k)] for n, k in cells]))
                        for key in ("lassonet", "optax_l1")},
      "worst_cell_difference": min(diff.values()),
      "worst_cell": min(diff, key=diff.get),
      "min_speedup": min(results[n]["speedup"] for n in names),
      "seconds_total": time.perf_counter() - start_all,
  }
  summary["criteria"] = {
      "mean_at_or_above_lassonet": summary["mean_accuracy"]["optax_l1"]
                                   >= summary["mean_accuracy"]["lassonet"],
      "no_cell_more_than_1.5_points_below":
          summary["worst_cell_difference"] >= -0.015,
      "path_2x_faster_on_each_dataset": summary["min_speedup"] >= 2.0,
  }
  info["loadavg_end"] = _machine.loadavg()
  out = {"machine": info, "results": results, "summary": summary,
         "cell_differences": diff}
  prefix = pathlib.Path(args.out)
  prefix.parent.mkdir(parents=True, exist_ok=True)
  prefix.with_suffix(".json").write_text(json.dumps(out, indent=1))
  md = markdown(out, names, splits)
  prefix.with_suffix(".md").write_text(md)
  print("\n" + md)
  return out


def markdown(out: dict[str, Any], names: list[str], splits: int) -> str:
  res, summ, info = out["results"], out["summary"], out["machine"]
  lines = [
      "# FeatureSelector vs LassoNet",
      "",
      f"Test accuracy of `MLPClassifier(64)` on the k selected inputs, mean "
      f"of {splits} stratified 75/25 splits; path = wall time of one "
      "path (LassoNet's `.path`, optax_l1's `FeatureSelector().fit`, "
      "compilation included), mean per split, one CPU thread each.",
      "",
      "| data set (n x d) | k | LassoNet | optax_l1 | difference |",
      "|---|---:|---:|---:|---:|",
  ]
  for n in names:
    r = res[n]
    for k in r["ks"]:
      a, b = (r["accuracy"]["lassonet"][str(k)],
              r["accuracy"]["optax_l1"][str(k)])
      lines.append(f"| {n} ({r['n_samples']} x {r['n_features']}) | {k} | "
                   f"{a:.3f} | {b:.3f} | {100 * (b - a):+.1f} pt |")
  m = summ["mean_accuracy"]
  lines += [
      f"| **mean of all cells** | | **{m['lassonet']:.3f}** | "
      f"**{m['optax_l1']:.3f}** | {100 * (m['optax_l1'] - m['lassonet']):+.1f}"
      " pt |",
      "",
      "| data set | LassoNet path (s) | optax_l1 path (s) | speed-up |",
      "|---|---:|---:|---:|",
  ]
  for n in names:
    s = res[n]["seconds"]
    lines.append(f"| {n} | {s['lassonet']:.1f} | {s['optax_l1']:.1f} | "
                 f"{res[n]['speedup']:.1f}x |")
  c = summ["criteria"]
  lines += [
      "",
      f"Worst cell: {summ['worst_cell']} "
      f"({100 * summ['worst_cell_difference']:+.1f} pt). Criteria: mean at "
      f"or above LassoNet: {c['mean_at_or_above_lassonet']}; no cell more "
      f"than 1.5 points below: {c['no_cell_more_than_1.5_points_below']}; "
      f"path at least 2x faster on each data set: "
      f"{c['path_2x_faster_on_each_dataset']} (min {summ['min_speedup']:.1f}x).",
      "",
      f"Command: `{info['command']}` ({summ['seconds_total']:.0f} s in all). "
      f"Machine: {info['cpu_model']}, {info['cpus_usable']} usable cores, "
      f"load average {info['loadavg_start']} at the start and "
      f"{info['loadavg_end']} at the end; jax {info['jax']}, optax "
      f"{info['optax']}, flax {info['flax']}, scikit-learn {info['sklearn']}, "
      f"torch {info['torch']} ({info['torch_threads']} thread), lassonet "
      f"{info['lassonet']}; XLA_FLAGS `{info['xla_flags']}`; {info['date']}.",
      "",
  ]
  return "\n".join(lines)


if __name__ == "__main__":
  main()
