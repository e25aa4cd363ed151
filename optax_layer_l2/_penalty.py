"""``penalty``: the regulariser whose gradient is the decay ``layer_l2`` adds."""

from typing import Any

import jax
import jax.numpy as jnp

from optax_layer_l2._masking import MaskOrFn
from optax_layer_l2._multipliers import Multipliers
from optax_layer_l2._numeric import compute_dtype, decayed_value
from optax_layer_l2._paths import is_none
from optax_layer_l2._reference import check_reference, reference_leaves
from optax_layer_l2._rule import DimsOption, LeafRule, decide
from optax_layer_l2._scaling import ScalingFn
from optax_layer_l2._weight_decay import check_weight_decay, coefficient


def _leaf_penalty(
  param: Any, scale: float | None, weight_decay: Any, reference: Any = None
) -> jax.Array | None:
  """``0.5 * weight_decay * s * ||w - w_ref||^2`` (``w_ref = 0`` if none) in at least float32."""
  if param is None:
    return None
  if not scale:
    return jnp.zeros((), jnp.float32)
  param = jnp.asarray(param)
  dtype = compute_dtype(param.dtype)
  coeff = jnp.asarray(coefficient(weight_decay, scale), dtype)
  wide = decayed_value(param, reference, dtype)
  return 0.5 * coeff * jnp.sum(wide * wide)


def leaf_penalties(params: Any, factors: Any, weight_decay: Any, targets: Any = None) -> Any:
  """The tree of per-leaf penalties, for the factors ``s`` and, where given, the references."""
  if targets is None:
    return jax.tree.map(
      lambda p, s: _leaf_penalty(p, s, weight_decay), params, factors, is_leaf=is_none
    )
  return jax.tree.map(
    lambda p, s, r: _leaf_penalty(p, s, weight_decay, r),
    params,
    factors,
    targets,
    is_leaf=is_none,
  )


def penalty(
  params: Any,
  weight_decay: jax.typing.ArrayLike,
  scaling: str | ScalingFn = "fan_avg",
  *,
  mask: MaskOrFn | None = None,
  dims: DimsOption | None = None,
  multipliers: Multipliers | None = None,
  base: Any | None = None,
  reference: Any | None = None,
  per_leaf: bool = False,
) -> Any:
  r"""The regulariser :math:`\tfrac{\lambda}{2} \sum_w s(w) \|w - w_\mathrm{ref}\|^2`.

  The sum runs over the decayed leaves. Without a ``reference``,
  :math:`w_\mathrm{ref} = 0`: the penalty is
  :math:`\tfrac{\lambda}{2} \sum_w s(w) \|w\|^2`.

  ``jax.grad(penalty)(params, ...)`` equals the term :func:`layer_l2` adds with
  the same arguments, to the last bit: both use the factors of :func:`scales`
  and the same coefficient. Log it beside the unregularised loss; adding it to
  the loss instead of using :func:`layer_l2` gives the same gradient.

  Args:
    params: the parameter tree.
    weight_decay: the rate ``lambda``, a number or a JAX scalar (evaluate a
      schedule at the step you want first).
    scaling: as in :func:`layer_l2`.
    mask: as in :func:`layer_l2`.
    dims: as in :func:`layer_l2`.
    multipliers: as in :func:`layer_l2`.
    base: as in :func:`layer_l2`.
    reference: the weights the decay pulls toward, a pytree with the
      structure of ``params`` (leaves that are not decayed may hold ``None``
      or ``optax.MaskedNode()``, so the ``reference`` of a
      :class:`LayerL2ReferenceState` works too); ``None``: zero.
    per_leaf: return a pytree of per-leaf values (0 where not decayed) instead
      of their sum.

  Returns:
    A float32 (or wider) scalar, or a pytree of them with the structure of
    ``params``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import optax_layer_l2 as ll2
    >>> params = {"dense": {"kernel": jnp.ones((4, 4)), "bias": jnp.ones(4)}}
    >>> ll2.penalty(params, 0.1, "fan_avg")  # 0.5 * 0.1 * (8 / 16) * 16
    Array(0.4, dtype=float32)
    >>> jax.grad(ll2.penalty)(params, 0.1)["dense"]["kernel"][0, 0]
    Array(0.05, dtype=float32)

    Toward a reference, for L2-SP:

    >>> pretrained = {"dense": {"kernel": jnp.full((4, 4), 0.5), "bias": jnp.ones(4)}}
    >>> ll2.penalty(params, 0.1, reference=pretrained)  # 0.5 * 0.1 * (8 / 16) * 16 * 0.5**2
    Array(0.1, dtype=float32)

  Raises:
    ValueError: a ``reference`` of another structure, or a reference leaf of
      another shape, naming the leaf's path; and the errors of
      :func:`layer_l2`.
    TypeError: a reference leaf of another dtype, naming the leaf's path.
  """
  check_weight_decay(weight_decay, allow_schedule=False)
  check_reference(reference, allow_init=False)
  rule = LeafRule.build(scaling, mask=mask, dims=dims, multipliers=multipliers, base=base)
  factors = decide(rule, params).scales()
  targets = None if reference is None else reference_leaves(reference, params, factors)
  values = leaf_penalties(params, factors, weight_decay, targets)
  if per_leaf:
    return values
  leaves = jax.tree.leaves(values)
  if not leaves:
    return jnp.zeros((), jnp.float32)
  return sum(leaves[1:], start=leaves[0])
