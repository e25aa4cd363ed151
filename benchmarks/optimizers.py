"""The optimizers of the train-step measurement, and their names in the tables."""

from collections.abc import Sequence
from typing import Any

import optax

import optax_layer_l2 as ll2
from benchmarks.settings import LEARNING_RATE, WEIGHT_DECAY

ADAM = "`adam`"
DECAYED = "`add_decayed_weights` + `adam`"
DECAYED_AGAIN = "`add_decayed_weights` + `adam`, compiled again (A/A control)"
ADAMW = "`adamw`"
LAYER_ADAMW = '`layer_adamw("fan_avg")`'


def layer_l2_name(scaling: str) -> str:
  """The name of ``chain(layer_l2(scaling), adam)`` in the tables."""
  return f'`layer_l2("{scaling}")` + `adam`'


def toward_init_name(scaling: str) -> str:
  """The name of ``chain(layer_l2(scaling, reference="init"), adam)`` in the tables."""
  return f'`layer_l2("{scaling}", reference="init")` + `adam`'


def is_layer_l2(name: str) -> bool:
  """Whether ``name`` is that of a ``chain(layer_l2, adam)``."""
  return name.startswith("`layer_l2")


def decayed(mask: Any) -> optax.GradientTransformation:
  """``chain(add_decayed_weights(mask), adam)``: what a user would write instead of ``layer_l2``."""
  return optax.chain(optax.add_decayed_weights(WEIGHT_DECAY, mask), optax.adam(LEARNING_RATE))


def train_optimizers(mask: Any, scalings: Sequence[str]) -> dict[str, optax.GradientTransformation]:
  """The optimizers of the train-step measurement, by name.

  Args:
    mask: the leaves that ``layer_l2`` decays by default, given to
      ``add_decayed_weights`` and ``adamw`` so that all decay the same leaves.
    scalings: the scalings of ``layer_l2`` to time.
  """
  optimizers = {
    ADAM: optax.adam(LEARNING_RATE),
    DECAYED: decayed(mask),
    DECAYED_AGAIN: decayed(mask),
  }
  for scaling in scalings:
    optimizers[layer_l2_name(scaling)] = optax.chain(
      ll2.layer_l2(WEIGHT_DECAY, scaling), optax.adam(LEARNING_RATE)
    )
  optimizers[ADAMW] = optax.adamw(LEARNING_RATE, weight_decay=WEIGHT_DECAY, mask=mask)
  optimizers[LAYER_ADAMW] = ll2.layer_adamw(LEARNING_RATE, WEIGHT_DECAY, "fan_avg")
  return optimizers


def reference_optimizers(
  mask: Any, scalings: Sequence[str]
) -> dict[str, optax.GradientTransformation]:
  """The optimizers of the measurement of a decay toward a reference, by name.

  ``add_decayed_weights`` + ``adam`` (on ``mask``), ``layer_l2("fan_avg")`` +
  ``adam`` toward zero (``reference=None``, the default), and
  ``layer_l2(scaling, reference="init")`` + ``adam`` for each of ``scalings``.
  """
  optimizers = {
    DECAYED: decayed(mask),
    layer_l2_name("fan_avg"): optax.chain(
      ll2.layer_l2(WEIGHT_DECAY, "fan_avg", reference=None), optax.adam(LEARNING_RATE)
    ),
  }
  for scaling in scalings:
    optimizers[toward_init_name(scaling)] = optax.chain(
      ll2.layer_l2(WEIGHT_DECAY, scaling, reference="init"), optax.adam(LEARNING_RATE)
    )
  return optimizers


LAYER_ADAMW_NONE = '`layer_adamw("none")`'
LAYER_ADAMW_RATES = '`layer_adamw("none", lr_scaling="inv_fan_in")`'
LAYER_ADAMW_RATES_OF_ONE = '`layer_adamw("none", lr_scaling="none")`, every factor 1 (A/A control)'
ADAM_RATES = '`scale_by_adam` + `layer_lr("inv_fan_in")` + `scale_by_learning_rate`'


def rate_optimizers(base: Any) -> dict[str, optax.GradientTransformation]:
  """The optimizers of the measurement of per-layer learning rates, by name.

  Each step with :func:`ll2.layer_lr` (factors relative to ``base``, the
  shapes of a narrower model of the same structure) follows the step it is
  compared with: ``layer_adamw("none")`` without and with
  ``lr_scaling="inv_fan_in"``, and with ``lr_scaling="none"``, whose factors
  are all 1 (an A/A control); ``optax.adam`` and the same chain with
  ``layer_lr`` between Adam and the learning rate.
  """
  return {
    ADAM: optax.adam(LEARNING_RATE),
    ADAM_RATES: optax.chain(
      optax.scale_by_adam(),
      ll2.layer_lr("inv_fan_in", base=base),
      optax.scale_by_learning_rate(LEARNING_RATE),
    ),
    LAYER_ADAMW_NONE: ll2.layer_adamw(LEARNING_RATE, WEIGHT_DECAY, "none"),
    LAYER_ADAMW_RATES: ll2.layer_adamw(
      LEARNING_RATE, WEIGHT_DECAY, "none", lr_scaling="inv_fan_in", base=base
    ),
    LAYER_ADAMW_RATES_OF_ONE: ll2.layer_adamw(
      LEARNING_RATE, WEIGHT_DECAY, "none", lr_scaling="none", base=base
    ),
  }


WITHOUT_RATES = {
  ADAM_RATES: ADAM,
  LAYER_ADAMW_RATES: LAYER_ADAMW_NONE,
  LAYER_ADAMW_RATES_OF_ONE: LAYER_ADAMW_NONE,
}
"""Each step with ``layer_lr``, and the same step without it."""
