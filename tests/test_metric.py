"""``proximal`` in the recipes people train with (optax_l1/_metric.py).

Every link of the optimizer is accounted for, known to be neutral, or refused;
weights with no gradient yet are never wiped out; the learning rate is written
once. References: scikit-learn's ``Lasso`` / ``MultiTaskLasso``, the lasso's
optimality conditions, and NumPy recomputations of each step.
"""

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax._src.alias as optax_alias
import pytest

import optax_l1
from _problems import (KERAS, MULTITASK, SMALL, assert_solution,
                       enable_x64, fit, fit_params, sklearn_lasso,
                       sklearn_multitask)

ALPHA = 0.05  # SMALL's alpha: sklearn keeps a few weights


def _small_ref():
  return sklearn_lasso(SMALL, ALPHA)


def _grad_norm_at(p, w):
  X, y = p.X.astype(np.float64), p.y.astype(np.float64)
  return float(np.linalg.norm(X.T @ (X @ w - y) / len(y)))


# --- every optax optimizer alias: accepted and exact, or refused -------------

# name -> (status, factory(lr)). Accepted ones run to sklearn's answer with
# (lr, steps); the README's optimizer table lists the same statuses
# (tests/test_readme.py).
ACCEPTED = {
    "adam": (lambda lr: optax.adam(lr), 0.01, 3000),
    "adamw": (lambda lr: optax.adamw(lr, weight_decay=0.0), 0.01, 3000),
    "nadam": (lambda lr: optax.nadam(lr), 0.01, 3000),
    "nadamw": (lambda lr: optax.nadamw(lr, weight_decay=0.0), 0.01, 3000),
    "amsgrad": (lambda lr: optax.amsgrad(lr), 0.01, 6000),
    "rmsprop": (lambda lr: optax.rmsprop(lr, momentum=0.5), 0.002, 4000),
    "adagrad": (lambda lr: optax.adagrad(lr), 0.1, 10000),
    "sgd": (lambda lr: optax.sgd(lr, momentum=0.9), 0.5 / SMALL.lipschitz,
            4000),
}
REFUSED = ("adabelief", "adadelta", "adafactor", "adamax", "adamaxw", "adan",
           "fromage", "lamb", "lars", "lbfgs", "lion", "noisy_sgd", "novograd",
           "optimistic_adam", "optimistic_adam_v2",
           "optimistic_gradient_descent", "polyak_sgd", "radam", "rprop",
           "sign_sgd", "signum", "sm3", "yogi")


def _optax_aliases():
  """Every optimizer alias optax defines (functions and partials)."""
  out = set()
  for name, f in vars(optax_alias).items():
    if name.startswith("_") or getattr(optax, name, None) is not f:
      continue
    if (inspect.isfunction(f) and f.__module__ == optax_alias.__name__) or (
        isinstance(f, functools.partial)):
      out.add(name)
  return out


def test_every_optax_alias_is_classified():
  # Older optax versions have fewer aliases (no signum, optimistic_adam_v2).
  assert _optax_aliases() <= set(ACCEPTED) | set(REFUSED)
  assert not set(ACCEPTED) & set(REFUSED)


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_every_accepted_alias_reaches_sklearn(name):
  make, lr, steps = ACCEPTED[name]
  w = fit(SMALL, optax_l1.proximal(make(lr), optax_l1.prox_l1(ALPHA)), steps)
  assert_solution(w, _small_ref(), 1e-4)


def _build(name, inject):
  f = getattr(optax, name)
  if inject:
    f = optax.inject_hyperparams(f)
  if name in ("polyak_sgd", "lbfgs"):
    return f()
  if name == "noisy_sgd":
    return f(0.1, key=0) if "key" in inspect.signature(
        getattr(optax, name)).parameters else f(0.1)
  return f(0.1)


@pytest.mark.parametrize("inject", [False, True], ids=["plain", "injected"])
@pytest.mark.parametrize("name", REFUSED)
def test_every_refused_alias_raises_by_init_naming_it(name, inject):
  if not hasattr(optax, name):
    pytest.skip(f"optax {optax.__version__} has no {name}")
  with pytest.raises(ValueError) as e:
    opt = optax_l1.proximal(_build(name, inject), optax_l1.prox_l1(0.1))
    opt.init(jnp.zeros(3))
  msg = str(e.value)
  assert name in msg, msg
  assert "Supported: adam" in msg and "optax.chain(opt, prox)" not in msg


def test_refused_at_construction_when_not_injected():
  with pytest.raises(ValueError, match="lamb"):
    optax_l1.proximal(optax.lamb(0.1), optax_l1.prox_l1(0.1))


@pytest.mark.parametrize("inner, match", [
    (optax.chain(optax.clip(1.0), optax.adam(0.1)), "`clip`"),
    (optax.chain(optax.adam(0.1), optax.clip_by_global_norm(1.0)),
     "comes after"),
    (optax.masked(optax.adam(0.1), {"w": True}), "masked"),
    (optax.chain(optax.scale_by_adam(), optax.scale_by_rms(),
                 optax.scale(-0.1)), "more than one"),
    (optax.GradientTransformation(lambda p: optax.EmptyState(),
                                  lambda u, s, p=None: (u, s)), "<lambda>"),
    (getattr(optax, "partition", getattr(optax, "multi_transform", None))(
        {"a": optax.adam(0.1)}, {"w": "a"}), "partition"),
    (optax.chain(optax.adam(0.1),
                 optax.masked(optax.set_to_zero(), {"w": False})),
     "set_to_zero"),
], ids=["elementwise_clip", "clip_after_adam", "masked_adam", "two_metrics",
        "user_transform", "partition", "frozen_leaves"])
def test_unknown_or_unaccountable_links_are_refused(inner, match):
  with pytest.raises(ValueError, match=match):
    opt = optax_l1.proximal(inner, optax_l1.prox_l1(0.1))
    opt.init({"w": jnp.zeros(3)})


# --- links that scale the gradient are accounted for exactly ------------------


def test_clip_by_global_norm_active_at_the_optimum_reaches_the_lasso():
  ref = _small_ref()
  max_norm = 0.5 * _grad_norm_at(SMALL, ref)  # the clip is active at w*
  opt = optax_l1.proximal(
      optax.chain(optax.clip_by_global_norm(max_norm), optax.adam(0.01)),
      optax_l1.prox_l1(ALPHA))
  w = fit(SMALL, opt, 4000)
  assert _grad_norm_at(SMALL, w.astype(np.float64)) > 1.9 * max_norm
  assert_solution(w, ref, 1e-4)


def test_clip_inside_a_chain_after_scaling_and_decay_is_recomputed():
  """The clip sees the output of the links before it (NumPy recomputation of
  one step's threshold)."""
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.normal(size=6), jnp.float32)
  g = jnp.asarray(rng.normal(size=6), jnp.float32)
  lr, lam, wd, s = 0.1, 0.2, 0.3, 2.0
  inner = optax.chain(optax.scale(s), optax.add_decayed_weights(wd),
                      optax.clip_by_global_norm(0.5), optax.sgd(lr))
  opt = optax_l1.proximal(inner, optax_l1.prox_l1(lam))
  u, _ = inner.update(g, inner.init(w), w)
  got, _ = jax.jit(opt.update)(g, opt.init(w), w)
  x = s * np.asarray(g, np.float64) + wd * np.asarray(w, np.float64)
  c = min(1.0, 0.5 / np.linalg.norm(x))
  assert c < 1
  z = np.asarray(w + u, np.float64)
  want = np.sign(z) * np.maximum(np.abs(z) - lr * s * c * lam, 0)
  np.testing.assert_allclose(np.asarray(w + got), want, rtol=1e-6, atol=1e-7)


def test_scale_before_adam_solves_the_lasso_written():
  opt = optax_l1.proximal(optax.chain(optax.scale(0.5), optax.adam(0.01)),
                          optax_l1.prox_l1(ALPHA))
  assert_solution(fit(SMALL, opt, 3000), _small_ref(), 1e-4)


def test_group_lasso_with_clip_reaches_multitask_lasso():
  alpha = 0.05
  ref = sklearn_multitask(MULTITASK, alpha)
  max_norm = 0.5 * _grad_norm_at(MULTITASK, ref)
  opt = optax_l1.proximal(
      optax.chain(optax.clip_by_global_norm(max_norm), optax.adam(0.01)),
      optax_l1.prox_group_lasso(alpha, axis=1))
  assert_solution(fit(MULTITASK, opt, 5000), ref, 1e-4)


# --- links known to be neutral ------------------------------------------------


def test_adamw_decay_mask_on_a_dict_of_params():
  """The usual recipe: decay on kernels, none on biases; the bias is not
  penalized, the kernel solves its decayed lasso condition."""
  p, lam, lr, wd = SMALL, ALPHA, 0.01, 0.5
  X, y = jnp.asarray(p.X), jnp.asarray(p.y)

  def loss(params):
    r = X @ params["kernel"] + params["bias"] - y
    return 0.5 * jnp.mean(r * r)

  # A decaying lr lets Adam settle on the unpenalized bias too.
  sched = optax.cosine_decay_schedule(lr, 25000, alpha=0.01)
  opt = optax_l1.proximal(
      optax.adamw(sched, weight_decay=wd,
                  mask={"kernel": True, "bias": False}),
      optax_l1.prox_l1(lam, mask={"kernel": True, "bias": False}))
  params = {"kernel": jnp.zeros(p.X.shape[1]), "bias": jnp.zeros(())}
  out = fit_params(loss, params, opt, 25000)
  w = np.asarray(out["kernel"], np.float64)
  b = float(out["bias"])
  X64, y64 = p.X.astype(np.float64), p.y.astype(np.float64)
  r = X64 @ w + b - y64
  g = X64.T @ r / len(y64)
  assert abs(np.mean(r)) < 1e-5  # the bias: no decay, no penalty
  nz = w != 0
  resid = g[nz] + lam * np.sign(w[nz]) + wd * w[nz] * (np.abs(g[nz]) + 1e-8)
  np.testing.assert_allclose(resid, 0, atol=1e-4)
  assert np.all(np.abs(g[~nz]) <= lam + 1e-4)


@pytest.mark.parametrize("where", ["inside", "around"])
def test_multisteps_inside_or_around_reaches_sklearn(where):
  k = 3
  if where == "inside":
    opt = optax_l1.proximal(
        optax.MultiSteps(optax.chain(optax.clip_by_global_norm(0.2),
                                     optax.adam(0.01)), k),
        optax_l1.prox_l1(ALPHA))
  else:
    opt = optax.MultiSteps(optax_l1.proximal(optax.adam(0.01),
                                             optax_l1.prox_l1(ALPHA)), k)
  assert_solution(fit(SMALL, opt, 3000 * k), _small_ref(), 1e-4)


def test_multisteps_accumulation_steps_leave_params_unchanged():
  rng = np.random.default_rng(1)
  w = jnp.asarray(rng.normal(size=5), jnp.float32)
  opt = optax_l1.proximal(optax.MultiSteps(optax.adam(0.1), 3),
                          optax_l1.prox_l1(0.5))
  state = opt.init(w)
  update = jax.jit(opt.update)
  for t in range(6):
    g = jnp.asarray(rng.normal(size=5), jnp.float32)
    u, state = update(g, state, w)
    if t % 3 != 2:  # accumulating: no step, no shrink
      np.testing.assert_array_equal(np.asarray(u), 0.0)
    else:
      assert np.any(np.asarray(u) != 0)
    w = optax.apply_updates(w, u)


def test_multisteps_sum_of_gradients_counts_k():
  """use_grad_mean=False: the optimizer sees k gradients summed; the
  threshold is scaled by k so the fixed point stays the lasso."""
  opt = optax_l1.proximal(
      optax.MultiSteps(optax.sgd(0.5 / SMALL.lipschitz / 3), 3,
                       use_grad_mean=False),
      optax_l1.prox_l1(ALPHA))
  assert_solution(fit(SMALL, opt, 9000), _small_ref(), 1e-4)


def test_apply_if_finite_skipped_step_leaves_params_unchanged():
  w = jnp.asarray([0.5, -0.01, 2.0], jnp.float32)
  opt = optax_l1.proximal(optax.apply_if_finite(optax.adam(0.1), 3),
                          optax_l1.prox_l1(0.5))
  state = opt.init(w)
  u, state = jax.jit(opt.update)(jnp.asarray([1.0, jnp.nan, 0.0]), state, w)
  np.testing.assert_array_equal(np.asarray(u), 0.0)
  assert not bool(state.inner_state.last_finite)
  # A finite step afterwards is the first step of a fresh optimizer.
  g = jnp.asarray([1.0, 1.0, 0.0])
  u, state = jax.jit(opt.update)(g, state, w)
  fresh = optax_l1.proximal(optax.adam(0.1), optax_l1.prox_l1(0.5))
  want, _ = jax.jit(fresh.update)(g, fresh.init(w), w)
  np.testing.assert_array_equal(np.asarray(u), np.asarray(want))


def test_apply_if_finite_inside_reaches_sklearn():
  opt = optax_l1.proximal(optax.apply_if_finite(optax.adam(0.01), 5),
                          optax_l1.prox_l1(ALPHA))
  assert_solution(fit(SMALL, opt, 3000), _small_ref(), 1e-4)


def test_transformer_recipe_reaches_the_lasso():
  """clip + AdamW(warmup-cosine, masked decay 0) inside proximal, with the
  clip active at the optimum: the lasso written, to 1e-4."""
  ref = _small_ref()
  sched = optax.warmup_cosine_decay_schedule(0.0, 0.02, 200, 6000, 0.05)
  inner = optax.chain(
      optax.clip_by_global_norm(0.5 * _grad_norm_at(SMALL, ref)),
      optax.adamw(sched, weight_decay=0.0, mask=lambda p: True))
  opt = optax_l1.proximal(inner, optax_l1.prox_l1(ALPHA))
  assert_solution(fit(SMALL, opt, 6000), ref, 1e-4)


# --- weights without gradient history -----------------------------------------


def _embedding_run(make_inner, lam, steps=125, rows=1000, dim=16, batch=8):
  """Trains a rows x dim table where step t touches rows perm[8t:8t+8]
  (every row exactly once). Returns, for each row, the table row just before
  the step that first touches it, the initial table, and per-step
  (lr_t * c_t): what the identity metric shrinks an unseen row by."""
  rng = np.random.default_rng(0)
  table0 = jnp.asarray(rng.normal(scale=0.1, size=(rows, dim)), jnp.float32)
  target = jnp.asarray(rng.normal(size=(rows, dim)) * (rng.random(rows)
                                                       < 0.3)[:, None],
                       jnp.float32)
  perm = rng.permutation(rows)

  def loss(table, idx):
    return 0.5 * jnp.sum((table[idx] - target[idx]) ** 2) / batch

  inner = make_inner()
  opt = optax_l1.proximal(inner, optax_l1.prox_l1(lam))

  @jax.jit
  def step(table, state, idx):
    g = jax.grad(loss)(table, idx)
    u, state = opt.update(g, state, table)
    return optax.apply_updates(table, u), state, g

  table, state = table0, opt.init(table0)
  before = np.zeros((rows, dim), np.float32)
  grads = []
  for t in range(steps):
    idx = jnp.asarray(perm[t * batch:(t + 1) * batch])
    before[np.asarray(idx)] = np.asarray(table)[np.asarray(idx)]
    table, state, g = step(table, state, idx)
    grads.append(np.asarray(g, np.float64))
  first_seen = np.empty(rows, int)
  first_seen[perm[:steps * batch]] = np.arange(steps * batch) // batch
  return np.asarray(table0, np.float64), before, first_seen, grads


@pytest.mark.parametrize("recipe", ["adam", "clip_adamw_warmup", "adagrad"])
def test_embedding_rows_are_not_wiped_before_they_are_seen(recipe):
  """Before its first gradient a row follows ISTA with zero gradient:
  ``soft(w0, lam * sum_t lr_t c_t)`` (NumPy), never a 1 / eps threshold."""
  lam = 1e-3
  sched = optax.warmup_cosine_decay_schedule(0.0, 0.01, 20, 125, 0.1)
  lr_of = {"adam": lambda t: 0.01, "adagrad": lambda t: 0.05,
           "clip_adamw_warmup": lambda t: float(sched(t))}[recipe]
  max_norm = 0.5
  make = {
      "adam": lambda: optax.adam(0.01),
      "adagrad": lambda: optax.adagrad(0.05, initial_accumulator_value=0.0),
      "clip_adamw_warmup": lambda: optax.chain(
          optax.clip_by_global_norm(max_norm),
          optax.adamw(sched, weight_decay=0.1, mask=lambda p: False)),
  }[recipe]
  table0, before, first_seen, grads = _embedding_run(make, lam)
  clip = recipe.startswith("clip")
  shrink = np.cumsum([0.0] + [
      lr_of(t) * (min(1.0, max_norm / np.linalg.norm(g)) if clip else 1.0)
      for t, g in enumerate(grads)])
  want = np.sign(table0) * np.maximum(
      np.abs(table0) - lam * shrink[first_seen][:, None], 0)
  np.testing.assert_allclose(before, want, rtol=0, atol=2e-6)
  assert np.all(np.count_nonzero(before, axis=1) >= 12)  # no row wiped out
  assert shrink[-1] * lam < 1e-2  # vs |w0| ~ 0.1


def test_keras_dead_column_from_random_init_ends_at_exact_zero():
  """The Keras report: feature 0 is all zeros, y is noise; from a Glorot
  init every weight, the dead one included, ends exactly where sklearn's
  does (all zeros)."""
  rng = np.random.default_rng(3)
  w0 = jnp.asarray(rng.uniform(-0.5, 0.5, KERAS.X.shape[1]), jnp.float32)
  opt = optax_l1.proximal(optax.adam(0.01), optax_l1.prox_l1(0.1))
  w = fit(KERAS, opt, 3000, w0=w0)
  assert_solution(w, sklearn_lasso(KERAS, 0.1), 1e-6)
  assert w[0] == 0.0


# --- one learning rate -------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda lr: optax.adam(lr),
    lambda lr: optax.chain(optax.clip_by_global_norm(0.2), optax.adamw(lr)),
    lambda lr: optax.sgd(lr, momentum=0.9),
], ids=["adam", "clip_adamw", "momentum"])
@pytest.mark.parametrize("schedule", [False, True], ids=["const", "sched"])
def test_prox_without_learning_rate_matches_explicit_bit_for_bit(make,
                                                                 schedule):
  lr = optax.cosine_decay_schedule(0.01, 500) if schedule else 0.01
  short = optax_l1.proximal(make(lr), optax_l1.prox_l1(ALPHA))
  explicit = optax_l1.proximal(make(lr), optax_l1.prox_l1(ALPHA, lr))
  a, b = fit(SMALL, short, 500), fit(SMALL, explicit, 500)
  np.testing.assert_array_equal(a, b)
  assert np.count_nonzero(a == 0) > 0


@pytest.mark.parametrize("inner, prox_lr, match", [
    (optax.adam(0.01), 0.1, "0.1 at step 0"),
    (optax.adam(optax.linear_schedule(0.01, 0.0, 100)), 0.01, "at step 1"),
    (optax.adam(0.01), optax.linear_schedule(0.01, 0.0, 100), "at step 1"),
    (optax.inject_hyperparams(optax.adam)(0.01), 0.02, "0.02"),
    (optax.chain(optax.adam(0.01), optax.scale(0.5)), 0.01, "0.005"),
], ids=["const", "sched_vs_const", "const_vs_sched", "injected", "scaled"])
def test_a_different_learning_rate_raises_at_init_naming_both(inner, prox_lr,
                                                              match):
  opt = optax_l1.proximal(inner, optax_l1.prox_l1(0.1, prox_lr))
  with pytest.raises(ValueError, match=match) as e:
    opt.init(jnp.zeros(3))
  assert "optimizer's learning rate" in str(e.value)


def test_same_schedule_built_twice_is_accepted():
  mk = lambda: optax.warmup_cosine_decay_schedule(0.0, 0.01, 10, 100)
  opt = optax_l1.proximal(optax.adam(mk()), optax_l1.prox_l1(0.1, mk()))
  opt.init(jnp.zeros(3))


def test_learning_rate_before_the_preconditioner_is_a_gradient_scaling():
  """scale(0.5) before Adam is not the learning rate: the prox's 0.01 is."""
  opt = optax_l1.proximal(optax.chain(optax.scale(0.5), optax.adam(0.01)),
                          optax_l1.prox_l1(0.1, 0.01))
  opt.init(jnp.zeros(3))


def test_plain_chain_without_learning_rate_says_why_at_init():
  opt = optax.chain(optax.sgd(0.1), optax_l1.prox_l1(0.1))
  with pytest.raises(ValueError, match="cannot see opt's learning rate"):
    opt.init(jnp.zeros(3))


def test_injected_learning_rate_lowered_mid_run_is_followed():
  """Lowering the injected lr changes the threshold at once (NumPy)."""
  lam = 0.3
  opt = optax_l1.proximal(optax.inject_hyperparams(optax.sgd)(0.1),
                          optax_l1.prox_l1(lam))
  w = jnp.asarray([1.0, 0.05, -0.5], jnp.float32)
  state = opt.init(w)
  state = state._replace(inner_state=state.inner_state._replace(
      hyperparams={**state.inner_state.hyperparams,
                   "learning_rate": jnp.asarray(0.01, jnp.float32)}))
  g = jnp.asarray([0.1, 0.0, -0.2], jnp.float32)
  u, _ = jax.jit(opt.update)(g, state, w)
  z = np.asarray(w, np.float64) - 0.01 * np.asarray(g, np.float64)
  want = np.sign(z) * np.maximum(np.abs(z) - 0.01 * lam, 0)
  np.testing.assert_allclose(np.asarray(w + u), want, rtol=1e-6)


# --- float64: every factor in the params' dtype --------------------------------


@pytest.mark.parametrize("make, lr, steps", [
    (lambda lr: optax.adam(lr), 0.01, 6000),
    (lambda lr: optax.sgd(lr, momentum=0.9), 0.5 / SMALL.lipschitz, 6000),
    (lambda lr: optax.chain(optax.clip_by_global_norm(0.05),
                            optax.rmsprop(lr, momentum=0.5,
                                          bias_correction=True)),
     0.002, 8000),
], ids=["adam", "momentum", "clip_rmsprop"])
def test_float64_reaches_sklearn_to_1e_10(make, lr, steps):
  with enable_x64(True):
    X = jnp.asarray(SMALL.X, jnp.float64)
    y = jnp.asarray(SMALL.y, jnp.float64)
    loss = lambda w: 0.5 * jnp.sum((X @ w - y) ** 2) / X.shape[0]
    opt = optax_l1.proximal(make(lr), optax_l1.prox_l1(ALPHA))
    w = np.asarray(fit_params(loss, jnp.zeros(X.shape[1], jnp.float64), opt,
                              steps))
    assert w.dtype == np.float64
  assert_solution(w, _small_ref(), 1e-10)


def test_float64_momentum_threshold_is_exact():
  """1 / (1 - 0.9) in float64: the threshold is lr * lam * 10 to the ulp."""
  with enable_x64(True):
    w = jnp.asarray([1.0, 0.0], jnp.float64)
    opt = optax_l1.proximal(optax.sgd(0.01, momentum=0.9),
                            optax_l1.prox_l1(1.0))
    u, _ = opt.update(jnp.zeros(2, jnp.float64), opt.init(w), w)
    new = np.asarray(w + u)
  assert new[0] == 1.0 - 0.01 * 1.0 / (1 - 0.9)
