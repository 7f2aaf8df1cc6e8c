"""optax_l1: exact-zero proximal steps for optax.

Penalties such as ``lam * ||w||_1`` put in the loss never give exact zeros
under SGD or Adam; a proximal step after the optimizer does. The
transformations here go last in an ``optax.chain`` (plain learning-rate
threshold, i.e. ISTA after SGD) or inside :func:`proximal` (the prox in an
adaptive optimizer's own metric, which solves the problem you wrote down).
"""

from optax_l1 import ops
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
from optax_l1._masks import MagnitudePruneState
from optax_l1._masks import keep_zeros
from optax_l1._masks import magnitude_prune
from optax_l1._nm import nm_mask
from optax_l1._nm import nm_prune
from optax_l1._proximal import ProximalState
from optax_l1._proximal import proximal
from optax_l1._ranking import magnitude_mask
from optax_l1._regpath import RegularizationPath
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
    "prox_l1",
    "prox_lq",
    "prox_mcp",
    "prox_scad",
    "prox_sparse_group_lasso",
    "proximal",
    "regularization_path",
    "save_sparse",
    "sparsity",
    "sparsity_report",
    "surviving",
    "surviving_filters",
    "surviving_inputs",
    "surviving_units",
    "to_bcoo",
)
