"""The reference the decay pulls toward (L2-SP): its checks, and the copy in the state.

With ``reference=``, :func:`layer_l2` decays ``w - w_ref`` instead of ``w``.
The reference is kept in the optimizer state, one copy of the decayed leaves
only, so that the compiled step reads it as an argument (never as a constant
of the program) and checkpoints carry it. Every other leaf of the stored tree
is an ``optax.MaskedNode()``, which holds nothing.
"""

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_layer_l2._paths import (
  flatten_with_paths,
  is_none,
  masked_like,
  path_to_str,
  structure_difference,
)

INIT = "init"
"""``reference="init"``: decay toward the params that ``init`` was given."""

STATE = "the optimizer state's `reference`"
"""How errors name the reference kept in the state, met again at ``update``."""


def check_reference(reference: Any, *, allow_init: bool = True) -> None:
  """Raises at once on a ``reference`` that cannot be one, before any step."""
  if isinstance(reference, str):
    if reference == INIT and allow_init:
      return
    if reference == INIT:
      raise ValueError(
        "`reference='init'` needs the optimizer's `init`; here pass the reference "
        "params themselves, e.g. `reference=pretrained_params`."
      )
    raise ValueError(
      f"`reference={reference!r}` is not known; use None (decay toward zero), "
      "'init' (toward the params given to `init`) or a pytree of arrays with the "
      "structure of the params."
    )
  if callable(reference):
    raise TypeError(
      "`reference` must be None, 'init' or a pytree of arrays with the structure of "
      f"the params, not a callable ({reference!r})."
    )


def _is_empty(x: Any) -> bool:
  return x is None or isinstance(x, optax.MaskedNode)


def _holds_values(x: Any) -> bool:
  return isinstance(x, (jax.Array, np.ndarray, np.generic))


def _paths_of(reference: Any) -> list[str]:
  """The reference's leaf paths, an empty node (``None``, ``MaskedNode``) counting as one."""
  with_path, _ = jax.tree_util.tree_flatten_with_path(reference, is_leaf=_is_empty)
  return [path_to_str(keypath) for keypath, _ in with_path]


def _structure_error(name: str, paths: Sequence[str], reference: Any) -> ValueError:
  return ValueError(
    f"{name} must have the tree structure of `params`; "
    f"{structure_difference(paths, _paths_of(reference), 'reference')}."
  )


def reference_leaves(
  reference: Any,
  params: Any,
  factors: Any,
  *,
  name: str = "`reference`",
  need_values: bool = True,
) -> Any:
  """The reference of each decayed leaf, checked; ``None`` at every other leaf.

  ``reference`` has the structure of ``params``; at a leaf that is not decayed
  it may hold ``None`` or an ``optax.MaskedNode()`` instead (as the reference
  in the state does), and where ``params`` holds a ``MaskedNode`` (inside
  ``optax.masked``) it may hold anything. Where it holds an array, the array must have the leaf's
  shape and dtype.

  Args:
    reference: the reference tree.
    params: the parameter tree.
    factors: :func:`scales` of ``params``; a leaf is decayed where it is not 0.
    name: how error messages name ``reference``.
    need_values: whether a decayed leaf's reference must hold values (not a
      ``jax.ShapeDtypeStruct``).

  Returns:
    A tree with the structure of ``params``: the reference's leaf where the
    leaf is decayed, ``None`` elsewhere.
  """
  paths, leaves, treedef = flatten_with_paths(params)
  scales = treedef.flatten_up_to(factors)
  try:
    targets = treedef.flatten_up_to(reference)
  except (ValueError, TypeError):
    try:  # inside `optax.masked`, a reference given whole holds arrays at masked leaves
      targets = treedef.flatten_up_to(masked_like(reference, params))
    except (ValueError, TypeError):
      raise _structure_error(name, paths, reference) from None
  kept: list[Any] = []
  for path, leaf, scale, target in zip(paths, leaves, scales, targets, strict=True):
    if _is_empty(target):
      if scale:
        raise ValueError(
          f"{name} holds {target!r} at leaf {path!r}, which is decayed; it needs an "
          f"array of the leaf's shape {tuple(leaf.shape)} and dtype {leaf.dtype} there."
        )
      kept.append(None)
      continue
    target_def: jax.tree_util.PyTreeDef  # annotated: jaxlib ships no stubs for it
    target_def = jax.tree.structure(target)
    if target_def != jax.tree.structure(0):
      raise _structure_error(name, paths, reference)
    if hasattr(target, "shape") and hasattr(target, "dtype") and hasattr(leaf, "shape"):
      if tuple(target.shape) != tuple(leaf.shape):
        raise ValueError(
          f"{name} leaf {path!r} has shape {tuple(target.shape)}, but the leaf has shape "
          f"{tuple(leaf.shape)}; each reference leaf must have its leaf's shape."
        )
      if target.dtype != leaf.dtype:
        raise TypeError(
          f"{name} leaf {path!r} has dtype {target.dtype}, but the leaf has dtype "
          f"{leaf.dtype}; cast the reference to the params' dtypes first."
        )
    if scale and not (_holds_values(target) if need_values else hasattr(target, "shape")):
      raise TypeError(
        f"{name} holds {type(target).__name__} at leaf {path!r}, which is decayed; "
        "it needs an array there."
      )
    kept.append(target if scale else None)
  return jax.tree.unflatten(treedef, kept)


def _copy_like(value: Any, param: Any) -> jax.Array:
  """A fresh copy of ``value`` with the sharding of ``param`` where that is known."""
  copy = jnp.array(value, copy=True)  # a copy keeps the value's sharding
  concrete = not isinstance(param, jax.core.Tracer) and not isinstance(copy, jax.core.Tracer)
  if (
    concrete
    and isinstance(param, jax.Array)
    and not copy.sharding.is_equivalent_to(param.sharding, copy.ndim)
  ):
    copy = jax.device_put(copy, param.sharding)
  return copy


def stored_reference(reference: Any, params: Any, factors: Any) -> Any:
  """What the state keeps: a copy of each decayed leaf's reference, ``MaskedNode`` elsewhere.

  ``reference`` is ``"init"`` (copy ``params``) or a checked tree. The copies
  have the params' dtype and, for concrete params, each leaf's sharding; they
  share no buffer with ``params`` or the user's tree, so either may be donated.
  """
  source = params if isinstance(reference, str) else reference
  targets = reference_leaves(source, params, factors)
  return jax.tree.map(
    lambda target, param: optax.MaskedNode() if target is None else _copy_like(target, param),
    targets,
    params,
    is_leaf=is_none,
  )
