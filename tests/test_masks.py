"""Tests for the pruning masks: magnitude_prune, keep_zeros, nm_prune.

Every count and every pruned set is checked against an independent NumPy
reference (stable argsort of ``|w|``: among equal magnitudes the lower flat
index is pruned first). ``magnitude_prune`` ranks the current ``params`` (the
iterate before this step's update), with the weights pruned so far first.
Updates run under ``jax.jit``.
"""

import math
import re

import flax.serialization
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optax_l1 import _masks
from optax_l1._masks import MagnitudePruneState
from optax_l1._masks import keep_zeros
from optax_l1._masks import magnitude_prune
from optax_l1._nm import nm_mask
from optax_l1._nm import nm_prune
from optax_l1._ranking import magnitude_mask

from _problems import enable_x64


# ---------------------------------------------------------------------------
# NumPy references.
# ---------------------------------------------------------------------------


def np_target(t, sparsity, begin, end, power=3):
  """Zhu & Gupta's cubic schedule in float64."""
  if end == begin:
    progress = 1.0
  else:
    progress = min(max((t - begin) / (end - begin), 0.0), 1.0)
  return sparsity * (1.0 - (1.0 - progress) ** power)


def np_is_update(t, begin, end, every):
  return begin <= t <= end and (t - begin) % every == 0


def np_keep(w, k):
  """Keep-mask removing the k smallest |w| (ties: lower flat index first)."""
  w = np.asarray(w, np.float64)
  order = np.argsort(np.abs(w).ravel(), kind="stable")
  keep = np.ones(w.size, bool)
  keep[order[:k]] = False
  return keep.reshape(w.shape)


def np_keep_after(w, old_keep, k):
  """np_keep with the weights pruned so far (old_keep False) ranked first."""
  return np_global_keep_after([w], [old_keep], k)[0]


def np_global_keep_after(ws, old_keeps, k):
  """Joint ranking of |w| with the weights pruned so far below all others."""
  key = np.concatenate([
      np.where(np.asarray(o, bool), np.abs(np.asarray(w, np.float64)), -1.0)
      .ravel() for w, o in zip(ws, old_keeps)])
  order = np.argsort(key, kind="stable")  # NaN last: never pruned
  keep = np.ones(key.size, bool)
  keep[order[:k]] = False
  out, start = [], 0
  for w in ws:
    out.append(keep[start:start + np.size(w)].reshape(np.shape(w)))
    start += np.size(w)
  return out


def np_global_keep(ws, k):
  """Joint ranking over the concatenation (leaf order, then flat index)."""
  flat = np.concatenate([np.asarray(w, np.float64).ravel() for w in ws])
  keep = np_keep(flat, k)
  out, start = [], 0
  for w in ws:
    out.append(keep[start:start + w.size].reshape(w.shape))
    start += w.size
  return out


def np_nm_keep(z, n, m, axis):
  """Per block of m along axis: keep the n largest |z|, ties lower index."""
  z = np.moveaxis(np.asarray(z, np.float64), axis, -1)
  blocks = z.reshape(z.shape[:-1] + (z.shape[-1] // m, m))
  order = np.argsort(-np.abs(blocks), axis=-1, kind="stable")
  keep = np.zeros(blocks.shape, bool)
  np.put_along_axis(keep, order[..., :n], True, axis=-1)
  return np.moveaxis(keep.reshape(z.shape), -1, axis)


def rng_tree(seed, shapes, scales=None, dtype=np.float32):
  rng = np.random.default_rng(seed)
  scales = scales or {k: 1.0 for k in shapes}
  return {k: jnp.asarray((rng.standard_normal(s) * scales[k]).astype(dtype))
          for k, s in shapes.items()}


SHAPES = {"a": (37,), "b": (8, 16), "c": (5, 7, 3)}


# ---------------------------------------------------------------------------
# magnitude_prune: schedule, exact counts, exact pruned sets.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("per_leaf", [False, True])
def test_schedule_counts_and_sets_layer(per_leaf):
  begin, end, every, steps = 3, 23, 4, 30
  targets = {"a": 0.9, "b": 0.55, "c": 0.3}
  sparsity = targets if per_leaf else 0.9
  tx = magnitude_prune(sparsity, begin_step=begin, end_step=end,
                       update_every=every)
  params = rng_tree(0, SHAPES)
  state = tx.init(params)
  update = jax.jit(tx.update)
  rng = np.random.default_rng(1)
  old_keep = {k: np.ones(s, bool) for k, s in SHAPES.items()}
  n_updates = 0
  for t in range(steps):
    u = {k: jnp.asarray(0.05 * rng.standard_normal(s).astype(np.float32))
         for k, s in SHAPES.items()}
    updates, state = update(u, state, params)
    new_params = optax.apply_updates(params, updates)
    assert int(state.count) == t + 1
    for k in SHAPES:
      p, uk = np.asarray(params[k]), np.asarray(u[k])
      z = p + uk  # float32, as in the transformation
      mask = np.asarray(state.mask[k])
      assert mask.dtype == np.bool_
      if np_is_update(t, begin, end, every):
        s = targets[k] if per_leaf else 0.9
        kk = round(np_target(t, s, begin, end) * p.size)
        # Ranked on the current params (not z), pruned weights first.
        np.testing.assert_array_equal(mask, np_keep_after(p, old_keep[k], kk))
        assert (~mask).sum() == kk
      else:
        np.testing.assert_array_equal(mask, old_keep[k])
      # New parameters: exactly the plain step where kept, exactly 0 else.
      new = np.asarray(new_params[k])
      np.testing.assert_array_equal(new[~mask], 0.0)
      assert not np.signbit(new[~mask]).any()
      np.testing.assert_array_equal(new[mask], z[mask])
      assert (new == 0).sum() == (~mask).sum()  # no accidental zeros
      old_keep[k] = mask
    n_updates += np_is_update(t, begin, end, every)
    params = new_params
  assert n_updates == 6
  # After end_step the final target is reached exactly.
  for k in SHAPES:
    s = targets[k] if per_leaf else 0.9
    assert (np.asarray(params[k]) == 0).sum() == round(s * params[k].size)


def test_nothing_pruned_before_begin_and_mask_kept_after_end():
  tx = magnitude_prune(0.5, begin_step=5, end_step=5)
  params = rng_tree(2, {"w": (40,)})
  state = tx.init(params)
  update = jax.jit(tx.update)
  zeros = []
  for _ in range(9):
    g = {"w": jnp.full((40,), 0.01)}
    updates, state = update(g, state, params)
    params = optax.apply_updates(params, updates)
    zeros.append(int((params["w"] == 0).sum()))
  assert zeros == [0] * 5 + [20] * 4


def test_global_vs_layer_scope():
  shapes = {"big": (50,), "small": (30,), "mid": (4, 5)}
  scales = {"big": 1.0, "small": 0.01, "mid": 0.3}
  params = rng_tree(3, shapes, scales)
  zero = jax.tree.map(jnp.zeros_like, params)
  s = 0.4
  ws = [np.asarray(x) for x in jax.tree.leaves(params)]  # big, mid, small
  total = sum(w.size for w in ws)

  tx_g = magnitude_prune(s, scope="global")
  _, st_g = jax.jit(tx_g.update)(zero, tx_g.init(params), params)
  expected = np_global_keep(ws, round(s * total))
  got = [np.asarray(m) for m in jax.tree.leaves(st_g.mask)]
  for e, g in zip(expected, got):
    np.testing.assert_array_equal(g, e)
  assert sum((~g).sum() for g in got) == round(s * total)
  frac_g = {k: 1 - np.asarray(st_g.mask[k]).mean() for k in shapes}
  assert frac_g["small"] == 1.0  # all 30 tiny weights go first (32 pruned)
  assert frac_g["big"] < s < frac_g["small"]

  tx_l = magnitude_prune(s, scope="layer")
  _, st_l = jax.jit(tx_l.update)(zero, tx_l.init(params), params)
  for k in shapes:
    m = np.asarray(st_l.mask[k])
    np.testing.assert_array_equal(
        m, np_keep(np.asarray(params[k]), round(s * m.size)))


def test_global_schedule_counts():
  begin, end, every = 0, 6, 2
  params = rng_tree(4, SHAPES, {"a": 0.1, "b": 1.0, "c": 3.0})
  tx = magnitude_prune(0.75, begin_step=begin, end_step=end,
                       update_every=every, power=2, scope="global")
  state = tx.init(params)
  update = jax.jit(tx.update)
  rng = np.random.default_rng(5)
  total = sum(p.size for p in jax.tree.leaves(params))
  old = [np.ones(p.shape, bool) for p in jax.tree.leaves(params)]
  for t in range(9):
    u = jax.tree.map(lambda p: jnp.asarray(
        0.01 * rng.standard_normal(p.shape).astype(np.float32)), params)
    updates, state = update(u, state, params)
    masks = [np.asarray(m) for m in jax.tree.leaves(state.mask)]
    if np_is_update(t, begin, end, every):
      kk = round(np_target(t, 0.75, begin, end, power=2) * total)
      exp = np_global_keep_after(
          [np.asarray(p) for p in jax.tree.leaves(params)], old, kk)
      for m, e in zip(masks, exp):
        np.testing.assert_array_equal(m, e)
    else:
      for m, o in zip(masks, old):
        np.testing.assert_array_equal(m, o)
    old = masks
    params = optax.apply_updates(params, updates)


def test_ties_and_signed_zeros_broken_by_flat_index():
  # Many equal magnitudes, both signs, +0.0 and -0.0.
  rng = np.random.default_rng(6)
  w = rng.integers(-3, 4, size=(9, 11)).astype(np.float32)
  w[0, 0], w[3, 4] = -0.0, 0.0
  tx = magnitude_prune(0.6)
  params = {"w": jnp.asarray(w)}
  _, state = jax.jit(tx.update)({"w": jnp.zeros_like(params["w"])},
                                tx.init(params), params)
  k = round(0.6 * w.size)
  np.testing.assert_array_equal(np.asarray(state.mask["w"]), np_keep(w, k))


def test_large_leaf_exact():
  rng = np.random.default_rng(7)
  # Rounded values: many exact ties inside a large leaf.
  w = np.round(rng.standard_normal(300_000), 3).astype(np.float32)
  k = 123_457
  got = np.asarray(jax.jit(magnitude_mask)(jnp.asarray(w), k))
  np.testing.assert_array_equal(got, np_keep(w, k))


# Both selection algorithms of optax_l1._ranking (radix histograms on a single
# CPU device, bisection elsewhere), in slabs of 64 entries (so that the
# leaves below are cut into several, the last one shifted back), against
# the NumPy reference: ties at the threshold that only partly go, all or
# none of them, k = 0 and k = size, NaN and inf, float32 and float64.
@pytest.fixture(params=["radix", "bisection"])
def ranking_algorithm(request, monkeypatch):
  from optax_l1 import _ranking
  monkeypatch.setattr(_ranking, "SLAB_ELEMENTS", 64)
  monkeypatch.setattr(_ranking, "_single_cpu",
                      lambda: request.param == "radix")
  return request.param


def _tie_heavy(rng, shape, dtype):
  w = rng.integers(-4, 5, size=shape).astype(dtype) * dtype(0.25)
  flat = w.reshape(-1)
  flat[rng.integers(0, flat.size, 5)] = rng.standard_normal(5)
  if flat.size > 4:
    flat[3], flat[-2] = np.nan, -np.inf
  return w


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_both_ranking_algorithms_match_numpy(ranking_algorithm, dtype):
  rng = np.random.default_rng(21)
  shapes = [(37, 11), (300,), (5, 4, 3), (1,)]
  ws = [_tie_heavy(rng, s, dtype) for s in shapes]
  total = sum(w.size for w in ws)
  with enable_x64(dtype == np.float64):
    tree = [jnp.asarray(w) for w in ws]
    for k in [0, 1, 17, 200, 407, 620, total - 1, total]:
      got = jax.jit(magnitude_mask)(tree, k)
      for g, e in zip(got, np_global_keep(ws, k)):
        np.testing.assert_array_equal(np.asarray(g), e)
    # One leaf at a time, every count.
    one = jax.jit(magnitude_mask)
    for k in range(0, ws[0].size + 1, 23):
      np.testing.assert_array_equal(np.asarray(one(tree[0], k)),
                                    np_keep(ws[0], k))


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_both_ranking_algorithms_in_magnitude_prune(ranking_algorithm, scope):
  # The schedule re-ranks every step, with the weights pruned so far (key
  # -1) below exact zeros; a leaf of 37 x 11 is cut into slabs of 5 rows.
  rng = np.random.default_rng(22)
  shapes = {"a": (37, 11), "b": (90,), "c": (6, 7)}
  ws = {n: _tie_heavy(rng, s, np.float32) for n, s in shapes.items()}
  params = jax.tree.map(jnp.asarray, ws)
  tx = magnitude_prune(0.7, begin_step=0, end_step=5, update_every=1,
                       scope=scope)
  state = tx.init(params)
  update = jax.jit(tx.update)
  zero = jax.tree.map(jnp.zeros_like, params)
  names = sorted(shapes)
  old = {n: np.ones(shapes[n], bool) for n in names}
  for t in range(6):
    _, state = update(zero, state, params)
    s_t = np_target(t, 0.7, 0, 5)
    if scope == "global":
      k = round(s_t * sum(w.size for w in ws.values()))
      exp = dict(zip(names, np_global_keep_after(
          [ws[n] for n in names], [old[n] for n in names], k)))
    else:
      exp = {n: np_keep_after(ws[n], old[n], round(s_t * ws[n].size))
             for n in names}
    for n in names:
      np.testing.assert_array_equal(np.asarray(state.mask[n]), exp[n])
    old = exp


_VALUES = [0.0, -0.0, 0.5, -0.5, 1.0, -2.0, 1e-30, 3e38, -np.inf, np.inf]


@hypothesis.settings(max_examples=60, deadline=None)
@hypothesis.given(
    values=st.lists(st.sampled_from(_VALUES), min_size=53, max_size=53),
    k=st.integers(-3, 56))
def test_magnitude_mask_matches_numpy(values, k):
  # Three leaves, two of the same size (ranked as one stacked block inside):
  # the joint ranking must still follow leaf order, then flat index.
  v = np.array(values, np.float32)
  tree = {"a": v[:24].reshape(4, 6), "b": v[24:48], "c": v[48:]}
  got = _JIT_MAGNITUDE_MASK(jax.tree.map(jnp.asarray, tree), k)
  exp = np_global_keep([tree["a"], tree["b"], tree["c"]],
                       min(max(k, 0), v.size))
  for name, e in zip("abc", exp):
    np.testing.assert_array_equal(np.asarray(got[name]), e)
  # One leaf on its own.
  one = np.asarray(_JIT_MAGNITUDE_MASK(jnp.asarray(tree["a"]), k))
  np.testing.assert_array_equal(one, np_keep(tree["a"], min(max(k, 0), 24)))


_JIT_MAGNITUDE_MASK = jax.jit(magnitude_mask)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_equal_sized_leaves_with_ties(scope):
  rng = np.random.default_rng(15)
  shapes = {"a": (6, 5), "b": (30,), "c": (3, 10), "d": (7,)}
  ws = {k: rng.integers(-2, 3, size=s).astype(np.float32)
        for k, s in shapes.items()}
  params = jax.tree.map(jnp.asarray, ws)
  tx = magnitude_prune(0.45, scope=scope)
  zero = jax.tree.map(jnp.zeros_like, params)
  _, state = jax.jit(tx.update)(zero, tx.init(params), params)
  names = sorted(shapes)
  if scope == "global":
    total = sum(w.size for w in ws.values())
    exp = dict(zip(names, np_global_keep([ws[k] for k in names],
                                         round(0.45 * total))))
  else:
    exp = {k: np_keep(ws[k], round(0.45 * ws[k].size)) for k in names}
  for k in names:
    np.testing.assert_array_equal(np.asarray(state.mask[k]), exp[k])


def test_magnitude_mask_pytree_is_global():
  tree = {"x": jnp.array([0.1, 5.0, 0.2]), "y": jnp.array([[0.1, 0.05]])}
  got = jax.jit(magnitude_mask)(tree, 2)
  exp = np_global_keep([np.asarray(tree["x"]), np.asarray(tree["y"])], 2)
  np.testing.assert_array_equal(np.asarray(got["x"]), exp[0])
  np.testing.assert_array_equal(np.asarray(got["y"]), exp[1])
  # The tie 0.1 == 0.1: the earlier leaf ("x") is pruned first.
  np.testing.assert_array_equal(np.asarray(got["x"]), [False, True, True])
  np.testing.assert_array_equal(np.asarray(got["y"]), [[True, False]])


def test_nan_weight_is_never_pruned_and_propagates():
  w = jnp.array([np.nan, 0.1, 0.2, 3.0, -0.05, np.inf])
  tx = magnitude_prune(0.5)
  updates, state = jax.jit(tx.update)(jnp.zeros(6), tx.init(w), w)
  new = np.asarray(optax.apply_updates(w, updates))
  assert np.isnan(new[0]) and new[5] == np.inf
  np.testing.assert_array_equal(new[[1, 2, 4]], 0.0)
  np.testing.assert_array_equal(np.asarray(state.mask),
                                [True, False, False, True, False, True])


def test_ranks_current_params_not_the_step():
  # The mask is computed from |params| (the iterate before this step's
  # update); the update only enters the kept weights' new values.
  w = jnp.array([1.0, 0.5, 0.2])
  u = jnp.array([-0.95, 0.0, 0.0])  # |w + u| would rank index 0 lowest
  tx = magnitude_prune(1 / 3)
  updates, state = jax.jit(tx.update)(u, tx.init(w), w)
  np.testing.assert_array_equal(np.asarray(state.mask), [True, True, False])
  np.testing.assert_array_equal(np.asarray(optax.apply_updates(w, updates)),
                                [np.float32(1.0) + np.float32(-0.95), 0.5,
                                 0.0])


def test_pruned_weights_rank_below_exact_zeros():
  # Index 5 is pruned already; index 2 is a kept weight that is exactly 0.
  # At the next update (same count) the pruned weight stays pruned even
  # though the tie at |w| = 0 would prune the lower index first.
  w = jnp.array([0.3, -0.7, 0.0, 0.9, 0.4, 0.0, -0.2, 0.8, 0.6, 0.5])
  old = np.ones(10, bool)
  old[5] = False
  tx = magnitude_prune(0.1)  # k = 1, one update at t = 0
  state = MagnitudePruneState(count=jnp.zeros([], jnp.int32),
                              mask=jnp.asarray(old))
  u = jnp.full(10, 0.01)
  updates, state = jax.jit(tx.update)(u, state, w)
  np.testing.assert_array_equal(np.asarray(state.mask), old)
  new = np.asarray(optax.apply_updates(w, updates))
  assert new[5] == 0.0 and new[2] == np.float32(0.01)
  assert (new == 0).sum() == 1


def test_count_below_pruned_so_far_revives_highest_indices():
  # A mask edited by hand with more zeros than the schedule asks for: the
  # pruned weights of highest flat index return, from their value (0), and
  # the count is still exact.
  w = jnp.array([0.3, 0.0, 0.5, 0.9, 0.0, 0.4, -0.6, 0.0])
  old = np.array([True, False, True, True, False, True, True, False])
  tx = magnitude_prune(0.125)  # k = 1
  state = MagnitudePruneState(count=jnp.zeros([], jnp.int32),
                              mask=jnp.asarray(old))
  u = jnp.full(8, 0.25)
  updates, state = jax.jit(tx.update)(u, state, w)
  keep = np.ones(8, bool)
  keep[1] = False
  np.testing.assert_array_equal(np.asarray(state.mask), keep)
  np.testing.assert_array_equal(np.asarray(optax.apply_updates(w, updates)),
                                np.where(keep, np.asarray(w) + 0.25, 0.0))


def _entry_computation(compiled_text):
  entry = compiled_text[compiled_text.index("\nENTRY"):]
  return entry[:entry.index("\n}")]


@pytest.mark.skipif(jax.default_backend() != "cpu",
                    reason="checks XLA:CPU's fusion of the compiled step")
def test_step_between_updates_fuses_like_a_stored_mask():
  # Between updates the step must cost what `where(stored mask, u, -p)`
  # after the inner optimizer costs: the same full-size fusions (the inner
  # update is not materialized for the cond) and no copy of the stored mask.
  shape = (256, 128)

  def stored_mask():
    return optax.GradientTransformation(
        lambda p: jnp.ones(p.shape, bool),
        # A NaN update of a removed weight stays visible.
        lambda u, s, p=None: (jnp.where(
            s, u, jnp.where(jnp.isfinite(u), -p, jnp.nan)), s))

  def entry(opt):
    def step(p, s, g):
      updates, s = opt.update(g, s, p)
      return optax.apply_updates(p, updates), s
    p = jnp.ones(shape)
    text = jax.jit(step, donate_argnums=(0, 1)).lower(
        p, opt.init(p), p).compile().as_text()
    return _entry_computation(text)

  full = r"= (?:f32|pred)\[256,128\]\{[^}]*\} ([\w-]+)\("
  ref = entry(optax.chain(optax.adam(1e-3), stored_mask()))
  for tx in (magnitude_prune(0.5),
             magnitude_prune(0.5, begin_step=0, end_step=100),
             magnitude_prune(0.5, scope="global")):
    got = entry(optax.chain(optax.adam(1e-3), tx))
    assert "conditional(" in got
    ops = re.findall(full, got)
    assert "copy" not in ops, got
    assert ops.count("fusion") == re.findall(full, ref).count("fusion"), got


# ---------------------------------------------------------------------------
# magnitude_prune: pruned weights stay pruned.
# ---------------------------------------------------------------------------


def test_pruned_weights_never_come_back_under_sgd():
  # A constant gradient of -1 pulls every weight up by 0.1 per step; pruned
  # weights must stay exactly 0 between mask updates and (the target only
  # grows) at later updates too.
  begin, end, every = 2, 14, 3
  params = rng_tree(8, {"w": (60,), "v": (6, 5)})
  tx = magnitude_prune(0.8, begin_step=begin, end_step=end,
                       update_every=every)
  opt = optax.chain(optax.sgd(0.1), tx)
  plain = optax.sgd(0.1)
  state = opt.init(params)
  grads = jax.tree.map(lambda p: -jnp.ones_like(p), params)
  step = jax.jit(opt.update)
  plain_u, _ = jax.jit(plain.update)(grads, plain.init(params), params)
  ever_pruned = jax.tree.map(lambda p: np.zeros(p.shape, bool), params)
  for t in range(20):
    updates, state = step(grads, state, params)
    new = optax.apply_updates(params, updates)
    for k in params:
      keep = np.asarray(state[1].mask[k])
      assert not (keep & ever_pruned[k]).any()  # monotone: never revived
      ever_pruned[k] |= ~keep
      n = np.asarray(new[k])
      np.testing.assert_array_equal(n[~keep], 0.0)
      # Kept weights take exactly the SGD step.
      np.testing.assert_array_equal(np.asarray(updates[k])[keep],
                                    np.asarray(plain_u[k])[keep])
      if np_is_update(t, begin, end, every):
        assert (~keep).sum() == round(np_target(t, 0.8, begin, end) * n.size)
    params = new
  for k in params:
    assert (np.asarray(params[k]) == 0).sum() == round(0.8 * params[k].size)


def test_unmasked_and_none_leaves():
  params = {"w": jnp.array([0.1, -2.0, 0.3, 4.0]), "b": jnp.array([1e-3]),
            "n": None}
  tx = magnitude_prune(0.5, mask={"w": True, "b": False, "n": False})
  state = tx.init(params)
  assert isinstance(state.mask["b"], optax.MaskedNode)
  assert state.mask["n"] is None
  u = {"w": jnp.full(4, 0.01), "b": jnp.full(1, 0.5), "n": None}
  updates, state = jax.jit(tx.update)(u, state, params)
  assert updates["n"] is None
  np.testing.assert_array_equal(np.asarray(updates["b"]), [0.5])
  new = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(np.asarray(new["w"]),
                                np.float32([0, -1.99, 0, 4.01]))


def test_callable_mask():
  params = {"kernel": jnp.arange(1.0, 9.0), "bias": jnp.arange(1.0, 3.0)}
  tx = magnitude_prune(0.5, mask=lambda p: {k: k == "kernel" for k in p})
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, _ = jax.jit(tx.update)(zero, tx.init(params), params)
  new = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(np.asarray(new["kernel"]),
                                [0, 0, 0, 0, 5, 6, 7, 8])
  np.testing.assert_array_equal(np.asarray(new["bias"]), [1, 2])


# ---------------------------------------------------------------------------
# dtypes, storage, checkpoints.
# ---------------------------------------------------------------------------


def test_bfloat16_params():
  rng = np.random.default_rng(9)
  w = jnp.asarray(rng.standard_normal((8, 12)), jnp.bfloat16)
  params = {"w": w}
  u = {"w": jnp.asarray(0.01 * rng.standard_normal((8, 12)), jnp.bfloat16)}
  z = np.asarray((w + u["w"]).astype(jnp.float32))

  tx = magnitude_prune(0.7)
  updates, state = jax.jit(tx.update)(u, tx.init(params), params)
  new = optax.apply_updates(params, updates)
  assert new["w"].dtype == jnp.bfloat16 and updates["w"].dtype == jnp.bfloat16
  k = round(0.7 * w.size)
  keep = np_keep(np.asarray(w.astype(jnp.float32)), k)  # ranks params
  np.testing.assert_array_equal(np.asarray(state.mask["w"]), keep)
  n = np.asarray(new["w"].astype(jnp.float32))
  np.testing.assert_array_equal(n[~keep], 0.0)
  np.testing.assert_array_equal(n[keep], z[keep])

  tx = nm_prune(2, 4)
  updates, _ = jax.jit(tx.update)(u, tx.init(params), params)
  new = optax.apply_updates(params, updates)
  assert new["w"].dtype == jnp.bfloat16
  n = np.asarray(new["w"].astype(jnp.float32))
  keep = np_nm_keep(z, 2, 4, -1)
  np.testing.assert_array_equal(n[~keep], 0.0)
  np.testing.assert_array_equal(n[keep], z[keep])

  tx = keep_zeros()
  pz = {"w": w.at[0].set(0)}
  updates, _ = jax.jit(tx.update)(u, tx.init(pz), pz)
  new = optax.apply_updates(pz, updates)
  assert new["w"].dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(new["w"][0], np.float32), 0.0)


def test_mask_storage_at_most_one_byte_per_masked_weight():
  params = {"w": jnp.ones((64, 32)), "v": jnp.ones((3, 3, 8, 4)),
            "b": jnp.ones((32,))}
  tx = magnitude_prune(0.5, mask={"w": True, "v": True, "b": False})
  state = tx.init(params)
  nbytes = sum(x.nbytes for x in jax.tree.leaves(state.mask))
  masked = params["w"].size + params["v"].size
  assert nbytes / masked <= 1.0
  assert isinstance(state.mask["b"], optax.MaskedNode)  # no array
  assert not jax.tree.leaves(state.mask["b"])
  _, state = jax.jit(tx.update)(jax.tree.map(jnp.zeros_like, params), state,
                                params)
  assert sum(x.nbytes for x in jax.tree.leaves(state.mask)) / masked <= 1.0
  assert all(x.dtype == jnp.bool_ for x in jax.tree.leaves(state.mask))


def test_msgpack_round_trip_resumes_bit_for_bit():
  params = rng_tree(10, {"w": (24,), "k": (6, 8)})
  opt = optax.chain(optax.adam(0.01),
                    magnitude_prune(0.6, begin_step=1, end_step=7,
                                    update_every=2))
  rng = np.random.default_rng(11)
  step = jax.jit(opt.update)
  state = opt.init(params)

  def grads():
    return jax.tree.map(
        lambda p: jnp.asarray(rng.standard_normal(p.shape), jnp.float32),
        params)

  for _ in range(4):  # stops mid-schedule, between mask updates
    updates, state = step(grads(), state, params)
    params = optax.apply_updates(params, updates)
  blob = flax.serialization.to_bytes(state)
  restored = flax.serialization.from_bytes(opt.init(params), blob)
  prune_state = restored[1]
  assert isinstance(prune_state, MagnitudePruneState)
  for k in params:
    m = np.asarray(prune_state.mask[k])
    assert m.dtype == np.bool_
    np.testing.assert_array_equal(m, np.asarray(state[1].mask[k]))
    assert (~m).any()
  assert int(prune_state.count) == 4
  for _ in range(3):  # includes the mask update at t = 5
    g = grads()
    u1, state = step(g, state, params)
    u2, restored = step(g, restored, params)
    for k in params:
      np.testing.assert_array_equal(np.asarray(u1[k]), np.asarray(u2[k]))
      np.testing.assert_array_equal(np.asarray(state[1].mask[k]),
                                    np.asarray(restored[1].mask[k]))
    params = optax.apply_updates(params, u1)


# ---------------------------------------------------------------------------
# keep_zeros.
# ---------------------------------------------------------------------------


def test_keep_zeros_holds_zeros_and_takes_sgd_step_elsewhere():
  w = jnp.array([0.0, 1.5, -0.0, -2.0, 0.25, 0.0])
  params = {"w": w, "b": jnp.array([0.0, 1.0])}
  opt = optax.chain(optax.sgd(0.3), keep_zeros(mask={"w": True, "b": False}))
  plain = optax.sgd(0.3)
  state = opt.init(params)
  grads = {"w": -jnp.ones(6), "b": -jnp.ones(2)}  # pulls away from zero
  step = jax.jit(opt.update)
  p_plain = params
  for _ in range(5):
    updates, state = step(grads, state, params)
    pu, _ = plain.update(grads, plain.init(p_plain), p_plain)
    params = optax.apply_updates(params, updates)
    p_plain = optax.apply_updates(p_plain, pu)
  new = np.asarray(params["w"])
  np.testing.assert_array_equal(new[[0, 2, 5]], 0.0)
  np.testing.assert_array_equal(new[[1, 3, 4]],
                                np.asarray(p_plain["w"])[[1, 3, 4]])
  # The unmasked leaf's zero moves.
  np.testing.assert_array_equal(np.asarray(params["b"]),
                                np.asarray(p_plain["b"]))
  assert float(params["b"][0]) != 0.0


def test_keep_zeros_nan_propagates():
  tx = keep_zeros()
  w = jnp.array([np.nan, 1.0, 0.0, 2.0])
  u = jnp.array([0.1, np.nan, np.nan, 0.5])
  updates, _ = jax.jit(tx.update)(u, tx.init(w), w)
  new = np.asarray(optax.apply_updates(w, updates))
  assert np.isnan(new[0]) and np.isnan(new[1])  # NaN never becomes 0
  assert np.isnan(new[2])  # a NaN update of a zero weight is not hidden
  assert new[3] == 2.5


# ---------------------------------------------------------------------------
# N:M structured sparsity.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n,m,axis,shape", [
    (2, 4, -1, (8, 16)),
    (2, 4, 0, (8, 6)),
    (1, 8, 2, (3, 3, 16, 4)),
    (3, 3, 1, (2, 6)),
])
def test_nm_prune_matches_numpy(n, m, axis, shape):
  rng = np.random.default_rng(12)
  # Integer-valued weights: plenty of ties within blocks.
  w = rng.integers(-3, 4, size=shape).astype(np.float32)
  u = (0.5 * rng.integers(-1, 2, size=shape)).astype(np.float32)
  params = {"w": jnp.asarray(w), "bias": jnp.ones((5,))}
  tx = nm_prune(n, m, axis=axis, mask={"w": True, "bias": False})
  grads = {"w": jnp.asarray(u), "bias": jnp.ones((5,))}
  updates, state = jax.jit(tx.update)(grads, tx.init(params), params)
  assert state == optax.EmptyState()
  new = np.asarray(optax.apply_updates(params, updates)["w"])
  z = w + u
  keep = np_nm_keep(z, n, m, axis)
  np.testing.assert_array_equal(new, np.where(keep, z, 0.0))
  blocks = np.moveaxis(new, axis, -1).reshape(-1, m)
  assert ((blocks != 0).sum(-1) <= n).all()
  np.testing.assert_array_equal(np.asarray(nm_mask(z, n, m, axis)), keep)
  np.testing.assert_array_equal(
      np.asarray(optax.apply_updates(params, updates)["bias"]), 2.0)


def test_nm_prune_recomputes_every_step():
  w = jnp.array([1.0, 0.9, 0.1, 0.0])
  tx = nm_prune(2, 4)
  step = jax.jit(tx.update)
  state = tx.init(w)
  u, _ = step(jnp.zeros(4), state, w)
  w = optax.apply_updates(w, u)
  np.testing.assert_array_equal(np.asarray(w), np.float32([1.0, 0.9, 0, 0]))
  u, _ = step(jnp.array([0.0, 0.0, 0.0, 2.0]), state, w)
  np.testing.assert_array_equal(np.asarray(optax.apply_updates(w, u)),
                                np.float32([1.0, 0, 0, 2.0]))


def test_nm_errors():
  for n, m in [(0, 4), (5, 4), (-1, 2)]:
    with pytest.raises(ValueError, match="nm_prune"):
      nm_prune(n, m)
  with pytest.raises(ValueError, match=r"nm_prune\(m=...\)` must be >= 1"):
    nm_prune(1, 0)
  with pytest.raises(TypeError):
    nm_prune(2.0, 4)
  params = {"layer": {"kernel": jnp.ones((4, 6))}}
  with pytest.raises(ValueError, match=r"layer/kernel.*\(4, 6\).*m=4"):
    nm_prune(2, 4).init(params)
  with pytest.raises(ValueError, match=r"layer/kernel.*\(4, 6\).*m=4"):
    nm_prune(2, 4).update(params, optax.EmptyState(), params)
  with pytest.raises(ValueError, match=r"axis=2.*out of range.*layer/kernel"):
    nm_prune(2, 2, axis=2).init(params)
  nm_prune(2, 4, axis=0).init(params)  # fits along axis 0
  with pytest.raises(ValueError, match="not divisible"):
    nm_mask(jnp.ones((3, 5)), 1, 2)
  with pytest.raises(ValueError, match="params"):
    nm_prune(2, 4, axis=0).update(params, optax.EmptyState())


# ---------------------------------------------------------------------------
# Argument errors.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [1.0, 1.5, -0.1, float("nan"), float("inf")])
def test_sparsity_out_of_range(bad):
  with pytest.raises(ValueError,
                     match=r"`magnitude_prune\(sparsity=...\)` must be in "
                           r"\[0, 1\); got"):
    magnitude_prune(bad)


def test_magnitude_prune_argument_errors():
  with pytest.raises(ValueError, match="got 1.5 at b"):
    magnitude_prune({"a": 0.5, "b": 1.5})
  with pytest.raises(TypeError, match="sparsity"):
    magnitude_prune(True)
  with pytest.raises(ValueError, match="scope"):
    magnitude_prune(0.5, scope="model")
  with pytest.raises(ValueError, match="scope='global'"):
    magnitude_prune({"a": 0.5}, scope="global")
  with pytest.raises(ValueError, match=r"end_step=...\)` must be >= "
                                       r"begin_step=10; got 5"):
    magnitude_prune(0.5, begin_step=10, end_step=5)
  with pytest.raises(ValueError, match="update_every"):
    magnitude_prune(0.5, update_every=0)
  with pytest.raises(ValueError, match="begin_step"):
    magnitude_prune(0.5, begin_step=-1)
  with pytest.raises(ValueError, match="power"):
    magnitude_prune(0.5, power=0)
  with pytest.raises(TypeError, match="update_every"):
    magnitude_prune(0.5, update_every=1.5)
  tx = magnitude_prune(0.5)
  params = {"w": jnp.ones(4)}
  with pytest.raises(ValueError, match="params"):
    tx.update(params, tx.init(params))
  with pytest.raises(ValueError, match="params"):
    keep_zeros().update(params, optax.EmptyState())
  with pytest.raises(ValueError, match="structure"):
    magnitude_prune({"x": 0.5}).init(params)
  with pytest.raises(TypeError, match="floating-point"):
    magnitude_prune(0.5).init({"w": jnp.arange(4)})


def test_zero_sparsity_and_empty_leaf():
  params = {"w": jnp.arange(1.0, 5.0), "e": jnp.zeros((0, 3))}
  tx = magnitude_prune(0.0)
  u = jax.tree.map(jnp.zeros_like, params)
  updates, state = jax.jit(tx.update)(u, tx.init(params), params)
  assert bool(state.mask["w"].all())
  assert state.mask["e"].shape == (0, 3)
  tx = magnitude_prune(0.5, scope="global")
  updates, state = jax.jit(tx.update)(u, tx.init(params), params)
  np.testing.assert_array_equal(np.asarray(state.mask["w"]),
                                [False, False, True, True])


def test_schedule_reference_is_sane():
  # The NumPy schedule itself: s_begin = 0, s_end = target, monotone.
  vals = [np_target(t, 0.9, 3, 23) for t in range(0, 30)]
  assert vals[3] == 0.0 and math.isclose(vals[23], 0.9)
  assert all(a <= b for a, b in zip(vals, vals[1:]))


def test_counts_at_exact_half_integers_follow_float64_round_half_even():
  # s_2 * size = 0.75 * (1 - (2/3)**2) * 270 = 112.5 in exact arithmetic; the
  # count follows Python's float64 evaluation and half-to-even rounding.
  params = {"w": jnp.asarray(np.random.default_rng(13).standard_normal(270),
                             jnp.float32)}
  tx = magnitude_prune(0.75, begin_step=0, end_step=6, update_every=2,
                       power=2)
  state = tx.init(params)
  update = jax.jit(tx.update)
  zero = {"w": jnp.zeros(270)}
  for t in range(3):
    _, state = update(zero, state, params)
  expected = round(np_target(2, 0.75, 0, 6, power=2) * 270)
  assert expected in (112, 113)
  assert int((~np.asarray(state.mask["w"])).sum()) == expected


def test_device_count_fallback(monkeypatch):
  # Beyond the host table's size the schedule is evaluated on the device in
  # float32; away from half-integers the counts are the same.
  monkeypatch.setattr(_masks, "_MAX_COUNT_TABLE", 0)
  begin, end, every = 0, 10, 1
  params = rng_tree(14, {"a": (101,), "b": (7, 9)})
  tx = magnitude_prune(0.83, begin_step=begin, end_step=end,
                       update_every=every)
  state = tx.init(params)
  update = jax.jit(tx.update)
  zero = jax.tree.map(jnp.zeros_like, params)
  for t in range(12):
    _, state = update(zero, state, params)
    for k in params:
      x = np_target(min(t, end), 0.83, begin, end) * params[k].size
      if abs(x - math.floor(x) - 0.5) > 1e-3:
        assert (~np.asarray(state.mask[k])).sum() == round(x)


def test_global_scope_rejects_more_than_int32_weights():
  big = {"w": jax.ShapeDtypeStruct((2**31,), jnp.float32)}
  with pytest.raises(ValueError, match="scope='layer'"):
    jax.eval_shape(magnitude_prune(0.5, scope="global").init, big)


# ---------------------------------------------------------------------------
# A NaN or inf gradient at a removed weight stays visible.
# ---------------------------------------------------------------------------


def _nan_case(name):
  """(transformation, params, gradient index that hits a removed weight)."""
  params = jnp.asarray([[0.9, -0.01, 0.5, 0.02], [0.0, 1.5, -0.7, 0.03]],
                       jnp.float32)
  if name == "magnitude_prune":  # one-shot: the 4 smallest |params| go
    return magnitude_prune(0.5), params, (0, 1)
  if name == "keep_zeros":
    return keep_zeros(), params, (1, 0)
  # nm_prune(1, 4): two bad entries in one block, one of them is dropped
  return nm_prune(1, 4), params, (0, 1)


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("where", ["chain", "proximal"])
@pytest.mark.parametrize("name", ["magnitude_prune", "keep_zeros", "nm_prune"])
def test_nan_or_inf_gradient_at_a_removed_weight_stays_visible(name, where,
                                                               bad):
  tx, params, at = _nan_case(name)
  g = np.full(params.shape, 0.1, np.float32)
  g[at] = bad
  if name == "nm_prune":
    g[0, 0] = bad  # the block's other bad entry
  opt = (optax.chain(optax.sgd(0.1), tx) if where == "chain"
         else optax_l1_proximal(optax.adam(0.1), tx))
  u, _ = jax.jit(opt.update)(jnp.asarray(g), opt.init(params), params)
  u = np.asarray(u)
  assert np.isnan(u[at]), u
  # Everything else is untouched by the bad entries: finite.
  finite = np.isfinite(g)
  assert np.all(np.isfinite(u[finite]))


def optax_l1_proximal(inner, tx):
  import optax_l1  # pylint: disable=g-import-not-at-top
  return optax_l1.proximal(inner, tx)
