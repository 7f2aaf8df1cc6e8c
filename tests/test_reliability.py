"""Reliability: argument validation, no recompilation, determinism, NaN skips.

* Bad arguments fail at construction (or at ``init`` for shape-dependent
  checks) with a message that names the argument, the value and, for
  per-leaf checks, the leaf.
* Schedules and ``optax.inject_hyperparams`` change hyperparameters without
  recompiling a jitted step (counted by tracing side effects and
  ``_cache_size``), and the steps equal a NumPy reference of the thresholds
  used.
* Same inputs give bit-identical outputs; optimizer states round-trip through
  ``flax.serialization`` and the next update after a restore is bit-identical.
* ``optax.apply_if_finite(proximal(...))`` skips a NaN step (params and state
  unchanged) and, past its budget, lets the NaN through: the prox never hides
  it.
"""

from __future__ import annotations

import math
import re

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_l1

LR = 0.1


def np_soft(z, t):
  return np.sign(z) * np.maximum(np.abs(z) - t, 0.0)


def bits(x):
  """Bit pattern of an array (so -0.0 != 0.0 and NaN == same NaN)."""
  x = np.asarray(x)
  if x.dtype == np.bool_ or np.issubdtype(x.dtype, np.integer):
    return x
  return x.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[x.dtype.itemsize])


def assert_trees_bitwise_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert np.asarray(x).dtype == np.asarray(y).dtype
    np.testing.assert_array_equal(bits(x), bits(y))


# --- validation ---------------------------------------------------------------

# factory name -> (callable(**kwargs), valid kwargs, {argument: bad values})
_BAD_NONNEG = (-1.0, float("nan"), float("inf"), -float("inf"))
FACTORIES = {
    "prox_l1": (optax_l1.prox_l1, dict(lam=0.5, learning_rate=LR),
                {"lam": _BAD_NONNEG}),
    "prox_elastic_net": (optax_l1.prox_elastic_net,
                         dict(l1=0.5, l2=0.5, learning_rate=LR),
                         {"l1": _BAD_NONNEG, "l2": _BAD_NONNEG}),
    "prox_group_lasso": (optax_l1.prox_group_lasso,
                         dict(lam=0.5, learning_rate=LR, axis=0),
                         {"lam": _BAD_NONNEG}),
    "prox_sparse_group_lasso": (optax_l1.prox_sparse_group_lasso,
                                dict(l1=0.1, lam=0.5, learning_rate=LR,
                                     axis=0),
                                {"l1": _BAD_NONNEG, "lam": _BAD_NONNEG}),
    "hard_threshold": (optax_l1.hard_threshold, dict(lam=0.5, learning_rate=LR),
                       {"lam": _BAD_NONNEG}),
    "prox_mcp": (optax_l1.prox_mcp, dict(lam=0.5, gamma=3.0, learning_rate=LR),
                 {"lam": _BAD_NONNEG,
                  "gamma": (0.0, -1.0, float("nan"), float("inf"))}),
    "prox_scad": (optax_l1.prox_scad, dict(lam=0.5, a=3.7, learning_rate=LR),
                  {"lam": _BAD_NONNEG,
                   "a": (2.0, 1.0, float("nan"), float("inf"))}),
    "prox_lq": (optax_l1.prox_lq, dict(lam=0.5, learning_rate=LR),
                {"lam": _BAD_NONNEG}),
}

BAD_HYPERPARAMS = [(f, arg, v) for f, (_, _, bad) in FACTORIES.items()
                   for arg, values in bad.items() for v in values]


def _value_pattern(v):
  return re.escape(repr(float(v)))


@pytest.mark.parametrize("fn, arg, value", BAD_HYPERPARAMS,
                         ids=[f"{f}-{a}={v}" for f, a, v in BAD_HYPERPARAMS])
def test_bad_hyperparameter_raises_at_construction(fn, arg, value):
  factory, kwargs, _ = FACTORIES[fn]
  kwargs = dict(kwargs, **{arg: value})
  with pytest.raises(ValueError) as e:
    factory(**kwargs)
  msg = str(e.value)
  assert f"`{fn}({arg}=...)`" in msg, msg
  assert re.search(r"got " + _value_pattern(value), msg), msg


@pytest.mark.parametrize("fn", sorted(FACTORIES))
@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan"), float("inf")])
def test_bad_learning_rate_raises_at_construction(fn, lr):
  factory, kwargs, _ = FACTORIES[fn]
  with pytest.raises(ValueError) as e:
    factory(**dict(kwargs, learning_rate=lr))
  msg = str(e.value)
  assert f"`{fn}(learning_rate=...)` must be finite and > 0" in msg, msg
  assert re.search(r"got " + _value_pattern(lr), msg), msg


@pytest.mark.parametrize("fn", sorted(FACTORIES))
def test_valid_boundary_values_are_accepted(fn):
  # lam = 0 is allowed (no penalty): the step is then exactly the plain one.
  factory, kwargs, bad = FACTORIES[fn]
  zero = {k: 0.0 for k in bad if k in ("lam", "l1", "l2")}
  tx = optax.chain(optax.sgd(LR), factory(**dict(kwargs, **zero)))
  params = jnp.asarray([0.3, -0.02, 0.0])
  grads = jnp.asarray([1.0, -0.5, 0.25])
  updates, _ = tx.update(grads, tx.init(params), params)
  new = np.asarray(optax.apply_updates(params, updates), np.float64)
  np.testing.assert_allclose(new, np.float32([0.3, -0.02, 0.0])
                             - np.float32(LR) * np.float32([1.0, -0.5, 0.25]),
                             rtol=1e-6)


def test_bool_and_complex_hyperparameters_raise_type_error():
  with pytest.raises(TypeError, match=r"`prox_l1\(lam=\.\.\.\)`.*bool True"):
    optax_l1.prox_l1(True, LR)
  with pytest.raises(TypeError, match=r"`prox_l1\(learning_rate=\.\.\.\)`"):
    optax_l1.prox_l1(0.5, 1j)


def test_negative_weights_raise():
  with pytest.raises(ValueError, match=r"`prox_l1\(weights=\.\.\.\)` must be "
                     r"finite and >= 0"):
    optax_l1.prox_l1(0.5, LR, weights={"w": jnp.asarray([1.0, -2.0])})


def test_bad_lq_exponent_raises():
  with pytest.raises(ValueError, match=r"q=0\.3"):
    optax_l1.prox_lq(0.5, LR, q=0.3)


@pytest.mark.parametrize("fn", ["prox_group_lasso", "prox_sparse_group_lasso"])
@pytest.mark.parametrize("axis, why", [(2, "out of range"),
                                       (-3, "out of range"),
                                       ((1, -1), "repeats an axis"),
                                       ((0, 0), "repeats an axis")])
def test_bad_axis_raises_at_init_naming_the_leaf(fn, axis, why):
  factory, kwargs, _ = FACTORIES[fn]
  params = {"layers": [{"kernel": jnp.ones((2, 3))}], "bias": jnp.ones(3)}
  mask = {"layers": [{"kernel": True}], "bias": False}
  tx = factory(**dict(kwargs, axis=axis, mask=mask))  # fine until init
  with pytest.raises(ValueError) as e:
    tx.init(params)
  msg = str(e.value)
  assert f"`{fn}(axis={axis!r})`" in msg, msg
  assert "layers/0/kernel" in msg and "(2, 3)" in msg and why in msg, msg


@pytest.mark.parametrize("axis", ["rows", 1.0, True, (0, "a")])
def test_non_integer_axis_raises_type_error_at_construction(axis):
  with pytest.raises(TypeError, match=re.escape(f"axis=...)` must be an int "
                                                f"or a tuple of ints; got "
                                                f"{axis!r}")):
    optax_l1.prox_group_lasso(0.5, LR, axis=axis)


def test_axis_fits_every_masked_leaf_or_names_the_first_bad_one():
  tx = optax_l1.prox_group_lasso(0.5, LR, axis=1)
  with pytest.raises(ValueError, match=r"parameter at b of shape \(3,\)"):
    tx.init({"w": jnp.ones((2, 3)), "b": jnp.ones(3)})


def test_mask_structure_mismatch_shows_both_structures():
  params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
  mask = {"w": True, "c": False}
  tx = optax_l1.prox_l1(0.5, LR, mask=mask)
  with pytest.raises(ValueError) as e:
    tx.init(params)
  msg = str(e.value)
  assert "`prox_l1(mask=...)` must have the structure of params" in msg
  assert str(jax.tree.structure(mask)) in msg, msg
  assert str(jax.tree.structure(params)) in msg, msg


def test_mask_with_non_bool_leaf_raises_type_error():
  tx = optax_l1.prox_l1(0.5, LR, mask={"w": 1})
  with pytest.raises(TypeError, match=r"leaves must be Python bools.*got 1"):
    tx.init({"w": jnp.ones(2)})


def _all_transformations():
  out = {name: factory(**kwargs)
         for name, (factory, kwargs, _) in FACTORIES.items()}
  out["proximal"] = optax_l1.proximal(optax.adam(LR),
                                      optax_l1.prox_l1(0.5, LR))
  return out


@pytest.mark.parametrize("name", sorted(_all_transformations()))
def test_params_none_raises_optax_convention_message(name):
  tx = _all_transformations()[name]
  params = jnp.ones((2, 3))
  state = tx.init(params)
  with pytest.raises(ValueError) as e:
    tx.update(jnp.ones((2, 3)), state)
  msg = str(e.value)
  assert "computes new parameters: pass `params` to " in msg, msg
  assert "`update(updates, state, params)`" in msg, msg
  fn = "proximal()" if name == "proximal" else f"`{name}`"
  assert msg.startswith(fn), msg


@pytest.mark.parametrize("name", sorted(_all_transformations()))
@pytest.mark.parametrize("dtype", [jnp.int32, jnp.complex64, jnp.bool_])
def test_non_real_float_params_raise_type_error(name, dtype):
  tx = _all_transformations()[name]
  params = {"emb": {"table": jnp.zeros((2, 3), dtype)}}
  fn = "prox_l1" if name == "proximal" else name  # proximal's prox refuses
  with pytest.raises(TypeError) as e:
    tx.init(params)
  msg = str(e.value)
  assert f"`{fn}` acts on real floating-point parameters" in msg, msg
  assert "emb/table" in msg and jnp.dtype(dtype).name in msg, msg
  if name != "proximal":  # update checks the params it is given, too
    with pytest.raises(TypeError, match="emb/table"):
      tx.update(params, optax.EmptyState(), params)


def test_masked_out_integer_leaf_is_fine():
  params = {"w": jnp.asarray([0.3, -0.02]), "step": jnp.asarray(3, jnp.int32)}
  tx = optax_l1.prox_l1(0.5, LR, mask={"w": True, "step": False})
  updates = {"w": jnp.zeros(2), "step": jnp.asarray(1, jnp.int32)}
  out, _ = tx.update(updates, tx.init(params), params)
  np.testing.assert_allclose(np.asarray(params["w"] + out["w"]),
                             np_soft(np.asarray([0.3, -0.02]), 0.05),
                             rtol=1e-6)
  assert int(out["step"]) == 1


@pytest.mark.parametrize("inner, link, alias", [
    (optax.lion(LR), "scale_by_lion", "lion"),
    (optax.adabelief(LR), "scale_by_belief", "adabelief"),
    (optax.chain(optax.clip_by_global_norm(1.0), optax.novograd(LR)),
     "scale_by_novograd", "novograd"),
])
def test_proximal_refuses_unknown_optimizer_naming_it(inner, link, alias):
  with pytest.raises(ValueError) as e:
    optax_l1.proximal(inner, optax_l1.prox_l1(0.5))
  msg = str(e.value)
  assert f"`{link}`" in msg and alias in msg, msg
  assert "Supported: adam" in msg, msg
  assert "optax.chain(opt, prox)" not in msg, msg


def test_proximal_argument_errors():
  with pytest.raises(TypeError, match="must be an optax GradientTransformation"):
    optax_l1.proximal(lambda g: g, optax_l1.prox_l1(0.5, LR))
  with pytest.raises(ValueError, match="needs at least one prox"):
    optax_l1.proximal(optax.adam(LR))
  with pytest.raises(TypeError, match=r"argument 1 after the optimizer.*"
                     r"got GradientTransformation\w*\. Chain"):
    optax_l1.proximal(optax.adam(LR), optax.scale(2.0))


# --- no recompilation with changing hyperparameters ---------------------------

def _lin(t, a, b, n):
  return a + (b - a) * min(t, n) / n


def _cos(t, a, n):
  return a * 0.5 * (1 + math.cos(math.pi * min(t, n) / n))


def _quadratic_problem():
  target = jnp.asarray([[0.8, -0.05, 0.3], [-1.2, 0.02, 0.0]])
  w0 = jnp.asarray([[0.5, 0.5, -0.5], [0.1, -0.1, 0.0]])
  loss = lambda w: 0.5 * jnp.sum((w - target) ** 2)
  return np.asarray(target, np.float64), w0, loss


def _counting_step(opt, loss, counter):
  def step(w, state):
    counter.append(1)  # runs once per trace
    g = jax.grad(loss)(w)
    updates, state = opt.update(g, state, w)
    return optax.apply_updates(w, updates), state
  return jax.jit(step)


def test_schedules_do_not_recompile_and_match_numpy():
  n = 20
  lr = optax.linear_schedule(0.3, 0.05, n)
  lam = optax.cosine_decay_schedule(0.5, n)
  opt = optax.chain(optax.sgd(lr), optax_l1.prox_l1(lam, lr))
  target, w, loss = _quadratic_problem()
  traces = []
  step = _counting_step(opt, loss, traces)
  state = opt.init(w)
  ref = np.asarray(w, np.float64)
  for t in range(n):
    w, state = step(w, state)
    lr_t = _lin(t, 0.3, 0.05, n)
    ref = np_soft(ref - lr_t * (ref - target), lr_t * _cos(t, 0.5, n))
    np.testing.assert_allclose(np.asarray(w), ref, rtol=1e-5, atol=1e-6)
  assert len(traces) == 1 and step._cache_size() == 1
  assert int(state[1].count) == n
  assert np.count_nonzero(np.asarray(w)) < w.size  # some exact zeros


def test_inject_hyperparams_prox_l1_does_not_recompile_and_matches_numpy():
  n = 20
  inj = optax.inject_hyperparams(optax_l1.prox_l1)(lam=0.5, learning_rate=LR)
  opt = optax.chain(optax.sgd(LR), inj)
  target, w, loss = _quadratic_problem()
  traces = []
  step = _counting_step(opt, loss, traces)
  state = opt.init(w)
  ref = np.asarray(w, np.float64)
  rng = np.random.default_rng(0)
  for _ in range(n):
    lam_t = float(np.float32(rng.uniform(0.0, 1.0)))
    lr_t = float(np.float32(rng.uniform(0.05, 0.5)))
    hp = dict(state[1].hyperparams, lam=jnp.float32(lam_t),
              learning_rate=jnp.float32(lr_t))
    state = (state[0], state[1]._replace(hyperparams=hp))
    w, state = step(w, state)
    ref = np_soft(ref - LR * (ref - target), lr_t * lam_t)
    np.testing.assert_allclose(np.asarray(w), ref, rtol=1e-5, atol=1e-6)
  assert len(traces) == 1 and step._cache_size() == 1


def test_inject_hyperparams_adam_inside_proximal_does_not_recompile():
  """Adam's lr and eps change every step; proximal reads both from the state.

  The prox has no learning rate of its own: it follows the injected one,
  lowered at every step.
  """
  n = 20
  lrs = [float(np.float32(0.1 / (1 + 0.1 * t))) for t in range(n)]
  epss = [float(np.float32(10.0 ** (-1 - t % 4))) for t in range(n)]
  lam = 0.3
  inner = optax.inject_hyperparams(optax.adam)(learning_rate=lrs[0], b1=0.9,
                                                b2=0.999, eps=epss[0])
  opt = optax_l1.proximal(inner, optax_l1.prox_l1(lam))
  target, w, loss = _quadratic_problem()
  traces = []
  step = _counting_step(opt, loss, traces)
  state = opt.init(w)
  ref = np.asarray(w, np.float64)
  m = np.zeros_like(ref)
  v = np.zeros_like(ref)
  b1, b2 = 0.9, 0.999
  for t in range(n):
    hp = dict(state.inner_state.hyperparams,
              learning_rate=jnp.float32(lrs[t]), eps=jnp.float32(epss[t]))
    state = state._replace(
        inner_state=state.inner_state._replace(hyperparams=hp))
    w, state = step(w, state)
    # NumPy Adam + prox in Adam's metric.
    g = ref - target
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat = m / (1 - b1 ** (t + 1))
    v_hat = v / (1 - b2 ** (t + 1))
    p = 1 / (np.sqrt(v_hat) + epss[t])
    ref = np_soft(ref - lrs[t] * m_hat * p, lrs[t] * lam * p)
    np.testing.assert_allclose(np.asarray(w), ref, rtol=2e-4, atol=1e-6)
  assert len(traces) == 1 and step._cache_size() == 1


# --- determinism and checkpoints ------------------------------------------------

def _run(opt, steps, seed=0):
  key = jax.random.key(seed)
  k1, k2 = jax.random.split(key)
  w = {"kernel": 0.3 * jax.random.normal(k1, (6, 4)),
       "bias": 0.1 * jax.random.normal(k2, (4,))}
  x = jax.random.normal(jax.random.key(seed + 1), (16, 6))
  y = x[:, :2] @ jnp.asarray([[1.0, 0.0, -1.0, 0.5], [0.0, 2.0, 0.0, 0.0]])

  def loss(w):
    return 0.5 * jnp.mean((x @ w["kernel"] + w["bias"] - y) ** 2)

  @jax.jit
  def step(w, state):
    updates, state = opt.update(jax.grad(loss)(w), state, w)
    return optax.apply_updates(w, updates), state

  state = opt.init(w)
  for _ in range(steps):
    w, state = step(w, state)
  return w, state, step


def _optimizers():
  return {
      "chain_adam_l1_schedule": lambda: optax.chain(
          optax.adam(0.05),
          optax_l1.prox_l1(optax.linear_schedule(0.5, 0.05, 10), 0.05)),
      "proximal_adam_group": lambda: optax_l1.proximal(
          optax.adam(0.05), optax_l1.prox_group_lasso(0.3, 0.05, axis=1,
                                                      mask={"kernel": True,
                                                            "bias": False})),
      "proximal_rmsprop_sparse_group": lambda: optax_l1.proximal(
          optax.rmsprop(0.05, momentum=0.5),
          optax_l1.prox_sparse_group_lasso(0.05, 0.2, 0.05, axis=0)),
  }


@pytest.mark.parametrize("name", sorted(_optimizers()))
def test_same_inputs_bit_identical_outputs(name):
  w1, s1, _ = _run(_optimizers()[name](), 8)
  w2, s2, _ = _run(_optimizers()[name](), 8)  # fresh optimizer, fresh jit
  assert_trees_bitwise_equal(w1, w2)
  assert_trees_bitwise_equal(s1, s2)
  # And the run did something: exact zeros appeared, finite elsewhere.
  leaves = np.concatenate([np.asarray(l).ravel() for l in jax.tree.leaves(w1)])
  assert np.isfinite(leaves).all() and (leaves == 0).any()


@pytest.mark.parametrize("name", ["chain_adam_l1_schedule",
                                  "proximal_adam_group"])
def test_state_round_trips_through_flax_serialization(name):
  make = _optimizers()[name]
  opt = make()
  w, state, step = _run(opt, 3)
  blob = flax.serialization.to_bytes(state)
  template = make().init(w)  # a fresh state of the right structure
  restored = flax.serialization.from_bytes(template, blob)
  assert_trees_bitwise_equal(restored, jax.device_get(state))
  # The schedule's count comes back (the threshold after restore is the
  # one for step 3, not step 0).
  if name == "chain_adam_l1_schedule":
    assert int(restored[1].count) == 3
    assert int(restored[0][0].count) == 3
  # The next update from the restored state is bit-identical.
  w_a, s_a = step(w, state)
  restored = jax.tree.map(jnp.asarray, restored)
  w_b, s_b = step(w, restored)
  assert_trees_bitwise_equal(w_a, w_b)
  assert_trees_bitwise_equal(s_a, s_b)
  # And differs from a step taken from a fresh state (the state matters).
  w_c, _ = step(w, make().init(w))
  assert any(not np.array_equal(bits(a), bits(c)) for a, c in
             zip(jax.tree.leaves(w_a), jax.tree.leaves(w_c)))


# --- apply_if_finite --------------------------------------------------------------

@pytest.mark.parametrize("prox", ["l1", "group"])
def test_apply_if_finite_skips_nan_step_and_never_hides_it(prox):
  p = (optax_l1.prox_l1(0.2, LR) if prox == "l1"
       else optax_l1.prox_group_lasso(0.2, LR, axis=1))
  inner = optax_l1.proximal(optax.adam(LR), p)
  opt = optax.apply_if_finite(inner, 3)
  w = {"w": jnp.asarray([[0.5, -0.3, 0.01], [0.02, 0.0, 1.0]])}
  good = {"w": jnp.asarray([[0.1, -0.2, 0.3], [0.0, 0.5, -0.1]])}
  bad = {"w": good["w"].at[0, 1].set(jnp.nan)}
  update = jax.jit(opt.update)
  ref_update = jax.jit(inner.update)

  state = opt.init(w)
  # 1. A finite step equals proximal's own step, bit for bit.
  u, state = update(good, state, w)
  ref_u, ref_inner = ref_update(good, inner.init(w), w)
  assert_trees_bitwise_equal(u, ref_u)
  w = optax.apply_updates(w, u)
  inner_before = state.inner_state
  # 2. A NaN gradient: zero update (params unchanged), inner state unchanged.
  u, state = update(bad, state, w)
  np.testing.assert_array_equal(np.asarray(u["w"]), np.zeros((2, 3)))
  assert int(state.notfinite_count) == 1 and not bool(state.last_finite)
  assert_trees_bitwise_equal(state.inner_state, inner_before)
  # 3. The next finite step is the one the skipped step never disturbed.
  u, state = update(good, state, w)
  ref_u, _ = ref_update(good, ref_inner, w)
  assert_trees_bitwise_equal(u, ref_u)
  assert int(state.notfinite_count) == 0
  w = optax.apply_updates(w, u)
  # 4. Three NaN steps are skipped; the fourth exceeds the budget and is
  # applied: the NaN reaches the parameter (the prox does not hide it).
  for k in range(1, 4):
    u, state = update(bad, state, w)
    assert int(state.notfinite_count) == k
    np.testing.assert_array_equal(np.asarray(u["w"]), np.zeros((2, 3)))
  u, state = update(bad, state, w)
  new = np.asarray(optax.apply_updates(w, u)["w"])
  assert np.isnan(new[0, 1])
  if prox == "l1":  # elementwise: the other weights stay finite
    assert np.isfinite(np.delete(new.ravel(), 1)).all()
  else:  # the NaN's group (row 0) is NaN; row 1 is finite
    assert np.isnan(new[0]).all() and np.isfinite(new[1]).all()
