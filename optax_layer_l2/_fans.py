"""Fan-in, fan-out and element count of a leaf, and which axes are which."""

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, TypeAlias, cast

AxesLike: TypeAlias = int | Sequence[int]

# Flax attention projections (linen `MultiHeadDotProductAttention`,
# `nnx.MultiHeadAttention`): `query`/`key`/`value` kernels are
# `(features, heads, head_dim)`, `out` kernels `(heads, head_dim, features)`.
_PROJECTION_IN = frozenset({"query", "key", "value"})
_PROJECTION_OUT = frozenset({"out"})


def _as_axes(axes: AxesLike, argument: str) -> tuple[int, ...]:
  """``axes`` as a tuple of ints; ``argument`` spells where they were given, e.g.
  ``Dims(in_axes=...)``, for the error."""
  message = f"`{argument}` must be an int or a sequence of ints, got {axes!r}."
  if isinstance(axes, bool):
    raise TypeError(message)
  if isinstance(axes, int):
    return (axes,)
  try:
    axes = tuple(axes)
  except TypeError:
    raise TypeError(message) from None
  for axis in axes:
    if isinstance(axis, bool) or not isinstance(axis, int):
      raise TypeError(message)
  return axes


@dataclasses.dataclass(frozen=True, eq=False)
class Dims:
  """Which axes of a leaf are fan-in, fan-out and stacked-layer axes.

  The words are those of :func:`jax.nn.initializers.variance_scaling`: every
  axis that is in none of the three groups is a receptive-field axis and
  multiplies both fans; ``batch_axes`` (layers stacked by ``nn.scan`` or
  ``nnx.vmap``) count in neither fan nor in the element count, so every layer
  of a stack gets the factor it would get alone.

  Attributes:
    in_axes: the fan-in axis or axes (negative counts from the end).
    out_axes: the fan-out axis or axes.
    batch_axes: the stacked-layer axis or axes.

  Examples:
    >>> import optax_layer_l2 as ll2
    >>> ll2.fans((8, 3, 3, 16, 32), ll2.Dims(in_axes=-2, out_axes=-1, batch_axes=0))
    Fans(fan_in=144, fan_out=288, numel=4608)
  """

  in_axes: AxesLike
  out_axes: AxesLike
  batch_axes: AxesLike = ()

  def __post_init__(self) -> None:
    for name in ("in_axes", "out_axes", "batch_axes"):
      object.__setattr__(self, name, _as_axes(getattr(self, name), f"Dims({name}=...)"))

  def layer_rank(self, rank: int) -> int:
    """The rank of one layer of a leaf of ``rank``: its axes less the batch axes."""
    return rank - len(cast(tuple[int, ...], self.batch_axes))

  def _axes(self) -> tuple[Any, Any, Any]:
    return (self.in_axes, self.out_axes, self.batch_axes)

  def __eq__(self, other: object) -> bool:
    # `Dims` are equal when they name the same axes, however they were obtained.
    if not isinstance(other, Dims):
      return NotImplemented
    return self._axes() == other._axes()

  def __hash__(self) -> int:
    return hash(self._axes())


@dataclasses.dataclass(frozen=True, eq=False)
class InferredDims(Dims):
  """:class:`Dims` that :func:`infer_dims` read from a computation.

  They act as any ``Dims``; the report says the fans were inferred, and how
  the leaf was used.

  Attributes:
    use: how the computation used the leaf, e.g. ``"`dot_general` at model.py:12"``.
    why_none: for each leaf of the same tree that holds ``None``, why (``"not
      used by fn"``, ``"used elementwise with data in `add`"``), so that a
      report can say so.
  """

  use: str = ""
  why_none: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False, repr=False)


class Fans(NamedTuple):
  """Fan-in, fan-out and element count of one layer (batch axes excluded).

  Attributes:
    fan_in: the fan-in axes' sizes times the receptive field.
    fan_out: the fan-out axes' sizes times the receptive field.
    numel: the layer's element count.

  Examples:
    >>> import optax_layer_l2 as ll2
    >>> f = ll2.fans((3, 3, 64, 128))  # a conv kernel, HWIO
    >>> f.fan_in, f.fan_out, f.numel
    (576, 1152, 73728)
  """

  fan_in: int
  fan_out: int
  numel: int


def _normalise(dims: Dims, shape: tuple[int, ...], where: str) -> tuple[tuple[int, ...], ...]:
  """The three axis groups of ``dims`` as non-negative axes of ``shape``."""
  rank = len(shape)
  groups = []
  seen: dict[int, str] = {}
  for name in ("in_axes", "out_axes", "batch_axes"):
    group = []
    for axis in getattr(dims, name):
      if not -rank <= axis < rank:
        raise ValueError(
          f"`dims`{where}: {name} axis {axis} is out of range for a leaf of shape {shape}."
        )
      axis %= rank
      if axis in seen:
        raise ValueError(
          f"`dims`{where}: axis {axis} of shape {shape} is named twice "
          f"(in {seen[axis]} and {name}); the groups must not overlap."
        )
      seen[axis] = name
      group.append(axis)
    groups.append(tuple(group))
  return tuple(groups)


def default_dims(path: str, shape: Sequence[int], batch_axes: tuple[int, ...] = ()) -> Dims:
  """The axes the default rule assigns to a leaf at ``path`` with ``shape``.

  The rule of ``jax.nn.initializers.variance_scaling`` on the axes that are not
  ``batch_axes``: the second-to-last is fan-in, the last is fan-out, the rest
  are receptive field. A rank-1 leaf has fan-in 1 and fan-out its size; a
  scalar has both 1. Flax attention kernels are recognised by path:
  ``query``/``key``/``value`` kernels ``(features, heads, head_dim)`` have
  fan-in ``features`` and fan-out ``heads * head_dim``; ``out`` kernels
  ``(heads, head_dim, features)`` the reverse. ``batch_axes`` are ints
  already (``stacked`` checks their type); their range is checked here.
  """
  rank = len(shape)
  batch_list = []
  for axis in batch_axes:
    if not -rank <= axis < rank:
      raise ValueError(
        f"`dims` for leaf {path!r}: batch_axes axis {axis} is out of range "
        f"for a leaf of shape {tuple(shape)}."
      )
    batch_list.append(axis % rank)
  batch = tuple(batch_list)
  rest = [axis for axis in range(rank) if axis not in batch]
  if len(rest) == 0:
    return Dims((), (), batch)
  if len(rest) == 1:
    return Dims((), (rest[0],), batch)
  projection = attention_projection(path, len(rest))
  if projection == "in":
    return Dims((rest[0],), (rest[1], rest[2]), batch)
  if projection == "out":
    return Dims((rest[0], rest[1]), (rest[2],), batch)
  return Dims((rest[-2],), (rest[-1],), batch)


def attention_projection(path: str, layer_rank: int) -> str | None:
  """``"in"`` or ``"out"`` for a Flax attention kernel the path rule reads, else ``None``.

  A rank-3 ``kernel`` of a layer named ``query``, ``key`` or ``value`` is an
  input projection ``(features, heads, head_dim)``; one of a layer named
  ``out``, the output projection ``(heads, head_dim, features)``.
  """
  *_, layer, name = ["", *path.split("/")]  # the last two parts of the path
  if layer_rank != 3 or name != "kernel":
    return None
  if layer in _PROJECTION_IN:
    return "in"
  if layer in _PROJECTION_OUT:
    return "out"
  return None


def _prod(shape: tuple[int, ...], axes: tuple[int, ...]) -> int:
  return math.prod(shape[axis] for axis in axes)


def leaf_fans(path: str, shape: Sequence[int], dims: Dims | None) -> Fans:
  """Fans of the leaf at ``path``: by ``dims``, or by the default rule."""
  shape = tuple(int(size) for size in shape)
  if dims is None:
    dims = default_dims(path, shape)
  where = f" for leaf {path!r}" if path else ""
  in_axes, out_axes, batch_axes = _normalise(dims, shape, where)
  field_axes = tuple(
    axis for axis in range(len(shape)) if axis not in in_axes + out_axes + batch_axes
  )
  receptive_field = _prod(shape, field_axes)
  fan_in = _prod(shape, in_axes) * receptive_field
  fan_out = _prod(shape, out_axes) * receptive_field
  numel = _prod(shape, in_axes + out_axes + field_axes)
  return Fans(fan_in=fan_in, fan_out=fan_out, numel=numel)


def fans(shape: Sequence[int], dims: Dims | None = None) -> Fans:
  """Fan-in, fan-out and element count of a weight of ``shape``.

  Args:
    shape: the leaf's shape.
    dims: which axes are fan-in, fan-out and stacked layers; by default the
      second-to-last axis is fan-in, the last fan-out, and every other axis is
      receptive field (as in ``jax.nn.initializers.variance_scaling``). A
      rank-1 shape has fan-in 1 and fan-out its size; a scalar has both 1.

  Returns:
    ``Fans(fan_in, fan_out, numel)``; ``numel`` leaves out ``batch_axes``.

  Examples:
    >>> import optax_layer_l2 as ll2
    >>> ll2.fans((784, 256))
    Fans(fan_in=784, fan_out=256, numel=200704)
    >>> ll2.fans((3, 3, 64, 128))  # a conv kernel, HWIO
    Fans(fan_in=576, fan_out=1152, numel=73728)
  """
  return leaf_fans("", shape, dims)


DimsRule: TypeAlias = Callable[[str, Any], Dims | None]


def _never_decayed(path: str) -> bool:
  return path.rsplit("/", 1)[-1] in ("bias", "scale")


def stacked(batch_axes: AxesLike = 0, where: str | None = None) -> DimsRule:
  """A ``dims`` rule for layers stacked along ``batch_axes``.

  Layers stacked by ``nn.scan`` or ``nnx.vmap`` carry a leading layer axis.
  This rule marks it as a batch axis and applies the default rule (attention
  kernels included) to the remaining axes, so each layer of the stack gets the
  factor it would get on its own.

  Args:
    batch_axes: the stacked-layer axis or axes.
    where: a regular expression; only leaves whose path it matches (with
      ``re.search``) are treated as stacked. Default: every leaf of rank
      above the number of ``batch_axes``; then a leaf of exactly one more
      axis (a matrix outside the stack, or a stack of vectors?) is a
      ``ValueError`` unless it is named ``bias`` or ``scale``.

  Returns:
    A callable ``(path, leaf) -> Dims | None`` to pass as ``dims``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax_layer_l2 as ll2
    >>> params = {"layers": {"kernel": jnp.zeros((6, 64, 128))},
    ...           "head": {"kernel": jnp.zeros((64, 10))}}
    >>> s = ll2.scales(params, "numel", dims=ll2.stacked(0, where="layers"))
    >>> s["layers"]["kernel"] == 1 / (64 * 128), s["head"]["kernel"] == 1 / 640
    (True, True)
  """
  axes = _as_axes(batch_axes, "stacked(batch_axes=...)")
  pattern = None if where is None else re.compile(where)

  def rule(path: str, leaf: Any) -> Dims | None:
    shape = tuple(leaf.shape)
    if pattern is not None and not pattern.search(path):
      return None
    if pattern is None and len(shape) <= len(axes):
      return None
    if pattern is None and len(shape) == len(axes) + 1 and not _never_decayed(path):
      # A stack of vectors and one matrix outside the stack look alike; guessing the
      # stack would silently stop decaying an embedding or a readout kernel.
      raise ValueError(
        f"`stacked({list(axes)})` cannot tell whether leaf {path!r} of shape {shape} is one "
        f"layer or a stack of {math.prod(shape[a] for a in axes)} vectors; give "
        "`stacked(..., where=...)` a regular expression for the stacked layers' paths, "
        "or use `ll2.infer_dims`, which reads the stacking from the computation."
      )
    return default_dims(path, shape, axes)

  return rule
