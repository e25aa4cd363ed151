"""The optimizers a width study compares, and its lambda grids."""

from typing import Any

import jax
import numpy as np
import optax

import optax_layer_l2 as ll2

MODES = ("coupled", "decoupled")

UNREGULARISED = ("-", "unregularised")
"""``(scaling, mode)`` of the runs with plain Adam and no penalty (lambda = 0)."""


def make_optimizer(
  scaling: str,
  mode: str,
  weight_decay: jax.Array,
  learning_rate: float,
  base: Any | None = None,
) -> optax.GradientTransformation:
  """The optimizer of one run; ``weight_decay`` may be traced (vmapped).

  Args:
    scaling: a name in ``ll2.SCALINGS``.
    mode: ``"coupled"`` (L2 regularisation: ``chain(layer_l2, adam)``, Adam
      normalises the decay with the gradient), ``"decoupled"``
      (``layer_adamw``: ``lr * lambda * s * w`` outside Adam's normalisation)
      or ``"unregularised"`` (plain Adam).
    weight_decay: lambda.
    learning_rate: Adam's learning rate.
    base: the shapes of the base model; the scaling is then relative to it.
  """
  if mode == "coupled":
    return optax.chain(ll2.layer_l2(weight_decay, scaling, base=base), optax.adam(learning_rate))
  if mode == "decoupled":
    return ll2.layer_adamw(learning_rate, weight_decay, scaling, base=base)
  if mode == UNREGULARISED[1]:
    return optax.adam(learning_rate)
  raise ValueError(f"unknown mode {mode!r}")


def lambda_grid(centre: float, decades: float, points: int) -> np.ndarray:
  """``points`` log-spaced lambdas spanning ``decades`` around ``10**centre``."""
  return np.logspace(centre - decades / 2, centre + decades / 2, points)
