"""The per-leaf factors, ``s`` of the decay and ``r`` of the learning rate: the
one place where they are decided.

``s(leaf) = c(leaf) * multiplier(leaf)`` for a decayed leaf and ``0.0`` for
every other; with a ``base`` model, ``s(leaf) = c(leaf) / c(base leaf) *
multiplier(leaf)``. :func:`layer_l2`, :func:`penalty` and :func:`describe` all take
their factors from :func:`leaf_scales` here, so they cannot disagree. The
learning-rate factor ``r`` of :func:`layer_lr` is the same computation with a
rate scaling (:data:`LR_SCALINGS`) and a base, read by :func:`rate_factors`:
``1.0`` where ``s`` would be ``0.0`` because the leaf is not selected. Only
shapes, dtypes and paths are read, so this runs in Python at trace time.
"""

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import jax
import jax.numpy as jnp
import optax

from optax_layer_l2._fans import Dims, Fans, default_dims, leaf_fans
from optax_layer_l2._masking import MaskOrFn, default_exclusion, user_mask_per_leaf
from optax_layer_l2._multipliers import Multipliers, resolve_multipliers
from optax_layer_l2._paths import broadcast_prefix, flatten_with_paths, is_none
from optax_layer_l2._scaling import (
  LR_SCALINGS,
  SCALINGS,
  LeafInfo,
  ScalingFn,
  checked_factor,
  resolve_scaling,
)

# A pytree of `Dims`/`None` (or a prefix of one), or a callable `(path, leaf) -> Dims | None`.
DimsOption: TypeAlias = Any | Callable[[str, Any], Dims | None]

NONE_LEAF = "None leaf"
"""The reason recorded for a ``None`` in ``params`` (it stays ``None``)."""

MULTIPLIER_ZERO = "multiplier 0"
"""The reason recorded for a selected leaf whose multiplier is 0."""


@dataclasses.dataclass(frozen=True)
class LeafScale:
  """The decision for one leaf.

  Attributes:
    path: the leaf's path.
    shape: its shape, or ``None`` for a leaf that is not an array.
    fans: its fans, where they were needed to decide.
    factor: ``c(leaf)`` from the scaling, divided by ``c(base leaf)`` when
      there is a base (0 when not decayed).
    multiplier: the leaf's multiplier on ``weight_decay``.
    scale: ``s = factor * multiplier``; 0 means the leaf is left untouched.
    skipped: why the leaf is not decayed, or ``None`` when it is.
    base_shape: the shape of the base model's leaf, where a base was given
      and the leaf is decayed.
  """

  path: str
  shape: tuple[int, ...] | None
  fans: Fans | None
  factor: float
  multiplier: float
  scale: float
  skipped: str | None
  base_shape: tuple[int, ...] | None = None

  @property
  def decayed(self) -> bool:
    return self.skipped is None


def _dims_per_leaf(
  dims: DimsOption, params: Any, paths: Sequence[str], leaves: Sequence[Any]
) -> list[Any]:
  if dims is None:
    return [None] * len(leaves)
  if callable(dims) and not isinstance(dims, Dims):
    chosen: list[Dims | None] = []
    for path, leaf in zip(paths, leaves, strict=True):
      if leaf is None or not hasattr(leaf, "shape"):
        chosen.append(None)
        continue
      value = dims(path, leaf)
      if value is not None and not isinstance(value, Dims):
        raise TypeError(
          f"`dims` must return a `Dims` or `None`; for leaf {path!r} it returned {value!r}."
        )
      chosen.append(value)
    return chosen
  values = broadcast_prefix(
    dims, params, argname="dims", is_prefix_leaf=lambda x: isinstance(x, Dims)
  )
  for path, value in zip(paths, values, strict=True):
    if value is not None and not isinstance(value, Dims):
      raise TypeError(f"`dims` must hold `Dims` or `None`; for leaf {path!r} it holds {value!r}.")
  return values


def _skip(
  path: str, shape: tuple[int, ...] | None, why: str, fans: Fans | None = None
) -> LeafScale:
  return LeafScale(path, shape, fans, factor=0.0, multiplier=0.0, scale=0.0, skipped=why)


def _is_real_floating(leaf: Any) -> bool:
  try:
    return jnp.issubdtype(leaf.dtype, jnp.floating)
  except TypeError:  # extended dtypes, such as typed PRNG keys
    return False


def structure_difference(
  paths: Sequence[str], other_paths: Sequence[str], argname: str = "base"
) -> str:
  """Where the leaf paths of ``params`` and of the argument ``argname`` first part."""
  for path, other_path in zip(paths, other_paths, strict=False):
    if path != other_path:
      return f"`params` has leaf {path!r} where `{argname}` has {other_path!r}"
  if len(paths) > len(other_paths):
    return f"`{argname}` lacks the leaf {paths[len(other_paths)]!r}"
  if len(paths) < len(other_paths):
    return f"`{argname}` has the extra leaf {other_paths[len(paths)]!r}"
  return "the leaf paths agree but the tree node types differ"


def _masked_like(base: Any, params: Any) -> Any:
  """``base`` with an ``optax.MaskedNode`` wherever ``params`` has one.

  Inside ``optax.masked`` the leaves that are masked out arrive as
  ``MaskedNode``; the base model, given whole, has arrays there. Where the two
  trees differ otherwise, ``base`` is returned as it is, for the caller's error.
  """

  def is_masked(x: Any) -> bool:
    return isinstance(x, optax.MaskedNode)

  try:
    return jax.tree.map(
      lambda p, b: p if is_masked(p) else b,
      params,
      base,
      is_leaf=lambda x: x is None or is_masked(x),
    )
  except (ValueError, TypeError):
    return base


def _base_per_leaf(
  base: Any, params: Any, paths: Sequence[str], dims: DimsOption
) -> tuple[list[Any], list[Any]]:
  """The leaves of ``base`` in the order of the params' leaves, and their ``Dims``.

  ``base`` is matched to ``params`` by leaf paths, not by node types: an
  ``nnx.Optimizer`` gives ``init`` a tree of ``nnx.Param`` and ``update`` one
  of bare arrays, and both have the paths of a base given either way.
  """
  base_paths, base_leaves, _ = flatten_with_paths(base)
  if base_paths != list(paths):
    base = _masked_like(base, params)
    base_paths, base_leaves, _ = flatten_with_paths(base)
  if base_paths != list(paths):
    raise ValueError(
      "`base` must have the tree structure of `params` (the same model at another "
      f"width); {structure_difference(paths, base_paths)}."
    )
  if callable(dims) and not isinstance(dims, Dims):
    return base_leaves, _dims_per_leaf(dims, base, base_paths, base_leaves)
  # A pytree of `Dims` is written for `params`; the base leaf at a path gets its entry.
  return base_leaves, _dims_per_leaf(dims, params, paths, base_leaves)


def _base_factor(
  scaling_fn: ScalingFn,
  path: str,
  shape: tuple[int, ...],
  base_leaf: Any,
  base_dims: Any,
  argname: str = "scaling",
) -> tuple[float, tuple[int, ...]]:
  """``c(base leaf)`` for the decayed leaf at ``path``, and the base leaf's shape."""
  if base_leaf is None or not hasattr(base_leaf, "shape"):
    raise ValueError(
      f"`base` holds {base_leaf!r} at leaf {path!r}, which is decayed; "
      "it needs an array or a `jax.ShapeDtypeStruct` there."
    )
  base_shape = tuple(int(size) for size in base_leaf.shape)
  if len(base_shape) != len(shape):
    raise ValueError(
      f"`base` leaf {path!r} has shape {base_shape}, of rank {len(base_shape)}, but the "
      f"leaf has shape {shape}, of rank {len(shape)}; a base leaf must have the leaf's rank."
    )
  if 0 in base_shape:
    raise ValueError(f"`base` leaf {path!r} is empty (shape {base_shape}); it has no scale.")
  if base_dims is None:
    base_dims = default_dims(path, base_shape)
  base_fans = leaf_fans(path, base_shape, base_dims)
  base_factor = checked_factor(
    scaling_fn(LeafInfo.of(path, base_shape, base_fans)), argname, f"{path} (in `base`)"
  )
  if base_factor == 0.0:
    raise ValueError(
      f"`{argname}` gave 0 for leaf {path!r} of `base` (shape {base_shape}); "
      "a scaling relative to the base must be positive there."
    )
  return base_factor, base_shape


def leaf_scales(
  params: Any,
  scaling: str | ScalingFn = "fan_avg",
  *,
  mask: MaskOrFn | None = None,
  dims: DimsOption | None = None,
  multipliers: Multipliers | None = None,
  base: Any | None = None,
  names: dict[str, ScalingFn] = SCALINGS,
  argname: str = "scaling",
) -> tuple[list[LeafScale], jax.tree_util.PyTreeDef]:
  """One :class:`LeafScale` per leaf of ``params`` (``None`` counts as a leaf).

  ``names`` are the named scalings ``scaling`` may be (:data:`SCALINGS` or
  :data:`LR_SCALINGS`), and ``argname`` the argument the errors name.
  """
  scaling_fn = resolve_scaling(scaling, names, argname)
  multiplier_fn = resolve_multipliers(multipliers)
  paths, leaves, treedef = flatten_with_paths(params)
  chosen_dims = _dims_per_leaf(dims, params, paths, leaves)
  selected = None if mask is None else user_mask_per_leaf(mask, params, paths)
  if base is not None:
    base_leaves, base_dims = _base_per_leaf(base, params, paths, dims)

  decisions = []
  for i, (path, leaf, leaf_dims) in enumerate(zip(paths, leaves, chosen_dims, strict=True)):
    if leaf is None:
      decisions.append(_skip(path, None, NONE_LEAF))
      continue
    if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
      decisions.append(_skip(path, None, f"not an array ({type(leaf).__name__})"))
      continue
    shape = tuple(int(size) for size in leaf.shape)
    if not _is_real_floating(leaf):
      decisions.append(_skip(path, shape, f"dtype {leaf.dtype}"))
      continue
    if 0 in shape:
      decisions.append(_skip(path, shape, "empty"))
      continue
    if selected is not None and not selected[i]:
      decisions.append(_skip(path, shape, "masked out"))
      continue
    given_dims = leaf_dims is not None
    if not given_dims:
      leaf_dims = default_dims(path, shape)
    if selected is None:
      layer_rank = len(shape) - len(leaf_dims.batch_axes)
      why = default_exclusion(path, layer_rank)
      if why is not None:
        # A `Dims` meant for kernels need not fit the biases it also covers.
        fans = None if given_dims else leaf_fans(path, shape, leaf_dims)
        decisions.append(_skip(path, shape, why, fans))
        continue
    fans = leaf_fans(path, shape, leaf_dims)
    multiplier = multiplier_fn(path, leaf)
    if multiplier == 0.0:
      decisions.append(_skip(path, shape, MULTIPLIER_ZERO, fans))
      continue
    factor = checked_factor(scaling_fn(LeafInfo.of(path, shape, fans)), argname, path)
    base_shape = None
    if base is not None:
      base_factor, base_shape = _base_factor(
        scaling_fn, path, shape, base_leaves[i], base_dims[i], argname
      )
      factor /= base_factor
    decisions.append(
      LeafScale(
        path,
        shape,
        fans,
        factor,
        multiplier,
        scale=factor * multiplier,
        skipped=None,
        base_shape=base_shape,
      )
    )
  return decisions, treedef


def shapes_of(tree: Any) -> Any:
  """``tree`` with each array replaced by its ``jax.ShapeDtypeStruct``."""
  if tree is None:
    return None

  def shape_of(leaf: Any) -> Any:
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
      # JAX leaves `ShapeDtypeStruct.__init__` unannotated.
      return jax.ShapeDtypeStruct(tuple(leaf.shape), leaf.dtype)  # type: ignore[no-untyped-call]
    return leaf

  return jax.tree.map(shape_of, tree, is_leaf=is_none)


def scales(
  params: Any,
  scaling: str | ScalingFn = "fan_avg",
  *,
  mask: MaskOrFn | None = None,
  dims: DimsOption | None = None,
  multipliers: Multipliers | None = None,
  base: Any | None = None,
) -> Any:
  """The per-leaf factor ``s`` that :func:`layer_l2` multiplies ``weight_decay`` by.

  ``s = c(leaf) * multiplier(leaf)`` for a decayed leaf and ``0.0`` for every
  other one, as Python floats; with ``base``, ``s = c(leaf) / c(base leaf) *
  multiplier(leaf)``. Only shapes, dtypes and paths are read, so the output
  of ``jax.eval_shape`` works as ``params`` and as ``base``.

  Args:
    params: the parameter tree (arrays or ``jax.ShapeDtypeStruct``).
    scaling: a name (``"none"``, ``"numel"``, ``"fan_avg"``, ``"fan_in"``,
      ``"fan_out"``) or a callable ``scaling(info: LeafInfo) -> float``.
    mask: a pytree of bools with the structure of ``params`` (or a prefix of
      it), or a callable returning one. By default every floating leaf of rank
      at least 2 is decayed, except leaves named ``bias`` or ``scale``.
    dims: which axes are fan-in, fan-out and stacked layers: a pytree of
      :class:`Dims`/``None`` (or a prefix of one), or a callable
      ``(path, leaf) -> Dims | None``; ``None`` uses the default rule.
    multipliers: a per-layer multiplier on ``weight_decay``: a mapping from
      regular expression to float (the first pattern that ``re.search`` finds
      in the path wins) or a callable ``(path, leaf) -> float``.
    base: the base model on which ``weight_decay`` was tuned: its params or
      their shapes (``jax.eval_shape``), with the structure of ``params``.
      Every scaling, named or callable, is then relative to it, so at the base
      each one is plain L2. ``None``: absolute factors.

  Returns:
    A pytree with the structure of ``params`` holding a float per leaf
    (``None`` leaves stay ``None``).

  Raises:
    ValueError: a ``base`` of another structure, a base leaf of another rank,
      or one whose factor is 0, naming the leaf's path; and the errors of
      :func:`layer_l2`.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax_layer_l2 as ll2
    >>> params = {"dense": {"kernel": jnp.zeros((40, 256)), "bias": jnp.zeros(256)}}
    >>> s = ll2.scales(params, "fan_avg")
    >>> round(s["dense"]["kernel"], 6), s["dense"]["bias"]
    (0.028906, 0.0)

    Relative to a base model of width 64, a kernel of width 256 gets twice
    the base's rate under ``sqrt_fan_in``, and the base itself plain L2:

    >>> wide = {"dense": {"kernel": jnp.zeros((256, 256)), "bias": jnp.zeros(256)}}
    >>> narrow = {"dense": {"kernel": jnp.zeros((64, 64)), "bias": jnp.zeros(64)}}
    >>> ll2.scales(wide, "sqrt_fan_in", base=narrow)["dense"]["kernel"]
    2.0
    >>> ll2.scales(narrow, "fan_avg", base=narrow)["dense"]["kernel"]
    1.0
  """
  decisions, treedef = leaf_scales(
    params, scaling, mask=mask, dims=dims, multipliers=multipliers, base=base
  )
  values = [None if d.skipped == NONE_LEAF else d.scale for d in decisions]
  return jax.tree.unflatten(treedef, values)


def rate_factor(decision: LeafScale) -> float:
  """The learning-rate factor ``r`` of one leaf, from its decision.

  A selected leaf gets ``c(leaf) / c(base leaf) * multiplier`` (so 0 with a
  multiplier of 0: the leaf is frozen); every other leaf, 1.
  """
  if decision.decayed:
    return decision.scale
  if decision.skipped == MULTIPLIER_ZERO:
    return 0.0
  return 1.0


def rate_factors(
  params: Any,
  scaling: str | ScalingFn,
  *,
  base: Any,
  mask: MaskOrFn | None = None,
  dims: DimsOption | None = None,
  multipliers: Multipliers | None = None,
  argname: str = "scaling",
) -> Any:
  """The pytree of learning-rate factors ``r`` of :func:`layer_lr` (``None`` stays ``None``)."""
  decisions, treedef = leaf_scales(
    params,
    scaling,
    mask=mask,
    dims=dims,
    multipliers=multipliers,
    base=base,
    names=LR_SCALINGS,
    argname=argname,
  )
  values = [None if d.skipped == NONE_LEAF else rate_factor(d) for d in decisions]
  return jax.tree.unflatten(treedef, values)
