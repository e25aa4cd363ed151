"""``layer_lr``: per-leaf learning-rate factors from shapes, relative to a base model."""

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import optax

from optax_layer_l2._masking import MaskOrFn
from optax_layer_l2._multipliers import Multipliers
from optax_layer_l2._numeric import compute_dtype
from optax_layer_l2._paths import is_none
from optax_layer_l2._rule import DimsOption, LeafRule, decide
from optax_layer_l2._scaling import ScalingFn

_UNSET: Any = object()


def _scale_update(update: Any, factor: float | None) -> Any:
  """``update * factor``, computed in at least float32 and rounded once; 1 passes it through."""
  if update is None or factor is None or factor == 1.0:
    return update
  update = jnp.asarray(update)
  dtype = compute_dtype(update.dtype)
  return (update.astype(dtype) * jnp.asarray(factor, dtype)).astype(update.dtype)


def layer_lr(
  lr_scaling: str | ScalingFn = "inv_fan_in",
  *,
  base: optax.Params,
  mask: MaskOrFn | None = None,
  dims: DimsOption | None = None,
  multipliers: Multipliers | None = None,
  scaling: str | ScalingFn = _UNSET,
) -> optax.GradientTransformationExtraArgs:
  r"""Multiplies each leaf's update by a learning-rate factor ``r`` from its shape.

  For each leaf ``w`` the mask selects, relative to its leaf in ``base``:

  .. math::

    u \leftarrow r(w)\, u, \qquad
    r(w) = \frac{c(w)}{c(w_\mathrm{base})}\, \mathrm{multiplier}(w) ,

  and every other leaf's update comes back as it came (biases, norm scales:
  their rate is not a question of width). The factor ``c`` comes from
  ``lr_scaling``; for a dense kernel ``(n_in, n_out)``:

  ===================  ===========================================================
  ``none``             ``1``: only the multipliers
  ``inv_fan_in``       ``1 / n_in``: a kernel whose fan-in grows ``m`` times gets
                       ``1/m`` of the rate (hidden and readout kernels alike); an
                       input kernel or embedding of fixed fan-in keeps it
  ``inv_sqrt_fan_in``  ``1 / sqrt(n_in)``
  ===================  ===========================================================

  So at the base model every ``r`` is 1 and the learning rate means what it
  meant when it was tuned there. Place it after the step direction and before
  the learning rate, as in :func:`layer_adamw` with ``lr_scaling``::

    optax.chain(optax.scale_by_adam(), ll2.layer_lr("inv_fan_in", base=base),
                optax.scale_by_learning_rate(lr))

  With Adam, ``inv_fan_in`` is the per-layer rate of muP's ``MuAdam`` for
  hidden kernels and of Everett et al. (2024) for standard-parametrised
  networks (hidden and readout kernels ``1/m``, embeddings constant). Fans,
  ``dims``, paths and the checks of ``base`` are those of :func:`layer_l2`:
  the factors come from the same code as its ``s``.

  The factors are Python floats computed from shapes and paths when the step
  is traced: one multiply per scaled leaf, computed in at least float32 and
  rounded once. The state is ``optax.EmptyState()``; ``update`` needs no
  ``params`` (the updates' shapes are the params').

  Args:
    lr_scaling: a name in :data:`LR_SCALINGS` or a callable
      ``lr_scaling(info: LeafInfo) -> float`` giving ``c``; the same argument
      as :func:`layer_adamw`'s and :func:`describe`'s ``lr_scaling``.
    base: the params of the model on which the learning rate was tuned, or
      their shapes (``jax.eval_shape``), with the structure of the params;
      only shapes are kept. Required.
    mask: which leaves get a factor, as in :func:`layer_l2` (default: every
      floating leaf of rank at least 2, never a leaf named ``bias`` or
      ``scale``); every other leaf keeps the rate.
    dims: which axes are fan-in, fan-out and stacked layers, as in
      :func:`layer_l2` (:func:`infer_dims` output too).
    multipliers: a per-layer multiplier on the rate (0 freezes a layer): a
      mapping from regular expression to float (first match wins) or a
      callable ``(path, leaf) -> float``.
    scaling: the name of ``lr_scaling`` before version 0.4; deprecated.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs` with an empty state.

  Raises:
    ValueError: no ``base``, an unknown ``lr_scaling`` name, a negative or
      non-finite multiplier; at ``init`` and ``update``: a ``base`` of another
      structure or a base leaf of another rank, ``Dims`` axes out of range or
      overlapping, an ``lr_scaling`` callable giving a negative or non-finite
      value (each naming the leaf's path).
    TypeError: arguments of the wrong kind.

  Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> import optax_layer_l2 as ll2
    >>> def mlp(width):
    ...   return {"hidden": {"kernel": jnp.ones((40, width)), "bias": jnp.ones(width)},
    ...           "out": {"kernel": jnp.ones((width, 10)), "bias": jnp.ones(10)}}
    >>> tx = ll2.layer_lr("inv_fan_in", base=mlp(32))
    >>> params = mlp(128)
    >>> grads = jax.tree.map(jnp.ones_like, params)
    >>> updates, _ = tx.update(grads, tx.init(params), params)
    >>> updates["out"]["kernel"][0, 0]  # fan-in 128 against 32: a quarter of the rate
    Array(0.25, dtype=float32)
    >>> updates["hidden"]["kernel"][0, 0], updates["out"]["bias"][0]  # fixed fan-in; a bias
    (Array(1., dtype=float32), Array(1., dtype=float32))

    With Adam, muP-style rates and independent decay (each step shrinks a
    decayed weight by ``learning_rate * weight_decay``, not divided by ``r``):

    >>> tx = ll2.layer_adamw(1e-2, 0.1, "none", lr_scaling="inv_fan_in", base=mlp(32))

  References:
    - Yang et al., `Tensor Programs V: Tuning Large Neural Networks via
      Zero-Shot Hyperparameter Transfer <https://arxiv.org/abs/2203.03466>`_, 2022
      (muP, ``MuAdam``).
    - Everett et al., `Scaling Exponents Across Parameterizations and
      Optimizers <https://arxiv.org/abs/2407.05872>`_, 2024.
  """
  if scaling is not _UNSET:
    warnings.warn(
      "`layer_lr(scaling=...)` is now `layer_lr(lr_scaling=...)`, the name it has in "
      "`layer_adamw` and `describe`; `scaling=` will be removed after version 0.4.",
      DeprecationWarning,
      stacklevel=2,
    )
    lr_scaling = scaling
  rule = LeafRule.for_rates(
    lr_scaling, base=base, mask=mask, dims=dims, multipliers=multipliers, who="`layer_lr`"
  )
  return scale_by_rate_factors(rule)


def scale_by_rate_factors(rule: LeafRule) -> optax.GradientTransformationExtraArgs:
  """:func:`layer_lr`'s transformation, for a rule of :meth:`LeafRule.for_rates`."""

  def init_fn(params: optax.Params) -> optax.OptState:
    decide(rule, params)  # a bad `base`, `dims` or scaling raises here, not in the first step
    return optax.EmptyState()

  def update_fn(
    updates: optax.Updates,
    state: optax.OptState,
    params: optax.Params | None = None,
    **extra_args: Any,
  ) -> tuple[optax.Updates, optax.OptState]:
    del params, extra_args
    if updates is None:
      return updates, state
    factors = decide(rule, updates).rate_factors()
    return jax.tree.map(_scale_update, updates, factors, is_leaf=is_none), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
