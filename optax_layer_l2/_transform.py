"""``layer_l2``: the gradient transformation that adds per-layer scaled decay."""

from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import optax

from optax_layer_l2._masking import MaskOrFn
from optax_layer_l2._multipliers import Multipliers
from optax_layer_l2._numeric import compute_dtype, decayed_value
from optax_layer_l2._paths import first_difference, is_none
from optax_layer_l2._reference import STATE, check_reference, reference_leaves, stored_reference
from optax_layer_l2._rule import DimsOption, LeafRule, decide
from optax_layer_l2._scaling import ScalingFn
from optax_layer_l2._weight_decay import check_weight_decay, coefficient, is_static_zero


class LayerL2State(NamedTuple):
  """State of :func:`layer_l2` with a scheduled ``weight_decay``.

  A constant ``weight_decay`` keeps no state: ``init`` returns
  ``optax.EmptyState()``.

  Attributes:
    count: the number of updates so far; the schedule is evaluated at it.

  Examples:
    >>> import jax.numpy as jnp, optax
    >>> import optax_layer_l2 as ll2
    >>> tx = ll2.layer_l2(optax.linear_schedule(0.0, 1e-2, transition_steps=100))
    >>> tx.init({"kernel": jnp.zeros((4, 4))})
    LayerL2State(count=Array(0, dtype=int32))
  """

  # `count` shadows `tuple.count`, as in Optax's states; mypy flags the override.
  count: jax.Array  # type: ignore[assignment]  # shape=(), dtype=int32


class LayerL2ReferenceState(NamedTuple):
  """State of :func:`layer_l2` with a ``reference``: the weights it decays toward.

  ``reference`` holds one copy of each decayed leaf's reference, with the
  leaf's dtype and sharding; every leaf that is not decayed holds an
  ``optax.MaskedNode()``, which is nothing. So the state costs exactly the
  bytes of the decayed leaves, and four more with a schedule.

  Attributes:
    count: the number of updates so far, for a scheduled ``weight_decay``;
      ``None`` for a constant one.
    reference: a tree with the structure of the params.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax_layer_l2 as ll2
    >>> params = {"kernel": jnp.ones((2, 2)), "bias": jnp.zeros(2)}
    >>> ll2.layer_l2(1e-2, reference="init").init(params)
    LayerL2ReferenceState(count=None, reference={'bias': MaskedNode(), 'kernel': Array([[1., 1.],
           [1., 1.]], dtype=float32)})
  """

  count: jax.Array | None  # type: ignore[assignment]  # shape=(), dtype=int32
  reference: optax.Params


def _add_decay(
  update: Any, param: Any, scale: float | None, weight_decay: Any, reference: Any = None
) -> Any:
  """``update + weight_decay * scale * (param - reference)``, rounded once to the update's dtype.

  Without a reference, ``update + weight_decay * scale * param``.
  """
  if update is None or not scale:
    return update
  # For float32 leaves every cast below is of an array to its own dtype, which
  # JAX does not trace: the program is `add_decayed_weights`', one multiply
  # and one add, the coefficient a float32 literal (tests/test_core_reference.py).
  coeff = coefficient(weight_decay, scale)
  update = jnp.asarray(update)
  dtype = compute_dtype(update.dtype, param.dtype)
  coeff = jnp.asarray(coeff, dtype)
  return (update.astype(dtype) + coeff * decayed_value(param, reference, dtype)).astype(
    update.dtype
  )


def layer_l2(
  weight_decay: optax.ScalarOrSchedule,
  scaling: str | ScalingFn = "fan_avg",
  *,
  mask: MaskOrFn | None = None,
  dims: DimsOption | None = None,
  multipliers: Multipliers | None = None,
  base: optax.Params | None = None,
  reference: optax.Params | str | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Adds ``weight_decay * s(leaf) * w`` to the update of each decayed leaf.

  For each leaf ``w`` the mask decays, with ``s = c(w) * multiplier(w)``:

  .. math::

    g \leftarrow g + \lambda \, s(w) \, w ,

  the gradient of the penalty :math:`\tfrac{\lambda}{2} \sum_w s(w) \|w\|^2`
  (see :func:`penalty`). Every other leaf is returned as it came. The factor
  ``c`` comes from ``scaling``; for a dense kernel of shape ``(n_in, n_out)``:

  ===================  ===================================================
  ``none``             ``1`` (plain L2)
  ``numel``            ``1 / (n_in * n_out)``
  ``fan_avg``          ``(n_in + n_out) / (n_in * n_out)``
  ``fan_in``           ``1 / n_out`` (``fan_in / numel``)
  ``fan_out``          ``1 / n_in`` (``fan_out / numel``)
  ``sqrt_fan_in``      ``sqrt(n_in)``, meant for use with ``base``
  ``sqrt_fan_avg``     ``sqrt((n_in + n_out) / 2)``, meant for use with ``base``
  ``inv_sqrt_fan_in``  ``1 / sqrt(n_in)``, meant for use with ``base``
  ===================  ===================================================

  With ``base``, the params (or shapes) of the model on which
  ``weight_decay`` was tuned, every scaling is relative to it:
  ``s = c(w) / c(w_base) * multiplier(w)``. At the base each scaling is then
  plain L2. To reuse a ``weight_decay`` tuned at the base on a wider model,
  with the learning rate tuned there too, the width studies of version 0.3
  recommend per-layer rates and independent decay, ``layer_adamw(lr, wd,
  "none", lr_scaling="inv_fan_in", base=base)``, for a model trained in one
  pass over plenty of data; with one learning rate for every layer,
  ``sqrt_fan_avg`` for decoupled decay and plain ``none`` for coupled decay
  (see the guide, "Tuning once" and "Reusing lambda at another width").

  With ``reference``, the decay pulls each decayed leaf toward its reference
  ``w_ref`` instead of toward zero (L2-SP, for fine-tuning):

  .. math::

    g \leftarrow g + \lambda \, s(w) \, (w - w_\mathrm{ref}) ,

  the gradient of :math:`\tfrac{\lambda}{2} \sum_w s(w) \|w - w_\mathrm{ref}\|^2`.
  The reference is kept in the optimizer state (:class:`LayerL2ReferenceState`),
  one copy of the decayed leaves only, so the compiled step reads it as an
  argument, and checkpoints carry it.

  Where it stands in the chain decides what it is. Before ``optax.adam`` it is
  L2 regularisation: the decay joins the gradient and Adam normalises both,
  so the learning rate scales it. Between ``optax.scale_by_adam`` and
  ``optax.scale_by_learning_rate`` it is decoupled, AdamW-style decay: the
  step is ``learning_rate * weight_decay * s * w``, untouched by Adam's
  normalisation (that chain is :func:`layer_adamw`).

  The factors are Python floats computed from shapes and paths when the step
  is traced; the compiled program holds one multiply-add per decayed leaf.
  The decay (and ``w - w_ref``) is computed in at least float32 and rounded
  once to the update's dtype, so half-precision parameters do not lose it to
  underflow.

  Args:
    weight_decay: the rate ``lambda``: a float, a JAX scalar (it may be traced:
      ``jax.vmap`` over it sweeps many rates in one program) or an Optax
      schedule of the step count.
    scaling: a name from the table above or a callable
      ``scaling(info: LeafInfo) -> float`` giving ``c``.
    mask: which leaves to decay: a pytree of bools with the structure of the
      params (or a prefix of it), or a callable returning one, as in
      ``optax.add_decayed_weights``. Default: every floating leaf of rank at
      least 2 (kernels, embeddings), never a leaf named ``bias`` or ``scale``.
    dims: which axes are fan-in, fan-out and stacked layers: the output of
      :func:`infer_dims` (read from the model's computation; the default mask
      then decays exactly the leaves it contracts with data), a pytree of
      :class:`Dims`/``None`` or a callable ``(path, leaf) -> Dims | None``.
      Default: the rule of ``jax.nn.initializers.variance_scaling``, with Flax
      attention kernels recognised by path.
    multipliers: a per-layer multiplier on ``weight_decay`` (0 switches a layer
      off): a mapping from regular expression to float (first match wins) or a
      callable ``(path, leaf) -> float``.
    base: the params of the base model on which ``weight_decay`` was tuned,
      or their shapes (``jax.eval_shape``), with the structure of the params;
      only shapes are kept. ``None``: absolute factors.
    reference: what the decay pulls toward. ``None`` (default): zero.
      ``"init"``: the params given to ``init`` (when fine-tuning starts from
      pretrained weights, those weights). Or a pytree of arrays with the
      structure, shapes and dtypes of the params, copied into the state at
      ``init``.

  Returns:
    An :class:`optax.GradientTransformationExtraArgs`. Its state is
    ``optax.EmptyState()`` for a constant ``weight_decay`` and
    :class:`LayerL2State` (one int32 step count) for a schedule; with a
    ``reference``, :class:`LayerL2ReferenceState` (the reference of each
    decayed leaf, and the count for a schedule). ``update`` needs ``params``.

  Raises:
    ValueError: a negative or non-finite constant ``weight_decay`` or
      multiplier, an unknown ``scaling`` name; at the first ``update``: no
      ``params``, ``updates`` and ``params`` of different structure, ``Dims``
      axes out of range or overlapping, a ``scaling`` callable giving a
      negative or non-finite value, a ``base`` of another structure or a
      base leaf of another rank, an unknown ``reference`` string, and at
      ``init`` a ``reference`` of another structure or shape (each naming
      the leaf's path).
    TypeError: arguments of the wrong kind; at ``init``, a ``reference`` leaf
      of another dtype than its leaf (naming the path).

  Examples:
    >>> import jax, jax.numpy as jnp, optax
    >>> import optax_layer_l2 as ll2
    >>> params = {"dense": {"kernel": jnp.ones((4, 4)), "bias": jnp.ones(4)}}
    >>> tx = ll2.layer_l2(0.1, scaling="fan_avg")
    >>> grads = jax.tree.map(jnp.zeros_like, params)
    >>> updates, _ = tx.update(grads, tx.init(params), params)
    >>> updates["dense"]["kernel"][0, 0]  # 0.1 * (4 + 4) / 16 * 1.0
    Array(0.05, dtype=float32)
    >>> updates["dense"]["bias"][0]  # biases are not decayed
    Array(0., dtype=float32)

    As L2 regularisation before Adam:

    >>> tx = optax.chain(ll2.layer_l2(1e-4, scaling="fan_avg"), optax.adam(1e-3))

    Toward the weights the optimizer starts from (L2-SP):

    >>> tx = ll2.layer_l2(0.1, reference="init")
    >>> state = tx.init(params)
    >>> moved = jax.tree.map(lambda w: w + 2.0, params)  # after some training
    >>> updates, state = tx.update(grads, state, moved)
    >>> updates["dense"]["kernel"][0, 0]  # 0.1 * (4 + 4) / 16 * (3.0 - 1.0)
    Array(0.1, dtype=float32)

  References:
    - Glorot & Bengio, `Understanding the difficulty of training deep
      feedforward neural networks <https://proceedings.mlr.press/v9/glorot10a.html>`_, 2010.
    - Loshchilov & Hutter, `Decoupled Weight Decay Regularization
      <https://arxiv.org/abs/1711.05101>`_, 2019.
    - Li, Grandvalet & Davoine, `Explicit Inductive Bias for Transfer Learning
      with Convolutional Networks <https://arxiv.org/abs/1802.01483>`_, 2018
      (L2-SP).
  """
  check_weight_decay(weight_decay)
  check_reference(reference)
  rule = LeafRule.build(scaling, mask=mask, dims=dims, multipliers=multipliers, base=base)

  def init_fn(params: optax.Params) -> optax.OptState:
    count = jnp.zeros([], jnp.int32) if callable(weight_decay) else None
    if reference is not None:
      factors = decide(rule, params).scales()
      state = LayerL2ReferenceState(count, stored_reference(reference, params, factors))
      # Optax's `OptState` alias admits no `None`, the count of a constant
      # `weight_decay`, though JAX takes it as an empty subtree.
      return cast(optax.OptState, state)
    if count is not None:
      return LayerL2State(count=count)
    return optax.EmptyState()

  def update_fn(
    updates: optax.Updates,
    state: optax.OptState,
    params: optax.Params | None = None,
    **extra_args: Any,
  ) -> tuple[optax.Updates, optax.OptState]:
    del extra_args
    _check_update_arguments(updates, params)
    rate, state = _weight_decay_now(weight_decay, state)
    if is_static_zero(rate):
      return updates, state
    factors = decide(rule, params).scales()
    targets = None
    if reference is not None:
      # With a `reference`, `init_fn` made a `LayerL2ReferenceState`.
      stored = cast(LayerL2ReferenceState, state).reference
      targets = reference_leaves(stored, params, factors, name=STATE)
    return _decayed(updates, params, factors, rate, targets), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _check_update_arguments(updates: optax.Updates, params: optax.Params | None) -> None:
  """Raises unless ``update`` was given ``params`` of the structure of ``updates``."""
  if params is None:
    raise ValueError(
      "`layer_l2` needs the parameters: call `update(updates, state, params)`. "
      "The decay is proportional to them."
    )
  updates_def: jax.tree_util.PyTreeDef  # annotated: jaxlib ships no stubs for it
  updates_def = jax.tree.structure(updates, is_leaf=is_none)
  params_def = jax.tree.structure(params, is_leaf=is_none)
  # `updates=None` comes back as `None`, as from `optax.add_decayed_weights`.
  if updates is not None and updates_def != params_def:
    raise ValueError(
      "`updates` and `params` must have the same tree structure; "
      f"{first_difference(updates, params)}."
    )


def _weight_decay_now(
  weight_decay: optax.ScalarOrSchedule, state: optax.OptState
) -> tuple[Any, optax.OptState]:
  """This step's ``weight_decay``, and the state with a schedule's count advanced."""
  if not callable(weight_decay):
    return weight_decay, state
  # `init_fn` gave a schedule a state with a count: a `LayerL2State`, or a
  # `LayerL2ReferenceState`, whose `count` and `_replace` are the same.
  counted = cast(LayerL2State, state)
  rate = weight_decay(counted.count)
  # `safe_increment` is annotated to return any number; given an array, it returns one.
  count = cast(jax.Array, optax.safe_increment(counted.count))
  return rate, counted._replace(count=count)


def _decayed(updates: Any, params: Any, factors: Any, rate: Any, targets: Any) -> Any:
  """Each update with its leaf's decay added, toward ``targets`` where there are some."""
  if targets is None:
    return jax.tree.map(
      lambda g, p, s: _add_decay(g, p, s, rate), updates, params, factors, is_leaf=is_none
    )
  return jax.tree.map(
    lambda g, p, s, r: _add_decay(g, p, s, rate, r),
    updates,
    params,
    factors,
    targets,
    is_leaf=is_none,
  )
