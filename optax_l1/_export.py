"""After training: pick leaves by path, read what survived, ship it smaller.

* Masks for the ``mask=`` argument of every transformation, by leaf path
  (:func:`mask_by_path`) or by any rule on path and leaf
  (:func:`mask_by_predicate`). They work on plain dicts, Flax Linen params and
  Flax NNX ``nnx.State`` alike.
* What a group penalty left: :func:`surviving` and its named cases
  :func:`surviving_inputs`, :func:`surviving_units`, :func:`surviving_filters`.
* Structural compaction of an MLP: :func:`compact_mlp` deletes dead inputs and
  hidden units and returns a smaller network that computes the same function.
* Unstructured export: :func:`to_bcoo` (``jax.experimental.sparse``) and a
  compressed on-disk format, :func:`save_sparse` / :func:`load_sparse`.

Paths are written as :func:`leaf_path` gives them: ``Dense_0/kernel`` (Linen),
``hidden/kernel`` (NNX, where the trailing ``.value`` attribute of a
``Variable`` is dropped), ``layers/0/kernel`` (lists).
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_l1 import ops
from optax_l1._tree import MaskOrFn, path_str, resolve_mask

PathLike = Union[str, "os.PathLike[str]"]


def _is_none(x: Any) -> bool:
  return x is None


def leaf_path(path: Sequence[Any]) -> str:
  """A key path as the string that :func:`mask_by_path` matches.

  The same strings as :func:`optax_l1.sparsity_report`'s paths: a final
  ``.value`` attribute (how an NNX ``Variable`` holds its array) is dropped,
  so one pattern fits Linen params, NNX state and plain dicts.

  Examples:
    >>> import jax, optax_l1
    >>> params = {"layers": [{"kernel": 1.0}]}
    >>> [optax_l1.leaf_path(p)
    ...  for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    ['layers/0/kernel']
  """
  return path_str(tuple(path))


def mask_by_predicate(
    fn: Callable[[str, Any], bool]) -> Callable[[optax.Params], Any]:
  """A mask callable: ``fn(path, leaf)`` decides for each leaf.

  The result follows ``optax.masked``'s convention and can be passed as
  ``mask=`` to any transformation here (or to ``optax.masked``). ``path`` is
  :func:`leaf_path`'s string; ``None`` leaves get ``False`` without calling
  ``fn``.

  Args:
    fn: ``fn(path: str, leaf) -> bool``.

  Returns:
    ``mask(params)``: a pytree of Python bools with the structure of params.

  Examples:
    >>> import jax.numpy as jnp, optax_l1
    >>> params = {"a": jnp.zeros((3, 2)), "b": jnp.zeros(2)}
    >>> optax_l1.mask_by_predicate(lambda path, x: x.ndim >= 2)(params)
    {'a': True, 'b': False}
  """
  if not callable(fn):
    raise TypeError(f"`mask_by_predicate(fn=...)` must be callable; got "
                    f"{fn!r}.")

  def mask(params: optax.Params) -> Any:
    def one(path, leaf):
      if leaf is None:
        return False
      out = fn(leaf_path(path), leaf)
      if not isinstance(out, (bool, np.bool_)):
        raise TypeError(f"`mask_by_predicate`: fn must return a bool; got "
                        f"{out!r} for {leaf_path(path)}.")
      return bool(out)
    return jax.tree_util.tree_map_with_path(one, params, is_leaf=_is_none)

  return mask


def mask_by_path(*patterns: str) -> Callable[[optax.Params], Any]:
  """A mask callable: leaves whose path matches any regex (``re.search``).

  ``mask_by_path("kernel")`` selects every kernel and no bias or norm scale;
  ``mask_by_path(r"^Dense_0/kernel$")`` the first Linen Dense kernel only;
  ``mask_by_path(r"Conv_\\d+/kernel")`` every conv kernel. Paths are
  :func:`leaf_path`'s (``Dense_0/kernel``, ``layers/0/kernel``; NNX's
  ``.value`` is dropped).

  Args:
    *patterns: one or more regular expressions.

  Returns:
    ``mask(params)``: a pytree of Python bools with the structure of params.

  Examples:
    >>> import jax.numpy as jnp, optax_l1
    >>> params = {"Dense_0": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)},
    ...           "LayerNorm_0": {"scale": jnp.ones(3)}}
    >>> optax_l1.mask_by_path("kernel")(params)
    {'Dense_0': {'bias': False, 'kernel': True}, 'LayerNorm_0': {'scale': False}}
  """
  if not patterns:
    raise ValueError("`mask_by_path` needs at least one pattern, e.g. "
                     "mask_by_path('kernel').")
  for p in patterns:
    if not isinstance(p, str):
      raise TypeError(f"`mask_by_path` patterns must be strings; got {p!r}.")
  compiled = [re.compile(p) for p in patterns]
  return mask_by_predicate(
      lambda path, _: any(c.search(path) is not None for c in compiled))


# ---------------------------------------------------------------------------
# What survived a group penalty.
# ---------------------------------------------------------------------------


def surviving(kernel: Any, axis: ops.Axis) -> np.ndarray:
  """Indices of the groups of ``kernel`` that are not entirely zero.

  ``axis`` is the same as :func:`optax_l1.prox_group_lasso`'s: the axes each
  group's norm runs over. Each index of the remaining axes is one group: with
  one remaining axis the result is a 1-D array of its indices; with several,
  an ``(n, k)`` array as ``np.argwhere`` gives.

  Args:
    kernel: an array.
    axis: int or tuple of ints.

  Returns:
    NumPy integer array of the indices of groups with a nonzero (or NaN)
    entry, ascending.

  Examples:
    >>> import numpy as np, optax_l1
    >>> w = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    >>> optax_l1.surviving(w, axis=1)  # rows
    array([1, 2])
    >>> optax_l1.surviving(w, axis=0)  # columns
    array([0, 1])
  """
  a = np.asarray(jax.device_get(kernel))
  axes = ops.normalize_axis(axis, a.ndim)
  alive = np.any(a != 0, axis=axes)  # NaN != 0: a NaN group survives
  if alive.ndim == 1:
    return np.flatnonzero(alive)
  return np.argwhere(alive)


def surviving_inputs(kernel: Any) -> np.ndarray:
  """Rows of a Dense kernel ``(inputs, outputs)`` with any nonzero entry.

  What ``prox_group_lasso(..., axis=1)`` selects: the inputs still in use.

  Examples:
    >>> import numpy as np, optax_l1
    >>> optax_l1.surviving_inputs(np.array([[0.0, 0.0], [0.5, 0.0]]))
    array([1])
  """
  _check_ndim("surviving_inputs", kernel, 2)
  return surviving(kernel, axis=1)


def surviving_units(kernel: Any) -> np.ndarray:
  """Columns of a Dense kernel ``(inputs, outputs)`` with any nonzero entry.

  What ``prox_group_lasso(..., axis=0)`` keeps: the units that read anything.

  Examples:
    >>> import numpy as np, optax_l1
    >>> optax_l1.surviving_units(np.array([[0.0, 0.0], [0.5, 0.0]]))
    array([0])
  """
  _check_ndim("surviving_units", kernel, 2)
  return surviving(kernel, axis=0)


def surviving_filters(kernel: Any) -> np.ndarray:
  """Output filters (last axis) of a conv kernel with any nonzero entry.

  What ``prox_group_lasso(..., axis=(0, 1, 2))`` keeps for a 2-D conv kernel
  ``(h, w, in, out)``; any rank >= 2 works (all axes but the last are one
  filter).

  Examples:
    >>> import numpy as np, optax_l1
    >>> k = np.zeros((3, 3, 1, 4)); k[1, 1, 0, 2] = 1.0
    >>> optax_l1.surviving_filters(k)
    array([2])
  """
  a = np.asarray(jax.device_get(kernel))
  if a.ndim < 2:
    raise ValueError(f"`surviving_filters` needs a kernel of rank >= 2; got "
                     f"shape {a.shape}.")
  return surviving(a, axis=tuple(range(a.ndim - 1)))


def _check_ndim(fn: str, kernel: Any, ndim: int) -> None:
  if np.ndim(kernel) != ndim:
    raise ValueError(f"`{fn}` needs a {ndim}-D kernel (inputs, outputs); got "
                     f"shape {np.shape(kernel)}.")


# ---------------------------------------------------------------------------
# Structural compaction of an MLP.
# ---------------------------------------------------------------------------


class CompactMLP(NamedTuple):
  """Result of :func:`compact_mlp`."""

  layers: list[tuple[np.ndarray, np.ndarray]]  # smaller (kernel, bias) pairs
  inputs: np.ndarray  # int: kept input indices; feed x[..., inputs]
  units: list[np.ndarray]  # int: kept units of each hidden layer


def compact_mlp(
    layers: Sequence[tuple[Any, Any]],
    activation: Callable[[Any], Any] = jax.nn.relu,
) -> CompactMLP:
  """Deletes dead inputs and hidden units of an MLP; the function is unchanged.

  The network is ``h_0 = x``, ``h_{l+1} = act(h_l W_l + b_l)`` for every layer
  but the last, which is affine (``h_L W_L + b_L``, no activation). Kernels
  are ``(inputs, outputs)`` as in Flax. A hidden unit ``j`` of layer ``l`` is
  removed when

  * its outgoing row ``W_{l+1}[j, :]`` is zero: it feeds nothing; or
  * its incoming column ``W_l[:, j]`` is zero: it outputs the constant
    ``act(b_l[j])``, which is folded into the next bias,
    ``b_{l+1} += act(b_l[j]) W_{l+1}[j, :]``, before it is removed.

  An input is removed when its row of ``W_0`` is zero. Removing a unit can
  make a neighbouring row or column zero, so the rules are applied until
  nothing changes. The result computes the same outputs from
  ``x[..., inputs]`` (the folded biases up to float rounding).

  Args:
    layers: ``[(kernel, bias), ...]``, at least one layer.
    activation: the elementwise activation between layers (the model's own:
      a constant unit outputs ``activation(bias)``).

  Returns:
    A :class:`CompactMLP` ``(layers, inputs, units)``: NumPy ``(kernel,
    bias)`` pairs in the original dtypes, the kept input indices, and the
    kept unit indices of each hidden layer.

  Examples:
    >>> import numpy as np, optax_l1
    >>> W0 = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]])  # input 1 unused
    >>> b0 = np.array([0.0, 3.0, 0.0])                      # unit 1: constant 3
    >>> W1 = np.array([[1.0], [2.0], [0.0]])                # unit 2: feeds nothing
    >>> b1 = np.array([0.5])
    >>> small = optax_l1.compact_mlp([(W0, b0), (W1, b1)])
    >>> small.inputs, small.units, small.layers[1][1]
    (array([0]), [array([0])], array([6.5]))
  """
  if len(layers) < 1:
    raise ValueError("`compact_mlp` needs at least one (kernel, bias) layer.")
  ws, bs = [], []
  for i, layer in enumerate(layers):
    if not isinstance(layer, (tuple, list)) or len(layer) != 2:
      raise TypeError(f"`compact_mlp`: layer {i} must be a (kernel, bias) "
                      f"pair; got {type(layer).__name__}.")
    w, b = layer
    w = np.array(jax.device_get(w))
    b = np.array(jax.device_get(b))
    if w.ndim != 2 or b.shape != (w.shape[1],):
      raise ValueError(f"`compact_mlp`: layer {i} has kernel {w.shape} and "
                       f"bias {b.shape}; expected (in, out) and (out,).")
    if i and w.shape[0] != ws[-1].shape[1]:
      raise ValueError(f"`compact_mlp`: layer {i} takes {w.shape[0]} inputs "
                       f"but layer {i - 1} has {ws[-1].shape[1]} outputs.")
    ws.append(w)
    bs.append(b)
  n_hidden = len(ws) - 1
  inputs = np.arange(ws[0].shape[0])
  units = [np.arange(w.shape[1]) for w in ws[:-1]]

  changed = True
  while changed:
    changed = False
    for l in range(n_hidden):
      w_in, w_out = ws[l], ws[l + 1]
      dead_out = ~np.any(w_out != 0, axis=1)
      const = ~np.any(w_in != 0, axis=0) & ~dead_out
      if np.any(const):
        acts = np.asarray(activation(jnp.asarray(bs[l][const])))
        fold = acts.astype(np.float64) @ w_out[const].astype(np.float64)
        bs[l + 1] = (bs[l + 1].astype(np.float64) + fold).astype(bs[l + 1].dtype)
      keep = ~(dead_out | const)
      if not np.all(keep):
        ws[l], bs[l] = w_in[:, keep], bs[l][keep]
        ws[l + 1] = w_out[keep]
        units[l] = units[l][keep]
        changed = True
    keep_in = np.any(ws[0] != 0, axis=1)
    if not np.all(keep_in):
      ws[0] = ws[0][keep_in]
      inputs = inputs[keep_in]
      changed = True
  return CompactMLP(list(zip(ws, bs)), inputs, units)


# ---------------------------------------------------------------------------
# Unstructured export: BCOO and a compressed on-disk format.
# ---------------------------------------------------------------------------


def _default_sparse_mask(params: optax.Params) -> Any:
  return jax.tree.map(
      lambda p: p is not None and jnp.ndim(p) >= 2
      and jnp.issubdtype(jnp.result_type(p), jnp.floating),
      params, is_leaf=_is_none)


def to_bcoo(params: optax.Params, mask: MaskOrFn = None) -> Any:
  """Converts the selected leaves to ``jax.experimental.sparse.BCOO``.

  Only the nonzero entries are stored (``nse`` = their count), so
  ``bcoo @ x`` costs in proportion to them. Unselected leaves are returned as
  they are.

  Args:
    params: a pytree of arrays (dicts, Linen params, ``nnx.State``).
    mask: which leaves to convert, as in ``optax.masked`` (a pytree of bools
      or a callable such as ``mask_by_path("kernel")``). Default: every
      floating-point leaf with at least 2 dimensions.

  Returns:
    params with the selected leaves as ``BCOO`` matrices.

  Examples:
    >>> import jax.numpy as jnp, optax_l1
    >>> w = jnp.array([[0.0, 2.0], [0.0, 0.0], [1.0, 0.0]])
    >>> sp = optax_l1.to_bcoo({"kernel": w})["kernel"]
    >>> sp.nse, sp @ jnp.ones(2)
    (2, Array([2., 0., 1.], dtype=float32))
  """
  from jax.experimental import sparse  # pylint: disable=g-import-not-at-top
  full = resolve_mask("to_bcoo", _default_sparse_mask if mask is None
                      else mask, params)

  def one(p, m):
    if not m:
      return p
    p = jnp.asarray(p)
    nse = int(np.count_nonzero(np.asarray(jax.device_get(p))))
    return sparse.BCOO.fromdense(p, nse=nse)
  return jax.tree.map(one, params, full, is_leaf=_is_none)


_FORMAT = "optax_l1.sparse/1"


def _key_json(k: Any) -> list[Any]:
  if isinstance(k, jax.tree_util.DictKey):
    key = k.key
    if isinstance(key, (bool, np.bool_)) or not isinstance(key, (str, int)):
      key = str(key)
    return ["dict", key]
  if isinstance(k, jax.tree_util.SequenceKey):
    return ["seq", k.idx]
  if isinstance(k, jax.tree_util.GetAttrKey):
    return ["attr", k.name]
  if isinstance(k, jax.tree_util.FlattenedIndexKey):
    return ["flat", k.key]
  return ["other", str(k)]


def _bits(a: np.ndarray) -> np.ndarray:
  """The raw bits of a float array as unsigned ints (bfloat16 included)."""
  return a.view(np.dtype(f"u{a.dtype.itemsize}"))


def _index_dtype(size: int) -> np.dtype:
  for dt in (np.uint8, np.uint16, np.uint32):
    if size <= np.iinfo(dt).max + 1:
      return np.dtype(dt)
  return np.dtype(np.uint64)


def save_sparse(path: PathLike, params: optax.Params,
                mask: MaskOrFn = None) -> int:
  """Writes params to a compressed ``.npz``, sparse leaves as indices + values.

  Each selected floating-point leaf is stored as the positions of its entries
  that are not ``+0.0`` plus those entries' values, whenever that is smaller
  than the dense array; everything else is stored dense. Positions are the
  gaps between flat (row-major) indices in the smallest unsigned type that
  holds them, or a bitmap (1 bit per weight) when that is smaller (below
  about 1 - 1/(8 * index bytes) sparsity). Values keep
  their exact bits (``-0.0``, NaN payloads and ``bfloat16`` included), so
  :func:`load_sparse` gives back bit-identical arrays. The archive is written
  with ``np.savez_compressed`` (zip/deflate) and needs no pickle to read.

  Args:
    path: file to write (written as given; no ``.npz`` is appended).
    params: a pytree of arrays.
    mask: which leaves may be stored sparse (``optax.masked`` convention);
      default: every floating-point leaf.

  Returns:
    The file's size in bytes.

  Examples:
    >>> import os, tempfile, numpy as np, optax_l1
    >>> w = np.zeros((100, 100), np.float32); w[::10, ::10] = 1.0
    >>> f = os.path.join(tempfile.mkdtemp(), "w.npz")
    >>> optax_l1.save_sparse(f, {"kernel": w}) < w.nbytes // 20
    True
    >>> bool(np.array_equal(optax_l1.load_sparse(f)["kernel"], w))
    True
  """
  full = resolve_mask("save_sparse", mask, params)
  leaves, _ = jax.tree_util.tree_flatten_with_path(params)  # None: no leaf
  mask_leaves = [m for m in jax.tree.leaves(full)]
  if len(mask_leaves) != len(leaves):  # None leaves of params: False in full
    mask_leaves = [m for (_, p), m in zip(
        jax.tree_util.tree_flatten_with_path(params, is_leaf=_is_none)[0],
        jax.tree.leaves(full)) if p is not None]
  arrays: dict[str, np.ndarray] = {}
  meta = []
  for i, ((kp, leaf), m) in enumerate(zip(leaves, mask_leaves)):
    a = np.asarray(jax.device_get(leaf))
    entry = {"path": [_key_json(k) for k in kp], "shape": list(a.shape),
             "dtype": jnp.dtype(a.dtype).name}
    is_float = jnp.issubdtype(a.dtype, jnp.floating)
    if is_float:
      bits = _bits(np.ascontiguousarray(a)).reshape(-1)
      stored = np.flatnonzero(bits != 0)  # +0.0 is the only all-zero pattern
      idx_dt = _index_dtype(max(a.size, 1))
      gap_bytes = stored.size * idx_dt.itemsize
      bitmap_bytes = -(-a.size // 8)
      sparse_bytes = min(gap_bytes, bitmap_bytes) + stored.size * a.dtype.itemsize
      if m and sparse_bytes < a.nbytes:
        if gap_bytes <= bitmap_bytes:
          arrays[f"{i}.gaps"] = np.diff(stored, prepend=0).astype(idx_dt)
        else:
          arrays[f"{i}.bitmap"] = np.packbits(bits != 0)
        arrays[f"{i}.values"] = bits[stored]
        entry["kind"] = "sparse"
      else:
        arrays[f"{i}.dense"] = _bits(np.ascontiguousarray(a))
        entry["kind"] = "dense"
    else:
      arrays[f"{i}.dense"] = a
      entry["kind"] = "dense"
    meta.append(entry)
  arrays["__meta__"] = np.array(json.dumps({"format": _FORMAT,
                                            "leaves": meta}))
  with open(path, "wb") as f:
    np.savez_compressed(f, **arrays)
  return os.path.getsize(path)


def _insert(tree: Any, keys: list[list[Any]], value: Any) -> Any:
  """Inserts ``value`` at ``keys`` into nested dicts/lists built on the fly."""
  if not keys:
    return value
  (kind, k), rest = keys[0], keys[1:]
  if kind == "seq":
    tree = [] if tree is None else tree
    while len(tree) <= k:
      tree.append(None)
    tree[k] = _insert(tree[k], rest, value)
    return tree
  tree = {} if tree is None else tree
  tree[k] = _insert(tree.get(k), rest, value)
  return tree


def load_sparse(path: PathLike, like: Optional[optax.Params] = None) -> Any:
  """Reads a file written by :func:`save_sparse`; arrays are bit-identical.

  Args:
    path: the file.
    like: optional pytree with the saved params' structure (e.g. the model's
      freshly initialized params, or an ``nnx.State``); the arrays are put
      into that structure. Without it, the result is nested dicts (lists for
      sequences), keyed by the saved path.

  Returns:
    The params, as NumPy arrays (exact, whatever JAX's x64 setting).

  Examples:
    >>> import os, tempfile, numpy as np, optax_l1
    >>> f = os.path.join(tempfile.mkdtemp(), "p.npz")
    >>> _ = optax_l1.save_sparse(f, {"layers": [{"bias": np.zeros(2)}]})
    >>> optax_l1.load_sparse(f)
    {'layers': [{'bias': array([0., 0.])}]}
  """
  with np.load(path, allow_pickle=False) as z:
    meta = json.loads(str(z["__meta__"]))
    if meta.get("format") != _FORMAT:
      raise ValueError(f"`load_sparse`: {os.fspath(path)!r} was not written "
                       f"by save_sparse (format {meta.get('format')!r}).")
    out = []
    for i, entry in enumerate(meta["leaves"]):
      dtype = jnp.dtype(entry["dtype"])
      shape = tuple(entry["shape"])
      if entry["kind"] == "sparse":
        size = int(np.prod(shape))
        if f"{i}.gaps" in z.files:
          stored = np.cumsum(z[f"{i}.gaps"].astype(np.int64))
        else:
          stored = np.flatnonzero(
              np.unpackbits(z[f"{i}.bitmap"], count=size))
        values = z[f"{i}.values"]
        flat = np.zeros(size, values.dtype)
        flat[stored] = values
        a = flat.view(dtype).reshape(shape)
      else:
        a = z[f"{i}.dense"]
        if jnp.issubdtype(dtype, jnp.floating):
          a = a.view(dtype)
        a = a.reshape(shape)
      out.append(a)
  if like is not None:
    treedef = jax.tree.structure(like)
    if treedef.num_leaves != len(out):
      raise ValueError(f"`load_sparse(like=...)` has {treedef.num_leaves} "
                       f"leaves; the file holds {len(out)}.")
    return jax.tree.unflatten(treedef, out)
  tree = None
  for entry, a in zip(meta["leaves"], out):
    tree = _insert(tree, entry["path"], a)
  return tree
