"""Proximal L1 vs gradual magnitude pruning at equal sparsity (sklearn digits).

A benchmark, not a test. An MLP 64-256-256-10 (ReLU, plain JAX pytree params
``{"layers": [{"kernel", "bias"}, ...]}``, LeCun-normal kernels, zero biases),
softmax cross-entropy, Adam lr 1e-3, batch 64, on sklearn's ``load_digits``
(stratified 80/20 split with ``random_state=0``; features standardized with the
training set's mean and std), trained with:

1. ``dense``: ``optax.adam(lr)``.
2. ``prox_l1``: ``optax_l1.proximal(optax.adam(lr), optax_l1.prox_l1(lam, lr,
   mask=kernels))``: the L1 prox in Adam's metric, kernels only, for each
   ``lam`` in ``--lams``.
3. ``gmp_layer`` / ``gmp_global``: ``optax.chain(optax.adam(lr),
   optax_l1.magnitude_prune(S, begin_step, end_step, update_every,
   scope=..., mask=kernels))``: gradual magnitude pruning (Zhu & Gupta,
   cubic schedule) from ~10% to ~70% of training, where ``S`` is the kernel
   sparsity (fraction of kernel weights exactly 0.0) that the ``prox_l1`` run
   with the same ``lam`` *and the same seed* reached at the end of training:
   every pruning run is compared at the sparsity of its prox run.
4. ``prox_gmp_layer`` / ``prox_gmp_global``: the same pruning inside
   ``optax_l1.proximal(optax.adam(lr), magnitude_prune(...))``, which also
   resets Adam's moments of the pruned weights.

For one seed every method starts from the same initialization and sees the
same minibatches. Each epoch is one jitted ``lax.scan`` over its minibatches
(compiled ahead of time, so the reported train time excludes compilation,
which is reported separately). Results are means over ``--seeds`` seeds (the
per-seed numbers are in the JSON).

Outputs (``--out PREFIX``, default ``benchmarks/results/prune_vs_prox_digits``):
``PREFIX.md`` (table), ``PREFIX.json`` (all numbers, per-epoch curves,
per-layer zeros, machine info, command) and ``PREFIX.png`` (test accuracy vs
kernel sparsity).

Usage::

  PYTHONPATH=. python benchmarks/prune_vs_prox_digits.py            # default
  PYTHONPATH=. python benchmarks/prune_vs_prox_digits.py --quick --out /tmp/q
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shlex
import sys
import time
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_l1

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "examples")]
import _common  # pylint: disable=g-import-not-at-top,g-bad-import-order
import _machine  # pylint: disable=g-import-not-at-top,g-bad-import-order

SIZES = (64, 256, 256, 10)
LR = 1e-3
BATCH = 64
LAMS = (3e-5, 1e-4, 3e-4, 1e-3, 3e-3)
EPOCHS, EPOCHS_QUICK = 60, 4
SEEDS, SEEDS_QUICK = 2, 1
BEGIN_FRAC, END_FRAC = 0.1, 0.7
N_MASK_UPDATES = 30  # mask updates in [begin, end] (the last one reaches S)
OUT = "benchmarks/results/prune_vs_prox_digits"

METHODS = {  # key -> (label, plot marker, color)
    "dense": ("dense Adam", "*", "0.3"),
    "prox_l1": ("proximal(adam, prox_l1)", "o", "tab:blue"),
    "gmp_layer": ("chain(adam, magnitude_prune) layer", "s", "tab:orange"),
    "gmp_global": ("chain(adam, magnitude_prune) global", "D", "tab:red"),
    "prox_gmp_layer": ("proximal(adam, magnitude_prune) layer", "^",
                       "tab:green"),
    "prox_gmp_global": ("proximal(adam, magnitude_prune) global", "v",
                        "tab:purple"),
}
PRUNE_METHODS = ("gmp_layer", "gmp_global", "prox_gmp_layer",
                 "prox_gmp_global")


def parse(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--epochs", type=int, default=None,
                 help=f"epochs per run (default {EPOCHS}, {EPOCHS_QUICK} with "
                 "--quick)")
  p.add_argument("--seeds", type=int, default=None,
                 help=f"number of seeds, 0..n-1 (default {SEEDS}, "
                 f"{SEEDS_QUICK} with --quick)")
  p.add_argument("--lams", default=",".join(f"{l:g}" for l in LAMS),
                 help="comma-separated L1 strengths (default %(default)s)")
  p.add_argument("--no-prox-prune", action="store_true",
                 help="skip method (4), proximal(adam, magnitude_prune)")
  p.add_argument("--quick", action="store_true",
                 help=f"{EPOCHS_QUICK} epochs, {SEEDS_QUICK} seed (smoke test)")
  p.add_argument("--out", default=OUT,
                 help="output prefix for .json/.md/.png (default %(default)s)")
  p.add_argument("--no-progress", action="store_true",
                 help="no tqdm progress bars")
  args = p.parse_args(argv)
  if args.epochs is None:
    args.epochs = EPOCHS_QUICK if args.quick else EPOCHS
  if args.seeds is None:
    args.seeds = SEEDS_QUICK if args.quick else SEEDS
  args.lams = [float(s) for s in args.lams.split(",") if s.strip()]
  if args.epochs < 1 or args.seeds < 1 or not args.lams:
    p.error("need --epochs >= 1, --seeds >= 1 and at least one lam")
  return args


# ---------------------------------------------------------------------------
# Data, model, training.
# ---------------------------------------------------------------------------


def init_params(seed: int) -> dict[str, Any]:
  keys = jax.random.split(jax.random.key(seed), len(SIZES) - 1)
  init = jax.nn.initializers.lecun_normal()
  return {"layers": [
      {"kernel": init(k, (n_in, n_out), jnp.float32),
       "bias": jnp.zeros((n_out,), jnp.float32)}
      for k, n_in, n_out in zip(keys, SIZES[:-1], SIZES[1:])]}


def kernel_mask(params) -> dict[str, Any]:
  return {"layers": [{"kernel": True, "bias": False} for _ in params["layers"]]}


def apply(params, x):
  layers = params["layers"]
  for i, layer in enumerate(layers):
    x = x @ layer["kernel"] + layer["bias"]
    if i < len(layers) - 1:
      x = jax.nn.relu(x)
  return x


def loss_fn(params, x, y):
  return optax.softmax_cross_entropy_with_integer_labels(apply(params, x),
                                                         y).mean()


def kernels(params) -> list[jax.Array]:
  return [layer["kernel"] for layer in params["layers"]]


def kernel_zeros(params) -> tuple[int, int, list[int]]:
  """(exact zeros in all kernels, kernel size, zeros per kernel)."""
  rep = optax_l1.sparsity_report(kernels(params))
  return rep.zeros, rep.size, [l.zeros for l in rep.leaves]


class Trainer:
  """Jitted training; one compiled epoch per optimizer family.

  ``make_opt(target)`` builds the optimizer; ``target`` (the pruning
  sparsity) is passed to the compiled epoch as a traced float32 scalar, so one
  compilation serves every seed and every target (magnitude_prune then
  evaluates its schedule on the device in float32, see its docstring).
  """

  def __init__(self, data, progress: bool):
    self.data = data
    self.progress = progress
    self._compiled: dict[Any, Any] = {}
    X_tr, y_tr, X_te, y_te = data

    @jax.jit
    def evaluate(params):
      acc_te = jnp.mean(apply(params, X_te).argmax(-1) == y_te)
      acc_tr = jnp.mean(apply(params, X_tr).argmax(-1) == y_tr)
      return acc_te, acc_tr, loss_fn(params, X_tr, y_tr)
    self.evaluate = evaluate

  def _epoch_fn(self, make_opt: Callable[[Any], optax.GradientTransformation]):
    X_tr, y_tr = self.data[0], self.data[1]

    def epoch(params, opt_state, batches, target):
      optimizer = make_opt(target)

      def step(carry, idx):
        params, opt_state = carry
        grads = jax.grad(loss_fn)(params, X_tr[idx], y_tr[idx])
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None
      (params, opt_state), _ = jax.lax.scan(step, (params, opt_state),
                                            batches)
      return params, opt_state
    return epoch

  def train(self, key, make_opt, target: float, seed: int,
            orders: np.ndarray, desc: str) -> dict:
    """Trains a fresh MLP (init from ``seed``) on the given batch orders."""
    from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
    params = init_params(seed)
    # The state's structure does not depend on the target.
    opt_state = make_opt(0.5).init(params)
    target = jnp.asarray(target, jnp.float32)
    compile_s = 0.0
    if key not in self._compiled:
      t0 = time.perf_counter()
      self._compiled[key] = jax.jit(
          self._epoch_fn(make_opt), donate_argnums=(0, 1)).lower(
              params, opt_state, jnp.asarray(orders[0]), target).compile()
      compile_s = time.perf_counter() - t0
    compiled = self._compiled[key]
    train_s = 0.0
    curve = {"test_accuracy": [], "kernel_zeros": []}
    for e in tqdm(range(len(orders)), desc=desc, leave=False,
                  disable=not self.progress, dynamic_ncols=True):
      batches = jnp.asarray(orders[e])
      t0 = time.perf_counter()
      params, opt_state = compiled(params, opt_state, batches, target)
      jax.block_until_ready(params)
      train_s += time.perf_counter() - t0
      curve["test_accuracy"].append(float(self.evaluate(params)[0]))
      curve["kernel_zeros"].append(kernel_zeros(params)[0])
    acc_te, acc_tr, loss_tr = (float(v) for v in self.evaluate(params))
    zeros, size, per_layer = kernel_zeros(params)
    bias_zeros = sum(int(jnp.sum(l["bias"] == 0)) for l in params["layers"])
    return {"seed": seed, "test_accuracy": acc_te, "train_accuracy": acc_tr,
            "train_loss": loss_tr, "kernel_zeros": zeros,
            "kernel_size": size, "kernel_sparsity": zeros / size,
            "zeros_per_kernel": per_layer, "bias_zeros": bias_zeros,
            "train_s": train_s, "compile_s": compile_s, "curve": curve,
            "_params": jax.device_get(params)}


# ---------------------------------------------------------------------------
# Optimizers.
# ---------------------------------------------------------------------------


def schedule(epochs: int, steps_per_epoch: int) -> dict[str, int]:
  """begin/end/update_every for magnitude_prune, ~10% -> ~70% of training."""
  total = epochs * steps_per_epoch
  begin = int(round(BEGIN_FRAC * total))
  span = max(int(round(END_FRAC * total)) - begin, 0)
  every = max(1, span // N_MASK_UPDATES)
  end = begin + (span // every) * every  # a multiple of update_every
  return {"begin_step": begin, "end_step": end, "update_every": every,
          "total_steps": total}


def make_optimizer(method: str, *, lam: Optional[float] = None,
                   target: Optional[float] = None,
                   sched: Optional[dict] = None,
                   params=None) -> optax.GradientTransformation:
  mask = kernel_mask(params)
  if method == "dense":
    return optax.adam(LR)
  if method == "prox_l1":
    return optax_l1.proximal(optax.adam(LR),
                             optax_l1.prox_l1(lam, LR, mask=mask))
  scope = "layer" if method.endswith("layer") else "global"
  prune = optax_l1.magnitude_prune(
      target, begin_step=sched["begin_step"], end_step=sched["end_step"],
      update_every=sched["update_every"], power=3, scope=scope, mask=mask)
  if method.startswith("prox_gmp"):
    return optax_l1.proximal(optax.adam(LR), prune)
  return optax.chain(optax.adam(LR), prune)


# ---------------------------------------------------------------------------
# Reporting.
# ---------------------------------------------------------------------------


def summarize(runs: list[dict]) -> dict:
  def stats(key):
    v = np.array([r[key] for r in runs], np.float64)
    return {"mean": float(v.mean()), "min": float(v.min()),
            "max": float(v.max()), "per_seed": v.tolist()}
  out = {k: stats(k) for k in ("test_accuracy", "train_accuracy",
                               "train_loss", "kernel_sparsity", "train_s",
                               "compile_s")}
  per = np.array([r["zeros_per_kernel"] for r in runs], np.float64)
  out["zeros_per_kernel_mean"] = per.mean(axis=0).tolist()
  return out


def fmt_pm(s: dict, scale: float = 100.0, digits: int = 1) -> str:
  m = s["mean"] * scale
  if len(s["per_seed"]) == 1:
    return f"{m:.{digits}f}"
  half = (s["max"] - s["min"]) * scale / 2
  return f"{m:.{digits}f} ± {half:.{digits}f}"


def markdown(rows: list[dict], layer_sizes: list[int], meta: dict) -> str:
  n_seeds = meta["seeds"]
  eq = meta["prox_gmp_bitwise_equal_to_chain"]["equal"]
  n = meta["prox_gmp_bitwise_equal_to_chain"]["runs"]
  head = ("| method | lam / target S | kernel zeros (%) | zeros per kernel "
          "L1 / L2 / L3 (%) | test acc (%) | train acc (%) | train time (s) |")
  lines = [head, "|" + "---|" * 7]
  for r in rows:
    s = r["summary"]
    if r["method"] == "dense":
      setting = "-"
    elif r["method"] == "prox_l1":
      setting = f"lam={r['lam']:g}"
    else:
      tg = r["targets"]
      tg_s = (f"{100 * np.mean(tg):.1f}%" if len(tg) == 1 or np.ptp(tg) == 0
              else "/".join(f"{100 * t:.1f}" for t in tg) + "%")
      setting = f"S={tg_s} (lam={r['lam']:g})"
    per = " / ".join(f"{100 * z / n:.1f}" for z, n in
                     zip(s["zeros_per_kernel_mean"], layer_sizes))
    lines.append(
        f"| {METHODS[r['method']][0]} | {setting} | "
        f"{fmt_pm(s['kernel_sparsity'])} | {per} | "
        f"{fmt_pm(s['test_accuracy'])} | {fmt_pm(s['train_accuracy'])} | "
        f"{s['train_s']['mean']:.2f} |")
  sched = meta["schedule"]
  notes = [
      "",
      f"Mean over {n_seeds} seed(s) ({', '.join(map(str, range(n_seeds)))})"
      + ("; `a ± b`: mean ± half the range over seeds." if n_seeds > 1
         else "."),
      f"MLP 64-256-256-10 on sklearn digits ({meta['n_train']} train / "
      f"{meta['n_test']} test; one test sample = "
      f"{100 / meta['n_test']:.2f}%), Adam lr {LR:g}, batch {BATCH}, "
      f"{meta['epochs']} epochs = {sched['total_steps']} steps. "
      "Kernel zeros: fraction of the 84,480 kernel weights exactly 0.0 "
      "(biases are never penalized or pruned).",
      f"Pruning: cubic schedule, begin_step={sched['begin_step']}, "
      f"end_step={sched['end_step']}, update_every={sched['update_every']}; "
      "target S = the kernel sparsity the prox_l1 run with the same lam and "
      "the same seed reached (per-seed targets are listed when they differ).",
      "The target is passed to the compiled epoch as a traced float32 scalar "
      "(one compilation per method), so magnitude_prune evaluates its "
      "schedule on the device in float32.",
      *([f"proximal(adam, magnitude_prune) vs chain(adam, magnitude_prune): "
         f"final params bitwise equal in {eq} of {n} runs"
         + (" (expected: the pruned set only grows, so the moment reset "
            "never touches a weight that is used again)." if eq == n else
            ".")] if n else []),
      "Train time: the jitted epochs only (compilation excluded), on a "
      f"shared {meta['machine']['cpus_usable']}-core CPU ("
      f"{meta['machine']['cpu_model']}); load average at start "
      f"{meta['machine']['loadavg_start']}: timings are indicative.",
      f"Command: `{meta['machine']['command']}`; wall time "
      f"{meta['wall_s']:.0f} s.",
  ]
  return "\n".join(lines + notes) + "\n"


def plot(rows: list[dict], path: pathlib.Path, meta: dict) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7.5, 5))
  all_x = [100.0]
  for method, (label, marker, color) in METHODS.items():
    rs = [r for r in rows if r["method"] == method]
    if not rs:
      continue
    # x: nonzero fraction on a log axis (inverted), labelled by sparsity.
    xs = [100 * (1 - r["summary"]["kernel_sparsity"]["mean"]) for r in rs]
    ys = [100 * r["summary"]["test_accuracy"]["mean"] for r in rs]
    lo = [y - 100 * r["summary"]["test_accuracy"]["min"]
          for y, r in zip(ys, rs)]
    hi = [100 * r["summary"]["test_accuracy"]["max"] - y
          for y, r in zip(ys, rs)]
    all_x += xs
    order = np.argsort(xs)
    hollow = method.startswith("prox_gmp")  # often on top of the chain's
    ax.errorbar(np.array(xs)[order], np.array(ys)[order],
                yerr=[np.array(lo)[order], np.array(hi)[order]],
                marker=marker, color=color, label=label, capsize=3,
                markersize=12 if (hollow or method == "dense") else 7,
                markerfacecolor="none" if hollow else color,
                markeredgewidth=1.5 if hollow else 1.0,
                linestyle="none" if method == "dense" else
                (":" if hollow else "-"), alpha=0.85)
    if method == "dense":
      ax.axhline(ys[0], color=color, linestyle="--", linewidth=0.8)
  ax.set_xscale("log")
  lo_x = max(min(all_x) * 0.7, 1e-3)
  ticks = [t for t in (100, 50, 20, 10, 5, 2, 1, 0.5, 0.2, 0.1) if t >= lo_x]
  ax.set_xticks(ticks)
  ax.set_xticklabels([f"{100 - t:g}" for t in ticks])
  ax.minorticks_off()
  ax.set_xlim(120, lo_x)
  ax.set_xlabel("kernel weights exactly 0.0 (%)  [log scale in the nonzero "
                "fraction]")
  ax.set_ylabel("test accuracy (%)")
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=8, loc="best", framealpha=0.8)
  seeds = meta["seeds"]
  ax.set_title(
      f"Digits MLP 64-256-256-10, Adam lr {LR:g}, batch {BATCH}, "
      f"{meta['epochs']} epochs\nprox L1 vs gradual magnitude pruning at the "
      f"prox's sparsity (mean of {seeds} seed{'s' if seeds > 1 else ''}; "
      "bars: min-max)", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


# ---------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> dict:
  args = parse(argv)
  wall0 = time.perf_counter()
  command = "PYTHONPATH=. " + " ".join(
      shlex.quote(a) for a in [sys.executable] + sys.argv)
  machine = _machine.machine_info(command)
  data = _common.digits()
  n_train, n_test = int(data[0].shape[0]), int(data[2].shape[0])
  steps_per_epoch = n_train // BATCH
  sched = schedule(args.epochs, steps_per_epoch)
  seeds = list(range(args.seeds))
  # Per seed: the minibatch order of every epoch (shared by all methods).
  orders = {}
  for s in seeds:
    rng = np.random.default_rng(1000 + s)
    orders[s] = np.stack([
        rng.permutation(n_train)[:steps_per_epoch * BATCH].reshape(
            steps_per_epoch, BATCH) for _ in range(args.epochs)])
  like = init_params(0)
  layer_sizes = [int(k.size) for k in kernels(like)]
  methods = ["gmp_layer", "gmp_global"]
  if not args.no_prox_prune:
    methods += ["prox_gmp_layer", "prox_gmp_global"]

  print(f"digits: {n_train} train / {n_test} test, {steps_per_epoch} "
        f"steps/epoch, {args.epochs} epochs, seeds {seeds}, lams {args.lams}; "
        f"pruning schedule {sched}", flush=True)

  trainer = Trainer(data, not args.no_progress)

  def run(method, seed, lam=None, target=0.0):
    def make_opt(t):
      return make_optimizer(method, lam=lam, target=t, sched=sched,
                            params=like)
    tag = method + ("" if lam is None else f" lam={lam:g}")
    # dense / prox_l1 compile once per lam; pruning once per method.
    key = (method, None if method in PRUNE_METHODS else lam)
    r = trainer.train(key, make_opt, target, seed, orders[seed],
                      f"{tag} seed={seed}")
    print(f"  {tag:<28} seed {seed}: zeros {r['kernel_sparsity']:7.2%}  "
          f"test {r['test_accuracy']:.2%}  train {r['train_accuracy']:.2%}  "
          f"{r['train_s']:.2f} s" + (f" (+{r['compile_s']:.1f} s compile)"
                                     if r["compile_s"] else ""), flush=True)
    return r

  rows = []
  rows.append({"method": "dense", "lam": None, "targets": None,
               "runs": [run("dense", s) for s in seeds]})
  for lam in args.lams:
    prox_runs = [run("prox_l1", s, lam=lam) for s in seeds]
    rows.append({"method": "prox_l1", "lam": lam, "targets": None,
                 "runs": prox_runs})
    targets = [r["kernel_sparsity"] for r in prox_runs]
    for method in methods:
      runs = []
      for s, target in zip(seeds, targets):
        if not 0.0 <= target < 1.0:
          raise SystemExit(f"prox_l1 lam={lam} seed={s} reached sparsity "
                           f"{target}; magnitude_prune needs [0, 1).")
        r = run(method, s, lam=lam, target=target)
        # Sanity: the count magnitude_prune promises (round per leaf under
        # "layer", round over all kernels under "global").
        # The target is traced, so the count is computed on the device in
        # float32 as round(float32(S) * 1.0 * size) at the last update.
        t32 = np.float32(target)
        if method.endswith("global"):
          want = int(np.rint(t32 * np.float32(sum(layer_sizes))))
        else:
          want = sum(int(np.rint(t32 * np.float32(n))) for n in layer_sizes)
        r["expected_kernel_zeros"] = want
        if r["kernel_zeros"] != want:
          print(f"  WARNING: {method} seed {s}: {r['kernel_zeros']} kernel "
                f"zeros, magnitude_prune promises {want}", flush=True)
        runs.append(r)
      rows.append({"method": method, "lam": lam, "targets": targets,
                   "runs": runs})
  # proximal(adam, magnitude_prune) resets Adam's moments of pruned weights;
  # with a schedule whose pruned set only grows those weights never come
  # back, so the kept weights may follow exactly the chain's trajectory.
  by_key = {(r["method"], r["lam"]): r for r in rows}
  for r in rows:
    if r["method"].startswith("prox_gmp"):
      twin = by_key[(r["method"][len("prox_"):], r["lam"])]
      r["bitwise_equal_to_chain"] = [
          all(np.array_equal(a, b) for a, b in zip(
              jax.tree.leaves(x["_params"]), jax.tree.leaves(y["_params"])))
          for x, y in zip(r["runs"], twin["runs"])]
  for r in rows:
    for x in r["runs"]:
      x.pop("_params")
    r["summary"] = summarize(r["runs"])

  wall = time.perf_counter() - wall0
  machine["loadavg_end"] = _machine.loadavg()
  meta = {"epochs": args.epochs, "seeds": args.seeds, "lams": args.lams,
          "schedule": sched, "steps_per_epoch": steps_per_epoch,
          "n_train": n_train, "n_test": n_test, "batch": BATCH, "lr": LR,
          "sizes": list(SIZES), "kernel_sizes": layer_sizes,
          "machine": machine, "wall_s": wall,
          "quick": args.quick}
  eqs = [e for r in rows for e in r.get("bitwise_equal_to_chain", [])]
  eq, n = sum(eqs), len(eqs)
  meta["prox_gmp_bitwise_equal_to_chain"] = {"equal": eq, "runs": n}
  md = markdown(rows, layer_sizes, meta)
  prefix = pathlib.Path(args.out)
  prefix.parent.mkdir(parents=True, exist_ok=True)
  with open(prefix.with_suffix(".json"), "w") as f:
    json.dump({"meta": meta, "methods": {k: v[0] for k, v in METHODS.items()},
               "rows": rows}, f, indent=1)
  with open(prefix.with_suffix(".md"), "w") as f:
    f.write(f"# Proximal L1 vs gradual magnitude pruning at equal sparsity "
            f"(sklearn digits)\n\n{md}")
  plot(rows, prefix.with_suffix(".png"), meta)
  print()
  print(md)
  print(f"wrote {prefix}.{{json,md,png}}; wall time {wall:.1f} s")
  return {"meta": meta, "rows": rows}


if __name__ == "__main__":
  main()
