"""The named scalings ``c(leaf)`` and the ``LeafInfo`` a custom one receives."""

import dataclasses
import math
from collections.abc import Callable
from typing import TypeAlias

from optax_layer_l2._fans import Fans


@dataclasses.dataclass(frozen=True)
class LeafInfo:
  """What a scaling knows about one decayed leaf.

  Attributes:
    path: the leaf's keys joined by ``/``, e.g. ``params/Dense_0/kernel``.
    shape: the leaf's full shape (stacked-layer axes included).
    fan_in: fan-in of one layer, receptive field included.
    fan_out: fan-out of one layer, receptive field included.
    numel: element count of one layer (stacked-layer axes excluded).

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax_layer_l2 as ll2
    >>> def per_output(info: ll2.LeafInfo) -> float:
    ...   return 1.0 / info.fan_out  # "fan_in" for a dense kernel
    >>> ll2.scales({"kernel": jnp.zeros((16, 64))}, per_output)["kernel"]
    0.015625
  """

  path: str
  shape: tuple[int, ...]
  fan_in: int
  fan_out: int
  numel: int

  @classmethod
  def of(cls, path: str, shape: tuple[int, ...], fans: Fans) -> "LeafInfo":
    return cls(path, shape, fans.fan_in, fans.fan_out, fans.numel)


ScalingFn: TypeAlias = Callable[[LeafInfo], float]

SCALINGS: dict[str, ScalingFn] = {
  "none": lambda info: 1.0,
  "numel": lambda info: 1.0 / info.numel,
  "fan_avg": lambda info: (info.fan_in + info.fan_out) / info.numel,
  "fan_in": lambda info: info.fan_in / info.numel,
  "fan_out": lambda info: info.fan_out / info.numel,
  # For `base=`: the inverse of the fan-in (He/LeCun) and of the Glorot
  # weight scale, so that decoupled decay pulls each weight by the same
  # fraction of Adam's step at every width (see the guide).
  "sqrt_fan_in": lambda info: math.sqrt(info.fan_in),
  "sqrt_fan_avg": lambda info: math.sqrt((info.fan_in + info.fan_out) / 2),
}
"""Each named scaling's factor ``c(leaf)``; see the table in the README.

With ``base=`` every scaling is used relative to the base model,
``c(leaf) / c(base leaf)``.
"""


def resolve_scaling(scaling: str | ScalingFn) -> ScalingFn:
  """The function behind ``scaling``; raises on an unknown name."""
  if isinstance(scaling, str):
    if scaling not in SCALINGS:
      valid = ", ".join(repr(name) for name in SCALINGS)
      raise ValueError(
        f"`scaling={scaling!r}` is not a known scaling; use one of {valid}, "
        "or a callable `scaling(info: LeafInfo) -> float`."
      )
    return SCALINGS[scaling]
  if callable(scaling):
    return scaling
  raise TypeError(
    f"`scaling` must be a scaling name or a callable `scaling(info: LeafInfo) "
    f"-> float`, got {scaling!r}."
  )


def checked_factor(value: object, argname: str, path: str) -> float:
  """``value`` as a float, if it is a finite non-negative number."""
  try:
    factor = float(value)  # type: ignore[arg-type]
  except (TypeError, ValueError):
    raise TypeError(
      f"`{argname}` must give a Python number for leaf {path!r}, got {value!r}; "
      "it is evaluated on shapes, once per trace, not on traced values."
    ) from None
  if not math.isfinite(factor) or factor < 0:
    raise ValueError(
      f"`{argname}` gave {factor!r} for leaf {path!r}; it must be finite and non-negative."
    )
  return factor
