"""A small transformer trained with the usual recipe, made smaller: heads and
neurons removed, same outputs, faster (Flax NNX).

A decoder-only character-level transformer (pre-LayerNorm, 4 layers, width
128, 4 heads of 32, GELU MLP 512, learned positions, tied embedding; 128
characters of context) trained on the Python standard library's own ``.py``
sources: every ``.py`` file under ``sysconfig.get_paths()["stdlib"]`` (not
``site-packages``), sorted by path, every 10th file held out for validation.
Characters are ASCII codes (anything else is code 0). Training draws
random windows of the training files' concatenation, ``--batch`` per step.

Every variant starts from the same initialization, sees the same minibatches
for the same number of steps, and is trained with the recipe people train
transformers with::

  optax.chain(optax.clip_by_global_norm(1.0),
              optax.adamw(warmup_cosine, weight_decay=0.1, mask=kernels))

(no decay on biases, LayerNorms and embeddings). The variants:

* ``dense``: that optimizer alone.
* ``group lasso``: ``optax_l1.proximal(that, prox_group_lasso(...),
  prox_group_lasso(...))``, the group lasso in AdamW's own metric, with
  ``groups=optax_l1.group_by_path(...)``: one group per attention head (its
  query, key and value columns and its output rows: slices of four leaves)
  at strength ``1.5 * lam * sqrt(16384)``, and one per MLP neuron (its
  ``fc1`` column and bias and its ``fc2`` row) at ``lam * sqrt(257)``
  (``scale_by_size=True``), for several ``lam``. The strength is 0 for the
  first 20% of the steps (a zero group has a zero gradient and never comes
  back, so it must not remove units before they learn), ramps up to 50%,
  and falls to a tenth over the last quarter.
* ``2:4``: ``proximal(that, nm_prune(2, 4))`` on every attention and MLP
  kernel, along its input (reduction) axis: dynamic N:M sparsity from step 0
  (``nm_prune`` recomputes the pattern at every step).
* ``magnitude``: ``proximal(that, magnitude_prune(s, scope="global"))``,
  gradual (cubic, 10% to 60% of the steps), to the nonzero count of the
  selected group-lasso model's attention and MLP kernels (the selected model:
  the smallest within ``--max-gap`` of dense in validation bits/char).

A zero group is then removed for real: :func:`compact` builds the smaller
dense model (fewer heads per layer, narrower MLPs; a layer with no head left
keeps only its residual path, one with no neuron left only the ``fc2`` bias)
and checks that its logits equal the sparse model's on the validation set.
Last, the jitted forward pass of the compact model is timed against the
dense one at batch 1 and batch 32 (CPU tokens per second).

    python examples/transformer_heads.py --quick   # smoke test, < 1 min
    python examples/transformer_heads.py --results benchmarks/results/transformer_heads

The full run takes 7-12 minutes on a 2-core CPU; it writes
``examples_out/transformer_heads.png`` and, with ``--results PREFIX``,
``PREFIX.md`` (tables), ``PREFIX.json`` (every number, the machine) and
``PREFIX.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import shlex
import sys
import sysconfig
import time
from collections.abc import Sequence
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import optax_l1

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _common  # pylint: disable=g-import-not-at-top,g-bad-import-order

VOCAB = 128          # ASCII; every other character is code 0
VAL_EVERY = 10       # every 10th file (sorted by path) is validation
PEAK_LR = 3e-3
WARMUP = 0.05        # fraction of the steps
WEIGHT_DECAY = 0.1
CLIP = 1.0


class Config(NamedTuple):
  """Shapes: ``heads[l]`` and ``hidden[l]`` may differ per layer (compact)."""
  layers: int = 4
  d: int = 128
  head_dim: int = 32
  heads: tuple[int, ...] = (4, 4, 4, 4)
  hidden: tuple[int, ...] = (512, 512, 512, 512)
  context: int = 128
  vocab: int = VOCAB


FULL = dict(config=Config(), steps=600, batch=16, lams=(1e-5, 2e-5, 3e-5),
            n_val=256, repeats=30)
# --quick: a 2-layer model, few steps, a strength that removes groups fast.
QUICK = dict(config=Config(layers=2, d=64, head_dim=16, heads=(4, 4),
                           hidden=(128, 128), context=32),
             steps=60, batch=16, lams=(7e-4,), n_val=32, repeats=5)


# ---------------------------------------------------------------------------
# Data: the standard library's own sources.
# ---------------------------------------------------------------------------


def stdlib_files() -> list[pathlib.Path]:
  """Every ``.py`` under the stdlib folder (no site-/dist-packages), sorted."""
  root = pathlib.Path(sysconfig.get_paths()["stdlib"])
  files = [p for p in root.rglob("*.py")
           if not {"site-packages", "dist-packages"}
           & set(p.relative_to(root).parts)]
  return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def encode(text: str) -> np.ndarray:
  codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
  return np.where(codes < VOCAB, codes, 0).astype(np.uint8)


def corpus() -> dict[str, Any]:
  """``train`` / ``val``: uint8 codes of the files' concatenations."""
  files = stdlib_files()
  parts: dict[str, list[np.ndarray]] = {"train": [], "val": []}
  for i, f in enumerate(files):
    text = f.read_text(encoding="utf-8", errors="replace")
    parts["val" if i % VAL_EVERY == 0 else "train"].append(encode(text))
  return {"files": len(files), "root": sysconfig.get_paths()["stdlib"],
          **{k: np.concatenate(v) for k, v in parts.items()}}


def val_windows(val: np.ndarray, n: int, context: int) -> np.ndarray:
  """``n`` windows of ``context + 1`` codes, evenly spaced over ``val``."""
  starts = np.linspace(0, len(val) - context - 1, n).astype(np.int64)
  return val[starts[:, None] + np.arange(context + 1)]


# ---------------------------------------------------------------------------
# The model: explicit layouts, so that groups are slices.
# ---------------------------------------------------------------------------


class Attention(nnx.Module):
  """Causal self-attention; query/key/value ``(d, heads, head_dim)``, out
  ``(heads, head_dim, d)``; no biases."""

  def __init__(self, d: int, heads: int, head_dim: int, out_std: float,
               *, rngs: nnx.Rngs):
    normal = jax.nn.initializers.normal(0.02)
    self.query = nnx.Param(normal(rngs.params(), (d, heads, head_dim)))
    self.key = nnx.Param(normal(rngs.params(), (d, heads, head_dim)))
    self.value = nnx.Param(normal(rngs.params(), (d, heads, head_dim)))
    self.out = nnx.Param(jax.nn.initializers.normal(out_std)(
        rngs.params(), (heads, head_dim, d)))

  def __call__(self, x: jax.Array) -> jax.Array:
    q = jnp.einsum("btd,dhk->bthk", x, self.query[...])
    k = jnp.einsum("btd,dhk->bthk", x, self.key[...])
    v = jnp.einsum("btd,dhk->bthk", x, self.value[...])
    o = jax.nn.dot_product_attention(q, k, v, is_causal=True)
    return jnp.einsum("bthk,hkd->btd", o, self.out[...])


class MLP(nnx.Module):
  """``fc2(gelu(fc1(x)))``; fc1 ``(d, hidden)`` + bias, fc2 ``(hidden, d)``."""

  def __init__(self, d: int, hidden: int, out_std: float, *, rngs: nnx.Rngs):
    self.fc1 = nnx.Linear(d, hidden, kernel_init=jax.nn.initializers.normal(
        0.02), rngs=rngs)
    self.fc2 = nnx.Linear(hidden, d, kernel_init=jax.nn.initializers.normal(
        out_std), rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.fc2(jax.nn.gelu(self.fc1(x)))


class Block(nnx.Module):
  """Pre-LN block. With 0 heads there is no attention (the residual path
  only); with 0 neurons the MLP is its constant ``fc2`` bias, ``mlp_bias``."""

  def __init__(self, cfg: Config, heads: int, hidden: int, *,
               rngs: nnx.Rngs):
    out_std = 0.02 / math.sqrt(2 * cfg.layers)
    if heads:
      self.ln1 = nnx.LayerNorm(cfg.d, rngs=rngs)
      self.attn = Attention(cfg.d, heads, cfg.head_dim, out_std, rngs=rngs)
    if hidden:
      self.ln2 = nnx.LayerNorm(cfg.d, rngs=rngs)
      self.mlp = MLP(cfg.d, hidden, out_std, rngs=rngs)
    else:
      self.mlp_bias = nnx.Param(jnp.zeros(cfg.d))
    self.heads, self.hidden = heads, hidden

  def __call__(self, x: jax.Array) -> jax.Array:
    if self.heads:
      x = x + self.attn(self.ln1(x))
    if self.hidden:
      return x + self.mlp(self.ln2(x))
    return x + self.mlp_bias[...]


class Transformer(nnx.Module):
  """Decoder-only LM; logits ``(batch, time, vocab)`` with a tied embedding."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    normal = jax.nn.initializers.normal(0.02)
    self.embed = nnx.Param(normal(rngs.params(), (cfg.vocab, cfg.d)))
    self.pos = nnx.Param(normal(rngs.params(), (cfg.context, cfg.d)))
    self.layers = nnx.List([Block(cfg, h, n, rngs=rngs)
                            for h, n in zip(cfg.heads, cfg.hidden)])
    self.ln_f = nnx.LayerNorm(cfg.d, rngs=rngs)

  def __call__(self, tokens: jax.Array) -> jax.Array:
    x = self.embed[...][tokens] + self.pos[...][:tokens.shape[1]]
    for block in self.layers:
      x = block(x)
    return self.ln_f(x) @ self.embed[...].T


def build(cfg: Config, seed: int) -> tuple[Any, nnx.State]:
  graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(seed)),
                               nnx.Param)
  return graphdef, params


def apply_fn(graphdef: Any):
  return lambda params, tokens: nnx.merge(graphdef, params)(tokens)


def count(params: Any, nonzero: bool = False) -> int:
  return int(sum((np.count_nonzero(np.asarray(x)) if nonzero else x.size)
                 for x in jax.tree.leaves(params)))


# ---------------------------------------------------------------------------
# Which leaves: decay, groups, pruning.
# ---------------------------------------------------------------------------

# Weights (decayed, prunable): attention and MLP kernels. Not decayed: biases,
# LayerNorms, the embeddings.
KERNELS = (r"attn/(query|key|value|out)$", r"mlp/fc[12]/kernel$")

# One group per head of layer l: its query, key and value columns and its
# output rows (four leaves); one per MLP neuron: its fc1 column and bias and
# its fc2 row.
HEAD_GROUPS = {
    r"layers/(\d+)/attn/(query|key|value)$": ("heads{0}", 1),
    r"layers/(\d+)/attn/out$": ("heads{0}", 0),
}
NEURON_GROUPS = {
    r"layers/(\d+)/mlp/fc1/(kernel|bias)$": ("neurons{0}", -1),
    r"layers/(\d+)/mlp/fc2/kernel$": ("neurons{0}", 0),
}
HEAD_FACTOR = 1.5  # heads' lam / neurons' lam (both scaled by sqrt(size))


def kernels_of(params: nnx.State) -> list[jax.Array]:
  """The attention and MLP kernels (the leaves KERNELS selects)."""
  keep = optax_l1.mask_by_path(*KERNELS)(params)
  return [p for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(keep))
          if m]


def recipe(steps: int) -> optax.GradientTransformation:
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, PEAK_LR, max(1, int(WARMUP * steps)), steps,
      end_value=0.1 * PEAK_LR)
  return optax.chain(
      optax.clip_by_global_norm(CLIP),
      optax.adamw(schedule, b2=0.99, weight_decay=WEIGHT_DECAY,
                  mask=optax_l1.mask_by_path(*KERNELS)))


# The group-lasso strength over training, as (fraction of the steps, fraction
# of lam), linear in between: 0 at first, up to lam, then lower at the end.
LAM_KNOTS = ((0.0, 0.0), (0.2, 0.0), (0.5, 1.0), (0.75, 1.0), (1.0, 0.1))


def lam_schedule(steps: int, lam: float) -> optax.Schedule:
  """``lam`` times :data:`LAM_KNOTS`' profile at each step.

  0 for the first 20% of the steps: a zero head or neuron has a zero
  gradient (every term of its gradient holds one of its own zero slices), so
  the group lasso never brings one back, and from the start it would remove
  units before they learn anything. Then a ramp to ``lam``, and at the end a
  lower strength, which shrinks the surviving groups less while still
  holding the removed ones at exactly 0.
  """
  xs = np.array([k[0] for k in LAM_KNOTS]) * steps
  ys = np.array([k[1] for k in LAM_KNOTS]) * lam
  return lambda count: jnp.interp(count, xs, ys)


def group_lasso(steps: int, lam: float, head_factor: float = HEAD_FACTOR
                ) -> optax.GradientTransformation:
  """The recipe, with the group lasso on heads and neurons in its metric.

  ``lam * sqrt(group size)`` per neuron (257 entries at d 128) and
  ``head_factor`` times that per head (16384 entries).
  """
  return optax_l1.proximal(
      recipe(steps),
      optax_l1.prox_group_lasso(
          lam_schedule(steps, head_factor * lam),
          groups=optax_l1.group_by_path(HEAD_GROUPS), scale_by_size=True),
      optax_l1.prox_group_lasso(
          lam_schedule(steps, lam),
          groups=optax_l1.group_by_path(NEURON_GROUPS), scale_by_size=True))


def two_four(steps: int) -> optax.GradientTransformation:
  # Blocks of 4 along each kernel's input (reduction) axis: axis 0 of
  # query/key/value (d, h, k), fc1 (d, h) and fc2 (h, d); axis 1 (head_dim)
  # of out (h, k, d).
  return optax_l1.proximal(
      recipe(steps),
      optax_l1.nm_prune(2, 4, axis=0, mask=optax_l1.mask_by_path(
          r"attn/(query|key|value)$", r"mlp/fc[12]/kernel$")),
      optax_l1.nm_prune(2, 4, axis=1,
                        mask=optax_l1.mask_by_path(r"attn/out$")))


def magnitude(steps: int, sparsity: float) -> optax.GradientTransformation:
  return optax_l1.proximal(recipe(steps), optax_l1.magnitude_prune(
      sparsity, begin_step=int(0.1 * steps), end_step=int(0.6 * steps),
      update_every=max(1, steps // 100), scope="global",
      mask=optax_l1.mask_by_path(*KERNELS)))


# ---------------------------------------------------------------------------
# Training and evaluation.
# ---------------------------------------------------------------------------


def lm_loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), targets.astype(jnp.int32)).mean()


def train(graphdef: Any, params: nnx.State, opt: optax.GradientTransformation,
          train_codes: jax.Array, offsets: np.ndarray, context: int,
          desc: str, chunk: int = 50) -> dict[str, Any]:
  """``len(offsets)`` steps; ``offsets[s]`` are step ``s``'s window starts.

  The steps run in jitted ``lax.scan`` chunks of equal length (at most
  ``chunk``, a divisor of the step count: one compilation).
  """
  apply = apply_fn(graphdef)
  window = jnp.arange(context + 1)

  def loss_fn(p, starts):
    seq = train_codes[starts[:, None] + window].astype(jnp.int32)
    return lm_loss(apply(p, seq[:, :-1]), seq[:, 1:])

  @jax.jit
  def run(p, state, starts):
    def step(carry, s):
      p, state = carry
      loss, grads = jax.value_and_grad(loss_fn)(p, s)
      updates, state = opt.update(grads, state, p)
      return (optax.apply_updates(p, updates), state), loss
    (p, state), losses = jax.lax.scan(step, (p, state), starts)
    return p, state, losses.mean()

  state = opt.init(params)
  steps = len(offsets)
  chunk = max(c for c in range(1, min(chunk, steps) + 1) if steps % c == 0)
  chunks = offsets.reshape(steps // chunk, chunk, -1)
  t0 = time.perf_counter()
  compiled = run.lower(params, state, chunks[0]).compile()
  compile_s = time.perf_counter() - t0
  losses = []
  t0 = time.perf_counter()
  for c in _common.progress(chunks, desc):
    params, state, loss = compiled(params, state, c)
    losses.append(float(loss))
  return {"params": params, "train_loss": losses, "chunk": chunk,
          "train_seconds": time.perf_counter() - t0,
          "compile_seconds": compile_s}


def logits_on(apply, params, windows: np.ndarray, batch: int = 64):
  f = jax.jit(apply)
  return np.concatenate([np.asarray(f(params, jnp.asarray(
      windows[i:i + batch, :-1], jnp.int32))) for i in range(0, len(windows),
                                                            batch)])


def bits_per_char(logits: np.ndarray, windows: np.ndarray) -> float:
  ce = lm_loss(jnp.asarray(logits), jnp.asarray(windows[:, 1:]))
  return float(ce) / math.log(2)


# ---------------------------------------------------------------------------
# Structural compaction.
# ---------------------------------------------------------------------------


def _np(x: Any) -> np.ndarray:
  return np.asarray(x[...] if hasattr(x, "get_value") else x)


def live_units(params: nnx.State, cfg: Config
               ) -> tuple[list[np.ndarray], list[np.ndarray]]:
  """Per layer, the heads and the MLP neurons that can change the output.

  A head acts iff its value and output slices both have a nonzero (with
  either all zero it adds exactly 0). A neuron needs a unit iff its ``fc2``
  row and its ``fc1`` column both have a nonzero (with a zero ``fc1`` column
  it adds the constant ``gelu(bias) * fc2 row``, which :func:`compact` folds
  into ``fc2``'s bias).
  """
  heads, neurons = [], []
  for l in range(cfg.layers):
    a, m = params["layers"][l]["attn"], params["layers"][l]["mlp"]
    v, o = _np(a["value"]), _np(a["out"])
    heads.append(np.flatnonzero(np.any(v != 0, axis=(0, 2))
                                & np.any(o != 0, axis=(1, 2))))
    w1, w2 = _np(m["fc1"]["kernel"]), _np(m["fc2"]["kernel"])
    neurons.append(np.flatnonzero(np.any(w2 != 0, axis=1)
                                  & np.any(w1 != 0, axis=0)))
  return heads, neurons


def compact(params: nnx.State, cfg: Config
            ) -> tuple[Config, Any, nnx.State]:
  """The smaller dense model that computes the same function.

  Keeps, per layer, the heads and neurons of :func:`live_units` (slices of
  the same arrays); a neuron whose ``fc1`` column is all zero but whose bias
  is not contributes the constant ``gelu(bias) * fc2 row``, added to the
  ``fc2`` bias. Returns ``(config, graphdef, params)`` of the compact model.
  """
  heads, neurons = live_units(params, cfg)
  small = cfg._replace(heads=tuple(len(h) for h in heads),
                              hidden=tuple(len(n) for n in neurons))
  graphdef, new = build(small, 0)
  new["embed"][...] = _np(params["embed"])
  new["pos"][...] = _np(params["pos"])
  for name in ("scale", "bias"):
    new["ln_f"][name][...] = _np(params["ln_f"][name])
  for l in range(cfg.layers):
    src, dst = params["layers"][l], new["layers"][l]
    h = heads[l]
    if len(h):
      for name in ("scale", "bias"):
        dst["ln1"][name][...] = _np(src["ln1"][name])
      for name in ("query", "key", "value"):
        dst["attn"][name][...] = _np(src["attn"][name])[:, h]
      dst["attn"]["out"][...] = _np(src["attn"]["out"])[h]
    m = src["mlp"]
    w1, b1 = _np(m["fc1"]["kernel"]), _np(m["fc1"]["bias"])
    w2, b2 = _np(m["fc2"]["kernel"]), _np(m["fc2"]["bias"])
    const = ~np.any(w1 != 0, axis=0) & (b1 != 0) & np.any(w2 != 0, axis=1)
    if np.any(const):
      fold = np.asarray(jax.nn.gelu(jnp.asarray(b1[const]))).astype(
          np.float64) @ w2[const].astype(np.float64)
      b2 = (b2.astype(np.float64) + fold).astype(b2.dtype)
    n = neurons[l]
    if len(n):
      for name in ("scale", "bias"):
        dst["ln2"][name][...] = _np(src["ln2"][name])
      dst["mlp"]["fc1"]["kernel"][...] = w1[:, n]
      dst["mlp"]["fc1"]["bias"][...] = b1[n]
      dst["mlp"]["fc2"]["kernel"][...] = w2[n]
      dst["mlp"]["fc2"]["bias"][...] = b2
    else:
      dst["mlp_bias"][...] = b2
  return small, graphdef, new


# ---------------------------------------------------------------------------
# Throughput.
# ---------------------------------------------------------------------------


def throughput(models: dict[str, tuple[Any, nnx.State]], batch: int,
               context: int, repeats: int) -> dict[str, float]:
  """Tokens/s of each jitted forward pass, median of ``repeats`` calls.

  The models are timed in turn within each repeat (interleaved, so that a
  change of load hits all of them alike), after two warm-up calls each.
  """
  tokens = jnp.asarray(np.random.default_rng(0).integers(
      0, VOCAB, (batch, context)), jnp.int32)
  fns = {}
  for name, (graphdef, params) in models.items():
    f = jax.jit(apply_fn(graphdef)).lower(params, tokens).compile()
    for _ in range(2):
      f(params, tokens).block_until_ready()
    fns[name] = (f, params)
  times = {name: [] for name in models}
  for _ in range(repeats):
    for name, (f, params) in fns.items():
      t0 = time.perf_counter()
      f(params, tokens).block_until_ready()
      times[name].append(time.perf_counter() - t0)
  return {name: batch * context / float(np.median(t))
          for name, t in times.items()}


# ---------------------------------------------------------------------------
# The run.
# ---------------------------------------------------------------------------


def parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--steps", type=int, default=None,
                 help=f"training steps of every variant (default "
                 f"{FULL['steps']}, {QUICK['steps']} with --quick)")
  p.add_argument("--batch", type=int, default=None,
                 help=f"sequences per step (default {FULL['batch']}, "
                 f"{QUICK['batch']} with --quick)")
  p.add_argument("--lams", type=float, nargs="+", default=None,
                 help=f"group-lasso strengths (default {FULL['lams']}, "
                 f"{QUICK['lams']} with --quick)")
  p.add_argument("--max-gap", type=float, default=0.03,
                 help="the selected group-lasso model is the smallest whose "
                 "val bits/char is within this fraction of dense "
                 "(default %(default)s)")
  p.add_argument("--seed", type=int, default=0,
                 help="init and minibatch seed (default %(default)s)")
  p.add_argument("--quick", action="store_true",
                 help="a 2-layer model, few steps: a smoke test")
  p.add_argument("--out", default="examples_out",
                 help="folder for the PNG (default %(default)s)")
  p.add_argument("--results", default=None,
                 help="also write PREFIX.md, PREFIX.json and PREFIX.png "
                 "(e.g. benchmarks/results/transformer_heads)")
  args = p.parse_args(None if argv is None else [str(a) for a in argv])
  preset = QUICK if args.quick else FULL
  for k in ("steps", "batch", "lams"):
    if getattr(args, k) is None:
      setattr(args, k, preset[k])
  args.config, args.n_val, args.repeats = (
      preset["config"], preset["n_val"], preset["repeats"])
  args.out = pathlib.Path(args.out)
  args.out.mkdir(parents=True, exist_ok=True)
  return args


def kernel_params(cfg: Config) -> int:
  """Attention and MLP kernel entries of a model of these shapes."""
  return sum(4 * h * cfg.head_dim * cfg.d + 2 * n * cfg.d
             for h, n in zip(cfg.heads, cfg.hidden))


def main(argv: Optional[Sequence[str]] = None) -> dict[str, Any]:
  """Runs the example; returns every number it prints."""
  args = parse(argv)
  cfg, steps, batch = args.config, args.steps, args.batch
  wall0 = time.perf_counter()
  machine = _machine_info(argv)
  data = corpus()
  windows = val_windows(data["val"], args.n_val, cfg.context)
  offsets = np.random.default_rng(args.seed).integers(
      0, len(data["train"]) - cfg.context - 1, (steps, batch))
  train_codes = jnp.asarray(data["train"])
  graphdef, params0 = build(cfg, args.seed)
  apply = apply_fn(graphdef)
  n_dense = count(params0)
  print(f"corpus: {data['files']} stdlib .py files ({data['root']}), "
        f"{len(data['train']):,} train / {len(data['val']):,} val chars; "
        f"val: {args.n_val} windows of {cfg.context}")
  print(f"model: {cfg.layers} layers, d {cfg.d}, {cfg.heads[0]} heads x "
        f"{cfg.head_dim}, MLP {cfg.hidden[0]}, {n_dense:,} params; {steps} "
        f"steps x {batch} sequences, AdamW peak lr {PEAK_LR:g}, seed "
        f"{args.seed}")

  results: dict[str, dict[str, Any]] = {}

  def run(key: str, label: str, opt: optax.GradientTransformation,
          **extra: Any) -> dict[str, Any]:
    r = train(graphdef, params0, opt, train_codes, offsets, cfg.context,
              label)
    p = r.pop("params")
    logits = logits_on(apply, p, windows)
    heads, neurons = live_units(p, cfg)
    r.update(label=label, bpc=bits_per_char(logits, windows),
             heads=[len(h) for h in heads],
             neurons=[len(n) for n in neurons],
             nonzero=count(p, nonzero=True),
             kernel_nonzero=count(kernels_of(p), nonzero=True), **extra)
    if key.startswith("gl"):
      small, small_graphdef, small_params = compact(p, cfg)
      small_logits = logits_on(apply_fn(small_graphdef), small_params,
                               windows)
      r["compact_max_abs_diff"] = float(np.max(np.abs(small_logits
                                                      - logits)))
      if not r["compact_max_abs_diff"] <= 1e-4:
        raise AssertionError(
            f"{label}: the compact model's logits differ from the sparse "
            f"model's by {r['compact_max_abs_diff']:.2e} > 1e-4")
      r["params"] = count(small_params)
      r["kernel_params"] = kernel_params(small)
      r["_compact"] = (small_graphdef, small_params)
    else:
      r["params"] = r["nonzero"]
    if key == "dense":
      r["_model"] = (graphdef, p)
    results[key] = r
    print(f"  {label:<34} val {r['bpc']:.4f} bits/char  heads "
          f"{sum(r['heads'])}/{sum(cfg.heads)} {r['heads']}  neurons "
          f"{sum(r['neurons'])}/{sum(cfg.hidden)} {r['neurons']}  params "
          f"{r['params']:,}  ({r['train_seconds']:.0f} s + "
          f"{r['compile_seconds']:.0f} s compile)" + (
              f"  compact max|dlogit| {r['compact_max_abs_diff']:.1e}"
              if "compact_max_abs_diff" in r else ""), flush=True)
    return r

  dense = run("dense", "dense AdamW", recipe(steps))
  for lam in args.lams:
    run(f"gl{lam:g}", f"group lasso lam {lam:g}", group_lasso(steps, lam),
        lam=lam)
  gl = [k for k in results if k.startswith("gl")]
  for k in gl:
    results[k]["gap"] = results[k]["bpc"] / dense["bpc"] - 1
  within = [k for k in gl if results[k]["gap"] <= args.max_gap]
  best = (min(within, key=lambda k: results[k]["params"]) if within
          else min(gl, key=lambda k: results[k]["gap"]))
  sparsity = 1 - results[best]["kernel_params"] / kernel_params(cfg)
  print(f"  selected: {results[best]['label']} (smallest within "
        f"{args.max_gap:.0%} of dense)" if within else
        f"  selected: {results[best]['label']} (none within "
        f"{args.max_gap:.0%}: the closest)")
  run("nm24", "2:4 (nm_prune)", two_four(steps))
  run("magnitude", f"magnitude prune, {1 - sparsity:.1%} kept",
      magnitude(steps, sparsity), sparsity=sparsity)
  for r in results.values():
    r["gap"] = r["bpc"] / dense["bpc"] - 1

  # Throughput: the jitted forward pass of each compact model vs dense.
  speed = {}
  for b in (1, 32):
    tps = throughput({"dense": results["dense"]["_model"],
                      **{k: results[k]["_compact"] for k in gl}},
                     b, cfg.context, args.repeats)
    speed[b] = tps
  for k in ["dense", *gl]:
    results[k]["tokens_per_s"] = {b: speed[b][k] for b in speed}
    results[k]["speedup"] = {b: speed[b][k] / speed[b]["dense"]
                             for b in speed}
  print("  CPU inference, jitted forward of "
        f"{cfg.context} tokens, tokens/s (x dense):")
  for k in ["dense", *gl]:
    r = results[k]
    print(f"    {r['label']:<32} batch 1: {r['tokens_per_s'][1]:>9,.0f} "
          f"({r['speedup'][1]:.2f}x)  batch 32: {r['tokens_per_s'][32]:>9,.0f}"
          f" ({r['speedup'][32]:.2f}x)")

  wall = time.perf_counter() - wall0
  machine["loadavg_end"] = _loadavg()
  rows = {k: {kk: vv for kk, vv in r.items() if not kk.startswith("_")}
          for k, r in results.items()}
  summary = {
      "config": cfg._asdict(), "steps": steps, "batch": batch,
      "seed": args.seed, "lams": list(args.lams), "peak_lr": PEAK_LR,
      "weight_decay": WEIGHT_DECAY, "clip": CLIP, "lam_knots": LAM_KNOTS,
      "head_factor": HEAD_FACTOR,
      "quick": args.quick, "files": data["files"],
      "train_chars": len(data["train"]), "val_chars": len(data["val"]),
      "val_windows": args.n_val, "dense_params": n_dense,
      "dense_kernel_params": kernel_params(cfg),
      "selected": best, "max_gap": args.max_gap, "machine": machine,
      "wall_seconds": wall,
  }
  sel = results[best]
  summary.update(
      heads_removed=1 - sum(sel["heads"]) / sum(cfg.heads),
      neurons_removed=1 - sum(sel["neurons"]) / sum(cfg.hidden),
      selected_gap=sel["gap"], selected_speedup=sel["speedup"])
  png = args.out / "transformer_heads.png"
  plot(results, cfg, summary, png)
  files = [str(png)]
  md = markdown(rows, cfg, summary)
  print()
  print(md)
  if args.results:
    prefix = pathlib.Path(args.results)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with open(prefix.with_suffix(".json"), "w") as f:
      json.dump({"summary": summary, "variants": rows}, f, indent=1)
    with open(prefix.with_suffix(".md"), "w") as f:
      f.write("# A transformer made smaller: heads and neurons removed "
              f"(examples/transformer_heads.py)\n\n{md}")
    plot(results, cfg, summary, prefix.with_suffix(".png"))
    print(f"wrote {prefix}.{{md,json,png}}")
  print(f"wrote {png}; wall time {wall:.0f} s")
  return {**summary, "variants": rows, "files": files}


def _machine_info(argv: Optional[Sequence[str]]) -> dict[str, Any]:
  """benchmarks/_machine.py's record of the machine, when it is there."""
  command = "python examples/transformer_heads.py " + shlex.join(
      sys.argv[1:] if argv is None else [str(a) for a in argv])
  try:
    sys.path.insert(0, str(HERE.parent / "benchmarks"))
    import _machine  # pylint: disable=g-import-not-at-top
  except ImportError:
    return {"command": command}
  finally:
    sys.path.remove(str(HERE.parent / "benchmarks"))
  return _machine.machine_info(command)


def _loadavg() -> Optional[str]:
  try:
    with open("/proc/loadavg") as f:
      return f.read().strip()
  except OSError:
    return None


def markdown(rows: dict[str, dict[str, Any]], cfg: Config,
             s: dict[str, Any]) -> str:
  """The results table, throughput and set-up, as Markdown."""
  n_heads, n_neurons = sum(cfg.heads), sum(cfg.hidden)
  lines = [
      f"{cfg.layers} layers, d {cfg.d}, {cfg.heads[0]} heads x "
      f"{cfg.head_dim}, MLP {cfg.hidden[0]}, context {cfg.context}; "
      f"{s['steps']} steps x {s['batch']} sequences (every variant: same "
      f"init, same minibatches); validation: {s['val_windows']} windows of "
      f"the held-out files. Params: the compact model's (group lasso), "
      f"nonzeros (pruning).",
      "",
      "| variant | val bits/char | vs dense | heads left | neurons left "
      "| params | train s |",
      "|---|---:|---:|---|---|---:|---:|"]
  for k, r in rows.items():
    mark = " (selected)" if k == s["selected"] else ""
    lines.append(
        f"| {r['label']}{mark} | {r['bpc']:.4f} | {100 * r['gap']:+.2f}% | "
        f"{sum(r['heads'])}/{n_heads} {r['heads']} | "
        f"{sum(r['neurons'])}/{n_neurons} {r['neurons']} | "
        f"{r['params']:,} | {r['train_seconds']:.0f} |")
  sel = rows[s["selected"]]
  lines += ["", f"Selected (the smallest group-lasso model within "
            f"{s['max_gap']:.0%} of dense): {sel['label']}. It removes "
            f"{s['heads_removed']:.1%} of the heads "
            f"({n_heads - sum(sel['heads'])} of {n_heads}) and "
            f"{s['neurons_removed']:.1%} of the MLP neurons "
            f"({n_neurons - sum(sel['neurons'])} of {n_neurons}), at "
            f"{100 * sel['gap']:+.2f}% validation bits/char; its compact model "
            f"has {sel['params']:,} of {s['dense_params']:,} params and runs "
            f"{sel['speedup'][1]:.2f}x (batch 1) and {sel['speedup'][32]:.2f}x "
            f"(batch 32) the dense model's tokens/s."]
  lines += ["", f"CPU inference, jitted forward pass over {cfg.context} "
            "tokens (median of interleaved repeats), tokens/s:", "",
            "| model | params | batch 1 | x dense | batch 32 | x dense |",
            "|---|---:|---:|---:|---:|---:|"]
  for k, r in rows.items():
    if "tokens_per_s" in r:
      name = "dense" if k == "dense" else f"compact, {r['label']}"
      lines.append(
          f"| {name} | {r['params']:,} | {r['tokens_per_s'][1]:,.0f} | "
          f"{r['speedup'][1]:.2f} | {r['tokens_per_s'][32]:,.0f} | "
          f"{r['speedup'][32]:.2f} |")
  gl = {k: r for k, r in rows.items() if "compact_max_abs_diff" in r}
  lines += ["", "Compact vs sparse logits on the validation windows, max "
            "abs difference: " + ", ".join(
                f"{r['label']} {r['compact_max_abs_diff']:.1e}"
                for r in gl.values()) + "."]
  m = s["machine"]
  lines += ["", f"Command: `{m.get('command')}`; wall time "
            f"{s['wall_seconds']:.0f} s; {m.get('date', '')}; CPU "
            f"{m.get('cpu_model', '?')}, {m.get('cpus_usable', '?')} usable "
            f"cores; jax {m.get('jax', '?')}, optax {m.get('optax', '?')}, "
            f"flax {m.get('flax', '?')}; load average {m.get('loadavg_start')}"
            f" at the start, {m.get('loadavg_end')} at the end."]
  return "\n".join(lines) + "\n"


def plot(results: dict[str, dict[str, Any]], cfg: Config, s: dict[str, Any],
         path: pathlib.Path) -> None:
  fig, axes = _common.subplots(2, 2, figsize=(12, 8))
  (ax_h, ax_n), (ax_p, ax_l) = axes
  gl = [k for k in results if k.startswith("gl")]
  layers = np.arange(cfg.layers)
  width = 0.8 / (len(gl) + 1)
  for ax, field, full in ((ax_h, "heads", cfg.heads),
                          (ax_n, "neurons", cfg.hidden)):
    ax.bar(layers - 0.4 + width / 2, full, width, color="0.7",
           label="dense")
    for i, k in enumerate(gl):
      r = results[k]
      ax.bar(layers - 0.4 + (i + 1.5) * width, r[field], width,
             label=f"lam {r['lam']:g}: {sum(r[field])}/{sum(full)}")
    ax.set_xticks(layers, [f"layer {l}" for l in layers])
    ax.set_ylabel(f"{field} left")
    ax.set_ylim(0, 1.35 * max(full))
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8, ncol=2, loc="upper right")
    ax.grid(True, axis="y", alpha=0.3)
  ax_h.set_title("attention heads left per layer", fontsize=10)
  ax_n.set_title("MLP neurons left per layer", fontsize=10)
  for k, r in results.items():
    marker = "o" if k.startswith("gl") else ("s" if k == "dense" else "^")
    ax_p.scatter(r["params"], r["bpc"], marker=marker, s=50,
                 label=r["label"])
    ax_l.plot(r["chunk"] * np.arange(1, len(r["train_loss"]) + 1),
              np.asarray(r["train_loss"]) / math.log(2), label=r["label"])
  dense_bpc = results["dense"]["bpc"]
  ax_p.axhline(dense_bpc * 1.03, color="0.5", ls="--", lw=1,
               label="dense + 3%")
  ax_p.set_xlabel("params (compact model / nonzeros)")
  ax_p.set_ylabel("validation bits per character")
  ax_p.legend(fontsize=7)
  ax_p.grid(True, alpha=0.3)
  ax_l.set_xlabel("step")
  ax_l.set_ylabel("training bits per character (mean over steps)")
  ax_l.set_ylim(None, dense_bpc * 1.4)
  ax_l.legend(fontsize=7)
  ax_l.grid(True, alpha=0.3)
  sel = results[s["selected"]]
  fig.suptitle(
      f"Char-level transformer on the stdlib sources ({cfg.layers} layers x "
      f"{cfg.d}, {cfg.heads[0]} heads, MLP {cfg.hidden[0]}; {s['steps']} "
      f"steps x {s['batch']}, AdamW + clip, same steps for every variant)\n"
      f"{sel['label']} removes {s['heads_removed']:.0%} of heads, "
      f"{s['neurons_removed']:.0%} of neurons, {100 * sel['gap']:+.1f}% "
      f"bits/char, {sel['speedup'][1]:.2f}x batch-1 throughput",
      fontsize=10)
  _common.save(fig, path)


if __name__ == "__main__":
  main()
