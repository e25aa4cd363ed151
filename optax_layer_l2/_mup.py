"""The init half of muP: ``rescale_init``, and the query kernel's multiplier.

For Adam, muP's model-side multipliers can be moved into the initialisation
and the per-layer learning rates (the abc-symmetry of Tensor Programs V: a
forward multiplier ``a`` on a weight trains, under Adam, as the weight's
initialisation scaled by ``a`` with its learning rate scaled by ``a`` and
Adam's epsilon by ``1/a``). So a standard model, initialised by its
framework and trained with the per-layer rates of :func:`layer_lr`, gets
muP's whole recipe (Table 3, Adam) with one more step before training,
:func:`rescale_init`. Relative to the base model, with ``m = fan_in /
fan_in(base)``:

================  ================================  =======================
leaf              initial variance (muP, Table 3)   Adam rate ``r``
================  ================================  =======================
input, embedding  the base's (fan-in fixed)         1
hidden            the base's / ``m``                ``1/m``
readout           the base's / ``m**2``             ``1/m``
query kernel      hidden's, times ``a**2``          ``a / m``
================  ================================  =======================

A leaf is a readout when its fan-in grows and its fan-out does not; input
when its fan-in does not grow. ``a = sqrt(head_dim(base) / head_dim)`` turns
the model's ``1/sqrt(head_dim)`` attention logits into muP's ``1/head_dim``
(equal at the base). The rates are :data:`LR_SCALINGS` ``"mup"``
(:func:`query_factor` is the one place ``a`` is computed, for both).
"""

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optax_layer_l2._attention import QUERY, query_factor
from optax_layer_l2._base import shapes_of
from optax_layer_l2._masking import MaskOrFn
from optax_layer_l2._numeric import compute_dtype
from optax_layer_l2._paths import flatten_with_paths
from optax_layer_l2._rule import DimsOption, LeafRule, decide


def _rms(value: jax.Array, dtype: Any) -> jax.Array:
  wide = value.astype(dtype)
  return jnp.sqrt(jnp.mean(wide * wide))


def _is_concrete(value: Any) -> bool:
  return not isinstance(value, jax.core.Tracer)


def rescale_init(
  params: Any,
  *,
  base: Any,
  dims: DimsOption | None = None,
  mask: MaskOrFn | None = None,
  query: str | None = QUERY,
  zero_readout: bool = False,
) -> Any:
  r"""``params`` rescaled so that a wider model starts as muP prescribes relative to ``base``.

  Run it once, on the freshly initialised wide model, before training (it
  works under ``jax.jit`` and ``jax.vmap`` too, over seeds say);
  train with per-layer rates ``lr_scaling="mup"`` relative to the same base
  (:func:`layer_adamw` or :func:`layer_lr`). Each selected leaf ``w`` (the
  default mask's: kernels and embeddings) is multiplied by

  .. math::

    \frac{\mathrm{rms}(w_\mathrm{base})}{\mathrm{rms}(w)} \,
    m^{-1/2} \, (m^{-1/2} \text{ for a readout}) \, a ,
    \qquad m = \frac{\mathrm{fan\_in}}{\mathrm{fan\_in}(w_\mathrm{base})},

  so its size is the base leaf's, scaled as muP's Table 3 (Adam) scales it:
  an input layer or embedding keeps the base's size, a hidden kernel's
  variance falls as ``1/m``, a readout's as ``1/m**2``, and a query kernel
  gets ``a = sqrt(head_dim(base) / head_dim)`` more (see the module's table).
  The sizes are measured, so whatever initializer the framework used (Flax's
  ``Embed`` draws rows of variance ``1/features``, Equinox's of variance 1),
  the result is the same relative to the base. A leaf of the base's shape is
  returned as it is: at the base, ``rescale_init`` is the identity, exactly.

  What stays the model's job: an embedding tied to the readout (one leaf
  cannot be both; :func:`infer_dims` reports it), QK-norm (it undoes the
  query's scale; scale its logits in the model), post-norm residual blocks,
  and any multiplier the model already applies.

  Args:
    params: the wide model's initial params (arrays), as its framework made them.
    base: the base model's initial params (arrays, from the same
      initializer), with the structure of ``params``: the model the learning
      rate was tuned on. Shapes alone cannot say what size the initializer
      gave each leaf, so arrays are needed.
    dims: as in :func:`layer_l2` (:func:`infer_dims` output too): which axes
      are fan-in and fan-out, so which leaves are input, hidden or readout.
    mask: which leaves to rescale, as :func:`layer_l2`'s (default: its
      default rule, or the leaves :func:`infer_dims` found contracted).
    query: a regular expression for the paths of the attention query
      kernels whose logits muP scales by ``1/head_dim`` (default: Flax's);
      ``None`` leaves the logits to the model.
    zero_readout: start every readout at zero (muP allows it; with it the
      readout's rate still follows ``1/m``).

  Returns:
    ``params`` with the selected leaves rescaled, in their own dtypes.

  Raises:
    TypeError: a ``base`` of shapes only, naming a leaf to be measured.
    ValueError: the errors of ``base`` in :func:`layer_l2`; a query kernel
      with one fan-out axis; a base leaf whose size is zero where the wide
      leaf's is not.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> import optax_layer_l2 as ll2
    >>> def mlp(width, key):  # LeCun-normal kernels, as Flax's Dense draws them
    ...   k1, k2, k3 = jax.random.split(key, 3)
    ...   init = jax.nn.initializers.lecun_normal()
    ...   return {"hidden": {"kernel": init(k1, (40, width))},
    ...           "middle": {"kernel": init(k2, (width, width))},
    ...           "out": {"kernel": init(k3, (width, 10))}}
    >>> base, wide = mlp(32, jax.random.key(0)), mlp(128, jax.random.key(1))
    >>> start = ll2.rescale_init(wide, base=base)
    >>> def rms(w):
    ...   return float(jnp.sqrt(jnp.mean(w * w)))
    >>> [round(rms(start[k]["kernel"]) / rms(base[k]["kernel"]), 3) for k in start]
    [1.0, 0.5, 0.25]
    >>> ll2.rescale_init(base, base=base) is not None  # identity at the base
    True
  """
  rule = LeafRule.build("none", mask=mask, dims=dims, base=shapes_of(base))
  decisions = decide(rule, params)
  base_paths, base_leaves, _ = flatten_with_paths(base)
  base_by_path = dict(zip(base_paths, base_leaves, strict=True))
  leaves = decisions.treedef.flatten_up_to(params)
  out = []
  for decision, leaf in zip(decisions.leaves, leaves, strict=True):
    if not decision.selected or decision.shape == decision.base_shape:
      out.append(leaf)
      continue
    assert decision.fans is not None and decision.base_fans is not None
    base_leaf = base_by_path[decision.path]
    if not isinstance(base_leaf, (jax.Array, np.ndarray, jax.core.Tracer)):
      raise TypeError(
        f"`rescale_init` needs the base model's initial params (arrays) in `base`; at leaf "
        f"{decision.path!r} it holds {type(base_leaf).__name__}. It measures the size the "
        "framework's initializer gave each leaf at the base, whatever the initializer."
      )
    m = decision.fans.fan_in / decision.base_fans.fan_in
    readout = m != 1 and decision.fans.fan_out == decision.base_fans.fan_out
    if readout and zero_readout:
      out.append(jnp.zeros_like(leaf))
      continue
    factor = 1.0 / math.sqrt(m) * (1.0 / math.sqrt(m) if readout else 1.0)
    if query is not None:
      assert decision.shape is not None and decision.base_shape is not None
      assert decision.dims is not None
      wide = query_factor(decision.path, decision.shape, decision.dims, query)
      factor *= wide / query_factor(decision.path, decision.base_shape, decision.dims, query)
    value = jnp.asarray(leaf)
    dtype = compute_dtype(value.dtype)
    size, base_size = _rms(value, dtype), _rms(jnp.asarray(base_leaf), dtype)
    if _is_concrete(base_size) and _is_concrete(size) and base_size == 0.0 and size != 0.0:
      raise ValueError(
        f"`rescale_init`: `base` leaf {decision.path!r} is all zeros but the leaf is not; "
        "the base's size is the size to scale from."
      )
    # A zero start stays zero: it has no size to rescale.
    ratio = jnp.where(size > 0, base_size / jnp.where(size > 0, size, 1), 1)
    out.append((value.astype(dtype) * (ratio * jnp.asarray(factor, dtype))).astype(value.dtype))
  return decisions.tree(out)
