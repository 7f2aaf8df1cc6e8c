"""``proximal``: adaptive optimizers reach scikit-learn's optimum."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_l1
from _problems import (KERAS, MULTITASK, SMALL, TALL, WIDE, assert_solution,
                       fit, sklearn_enet, sklearn_lasso, sklearn_multitask)

ALPHAS = {"keras": 0.1, "small": 0.05, "wide": 0.1, "tall": 0.2}


def _optimizers(p):
  """(name, factory(lr), lr, steps) for every optimizer proximal supports."""
  sgd_lr = 0.5 / p.lipschitz
  sched = optax.exponential_decay(0.02, 2000, 0.5, end_value=0.002)
  return [
      ("adam", optax.adam, 0.01, 3000),
      ("adam_schedule", optax.adam, sched, 4000),
      ("adamw_wd0", lambda lr: optax.adamw(lr, weight_decay=0.0), 0.01, 3000),
      ("nadam", optax.nadam, 0.01, 3000),
      ("rmsprop", optax.rmsprop, 0.003, 4000),
      ("rmsprop_momentum", lambda lr: optax.rmsprop(lr, momentum=0.5), 0.002,
       4000),
      ("adagrad", optax.adagrad, 0.1, 10000),
      ("sgd", optax.sgd, sgd_lr, 4000),
      ("sgd_momentum", lambda lr: optax.sgd(lr, momentum=0.9), sgd_lr, 4000),
      ("sgd_nesterov", lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True),
       sgd_lr, 4000),
      ("inject_adam", optax.inject_hyperparams(optax.adam), 0.01, 3000),
      ("inject_sgd_momentum",
       lambda lr: optax.inject_hyperparams(optax.sgd)(lr, momentum=0.8),
       sgd_lr, 4000),
      ("inject_rmsprop", optax.inject_hyperparams(optax.rmsprop), 0.003, 4000),
  ]


CASES = [(p, *o) for p in (KERAS, SMALL, WIDE, TALL) for o in _optimizers(p)]


@pytest.mark.parametrize("p,name,make,lr,steps", CASES,
                         ids=[f"{c[0].name}-{c[1]}" for c in CASES])
def test_proximal_reaches_sklearn_lasso(p, name, make, lr, steps):
  del name
  alpha = ALPHAS[p.name]
  opt = optax_l1.proximal(make(lr), optax_l1.prox_l1(alpha, learning_rate=lr))
  w = fit(p, opt, steps)
  assert_solution(w, sklearn_lasso(p, alpha), 1e-4)


def test_naive_chain_after_adam_misses_the_lasso():
  """Why proximal exists: a plain lr*lam threshold after Adam is off."""
  p, alpha, lr = KERAS, 0.1, 0.01
  ref = sklearn_lasso(p, alpha)
  naive = fit(p, optax.chain(optax.adam(lr), optax_l1.prox_l1(alpha, lr)),
              3000)
  right = fit(p, optax_l1.proximal(optax.adam(lr), optax_l1.prox_l1(alpha,
                                                                    lr)), 3000)
  assert np.count_nonzero(ref == 0) >= 17
  assert np.count_nonzero(naive == 0) <= 5  # most weights never reach zero
  assert np.abs(naive - ref).max() > 0.05
  assert_solution(right, ref, 1e-4)


# RMSprop's metric is checked step by step in
# test_threshold_is_lr_lam_times_numpy_preconditioner; without momentum it
# converges too slowly on this problem for a test (a limit cycle of ~1e-4).
@pytest.mark.parametrize("make,lr,steps", [(optax.adam, 0.01, 5000),
                                           (optax.adagrad, 0.3, 5000)],
                         ids=["adam", "adagrad"])
@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_group_lasso_in_adaptive_metric_reaches_multitask_lasso(make, lr,
                                                                 steps, alpha):
  p = MULTITASK
  opt = optax_l1.proximal(make(lr), optax_l1.prox_group_lasso(alpha, lr,
                                                              axis=1))
  w = fit(p, opt, steps)
  assert_solution(w, sklearn_multitask(p, alpha), 1e-4)


def test_group_shortcuts_miss_the_multitask_optimum():
  """A per-coordinate threshold inside the group shrink is not the prox."""
  p, alpha, lr = MULTITASK, 0.05, 0.01
  ref = sklearn_multitask(p, alpha)

  def shortcut(z, step, lam):  # shrink each coordinate by its own step
    norm = jnp.linalg.norm(z, axis=1, keepdims=True)
    return z * jnp.maximum(0, 1 - step * lam / norm)

  exact = fit(p, optax_l1.proximal(optax.adam(lr), optax_l1.prox_group_lasso(
      alpha, lr, axis=1)), 5000)
  from optax_l1 import _transforms  # pylint: disable=g-import-not-at-top
  approx = _transforms._prox_transformation(  # pylint: disable=protected-access
      "shortcut", lambda z, s, _, lam: shortcut(z, s, lam), lr,
      {"lam": alpha}, None)
  off = fit(p, optax_l1.proximal(optax.adam(lr), approx), 5000)
  assert np.abs(exact - ref).max() <= 1e-4
  assert np.abs(off - ref).max() > 1e-3


@pytest.mark.parametrize("p,alpha,l1_ratio", [(SMALL, 0.1, 0.5),
                                              (WIDE, 0.2, 0.7)],
                         ids=["small", "wide"])
def test_elastic_net_under_adam_reaches_sklearn(p, alpha, l1_ratio):
  lr = 0.01
  opt = optax_l1.proximal(optax.adam(lr), optax_l1.prox_elastic_net(
      alpha * l1_ratio, alpha * (1 - l1_ratio), lr))
  w = fit(p, opt, 4000)
  assert_solution(w, sklearn_enet(p, alpha, l1_ratio), 1e-4)


def test_adamw_weight_decay_fixed_point():
  """With decoupled decay the fixed point solves the documented condition.

  At a full-batch fixed point Adam's ``v_hat -> g^2``, so each coordinate
  satisfies ``g_i + lam sign(w_i) + wd w_i (|g_i| + eps) = 0`` if ``w_i != 0``
  and ``|g_i| <= lam`` if ``w_i == 0``.
  """
  p, lam, lr, wd = SMALL, 0.05, 0.01, 0.5
  w = fit(p, optax_l1.proximal(optax.adamw(lr, weight_decay=wd),
                               optax_l1.prox_l1(lam, lr)), 25000)
  X, y = p.X.astype(np.float64), p.y.astype(np.float64)
  w64 = w.astype(np.float64)
  g = X.T @ (X @ w64 - y) / len(y)
  nz = w != 0
  resid = g[nz] + lam * np.sign(w64[nz]) + wd * w64[nz] * (np.abs(g[nz]) + 1e-8)
  np.testing.assert_allclose(resid, 0, atol=1e-4)
  assert np.all(np.abs(g[~nz]) <= lam + 1e-4)
  # The decay is really there: this is not the lasso solution.
  assert np.abs(w - sklearn_lasso(p, lam)).max() > 1e-3


def test_minibatch_decaying_lr_recovers_true_support():
  rng = np.random.default_rng(7)
  n, d, k = 4000, 30, 5
  X = rng.normal(size=(n, d)).astype(np.float32)
  w_true = np.zeros(d, np.float32)
  w_true[:k] = rng.choice([-1.0, 1.0], k) * rng.uniform(1.0, 2.0, k)
  y = (X @ w_true + 0.3 * rng.normal(size=n)).astype(np.float32)
  sched = optax.cosine_decay_schedule(0.02, 3000, alpha=0.01)
  opt = optax_l1.proximal(optax.adam(sched), optax_l1.prox_l1(0.05, sched))
  Xj, yj = jnp.asarray(X), jnp.asarray(y)

  def loss(w, idx):
    r = Xj[idx] @ w - yj[idx]
    return 0.5 * jnp.mean(r * r)

  @jax.jit
  def train(w, key):
    state = opt.init(w)

    def body(_, carry):
      w, state, key = carry
      key, sub = jax.random.split(key)
      idx = jax.random.randint(sub, (64,), 0, n)
      updates, state = opt.update(jax.grad(loss)(w, idx), state, w)
      return optax.apply_updates(w, updates), state, key
    return jax.lax.fori_loop(0, 3000, body, (w, state, key))[0]

  w = np.asarray(train(jnp.zeros(d), jax.random.key(0)))
  np.testing.assert_array_equal(w != 0, w_true != 0)
  np.testing.assert_allclose(w[:k], w_true[:k], atol=0.15)


def _np_soft(z, t):
  return np.sign(z) * np.maximum(np.abs(z) - t, 0)


def _adam_p(st, b2, eps, eps_root=0.0):
  v_hat = np.asarray(st.nu, np.float64) / (1 - b2 ** int(st.count))
  return 1 / (np.sqrt(v_hat + eps_root) + eps)


# (optimizer with non-default hyperparameters, NumPy preconditioner from the
# inner state after the step). The hyperparameters are deliberately not
# optax's defaults, so reading the wrong ones shows.
METRICS = [
    ("adam", lambda: optax.adam(0.1, b2=0.9, eps=1e-2),
     lambda s: _adam_p(s[0], 0.9, 1e-2)),
    ("adam_eps_root", lambda: optax.adam(0.1, b2=0.95, eps=1e-3, eps_root=1e-2),
     lambda s: _adam_p(s[0], 0.95, 1e-3, 1e-2)),
    ("nadam", lambda: optax.nadam(0.1, b2=0.9, eps=1e-2),
     lambda s: _adam_p(s[0], 0.9, 1e-2)),
    ("adamw", lambda: optax.adamw(0.1, b2=0.9, eps=1e-2, weight_decay=0.1),
     lambda s: _adam_p(s[0], 0.9, 1e-2)),
    ("inject_adam",
     lambda: optax.inject_hyperparams(optax.adam)(0.1, b2=0.9, eps=1e-2),
     lambda s: _adam_p(s.inner_state[0], 0.9, 1e-2)),
    ("rmsprop", lambda: optax.rmsprop(0.1, eps=1e-2),
     lambda s: 1 / np.sqrt(np.asarray(s[0].nu, np.float64) + 1e-2)),
    ("rmsprop_eps_out_bias",
     lambda: optax.rmsprop(0.1, decay=0.8, eps=1e-2, eps_in_sqrt=False,
                           bias_correction=True),
     lambda s: 1 / (np.sqrt(np.asarray(s[0].nu, np.float64)
                            / (1 - 0.8 ** int(s[0].count))) + 1e-2)),
    ("rmsprop_centered_momentum",
     lambda: optax.rmsprop(0.1, eps=1e-2, centered=True, momentum=0.6),
     lambda s: 1 / np.sqrt(np.asarray(s[0].nu, np.float64)
                           - np.asarray(s[0].mu, np.float64) ** 2 + 1e-2)
     / (1 - 0.6)),
    ("inject_rmsprop_momentum",
     lambda: optax.inject_hyperparams(optax.rmsprop)(0.1, eps=1e-2,
                                                     momentum=0.6),
     lambda s: 1 / np.sqrt(np.asarray(s.inner_state[0].nu, np.float64) + 1e-2)
     / (1 - 0.6)),
    ("adagrad", lambda: optax.adagrad(0.1, eps=1e-2),
     lambda s: 1 / np.sqrt(np.asarray(s[0].sum_of_squares, np.float64) + 1e-2)),
    ("sgd", lambda: optax.sgd(0.1), lambda s: 1.0),
    ("sgd_momentum", lambda: optax.sgd(0.1, momentum=0.7), lambda s: 1 / 0.3),
    ("sgd_nesterov", lambda: optax.sgd(0.1, momentum=0.7, nesterov=True),
     lambda s: 1 / 0.3),
    ("sgd_schedule_momentum",
     lambda: optax.sgd(optax.linear_schedule(0.1, 0.1, 5), momentum=0.5),
     lambda s: 2.0),
]


@pytest.mark.parametrize("name,make,precond", METRICS,
                         ids=[m[0] for m in METRICS])
def test_threshold_is_lr_lam_times_numpy_preconditioner(name, make, precond):
  """One proximal step equals soft(params + u, lr * lam * P) with P in NumPy."""
  del name
  lr, lam = 0.1, 0.3
  rng = np.random.default_rng(0)
  params = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
  grads = [jnp.asarray(rng.normal(size=(4, 5)), jnp.float32) for _ in range(4)]
  inner = make()
  opt = optax_l1.proximal(make(), optax_l1.prox_l1(lam, lr))
  s_in, s_px = inner.init(params), opt.init(params)
  for g in grads[:3]:  # same history for both
    _, s_in = inner.update(g, s_in, params)
    _, s_px = opt.update(g, s_px, params)
  u, s_in = inner.update(grads[3], s_in, params)
  got, _ = jax.jit(opt.update)(grads[3], s_px, params)
  z = np.asarray(params + u, np.float64)
  want = _np_soft(z, lr * lam * precond(s_in)) - np.asarray(params)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)
  assert np.count_nonzero(np.asarray(params + got) == 0) == np.count_nonzero(
      _np_soft(z, lr * lam * precond(s_in)) == 0)


def test_state_holds_no_extra_moments():
  params = {"w": jnp.zeros((100, 10))}
  inner = optax.adam(0.1)
  prox_state = optax_l1.proximal(inner, optax_l1.prox_l1(0.1, 0.1)).init(
      params)
  nbytes = lambda t: sum(x.nbytes for x in jax.tree.leaves(t))
  assert nbytes(prox_state) == nbytes(inner.init(params))


class TestErrors:

  def test_unknown_optimizer_is_refused_at_construction(self):
    with pytest.raises(ValueError, match="scale_by_lion"):
      optax_l1.proximal(optax.lion(0.1), optax_l1.prox_l1(0.1))

  def test_non_prox_argument(self):
    with pytest.raises(TypeError, match="prox transformation"):
      optax_l1.proximal(optax.adam(0.1), optax.scale(2.0))

  def test_no_prox(self):
    with pytest.raises(ValueError, match="at least one"):
      optax_l1.proximal(optax.adam(0.1))

  def test_params_none(self):
    opt = optax_l1.proximal(optax.adam(0.1), optax_l1.prox_l1(0.1, 0.1))
    with pytest.raises(ValueError, match="pass `params`"):
      opt.update(jnp.zeros(3), opt.init(jnp.zeros(3)))

  def test_two_adams_with_different_hyperparameters(self):
    inner = optax.chain(optax.scale_by_adam(b2=0.99),
                        optax.scale_by_adam(b2=0.9), optax.scale(-0.1))
    with pytest.raises(ValueError, match="more than one per-coordinate"):
      optax_l1.proximal(inner, optax_l1.prox_l1(0.1))


def test_injected_prox_inside_proximal_follows_its_hyperparameters():
  """inject_hyperparams(prox_l1) gets the metric; changing lam needs no retrace."""
  lr = 0.1
  inner = optax.adam(lr, b2=0.9, eps=1e-2)
  opt = optax_l1.proximal(
      optax.adam(lr, b2=0.9, eps=1e-2),
      optax.inject_hyperparams(optax_l1.prox_l1)(lam=0.3, learning_rate=lr))
  rng = np.random.default_rng(1)
  params = jnp.asarray(rng.normal(size=8), jnp.float32)
  s_in, s_px = inner.init(params), opt.init(params)
  traces = []

  @jax.jit
  def step(g, s, p):
    traces.append(1)
    return opt.update(g, s, p)

  for lam in (0.3, 0.05, 0.6):
    s_px = s_px._replace(prox_states=(s_px.prox_states[0]._replace(
        hyperparams={**s_px.prox_states[0].hyperparams,
                     "lam": jnp.asarray(lam)}),))
    g = jnp.asarray(rng.normal(size=8), jnp.float32)
    u, s_in = inner.update(g, s_in, params)
    got, s_px = step(g, s_px, params)
    z = np.asarray(params + u, np.float64)
    want = _np_soft(z, lr * lam * _adam_p(s_in[0], 0.9, 1e-2))
    np.testing.assert_allclose(np.asarray(params + got), want, atol=1e-6)
  assert len(traces) == 1


@pytest.mark.parametrize("make_mask", [
    lambda: optax_l1.magnitude_prune(0.5),
    lambda: optax_l1.nm_prune(2, 4),
], ids=["magnitude_prune", "nm_prune"])
def test_pruned_weights_get_their_moments_reset(make_mask):
  """Under proximal, the moments of pruned weights are zero; others untouched."""
  rng = np.random.default_rng(0)
  params = jnp.asarray(rng.normal(size=(4, 8)), jnp.float32)
  g = jnp.asarray(rng.normal(size=(4, 8)), jnp.float32)
  inner = optax.adam(0.1)
  opt = optax_l1.proximal(optax.adam(0.1), make_mask())
  updates, state = jax.jit(opt.update)(g, opt.init(params), params)
  new = np.asarray(optax.apply_updates(params, updates))
  u_ref, s_ref = inner.update(g, inner.init(params), params)
  z = np.asarray(params + u_ref)
  # NumPy reference of the pattern: half the weights by |params| (the iterate
  # magnitude_prune ranks), or the
  # 2 largest of each block of 4 consecutive weights along the last axis.
  if isinstance(state.prox_states[0], optax_l1.MagnitudePruneState):
    order = np.argsort(np.abs(np.asarray(params)).ravel(), kind="stable")
    keep = np.ones(z.size, bool)
    keep[order[:16]] = False
    keep = keep.reshape(z.shape)
  else:
    blocks = np.abs(z).reshape(4, 2, 4)
    ranks = np.argsort(np.argsort(-blocks, axis=-1, kind="stable"), axis=-1)
    keep = (ranks < 2).reshape(4, 8)
  np.testing.assert_array_equal(new != 0, keep)
  np.testing.assert_array_equal(new[keep], z[keep])
  adam_state = state.inner_state[0]
  for got, want in ((adam_state.mu, s_ref[0].mu), (adam_state.nu, s_ref[0].nu)):
    got, want = np.asarray(got), np.asarray(want)
    np.testing.assert_array_equal(got[~keep], 0.0)
    np.testing.assert_array_equal(got[keep], want[keep])
