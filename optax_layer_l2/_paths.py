"""Leaf paths as strings, and prefix trees broadcast to the leaves of a tree."""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import optax


def is_none(x: Any) -> bool:
  """Treats ``None`` as a leaf, as Optax does for missing updates."""
  return x is None


def path_to_str(keypath: Sequence[Any]) -> str:
  """Joins a JAX key path with ``/``: ``params/Dense_0/kernel``.

  A trailing attribute named ``value`` is dropped, so that an ``nnx.Variable``
  (or a linen ``Partitioned`` box) has the same path as the bare array.
  """
  names = []
  for key in keypath:
    if isinstance(key, jax.tree_util.DictKey):
      names.append(str(key.key))
    elif isinstance(key, jax.tree_util.GetAttrKey):
      names.append(key.name)
    elif isinstance(key, jax.tree_util.SequenceKey):
      names.append(str(key.idx))
    elif isinstance(key, jax.tree_util.FlattenedIndexKey):
      names.append(str(key.key))
    else:
      names.append(str(key))
  last = keypath[-1] if keypath else None
  if isinstance(last, jax.tree_util.GetAttrKey) and last.name == "value":
    names.pop()
  return "/".join(names)


def flatten_with_paths(
  tree: Any,
) -> tuple[list[str], list[Any], jax.tree_util.PyTreeDef]:
  """Flattens ``tree`` (``None`` counts as a leaf) into paths, leaves, treedef."""
  with_path, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_none)
  paths = [path_to_str(keypath) for keypath, _ in with_path]
  leaves = [leaf for _, leaf in with_path]
  return paths, leaves, treedef


def broadcast_prefix(
  prefix: Any,
  tree: Any,
  *,
  argname: str,
  is_prefix_leaf: Callable[[Any], bool],
) -> list[Any]:
  """The value of ``prefix`` that covers each leaf of ``tree``, in leaf order.

  ``prefix`` has the structure of ``tree`` or of a prefix of it, as an Optax
  mask does; a leaf of ``prefix`` applies to the whole subtree below it. A
  ``None`` in ``prefix`` is a value too (it covers its subtree).
  """

  def prefix_leaf(x: Any) -> bool:
    return x is None or is_prefix_leaf(x)

  prefix_def: jax.tree_util.PyTreeDef  # annotated: jaxlib ships no stubs for it
  values, prefix_def = jax.tree.flatten(prefix, is_leaf=prefix_leaf)
  try:
    subtrees = prefix_def.flatten_up_to(tree)
  except (ValueError, TypeError):
    raise ValueError(
      f"`{argname}` must have the structure of `params`, or of a prefix of it; "
      f"{prefix_difference(prefix, tree, argname, prefix_leaf)}."
    ) from None
  broadcast = []
  for value, subtree in zip(values, subtrees, strict=True):
    count = len(jax.tree.leaves(subtree, is_leaf=is_none))
    broadcast.extend([value] * count)
  return broadcast


def prefix_difference(
  prefix: Any, tree: Any, argname: str, is_prefix_leaf: Callable[[Any], bool]
) -> str:
  """Says where ``prefix`` first fails to be a prefix of ``tree``, by leaf paths.

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_layer_l2._paths import prefix_difference
    >>> prefix_difference([True, False], [jnp.ones(2)], "mask", lambda x: isinstance(x, bool))
    "`mask` has the entry '1', which `params` lacks"
  """
  prefix_paths = [
    path_to_str(keypath)
    for keypath, _ in jax.tree_util.tree_flatten_with_path(prefix, is_leaf=is_prefix_leaf)[0]
  ]
  tree_paths = flatten_with_paths(tree)[0]

  def covers(entry: str, path: str) -> bool:
    return entry in ("", path) or path.startswith(entry + "/")

  for entry in prefix_paths:
    if not any(covers(entry, path) for path in tree_paths):
      return f"`{argname}` has the entry {entry!r}, which `params` lacks"
  for path in tree_paths:
    if not any(covers(entry, path) for entry in prefix_paths):
      return f"`params` has the leaf {path!r}, which no entry of `{argname}` covers"
  return (
    f"their paths agree but their containers differ: `{argname}` is "
    f"{_structure(prefix)}, `params` is {_structure(tree)}"
  )


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


def first_difference(a: Any, b: Any, names: tuple[str, str] = ("updates", "params")) -> str:
  """Says where two trees first differ, calling them by ``names``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from optax_layer_l2._paths import first_difference
    >>> first_difference({"w": jnp.ones(2)}, {"w": jnp.ones(2), "b": jnp.ones(2)})
    "`params` has the leaf 'b', which `updates` lacks"
  """
  name_a, name_b = names
  paths_a = flatten_with_paths(a)[0]
  paths_b = flatten_with_paths(b)[0]
  if [""] in (paths_a, paths_b):
    return f"`{name_a}` is {_size(paths_a)}, `{name_b}` is {_size(paths_b)}"
  set_a, set_b = set(paths_a), set(paths_b)
  only_a = [path for path in paths_a if path not in set_b]
  only_b = [path for path in paths_b if path not in set_a]
  if only_a and only_b:
    return f"`{name_a}` has {_leaf(only_a[0])} where `{name_b}` has {_leaf(only_b[0])}"
  if only_a:
    return f"`{name_a}` has {_leaf(only_a[0])}, which `{name_b}` lacks"
  if only_b:
    return f"`{name_b}` has {_leaf(only_b[0])}, which `{name_a}` lacks"
  return (
    f"their leaf paths agree but their containers differ: `{name_a}` is "
    f"{_structure(a)}, `{name_b}` is {_structure(b)}"
  )


def _leaf(path: str) -> str:
  """``the leaf 'dense/kernel'``."""
  return f"the leaf {path!r}"


def _size(paths: list[str]) -> str:
  """``a single leaf`` (a bare array), or ``a tree of 3 leaves``."""
  if paths == [""]:
    return "a single leaf"
  return f"a tree of {len(paths)} leaves" if len(paths) != 1 else "a tree of 1 leaf"


def _structure(tree: Any, limit: int = 120) -> str:
  """The tree's structure as JAX prints it, cut to ``limit`` characters."""
  text = str(jax.tree.structure(tree, is_leaf=is_none))
  return text if len(text) <= limit else text[: limit - 3] + "..."


def masked_like(tree: Any, params: Any) -> Any:
  """``tree`` with an ``optax.MaskedNode`` wherever ``params`` has one.

  Inside ``optax.masked`` the leaves that are masked out arrive as
  ``MaskedNode``; a tree given whole (a ``base``, a ``reference``) has arrays
  there. Where the two trees differ otherwise, ``tree`` is returned as it is,
  for the caller's error.
  """

  def is_masked(x: Any) -> bool:
    return isinstance(x, optax.MaskedNode)

  try:
    return jax.tree.map(
      lambda p, b: p if is_masked(p) else b,
      params,
      tree,
      is_leaf=lambda x: x is None or is_masked(x),
    )
  except (ValueError, TypeError):
    return tree
