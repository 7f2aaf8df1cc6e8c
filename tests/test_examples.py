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

import jax.numpy as jnp
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
                     "feature_selection", "transformer_heads"]


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


def test_transformer_heads(tmp_path):
  r = run("transformer_heads", tmp_path)
  assert r["quick"] and r["steps"] == 60
  v, cfg = r["variants"], r["config"]
  n_heads, n_neurons = sum(cfg["heads"]), sum(cfg["hidden"])
  n_kernel = r["dense_kernel_params"]
  # Every variant learned something: below a uniform guess over 128 codes.
  assert all(x["bpc"] < 7.0 for x in v.values())
  # Dense: nothing removed.
  assert sum(v["dense"]["heads"]) == n_heads
  assert sum(v["dense"]["neurons"]) == n_neurons
  assert v["dense"]["params"] == r["dense_params"]
  # Group lasso: whole heads and neurons are removed, and the compact model
  # (fewer heads, narrower MLPs) gives the sparse model's logits.
  gl = [x for k, x in v.items() if k.startswith("gl")]
  assert gl and r["selected"].startswith("gl")
  for x in gl:
    assert x["compact_max_abs_diff"] <= 1e-4
    assert x["params"] < r["dense_params"]
    assert x["kernel_nonzero"] <= x["kernel_params"]
  sel = v[r["selected"]]
  assert sum(sel["heads"]) < n_heads and sum(sel["neurons"]) < n_neurons
  assert r["heads_removed"] > 0 and r["neurons_removed"] > 0
  # 2:4 keeps at most half of every kernel; magnitude pruning keeps the
  # selected group-lasso model's kernel count (global ranking, exact count).
  assert v["nm24"]["kernel_nonzero"] <= n_kernel // 2
  mag = v["magnitude"]
  assert abs(mag["kernel_nonzero"] - sel["kernel_params"]) <= 1
  # Throughput was measured for dense and every compact model.
  for x in [v["dense"], *gl]:
    assert x["tokens_per_s"][1] > 0 and x["tokens_per_s"][32] > 0


def test_transformer_heads_compaction_is_exact():
  # Every case compact() handles, on a small random model: a layer with no
  # head left (residual path only), a head whose value slice alone is zero
  # (no effect), a head whose query and key are zero (uniform attention: it
  # stays), a neuron with only a bias (folded into fc2's bias), a neuron
  # whose fc2 row is zero, and a layer with no neuron left (fc2's bias only).
  th = load("transformer_heads")
  cfg = th.Config(layers=3, d=16, head_dim=4, heads=(2, 2, 2),
                  hidden=(8, 8, 8), context=8)
  graphdef, params = th.build(cfg, 0)
  rng = np.random.default_rng(0)

  def edit(leaf, fn):
    a = np.array(leaf[...])
    fn(a)
    leaf[...] = a

  layers = params["layers"]
  for l in range(3):
    edit(layers[l]["mlp"]["fc1"]["bias"], lambda a: a.__setitem__(
        slice(None), rng.normal(size=a.shape)))
    edit(layers[l]["mlp"]["fc2"]["bias"], lambda a: a.__setitem__(
        slice(None), rng.normal(size=a.shape)))
  zero = lambda a: a.fill(0.0)
  for name in ("query", "key", "value", "out"):
    edit(layers[0]["attn"][name], zero)
  edit(layers[0]["mlp"]["fc1"]["kernel"], lambda a: a.__setitem__(
      (slice(None), 1), 0.0))
  edit(layers[0]["mlp"]["fc2"]["kernel"], lambda a: a.__setitem__(2, 0.0))
  edit(layers[1]["attn"]["value"], lambda a: a.__setitem__(
      (slice(None), 0), 0.0))
  for name in ("query", "key"):
    edit(layers[1]["attn"][name], lambda a: a.__setitem__(
        (slice(None), 1), 0.0))
  for name in ("kernel", "bias"):
    edit(layers[1]["mlp"]["fc1"][name], zero)
  edit(layers[1]["mlp"]["fc2"]["kernel"], zero)

  small, small_graphdef, small_params = th.compact(params, cfg)
  assert small.heads == (0, 1, 2) and small.hidden == (6, 0, 8)
  assert th.count(small_params) < th.count(params)
  tokens = jnp.asarray(rng.integers(0, th.VOCAB, (4, cfg.context)))
  full = th.apply_fn(graphdef)(params, tokens)
  compacted = th.apply_fn(small_graphdef)(small_params, tokens)
  assert float(jnp.max(jnp.abs(full - compacted))) <= 1e-5


@pytest.fixture(autouse=True, scope="module")
def _total_time():
  start = time.perf_counter()
  yield
  print(f"\nexamples smoke tests: {time.perf_counter() - start:.1f} s")
