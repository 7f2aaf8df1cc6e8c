"""Whole conv filters removed by group lasso, with Flax Linen.

A small conv net on sklearn's 8x8 digits (pixels / 16, fixed stratified
80/20 split): Conv(16, 3x3) - ReLU - 2x2 average pool - Conv(32, 3x3) - ReLU -
Dense(10), Adam lr 1e-3, batch 64. Trained twice from the same
initialization:

* dense: ``optax.adam(lr)``;
* filter-sparse: one group per output filter of each conv kernel
  ``(h, w, in, out)``, ``lam * sum_f ||K[:, :, :, f]||``, as an exact proximal
  step in Adam's metric::

      optax_l1.proximal(optax.adam(lr), optax_l1.prox_group_lasso(
          lam, axis=(0, 1, 2),
          mask=optax_l1.mask_by_path(r"Conv_\\d+/kernel")))

  Every filter carries the same ``lam``, so the small Conv_0 filters (9
  weights each) are removed more readily than Conv_1's (144 each); pass
  ``scale_by_size=True`` to scale ``lam`` by ``sqrt(filter size)`` instead.

With minibatch gradients a removed filter can come back (its group's
averaged gradient briefly exceeds ``lam``), so the count of surviving filters
moves a little from epoch to epoch; the plot shows it.

A filter whose kernel is exactly zero outputs the constant ``relu(bias)``: it
can be deleted from the layer (its constant folded into what reads it). The
example counts the surviving filters with ``optax_l1.surviving_filters`` and
the multiply-adds the surviving filters and input channels still need.

    python examples/conv_filters_linen.py           # full run
    python examples/conv_filters_linen.py --quick   # smoke test
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from collections.abc import Sequence
from typing import Any, Optional

import flax.linen as nn
import jax
import numpy as np
import optax

import optax_l1

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _common  # pylint: disable=g-import-not-at-top,g-bad-import-order

FILTERS = (16, 32)
POSITIONS = (64, 16)  # output positions of each conv (8x8, then 4x4)
LR = 1e-3
BATCH = 64
LAM, LAM_QUICK = 1e-2, 5e-2  # --quick: filters go within its 10 epochs
EPOCHS, EPOCHS_QUICK = 100, 10
CONV_KERNELS = r"Conv_\d+/kernel"


class CNN(nn.Module):
  """Conv(16) - avg pool - Conv(32) - Dense(10)."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.relu(nn.Conv(FILTERS[0], (3, 3), padding="SAME")(x))
    x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = nn.relu(nn.Conv(FILTERS[1], (3, 3), padding="SAME")(x))
    return nn.Dense(10)(x.reshape(x.shape[0], -1))


def options(parser: argparse.ArgumentParser) -> None:
  """This example's flags beyond _common.parse's."""
  parser.add_argument("--lam", type=float, default=None,
                      help=f"group lasso strength per filter (default {LAM:g}, "
                      f"{LAM_QUICK:g} with --quick)")


def conv_kernels(params) -> dict[str, jax.Array]:
  """Conv kernels by path, e.g. ``params/Conv_0/kernel``."""
  return _common.leaves_by_path(params, CONV_KERNELS)


def conv_macs(kernels: dict[str, np.ndarray], dense: bool) -> int:
  """Multiply-adds of the conv layers per image (SAME padding).

  With ``dense=False`` only surviving filters count, and a layer reads only
  the channels the previous layer's surviving filters produce (a deleted
  filter's constant output is folded into the next layer's bias; exact away
  from the zero-padded border, which this count ignores).
  """
  total, prev_alive = 0, None
  for k, positions in zip(kernels.values(), POSITIONS):
    h, w, c_in, c_out = k.shape
    if dense:
      total += positions * h * w * c_in * c_out
      continue
    alive = optax_l1.surviving_filters(k)
    ins = c_in if prev_alive is None else len(prev_alive)
    total += positions * h * w * ins * len(alive)
    prev_alive = alive
  return total


def train(optimizer, seed: int, epochs: int, data, desc: str) -> dict[str, Any]:
  model = CNN()
  params = model.init(jax.random.key(seed), data[0][:1])
  return _common.train(model.apply, params, optimizer, data, seed=seed,
                       epochs=epochs, batch=BATCH, desc=desc, track={
                           "filters_by_epoch": lambda p: [
                               len(optax_l1.surviving_filters(k))
                               for k in conv_kernels(p).values()]})


def plot(results: dict[str, Any], path: pathlib.Path, lam: float) -> None:
  sparse, dense = results["sparse"], results["dense"]
  fig, axes = _common.subplots(1, 3, figsize=(15, 4))
  ep = np.arange(1, len(sparse["accuracy_by_epoch"]) + 1)
  alive = np.asarray(sparse["filters_by_epoch"])
  for i, n in enumerate(FILTERS):
    axes[0].plot(ep, alive[:, i], label=f"Conv_{i}: {alive[-1, i]}/{n} "
                 "filters left")
  axes[0].set_ylabel("surviving filters")
  axes[0].set_xlabel("epoch")
  axes[0].legend(fontsize=8)
  axes[1].plot(ep, 100 * np.asarray(dense["accuracy_by_epoch"]), color="0.4",
               label=f"dense: {dense['test_accuracy']:.1%}")
  axes[1].plot(ep, 100 * np.asarray(sparse["accuracy_by_epoch"]),
               color="tab:blue",
               label=f"filter group lasso: {sparse['test_accuracy']:.1%}")
  axes[1].set_ylim(80, 100)
  axes[1].set_ylabel("test accuracy (%)")
  axes[1].set_xlabel("epoch")
  axes[1].legend(fontsize=8)
  # Filter norms of the last conv layer: exact zeros vs survivors.
  k = np.asarray(list(conv_kernels(sparse["params"]).values())[-1])
  norms = np.sqrt((k.astype(np.float64) ** 2).sum(axis=(0, 1, 2)))
  order = np.argsort(-norms)
  sorted_norms = norms[order]
  pos = np.arange(len(norms))
  axes[2].bar(pos, sorted_norms, color="tab:blue")
  zero = sorted_norms == 0
  axes[2].plot(pos[zero], sorted_norms[zero], "x", color="tab:red", ms=8)
  axes[2].set_title(f"Conv_{len(FILTERS) - 1} filter norms (red: exactly 0: "
                    f"{int(np.sum(norms == 0))})", fontsize=9)
  axes[2].set_xlabel("filter (sorted)")
  for ax in axes:
    ax.grid(True, alpha=0.3)
  fig.suptitle(f"Digits CNN (Flax Linen), Adam lr {LR:g}: filter-level group "
               f"lasso (axis=(0, 1, 2)), lam {lam:g}", fontsize=10)
  _common.save(fig, path)


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
  """Runs the example; returns every number it prints."""
  args = _common.parse(argv, __doc__, EPOCHS, EPOCHS_QUICK, options)
  epochs, out = args.epochs, args.out
  args.lam = args.lam or (LAM_QUICK if args.quick else LAM)
  start = time.perf_counter()
  X_tr, y_tr, X_te, y_te = _common.digits(standardize=False)
  data = (X_tr.reshape(-1, 8, 8, 1), y_tr, X_te.reshape(-1, 8, 8, 1), y_te)
  print(f"digits 8x8: {len(data[1])} train / {len(data[3])} test; CNN "
        f"Conv{FILTERS[0]}-pool-Conv{FILTERS[1]}-Dense10 (Linen), Adam lr "
        f"{LR:g}, batch {BATCH}, {epochs} epochs, seed {args.seed}")
  setups = {
      "dense": ("Adam (dense)", optax.adam(LR)),
      "sparse": (f"proximal(adam, prox_group_lasso(lam={args.lam:g}, "
                 "axis=(0,1,2)))",
                 optax_l1.proximal(optax.adam(LR), optax_l1.prox_group_lasso(
                     args.lam, axis=(0, 1, 2),
                     mask=optax_l1.mask_by_path(CONV_KERNELS)))),
  }
  results = {}
  for key, (label, opt) in setups.items():
    results[key] = train(opt, args.seed, epochs, data, label)
    alive = results[key]["filters_by_epoch"][-1]
    print(f"  {label:<52} test acc {results[key]['test_accuracy']:.4f}  "
          f"surviving filters {alive} of {list(FILTERS)}  "
          f"({results[key]['seconds']:.1f} s)")
  sparse = results["sparse"]
  kernels = {k: np.asarray(v) for k, v in conv_kernels(sparse["params"]).items()}
  alive = {k: optax_l1.surviving_filters(v).tolist() for k, v in kernels.items()}
  macs_dense, macs_sparse = conv_macs(kernels, True), conv_macs(kernels, False)
  print("\nsparsity_report (filter-sparse run):")
  print(optax_l1.sparsity_report(sparse["params"]))
  for path, idx in alive.items():
    print(f"{path}: {len(idx)} of {kernels[path].shape[-1]} filters survive")
  print(f"conv multiply-adds per image: {macs_dense:,} dense -> "
        f"{macs_sparse:,} on surviving filters and channels "
        f"({macs_sparse / macs_dense:.1%})")
  gap = results["dense"]["test_accuracy"] - sparse["test_accuracy"]
  print(f"accuracy gap (dense - sparse): {100 * gap:+.2f} points")
  png = out / "conv_filters_linen.png"
  plot(results, png, args.lam)
  seconds = time.perf_counter() - start
  print(f"\nwrote {png} ({seconds:.1f} s)")
  return {
      "epochs": epochs, "lam": args.lam, "seed": args.seed,
      "dense_accuracy": results["dense"]["test_accuracy"],
      "sparse_accuracy": sparse["test_accuracy"], "accuracy_gap": gap,
      "filters": list(FILTERS),
      "surviving_filters": [len(v) for v in alive.values()],
      "surviving_filter_indices": alive,
      "kernel_zero_fraction": optax_l1.sparsity(kernels),
      "macs_dense": macs_dense, "macs_sparse": macs_sparse,
      "files": [str(png)], "seconds": seconds,
  }


if __name__ == "__main__":
  main()
