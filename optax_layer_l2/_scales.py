"""``scales``: the per-leaf factor ``s`` of the decay, as a tree of Python floats."""

from typing import Any

from optax_layer_l2._masking import MaskOrFn
from optax_layer_l2._multipliers import Multipliers
from optax_layer_l2._rule import DimsOption, LeafRule, decide
from optax_layer_l2._scaling import ScalingFn


def scales(
  params: Any,
  scaling: str | ScalingFn = "fan_avg",
  *,
  mask: MaskOrFn | None = None,
  dims: DimsOption | None = None,
  multipliers: Multipliers | None = None,
  base: Any | None = None,
) -> Any:
  """The per-leaf factor ``s`` that :func:`layer_l2` multiplies ``weight_decay`` by.

  ``s = c(leaf) * multiplier(leaf)`` for a decayed leaf and ``0.0`` for every
  other one, as Python floats; with ``base``, ``s = c(leaf) / c(base leaf) *
  multiplier(leaf)``. Only shapes, dtypes and paths are read, so the output
  of ``jax.eval_shape`` works as ``params`` and as ``base``.

  Args:
    params: the parameter tree (arrays or ``jax.ShapeDtypeStruct``).
    scaling: a name in :data:`SCALINGS` (``"none"``: 1, ``"numel"``:
      ``1/numel``, ``"fan_avg"``: ``(fan_in + fan_out)/numel``, ``"fan_in"``:
      ``fan_in/numel``, ``"fan_out"``: ``fan_out/numel``, ``"sqrt_fan_in"``:
      ``sqrt(fan_in)``, ``"sqrt_fan_avg"``: ``sqrt((fan_in + fan_out)/2)``,
      ``"inv_sqrt_fan_in"``: ``1/sqrt(fan_in)``; the last three are meant for
      use with ``base``) or a callable ``scaling(info: LeafInfo) -> float``.
    mask: a pytree of bools with the structure of ``params`` (or a prefix of
      it), or a callable returning one. By default every floating leaf of rank
      at least 2 is decayed, except leaves named ``bias`` or ``scale``; with
      :func:`infer_dims` output as ``dims``, every leaf the computation
      contracts with data, and no other.
    dims: which axes are fan-in, fan-out and stacked layers: the output of
      :func:`infer_dims`, a pytree of :class:`Dims`/``None`` (or a prefix of
      one), or a callable ``(path, leaf) -> Dims | None``; ``None`` uses the
      default rule.
    multipliers: a per-layer multiplier on ``weight_decay``: a mapping from
      regular expression to float (the first pattern that ``re.search`` finds
      in the path wins) or a callable ``(path, leaf) -> float``.
    base: the base model on which ``weight_decay`` was tuned: its params or
      their shapes (``jax.eval_shape``), with the structure of ``params``.
      Every scaling, named or callable, is then relative to it, so at the base
      each one is plain L2. ``None``: absolute factors.

  Returns:
    A pytree with the structure of ``params`` holding a float per leaf
    (``None`` leaves stay ``None``).

  Raises:
    ValueError: a ``base`` of another structure, a base leaf of another rank,
      or one whose factor is 0, naming the leaf's path; and the errors of
      :func:`layer_l2`.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax_layer_l2 as ll2
    >>> params = {"dense": {"kernel": jnp.zeros((40, 256)), "bias": jnp.zeros(256)}}
    >>> s = ll2.scales(params, "fan_avg")
    >>> round(s["dense"]["kernel"], 6), s["dense"]["bias"]
    (0.028906, 0.0)

    Relative to a base model of width 64, a kernel of width 256 gets twice
    the base's factor under ``sqrt_fan_in``, and the base itself plain L2:

    >>> wide = {"dense": {"kernel": jnp.zeros((256, 256)), "bias": jnp.zeros(256)}}
    >>> narrow = {"dense": {"kernel": jnp.zeros((64, 64)), "bias": jnp.zeros(64)}}
    >>> ll2.scales(wide, "sqrt_fan_in", base=narrow)["dense"]["kernel"]
    2.0
    >>> ll2.scales(narrow, "fan_avg", base=narrow)["dense"]["kernel"]
    1.0
  """
  rule = LeafRule.build(scaling, mask=mask, dims=dims, multipliers=multipliers, base=base)
  return decide(rule, params).scales()
