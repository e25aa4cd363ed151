"""``layer_adamw``: Adam with decoupled, per-layer scaled weight decay."""

from typing import Any

import optax

from optax_layer_l2._masking import MaskOrFn
from optax_layer_l2._multipliers import Multipliers
from optax_layer_l2._scales import DimsOption
from optax_layer_l2._scaling import ScalingFn
from optax_layer_l2._transform import layer_l2


def layer_adamw(
  learning_rate: optax.ScalarOrSchedule,
  weight_decay: optax.ScalarOrSchedule,
  scaling: str | ScalingFn = "fan_avg",
  *,
  b1: float = 0.9,
  b2: float = 0.999,
  eps: float = 1e-8,
  eps_root: float = 0.0,
  mu_dtype: Any | None = None,
  nesterov: bool = False,
  mask: MaskOrFn | None = None,
  dims: DimsOption | None = None,
  multipliers: Multipliers | None = None,
  base: optax.Params | None = None,
  reference: optax.Params | str | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Adam with decoupled weight decay scaled per layer, as ``optax.adamw`` builds it.

  ``chain(scale_by_adam, layer_l2, scale_by_learning_rate)``: each step is

  .. math::

    w \leftarrow w - \eta \left( \frac{\hat m}{\sqrt{\hat v} + \epsilon}
    + \lambda \, s(w) \, w \right),

  so the decay is multiplied by the learning rate ``eta`` (a schedule on the
  learning rate schedules the decay too) but not normalised by Adam. With
  ``scaling="none"`` this is exactly ``optax.adamw`` on the same mask. Note
  that ``s`` is small for wide layers (``2 / 512`` for a 512 x 512 kernel
  under ``fan_avg``), so a good ``weight_decay`` is larger than AdamW's usual
  ``1e-4``; :func:`describe` shows the per-layer rate ``lambda * s``.

  Args:
    learning_rate: a float or an Optax schedule.
    weight_decay: the decay rate ``lambda`` (a float, JAX scalar or schedule).
    scaling: as in :func:`layer_l2`.
    b1: Adam's first-moment decay.
    b2: Adam's second-moment decay.
    eps: added to the denominator outside the square root.
    eps_root: added inside the square root.
    mu_dtype: dtype of the first moment.
    nesterov: use Nesterov momentum.
    mask: as in :func:`layer_l2`.
    dims: as in :func:`layer_l2`.
    multipliers: as in :func:`layer_l2`.
    base: as in :func:`layer_l2`; with ``scaling="sqrt_fan_avg"`` a
      ``weight_decay`` tuned on the base model carried over to wider ones in
      the width study.
    reference: as in :func:`layer_l2`: decay toward ``"init"`` (the params
      given to ``init``) or a pytree of arrays instead of toward zero; the
      step's decay term is then ``lambda * s * (w - w_ref)``.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> import optax_layer_l2 as ll2
    >>> params = {"kernel": jnp.ones((8, 8))}
    >>> tx = ll2.layer_adamw(learning_rate=1e-3, weight_decay=0.5)
    >>> state = tx.init(params)
    >>> updates, state = tx.update({"kernel": jnp.zeros((8, 8))}, state, params)
    >>> updates["kernel"][0, 0]  # -1e-3 * 0.5 * (8 + 8) / 64
    Array(-0.000125, dtype=float32)
  """
  return optax.chain(
    optax.scale_by_adam(
      b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov
    ),
    layer_l2(
      weight_decay,
      scaling,
      mask=mask,
      dims=dims,
      multipliers=multipliers,
      base=base,
      reference=reference,
    ),
    optax.scale_by_learning_rate(learning_rate),
  )
