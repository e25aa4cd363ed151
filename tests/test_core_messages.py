"""Every error message, word for word.

`test_core_errors.py` checks that each misuse is caught and that the message
names the argument and the leaf; here each message is compared whole, so that
no part of one (the advice included) can change unnoticed.
"""

import jax
import jax.numpy as jnp
import optax
import pytest
from conftest import GRADS, PARAMS, ShapeOnly, first_update

import optax_layer_l2 as ll2

KERNEL_ONLY = {"dense": {"kernel": True, "bias": False}}
PAIR = (jnp.ones((4, 3)), jnp.ones(3))  # the paths of a list, in a tuple


class Shaped:
  """Has a shape but no dtype, and a short repr."""

  shape = (4, 3)

  def __repr__(self):
    return "Shaped((4, 3))"


def with_base(base, scaling="fan_avg"):
  return lambda: ll2.scales(PARAMS, scaling, base=base)


CASES = {
  # weight_decay
  "schedule where a value is needed": (
    lambda: ll2.penalty(PARAMS, optax.constant_schedule(0.1)),
    TypeError,
    "`weight_decay` must be a number here, not a schedule; pass its value at the step you "
    "want, e.g. `schedule(step)`.",
  ),
  "schedule for a report of shapes": (
    lambda: ll2.describe(jax.eval_shape(lambda: PARAMS), optax.constant_schedule(0.1)),
    TypeError,
    "`weight_decay` must be a number here, not a schedule; pass its value at the step you "
    "want, e.g. `schedule(step)`.",
  ),
  "weight_decay string": (
    lambda: ll2.layer_l2("1e-4"),
    TypeError,
    "`weight_decay` must be a float, a JAX scalar or an Optax schedule, got '1e-4'.",
  ),
  "weight_decay bool": (
    lambda: ll2.layer_l2(True),
    TypeError,
    "`weight_decay` must be a float, a JAX scalar or an Optax schedule, got True.",
  ),
  "weight_decay complex": (
    lambda: ll2.layer_l2(1j),
    TypeError,
    "`weight_decay` must be a float, a JAX scalar or an Optax schedule, got 1j.",
  ),
  "weight_decay numpy cannot read": (
    lambda: ll2.layer_l2([[1.0], [1.0, 2.0]]),
    TypeError,
    "`weight_decay` must be a float, a JAX scalar or an Optax schedule, got [[1.0], [1.0, 2.0]].",
  ),
  "weight_decay vector": (
    lambda: ll2.layer_l2(jnp.ones(2)),
    ValueError,
    "`weight_decay` must be a scalar, got shape (2,); to sweep many values, `jax.vmap` over "
    "a scalar `weight_decay` instead.",
  ),
  "weight_decay negative": (
    lambda: ll2.layer_l2(-0.5),
    ValueError,
    "`weight_decay` is -0.5; it must be finite and non-negative.",
  ),
  "weight_decay infinite": (
    lambda: ll2.penalty(PARAMS, float("inf")),
    ValueError,
    "`weight_decay` is inf; it must be finite and non-negative.",
  ),
  # scaling
  "unknown scaling": (
    lambda: ll2.layer_l2(0.1, "fan-avg"),
    ValueError,
    "`scaling='fan-avg'` is not a known scaling; use one of 'none' (1), 'numel' (1/numel), "
    "'fan_avg' ((fan_in + fan_out)/numel), 'fan_in' (fan_in/numel), 'fan_out' "
    "(fan_out/numel), 'sqrt_fan_in' (sqrt(fan_in)), 'sqrt_fan_avg' (sqrt((fan_in + "
    "fan_out)/2)), 'inv_sqrt_fan_in' (1/sqrt(fan_in)), or a callable "
    "`scaling(info: LeafInfo) -> float`.",
  ),
  "scaling of the wrong type": (
    lambda: ll2.layer_l2(0.1, 3),
    TypeError,
    "`scaling` must be a scaling name or a callable `scaling(info: LeafInfo) -> float`, got 3.",
  ),
  "scaling giving a string": (
    lambda: first_update(ll2.layer_l2(0.1, lambda info: "abc")),
    TypeError,
    "`scaling` must give a Python number for leaf 'dense/kernel', got 'abc'; it is evaluated "
    "on shapes, once per trace, not on traced values.",
  ),
  "scaling giving a negative number": (
    lambda: first_update(ll2.layer_l2(0.1, lambda info: -1.0)),
    ValueError,
    "`scaling` gave -1.0 for leaf 'dense/kernel'; it must be finite and non-negative.",
  ),
  # multipliers
  "multipliers key not a string": (
    lambda: ll2.layer_l2(0.1, multipliers={1: 2.0}),
    TypeError,
    "`multipliers` keys must be regular-expression strings, got 1.",
  ),
  "multipliers key not a regular expression": (
    lambda: ll2.layer_l2(0.1, multipliers={"(": 2.0}),
    ValueError,
    "`multipliers['(']`: not a regular expression (missing ), unterminated subpattern at "
    "position 0).",
  ),
  "multipliers value a string": (
    lambda: ll2.layer_l2(0.1, multipliers={"dense": "2"}),
    TypeError,
    "`multipliers['dense']` must be a number, got '2'.",
  ),
  "multipliers value a bool": (
    lambda: ll2.layer_l2(0.1, multipliers={"dense": True}),
    TypeError,
    "`multipliers['dense']` must be a number, got True.",
  ),
  "multipliers value negative": (
    lambda: ll2.layer_l2(0.1, multipliers={"dense": -2.0}),
    ValueError,
    "`multipliers['dense']` is -2.0; it must be finite and non-negative.",
  ),
  "multipliers value infinite": (
    lambda: ll2.layer_l2(0.1, multipliers={"dense": float("inf")}),
    ValueError,
    "`multipliers['dense']` is inf; it must be finite and non-negative.",
  ),
  "multipliers callable giving nan": (
    lambda: first_update(ll2.layer_l2(0.1, multipliers=lambda path, leaf: float("nan"))),
    ValueError,
    "`multipliers` gave nan for leaf 'dense/kernel'; it must be finite and non-negative.",
  ),
  "multipliers of the wrong type": (
    lambda: ll2.layer_l2(0.1, multipliers=3),
    TypeError,
    "`multipliers` must be a mapping from regular expression to float, or a callable "
    "`(path, leaf) -> float`, got 3.",
  ),
  # mask
  "mask holding a float": (
    lambda: first_update(ll2.layer_l2(0.1, mask={"dense": {"kernel": 1.0, "bias": False}})),
    TypeError,
    "`mask` must hold Python bools; for leaf 'dense/kernel' it holds 1.0. The mask is "
    "static: it is read once per trace, not on device.",
  ),
  "mask with a None entry params lack": (
    # A `None` entry is an entry (it covers its subtree), so it is the one named.
    lambda: ll2.scales(PARAMS, mask={"dense": None, "extra": None}),
    ValueError,
    "`mask` must have the structure of `params`, or of a prefix of it; `mask` has the entry "
    "'extra', which `params` lacks.",
  ),
  "mask with an entry params lack after one that covers a subtree": (
    lambda: ll2.scales(PARAMS, mask={"dense": True, "nope": True}),
    ValueError,
    "`mask` must have the structure of `params`, or of a prefix of it; `mask` has the entry "
    "'nope', which `params` lacks.",
  ),
  "mask a list for a tuple": (
    lambda: ll2.scales(PAIR, mask=[True, False]),
    ValueError,
    "`mask` must have the structure of `params`, or of a prefix of it; their paths agree but "
    "their containers differ: `mask` is PyTreeDef([*, *]), `params` is PyTreeDef((*, *)).",
  ),
  # update
  "update without params": (
    lambda: ll2.layer_l2(0.1).update(GRADS, ll2.layer_l2(0.1).init(PARAMS)),
    ValueError,
    "`layer_l2` needs the parameters: call `update(updates, state, params)`. The decay is "
    "proportional to them.",
  ),
  "updates lacking a leaf": (
    lambda: first_update(ll2.layer_l2(0.1), grads={"dense": {"kernel": jnp.ones((4, 3))}}),
    ValueError,
    "`updates` and `params` must have the same tree structure; `params` has the leaf "
    "'dense/bias', which `updates` lacks.",
  ),
  "updates with an extra leaf": (
    lambda: first_update(
      ll2.layer_l2(0.1), grads={"dense": {**GRADS["dense"], "extra": jnp.ones(1)}}
    ),
    ValueError,
    "`updates` and `params` must have the same tree structure; `updates` has the leaf "
    "'dense/extra', which `params` lacks.",
  ),
  "updates a bare array": (
    lambda: first_update(ll2.layer_l2(0.1), grads=jnp.ones(3)),
    ValueError,
    "`updates` and `params` must have the same tree structure; `updates` is a single leaf, "
    "`params` is a tree of 2 leaves.",
  ),
  "params a bare array": (
    lambda: first_update(ll2.layer_l2(0.1), params=jnp.ones(3), grads={"w": jnp.ones(3)}),
    ValueError,
    "`updates` and `params` must have the same tree structure; `updates` is a tree of 1 "
    "leaf, `params` is a single leaf.",
  ),
  # dims
  "dims callable returning a tuple": (
    lambda: first_update(ll2.layer_l2(0.1, dims=lambda path, leaf: (0, 1))),
    TypeError,
    "`dims` must return a `Dims` or `None`; for leaf 'dense/bias' it returned (0, 1).",
  ),
  "dims tree holding an int": (
    lambda: first_update(ll2.layer_l2(0.1, dims={"dense": {"kernel": 3, "bias": None}})),
    TypeError,
    "`dims` must hold `Dims` or `None`; for leaf 'dense/kernel' it holds 3. Pass "
    "`ll2.infer_dims(...)`, a tree of `ll2.Dims`, or a callable `(path, leaf) -> Dims | None`.",
  ),
  "dims a bare int": (
    # Not callable: a tree of one leaf, broadcast to every leaf, and not a `Dims`.
    lambda: ll2.scales(PARAMS, dims=3),
    TypeError,
    "`dims` must hold `Dims` or `None`; for leaf 'dense/bias' it holds 3. Pass "
    "`ll2.infer_dims(...)`, a tree of `ll2.Dims`, or a callable `(path, leaf) -> Dims | None`.",
  ),
  "dims tree holding an array": (
    # The params passed as `dims` by mistake: named by type and shape, not printed whole.
    lambda: ll2.scales(PARAMS, dims={"dense": {"kernel": jnp.ones((4, 3)), "bias": None}}),
    TypeError,
    "`dims` must hold `Dims` or `None`; for leaf 'dense/kernel' it holds a ArrayImpl of shape "
    "(4, 3). Pass `ll2.infer_dims(...)`, a tree of `ll2.Dims`, or a callable "
    "`(path, leaf) -> Dims | None`.",
  ),
  "dims tree holding a shape without a dtype": (
    lambda: ll2.scales(PARAMS, dims={"dense": {"kernel": Shaped(), "bias": None}}),
    TypeError,
    "`dims` must hold `Dims` or `None`; for leaf 'dense/kernel' it holds Shaped((4, 3)). Pass "
    "`ll2.infer_dims(...)`, a tree of `ll2.Dims`, or a callable `(path, leaf) -> Dims | None`.",
  ),
  "dims tree holding a repr of 80 characters": (
    lambda: ll2.scales(PARAMS, dims={"dense": {"kernel": "x" * 78, "bias": None}}),
    TypeError,
    f"`dims` must hold `Dims` or `None`; for leaf 'dense/kernel' it holds {'x' * 78!r}. Pass "
    "`ll2.infer_dims(...)`, a tree of `ll2.Dims`, or a callable `(path, leaf) -> Dims | None`.",
  ),
  "dims tree holding a repr of 81 characters": (
    # Cut to 77 characters and "...".
    lambda: ll2.scales(PARAMS, dims={"dense": {"kernel": "x" * 79, "bias": None}}),
    TypeError,
    f"`dims` must hold `Dims` or `None`; for leaf 'dense/kernel' it holds '{'x' * 76}.... Pass "
    "`ll2.infer_dims(...)`, a tree of `ll2.Dims`, or a callable `(path, leaf) -> Dims | None`.",
  ),
  "Dims of strings": (
    lambda: ll2.Dims("a", 1),
    TypeError,
    "`Dims(in_axes=...)` must be an int or a sequence of ints, got 'a'.",
  ),
  "Dims of a bool": (
    lambda: ll2.Dims(0, True),
    TypeError,
    "`Dims(out_axes=...)` must be an int or a sequence of ints, got True.",
  ),
  "Dims of a float": (
    lambda: ll2.Dims(0, 1, batch_axes=1.0),
    TypeError,
    "`Dims(batch_axes=...)` must be an int or a sequence of ints, got 1.0.",
  ),
  "stacked of a string": (
    lambda: ll2.stacked("a"),
    TypeError,
    "`stacked(batch_axes=...)` must be an int or a sequence of ints, got 'a'.",
  ),
  "stacked of a float": (
    lambda: ll2.stacked(0.0),
    TypeError,
    "`stacked(batch_axes=...)` must be an int or a sequence of ints, got 0.0.",
  ),
  "Dims holding a bool": (
    lambda: ll2.Dims((0, True), 1),
    TypeError,
    "`Dims(in_axes=...)` must be an int or a sequence of ints, got (0, True).",
  ),
  "Dims axis out of range": (
    lambda: ll2.fans((4, 3), ll2.Dims(2, -1)),
    ValueError,
    "`dims`: in_axes axis 2 is out of range for a leaf of shape (4, 3).",
  ),
  "Dims axis out of range, negative": (
    lambda: ll2.fans((4, 3), ll2.Dims(0, -3)),
    ValueError,
    "`dims`: out_axes axis -3 is out of range for a leaf of shape (4, 3).",
  ),
  "Dims axis out of range at a leaf": (
    lambda: first_update(
      ll2.layer_l2(0.1, mask=KERNEL_ONLY, dims={"dense": {"kernel": ll2.Dims(2, -1), "bias": None}})
    ),
    ValueError,
    "`dims` for leaf 'dense/kernel': in_axes axis 2 is out of range for a leaf of shape (4, 3).",
  ),
  "Dims naming an axis twice": (
    lambda: ll2.fans((4, 3), ll2.Dims(0, -2)),
    ValueError,
    "`dims`: axis 0 of shape (4, 3) is named twice (in in_axes and out_axes); the groups "
    "must not overlap.",
  ),
  "stacked batch axis out of range": (
    lambda: ll2.scales(PARAMS, dims=ll2.stacked(2, where="kernel")),
    ValueError,
    "`dims` for leaf 'dense/kernel': batch_axes axis 2 is out of range for a leaf of shape (4, 3).",
  ),
  "stacked batch axis out of range, negative": (
    lambda: ll2.scales(PARAMS, dims=ll2.stacked(-3, where="kernel")),
    ValueError,
    "`dims` for leaf 'dense/kernel': batch_axes axis -3 is out of range for a leaf of shape "
    "(4, 3).",
  ),
  # base
  "base with another leaf": (
    with_base({"dense": {"kernel": jnp.ones((2, 2)), "b": jnp.ones(2)}}),
    ValueError,
    "`base` must have the tree structure of `params` (the same model at another width); "
    "`params` has leaf 'dense/bias' where `base` has 'dense/b'.",
  ),
  "base lacking a leaf": (
    with_base({"dense": {"bias": jnp.ones(2)}}),
    ValueError,
    "`base` must have the tree structure of `params` (the same model at another width); "
    "`base` lacks the leaf 'dense/kernel'.",
  ),
  "base with an extra leaf": (
    with_base({"dense": {"bias": jnp.ones(2), "kernel": jnp.ones((2, 2)), "z": jnp.ones(1)}}),
    ValueError,
    "`base` must have the tree structure of `params` (the same model at another width); "
    "`base` has the extra leaf 'dense/z'.",
  ),
  "base holding None at a decayed leaf": (
    with_base({"dense": {"kernel": None, "bias": jnp.ones(2)}}),
    ValueError,
    "`base` holds None at leaf 'dense/kernel', which is decayed; it needs an array or a "
    "`jax.ShapeDtypeStruct` there.",
  ),
  "base holding a string at a decayed leaf": (
    with_base({"dense": {"kernel": "wide", "bias": jnp.ones(2)}}),
    ValueError,
    "`base` holds 'wide' at leaf 'dense/kernel', which is decayed; it needs an array or a "
    "`jax.ShapeDtypeStruct` there.",
  ),
  "base leaf of another rank": (
    with_base({"dense": {"kernel": jnp.ones(2), "bias": jnp.ones(2)}}),
    ValueError,
    "`base` leaf 'dense/kernel' has shape (2,), of rank 1, but the leaf has shape (4, 3), of "
    "rank 2; a base leaf must have the leaf's rank.",
  ),
  "base leaf empty": (
    with_base({"dense": {"kernel": jnp.ones((0, 2)), "bias": jnp.ones(2)}}),
    ValueError,
    "`base` leaf 'dense/kernel' is empty (shape (0, 2)); it has no scale.",
  ),
  "base leaf with factor 0": (
    with_base(
      {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}},
      lambda info: 0.0 if info.shape == (2, 2) else 1.0,
    ),
    ValueError,
    "`scaling` gave 0 for leaf 'dense/kernel' of `base` (shape (2, 2)); a scaling relative "
    "to the base must be positive there.",
  ),
  "base leaf with a negative factor": (
    with_base(
      {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}},
      lambda info: -1.0 if info.shape == (2, 2) else 1.0,
    ),
    ValueError,
    "`scaling` gave -1.0 for leaf 'dense/kernel (in `base`)'; it must be finite and non-negative.",
  ),
  # reference
  "reference with a subtree where params have a leaf": (
    lambda: ll2.penalty(
      PARAMS, 0.1, reference={"dense": {"kernel": {"a": jnp.ones((4, 3))}, "bias": None}}
    ),
    ValueError,
    "`reference` must have the tree structure of `params`; `params` has leaf 'dense/kernel' "
    "where `reference` has 'dense/kernel/a'.",
  ),
  "reference a list for a tuple": (
    lambda: ll2.penalty(PAIR, 0.1, reference=list(PAIR)),
    ValueError,
    "`reference` must have the tree structure of `params`; the leaf paths agree but the tree "
    "node types differ.",
  ),
  "reference holding shapes at a decayed leaf": (
    lambda: ll2.penalty(
      PARAMS,
      0.1,
      reference={"dense": {"kernel": jax.ShapeDtypeStruct((4, 3), jnp.float32), "bias": None}},
    ),
    TypeError,
    "`reference` holds ShapeDtypeStruct at leaf 'dense/kernel', which is decayed; it needs an "
    "array there.",
  ),
  "reference holding a float at a decayed leaf": (
    lambda: ll2.penalty(PARAMS, 0.1, reference={"dense": {"kernel": 0.5, "bias": None}}),
    TypeError,
    "`reference` holds float at leaf 'dense/kernel', which is decayed; it needs an array there.",
  ),
  "reference holding a shape without a dtype": (
    lambda: ll2.penalty(
      PARAMS, 0.1, reference={"dense": {"kernel": ShapeOnly((4, 3)), "bias": None}}
    ),
    TypeError,
    "`reference` holds ShapeOnly at leaf 'dense/kernel', which is decayed; it needs an array "
    "there.",
  ),
  "reference 'init' without init": (
    lambda: ll2.penalty(PARAMS, 0.1, reference="init"),
    ValueError,
    "`reference='init'` needs the optimizer's `init`; here pass the reference params "
    "themselves, e.g. `reference=pretrained_params`.",
  ),
  "reference of an unknown name": (
    lambda: ll2.layer_l2(0.1, reference="zero"),
    ValueError,
    "`reference='zero'` is not known; use None (decay toward zero), 'init' (toward the "
    "params given to `init`) or a pytree of arrays with the structure of the params.",
  ),
  "reference a callable": (
    lambda: ll2.layer_l2(0.1, reference=len),
    TypeError,
    "`reference` must be None, 'init' or a pytree of arrays with the structure of the "
    "params, not a callable (<built-in function len>).",
  ),
  # learning-rate factors
  "layer_lr with an unknown name": (
    lambda: ll2.layer_lr("inv_fan_out", base=PARAMS),
    ValueError,
    "`lr_scaling='inv_fan_out'` is not a known scaling; use one of 'none' (1), 'inv_fan_in' "
    "(1/fan_in), 'inv_sqrt_fan_in' (1/sqrt(fan_in)), 'mup' (1/fan_in, and 1/sqrt(head_dim) "
    "more for a query kernel), or a callable "
    "`lr_scaling(info: LeafInfo) -> float`.",
  ),
  "layer_lr with a decay scaling's name": (
    lambda: ll2.layer_lr("fan_avg", base=PARAMS),
    ValueError,
    "`lr_scaling='fan_avg'` is not a known scaling; use one of 'none' (1), 'inv_fan_in' "
    "(1/fan_in), 'inv_sqrt_fan_in' (1/sqrt(fan_in)), 'mup' (1/fan_in, and 1/sqrt(head_dim) "
    "more for a query kernel), or a callable "
    "`lr_scaling(info: LeafInfo) -> float`.",
  ),
  "layer_adamw with an unknown lr_scaling": (
    lambda: ll2.layer_adamw(1e-3, 0.1, lr_scaling="muP", base=PARAMS),
    ValueError,
    "`lr_scaling='muP'` is not a known scaling; use one of 'none' (1), 'inv_fan_in' "
    "(1/fan_in), 'inv_sqrt_fan_in' (1/sqrt(fan_in)), 'mup' (1/fan_in, and 1/sqrt(head_dim) "
    "more for a query kernel), or a callable "
    "`lr_scaling(info: LeafInfo) -> float`.",
  ),
  "layer_lr without a base": (
    lambda: ll2.layer_lr("inv_fan_in", base=None),
    ValueError,
    "`layer_lr` needs `base=`: the params (or `jax.eval_shape` shapes) of the model the "
    "learning rate was tuned on. The rate factors are relative to it, so at the base every "
    "leaf keeps the tuned rate.",
  ),
  "layer_adamw with lr_scaling but no base": (
    lambda: ll2.layer_adamw(1e-3, 0.1, lr_scaling="inv_fan_in"),
    ValueError,
    "`lr_scaling` needs `base=`: the params (or `jax.eval_shape` shapes) of the model the "
    "learning rate was tuned on. The rate factors are relative to it, so at the base every "
    "leaf keeps the tuned rate.",
  ),
  "describe with lr_scaling but no base": (
    lambda: ll2.describe(PARAMS, 0.1, lr_scaling="inv_fan_in"),
    ValueError,
    "`lr_scaling` needs `base=`: the params (or `jax.eval_shape` shapes) of the model the "
    "learning rate was tuned on. The rate factors are relative to it, so at the base every "
    "leaf keeps the tuned rate.",
  ),
  "layer_lr scaling of the wrong type": (
    lambda: ll2.layer_lr(2.0, base=PARAMS),
    TypeError,
    "`lr_scaling` must be a scaling name or a callable `lr_scaling(info: LeafInfo) -> float`, "
    "got 2.0.",
  ),
  "lr_scaling callable negative at a leaf": (
    lambda: first_update(ll2.layer_adamw(1e-3, 0.1, lr_scaling=lambda i: -1.0, base=PARAMS)),
    ValueError,
    "`lr_scaling` gave -1.0 for leaf 'dense/kernel'; it must be finite and non-negative.",
  ),
  "lr_scaling callable zero at the base": (
    lambda: first_update(
      ll2.layer_adamw(
        1e-3,
        0.1,
        lr_scaling=lambda i: float(i.fan_in > 4),
        base={"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}},
      )
    ),
    ValueError,
    "`lr_scaling` gave 0 for leaf 'dense/kernel' of `base` (shape (2, 3)); a scaling "
    "relative to the base must be positive there.",
  ),
  "layer_lr base of another structure, at init": (
    lambda: ll2.layer_lr(base={"dense": {"kernel": jnp.ones((4, 3))}}).init(PARAMS),
    ValueError,
    "`base` must have the tree structure of `params` (the same model at another width); "
    "`params` has leaf 'dense/bias' where `base` has 'dense/kernel'.",
  ),
  "layer_lr base leaf of another rank": (
    lambda: ll2.layer_lr(base={"dense": {"kernel": jnp.ones((4, 3, 1)), "bias": jnp.ones(3)}}).init(
      PARAMS
    ),
    ValueError,
    "`base` leaf 'dense/kernel' has shape (4, 3, 1), of rank 3, but the leaf has shape "
    "(4, 3), of rank 2; a base leaf must have the leaf's rank.",
  ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_message(case):
  call, error, message = CASES[case]
  with pytest.raises(error) as raised:
    call()
  assert str(raised.value) == message


@pytest.mark.parametrize(
  ("mask", "message"),
  [
    (
      {"nope": True},
      "`mask` must have the structure of `params`, or of a prefix of it; "
      "`mask` has the entry 'nope', which `params` lacks.",
    ),
    (
      lambda params: [True],
      "`mask` must have the structure of `params`, or of a prefix of it; "
      "`mask` has the entry '0', which `params` lacks.",
    ),
  ],
)
def test_prefix_mismatch_names_the_first_entry_that_does_not_fit(mask, message):
  with pytest.raises(ValueError) as raised:
    first_update(ll2.layer_l2(0.1, mask=mask))
  assert str(raised.value) == message


def test_a_dims_list_of_another_length_names_the_leaf_not_the_values():
  # Before 0.4 this printed JAX's account of the mismatch, parameter values and all.
  params = {"layers": [jnp.ones((4, 4)), jnp.ones((4, 4)), jnp.ones((4, 4))]}
  dims = {"layers": [ll2.Dims(0, 1), ll2.Dims(0, 1)]}
  with pytest.raises(ValueError) as raised:
    ll2.scales(params, dims=dims)
  assert str(raised.value) == (
    "`dims` must have the structure of `params`, or of a prefix of it; "
    "`params` has the leaf 'layers/2', which no entry of `dims` covers."
  )


@pytest.mark.parametrize(
  ("key", "shown"),
  [
    # 34 leaves in a list: 120 characters, shown whole.
    ("a", "[{'a': *}" + ", *" * 33 + "])"),
    # One character more: cut to 117 and "...".
    ("ab", "[{'ab': *}" + ", *" * 32 + ",..."),
  ],
)
def test_containers_that_differ_are_shown_up_to_120_characters(key, shown):
  leaves = [jnp.ones((2, 2)) for _ in range(33)]
  params = ({key: jnp.ones((2, 2))}, *leaves)
  updates = [{key: None}, *leaves]  # a `None` update is a leaf, shown as `*`
  with pytest.raises(ValueError) as raised:
    first_update(ll2.layer_l2(0.1), params=params, grads=updates)
  params_shown = "(" + shown[1:].replace("])", "))")
  assert str(raised.value) == (
    "`updates` and `params` must have the same tree structure; their leaf paths agree but "
    f"their containers differ: `updates` is PyTreeDef({shown}, `params` is "
    f"PyTreeDef({params_shown}."
  )
  assert len(f"PyTreeDef({shown}") == 120
