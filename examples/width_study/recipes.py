"""The recipes a joint study compares: how the learning rate and the decay follow the width.

Each recipe is ``layer_adamw`` with a decay scaling and, or not, per-layer
learning-rate factors, both relative to the base model (``base=``), and
optionally a transform of the initial weights. At the base every recipe is
plain AdamW from the architecture's init (the driver checks it:
:mod:`width_study.shared_base`), so one ``(learning rate, lambda)`` pair tuned
there means the same thing to all of them; wider, they differ in how each
kernel's Adam step (``learning_rate * r``) and its per-step decay
(``learning_rate * lambda * s``) change with its fans, and in how it starts.
A new recipe is one entry of :data:`RECIPES`.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import optax

import optax_layer_l2 as ll2
from width_study.shared_base import AtBase, factors_at_base

InitTransform = Callable[[Any, Any], Any]
"""``transform(params, base)``: one model's initial weights as a recipe starts from them.

``base`` holds the base model's initial weights from the same seed (what
``ll2.rescale_init`` measures against). A transform that rescales relative to
the base leaves the base's weights as they are, and its recipe shares the base
width's rows; one that changes them is refused there (:mod:`width_study.shared_base`).
"""


@dataclasses.dataclass(frozen=True)
class Recipe:
  """One way of carrying a tuned ``(learning rate, lambda)`` pair to other widths.

  Attributes:
    scaling: the decay scaling of ``layer_adamw`` (a name in ``ll2.SCALINGS``).
    lr_scaling: the learning-rate scaling (a name in ``ll2.LR_SCALINGS``), or
      ``None`` for one rate for every leaf.
    summary: what it is and where it comes from, for the tables.
    init: how it transforms the architecture's initial weights, or ``None``
      to start from them as they are.
  """

  scaling: str
  lr_scaling: str | None
  summary: str
  init: InitTransform | None = None

  def at_base(self, base: Any) -> AtBase:
    """The factors of its optimizer at the base model itself (its init is checked by the driver)."""
    return factors_at_base(base, self.scaling, self.lr_scaling)


RECIPES = {
  "adamw": Recipe("none", None, "one rate, AdamW decay: today's practice"),
  "sqrt_fan_avg": Recipe(
    "sqrt_fan_avg", None, "one rate, decay sqrt_fan_avg: version 0.2's MLP rule"
  ),
  "mup": Recipe(
    "none",
    "inv_fan_in",
    "rates inv_fan_in, independent decay (lr * lambda per step fixed): muP's MuAdamW",
  ),
  "mup_sqrt_decay": Recipe(
    "inv_sqrt_fan_in",
    "inv_fan_in",
    "rates inv_fan_in, per-step decay / sqrt(m): Fan et al.'s lambda ~ sqrt(m)",
  ),
  "sqrt_lr": Recipe(
    "none", "inv_sqrt_fan_in", "rates inv_sqrt_fan_in, independent decay: between the two"
  ),
  "mup_init": Recipe(
    "none",
    "mup",
    "muP completed: rescale_init (readout / m, embeddings at the base's size, query "
    "1/head_dim) with rates mup and independent decay",
    init=lambda params, base: ll2.rescale_init(params, base=base),
  ),
}
"""Every recipe a study can run (``--recipes``), by name."""


def make_recipe_optimizer(
  recipe: Recipe,
  learning_rate: jax.Array,
  weight_decay: jax.Array,
  base: Any,
  rate_shape: Callable[[jax.Array], jax.Array] | None = None,
) -> optax.GradientTransformation:
  """``layer_adamw`` for ``recipe``; ``learning_rate`` and ``weight_decay`` may be traced.

  ``rate_shape(count)`` multiplies the peak ``learning_rate`` at each step (a
  warm-up and cosine decay, say); ``None`` keeps it constant.
  """
  schedule: optax.ScalarOrSchedule = learning_rate
  if rate_shape is not None:
    schedule = lambda count: learning_rate * rate_shape(count)  # noqa: E731
  return ll2.layer_adamw(
    schedule, weight_decay, recipe.scaling, base=base, lr_scaling=recipe.lr_scaling
  )


RATE_SHAPES: dict[str, Callable[[int], optax.Schedule | None]] = {
  "constant": lambda steps: None,
  "cosine": lambda steps: optax.warmup_cosine_decay_schedule(0.0, 1.0, max(1, steps // 10), steps),
}
"""The learning rate's shape over ``steps`` (10% warm-up, cosine decay), multiplying the peak
rate of each lattice point (``rate_shape`` of :func:`make_recipe_optimizer`)."""
