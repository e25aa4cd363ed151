"""The per-leaf rule, and the one function that turns it into per-leaf decisions.

Every number this package gives for a leaf comes from here: the decay's
``s`` (:func:`layer_l2`, :func:`penalty`, :func:`scales`, :func:`describe`)
and the learning-rate factor ``r`` (:func:`layer_lr`). A :class:`LeafRule`
holds what a transformation was built with (the scaling and the name of its
argument, the mask, the ``dims``, the multipliers, the base model's shapes);
:func:`decide` reads a params tree with it, once, and gives one
:class:`LeafDecision` a leaf:

``s(leaf) = c(leaf) * multiplier(leaf)`` for a selected leaf and ``0.0`` for
every other one; with a ``base`` model, ``s(leaf) = c(leaf) / c(base leaf) *
multiplier(leaf)``. Only shapes, dtypes and paths are read, so this runs in
Python at trace time.
"""

import dataclasses
import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeAlias

import jax

from optax_layer_l2._base import base_leaves, base_shape, relative, require_base, shapes_of
from optax_layer_l2._fans import (
  Dims,
  Fans,
  InferredDims,
  attention_projection,
  default_dims,
  leaf_fans,
)
from optax_layer_l2._masking import MaskOrFn, excluded_by_name, user_mask_per_leaf
from optax_layer_l2._multipliers import MultiplierFn, Multipliers, resolve_multipliers
from optax_layer_l2._numeric import is_real_floating
from optax_layer_l2._paths import broadcast_prefix, flatten_with_paths
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


class Skip(enum.Enum):
  """Why a leaf gets no factor (``s = 0``; a learning-rate factor of 1)."""

  NONE_LEAF = "None leaf"
  NOT_ARRAY = "not an array"
  DTYPE = "not floating"
  EMPTY = "empty"
  MASKED_OUT = "masked out"
  NAMED = "named bias or scale"
  RANK = "rank below 2"
  NOT_CONTRACTED = "not contracted with data"
  MULTIPLIER_ZERO = "multiplier 0"


class FansFrom(enum.Enum):
  """Where a leaf's fan-in and fan-out came from."""

  DIMS = "dims"
  """The user's ``dims`` (a tree of :class:`Dims`, or a callable)."""
  INFERRED = "inferred"
  """:func:`infer_dims`: the computation."""
  PATH_RULE = "path rule"
  """The default rule, which reads a Flax attention kernel by its path."""
  SHAPE_RULE = "shape rule"
  """The default rule of ``jax.nn.initializers.variance_scaling``, by shape."""


@dataclasses.dataclass(frozen=True, eq=False)
class LeafRule:
  """What decides each leaf's factor, checked and resolved once, when a transformation is built.

  Attributes:
    scaling: the scaling as given (a name or a callable), for reports.
    scaling_fn: the function ``c(info)`` behind it.
    argname: the scaling's argument, as errors name it (``scaling`` or
      ``lr_scaling``).
    mask: the user's mask, or ``None`` for the default.
    dims: the ``dims`` option, or ``None`` for the default rule.
    multiplier_fn: the multipliers, as a callable ``(path, leaf) -> float``.
    base: the base model's shapes, or ``None``.
  """

  scaling: str | ScalingFn
  scaling_fn: ScalingFn
  argname: str
  mask: MaskOrFn | None
  dims: DimsOption | None
  multiplier_fn: MultiplierFn
  base: Any | None

  @classmethod
  def build(
    cls,
    scaling: str | ScalingFn,
    *,
    names: Mapping[str, ScalingFn] = SCALINGS,
    argname: str = "scaling",
    mask: MaskOrFn | None = None,
    dims: DimsOption | None = None,
    multipliers: Multipliers | None = None,
    base: Any | None = None,
  ) -> "LeafRule":
    """Checks the arguments (raising on a bad name or multiplier now) and keeps the base's shapes.

    ``names`` are the named scalings ``scaling`` may be (:data:`SCALINGS` or
    :data:`LR_SCALINGS`).
    """
    return cls(
      scaling=scaling,
      scaling_fn=resolve_scaling(scaling, names, argname),
      argname=argname,
      mask=mask,
      dims=dims,
      multiplier_fn=resolve_multipliers(multipliers),
      base=shapes_of(base),  # the base model's arrays are not kept alive
    )

  @classmethod
  def for_rates(
    cls,
    lr_scaling: str | ScalingFn,
    *,
    base: Any,
    mask: MaskOrFn | None = None,
    dims: DimsOption | None = None,
    multipliers: Multipliers | None = None,
    who: str = "`lr_scaling`",
  ) -> "LeafRule":
    """The rule of learning-rate factors (:data:`LR_SCALINGS`); raises now without ``base``.

    ``who`` is what the missing-base error says needs it.
    """
    rule = cls.build(
      lr_scaling,
      names=LR_SCALINGS,
      argname="lr_scaling",
      mask=mask,
      dims=dims,
      multipliers=multipliers,
      base=base,
    )
    require_base(base, who)
    return rule


@dataclasses.dataclass(frozen=True)
class LeafDecision:
  """The decision for one leaf.

  Attributes:
    path: the leaf's path.
    shape: its shape, or ``None`` for a leaf that is not an array.
    fans: its fans, where they were needed to decide.
    fans_from: where the fans came from, where they were computed.
    factor: ``c(leaf)`` from the scaling, divided by ``c(base leaf)`` when
      there is a base (0 when not selected).
    multiplier: the leaf's multiplier (0 when not selected).
    scale: ``s = factor * multiplier``; 0 means the leaf is left untouched.
    skip: why the leaf is not selected, or ``None`` when it is.
    reason: the same, in words for a report (``"named 'bias'"``).
    base_shape: the shape of the base model's leaf, where a base was given
      and the leaf is selected.
    base_fans: the fans of that base leaf, likewise.
    dims: the leaf's :class:`Dims`, where its fans were computed.
  """

  path: str
  shape: tuple[int, ...] | None
  fans: Fans | None
  fans_from: FansFrom | None
  factor: float
  multiplier: float
  scale: float
  skip: Skip | None
  reason: str | None
  base_shape: tuple[int, ...] | None = None
  base_fans: Fans | None = None
  dims: Dims | None = None

  @property
  def selected(self) -> bool:
    return self.skip is None

  @property
  def rate_factor(self) -> float:
    """The learning-rate factor ``r`` this decision gives, for a rule of rate scalings.

    A selected leaf gets ``c(leaf) / c(base leaf) * multiplier`` (so 0 with a
    multiplier of 0: the leaf is frozen); every other leaf, 1.
    """
    if self.selected:
      return self.scale
    if self.skip is Skip.MULTIPLIER_ZERO:
      return 0.0
    return 1.0


class Decisions(NamedTuple):
  """One :class:`LeafDecision` a leaf of the params (``None`` counts as a leaf), and their tree."""

  leaves: tuple[LeafDecision, ...]
  treedef: jax.tree_util.PyTreeDef

  def tree(self, values: Sequence[Any]) -> Any:
    """``values``, one a leaf, in the params' tree."""
    return jax.tree.unflatten(self.treedef, values)

  def scales(self) -> Any:
    """The tree of ``s``, with ``None`` where the params hold ``None``."""
    return self.tree([None if d.skip is Skip.NONE_LEAF else d.scale for d in self.leaves])

  def rate_factors(self) -> Any:
    """The tree of learning-rate factors ``r``, with ``None`` where the params hold ``None``."""
    return self.tree([None if d.skip is Skip.NONE_LEAF else d.rate_factor for d in self.leaves])


def _skipped(
  path: str,
  shape: tuple[int, ...] | None,
  skip: Skip,
  reason: str,
  fans: Fans | None = None,
  fans_from: FansFrom | None = None,
) -> LeafDecision:
  return LeafDecision(path, shape, fans, fans_from, 0.0, 0.0, 0.0, skip, reason)


def is_dims_function(dims: Any) -> bool:
  """Whether ``dims`` is a rule ``(path, leaf) -> Dims | None`` rather than a tree of ``Dims``.

  A callable pytree, such as an Equinox module holding :class:`Dims` (what
  :func:`infer_dims` returns for an Equinox model), is a tree.
  """
  if isinstance(dims, Dims) or not callable(dims):
    return False
  leaves = jax.tree.leaves(dims, is_leaf=lambda x: x is None or isinstance(x, Dims))
  return len(leaves) == 1 and leaves[0] is dims


class _ChosenDims(NamedTuple):
  per_leaf: list[Dims | None]
  inferred: bool  # the tree came from `infer_dims`: its `None` means "not contracted"
  why_none: Mapping[str, str]  # why `infer_dims` gave `None`, by path


def _chosen_dims(
  dims: DimsOption | None, params: Any, paths: Sequence[str], leaves: Sequence[Any]
) -> _ChosenDims:
  if dims is None:
    return _ChosenDims([None] * len(leaves), False, {})
  if is_dims_function(dims):
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
    return _ChosenDims(chosen, False, {})
  values = broadcast_prefix(
    dims, params, argname="dims", is_prefix_leaf=lambda x: isinstance(x, Dims)
  )
  for path, value in zip(paths, values, strict=True):
    if value is not None and not isinstance(value, Dims):
      raise TypeError(
        f"`dims` must hold `Dims` or `None`; for leaf {path!r} it holds "
        f"{_short(value)}. Pass `ll2.infer_dims(...)`, a tree of `ll2.Dims`, or a "
        "callable `(path, leaf) -> Dims | None`."
      )
  inferred = [value for value in values if isinstance(value, InferredDims)]
  why_none: dict[str, str] = {}
  for value in inferred:
    why_none.update(value.why_none)
  return _ChosenDims(values, bool(inferred), why_none)


def _short(value: Any, limit: int = 80) -> str:
  """``value``'s repr, or its type and shape when that would be long (an array)."""
  if hasattr(value, "shape") and hasattr(value, "dtype"):
    return f"a {type(value).__name__} of shape {tuple(value.shape)}"
  text = repr(value)
  return text if len(text) <= limit else text[: limit - 3] + "..."


def _default_fans_from(path: str, shape: tuple[int, ...], dims: Dims) -> FansFrom:
  layer_rank = dims.layer_rank(len(shape))
  if attention_projection(path, layer_rank) is None:
    return FansFrom.SHAPE_RULE
  return FansFrom.PATH_RULE


def decide(rule: LeafRule, params: Any) -> Decisions:
  """One :class:`LeafDecision` per leaf of ``params``, by ``rule``."""
  paths, leaves, treedef = flatten_with_paths(params)
  chosen = _chosen_dims(rule.dims, params, paths, leaves)
  selected = None if rule.mask is None else user_mask_per_leaf(rule.mask, params, paths)
  if rule.base is not None:
    base, base_at = base_leaves(rule.base, params, paths)
    if is_dims_function(rule.dims):
      base_paths = flatten_with_paths(base)[0]
      base_dims = _chosen_dims(rule.dims, base, base_paths, base_at).per_leaf
    else:
      # A tree of `Dims` is written for `params`; the base leaf at a path gets its entry.
      base_dims = chosen.per_leaf

  decisions = []
  for i, (path, leaf) in enumerate(zip(paths, leaves, strict=True)):
    if leaf is None:
      decisions.append(_skipped(path, None, Skip.NONE_LEAF, "None leaf"))
      continue
    if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
      why = f"not an array ({type(leaf).__name__})"
      decisions.append(_skipped(path, None, Skip.NOT_ARRAY, why))
      continue
    shape = tuple(int(size) for size in leaf.shape)
    if not is_real_floating(leaf):
      decisions.append(_skipped(path, shape, Skip.DTYPE, f"dtype {leaf.dtype}"))
      continue
    if 0 in shape:
      decisions.append(_skipped(path, shape, Skip.EMPTY, "empty"))
      continue
    if selected is not None and not selected[i]:
      decisions.append(_skipped(path, shape, Skip.MASKED_OUT, "masked out"))
      continue
    leaf_dims = chosen.per_leaf[i]
    if leaf_dims is None:
      leaf_dims = default_dims(path, shape)
      fans_from = _default_fans_from(path, shape, leaf_dims)
    elif isinstance(leaf_dims, InferredDims):
      fans_from = FansFrom.INFERRED
    else:
      fans_from = FansFrom.DIMS
    if selected is None:
      skipped = _default_mask(path, shape, leaf_dims, fans_from, chosen)
      if skipped is not None:
        decisions.append(skipped)
        continue
    fans = leaf_fans(path, shape, leaf_dims)
    multiplier = rule.multiplier_fn(path, leaf)
    if multiplier == 0.0:
      decisions.append(_skipped(path, shape, Skip.MULTIPLIER_ZERO, "multiplier 0", fans, fans_from))
      continue
    info = LeafInfo.of(path, shape, fans, leaf_dims)
    factor = checked_factor(rule.scaling_fn(info), rule.argname, path)
    found_base_shape = found_base_fans = None
    if rule.base is not None:
      found_base_shape = base_shape(path, shape, base_at[i])
      found_base_fans = leaf_fans(path, found_base_shape, base_dims[i] or leaf_dims)
      base_factor = checked_factor(
        rule.scaling_fn(LeafInfo.of(path, found_base_shape, found_base_fans, leaf_dims)),
        rule.argname,
        f"{path} (in `base`)",
      )
      factor = relative(factor, base_factor, path, found_base_shape, rule.argname)
    decisions.append(
      LeafDecision(
        path,
        shape,
        fans,
        fans_from,
        factor,
        multiplier,
        scale=factor * multiplier,
        skip=None,
        reason=None,
        base_shape=found_base_shape,
        base_fans=found_base_fans,
        dims=leaf_dims,
      )
    )
  return Decisions(tuple(decisions), treedef)


def _default_mask(
  path: str, shape: tuple[int, ...], dims: Dims, fans_from: FansFrom, chosen: _ChosenDims
) -> LeafDecision | None:
  """The decision of the default mask for a floating leaf it skips, or ``None`` if it selects it.

  With inferred ``dims`` the computation decides: a leaf it contracts with
  data is selected, and so is one whose entry the user replaced with a
  ``Dims``; every other one is skipped. Otherwise a leaf named ``bias`` or
  ``scale`` is skipped, and so is one of rank below 2 per layer.
  """
  if chosen.inferred:
    if fans_from in (FansFrom.INFERRED, FansFrom.DIMS):
      return None
    why = chosen.why_none.get(path, "not contracted with data by fn")
    return _skipped(path, shape, Skip.NOT_CONTRACTED, why)
  named = excluded_by_name(path)
  if named is not None:
    # A `Dims` meant for kernels need not fit the biases it also covers.
    fans = None if fans_from is FansFrom.DIMS else leaf_fans(path, shape, dims)
    return _skipped(path, shape, Skip.NAMED, named, fans, None if fans is None else fans_from)
  layer_rank = dims.layer_rank(len(shape))
  if layer_rank < 2:
    fans = None if fans_from is FansFrom.DIMS else leaf_fans(path, shape, dims)
    why = f"rank {layer_rank}"
    return _skipped(path, shape, Skip.RANK, why, fans, None if fans is None else fans_from)
  return None
