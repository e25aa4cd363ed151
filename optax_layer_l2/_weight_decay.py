"""The rate ``weight_decay``: its checks, and the coefficient of one leaf."""

import math
from typing import Any

import jax
import numpy as np


def check_weight_decay(weight_decay: Any, *, allow_schedule: bool = True) -> None:
  """Raises on a constant ``weight_decay`` that is not a finite number >= 0.

  A schedule is checked by the caller; a traced value (under ``jax.jit``,
  ``jax.vmap`` or ``optax.inject_hyperparams``) cannot be read and is passed.
  """
  if callable(weight_decay):
    if not allow_schedule:
      raise TypeError(
        "`weight_decay` must be a number here, not a schedule; pass its value "
        "at the step you want, e.g. `schedule(step)`."
      )
    return
  if isinstance(weight_decay, jax.core.Tracer):
    return
  if isinstance(weight_decay, (str, bytes, bool)):
    raise TypeError(
      f"`weight_decay` must be a float, a JAX scalar or an Optax schedule, got {weight_decay!r}."
    )
  try:
    value = np.asarray(weight_decay)
  except Exception:  # any object numpy cannot convert is of the wrong type
    value = None
  if value is None or value.dtype.kind not in "iuf":
    raise TypeError(
      f"`weight_decay` must be a float, a JAX scalar or an Optax schedule, got {weight_decay!r}."
    )
  if value.ndim != 0:
    raise ValueError(
      f"`weight_decay` must be a scalar, got shape {value.shape}; to sweep many "
      "values, `jax.vmap` over a scalar `weight_decay` instead."
    )
  number = float(value)
  if not math.isfinite(number) or number < 0:
    raise ValueError(f"`weight_decay` is {number!r}; it must be finite and non-negative.")


def is_static_zero(weight_decay: Any) -> bool:
  """Whether ``weight_decay`` is a Python zero, so the decay can be skipped."""
  return isinstance(weight_decay, (int, float)) and weight_decay == 0


def coefficient(weight_decay: jax.typing.ArrayLike, scale: float) -> jax.typing.ArrayLike:
  """``weight_decay * s``: the decay's coefficient for one leaf.

  Computed by this one expression for the transformation and the penalty, so
  that ``jax.grad(penalty)`` and ``layer_l2`` agree to the last bit. With a
  Python ``weight_decay`` it is a Python float folded into the program.
  """
  return weight_decay * scale
