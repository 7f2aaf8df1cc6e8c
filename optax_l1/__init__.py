"""optax_l1: exact zeros for JAX models, as optax transformations.

Penalties such as ``lam * ||w||_1`` put in the loss never give exact zeros
under SGD or Adam: the weights hover around 1e-4 and flip sign every step.
A proximal step after the optimizer lands them on exactly ``0.0``. The
transformations here go last in an ``optax.chain`` (a plain learning-rate
threshold: ISTA after SGD), or inside ``proximal`` (the prox in an adaptive
optimizer's own metric, which solves the problem you wrote down).

Main entry points (all in ``optax_l1``):

* ``proximal(inner, *proxes)``: runs an optax optimizer (Adam, AdamW,
  RMSprop, Adagrad, SGD with momentum, ...) and applies the proxes in its
  per-coordinate metric.
* Proxes, last in a chain or inside ``proximal``: ``prox_l1``,
  ``prox_elastic_net``, ``prox_group_lasso`` (rows, neurons, filters),
  ``prox_sparse_group_lasso``; not convex: ``hard_threshold``, ``prox_mcp``,
  ``prox_scad``, ``prox_lq``.
* Pruning masks: ``magnitude_prune``, ``nm_prune``, ``keep_zeros``; on plain
  arrays ``magnitude_mask``, ``nm_mask``.
* Which leaves (the ``mask=`` argument): ``mask_by_path``,
  ``mask_by_predicate``, ``leaf_path``; groups across leaves (the group
  lasso's ``groups=``): ``group_by_path``.
* Reports: ``sparsity``, ``sparsity_report``.
* Export: ``surviving`` (``_inputs``, ``_units``, ``_filters``),
  ``compact_mlp``, ``to_bcoo``, ``save_sparse``, ``load_sparse``.
* Selection: ``regularization_path``, ``plot_path``.
* ``optax_l1.ops``: the proximal operators on plain arrays.

Examples:
  A lasso fitted with Adam; the result equals scikit-learn's
  ``Lasso(alpha=0.1, fit_intercept=False)``, exact zeros included:

  >>> import jax, jax.numpy as jnp, optax, optax_l1
  >>> X = jax.random.normal(jax.random.key(0), (100, 5)); y = 2.0 * X[:, 0]
  >>> loss = lambda w: 0.5 * jnp.mean((X @ w - y) ** 2)
  >>> opt = optax_l1.proximal(optax.adam(0.05), optax_l1.prox_l1(0.1))
  >>> w = jnp.zeros(5); state = opt.init(w)
  >>> for _ in range(300):
  ...   updates, state = opt.update(jax.grad(loss)(w), state, w)
  ...   w = optax.apply_updates(w, updates)
  >>> w
  Array([1.871, 0.   , 0.   , 0.   , 0.   ], dtype=float32)
  >>> int((w == 0).sum())
  4
"""

from optax_l1 import ops
from optax_l1 import selection
from optax_l1._export import CompactMLP
from optax_l1._export import compact_mlp
from optax_l1._export import leaf_path
from optax_l1._export import load_sparse
from optax_l1._export import mask_by_path
from optax_l1._export import mask_by_predicate
from optax_l1._export import save_sparse
from optax_l1._export import surviving
from optax_l1._export import surviving_filters
from optax_l1._export import surviving_inputs
from optax_l1._export import surviving_units
from optax_l1._export import to_bcoo
from optax_l1._group_sets import group_by_path
from optax_l1._hier import prox_hier
from optax_l1._masks import MagnitudePruneState
from optax_l1._masks import keep_zeros
from optax_l1._masks import magnitude_prune
from optax_l1._nm import nm_mask
from optax_l1._nm import nm_prune
from optax_l1._proximal import ProximalState
from optax_l1._proximal import proximal
from optax_l1._ranking import magnitude_mask
from optax_l1._regpath import RegularizationPath
from optax_l1._regpath import extend_path
from optax_l1._regpath import plot_path
from optax_l1._regpath import regularization_path
from optax_l1._report import LeafSparsity
from optax_l1._report import SparsityReport
from optax_l1._report import sparsity
from optax_l1._report import sparsity_report
from optax_l1._transforms import ProxState
from optax_l1._transforms import ProxTransformation
from optax_l1._transforms import PruneTransformation
from optax_l1._transforms import hard_threshold
from optax_l1._transforms import prox_elastic_net
from optax_l1._transforms import prox_group_lasso
from optax_l1._transforms import prox_l1
from optax_l1._transforms import prox_lq
from optax_l1._transforms import prox_mcp
from optax_l1._transforms import prox_scad
from optax_l1._transforms import prox_sparse_group_lasso

__version__ = "0.1.0"

__all__ = (
    "CompactMLP",
    "LeafSparsity",
    "MagnitudePruneState",
    "ProxState",
    "ProxTransformation",
    "ProximalState",
    "PruneTransformation",
    "RegularizationPath",
    "SparsityReport",
    "compact_mlp",
    "extend_path",
    "group_by_path",
    "hard_threshold",
    "keep_zeros",
    "leaf_path",
    "load_sparse",
    "magnitude_mask",
    "magnitude_prune",
    "mask_by_path",
    "mask_by_predicate",
    "nm_mask",
    "nm_prune",
    "ops",
    "plot_path",
    "prox_elastic_net",
    "prox_group_lasso",
    "prox_hier",
    "prox_l1",
    "prox_lq",
    "prox_mcp",
    "prox_scad",
    "prox_sparse_group_lasso",
    "proximal",
    "regularization_path",
    "save_sparse",
    "selection",
    "sparsity",
    "sparsity_report",
    "surviving",
    "surviving_filters",
    "surviving_inputs",
    "surviving_units",
    "to_bcoo",
)
