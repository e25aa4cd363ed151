"""The optimizers a lambda study compares, and its lambda grids."""

import dataclasses
from collections.abc import Callable
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


@dataclasses.dataclass(frozen=True)
class Centres:
  """Where an architecture's lambda grids lie: log10 of each grid's centre.

  Attributes:
    relative: by mode, for scalings relative to the narrowest model, where
      every scaling is plain L2 and one centre a mode serves them all.
    absolute: by scaling, then by mode, for absolute factors (no base), where
      the scalings differ by orders of magnitude. A scaling not listed is
      centred by the rescaling argument: ``none``'s centre (listed, or else
      the relative one) over the geometric mean of its decayed leaves'
      factors at the narrowest width.
  """

  relative: dict[str, float]
  absolute: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)

  def centre(self, scaling: str, mode: str, absolute: bool, narrowest: Callable[[], Any]) -> float:
    """log10 of the centre of one grid; ``narrowest()`` gives the narrowest model's shapes."""
    if not absolute:
      return self.relative[mode]
    if mode in self.absolute.get(scaling, {}):
      return self.absolute[scaling][mode]
    factors = [s for s in jax.tree.leaves(ll2.scales(narrowest(), scaling)) if s > 0]
    none = self.absolute.get("none", {}).get(mode, self.relative[mode])
    return none - float(np.mean(np.log10(factors)))

  def grid(
    self,
    scaling: str,
    mode: str,
    absolute: bool,
    narrowest: Callable[[], Any],
    decades: float,
    points: int,
  ) -> np.ndarray:
    """The lambda grid of one ``(scaling, mode)``: ``points`` over ``decades`` around its centre."""
    return lambda_grid(self.centre(scaling, mode, absolute, narrowest), decades, points)
