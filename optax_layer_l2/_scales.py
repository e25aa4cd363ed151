"""The per-leaf factor ``s``: the one place where it is decided.

``s(leaf) = c(leaf) * multiplier(leaf)`` for a decayed leaf and ``0.0`` for
every other. :func:`layer_l2`, :func:`penalty` and :func:`describe` all take
their factors from :func:`leaf_scales` here, so they cannot disagree. Only
shapes, dtypes and paths are read, so this runs in Python at trace time.
"""

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from optax_layer_l2._fans import Dims, Fans, default_dims, leaf_fans
from optax_layer_l2._masking import MaskOrFn, default_exclusion, user_mask_per_leaf
from optax_layer_l2._multipliers import Multipliers, resolve_multipliers
from optax_layer_l2._paths import broadcast_prefix, flatten_with_paths
from optax_layer_l2._scaling import LeafInfo, ScalingFn, checked_factor, resolve_scaling

DimsOption = Any | Callable[[str, Any], Dims | None]

NONE_LEAF = "None leaf"
"""The reason recorded for a ``None`` in ``params`` (it stays ``None``)."""


@dataclasses.dataclass(frozen=True)
class LeafScale:
  """The decision for one leaf.

  Attributes:
    path: the leaf's path.
    shape: its shape, or ``None`` for a leaf that is not an array.
    fans: its fans, where they were needed to decide.
    factor: ``c(leaf)`` from the scaling (0 when not decayed).
    multiplier: the leaf's multiplier on ``weight_decay``.
    scale: ``s = factor * multiplier``; 0 means the leaf is left untouched.
    skipped: why the leaf is not decayed, or ``None`` when it is.
  """

  path: str
  shape: tuple[int, ...] | None
  fans: Fans | None
  factor: float
  multiplier: float
  scale: float
  skipped: str | None

  @property
  def decayed(self) -> bool:
    return self.skipped is None


def _dims_per_leaf(
  dims: DimsOption, params: Any, paths: Sequence[str], leaves: Sequence[Any]
) -> list[Any]:
  if dims is None:
    return [None] * len(leaves)
  if callable(dims) and not isinstance(dims, Dims):
    chosen = []
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


def leaf_scales(
  params: Any,
  scaling: str | ScalingFn = "fan_avg",
  *,
  mask: MaskOrFn | None = None,
  dims: DimsOption | None = None,
  multipliers: Multipliers | None = None,
) -> tuple[list[LeafScale], jax.tree_util.PyTreeDef]:
  """One :class:`LeafScale` per leaf of ``params`` (``None`` counts as a leaf)."""
  scaling_fn = resolve_scaling(scaling)
  multiplier_fn = resolve_multipliers(multipliers)
  paths, leaves, treedef = flatten_with_paths(params)
  chosen_dims = _dims_per_leaf(dims, params, paths, leaves)
  selected = None if mask is None else user_mask_per_leaf(mask, params, paths)

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
      decisions.append(_skip(path, shape, "multiplier 0", fans))
      continue
    factor = checked_factor(scaling_fn(LeafInfo.of(path, shape, fans)), "scaling", path)
    decisions.append(
      LeafScale(path, shape, fans, factor, multiplier, scale=factor * multiplier, skipped=None)
    )
  return decisions, treedef


def scales(
  params: Any,
  scaling: str | ScalingFn = "fan_avg",
  *,
  mask: MaskOrFn | None = None,
  dims: DimsOption | None = None,
  multipliers: Multipliers | None = None,
) -> Any:
  """The per-leaf factor ``s`` that :func:`layer_l2` multiplies ``weight_decay`` by.

  ``s = c(leaf) * multiplier(leaf)`` for a decayed leaf and ``0.0`` for every
  other one, as Python floats. Only shapes, dtypes and paths are read, so the
  output of ``jax.eval_shape`` works as ``params``.

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

  Returns:
    A pytree with the structure of ``params`` holding a float per leaf
    (``None`` leaves stay ``None``).

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax_layer_l2 as ll2
    >>> params = {"dense": {"kernel": jnp.zeros((40, 256)), "bias": jnp.zeros(256)}}
    >>> s = ll2.scales(params, "fan_avg")
    >>> round(s["dense"]["kernel"], 6), s["dense"]["bias"]
    (0.028906, 0.0)
  """
  decisions, treedef = leaf_scales(params, scaling, mask=mask, dims=dims, multipliers=multipliers)
  values = [None if d.skipped == NONE_LEAF else d.scale for d in decisions]
  return jax.tree.unflatten(treedef, values)
