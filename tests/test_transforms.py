"""Prox transformations in a plain chain: ISTA against scikit-learn."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_l1
from _problems import (KERAS, LASSO_PROBLEMS, MULTITASK, SMALL, TALL, WIDE,
                       assert_solution, enable_x64, fit, loss_fn, sklearn_enet,
                       sklearn_lasso, sklearn_multitask)

ALPHAS = {"keras": 0.1, "small": 0.05, "wide": 0.1, "tall": 0.2}


@pytest.mark.parametrize("p", LASSO_PROBLEMS, ids=lambda p: p.name)
def test_ista_chain_reaches_sklearn_lasso(p):
  alpha = ALPHAS[p.name]
  lr = 1.0 / p.lipschitz
  opt = optax.chain(optax.sgd(lr), optax_l1.prox_l1(alpha, learning_rate=lr))
  w = fit(p, opt, 4000)
  ref = sklearn_lasso(p, alpha)
  assert_solution(w, ref, 1e-5)
  if p.name in ("keras", "wide"):  # the dead first column is exactly zero
    assert w[0] == 0.0


def test_keras_report_all_zero():
  """The Keras report: sklearn returns all zeros, so must ISTA."""
  lr = 1.0 / KERAS.lipschitz
  w = fit(KERAS, optax.chain(optax.sgd(lr), optax_l1.prox_l1(0.1, lr)), 500,
          w0=jnp.full((20,), 0.3))
  ref = sklearn_lasso(KERAS, 0.1)
  assert np.count_nonzero(ref) == 0
  assert np.count_nonzero(w) == 0


@pytest.mark.parametrize("p", [SMALL, TALL], ids=lambda p: p.name)
def test_nonnegative_lasso(p):
  alpha = ALPHAS[p.name]
  lr = 1.0 / p.lipschitz
  opt = optax.chain(optax.sgd(lr),
                    optax_l1.prox_l1(alpha, lr, nonnegative=True))
  w = fit(p, opt, 4000)
  ref = sklearn_lasso(p, alpha, positive=True)
  assert (w >= 0).all()
  assert_solution(w, ref, 1e-5)


def test_weighted_lasso_matches_rescaled_sklearn():
  # sum_i c_i |w_i| with X' = X / c is a plain lasso in v = c * w.
  p = SMALL
  c = np.linspace(0.5, 2.0, p.X.shape[1]).astype(np.float32)
  alpha, lr = 0.05, 1.0 / p.lipschitz
  w = fit(p, optax.chain(optax.sgd(lr),
                         optax_l1.prox_l1(alpha, lr, weights=jnp.asarray(c))),
          6000)
  from sklearn.linear_model import Lasso  # pylint: disable=g-import-not-at-top
  v = Lasso(alpha=alpha, fit_intercept=False, tol=1e-12,
            max_iter=200_000).fit(p.X.astype(np.float64) / c,
                                  p.y.astype(np.float64)).coef_
  assert_solution(w, v / c, 1e-5)


@pytest.mark.parametrize("p,alpha,l1_ratio", [(SMALL, 0.1, 0.5),
                                              (WIDE, 0.2, 0.7)],
                         ids=["small", "wide"])
def test_elastic_net_reaches_sklearn(p, alpha, l1_ratio):
  lr = 1.0 / (p.lipschitz + alpha * (1 - l1_ratio))
  opt = optax.chain(optax.sgd(lr), optax_l1.prox_elastic_net(
      alpha * l1_ratio, alpha * (1 - l1_ratio), lr))
  w = fit(p, opt, 6000)
  assert_solution(w, sklearn_enet(p, alpha, l1_ratio), 1e-5)


@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_group_lasso_reaches_multitask_lasso(alpha):
  p = MULTITASK
  lr = 1.0 / p.lipschitz
  opt = optax.chain(optax.sgd(lr),
                    optax_l1.prox_group_lasso(alpha, lr, axis=1))
  w = fit(p, opt, 6000)
  ref = sklearn_multitask(p, alpha)
  assert w[0].tolist() == [0.0] * 4  # dead feature: whole row exactly 0
  assert_solution(w, ref, 1e-5)


def test_ista_matches_numpy_iteration_step_by_step():
  """Each step equals the scalar NumPy ISTA update exactly (to rounding)."""
  p = SMALL
  X, y = p.X.astype(np.float64), p.y.astype(np.float64)
  lr, lam = 0.5 / p.lipschitz, 0.05
  opt = optax.chain(optax.sgd(lr), optax_l1.prox_l1(lam, lr))
  loss = loss_fn(p)
  w = jnp.zeros(12)
  state = opt.init(w)
  wn = np.zeros(12)
  step = jax.jit(opt.update)
  for _ in range(20):
    u, state = step(jax.grad(loss)(w), state, w)
    w = optax.apply_updates(w, u)
    z = wn - lr * X.T @ (X @ wn - y) / len(y)
    wn = np.array([np.sign(v) * max(abs(v) - lr * lam, 0.0) for v in z])
  np.testing.assert_allclose(w, wn, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(w) == 0, wn == 0)


def test_mask_leaves_bias_alone_and_schedules():
  """Masked leaves take the plain SGD step; schedules follow the count."""
  lam_sched = optax.linear_schedule(0.0, 1.0, 10)
  lr_sched = optax.constant_schedule(0.1)
  opt = optax.chain(
      optax.sgd(lr_sched),
      optax_l1.prox_l1(lam_sched, lr_sched, mask=lambda p: {"w": True,
                                                          "b": False}))
  params = {"w": jnp.array([1.0, -1.0, 0.05]), "b": jnp.array([0.5])}
  state = opt.init(params)
  grads = {"w": jnp.array([0.1, 0.0, 0.0]), "b": jnp.array([1.0])}
  step = jax.jit(opt.update)
  w = np.array([1.0, -1.0, 0.05])
  b = 0.5
  for t in range(5):
    updates, state = step(grads, state, params)
    params = optax.apply_updates(params, updates)
    thr = 0.1 * (t / 10)  # lr * lam_t, lam_t = t / 10
    z = w - 0.1 * np.array([0.1, 0.0, 0.0])
    w = np.sign(z) * np.maximum(np.abs(z) - thr, 0)
    b = b - 0.1
  np.testing.assert_allclose(params["w"], w, atol=1e-6)
  np.testing.assert_allclose(params["b"], [b], atol=1e-6)
  assert state[1].count == 5


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_exact_zeros_in_every_dtype(dtype):
  params = jnp.array([0.3, -0.01, 0.002, -2.0], dtype)
  opt = optax.chain(optax.sgd(0.1), optax_l1.prox_l1(0.5, 0.1))
  updates, _ = jax.jit(opt.update)(jnp.zeros_like(params), opt.init(params),
                                   params)
  new = optax.apply_updates(params, updates)
  assert new.dtype == dtype
  ref = np.sign([0.3, -0.01, 0.002, -2.0]) * np.maximum(
      np.abs(np.asarray(params, np.float64)) - 0.05, 0)
  np.testing.assert_array_equal(np.asarray(new, np.float64) == 0, ref == 0)
  assert np.count_nonzero(np.asarray(new, np.float64)) == 2
  np.testing.assert_allclose(np.asarray(new, np.float64), ref, rtol=1e-2)


def test_exact_zeros_float64():
  with enable_x64(True):
    params = jnp.array([0.3, -0.01, 1e-300], jnp.float64)
    opt = optax.chain(optax.sgd(0.1), optax_l1.prox_l1(0.5, 0.1))
    updates, _ = opt.update(jnp.zeros_like(params), opt.init(params), params)
    new = optax.apply_updates(params, updates)
    assert new.dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(new), [0.25, 0.0, 0.0])


def test_hard_threshold_is_l0_prox():
  z = np.array([0.5, -1.1, 0.99, 3.0, -0.2], np.float32)
  lr, lam = 0.5, 1.0  # keep |z| > sqrt(2 * lr * lam) = 1
  opt = optax.chain(optax.sgd(lr), optax_l1.hard_threshold(lam, lr))
  updates, _ = opt.update(jnp.zeros(5), opt.init(jnp.asarray(z)),
                          jnp.asarray(z))
  new = np.asarray(optax.apply_updates(jnp.asarray(z), updates))
  # Reference: minimize (x - z)^2 / (2 lr) + lam [x != 0] over {0, z}.
  keep = z ** 2 / (2 * lr) > lam
  np.testing.assert_array_equal(new, np.where(keep, z, 0))


def test_sparse_group_lasso_kkt():
  """Fixed point of ISTA with the SGL prox satisfies the SGL KKT conditions."""
  p = MULTITASK
  l1, lam, lr = 0.03, 0.08, 1.0 / p.lipschitz
  opt = optax.chain(optax.sgd(lr),
                    optax_l1.prox_sparse_group_lasso(l1, lam, lr, axis=1))
  w = fit(p, opt, 8000).astype(np.float64)
  X, Y = p.X.astype(np.float64), p.y.astype(np.float64)
  g = X.T @ (X @ w - Y) / X.shape[0]
  for j in range(w.shape[0]):
    row, gr = w[j], g[j]
    if not row.any():
      # 0 in g + l1 [-1, 1] + lam * ball  <=>  ||soft(g, l1)|| <= lam
      s = np.sign(gr) * np.maximum(np.abs(gr) - l1, 0)
      assert np.linalg.norm(s) <= lam + 1e-5
      continue
    nz = row != 0
    resid = gr[nz] + l1 * np.sign(row[nz]) + lam * row[nz] / np.linalg.norm(row)
    np.testing.assert_allclose(resid, 0, atol=1e-5)
    assert np.all(np.abs(gr[~nz]) <= l1 + 1e-5)
  assert np.count_nonzero(w == 0) > 0


class TestErrors:

  @pytest.mark.parametrize("lam", [-1.0, float("nan"), float("inf")])
  def test_bad_lam(self, lam):
    with pytest.raises(ValueError, match=r"prox_l1\(lam=\.\.\.\)"):
      optax_l1.prox_l1(lam, 0.1)

  @pytest.mark.parametrize("lr", [0.0, -0.1, float("nan")])
  def test_bad_learning_rate(self, lr):
    with pytest.raises(ValueError, match="learning_rate"):
      optax_l1.prox_group_lasso(0.1, lr, axis=0)

  def test_bool_lam_is_a_type_error(self):
    with pytest.raises(TypeError, match="lam"):
      optax_l1.prox_l1(True, 0.1)

  def test_axis_out_of_range(self):
    tx = optax_l1.prox_group_lasso(0.1, 0.1, axis=2)
    with pytest.raises(ValueError, match=r"axis=2.*kernel.*\(3, 4\)"):
      tx.init({"kernel": jnp.zeros((3, 4))})

  def test_duplicated_axis(self):
    tx = optax_l1.prox_group_lasso(0.1, 0.1, axis=(0, -2))
    with pytest.raises(ValueError, match="repeats"):
      tx.init(jnp.zeros((3, 4)))

  def test_params_none(self):
    tx = optax_l1.prox_l1(0.1, 0.1)
    with pytest.raises(ValueError, match="pass `params`"):
      tx.update(jnp.zeros(3), tx.init(jnp.zeros(3)))

  def test_mask_structure_mismatch(self):
    tx = optax_l1.prox_l1(0.1, 0.1, mask={"a": True})
    with pytest.raises(ValueError, match="mask"):
      tx.init({"a": jnp.zeros(2), "b": jnp.zeros(2)})

  def test_integer_params(self):
    tx = optax_l1.prox_l1(0.1, 0.1)
    with pytest.raises(TypeError, match="floating-point.*int32"):
      tx.init({"steps": jnp.zeros(2, jnp.int32)})


def _np_mcp(z, t, lam, gamma):  # firm thresholding, t < gamma (Zhang 2010)
  if abs(z) <= t * lam:
    return 0.0
  if abs(z) <= gamma * lam:
    return np.sign(z) * (abs(z) - t * lam) / (1 - t / gamma)
  return z


def _np_scad(z, t, lam, a):  # Fan & Li 2001, t < a - 1
  if abs(z) <= lam * (1 + t):
    return np.sign(z) * max(abs(z) - t * lam, 0.0)
  if abs(z) <= a * lam:
    return ((a - 1) * z - np.sign(z) * a * t * lam) / (a - 1 - t)
  return z


def _np_half(z, t):  # argmin (x - z)^2 / 2 + t sqrt(|x|), by dense search
  xs = np.linspace(0, abs(z), 200001)
  f = (xs - abs(z)) ** 2 / 2 + t * np.sqrt(xs)
  return np.sign(z) * xs[np.argmin(f)]


@pytest.mark.parametrize("kind", ["mcp", "scad", "lq"])
def test_nonconvex_transformations_take_the_numpy_prox(kind):
  lr, lam = 0.2, 1.0
  z = np.array([-4.0, -1.1, -0.3, 0.0, 0.15, 0.5, 1.0, 2.5, 6.0], np.float32)
  if kind == "mcp":
    tx, want = optax_l1.prox_mcp(lam, 3.0, lr), [
        _np_mcp(v, lr, lam, 3.0) for v in z.astype(np.float64)]
  elif kind == "scad":
    tx, want = optax_l1.prox_scad(lam, 3.7, lr), [
        _np_scad(v, lr, lam, 3.7) for v in z.astype(np.float64)]
  else:
    tx, want = optax_l1.prox_lq(lam, lr, q=0.5), [
        _np_half(v, lr * lam) for v in z.astype(np.float64)]
  opt = optax.chain(optax.sgd(lr), tx)
  p = jnp.asarray(z)
  updates, _ = jax.jit(opt.update)(jnp.zeros_like(p), opt.init(p), p)
  got = np.asarray(optax.apply_updates(p, updates), np.float64)
  np.testing.assert_allclose(got, want, atol=2e-5)
  np.testing.assert_array_equal(got == 0, np.asarray(want) == 0)


@pytest.mark.parametrize("factory,kwargs,match", [
    (optax_l1.prox_mcp, dict(lam=0.1, gamma=0.0, learning_rate=0.1), "gamma"),
    (optax_l1.prox_scad, dict(lam=0.1, a=2.0, learning_rate=0.1), "a=.*> 2"),
    (optax_l1.prox_lq, dict(lam=0.1, learning_rate=0.1, q=1.0), "q"),
    (optax_l1.prox_elastic_net, dict(l1=0.1, l2=-1.0, learning_rate=0.1),
     "l2"),
])
def test_nonconvex_bad_hyperparameters(factory, kwargs, match):
  with pytest.raises(ValueError, match=match):
    factory(**kwargs)


# --- array hyperparameters keep the leaf's shape ------------------------------


@pytest.mark.parametrize("make, arg, shape", [
    (lambda: optax_l1.prox_l1(jnp.ones((2, 1, 1)), 0.1), "lam", (2, 1, 1)),
    (lambda: optax_l1.prox_l1(0.1, 0.1, weights={"b": 1.0,
                                                 "w": jnp.ones(3)}),
     "weights", (3,)),
    (lambda: optax_l1.prox_elastic_net(jnp.ones((8, 1)), 0.1, 0.1), "l1",
     (8, 1)),
], ids=["lam_adds_axes", "weights_wrong_length", "l1_wrong_axis"])
def test_array_hyperparameter_that_changes_the_shape_is_refused(make, arg,
                                                                shape):
  params = {"w": jnp.ones((4, 8)), "b": jnp.ones(())}
  opt = optax.chain(optax.sgd(0.1), make())
  if arg != "weights":  # the scalar leaf would be refused first
    params = {"w": params["w"]}
  with pytest.raises(ValueError) as e:
    opt.init(params)
  msg = str(e.value)
  assert f"{arg}=" in msg and str(shape) in msg and "(4, 8)" in msg, msg
  assert "at w " in msg, msg


def test_array_lam_that_broadcasts_is_per_coordinate():
  rng = np.random.default_rng(0)
  params = jnp.asarray(rng.normal(size=(4, 8)), jnp.float32)
  lam = jnp.asarray(rng.uniform(0, 2, size=(1, 8)), jnp.float32)
  opt = optax.chain(optax.sgd(0.1), optax_l1.prox_l1(lam, 0.1))
  u, _ = jax.jit(opt.update)(jnp.zeros((4, 8)), opt.init(params), params)
  z = np.asarray(params, np.float64)
  want = np.sign(z) * np.maximum(np.abs(z) - 0.1 * np.asarray(lam), 0)
  np.testing.assert_allclose(np.asarray(params + u), want, rtol=1e-6,
                             atol=1e-7)


# --- a hyperparameter out of range at run time: a visible NaN ------------------


def test_schedule_going_negative_gives_a_nan_update():
  lam = lambda count: 0.1 - 0.1 * count  # 0.1, 0.0, -0.1, ...
  w = jnp.asarray([1.0, 0.05, -0.5], jnp.float32)
  opt = optax.chain(optax.sgd(0.1), optax_l1.prox_l1(lam, 0.1))
  update = jax.jit(opt.update)
  state = opt.init(w)
  outs = []
  for _ in range(3):
    u, state = update(jnp.zeros(3), state, w)
    outs.append(np.asarray(u))
  np.testing.assert_allclose(outs[0] + np.asarray(w),
                             [0.99, 0.04, -0.49], rtol=1e-6)
  np.testing.assert_array_equal(outs[1], 0.0)
  assert np.all(np.isnan(outs[2]))


@pytest.mark.parametrize("make, name, bad", [
    (lambda: optax.inject_hyperparams(optax_l1.prox_l1)(lam=0.1,
                                                        learning_rate=0.1),
     "lam", -0.1),
    (lambda: optax.inject_hyperparams(optax_l1.prox_mcp)(
        lam=0.1, gamma=3.0, learning_rate=0.1), "gamma", 0.0),
    (lambda: optax.inject_hyperparams(optax_l1.prox_scad)(
        lam=0.1, a=3.7, learning_rate=0.1), "a", 2.0),
    (lambda: optax.inject_hyperparams(optax_l1.prox_l1)(lam=0.1,
                                                        learning_rate=0.1),
     "learning_rate", -0.1),
], ids=["lam", "mcp_gamma", "scad_a", "learning_rate"])
def test_injected_value_out_of_range_gives_nan_under_jit(make, name, bad):
  w = jnp.asarray([1.0, 0.05, -0.5], jnp.float32)
  prox = make()
  opt = optax.chain(optax.sgd(0.1), prox)
  state = opt.init(w)
  hp = dict(state[1].hyperparams, **{name: jnp.asarray(bad, jnp.float32)})
  state = (state[0], state[1]._replace(hyperparams=hp))
  u, _ = jax.jit(opt.update)(jnp.zeros(3), state, w)
  assert np.all(np.isnan(np.asarray(u)))


def test_ascending_optimizer_under_proximal_gives_nan():
  w = jnp.asarray([1.0, 0.05], jnp.float32)
  opt = optax_l1.proximal(optax.chain(optax.scale_by_adam(), optax.scale(0.1)),
                          optax_l1.prox_l1(0.1))
  u, _ = jax.jit(opt.update)(jnp.ones(2), opt.init(w), w)
  assert np.all(np.isnan(np.asarray(u)))
