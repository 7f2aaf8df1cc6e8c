"""Sparse MLP on sklearn digits with Flax NNX: exact zeros at dense accuracy.

An MLP 64-256-256-10 (ReLU) on sklearn's 8x8 digits (standardized, fixed
stratified 80/20 split), Adam lr 1e-3, batch 64, trained twice from the same
initialization:

* dense: ``optax.adam(lr)``;
* sparse: ``optax_l1.proximal(optax.adam(lr), optax_l1.prox_l1(lam,
  mask=optax_l1.mask_by_path("kernel")))``: the prox of ``lam * |W|_1`` in
  Adam's own metric on the kernels (biases unpenalized).

Then the sparse model is shipped smaller: ``compact_mlp`` deletes the hidden
units and inputs it no longer uses (same predictions), and ``save_sparse``
writes it to disk next to dense ``np.savez`` / ``np.savez_compressed`` files.

NNX is used functionally: ``graphdef, params, rest = nnx.split(model,
nnx.Param, ...)``; ``params`` is an ``nnx.State`` (a pytree) that optax and
the masks act on directly, and ``nnx.merge`` rebuilds the model in the loss.

    python examples/digits_mlp_nnx.py              # full run, about a minute
    python examples/digits_mlp_nnx.py --quick      # smoke test
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import optax_l1

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _common  # pylint: disable=g-import-not-at-top,g-bad-import-order

HIDDEN = 256
LR = 1e-3
BATCH = 64
LAM = 1e-3
EPOCHS, EPOCHS_QUICK = 150, 15


def options(parser: argparse.ArgumentParser) -> None:
  """This example's flags beyond _common.parse's."""
  parser.add_argument("--lam", type=float, default=LAM,
                      help="L1 strength on the kernels (default %(default)g)")


def kernel_zeros(params: nnx.State) -> float:
  """Fraction of the kernel weights exactly 0.0."""
  return optax_l1.sparsity(_common.leaves_by_path(params, "kernel"))


def train(optimizer: optax.GradientTransformation, seed: int, epochs: int,
          data, desc: str) -> dict[str, Any]:
  """Minibatch training of a fresh MLP (init from ``seed``)."""
  model = _common.MLP(data[0].shape[1], HIDDEN, 10, rngs=nnx.Rngs(seed))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  r = _common.train(lambda p, x: nnx.merge(graphdef, p, rest)(x), params,
                    optimizer, data, seed=seed, epochs=epochs, batch=BATCH,
                    desc=desc, track={"zeros_by_epoch": kernel_zeros})
  return {**r, "graphdef": graphdef, "rest": rest,
          "kernel_zeros": r["zeros_by_epoch"][-1]}


def file_sizes(params: nnx.State, folder: pathlib.Path) -> dict[str, int]:
  """Bytes on disk: save_sparse vs dense np.savez / np.savez_compressed."""
  arrays = {optax_l1.leaf_path(p): np.asarray(a) for p, a in
            jax.tree_util.tree_flatten_with_path(params)[0]}
  sizes = {"sparse_npz": optax_l1.save_sparse(folder / "sparse.npz", params)}
  with open(folder / "dense.npz", "wb") as f:
    np.savez(f, **arrays)
  with open(folder / "dense_compressed.npz", "wb") as f:
    np.savez_compressed(f, **arrays)
  sizes["dense_npz"] = (folder / "dense.npz").stat().st_size
  sizes["dense_compressed_npz"] = (folder / "dense_compressed.npz").stat().st_size
  restored = optax_l1.load_sparse(folder / "sparse.npz", like=params)
  sizes["round_trip_exact"] = all(
      np.array_equal(np.asarray(a), b) for a, b in
      zip(jax.tree.leaves(params), jax.tree.leaves(restored)))
  return sizes


def plot(results: dict[str, Any], path: pathlib.Path, lam: float) -> None:
  fig, (ax0, ax1) = _common.subplots(1, 2, figsize=(11, 4))
  for key, color in (("dense", "0.4"), ("sparse", "tab:blue")):
    r = results[key]
    ep = np.arange(1, len(r["accuracy_by_epoch"]) + 1)
    ax0.plot(ep, 100 * np.asarray(r["zeros_by_epoch"]), color=color,
             label=f"{r['label']}: {r['kernel_zeros']:.1%}")
    ax1.plot(ep, 100 * np.asarray(r["accuracy_by_epoch"]), color=color,
             label=f"{r['label']}: {r['test_accuracy']:.1%}")
  ax0.set_ylabel("% of kernel weights exactly 0.0")
  ax1.set_ylabel("test accuracy (%)")
  ax1.set_ylim(80, 100)
  for ax in (ax0, ax1):
    ax.set_xlabel("epoch")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle(f"Digits MLP 64-{HIDDEN}-{HIDDEN}-10 (Flax NNX), Adam lr {LR:g}"
               f", batch {BATCH}: proximal L1 at lam {lam:g}", fontsize=10)
  _common.save(fig, path)


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
  """Runs the example; returns every number it prints."""
  args = _common.parse(argv, __doc__, EPOCHS, EPOCHS_QUICK, options)
  epochs, out = args.epochs, args.out
  start = time.perf_counter()
  data = _common.digits()
  print(f"digits: {len(data[1])} train / {len(data[3])} test, MLP 64-{HIDDEN}"
        f"-{HIDDEN}-10, Adam lr {LR:g}, batch {BATCH}, {epochs} epochs, seed "
        f"{args.seed}")

  kernel_mask = optax_l1.mask_by_path("kernel")
  setups = {
      "dense": ("Adam (dense)", optax.adam(LR)),
      "sparse": (f"proximal(adam, prox_l1(lam={args.lam:g}))",
                 optax_l1.proximal(optax.adam(LR), optax_l1.prox_l1(
                     args.lam, mask=kernel_mask))),
  }
  results = {}
  for key, (label, opt) in setups.items():
    results[key] = train(opt, args.seed, epochs, data, label)
    results[key]["label"] = label
    print(f"  {label:<34} test acc {results[key]['test_accuracy']:.4f}  "
          f"exact-zero kernels {results[key]['kernel_zeros']:.2%}  "
          f"({results[key]['seconds']:.1f} s)")
  dense, sparse = results["dense"], results["sparse"]
  gap = dense["test_accuracy"] - sparse["test_accuracy"]
  print(f"accuracy gap (dense - sparse): {100 * gap:+.2f} points")
  print("\nsparsity_report (sparse run, all params):")
  print(optax_l1.sparsity_report(sparse["params"]))

  # Ship it smaller: structural compaction + sparse file.
  layers = _common.layers_of(sparse["params"])
  small = optax_l1.compact_mlp(layers, jax.nn.relu)
  X_te = data[2]
  full_logits = _common.mlp_apply(layers, X_te)
  small_logits = _common.mlp_apply(small.layers, X_te[:, small.inputs])
  same_predictions = bool(jnp.all(full_logits.argmax(-1)
                                  == small_logits.argmax(-1)))
  max_logit_diff = float(jnp.max(jnp.abs(full_logits - small_logits)))
  widths = [len(small.inputs)] + [len(u) for u in small.units] + [10]
  print(f"\ncompact_mlp: 64-{HIDDEN}-{HIDDEN}-10 -> "
        f"{'-'.join(map(str, widths))} (dead inputs and units removed); "
        f"same predictions: {same_predictions}, max |logit diff| "
        f"{max_logit_diff:.1e}")
  with tempfile.TemporaryDirectory() as tmp:
    sizes = file_sizes(sparse["params"], pathlib.Path(tmp))
  print(f"on disk: save_sparse {sizes['sparse_npz']:,} B, dense np.savez "
        f"{sizes['dense_npz']:,} B, dense np.savez_compressed "
        f"{sizes['dense_compressed_npz']:,} B; load_sparse bit-exact: "
        f"{sizes['round_trip_exact']}")

  png = out / "digits_mlp_nnx.png"
  plot(results, png, args.lam)
  seconds = time.perf_counter() - start
  print(f"\nwrote {png} ({seconds:.1f} s)")
  return {
      "epochs": epochs, "lam": args.lam, "seed": args.seed,
      "dense_accuracy": dense["test_accuracy"],
      "sparse_accuracy": sparse["test_accuracy"],
      "dense_kernel_zeros": dense["kernel_zeros"],
      "sparse_kernel_zeros": sparse["kernel_zeros"],
      "accuracy_gap": gap, "compact_widths": widths,
      "compact_same_predictions": same_predictions,
      "compact_max_logit_diff": max_logit_diff, "sizes": sizes,
      "files": [str(png)], "seconds": seconds,
  }


if __name__ == "__main__":
  main()
