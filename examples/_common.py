"""Helpers shared by the examples (and benchmarks/prune_vs_prox_digits.py).

Not an example itself: digits data, command line, progress bars, plot
saving, the NNX MLP and the minibatch training loop, written once.
"""

from __future__ import annotations

import argparse
import pathlib
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import optax_l1


def digits(standardize: bool = True) -> tuple[jax.Array, ...]:
  """sklearn digits as ``(X_tr, y_tr, X_te, y_te)``: float32 X, int32 y.

  Fixed stratified 80/20 split (``random_state=0``). X is standardized with
  the training set's mean and std (constant pixels stay 0), or with
  ``standardize=False`` scaled to [0, 1] (pixels / 16).
  """
  # pylint: disable=g-import-not-at-top
  from sklearn.datasets import load_digits
  from sklearn.model_selection import train_test_split
  from sklearn.preprocessing import StandardScaler
  X, y = load_digits(return_X_y=True)
  X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.2,
                                            random_state=0, stratify=y)
  if standardize:
    scaler = StandardScaler().fit(X_tr)
    X_tr, X_te = scaler.transform(X_tr), scaler.transform(X_te)
  else:
    X_tr, X_te = X_tr / 16.0, X_te / 16.0
  return (jnp.asarray(X_tr, jnp.float32), jnp.asarray(y_tr, jnp.int32),
          jnp.asarray(X_te, jnp.float32), jnp.asarray(y_te, jnp.int32))


def parse(argv: Optional[Sequence[str]], doc: str, epochs: int,
          epochs_quick: int,
          add: Optional[Callable[[argparse.ArgumentParser], None]] = None, *,
          epochs_help: str = "epochs",
          seed_help: str = "init and shuffling seed",
          quick_help: str = "a few epochs, for smoke tests",
          out_help: str = "folder for the PNG") -> argparse.Namespace:
  """Parses --epochs, --seed, --quick, --out and what ``add(parser)`` adds.

  ``args.epochs`` comes back resolved (``epochs``, or ``epochs_quick`` with
  --quick) and ``args.out`` as a folder (a Path) that exists.
  """
  parser = argparse.ArgumentParser(description=doc.split("\n")[0])
  parser.add_argument("--epochs", type=int, default=None,
                      help=f"{epochs_help} (default {epochs}, {epochs_quick} "
                      "with --quick)")
  if add is not None:
    add(parser)
  parser.add_argument("--seed", type=int, default=0,
                      help=f"{seed_help} (default %(default)s)")
  parser.add_argument("--quick", action="store_true", help=quick_help)
  parser.add_argument("--out", default="examples_out",
                      help=f"{out_help} (default %(default)s)")
  args = parser.parse_args(None if argv is None else [str(a) for a in argv])
  args.epochs = args.epochs or (epochs_quick if args.quick else epochs)
  args.out = pathlib.Path(args.out)
  args.out.mkdir(parents=True, exist_ok=True)
  return args


def progress(iterable: Iterable[Any], desc: str) -> Iterable[Any]:
  """A transient tqdm bar (off when not on a terminal)."""
  from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
  return tqdm(iterable, desc=desc, leave=False, disable=None)


def subplots(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
  """``plt.subplots`` on matplotlib's Agg backend (no display needed)."""
  # pylint: disable=g-import-not-at-top
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt.subplots(*args, **kwargs)


def save(fig: Any, path: pathlib.Path) -> None:
  """Lays out ``fig``, writes it to ``path`` (110 dpi) and closes it."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


class MLP(nnx.Module):
  """n_in-hidden-hidden-n_out with ReLU; ``hidden1`` reads the inputs."""

  def __init__(self, n_in: int, hidden: int, n_out: int, *, rngs: nnx.Rngs):
    self.hidden1 = nnx.Linear(n_in, hidden, rngs=rngs)
    self.hidden2 = nnx.Linear(hidden, hidden, rngs=rngs)
    self.out = nnx.Linear(hidden, n_out, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = nnx.relu(self.hidden1(x))
    x = nnx.relu(self.hidden2(x))
    return self.out(x)


def layers_of(params: nnx.State) -> list[tuple[jax.Array, jax.Array]]:
  """``(kernel, bias)`` of each layer of an ``MLP``'s params, in order."""
  return [(params[n]["kernel"][...], params[n]["bias"][...])
          for n in ("hidden1", "hidden2", "out")]


def mlp_apply(layers: Sequence[tuple[Any, Any]], x: jax.Array) -> jax.Array:
  """The MLP of ``(kernel, bias)`` layers (ReLU between them) on ``x``."""
  for i, (w, b) in enumerate(layers):
    x = x @ jnp.asarray(w) + jnp.asarray(b)
    if i < len(layers) - 1:
      x = jax.nn.relu(x)
  return x


def leaves_by_path(params: Any, pattern: str) -> dict[str, jax.Array]:
  """The leaves ``mask_by_path(pattern)`` selects, by path."""
  keep = optax_l1.mask_by_path(pattern)(params)
  return {optax_l1.leaf_path(p): leaf for (p, leaf), m in zip(
      jax.tree_util.tree_flatten_with_path(params)[0], jax.tree.leaves(keep))
          if m}


def train(apply: Callable[[Any, jax.Array], jax.Array], params: Any,
          optimizer: optax.GradientTransformation, data: Sequence[jax.Array],
          *, seed: int, epochs: int, batch: int, desc: str,
          track: dict[str, Callable[[Any], Any]]) -> dict[str, Any]:
  """Minibatch softmax cross-entropy training of ``apply(params, x)``.

  Each epoch is one jitted ``lax.scan`` over the batches of a permutation
  drawn from ``np.random.default_rng(seed)``. After each epoch the test
  accuracy and ``fn(params)`` for each ``name, fn`` of ``track`` are
  recorded: the result holds ``accuracy_by_epoch`` and ``track``'s names.
  """
  X_tr, y_tr, X_te, y_te = data

  def loss_fn(params, x, labels):
    return optax.softmax_cross_entropy_with_integer_labels(apply(params, x),
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
    return jnp.mean(apply(params, X_te).argmax(-1) == y_te)

  opt_state = optimizer.init(params)
  rng = np.random.default_rng(seed)
  n_batches = len(y_tr) // batch
  out = {"accuracy_by_epoch": [], **{name: [] for name in track}}
  start = time.perf_counter()
  for _ in progress(range(epochs), desc):
    order = rng.permutation(len(y_tr))[:n_batches * batch]
    params, opt_state = epoch(params, opt_state,
                              order.reshape(n_batches, batch))
    out["accuracy_by_epoch"].append(float(accuracy(params)))
    for name, fn in track.items():
      out[name].append(fn(params))
  return {"params": params, "test_accuracy": out["accuracy_by_epoch"][-1],
          **out, "seconds": time.perf_counter() - start}
