"""Sparse MLP on sklearn digits with Flax NNX: exact zeros at dense accuracy.

An MLP 64-256-256-10 (ReLU) on sklearn's 8x8 digits (standardized, fixed
stratified 80/20 split), Adam lr 1e-3, batch 64, trained twice from the same
initialization:

* dense: ``optax.adam(lr)``;
* sparse: ``optax_l1.proximal(optax.adam(lr), optax_l1.prox_l1(lam, lr,
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

HIDDEN = 256
LR = 1e-3
BATCH = 64
LAM = 1e-3
EPOCHS, EPOCHS_QUICK = 150, 15


class MLP(nnx.Module):
  """64-256-256-10 with ReLU."""

  def __init__(self, n_in: int, hidden: int, n_out: int, *, rngs: nnx.Rngs):
    self.hidden1 = nnx.Linear(n_in, hidden, rngs=rngs)
    self.hidden2 = nnx.Linear(hidden, hidden, rngs=rngs)
    self.out = nnx.Linear(hidden, n_out, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = nnx.relu(self.hidden1(x))
    x = nnx.relu(self.hidden2(x))
    return self.out(x)


def parse(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--epochs", type=int, default=None,
                      help=f"epochs (default {EPOCHS}, {EPOCHS_QUICK} with "
                      "--quick)")
  parser.add_argument("--lam", type=float, default=LAM,
                      help="L1 strength on the kernels (default %(default)g)")
  parser.add_argument("--seed", type=int, default=0,
                      help="init and shuffling seed (default %(default)s)")
  parser.add_argument("--quick", action="store_true",
                      help="a few epochs, for smoke tests")
  parser.add_argument("--out", default="examples_out",
                      help="folder for the PNG (default %(default)s)")
  return parser.parse_args(None if argv is None else [str(a) for a in argv])


def load_data():
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  from sklearn.model_selection import train_test_split  # pylint: disable=g-import-not-at-top
  from sklearn.preprocessing import StandardScaler  # pylint: disable=g-import-not-at-top
  X, y = load_digits(return_X_y=True)
  X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.2,
                                            random_state=0, stratify=y)
  scaler = StandardScaler().fit(X_tr)
  return (jnp.asarray(scaler.transform(X_tr), jnp.float32), jnp.asarray(y_tr),
          jnp.asarray(scaler.transform(X_te), jnp.float32), jnp.asarray(y_te))


def train(optimizer: optax.GradientTransformation, seed: int, epochs: int,
          data, desc: str) -> dict[str, Any]:
  """Minibatch training of a fresh MLP (init from ``seed``)."""
  from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
  X_tr, y_tr, X_te, y_te = data
  model = MLP(X_tr.shape[1], HIDDEN, 10, rngs=nnx.Rngs(seed))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def loss_fn(params, x, labels):
    logits = nnx.merge(graphdef, params, rest)(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits,
                                                           labels).mean()

  @jax.jit
  def epoch(params, opt_state, batches):
    def step(carry, idx):
      params, opt_state = carry
      grads = jax.grad(loss_fn)(params, X_tr[idx], y_tr[idx])
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None
    (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), batches)
    return params, opt_state

  @jax.jit
  def accuracy(params):
    logits = nnx.merge(graphdef, params, rest)(X_te)
    return jnp.mean(logits.argmax(-1) == y_te)

  opt_state = optimizer.init(params)
  rng = np.random.default_rng(seed)
  n_batches = len(y_tr) // BATCH
  acc, zeros = [], []
  start = time.perf_counter()
  for _ in tqdm(range(epochs), desc=desc, leave=False, disable=None):
    order = rng.permutation(len(y_tr))[:n_batches * BATCH]
    params, opt_state = epoch(params, opt_state,
                              order.reshape(n_batches, BATCH))
    acc.append(float(accuracy(params)))
    zeros.append(optax_l1.sparsity(kernels(params)))
  return {"params": params, "graphdef": graphdef, "rest": rest,
          "test_accuracy": acc[-1], "kernel_zeros": zeros[-1],
          "accuracy_by_epoch": acc, "zeros_by_epoch": zeros,
          "seconds": time.perf_counter() - start}


def kernels(params: nnx.State) -> dict[str, jax.Array]:
  """The kernels of an NNX params State, by path (as mask_by_path sees it)."""
  keep = optax_l1.mask_by_path("kernel")(params)
  out = {}
  for (path, leaf), m in zip(jax.tree_util.tree_flatten_with_path(params)[0],
                             jax.tree.leaves(keep)):
    if m:
      out[optax_l1.leaf_path(path)] = leaf
  return out


def layers_of(params: nnx.State) -> list[tuple[jax.Array, jax.Array]]:
  return [(params[n]["kernel"][...], params[n]["bias"][...])
          for n in ("hidden1", "hidden2", "out")]


def mlp_apply(layers, x):
  for i, (w, b) in enumerate(layers):
    x = x @ w + b
    if i < len(layers) - 1:
      x = jax.nn.relu(x)
  return x


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
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4))
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
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
  """Runs the example; returns every number it prints."""
  args = parse(argv)
  epochs = args.epochs or (EPOCHS_QUICK if args.quick else EPOCHS)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  data = load_data()
  print(f"digits: {len(data[1])} train / {len(data[3])} test, MLP 64-{HIDDEN}"
        f"-{HIDDEN}-10, Adam lr {LR:g}, batch {BATCH}, {epochs} epochs, seed "
        f"{args.seed}")

  kernel_mask = optax_l1.mask_by_path("kernel")
  setups = {
      "dense": ("Adam (dense)", optax.adam(LR)),
      "sparse": (f"proximal(adam, prox_l1(lam={args.lam:g}))",
                 optax_l1.proximal(optax.adam(LR), optax_l1.prox_l1(
                     args.lam, LR, mask=kernel_mask))),
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
  layers = layers_of(sparse["params"])
  small = optax_l1.compact_mlp(layers, jax.nn.relu)
  X_te = data[2]
  full_logits = mlp_apply(layers, X_te)
  small_logits = mlp_apply([(jnp.asarray(w), jnp.asarray(b))
                            for w, b in small.layers], X_te[:, small.inputs])
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
