"""Sparsity report: counts against NumPy."""

import jax.numpy as jnp
import numpy as np
import pytest

import optax_l1


def test_counts_match_numpy_per_leaf():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(30, 20)) * (rng.uniform(size=(30, 20)) > 0.5)
  a[0, :5] = 1e-5  # near-zeros, not exact zeros
  b = np.where(rng.uniform(size=50) > 0.8, 0.0, 2e-4)
  params = {"dense": {"kernel": jnp.asarray(a, jnp.float32),
                      "bias": jnp.asarray(b, jnp.bfloat16)},
            "step": jnp.asarray(3, jnp.int32), "none": None}
  r = optax_l1.sparsity_report(params)
  by_path = {leaf.path: leaf for leaf in r.leaves}
  assert set(by_path) == {"dense/kernel", "dense/bias"}  # ints skipped
  k = by_path["dense/kernel"]
  assert k.size == 600
  assert k.zeros == np.count_nonzero(a.astype(np.float32) == 0)
  assert k.near_zeros == 5
  bb = by_path["dense/bias"]
  assert bb.zeros == np.count_nonzero(b == 0)
  assert bb.near_zeros == 50 - bb.zeros
  assert r.zeros == k.zeros + bb.zeros
  assert r.fraction == pytest.approx(r.zeros / 650)
  assert optax_l1.sparsity(params) == pytest.approx(r.fraction)
  table = str(r)
  assert "dense/kernel" in table and "total" in table
  assert f"{k.zeros:>10d}" in table


def test_nan_is_neither_zero_nor_near_zero():
  r = optax_l1.sparsity_report({"w": jnp.array([jnp.nan, 0.0, 1e-4, 1.0])})
  assert (r.zeros, r.near_zeros, r.size) == (1, 1, 4)


@pytest.mark.parametrize("near", [0.0, -1.0, float("nan")])
def test_bad_near(near):
  with pytest.raises(ValueError, match="near"):
    optax_l1.sparsity_report({"w": jnp.zeros(2)}, near=near)
