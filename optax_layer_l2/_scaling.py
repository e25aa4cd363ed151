"""The named scalings ``c(leaf)``, of the decay and of the learning rate, and the
``LeafInfo`` a custom one receives."""

import dataclasses
import math
import types
from collections.abc import Callable, Mapping
from typing import TypeAlias

from optax_layer_l2._attention import query_factor
from optax_layer_l2._fans import Dims, Fans


@dataclasses.dataclass(frozen=True)
class LeafInfo:
  """What a scaling knows about one decayed leaf.

  Attributes:
    path: the leaf's keys joined by ``/``, e.g. ``params/Dense_0/kernel``.
    shape: the leaf's full shape (stacked-layer axes included).
    fan_in: fan-in of one layer, receptive field included.
    fan_out: fan-out of one layer, receptive field included.
    numel: element count of one layer (stacked-layer axes excluded).
    dims: the leaf's :class:`Dims` (which axes are which), or ``None``.

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
  dims: Dims | None = None

  @classmethod
  def of(
    cls, path: str, shape: tuple[int, ...], fans: Fans, dims: Dims | None = None
  ) -> "LeafInfo":
    return cls(path, shape, fans.fan_in, fans.fan_out, fans.numel, dims)


ScalingFn: TypeAlias = Callable[[LeafInfo], float]


@dataclasses.dataclass(frozen=True)
class _Named:
  """A named scaling: its formula, as the docs and the errors print it, and its function."""

  formula: str
  fn: ScalingFn


_ONE = _Named("1", lambda info: 1.0)
_INV_SQRT_FAN_IN = _Named("1/sqrt(fan_in)", lambda info: 1.0 / math.sqrt(info.fan_in))

_DECAY = {
  "none": _ONE,
  "numel": _Named("1/numel", lambda info: 1.0 / info.numel),
  "fan_avg": _Named(
    "(fan_in + fan_out)/numel", lambda info: (info.fan_in + info.fan_out) / info.numel
  ),
  "fan_in": _Named("fan_in/numel", lambda info: info.fan_in / info.numel),
  "fan_out": _Named("fan_out/numel", lambda info: info.fan_out / info.numel),
  # For `base=`: the inverse of the fan-in (He/LeCun) and of the Glorot
  # weight scale, so that decoupled decay pulls each weight by the same
  # fraction of Adam's step at every width (see the guide).
  "sqrt_fan_in": _Named("sqrt(fan_in)", lambda info: math.sqrt(info.fan_in)),
  "sqrt_fan_avg": _Named(
    "sqrt((fan_in + fan_out)/2)", lambda info: math.sqrt((info.fan_in + info.fan_out) / 2)
  ),
  # For `base=` with the rate factors `lr_scaling="inv_fan_in"`: a kernel whose
  # fan-in grows m times gets 1/m of the rate and 1/sqrt(m) of the per-step
  # decay, Fan et al.'s (2025) lambda ~ sqrt(m) for muP rates (see the guide).
  "inv_sqrt_fan_in": _INV_SQRT_FAN_IN,
}


def _mup_rate(info: LeafInfo) -> float:
  """``1/fan_in``, and ``1/sqrt(head_dim)`` more for an attention query kernel."""
  if info.dims is None:
    return 1.0 / info.fan_in
  return query_factor(info.path, info.shape, info.dims) / info.fan_in


_RATE = {
  "none": _ONE,
  # muP's and Everett et al.'s per-layer Adam rates: a kernel whose fan-in
  # grows m times gets 1/m of the rate; a fixed fan-in keeps it.
  "inv_fan_in": _Named("1/fan_in", lambda info: 1.0 / info.fan_in),
  "inv_sqrt_fan_in": _INV_SQRT_FAN_IN,
  # With `rescale_init`: muP's whole Adam recipe, the logits' 1/head_dim moved
  # into the query kernels' rate as into their initialisation.
  "mup": _Named("1/fan_in, and 1/sqrt(head_dim) more for a query kernel", _mup_rate),
}

SCALINGS: Mapping[str, ScalingFn] = types.MappingProxyType(
  {name: named.fn for name, named in _DECAY.items()}
)
"""Each named decay scaling's factor ``c(leaf)`` (read-only); see the table in the README.

With ``base=`` every scaling is used relative to the base model,
``c(leaf) / c(base leaf)``.
"""

LR_SCALINGS: Mapping[str, ScalingFn] = types.MappingProxyType(
  {name: named.fn for name, named in _RATE.items()}
)
"""Each named learning-rate scaling's factor ``c(leaf)`` for :func:`layer_lr` (read-only).

Always used relative to the base model: ``r = c(leaf) / c(base leaf)``.
"""

FORMULAS: Mapping[str, str] = types.MappingProxyType(
  {name: named.formula for name, named in (*_DECAY.items(), *_RATE.items())}
)
"""Each named scaling's formula ``c(leaf)``, as the errors print it."""


def resolve_scaling(
  scaling: str | ScalingFn,
  names: Mapping[str, ScalingFn] = SCALINGS,
  argname: str = "scaling",
) -> ScalingFn:
  """The function behind ``scaling``; raises on a name that is not in ``names``.

  ``argname`` is the argument the errors name (``scaling`` or ``lr_scaling``).
  """
  if isinstance(scaling, str):
    if scaling not in names:
      valid = ", ".join(f"{name!r} ({FORMULAS[name]})" for name in names)
      raise ValueError(
        f"`{argname}={scaling!r}` is not a known scaling; use one of {valid}, "
        f"or a callable `{argname}(info: LeafInfo) -> float`."
      )
    return names[scaling]
  if callable(scaling):
    return scaling
  raise TypeError(
    f"`{argname}` must be a scaling name or a callable `{argname}(info: LeafInfo) "
    f"-> float`, got {scaling!r}."
  )


def scaling_name(scaling: str | ScalingFn) -> str:
  """A scaling's name for a report: its own, or the callable's."""
  return scaling if isinstance(scaling, str) else getattr(scaling, "__name__", repr(scaling))


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
