"""Full-size temporaries of the compiled training step (structural, untimed).

XLA's buffer assignment says how much scratch memory one jitted, donated step
``opt.update`` + ``optax.apply_updates`` needs beyond its inputs and outputs
(``compile().memory_analysis().temp_size_in_bytes``). On the CPU every such
buffer is freshly allocated and page-faulted in at every step, so it is what
the benchmarks (``benchmarks/bench_step.py``) pay for beyond Adam's own
traffic. Measured here in units of the parameter array, for one float32
matrix of 4M entries, compiled but never run (abstract inputs):

* elementwise proxes fuse into Adam's update: no temporary;
* a group prox with a scalar step (plain chain) needs the point
  ``z = params + updates`` once, for its group norms;
* a group prox in Adam's or Adagrad's per-coordinate metric needs the point
  too, and no more: its Newton passes run slab by slab in cache, and the
  step ``lr * P`` is computed slab by slab from the optimizer's moments
  (``optax_l1._lazy.LazyStep``). The first version needed six.

The group proxes also use a few slab-sized buffers
(``_group.BLOCK_ELEMENTS`` entries each, at most 12).
"""

import jax
import jax.numpy as jnp
import optax
import pytest

import optax_l1
from optax_l1 import _group
from optax_l1 import ops

LR = 1e-3
SHAPE = (4096, 1024)

CASES = {
    "adam": (lambda ax: optax.adam(LR), 0.0),
    "chain_l1": (lambda ax: optax.chain(optax.adam(LR),
                                        optax_l1.prox_l1(1.0, LR)), 0.0),
    "proximal_l1": (lambda ax: optax_l1.proximal(
        optax.adam(LR), optax_l1.prox_l1(1.0, LR)), 0.0),
    "proximal_elastic_net": (lambda ax: optax_l1.proximal(
        optax.adam(LR), optax_l1.prox_elastic_net(1.0, 0.5, LR)), 0.0),
    "proximal_mcp": (lambda ax: optax_l1.proximal(
        optax.adam(LR), optax_l1.prox_mcp(1.0, 3.0, LR)), 0.0),
    "chain_group": (lambda ax: optax.chain(
        optax.adam(LR), optax_l1.prox_group_lasso(1.0, LR, axis=ax)), 1.0),
    # The point z; the step is computed slab by slab from the moments.
    "proximal_group": (lambda ax: optax_l1.proximal(
        optax.adam(LR), optax_l1.prox_group_lasso(1.0, LR, axis=ax)), 1.0),
    "proximal_adagrad_group": (lambda ax: optax_l1.proximal(
        optax.adagrad(LR), optax_l1.prox_group_lasso(1.0, LR, axis=ax)), 1.0),
    "proximal_sparse_group": (lambda ax: optax_l1.proximal(
        optax.adam(LR), optax_l1.prox_sparse_group_lasso(0.1, 1.0, LR,
                                                         axis=ax)), 1.0),
}


def full_size_temporaries(opt) -> float:
  params = jax.ShapeDtypeStruct(SHAPE, jnp.float32)
  state = jax.eval_shape(opt.init, params)

  def step(params, state, grads):
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  compiled = jax.jit(step, donate_argnums=(0, 1)).lower(
      params, state, params).compile()
  return compiled.memory_analysis().temp_size_in_bytes / (4 * SHAPE[0] *
                                                           SHAPE[1])


# The group axis matters to the group proxes only (rows and columns).
PARAMS = [(name, axis) for name, (_, full) in CASES.items()
          for axis in ((0, 1) if full else (None,))]


@pytest.mark.parametrize("name, axis", PARAMS)
def test_full_size_temporaries(name, axis):
  assert _group._block_elements() > 0  # one CPU device: the slab schedule
  make, full = CASES[name]
  got = full_size_temporaries(make(axis))
  # Slabs: at most 12 arrays of _group.BLOCK_ELEMENTS entries (1/16 of
  # SHAPE each; the root-find's two branches, on z itself and in units of
  # each group's largest |z|, have their own); 0.01 for scalars.
  slabs = 12 * _group.BLOCK_ELEMENTS / (SHAPE[0] * SHAPE[1])
  assert full - 0.01 <= got <= full + (slabs if full else 0.01), got
