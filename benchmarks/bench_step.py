"""Times one jitted optimizer step: plain Adam vs Adam + proximal steps.

What is timed: ``step(params, opt_state, grads) -> (params, opt_state)``, i.e.
``opt.update`` followed by ``optax.apply_updates``, jitted with params and
optimizer state donated (``donate_argnums=(0, 1)``), so XLA may update them in
place. The gradient is a fixed random array passed in (not computed, not
donated). Params are one float32 matrix of shape ``(N / 1024, 1024)``.

Variants (all with ``optax.adam(lr)`` as the optimizer):

* ``adam``: ``optax.adam(lr)`` alone (the baseline).
* ``chain_l1``: ``optax.chain(adam, prox_l1(lam, lr))`` (plain threshold).
* ``prox_l1``: ``proximal(adam, prox_l1(lam, lr))`` (threshold in Adam's
  metric).
* ``prox_group``: ``proximal(adam, prox_group_lasso(lam, lr, axis=1))`` (rows
  of 1024 are groups; the diagonal-metric prox runs bracketed Newton steps).
* ``chain_group``: ``optax.chain(adam, prox_group_lasso(lam, lr, axis=1))``
  (the scalar-step block soft threshold: one group sum per row).
* ``magnitude_prune``: ``optax.chain(adam, magnitude_prune(0.5))`` (one-shot
  at step 0, then the stored mask is applied) and ``magnitude_prune_upd``
  (the mask recomputed at every step), when
  ``from optax_l1._masks import magnitude_prune`` works (it is optional).

The variants are interleaved (every round in a fresh random order) after a
warm-up (compile + 2 steps each); every step ends in ``block_until_ready``.
Reported per variant and size: median (and IQR, min) ms per step; the ratio to
plain adam as a ratio of medians and as the median of same-round ratios
("paired", robust to slow changes in machine load); achieved GB/s assuming 28
bytes/param (fp32 Adam reads p, g, m, v and writes p, m, v); extra
optimizer-state bytes per parameter over plain adam; from the compiled HLO
the number of fusions and of fusions with a full-size output; minor page
faults per step (temporaries that XLA allocates fresh at every execution);
and a linear fit of median time vs N per variant (slope ns/param, R^2; R^2
needs 3 or more sizes).

If ``torch`` is importable, torch's CPU ``Adam`` (foreach and fused) and Adam
followed by the in-place soft threshold
``p.copy_(p.sign() * (p.abs() - lr*lam).clamp_min(0))`` are timed in the same
run at the same sizes.

Usage::

  PYTHONPATH=. python benchmarks/bench_step.py                  # 1e6, 1e7
  PYTHONPATH=. python benchmarks/bench_step.py --sizes 1e6,1e7,1e8
  PYTHONPATH=. python benchmarks/bench_step.py --sizes 1e8,1e9 --out benchmarks/results/gpu
"""

from __future__ import annotations

import os

# torch's OpenMP workers otherwise spin after each op and starve XLA's
# threads in the interleaved loop (must be set before torch is imported).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import inspect
import json
import random
import re
import resource
import shlex
import statistics
import sys
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_l1
from _machine import loadavg, machine_info  # benchmarks/_machine.py

COLS = 1024
BYTES_PER_PARAM_ADAM = 28  # fp32: read p, g, m, v; write p, m, v
LR = 1e-3
LAM = 1.0
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all",
               "collective-permute")


# --------------------------------------------------------------------------
# Variants
# --------------------------------------------------------------------------

def _magnitude_prune_variants():
  """Returns ({name: optimizer}, note); empty when ``_masks`` is missing."""
  try:
    from optax_l1._masks import magnitude_prune  # pylint: disable=g-import-not-at-top
  except Exception as e:  # pylint: disable=broad-except
    return {}, f"not available ({type(e).__name__}: {e})"
  try:
    params = inspect.signature(magnitude_prune).parameters
  except (TypeError, ValueError):
    params = {}
  out, notes = {}, []
  # Steady state: one-shot pruning at step 0, then the stored mask is applied
  # (the mask recomputation sits behind a lax.cond that is not taken).
  try:
    out["magnitude_prune"] = optax.chain(optax.adam(LR), magnitude_prune(0.5))
    notes.append("magnitude_prune = chain(adam, magnitude_prune(0.5)) (mask "
                 "fixed after step 0)")
  except Exception as e:  # pylint: disable=broad-except
    return {}, (f"import ok but magnitude_prune(0.5) failed: "
                f"{type(e).__name__}: {e}")
  # Gradual pruning with the mask recomputed at every timed step.
  if {"begin_step", "end_step", "update_every"} <= set(params):
    try:
      out["magnitude_prune_upd"] = optax.chain(
          optax.adam(LR), magnitude_prune(0.5, begin_step=0,
                                          end_step=1000, update_every=1))
      notes.append("magnitude_prune_upd = the same with begin_step=0, "
                   "end_step=1000, update_every=1 (mask recomputed every step)")
    except Exception as e:  # pylint: disable=broad-except
      notes.append(f"gradual variant failed: {type(e).__name__}: {e}")
  return out, "; ".join(notes)


def make_variants():
  variants = {
      "adam": optax.adam(LR),
      "chain_l1": optax.chain(optax.adam(LR), optax_l1.prox_l1(LAM, LR)),
      "prox_l1": optax_l1.proximal(optax.adam(LR), optax_l1.prox_l1(LAM, LR)),
      "prox_group": optax_l1.proximal(
          optax.adam(LR), optax_l1.prox_group_lasso(LAM, LR, axis=1)),
      "chain_group": optax.chain(
          optax.adam(LR), optax_l1.prox_group_lasso(LAM, LR, axis=1)),
  }
  mp, note = _magnitude_prune_variants()
  variants.update(mp)
  return variants, note


def make_step(opt):
  def step(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state
  return jax.jit(step, donate_argnums=(0, 1))


def state_bytes(state) -> int:
  return sum(int(x.nbytes) for x in jax.tree.leaves(state)
             if hasattr(x, "nbytes"))


# --------------------------------------------------------------------------
# HLO statistics
# --------------------------------------------------------------------------

def hlo_stats(compiled_text: str, n: int) -> dict:
  """Counts fusions, loops and full-size buffers in the entry computation."""
  entry = compiled_text
  m = re.search(r"^ENTRY .*?^}", compiled_text, re.S | re.M)
  if m:
    entry = m.group(0)
  rows = n // COLS
  full = re.compile(rf"f32\[{rows},{COLS}\]")
  instr = [l.strip() for l in entry.splitlines()
           if "=" in l and not l.strip().startswith("ENTRY")]
  fusions = [l for l in instr if re.search(r"\bfusion\(", l)]
  full_fusions = [l for l in fusions if full.search(l.split("=", 1)[1][:80])]
  return {
      "entry_instructions": len(instr),
      "fusions": len(fusions),
      "full_size_fusion_outputs": len(full_fusions),
      "while_loops": len([l for l in instr if re.search(r"\bwhile\(", l)]),
      "collectives": [c for c in COLLECTIVES if c in compiled_text],
  }


# --------------------------------------------------------------------------
# Torch (optional)
# --------------------------------------------------------------------------

def torch_variants(n: int):
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  out = {}
  gen = torch.Generator().manual_seed(0)
  for impl in ("foreach", "fused"):
    for l1 in (False, True):
      name = f"torch_{impl}" + ("_l1" if l1 else "")
      p = torch.nn.Parameter(0.02 * torch.randn(n // COLS, COLS, generator=gen))
      p.grad = torch.randn(n // COLS, COLS, generator=gen)
      try:
        opt = torch.optim.Adam([p], lr=LR, **{impl: True})
        opt.step()
      except Exception as e:  # pylint: disable=broad-except
        out[name] = f"unavailable: {type(e).__name__}: {e}"
        continue

      def fn(p=p, opt=opt, l1=l1):
        with torch.no_grad():
          opt.step()
          if l1:
            p.copy_(p.sign() * (p.abs() - LR * LAM).clamp_min(0))
      out[name] = fn
  return out


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------

def parse_sizes(s: str) -> list[int]:
  return [int(float(x)) for x in s.split(",") if x.strip()]


def linfit(xs, ys):
  xs, ys = np.asarray(xs, float), np.asarray(ys, float)
  if len(xs) < 2:
    return float("nan"), float("nan"), float("nan")
  a, b = np.polyfit(xs, ys, 1)
  pred = a * xs + b
  ss_res = float(np.sum((ys - pred) ** 2))
  ss_tot = float(np.sum((ys - ys.mean()) ** 2))
  r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
  return float(a), float(b), r2


def bench_size(n: int, variants: dict, repeats: int, log) -> dict:
  rows = max(1, round(n / COLS))
  n = rows * COLS
  key_p, key_g = jax.random.split(jax.random.key(0))
  grads = jax.random.normal(key_g, (rows, COLS), jnp.float32)
  p0 = 0.02 * jax.random.normal(key_p, (rows, COLS), jnp.float32)

  live = {}
  results = {}
  adam_state_bytes = None
  for name, opt in variants.items():
    params = jnp.array(p0, copy=True)
    state = opt.init(params)
    sb = state_bytes(state)
    if name == "adam":
      adam_state_bytes = sb
    step = make_step(opt)
    t0 = time.perf_counter()
    compiled = step.lower(params, state, grads).compile()
    compile_s = time.perf_counter() - t0
    stats = hlo_stats(compiled.as_text(), n)
    # Warm-up: two real steps (also exercises donation).
    for _ in range(2):
      params, state = step(params, state, grads)
    jax.block_until_ready((params, state))
    live[name] = [step, params, state]
    results[name] = {"times_ms": [], "minflt": 0, "state_bytes": sb,
                     "compile_s": compile_s, "hlo": stats}
  del p0

  t_names = []
  tv = torch_variants(n)
  if tv:
    for name, fn in tv.items():
      if callable(fn):
        fn()  # warm-up
        live[name] = fn
        t_names.append(name)
        results[name] = {"times_ms": [], "minflt": 0,
                         "state_bytes": 2 * 4 * n + 8}
      else:
        results[name] = {"times_ms": [], "note": fn}

  order = list(variants) + t_names
  for r in range(repeats):
    # A fresh random order every round: a step that follows one which
    # faulted in and freed large temporaries runs slower (measured: +30%),
    # so no variant may keep the same predecessor (as a rotation would).
    random.Random(r).shuffle(order)
    for name in order:
      entry = live[name]
      f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
      if callable(entry):
        t0 = time.perf_counter()
        entry()
        dt = time.perf_counter() - t0
      else:
        step, params, state = entry
        t0 = time.perf_counter()
        params, state = step(params, state, grads)
        jax.block_until_ready((params, state))
        dt = time.perf_counter() - t0
        entry[1], entry[2] = params, state
      results[name]["minflt"] += (
          resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
      results[name]["times_ms"].append(dt * 1e3)

  # Sanity: exact zeros exist for the prox variants, finite everywhere.
  for name in variants:
    params = live[name][1]
    results[name]["finite"] = bool(jnp.isfinite(params).all())
    results[name]["zero_fraction"] = float(jnp.mean(params == 0))

  base = statistics.median(results["adam"]["times_ms"])
  base_ts = results["adam"]["times_ms"]
  for name, res in results.items():
    ts = res["times_ms"]
    if not ts:
      continue
    med = statistics.median(ts)
    q = np.percentile(ts, [25, 75])
    res.update(
        median_ms=med, min_ms=min(ts), iqr_ms=[float(q[0]), float(q[1])],
        ratio_to_adam=med / base,
        # Same-round ratio (adjacent in time), robust to slow drifts in load.
        paired_ratio_to_adam=statistics.median(
            t / b for t, b in zip(ts, base_ts)),
        min_ratio_to_adam=min(ts) / min(base_ts),
        # Minor page faults per step: freshly mapped temporaries (XLA CPU
        # allocates its temp buffer per execution).
        page_faults_per_step=res["minflt"] / len(ts),
        gbps_28B=BYTES_PER_PARAM_ADAM * n / (med * 1e-3) / 1e9,
        extra_state_bytes_per_param=(
            (res["state_bytes"] - adam_state_bytes) / n
            if not name.startswith("torch") else None),
    )
    log(f"  {name:20s} {med:9.3f} ms  x{med / base:6.3f} (paired "
        f"x{res['paired_ratio_to_adam']:6.3f}, min x"
        f"{res['min_ratio_to_adam']:6.3f})")
  del live
  return {"n": n, "shape": [rows, COLS], "variants": results}


def markdown(report: dict) -> str:
  info = report["machine"]
  lines = [
      "# optimizer step benchmark",
      "",
      f"- machine: {info['cpu_model']}, {info['cpu_count']} cores, "
      f"{info.get('mem_total', '?')} RAM; {info['platform']}",
      f"- backend: {info['backend']} ({info['device_kind']}); jax "
      f"{info['jax']}, optax {info['optax']}, optax_l1 {info['optax_l1']}",
      f"- date: {info['date']}; load average at start / end: "
      f"{info['loadavg_start']} / {info['loadavg_end']}",
      f"- command: `{info['command']}`"
      + (" with " + " ".join(f"{k}={v}" for k, v in info["malloc_env"].items())
         if info.get("malloc_env") else ""),
      f"- repeats: {report['repeats']} per variant and size (interleaved); "
      "median of the timed steps",
      f"- magnitude_prune: {report['magnitude_prune']}",
      f"- torch: {report['torch']}",
      "",
      "| N | variant | median ms | IQR ms | min ms | x adam (median) | "
      "x adam (paired) | GB/s (28 B/param) | extra state B/param | "
      "HLO fusions | full-size fusion outputs | page faults/step | "
      "zero frac |",
      "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for size in report["sizes"]:
    for name, r in size["variants"].items():
      if "median_ms" not in r:
        lines.append(f"| {size['n']:.2e} | {name} | - | - | - | - | - | - | "
                     f"- | - | - | - | {r.get('note', '')} |")
        continue
      extra = r["extra_state_bytes_per_param"]
      lines.append(
          f"| {size['n']:.2e} | {name} | {r['median_ms']:.2f} | "
          f"{r['iqr_ms'][0]:.2f}-{r['iqr_ms'][1]:.2f} | {r['min_ms']:.2f} | "
          f"{r['ratio_to_adam']:.3f} | {r['paired_ratio_to_adam']:.3f} | "
          f"{r['gbps_28B']:.1f} | "
          f"{'-' if extra is None else f'{extra:.2e}'} | "
          f"{r.get('hlo', {}).get('fusions', '-')} | "
          f"{r.get('hlo', {}).get('full_size_fusion_outputs', '-')} | "
          f"{r['page_faults_per_step']:.0f} | "
          f"{r.get('zero_fraction', float('nan')):.3f} |")
  lines += ["", "Linear fit of median time vs N:", "",
            "| variant | slope ns/param | intercept ms | R^2 |",
            "|---|---:|---:|---:|"]
  for name, f in report["fit"].items():
    r2 = "n/a (<3 sizes)" if f["points"] < 3 else f"{f['r2']:.4f}"
    lines.append(f"| {name} | {f['slope_ns_per_param']:.3f} | "
                 f"{f['intercept_ms']:.3f} | {r2} |")
  lines.append("")
  return "\n".join(lines)


def main(argv=None):
  ap = argparse.ArgumentParser(
      description=__doc__.split("\n")[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  ap.add_argument("--sizes", default="1e6,1e7",
                  help="comma-separated parameter counts (rounded to a "
                       "multiple of 1024), e.g. 1e6,1e7,1e8")
  ap.add_argument("--repeats", type=int, default=30,
                  help="timed steps per variant and size")
  ap.add_argument("--out", default=os.path.join(
      os.path.dirname(os.path.abspath(__file__)), "results", "cpu"),
      help="output path without extension (.json and .md are written)")
  args = ap.parse_args(argv)
  command = f"PYTHONPATH={os.environ.get('PYTHONPATH', '')} python " + " ".join(
      shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])

  log = lambda s: print(s, flush=True)
  info = machine_info(command)
  log(f"{info['cpu_model']} x{info['cpu_count']} | {info['backend']} | jax "
      f"{info['jax']} optax {info['optax']}")
  variants, mp_note = make_variants()
  log(f"magnitude_prune: {mp_note}")
  try:
    import torch  # pylint: disable=g-import-not-at-top
    torch_note = (f"torch {torch.__version__} ({os.path.dirname(torch.__file__)}"
                  f"), {torch.get_num_threads()} threads, OMP_WAIT_POLICY="
                  f"{os.environ.get('OMP_WAIT_POLICY')}")
  except ImportError:
    torch_note = "not installed (torch Adam comparison skipped)"
  log(f"torch: {torch_note}")

  sizes = []
  for n in parse_sizes(args.sizes):
    log(f"N = {n:.0e}")
    try:
      sizes.append(bench_size(n, variants, args.repeats, log))
    except Exception:  # pylint: disable=broad-except
      traceback.print_exc()
      log(f"  size {n:.0e} failed; skipped")

  fit = {}
  names = {k for s in sizes for k, v in s["variants"].items()
           if "median_ms" in v}
  for name in sorted(names):
    pts = [(s["n"], s["variants"][name]["median_ms"]) for s in sizes
           if "median_ms" in s["variants"].get(name, {})]
    a, b, r2 = linfit([p[0] for p in pts], [p[1] for p in pts])
    fit[name] = {"slope_ns_per_param": a * 1e6, "intercept_ms": b, "r2": r2,
                 "points": len(pts)}

  info["loadavg_end"] = loadavg()
  report = {"machine": info, "repeats": args.repeats, "lr": LR, "lam": LAM,
            "magnitude_prune": mp_note, "torch": torch_note,
            "sizes": sizes, "fit": fit}
  md = markdown(report)
  print()
  print(md)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out + ".json", "w") as f:
    json.dump(report, f, indent=1)
  with open(args.out + ".md", "w") as f:
    f.write(md)
  log(f"wrote {args.out}.json and {args.out}.md")


if __name__ == "__main__":
  main()
