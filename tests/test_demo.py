"""The main demo (``python -m optax_l1``), run in --quick mode.

Every number asserted here is measured by the demo and checked against an
independent reference: sklearn's ``Lasso`` (computed in the demo) and the
lasso's optimality (KKT) conditions (computed here from the returned data).
"""

import time

import numpy as np
import pytest

from optax_l1 import _demo

PROX_METHODS = ("ista", "proximal_adam")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
  out = tmp_path_factory.mktemp("demo_out")
  start = time.perf_counter()
  results = _demo.main(["--quick", "--out", str(out)])
  results["test_seconds"] = time.perf_counter() - start
  results["out"] = out
  return results


def _problems(demo):
  return demo["linear"]["keras_report"], demo["linear"]["three_features"]


def test_sklearn_reference_is_what_the_report_says(demo):
  keras, three = _problems(demo)
  assert keras["sklearn_zeros"] == 20  # Lasso(alpha=0.1) returns all zeros
  assert 0 < three["sklearn_zeros"] < 20
  nonzero = set(np.flatnonzero(three["w_sklearn"]).tolist())
  assert {1, 2, 3} <= nonzero and 0 not in nonzero


@pytest.mark.parametrize("method", PROX_METHODS)
@pytest.mark.parametrize("problem", ["keras_report", "three_features"])
def test_prox_methods_reach_sklearn_exactly(demo, problem, method):
  p = demo["linear"][problem]
  row = p["rows"][method]
  w_sk = p["w_sklearn"]
  assert row["same_support"]
  assert row["zeros"] == row["sklearn_zeros"] == int(np.sum(w_sk == 0))
  np.testing.assert_array_equal(row["w"] == 0, w_sk == 0)
  assert row["max_abs_diff"] <= 1e-4
  assert row["max_abs_diff"] == pytest.approx(np.abs(row["w"] - w_sk).max())
  assert row["dead_feature_zero"] and row["w"][0] == 0.0
  assert abs(row["objective_gap"]) <= 1e-8


@pytest.mark.parametrize("method", PROX_METHODS)
@pytest.mark.parametrize("problem", ["keras_report", "three_features"])
def test_prox_methods_satisfy_lasso_kkt(demo, problem, method):
  """Independent of sklearn: X^T(y - Xw)/n = alpha*sign(w) on the support,
  and |.| <= alpha off it."""
  p = demo["linear"][problem]
  X, y, alpha, w = p["X"], p["y"], p["alpha"], p["rows"][method]["w"]
  corr = X.T @ (y - X @ w) / len(y)
  on = w != 0
  np.testing.assert_allclose(corr[on], alpha * np.sign(w[on]), atol=1e-5)
  assert np.all(np.abs(corr[~on]) <= alpha + 1e-5)


@pytest.mark.parametrize("problem", ["keras_report", "three_features"])
def test_penalty_in_the_loss_gives_no_exact_zeros(demo, problem):
  rows = demo["linear"][problem]["rows"]
  for key in ("adam_l1_in_loss", "sgd_l1_in_loss"):
    assert rows[key]["zeros"] == 0
    assert not rows[key]["dead_feature_zero"]
    assert rows[key]["objective_gap"] > 0
  # Adam hovers near zero without reaching it.
  adam = rows["adam_l1_in_loss"]
  assert adam["near_zeros"] > 0 and adam["max_abs_diff"] > 1e-4


@pytest.mark.parametrize("problem", ["keras_report", "three_features"])
def test_plain_threshold_after_adam_solves_another_problem(demo, problem):
  row = demo["linear"][problem]["rows"]["adam_then_prox"]
  assert not row["same_support"]
  assert row["max_abs_diff"] > 1e-2


def test_mlp_numbers(demo):
  rows = demo["mlp"]["rows"]
  for row in rows.values():
    assert row["test_accuracy"] > 0.9
    assert len(row["zeros_by_epoch"]) == demo["mlp"]["epochs"] + 1
  assert rows["dense"]["zero_fraction"] == 0.0
  assert rows["l1_in_loss"]["zero_fraction"] == 0.0
  assert rows["l1_in_loss"]["near_zero_fraction"] > 0.05
  assert rows["proximal_adam"]["zero_fraction"] > 0.3
  assert rows["proximal_adam"]["report"].zeros > 0
  # Biases are masked out: the report covers kernels only.
  paths = [leaf.path for leaf in rows["proximal_adam"]["report"].leaves]
  assert paths == ["hidden", "out"]


def test_pngs_written(demo):
  assert len(demo["files"]) == 2
  for name in demo["files"]:
    path = demo["out"] / name.split("/")[-1]
    assert str(path) == name
    data = path.read_bytes()
    assert len(data) > 10_000
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_run_is_quick(demo):
  # The target is < 30 s; allow for a loaded test machine.
  assert demo["test_seconds"] < 90


def test_parse_defaults():
  args = _demo._parse([])
  assert args.out == "optax_l1_demo_out" and not args.quick and args.seed == 0
