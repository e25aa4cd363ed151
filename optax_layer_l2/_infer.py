"""``infer_dims``: each leaf's fan-in and fan-out, read from the computation that uses it.

The shape of a leaf cannot tell a ``Conv1D`` kernel ``(k, in, out)`` from a
``DenseGeneral`` kernel ``(d, heads, head_dim)``; the computation can. This
module traces a function abstractly (``jax.make_jaxpr``: nothing is
computed) and walks its equations once, as JAX's guide to writing jaxpr
interpreters does, following every leaf of the params:

* through casts, reshapes (merged or split axes map back to the leaf's own
  axes), transposes, broadcasts, slices, concatenations, sharding
  constraints and elementwise arithmetic with constants or other
  parameters (a weight norm, a mask, a multiplier),
* into nested ``jit``, ``checkpoint``, ``custom_jvp``, ``custom_vjp``,
  ``shard_map`` (generically, by the parameter that carries the
  sub-computation), ``scan`` (an axis a scan slices is a stacked-layer
  axis), ``while`` and ``cond``,
* to the operation that consumes it together with data: a ``dot_general``
  (the axes contracted against data are fan-in, its batch axes stacked
  layers, the free axes fan-out), a convolution (its own dimension numbers
  say which kernel axes are input and output features; the spatial ones
  are receptive field), or a lookup (a gather by data-dependent indices:
  the indexed axis is fan-in).

A layer picked out of a stack by index (``w[i]``, static or in a loop) is
a stacked layer, as in a scan. A product of two parameters (a LoRA delta
``A @ B``, merged into the weight or not) reads as the two layers applied
in turn. The axes of data that a kernel's free axes made are carried on: a
first ensemble kernel vmapped over a shared input leaves its member axis
free, and the next kernel's batch axis, met there, says it is stacked.

"Data" is everything that comes from the function's other arguments, or
from no argument at all (a constant). A leaf that meets data only
elementwise (a bias, a norm scale) is not contracted. An operation the rules
do not know gives a conservative answer: the leaves it reads are not
contracted there, and the reason names it.
"""

import dataclasses
import itertools
import types
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, TypeAlias

import jax
import numpy as np

try:  # the public names of JAX's jaxpr types, from jax 0.4.36
  from jax.extend.core import ClosedJaxpr, Jaxpr, Literal
except ImportError:  # jax 0.4.35
  from jax.core import ClosedJaxpr, Jaxpr, Literal  # type: ignore[attr-defined,no-redef]

from optax_layer_l2._fans import Dims, InferredDims
from optax_layer_l2._paths import flatten_with_paths, is_none

# ---------------------------------------------------------------------------
# What is known of each value of the computation.


class Origin(NamedTuple):
  """How a value's axes derive from one leaf's axes.

  Attributes:
    axes: for each axis of the value, the leaf's axes it comes from.
    sliced: the leaf's axes that were indexed away on the way (a scan over
      stacked layers, ``w[i]``): stacked-layer axes.
    paired: the leaf's axes contracted with another parameter on the way (a
      LoRA delta ``A @ B``): fan-in where the leaf meets data only through
      the other factor, fan-out where it meets data itself, as in
      ``(x @ A) @ B``.
    mixed: the leaf reached this value in two arrangements (``w + w.T``, a
      loop that transposes it each turn): no one reading of its axes.
  """

  axes: tuple[frozenset[int], ...]
  sliced: frozenset[int]
  paired: frozenset[int] = frozenset()
  mixed: bool = False


Carried: TypeAlias = tuple[frozenset[tuple[int, int]], ...]


@dataclasses.dataclass(frozen=True)
class Info:
  """What the walk knows of one value.

  Attributes:
    origins: the leaves this value is a rearrangement of, by leaf index.
    data: whether it depends on data (the function's other arguments).
    carried: for a value computed from data, for each of its axes, the
      ``(leaf index, leaf axis)`` pairs it carries: the free axes of a leaf
      that a contraction with data put there (empty when none does). An
      ensemble's first kernel ``(members, in, out)``, vmapped over an input
      that all members share, leaves its member axis free; the next
      layer's kernel, stacked alike, meets that axis as a batch axis of its
      own contraction, which tells that it is a stacked-layer axis.
  """

  origins: types.MappingProxyType[int, Origin]
  data: bool
  carried: Carried = ()


_NO_ORIGINS: types.MappingProxyType[int, Origin] = types.MappingProxyType({})
CONSTANT = Info(_NO_ORIGINS, False)
DATA = Info(_NO_ORIGINS, True)


def _info(origins: dict[int, Origin], data: bool, carried: Carried = ()) -> Info:
  if not any(carried):
    carried = ()
  if not (origins or carried):
    return DATA if data else CONSTANT
  return Info(types.MappingProxyType(origins), data, carried)


def _merge_origin(a: Origin | None, b: Origin) -> Origin:
  """One leaf's origin in a value that may be either: the same, or ``mixed``.

  A mixed origin holds the union of both, so that merging only ever adds
  (a loop's carry grows to a fixed point).
  """
  if a is None or a == b:
    return b
  axes = tuple(x | y for x, y in zip(a.axes, b.axes, strict=True))
  return Origin(axes, a.sliced | b.sliced, a.paired | b.paired, mixed=True)


def merge(infos: Iterable[Info]) -> Info:
  """One value that may be any of ``infos`` (same shape): the union of what each is."""
  infos = tuple(infos)
  data = any(info.data for info in infos)
  full = [info for info in infos if info.origins or info.carried]
  if len(full) == 1 and full[0].data == data:  # the common case, and the walk's hot path
    return full[0]
  origins: dict[int, Origin] = {}
  carried: Carried = ()
  for info in full:
    for leaf, origin in info.origins.items():
      origins[leaf] = _merge_origin(origins.get(leaf), origin)
    if info.carried:
      carried = tuple(map(frozenset.union, carried, info.carried)) if carried else info.carried
  return _info(origins, data, carried)


def remapped(info: Info, sources: Sequence[Sequence[int]], sliced: Iterable[int] = ()) -> Info:
  """``info`` for a value whose axis ``j`` comes from the axes ``sources[j]`` of this one.

  ``sliced`` are axes of this value indexed away: their leaf axes become
  stacked-layer axes.
  """
  sliced = tuple(sliced)
  if not (info.origins or info.carried) or (not sliced and _is_identity(sources)):
    return info
  origins = {}
  for leaf, origin in info.origins.items():
    axes = tuple(frozenset().union(*(origin.axes[i] for i in group)) for group in sources)
    away = frozenset().union(*(origin.axes[i] for i in sliced))
    origins[leaf] = origin._replace(axes=axes, sliced=origin.sliced | away)
  carried = info.carried
  if carried:
    carried = tuple(frozenset().union(*(carried[i] for i in group)) for group in sources)
  return _info(origins, info.data, carried)


def _is_identity(sources: Sequence[Sequence[int]]) -> bool:
  return all(len(group) == 1 and group[0] == axis for axis, group in enumerate(sources))


def reshape_sources(old: Sequence[int], new: Sequence[int]) -> list[list[int]]:
  """For each axis of shape ``new``, the axes of ``old`` it is made of (size-1 axes of neither).

  Axes merged into one come from all of them; an axis split into several
  gives each piece its whole self.
  """
  sources: list[list[int]] = [[] for _ in new]
  old_axes = [axis for axis, size in enumerate(old) if size != 1]
  new_axes = [axis for axis, size in enumerate(new) if size != 1]
  i = j = 0
  while i < len(old_axes) and j < len(new_axes):
    group_old, group_new = [old_axes[i]], [new_axes[j]]
    size_old, size_new = old[old_axes[i]], new[new_axes[j]]
    i, j = i + 1, j + 1
    while size_old != size_new:
      if size_old < size_new and i < len(old_axes):
        group_old.append(old_axes[i])
        size_old *= old[old_axes[i]]
        i += 1
      elif j < len(new_axes):
        group_new.append(new_axes[j])
        size_new *= new[new_axes[j]]
        j += 1
      else:
        break
    for axis in group_new:
      sources[axis] = group_old
  return sources


# ---------------------------------------------------------------------------
# What is found out about each leaf.


@dataclasses.dataclass(frozen=True)
class Use:
  """One reading of a leaf by an operation that contracts it with data.

  The axis groups are the leaf's own axes; every axis in none of them is
  fan-out.
  """

  in_axes: frozenset[int]
  batch_axes: frozenset[int]
  field_axes: frozenset[int]
  what: str

  def describe(self, rank: int) -> str:
    out = sorted(set(range(rank)) - self.in_axes - self.batch_axes - self.field_axes)
    parts = [f"fan-in axes {sorted(self.in_axes)}", f"fan-out axes {out}"]
    if self.field_axes:
      parts.append(f"receptive-field axes {sorted(self.field_axes)}")
    if self.batch_axes:
      parts.append(f"stacked axes {sorted(self.batch_axes)}")
    return f"{self.what} ({', '.join(parts)})"


@dataclasses.dataclass
class Findings:
  """Everything the walk records, per leaf index."""

  uses: dict[int, set[Use]] = dataclasses.field(default_factory=dict)
  notes: dict[int, dict[str, None]] = dataclasses.field(default_factory=dict)  # ordered set
  read: set[int] = dataclasses.field(default_factory=set)
  stacked: dict[int, set[int]] = dataclasses.field(default_factory=dict)  # free axes seen stacked
  callers: list[Any] = dataclasses.field(default_factory=list)  # the equations walked into
  unreadable: dict[int, str] = dataclasses.field(default_factory=dict)  # whatever its uses say

  def use(self, leaf: int, use: Use) -> None:
    self.uses.setdefault(leaf, set()).add(use)

  def note(self, info: Info, why: str) -> None:
    for leaf in info.origins:
      self.notes.setdefault(leaf, {})[why] = None

  def contracted(
    self,
    operand: Info,
    what: str,
    in_axes: Iterable[int],
    batch_axes: Iterable[int] = (),
    field_axes: Iterable[int] = (),
  ) -> None:
    """Records a use of each leaf of ``operand``, contracted over the value's ``in_axes``."""
    for leaf, origin in operand.origins.items():
      if origin.mixed:
        why = f"combined with itself in another arrangement before {what}"
        self.unreadable.setdefault(leaf, why)
      else:
        self.use(leaf, _leaf_use(origin, in_axes, batch_axes, field_axes, what))


def _where(eqn: Any, findings: Findings) -> str:
  """``dot_general`` and, where JAX knows it, the line of user code that made it.

  An equation inside a function JAX itself jits (``jnp.take``) has no frame
  of user code; the call it is inside has.
  """
  name = eqn.primitive.name
  for caller in [eqn, *reversed(findings.callers)]:
    try:
      from jax._src import source_info_util  # the user-facing frame of an equation

      try:
        frame = source_info_util.user_frame(caller.source_info.traceback)
      except AttributeError:  # jax before 0.5 takes the whole source info
        frame = source_info_util.user_frame(caller.source_info)
    except Exception:  # private API: the name alone is enough
      break
    if frame is not None:
      return f"`{name}` at {frame.file_name.rsplit('/', 1)[-1]}:{frame.start_line}"
  return f"`{name}`"


def _leaf_axes(origin: Origin, axes: Iterable[int]) -> frozenset[int]:
  return frozenset().union(*(origin.axes[axis] for axis in axes))


def _record_contraction(
  findings: Findings,
  operand: Info,
  other: Info,
  eqn: Any,
  in_axes: Sequence[int],
  batch_axes: Sequence[int] = (),
  field_axes: Sequence[int] = (),
) -> None:
  """A leaf-derived ``operand`` met ``other`` in a contraction over its ``in_axes``."""
  if not operand.origins:
    return
  if operand.data:
    findings.note(operand, f"mixed with data before {_where(eqn, findings)}")
    return
  if other.origins and not other.data:
    findings.note(
      operand, f"contracted with another parameter, not with data, in {_where(eqn, findings)}"
    )
    return
  findings.contracted(operand, _where(eqn, findings), in_axes, batch_axes, field_axes)


def _leaf_use(
  origin: Origin,
  in_axes: Iterable[int],
  batch_axes: Iterable[int],
  field_axes: Iterable[int],
  what: str,
) -> Use:
  """The use of the leaf behind ``origin`` by a contraction over the value's ``in_axes``.

  A factor of a product of two parameters that meets data only through the
  other factor (``B`` in ``x @ (A @ B)``) has its paired axes as fan-in, as
  in ``(x @ A) @ B``; the factor that meets data has them as fan-out.
  """
  contracted = _leaf_axes(origin, in_axes)
  return Use(
    in_axes=contracted or origin.paired,
    batch_axes=_leaf_axes(origin, batch_axes) | origin.sliced,
    field_axes=_leaf_axes(origin, field_axes),
    what=what,
  )


# ---------------------------------------------------------------------------
# The rules, one a primitive family, in one table.

Rule = Callable[[Any, list[Info], Findings], list[Info]]
RULES: dict[str, Rule] = {}


def _rule(*names: str) -> Callable[[Rule], Rule]:
  def register(fn: Rule) -> Rule:
    for name in names:
      RULES[name] = fn
    return fn

  return register


def _shape(var: Any) -> tuple[int, ...]:
  return tuple(getattr(var.aval, "shape", ()))


@_rule(
  "convert_element_type",
  "copy",
  "copy_p",
  "reduce_precision",
  "sharding_constraint",
  "mesh_cast",
  "rev",
  "slice",
  "pad",
  "neg",
  "sign",
  "abs",
  "exp",
  "exp2",
  "log",
  "log1p",
  "expm1",
  "tanh",
  "logistic",
  "sqrt",
  "rsqrt",
  "cbrt",
  "sin",
  "cos",
  "tan",
  "erf",
  "erfc",
  "erf_inv",
  "integer_pow",
  "square",
  "floor",
  "ceil",
  "round",
  "is_finite",
  "real",
  "imag",
  "conj",
  "cumsum",
  "cumprod",
  "cummax",
  "cummin",
  "cumlogsumexp",
)
def _same_axes(eqn: Any, ins: list[Info], findings: Findings) -> list[Info]:
  """Each output axis is the first operand's axis of the same place (elementwise and alike)."""
  del findings
  rank = len(_shape(eqn.outvars[0]))
  info = ins[0]
  if eqn.primitive.name == "pad":  # the padding value joins elementwise
    info = merge([info, _scalar_part(ins[1])])
  result = remapped(info, [[axis] for axis in range(rank)])
  return [result] * len(eqn.outvars)


@_rule("pvary", "pbroadcast", "device_put", "optimization_barrier")
def _as_they_are(eqn: Any, ins: list[Info], findings: Findings) -> list[Info]:
  """Each output is its operand, placed or marked otherwise.

  ``pvary`` is what ``shard_map`` marks a replicated input with; older jax
  (0.4.35, the floor) marks it with ``pbroadcast``.
  """
  del findings
  return list(ins[: len(eqn.outvars)])


def _scalar_part(info: Info) -> Info:
  """A scalar broadcast against others contributes whether it is data, not its (no) axes."""
  return DATA if info.data else CONSTANT


@_rule(
  "add",
  "add_any",
  "sub",
  "mul",
  "div",
  "rem",
  "pow",
  "max",
  "min",
  "atan2",
  "nextafter",
  "select_n",
  "clamp",
  "and",
  "or",
  "xor",
  "eq",
  "ne",
  "lt",
  "le",
  "gt",
  "ge",
)
def _elementwise(eqn: Any, ins: list[Info], findings: Findings) -> list[Info]:
  """Arithmetic between operands of one shape (a scalar may stand for a broadcast one).

  Among parameters and constants the leaves' axes flow through (a weight
  norm, a mask); where a leaf meets data it is used elementwise, and the
  result is data.
  """
  rank = len(_shape(eqn.outvars[0]))
  aligned = [
    info if len(_shape(var)) == rank else _scalar_part(info)
    for info, var in zip(ins, eqn.invars, strict=True)
  ]
  if any(info.data for info in aligned):
    for info in aligned:
      if info.origins and not info.data:
        findings.note(info, f"used elementwise with data in {_where(eqn, findings)}")
    return [merge(_data_part(info) for info in aligned)]
  return [merge(aligned)]


def _data_part(info: Info) -> Info:
  """What a value computed from ``info`` and data keeps of it: data, and what it carries."""
  return Info(_NO_ORIGINS, info.data, info.carried) if info.carried else _scalar_part(info)


@_rule("transpose")
def _transpose(eqn: Any, ins: list[Info], findings: Findings) -> list[Info]:
  del findings
  return [remapped(ins[0], [[axis] for axis in eqn.params["permutation"]])]


def _regrouped(info: Info, old: Sequence[int], sources: Sequence[Sequence[int]]) -> Info:
  """``remapped``, where an axis of size 1 that reaches no output axis was indexed away.

  ``w[i]`` with a static ``i`` is a ``slice`` to size 1 and a ``squeeze`` (or
  ``reshape``): the axis it drops is a stacked-layer axis, as in a scan.
  """
  kept = {axis for group in sources for axis in group}
  dropped = [axis for axis, size in enumerate(old) if size == 1 and axis not in kept]
  return remapped(info, sources, sliced=dropped)


@_rule("reshape", "expand_dims")
def _reshape(eqn: Any, ins: list[Info], findings: Findings) -> list[Info]:
  del findings
  old, new = _shape(eqn.invars[0]), _shape(eqn.outvars[0])
  return [_regrouped(ins[0], old, reshape_sources(old, new))]


@_rule("squeeze")
def _squeeze(eqn: Any, ins: list[Info], findings: Findings) -> list[Info]:
  del findings
  old = _shape(eqn.invars[0])
  removed = {axis % len(old) for axis in eqn.params["dimensions"]}
  return [_regrouped(ins[0], old, [[axis] for axis in range(len(old)) if axis not in removed])]


@_rule("broadcast_in_dim")
def _broadcast_in_dim(eqn: Any, ins: list[Info], findings: Findings) -> list[Info]:
  del findings
  old = _shape(eqn.invars[0])
  placed = dict(zip(eqn.params["broadcast_dimensions"], range(len(old)), strict=True))
  sources = []
  for axis, size in enumerate(_shape(eqn.outvars[0])):
    source = placed.get(axis)
    sources.append([] if source is None or old[source] != size else [source])
  return [_regrouped(ins[0], old, sources)]


@_rule("concatenate")
def _concatenate(eqn: Any, ins: list[Info], findings: Findings) -> list[Info]:
  del findings
  rank = len(_shape(eqn.outvars[0]))
  return [merge(remapped(info, [[axis] for axis in range(rank)]) for info in ins)]


@_rule("split")
def _split(eqn: Any, ins: list[Info], findings: Findings) -> list[Info]:
  del findings
  rank = len(_shape(eqn.invars[0]))
  return [remapped(ins[0], [[axis] for axis in range(rank)])] * len(eqn.outvars)


@_rule(
  "reduce_sum",
  "reduce_max",
  "reduce_min",
  "reduce_prod",
  "reduce_and",
  "reduce_or",
  "argmax",
  "argmin",
)
def _reduce(eqn: Any, ins: list[Info], findings: Findings) -> list[Info]:
  """A reduction: its result is no longer a rearrangement of any leaf (a norm, a mean)."""
  del findings
  return [_scalar_part(merge(ins))] * len(eqn.outvars)


@_rule("dynamic_slice")
def _dynamic_slice(eqn: Any, ins: list[Info], findings: Findings) -> list[Info]:
  """``w[i]``: an axis sliced to size 1 at an index from data is a lookup, else a layer pick."""
  operand, *indices = ins
  shape = _shape(eqn.invars[0])
  sizes = eqn.params["slice_sizes"]
  by_data = [axis for axis in range(len(shape)) if sizes[axis] < shape[axis] and indices[axis].data]
  if by_data:
    _record_lookup(findings, operand, eqn, by_data)
    return [DATA]
  picked = [axis for axis in range(len(shape)) if sizes[axis] == 1 and shape[axis] != 1]
  kept = [[] if axis in picked else [axis] for axis in range(len(shape))]
  result = remapped(operand, kept, sliced=picked)
  return [merge([result, _scalar_part(merge(indices))])]


@_rule("dynamic_update_slice")
def _dynamic_update_slice(eqn: Any, ins: list[Info], findings: Findings) -> list[Info]:
  del findings
  operand, update, *indices = ins
  rank = len(_shape(eqn.outvars[0]))
  same = [[axis] for axis in range(rank)]
  if _shape(eqn.invars[1]) == _shape(eqn.invars[0]):
    return [merge([remapped(operand, same), remapped(update, same), _scalar_part(merge(indices))])]
  return [merge([remapped(operand, same), _scalar_part(merge([update, *indices]))])]


def _record_lookup(findings: Findings, operand: Info, eqn: Any, axes: Sequence[int]) -> None:
  """A lookup of a leaf-derived table by data: the indexed axes are fan-in."""
  if not operand.origins:
    return
  if operand.data:
    findings.note(operand, f"mixed with data before {_where(eqn, findings)}")
    return
  findings.contracted(operand, f"{_where(eqn, findings)}, a lookup", axes)


@_rule("gather")
def _gather(eqn: Any, ins: list[Info], findings: Findings) -> list[Info]:
  """``jnp.take``, indexing: by data, a lookup of the indexed axes; else a pick of layers."""
  operand, indices = ins
  numbers = eqn.params["dimension_numbers"]
  shape = _shape(eqn.invars[0])
  sizes = eqn.params["slice_sizes"]
  # An axis is indexed when the slice taken along it is shorter than the axis.
  indexed = [axis for axis in numbers.start_index_map if sizes[axis] < shape[axis]]
  if indices.data:
    _record_lookup(findings, operand, eqn, indexed)
    return [DATA]
  if getattr(numbers, "operand_batching_dims", ()):
    findings.note(
      operand, f"read by a batched {_where(eqn, findings)}, which infer_dims cannot follow"
    )
    return [_scalar_part(merge(ins))]
  # Constant indices pick layers: the axes sliced to one element go, the others map through.
  picked = [axis for axis in indexed if sizes[axis] == 1]
  collapsed = set(numbers.collapsed_slice_dims)
  offset_sources = [axis for axis in range(len(shape)) if axis not in collapsed]
  sources: list[list[int]] = [[] for _ in _shape(eqn.outvars[0])]
  for out_axis, axis in zip(numbers.offset_dims, offset_sources, strict=True):
    sources[out_axis] = [] if axis in picked else [axis]
  return [remapped(operand, sources, sliced=picked)]


@_rule("dot_general")
def _dot_general(eqn: Any, ins: list[Info], findings: Findings) -> list[Info]:
  """A contraction: the contracted axes of a parameter are fan-in, its batch axes stacked."""
  lhs, rhs = ins[:2]
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = eqn.params["dimension_numbers"]
  if lhs.origins and rhs.origins and not (lhs.data or rhs.data):
    return [_product(eqn, lhs, rhs, findings)]
  _record_contraction(findings, lhs, rhs, eqn, lhs_contract, lhs_batch)
  _record_contraction(findings, rhs, lhs, eqn, rhs_contract, rhs_batch)
  if lhs.data and rhs.data:  # what the axes of either carried is mixed in the output
    return [DATA]
  if lhs.data or rhs.data:
    _record_stacking(findings, lhs, rhs, lhs_batch, rhs_batch)
    _record_stacking(findings, rhs, lhs, rhs_batch, lhs_batch)
    lhs_sources, rhs_sources = _dot_sources(eqn)
    batch = len(lhs_batch)
    parts = [_carried_by_dot(lhs, lhs_sources, batch), _carried_by_dot(rhs, rhs_sources, batch)]
    return [merge(parts)]
  return [CONSTANT]


def _dot_sources(eqn: Any) -> tuple[list[list[int]], list[list[int]]]:
  """Each output axis of a ``dot_general`` (batch, lhs free, rhs free): its operands' axes."""
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = eqn.params["dimension_numbers"]
  lhs_free = [a for a in range(len(_shape(eqn.invars[0]))) if a not in (*lhs_contract, *lhs_batch)]
  rhs_free = [a for a in range(len(_shape(eqn.invars[1]))) if a not in (*rhs_contract, *rhs_batch)]
  lhs_sources = [[a] for a in lhs_batch] + [[a] for a in lhs_free] + [[] for _ in rhs_free]
  rhs_sources = [[a] for a in rhs_batch] + [[] for _ in lhs_free] + [[a] for a in rhs_free]
  return lhs_sources, rhs_sources


def _carried_by_dot(operand: Info, sources: list[list[int]], batch: int) -> Info:
  """What an operand of a contraction with data puts in the output's ``carried``.

  Data gives what its axes carried; a parameter, its free axes (the first
  ``batch`` output axes are the dot's batch axes: stacked already).
  """
  if operand.data:
    return remapped(_data_part(operand), sources)
  free: list[list[int]] = [[] for _ in sources[:batch]] + sources[batch:]
  origins = remapped(operand, free).origins.items()
  carried = tuple(
    frozenset((leaf, axis) for leaf, origin in origins for axis in origin.axes[i])
    for i in range(len(sources))
  )
  return _info({}, True, carried)


def _record_stacking(
  findings: Findings, param: Info, data: Info, param_batch: Sequence[int], data_batch: Sequence[int]
) -> None:
  """A stacked parameter's batch axis met an axis of data that a leaf's free axis carried."""
  if param.data or not param.origins or not data.carried:
    return
  for param_axis, data_axis in zip(param_batch, data_batch, strict=True):
    if any(origin.axes[param_axis] for origin in param.origins.values()):
      for leaf, axis in data.carried[data_axis]:
        findings.stacked.setdefault(leaf, set()).add(axis)


def _product(eqn: Any, lhs: Info, rhs: Info, findings: Findings) -> Info:
  """Two parameters multiplied (a merged LoRA delta, ``A @ B``): a value of both factors.

  The output's axes are the dot's batch axes, then the free axes of ``lhs``,
  then those of ``rhs``; each factor's contracted axes are ``paired``. A
  product of more than two factors, or of a leaf with itself, stands for
  none of them.
  """
  (lhs_contract, rhs_contract), _ = eqn.params["dimension_numbers"]
  where, both = _where(eqn, findings), merge([lhs, rhs])
  if lhs.origins.keys() & rhs.origins.keys():
    findings.note(both, f"multiplied by itself in {where}")
    return CONSTANT
  if any(origin.paired for origin in both.origins.values()):
    findings.note(both, f"a factor of a product of three or more parameters in {where}")
    return CONSTANT
  # The reason, if the product never meets data.
  findings.note(both, f"contracted with another parameter, not with data, in {where}")
  lhs_sources, rhs_sources = _dot_sources(eqn)
  origins = {}
  for info, sources, contract in (
    (lhs, lhs_sources, lhs_contract),
    (rhs, rhs_sources, rhs_contract),
  ):
    for leaf, origin in remapped(info, sources).origins.items():
      paired = _leaf_axes(info.origins[leaf], contract)
      origins[leaf] = origin._replace(paired=paired)
  return _info(origins, False)


@_rule("conv_general_dilated")
def _conv(eqn: Any, ins: list[Info], findings: Findings) -> list[Info]:
  """A convolution: its kernel's input-feature axis is fan-in, the spatial axes receptive field."""
  lhs, rhs = ins[:2]
  numbers = eqn.params["dimension_numbers"]
  if numbers is None:  # lax's default, NC... / OI...
    rank = len(_shape(eqn.invars[1]))
    rhs_spec = tuple(range(rank))
  else:
    rhs_spec = tuple(numbers.rhs_spec)
  out_axis, in_axis, *spatial = rhs_spec
  del out_axis
  _record_contraction(findings, rhs, lhs, eqn, [in_axis], (), spatial)
  if lhs.origins and not lhs.data:
    findings.note(lhs, f"the input, not the kernel, of {_where(eqn, findings)}")
  return [_scalar_part(merge([lhs, rhs]))]


def _opaque(eqn: Any, ins: list[Info], findings: Findings) -> list[Info]:
  """An operation with no rule: the leaves it reads are not contracted there, and it says so."""
  for info in ins:
    if info.origins:
      findings.note(info, f"read by `{eqn.primitive.name}`, which infer_dims cannot follow")
  return [_scalar_part(merge(ins))] * len(eqn.outvars)


# ---------------------------------------------------------------------------
# Sub-computations: handled once, generically, by the parameter that carries them.


def _closed(jaxpr: Any) -> tuple[Any, Sequence[Any]]:
  """The open jaxpr and its constants, from a ``ClosedJaxpr`` or a ``Jaxpr``."""
  if isinstance(jaxpr, ClosedJaxpr):
    return jaxpr.jaxpr, jaxpr.consts
  return jaxpr, ()


def _sub_jaxpr(eqn: Any) -> Any | None:
  """The one sub-computation an equation calls with its own operands, if there is one."""
  found = None
  for value in eqn.params.values():
    if isinstance(value, (ClosedJaxpr, Jaxpr)):
      jaxpr, _ = _closed(value)
      if len(jaxpr.invars) == len(eqn.invars) and len(jaxpr.outvars) == len(eqn.outvars):
        if found is not None:
          return None
        found = value
  return found


def walk(jaxpr: Any, ins: Sequence[Info], findings: Findings) -> list[Info]:
  """Walks ``jaxpr`` (open or closed) with ``ins`` for its inputs; gives its outputs' infos."""
  open_jaxpr, consts = _closed(jaxpr)
  env: dict[Any, Info] = {}
  for var in open_jaxpr.constvars:
    env[var] = CONSTANT
  del consts
  for var, info in zip(open_jaxpr.invars, ins, strict=True):
    env[var] = info

  def read(atom: Any) -> Info:
    if isinstance(atom, Literal):
      return CONSTANT
    return env[atom]

  for eqn in open_jaxpr.eqns:
    operands = [read(atom) for atom in eqn.invars]
    for info in operands:
      findings.read.update(info.origins)
    outs = _apply(eqn, operands, findings)
    for var, info in zip(eqn.outvars, outs, strict=True):
      env[var] = info
  return [read(atom) for atom in open_jaxpr.outvars]


def _apply(eqn: Any, ins: list[Info], findings: Findings) -> list[Info]:
  name = eqn.primitive.name
  if not any(info.origins or info.carried for info in ins):
    # Nothing of a leaf goes in; only whether data does matters below.
    if name in CONTROL_FLOW:
      return _inside(eqn, findings, lambda: CONTROL_FLOW[name](eqn, ins, findings))
    sub = _sub_jaxpr(eqn)
    if sub is not None:
      return _inside(eqn, findings, lambda: walk(sub, ins, findings))
    data = any(info.data for info in ins)
    return [DATA if data else CONSTANT] * len(eqn.outvars)
  if name in CONTROL_FLOW:
    return _inside(eqn, findings, lambda: CONTROL_FLOW[name](eqn, ins, findings))
  if name in RULES:
    return RULES[name](eqn, ins, findings)
  sub = _sub_jaxpr(eqn)
  if sub is not None:
    return _inside(eqn, findings, lambda: walk(sub, ins, findings))
  return _opaque(eqn, ins, findings)


def _inside(eqn: Any, findings: Findings, run: Callable[[], list[Info]]) -> list[Info]:
  """``run()``, the walk of ``eqn``'s sub-computations, with ``eqn`` as their caller."""
  findings.callers.append(eqn)
  try:
    return run()
  finally:
    findings.callers.pop()


def _sliced_by_scan(info: Info) -> Info:
  """What the body of a scan sees of a sliced input: its axis 0 is the layer axis."""
  if not (info.origins or info.carried):
    return info
  origins = {
    leaf: origin._replace(axes=origin.axes[1:], sliced=origin.sliced | origin.axes[0])
    for leaf, origin in info.origins.items()
  }
  return _info(origins, info.data, info.carried[1:])


def _stacked_by_scan(info: Info) -> Info:
  """A scan's stacked output: a new axis 0 of no leaf's."""
  if not (info.origins or info.carried):
    return info
  origins = {
    leaf: origin._replace(axes=(frozenset(), *origin.axes)) for leaf, origin in info.origins.items()
  }
  carried = (frozenset(), *info.carried) if info.carried else ()
  return _info(origins, info.data, carried)


def _loop(body: Callable[[list[Info]], list[Info]], carry: list[Info]) -> list[Info]:
  """A loop's carry: grown until the body adds nothing to it (data, or leaves' axes).

  Each turn only adds (``merge`` is a union), and there are finitely many
  leaves and axes, so the growth stops; a carry that passes a leaf on from
  slot to slot takes a turn a slot. The bound only guards against a bug.
  """
  for _ in range(_TURNS):
    grown = [merge([old, new]) for old, new in zip(carry, body(carry), strict=True)]
    if grown == carry:
      return carry
    carry = grown
  raise RuntimeError(
    f"`infer_dims`: a loop's carry still grew after {_TURNS} turns of the walk; please "
    "report this, with the function."
  )


_TURNS = 1000


def _scan(eqn: Any, ins: list[Info], findings: Findings) -> list[Info]:
  consts_count, carry_count = eqn.params["num_consts"], eqn.params["num_carry"]
  consts = ins[:consts_count]
  carry = ins[consts_count : consts_count + carry_count]
  xs = [_sliced_by_scan(info) for info in ins[consts_count + carry_count :]]
  body = eqn.params["jaxpr"]
  carry = _loop(lambda c: walk(body, [*consts, *c, *xs], findings)[:carry_count], carry)
  outs = walk(body, [*consts, *carry, *xs], findings)
  return [*outs[:carry_count], *(_stacked_by_scan(info) for info in outs[carry_count:])]


def _while(eqn: Any, ins: list[Info], findings: Findings) -> list[Info]:
  cond_count, body_count = eqn.params["cond_nconsts"], eqn.params["body_nconsts"]
  cond_consts = ins[:cond_count]
  body_consts = ins[cond_count : cond_count + body_count]
  carry = ins[cond_count + body_count :]
  body, cond = eqn.params["body_jaxpr"], eqn.params["cond_jaxpr"]
  carry = _loop(lambda c: walk(body, [*body_consts, *c], findings), carry)
  (stop,) = walk(cond, [*cond_consts, *carry], findings)
  return [merge([info, _scalar_part(stop)]) for info in carry]


def _cond(eqn: Any, ins: list[Info], findings: Findings) -> list[Info]:
  index, *operands = ins
  branches = [walk(branch, operands, findings) for branch in eqn.params["branches"]]
  return [merge([*outs, _scalar_part(index)]) for outs in zip(*branches, strict=True)]


CONTROL_FLOW: dict[str, Rule] = {"scan": _scan, "while": _while, "cond": _cond}


# ---------------------------------------------------------------------------
# The public function.


def _is_array(leaf: Any) -> bool:
  return hasattr(leaf, "shape") and hasattr(leaf, "dtype")


def _abstract(leaf: Any) -> Any:
  # JAX leaves `ShapeDtypeStruct.__init__` unannotated.
  sharding = getattr(leaf, "sharding", None)
  if not isinstance(sharding, jax.sharding.Sharding):
    sharding = None
  return jax.ShapeDtypeStruct(tuple(leaf.shape), leaf.dtype, sharding=sharding)  # type: ignore[no-untyped-call]


def _split_arrays(tree: Any) -> tuple[list[int], list[Any], Callable[[Sequence[Any]], Any]]:
  """The array leaves of ``tree`` (their indices and shapes), and a function putting them back."""
  leaves, treedef = jax.tree.flatten(tree, is_leaf=is_none)
  where = [i for i, leaf in enumerate(leaves) if _is_array(leaf)]

  def rebuild(arrays: Sequence[Any]) -> Any:
    filled = list(leaves)
    for i, array in zip(where, arrays, strict=True):
      filled[i] = array
    return jax.tree.unflatten(treedef, filled)

  return where, [_abstract(leaves[i]) for i in where], rebuild


def _dims_of(
  path: str, rank: int, uses: set[Use], stacked: Iterable[int] = ()
) -> InferredDims | str:
  """The leaf's ``Dims`` from its uses, or why they cannot be read.

  ``stacked`` are the leaf's axes that a later contraction met as stacked
  layers (an ensemble's first kernel): a free axis among them is stacked.
  """
  uses = {_with_stacked(use, frozenset(stacked), rank) for use in uses}
  readings = {(use.in_axes, use.batch_axes, use.field_axes): use for use in uses}
  if len(readings) > 1:
    first, second = sorted(readings.values(), key=_order)[:2]
    raise ValueError(
      f"`infer_dims`: leaf {path!r} is read two ways: by {first.describe(rank)} and by "
      f"{second.describe(rank)}. A leaf shared by two layers of different shapes (an "
      "embedding tied to the readout) has no one fan-in; give its `Dims` yourself: pass the "
      "leaf to `fn` as data, an argument after `params`, and add its entry to the `Dims` "
      "that `infer_dims` gives for the rest of `params`."
    )
  ((in_axes, batch_axes, field_axes),) = readings
  (use,) = readings.values()
  if in_axes & (batch_axes | field_axes) or batch_axes & field_axes:
    return f"its axes are read as two things by {use.what}"
  out_axes = set(range(rank)) - in_axes - batch_axes - field_axes
  return InferredDims(
    in_axes=tuple(sorted(in_axes)),
    out_axes=tuple(sorted(out_axes)),
    batch_axes=tuple(sorted(batch_axes)),
    use=use.what,
  )


def _order(use: Use) -> tuple[str, list[int], list[int], list[int]]:
  return (use.what, sorted(use.in_axes), sorted(use.batch_axes), sorted(use.field_axes))


def _with_stacked(use: Use, stacked: frozenset[int], rank: int) -> Use:
  free = frozenset(range(rank)) - use.in_axes - use.batch_axes - use.field_axes
  if not stacked & free:
    return use
  return dataclasses.replace(use, batch_axes=use.batch_axes | (stacked & free))


def infer_dims(fn: Callable[..., Any], params: Any, *args: Any, **kwargs: Any) -> Any:
  """Each leaf's fan-in, fan-out and stacked axes, read from the computation ``fn`` makes.

  Traces ``fn(params, *args, **kwargs)`` abstractly (``jax.make_jaxpr``;
  arrays or ``jax.ShapeDtypeStruct`` both work, nothing is computed) and
  follows each leaf of ``params`` to the operation that contracts it with
  data: a ``dot_general`` (the contracted axes are fan-in, the free ones
  fan-out, its batch axes stacked layers), a convolution (by its own
  dimension numbers: input features fan-in, output features fan-out,
  spatial axes receptive field) or a lookup (``jnp.take``, indexing, an
  embedding: the indexed axis is fan-in). Casts, reshapes, transposes,
  broadcasts, slices and nested ``jit``/``checkpoint``/``custom_jvp``/
  ``custom_vjp``/``scan``/``while``/``cond`` are followed; an axis a
  ``scan`` slices (layers stacked by ``nn.scan`` or ``nnx.scan``) is a
  stacked-layer axis.

  The result goes as it is into ``dims=`` of :func:`layer_l2`,
  :func:`layer_lr`, :func:`layer_adamw`, :func:`penalty`, :func:`scales` and
  :func:`describe`. With it, the default mask follows the computation too:
  the leaves ``fn`` contracts with data are decayed, and no other (a bias or
  norm scale of any rank or name); :func:`describe` says, per row, that the
  fans were inferred and from which operation.

  Args:
    fn: the forward pass or the loss, called as ``fn(params, *args, **kwargs)``.
    params: the parameter tree (arrays or ``jax.ShapeDtypeStruct``, or
      ``None``; for an Equinox model, ``eqx.filter(model, eqx.is_array)``).
    *args: the other arguments of ``fn`` (inputs, labels), as arrays or
      ``jax.ShapeDtypeStruct``; anything that is not an array is passed as it is.
    **kwargs: keyword arguments of ``fn``, likewise.

  Returns:
    A pytree with the structure of ``params`` holding, per leaf, the
    :class:`Dims` (an ``InferredDims``, which also records how the leaf was
    used) that the computation implies, or ``None`` for a leaf that ``fn``
    never contracts with data.

  Raises:
    ValueError: a leaf read two ways (an embedding tied to the readout),
      naming the leaf and both uses; a ``fn`` that contracts no leaf of
      ``params`` with data.
    TypeError: a leaf of ``params`` that is neither an array nor a shape
      (nor ``None``), naming it. Errors raised by ``fn`` itself come through
      as they are, with a note saying which call failed.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import optax_layer_l2 as ll2
    >>> params = {"query": jnp.zeros((64, 8, 16)), "bias": jnp.zeros((8, 16))}
    >>> def attend(params, x):  # a DenseGeneral-style projection: d_model -> (heads, head_dim)
    ...   return jnp.einsum("btd,dnh->btnh", x, params["query"]) + params["bias"]
    >>> dims = ll2.infer_dims(attend, params, jax.ShapeDtypeStruct((2, 5, 64), jnp.float32))
    >>> dims["query"] == ll2.Dims(in_axes=0, out_axes=(1, 2)), dims["bias"]
    (True, None)
    >>> ll2.fans(params["query"].shape, dims["query"])  # not fan-in 512, as from the shape
    Fans(fan_in=64, fan_out=128, numel=8192)
  """
  paths, leaves, treedef = flatten_with_paths(params)
  for path, leaf in zip(paths, leaves, strict=True):
    if leaf is not None and not _is_array(leaf):
      raise TypeError(
        f"`infer_dims`: `params` leaf {path!r} is {_kind(leaf)}; each leaf must be an array "
        "or a `jax.ShapeDtypeStruct` (or `None`). For an Equinox model, pass "
        "`eqx.filter(model, eqx.is_array)` and `eqx.combine` it with the rest inside `fn`."
      )
  param_where, param_shapes, rebuild_params = _split_arrays(params)
  _, data_shapes, rebuild_data = _split_arrays((args, kwargs))

  def traced(param_arrays: Sequence[Any], data_arrays: Sequence[Any]) -> Any:
    call_args, call_kwargs = rebuild_data(data_arrays)
    return fn(rebuild_params(param_arrays), *call_args, **call_kwargs)

  try:
    closed = jax.make_jaxpr(traced)(param_shapes, data_shapes)
  except Exception as error:
    name = getattr(fn, "__qualname__", getattr(fn, "__name__", type(fn).__name__))
    error.add_note(f"(raised while `infer_dims` traced `{name}(params, *args, **kwargs)`)")
    raise
  ins = [_leaf_info(i, shape) for i, shape in enumerate(param_shapes)]
  ins += [DATA] * len(data_shapes)
  findings = Findings()
  walk(closed, ins, findings)
  return _result(paths, leaves, treedef, param_where, findings)


def _kind(leaf: Any) -> str:
  """``float 0.1``, or the type alone where the repr would say little (a function)."""
  if isinstance(leaf, (bool, int, float, complex, str, np.generic)):
    return f"{type(leaf).__name__} {leaf!r}"
  return f"a {type(leaf).__name__}"


def _leaf_info(index: int, shape: Any) -> Info:
  axes = tuple(frozenset({axis}) for axis in range(len(shape.shape)))
  return _info({index: Origin(axes, frozenset())}, False)


def _result(
  paths: Sequence[str],
  leaves: Sequence[Any],
  treedef: Any,
  param_where: Sequence[int],
  findings: Findings,
) -> Any:
  found: list[Any] = [None] * len(leaves)
  why_none: dict[str, str] = {}
  for index, position in enumerate(param_where):
    path, rank = paths[position], len(leaves[position].shape)
    uses = findings.uses.get(index)
    if index in findings.unreadable:
      why_none[path] = findings.unreadable[index]
    elif uses:
      dims = _dims_of(path, rank, uses, findings.stacked.get(index, ()))
      if isinstance(dims, InferredDims):
        found[position] = dims
        continue
      why_none[path] = dims
    elif index not in findings.read:
      why_none[path] = "not used by fn"
    else:
      notes = list(findings.notes.get(index, {}))
      why_none[path] = notes[0] if notes else "not contracted with data by fn"
  if not any(found):
    raise ValueError(
      "`infer_dims`: `fn` contracts no leaf of `params` with data, so no fans can be read "
      f"from it ({_summary(why_none)}). Check that `fn` is called as `fn(params, *args)` "
      "and uses the params it is given."
    )
  reasons = types.MappingProxyType(why_none)
  found = [
    dataclasses.replace(dims, why_none=reasons) if isinstance(dims, InferredDims) else dims
    for dims in found
  ]
  return _unboxed(jax.tree.unflatten(treedef, found))


_VALUE = jax.tree_util.GetAttrKey("value")


def _is_dims_or_none(x: Any) -> bool:
  return x is None or isinstance(x, Dims)


def _is_box(x: Any) -> bool:
  """A node holding one leaf as its ``value``: an ``nnx.Variable``, a linen ``Partitioned``."""
  if _is_dims_or_none(x):
    return True
  with_path, _ = jax.tree_util.tree_flatten_with_path(x, is_leaf=_is_dims_or_none)
  return len(with_path) == 1 and tuple(with_path[0][0]) == (_VALUE,)


def _unboxed(tree: Any) -> Any:
  """``tree`` with every box replaced by what it holds.

  ``nnx.Optimizer`` gives ``init`` the params as ``nnx.Param`` boxes and
  ``update`` as bare arrays; a tree of ``Dims`` without the boxes is a
  prefix of both.
  """
  return jax.tree.map(
    lambda x: x if _is_dims_or_none(x) else jax.tree.leaves(x, is_leaf=_is_dims_or_none)[0],
    tree,
    is_leaf=_is_box,
  )


def _summary(why_none: dict[str, str], limit: int = 3) -> str:
  items = [f"{path!r}: {why}" for path, why in itertools.islice(why_none.items(), limit)]
  more = len(why_none) - limit
  return "; ".join(items) + (f"; and {more} more" if more > 0 else "")
