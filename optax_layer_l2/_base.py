"""The base model (``base=``): its checks, its leaves matched to the params, the base factor.

Every per-leaf factor can be made relative to a base model, the model on
which ``weight_decay`` or the learning rate was tuned: ``c(leaf) / c(base
leaf)``. Only the base's shapes are read, and kept.
"""

from collections.abc import Sequence
from typing import Any

import jax

from optax_layer_l2._paths import flatten_with_paths, is_none, masked_like, structure_difference


def shapes_of(tree: Any) -> Any:
  """``tree`` with each array replaced by its ``jax.ShapeDtypeStruct``.

  A transformation keeps the base this way, so the base model's arrays are
  not kept alive.
  """
  if tree is None:
    return None

  def shape_of(leaf: Any) -> Any:
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
      # JAX leaves `ShapeDtypeStruct.__init__` unannotated.
      return jax.ShapeDtypeStruct(tuple(leaf.shape), leaf.dtype)  # type: ignore[no-untyped-call]
    return leaf

  return jax.tree.map(shape_of, tree, is_leaf=is_none)


def require_base(base: Any, who: str) -> None:
  """Raises when ``base``, which learning-rate factors need, is missing.

  ``who`` says what needs it, in the message's words: ```layer_lr``` or
  ```lr_scaling```.
  """
  if base is None:
    raise ValueError(
      f"{who} needs `base=`: the params (or `jax.eval_shape` shapes) of the model the "
      "learning rate was tuned on. The rate factors are relative to it, so at the base "
      "every leaf keeps the tuned rate."
    )


def base_leaves(base: Any, params: Any, paths: Sequence[str]) -> tuple[Any, list[Any]]:
  """``base`` (masked like ``params``) and its leaves, in the order of the params' leaves.

  ``base`` is matched to ``params`` by leaf paths, not by node types: an
  ``nnx.Optimizer`` gives ``init`` a tree of ``nnx.Param`` and ``update`` one
  of bare arrays, and both have the paths of a base given either way.
  """
  base_paths, leaves, _ = flatten_with_paths(base)
  if base_paths != list(paths):
    base = masked_like(base, params)
    base_paths, leaves, _ = flatten_with_paths(base)
  if base_paths != list(paths):
    raise ValueError(
      "`base` must have the tree structure of `params` (the same model at another "
      f"width); {structure_difference(paths, base_paths)}."
    )
  return base, leaves


def base_shape(path: str, shape: tuple[int, ...], base_leaf: Any) -> tuple[int, ...]:
  """The shape of the base leaf of the selected leaf at ``path``, checked."""
  if base_leaf is None or not hasattr(base_leaf, "shape"):
    raise ValueError(
      f"`base` holds {base_leaf!r} at leaf {path!r}, which is decayed; "
      "it needs an array or a `jax.ShapeDtypeStruct` there."
    )
  found = tuple(int(size) for size in base_leaf.shape)
  if len(found) != len(shape):
    raise ValueError(
      f"`base` leaf {path!r} has shape {found}, of rank {len(found)}, but the "
      f"leaf has shape {shape}, of rank {len(shape)}; a base leaf must have the leaf's rank."
    )
  if 0 in found:
    raise ValueError(f"`base` leaf {path!r} is empty (shape {found}); it has no scale.")
  return found


def relative(
  factor: float, base_factor: float, path: str, base: tuple[int, ...], argname: str
) -> float:
  """``c(leaf) / c(base leaf)``; a base factor of 0 cannot be divided by."""
  if base_factor == 0.0:
    raise ValueError(
      f"`{argname}` gave 0 for leaf {path!r} of `base` (shape {base}); "
      "a scaling relative to the base must be positive there."
    )
  return factor / base_factor
