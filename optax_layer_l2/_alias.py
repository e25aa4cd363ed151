"""``layer_adamw``: Adam with decoupled, per-layer scaled weight decay."""

from typing import Any

import optax

from optax_layer_l2._learning_rate import scale_by_rate_factors
from optax_layer_l2._masking import MaskOrFn
from optax_layer_l2._multipliers import Multipliers
from optax_layer_l2._rule import DimsOption, LeafRule
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
  lr_scaling: str | ScalingFn | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Adam with decoupled weight decay scaled per layer, as ``optax.adamw`` builds it.

  ``chain(scale_by_adam, layer_l2, scale_by_learning_rate)``: each step is

  .. math::

    w \leftarrow w - \eta \left( r(w) \frac{\hat m}{\sqrt{\hat v} + \epsilon}
    + \lambda \, s(w) \, w \right),

  where ``r = 1`` unless ``lr_scaling`` gives per-layer rate factors (then
  :func:`layer_lr` stands between Adam and the decay). So the decay is
  multiplied by the learning rate ``eta`` (a schedule on the learning rate
  schedules the decay too) but neither normalised by Adam nor multiplied by
  ``r``. With
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
    lr_scaling: per-layer learning-rate factors ``r``, relative to ``base``
      (required with it): a name in :data:`LR_SCALINGS` (``"inv_fan_in"``:
      muP-style rates) or a callable, as ``scaling`` in :func:`layer_lr`,
      on the default rule's leaves (kernels and embeddings) with ``dims``.
      The chain becomes ``scale_by_adam -> layer_lr -> layer_l2 ->
      scale_by_learning_rate``: Adam's step is multiplied by ``r``, the
      decay is not, so each step shrinks a decayed leaf by
      ``learning_rate * weight_decay * s`` at every width (the per-step decay
      of muP's ``MuAdamW``, independent weight decay). For a rate mask or
      rate multipliers of your own, chain :func:`layer_lr` yourself.
      ``None`` (default): one rate for every leaf.

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

    Tuned at width 32, run at 128 with muP-style rates (``r = 32 / 128`` for
    kernels whose fan-in grows) and the same per-step decay:

    >>> def mlp(width):
    ...   return {"hidden": {"kernel": jnp.ones((40, width))},
    ...           "out": {"kernel": jnp.ones((width, 10))}}
    >>> tx = ll2.layer_adamw(1e-2, 0.1, "none", lr_scaling="inv_fan_in", base=mlp(32))
    >>> report = ll2.describe(mlp(128), 0.1, "none", lr_scaling="inv_fan_in", base=mlp(32))
    >>> [(row.path, row.coefficient, row.lr_factor) for row in report.rows]  # lambda * s, r
    [('hidden/kernel', 0.1, 1.0), ('out/kernel', 0.1, 0.25)]
  """
  rates: tuple[optax.GradientTransformation, ...] = ()
  if lr_scaling is not None:
    rates = (scale_by_rate_factors(LeafRule.for_rates(lr_scaling, base=base, dims=dims)),)
  return optax.chain(
    optax.scale_by_adam(
      b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov
    ),
    *rates,
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
