"""Which leaves are decayed: the default rule, and a user's mask."""

from collections.abc import Callable
from typing import Any, TypeAlias

import numpy as np

from optax_layer_l2._paths import broadcast_prefix

NEVER_DECAYED_BY_DEFAULT = frozenset({"bias", "scale"})
"""Leaf names the default mask never decays, whatever their rank."""

# A pytree of bools (or a prefix of one), or a callable from the params to one.
MaskOrFn: TypeAlias = Any | Callable[[Any], Any]


def excluded_by_name(path: str) -> str | None:
  """Why the default mask skips the leaf at ``path`` by its name, or ``None``.

  The default never decays a leaf named ``bias`` or ``scale``, whatever its
  rank: Flax attention biases are ``(heads, head_dim)`` and stacked norm
  scales are 2-D.
  """
  name = path.rsplit("/", 1)[-1]
  if name in NEVER_DECAYED_BY_DEFAULT:
    return f"named {name!r}"
  return None


def user_mask_per_leaf(mask: MaskOrFn, params: Any, paths: list[str]) -> list[bool]:
  """The user's mask (a pytree, a prefix of one, or a callable) per leaf."""
  tree = mask(params) if callable(mask) else mask
  values = broadcast_prefix(
    tree, params, argname="mask", is_prefix_leaf=lambda x: isinstance(x, (bool, np.bool_))
  )
  flags = []
  for path, value in zip(paths, values, strict=True):
    if value is None:
      # A `None` mask entry leaves the whole subtree under it undecayed.
      flags.append(False)
    elif isinstance(value, (bool, np.bool_)):
      flags.append(bool(value))
    else:
      raise TypeError(
        f"`mask` must hold Python bools; for leaf {path!r} it holds {value!r}. "
        "The mask is static: it is read once per trace, not on device."
      )
  return flags
