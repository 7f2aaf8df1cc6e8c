"""Smoke runs of every script in examples/ in --quick mode.

Each example's ``main`` returns the numbers it prints; the assertions check
measured outcomes, not just that the script ran: exact zeros where a prox was
used and none where it was not, accuracy well above chance, compacted models
that compute the same outputs, files that round-trip, and (feature selection)
the exact informative sets.
"""

import importlib.util
import pathlib
import time

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def load(name):
  spec = importlib.util.spec_from_file_location(f"example_{name}",
                                                EXAMPLES / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def run(name, tmp_path):
  start = time.perf_counter()
  out = load(name).main(["--quick", "--out", str(tmp_path)])
  out["test_seconds"] = time.perf_counter() - start
  for f in out["files"]:
    assert pathlib.Path(f).stat().st_size > 10_000, f
    assert pathlib.Path(f).parent == tmp_path
  return out


def test_every_example_is_tested():
  scripts = sorted(p.stem for p in EXAMPLES.glob("*.py")
                   if not p.name.startswith("_"))  # _common.py: helpers
  assert scripts == ["conv_filters_linen", "digits_mlp_nnx",
                     "feature_selection"]


def test_digits_mlp_nnx(tmp_path):
  r = run("digits_mlp_nnx", tmp_path)
  assert r["epochs"] == 15
  # Dense Adam: no exact zeros. Proximal Adam: most kernel weights exactly 0.
  assert r["dense_kernel_zeros"] == 0.0
  assert r["sparse_kernel_zeros"] > 0.6
  # 10 classes: chance is 0.1. Both models are far above it after 15 epochs.
  assert r["dense_accuracy"] > 0.93 and r["sparse_accuracy"] > 0.93
  assert abs(r["accuracy_gap"]) < 0.03
  # Compaction removes units and inputs and keeps the predictions.
  widths = r["compact_widths"]
  assert widths[0] <= 64 and widths[1] < 256 and widths[2] < 256
  assert widths[-1] == 10
  assert r["compact_same_predictions"] and r["compact_max_logit_diff"] < 1e-4
  s = r["sizes"]
  assert s["round_trip_exact"]
  assert s["sparse_npz"] < s["dense_npz"] / 2


def test_feature_selection(tmp_path):
  r = run("feature_selection", tmp_path)
  cls, reg = r["results"]["classification"], r["results"]["regression"]
  # The importance ranking puts exactly the informative inputs first ...
  assert cls["top_k_is_informative"] and reg["top_k_is_informative"]
  # ... and the refit-based selection recovers exactly the informative set.
  assert cls["selected"] == [0, 1, 2, 3, 4]
  assert reg["selected"] == [0, 1]
  # Exact zeros: the sparsest path model reads few inputs, all informative,
  # and its compacted version computes the same outputs.
  for res in (cls, reg):
    kept_last = np.flatnonzero(res["path"].kept[-1]).tolist()
    assert 0 < len(kept_last) <= len(res["informative"])
    assert set(kept_last) <= set(res["informative"])
    assert res["compact_inputs"] == kept_last
    assert res["compact_max_diff"] < 1e-4
  # Path runs dense to sparse: all inputs at the smallest lam.
  assert cls["path"].n_kept[0] == 20 and reg["path"].n_kept[0] >= 5
  # Selected refits are far above chance (2 classes: 0.5; R^2 of 0).
  assert cls["refit_scores"][cls["k_selected"] - 1] > 0.9
  assert reg["refit_scores"][reg["k_selected"] - 1] > 0.9


def test_conv_filters_linen(tmp_path):
  r = run("conv_filters_linen", tmp_path)
  assert r["dense_accuracy"] > 0.5 and r["sparse_accuracy"] > 0.5  # chance 0.1
  # Whole filters are removed (exactly zero kernels), never all of them.
  n_removed = sum(r["filters"]) - sum(r["surviving_filters"])
  assert n_removed > 0
  assert all(s > 0 for s in r["surviving_filters"])
  assert r["macs_sparse"] < r["macs_dense"]
  assert r["kernel_zero_fraction"] > 0


@pytest.fixture(autouse=True, scope="module")
def _total_time():
  start = time.perf_counter()
  yield
  print(f"\nexamples smoke tests: {time.perf_counter() - start:.1f} s")
