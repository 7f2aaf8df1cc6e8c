"""Group lasso over groups that span several leaves (heads, hidden units).

``prox_group_lasso(lam, groups=...)`` and ``prox_sparse_group_lasso(l1, lam,
groups=...)`` build the transformations here; ``groups`` says, for every
leaf, which *group set* it belongs to and along which of its axes the groups
run (:func:`group_by_path` writes that from path patterns). Group ``g`` of a
set is the union, over the set's leaves, of each leaf's slice at index ``g``
along its axis; the prox is :func:`optax_l1.ops.group_lasso_sets` (exact in a
scalar step and in the optimizer's diagonal metric under
:func:`optax_l1.proximal`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
import functools
import re
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_l1 import _group
from optax_l1 import _transforms
from optax_l1 import _validation as val
from optax_l1._tree import path_str

GroupsOrFn = Any  # a pytree like params of (name, axis) / None, or a callable


def group_by_path(rules: Mapping[str, tuple[str, int]]
                  ) -> Callable[[optax.Params], Any]:
  """Group sets from leaf paths: ``{regex: (set name, axis)}``.

  Each leaf whose path (:func:`optax_l1.leaf_path`: ``layers/0/attn/query/
  kernel``) matches a rule's regex (``re.search``, the first rule that
  matches) joins the set named by the rule, formatted with the match's
  groups (``{0}``, ``{1}``, ...), with its groups along ``axis``. Leaves that
  match no rule are in no set (a group lasso leaves them alone).

  For Flax attention, whose query / key / value kernels are
  ``(features, heads, head_dim)`` and output kernel ``(heads, head_dim,
  features)``, one group per head of layer ``i``::

    group_by_path({r"layers/(\\d+)/attn/(query|key|value)/kernel": ("heads{0}", 1),
                   r"layers/(\\d+)/attn/out/kernel": ("heads{0}", 0)})

  and one per hidden unit of an MLP ``fc1 (d, h)``, ``fc2 (h, d)``::

    group_by_path({r"layers/(\\d+)/mlp/fc1/(kernel|bias)": ("units{0}", -1),
                   r"layers/(\\d+)/mlp/fc2/kernel": ("units{0}", 0)})

  Args:
    rules: ``{regex: (name, axis)}``; ``name`` may use ``{0}``, ``{1}``...
      for the regex's groups.

  Returns:
    ``groups(params)``: a pytree like params of ``(name, axis)`` or ``None``.

  Examples:
    >>> import jax.numpy as jnp, optax_l1
    >>> params = {"fc1": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones(3)},
    ...           "fc2": {"kernel": jnp.ones((3, 2))}}
    >>> optax_l1.group_by_path({r"fc1/": ("units", -1),
    ...                         r"fc2/kernel": ("units", 0)})(params)
    {'fc1': {'bias': ('units', -1), 'kernel': ('units', -1)}, 'fc2': {'kernel': ('units', 0)}}
  """
  if not isinstance(rules, Mapping) or not rules:
    raise TypeError(f"`group_by_path(rules=...)` must be a non-empty dict "
                    f"{{regex: (name, axis)}}; got {rules!r}.")
  compiled = []
  for pattern, target in rules.items():
    if (not isinstance(target, tuple) or len(target) != 2
        or not isinstance(target[0], str) or isinstance(target[1], bool)
        or not isinstance(target[1], int)):
      raise TypeError(f"`group_by_path`: the rule for {pattern!r} must be a "
                      f"(name, axis) tuple; got {target!r}.")
    compiled.append((re.compile(pattern), target))

  def groups(params: optax.Params) -> Any:
    def one(path, leaf):
      if leaf is None:
        return None
      where = path_str(path)
      for rx, (name, axis) in compiled:
        m = rx.search(where)
        if m is not None:
          return (name.format(*m.groups()), axis)
      return None
    return jax.tree.map_with_path(one, params, is_leaf=lambda x: x is None)
  return groups


def _resolve(fn: str, groups: GroupsOrFn, params: Any
             ) -> dict[str, list[tuple[int, int]]]:
  """``{set name: [(leaf index in tree order, normalized axis), ...]}``."""
  spec = groups(params) if callable(groups) else groups
  p_leaves, treedef = jax.tree.flatten(params, is_leaf=lambda x: x is None)
  try:
    s_leaves = treedef.flatten_up_to(spec)
  except (ValueError, TypeError) as e:
    raise ValueError(
        f"`{fn}(groups=...)` must have the structure of params, with a "
        f"(name, axis) tuple or None per leaf; got "
        f"{jax.tree.structure(spec, is_leaf=_is_entry)} for params "
        f"{treedef}.") from e
  paths = [path_str(p) for p, _ in jax.tree_util.tree_flatten_with_path(
      params, is_leaf=lambda x: x is None)[0]]
  sets: dict[str, list[tuple[int, int]]] = {}
  for i, (p, entry) in enumerate(zip(p_leaves, s_leaves)):
    if entry is None or p is None:
      continue
    if not _is_entry(entry):
      raise TypeError(f"`{fn}(groups=...)`: the entry for {paths[i]} must be "
                      f"a (name, axis) tuple or None; got {entry!r}.")
    name, axis = entry
    val.check_float_leaf(fn, paths[i], p)
    try:
      ax = _group.normalize_axis(axis, np.ndim(p))[0]
    except ValueError as e:
      raise ValueError(f"`{fn}(groups=...)`: axis {axis} of group set "
                       f"{name!r} does not fit the parameter at {paths[i]} "
                       f"of shape {np.shape(p)}: {e}") from None
    sets.setdefault(name, []).append((i, ax))
  for name, members in sets.items():
    lengths = {np.shape(p_leaves[i])[ax] for i, ax in members}
    if len(lengths) != 1:
      shapes = ", ".join(f"{paths[i]} {np.shape(p_leaves[i])} axis {ax}"
                         for i, ax in members)
      raise ValueError(
          f"`{fn}(groups=...)`: the leaves of group set {name!r} must have "
          f"the same length along their group axes (one group per index); "
          f"got {shapes}.")
  if not sets:
    raise ValueError(f"`{fn}(groups=...)` puts no leaf in any group set.")
  return sets


def _is_entry(x: Any) -> bool:
  return (isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str)
          and isinstance(x[1], int) and not isinstance(x[1], bool))


def transformation(fn: str, groups: GroupsOrFn, lam: Any,
                   learning_rate: Any, l1: Optional[Any],
                   scale_by_size: bool) -> _transforms.ProxTransformation:
  """The group (or sparse group) lasso over ``groups``' sets of leaves."""
  if learning_rate is not None:
    val.check_positive(fn, "learning_rate", learning_rate)
  if not (callable(groups) or isinstance(groups, (dict, list, tuple))):
    raise TypeError(f"`{fn}(groups=...)` must be a callable of params (e.g. "
                    f"optax_l1.group_by_path(...)) or a pytree of (name, "
                    f"axis) / None; got {groups!r}.")
  hyper = {"lam": lam} if l1 is None else {"lam": lam, "l1": l1}
  scheduled = callable(learning_rate) or any(callable(v)
                                             for v in hyper.values())
  for k, v in hyper.items():
    if np.ndim(v) if not callable(v) else 0:
      raise ValueError(f"`{fn}({k}=...)` must be a scalar with groups=...; "
                       f"got shape {np.shape(v)}.")

  def evaluate(v, count):
    return v(count) if callable(v) else v

  def init_fn(params):
    _transforms.check_learning_rate_at_init(fn, learning_rate)
    _resolve(fn, groups, params)
    if scheduled:
      return _transforms.ProxState(count=jnp.zeros([], jnp.int32))
    return optax.EmptyState()

  def update_fn(updates, state, params=None, *, step=None, **extra_args):
    del extra_args
    if params is None:
      raise _transforms.params_required(fn)
    sets = _resolve(fn, groups, params)
    count = state.count if scheduled else None
    hp = {k: evaluate(v, count) for k, v in hyper.items()}
    p_leaves, treedef = jax.tree.flatten(params, is_leaf=lambda x: x is None)
    u_leaves = treedef.flatten_up_to(updates)
    tests = [_transforms._run_time_ok(v, _transforms._NONNEGATIVE)  # pylint: disable=protected-access
             for v in hp.values()]
    if step is None:
      lr = _transforms.chain_learning_rate(fn, learning_rate, count)
      tests.append(_transforms._run_time_ok(lr, _transforms._NONNEGATIVE))  # pylint: disable=protected-access
      s_leaves = [lr] * len(p_leaves)  # one object: the block soft threshold
    else:
      s_leaves = treedef.flatten_up_to(step)
    tests = [t for t in tests if t is not None]
    ok = functools.reduce(jnp.logical_and, tests) if tests else None
    out = list(u_leaves)
    for members in sets.values():
      idx = [i for i, _ in members]
      zs = [jnp.asarray(p_leaves[i] + u_leaves[i]).astype(p_leaves[i].dtype)
            for i in idx]
      xs = _group.group_lasso_sets(
          zs, [s_leaves[i] for i in idx], hp["lam"], [a for _, a in members],
          scale_by_size, hp.get("l1"))
      for i, x in zip(idx, xs):
        if ok is not None:
          x = jnp.where(ok, x, jnp.full((), jnp.nan, x.dtype))
        out[i] = (x - p_leaves[i]).astype(u_leaves[i].dtype)
    if scheduled:
      state = _transforms.ProxState(count=optax.safe_increment(state.count))
    return treedef.unflatten(out), state

  update_fn.prox_info = (fn, learning_rate)
  return _transforms.ProxTransformation(init_fn, update_fn)
