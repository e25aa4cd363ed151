"""Every misuse gets a ValueError or TypeError naming the argument and the leaf."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import PARAMS, first_update

import optax_layer_l2 as ll2


@pytest.mark.parametrize("bad", [-1e-4, float("nan"), float("inf"), np.float32(-1.0)])
def test_bad_constant_weight_decay(bad):
  with pytest.raises(ValueError, match=r"`weight_decay` is .*must be finite and non-negative"):
    ll2.layer_l2(bad)


def test_negative_jax_scalar_weight_decay():
  with pytest.raises(ValueError, match=r"`weight_decay` is -0\.5"):
    ll2.layer_l2(jnp.asarray(-0.5))


def test_weight_decay_of_the_wrong_type():
  with pytest.raises(TypeError, match="`weight_decay` must be a float, a JAX scalar or an Optax"):
    ll2.layer_l2("1e-4")
  with pytest.raises(ValueError, match="`weight_decay` must be a scalar, got shape \\(2,\\)"):
    ll2.layer_l2(jnp.ones(2))


def test_unknown_scaling_lists_the_valid_ones():
  message = (
    r"`scaling='fan-avg'` is not a known scaling; use one of 'none' \(1\), 'numel' "
    r"\(1/numel\), 'fan_avg' \(\(fan_in \+ fan_out\)/numel\), 'fan_in' \(fan_in/numel\), "
    r"'fan_out' \(fan_out/numel\)"
  )
  with pytest.raises(ValueError, match=message):
    ll2.layer_l2(1e-4, "fan-avg")
  with pytest.raises(ValueError, match=message):
    ll2.scales(PARAMS, "fan-avg")
  with pytest.raises(TypeError, match="`scaling` must be a scaling name or a callable"):
    ll2.layer_l2(1e-4, 3)


@pytest.mark.parametrize(
  ("grads", "message"),
  [
    (
      {"dense": {"kernel": jnp.ones((4, 3))}},
      "`params` has the leaf 'dense/bias', which `updates` lacks",
    ),
    (
      {"dense": {"kernel": jnp.ones((4, 3)), "b": jnp.ones(3)}},
      "`updates` has the leaf 'dense/b' where `params` has the leaf 'dense/bias'",
    ),
    (jnp.ones((4, 3)), "`updates` is a single leaf, `params` is a tree of 2 leaves"),
  ],
)
def test_updates_and_params_of_different_structure(grads, message):
  tx = ll2.layer_l2(1e-4)
  with pytest.raises(ValueError, match=f"must have the same tree structure; {message}\\.$"):
    tx.update(grads, tx.init(PARAMS), PARAMS)


def test_updates_and_params_whose_containers_differ():
  params = (jnp.ones((4, 3)), jnp.ones(3))
  tx = ll2.layer_l2(1e-4)
  with pytest.raises(ValueError, match=r"their leaf paths agree but their containers differ: `upd"):
    tx.update(list(params), tx.init(params), params)


@pytest.mark.parametrize("weight_decay", [0.1, optax.constant_schedule(0.1)])
def test_updates_none_come_back_none_as_from_add_decayed_weights(weight_decay):
  # Optax's own `test_none_argument` calls `update(None, state, params)`.
  theirs = optax.add_decayed_weights(0.1)
  assert theirs.update(None, theirs.init(PARAMS), PARAMS)[0] is None
  tx = ll2.layer_l2(weight_decay, "none")
  updates, state = tx.update(None, tx.init(PARAMS), PARAMS)
  assert updates is None
  # A schedule's step count still advances; a constant keeps no state.
  assert [int(x) for x in jax.tree.leaves(state)] == ([1] if callable(weight_decay) else [])


@pytest.mark.parametrize(
  ("dims", "message"),
  [
    (ll2.Dims(2, -1), r"`dims` for leaf 'dense/kernel': in_axes axis 2 is out of range .*\(4, 3\)"),
    (ll2.Dims(-2, -3), r"`dims` for leaf 'dense/kernel': out_axes axis -3 is out of range"),
    (ll2.Dims(0, 0), r"for leaf 'dense/kernel': axis 0 of shape \(4, 3\) is named twice"),
    (ll2.Dims(0, 1, batch_axes=-1), r"axis 1 .* named twice \(in out_axes and batch_axes\)"),
  ],
)
def test_bad_dims_name_the_leaf(dims, message):
  mask = {"dense": {"kernel": True, "bias": False}}
  tx = ll2.layer_l2(1e-4, mask=mask, dims={"dense": {"kernel": dims, "bias": None}})
  with pytest.raises(ValueError, match=message):
    first_update(tx)


def test_dims_of_the_wrong_type():
  with pytest.raises(TypeError, match=r"`Dims\(in_axes=...\)` must be an int or a sequence"):
    ll2.Dims("a", 1)
  tx = ll2.layer_l2(1e-4, dims=lambda path, leaf: (0, 1))
  with pytest.raises(TypeError, match="`dims` must return a `Dims` or `None`; for leaf 'dense/"):
    first_update(tx)


def test_dims_tree_that_does_not_fit_params():
  tx = ll2.layer_l2(1e-4, dims={"other": None})
  with pytest.raises(ValueError, match="`dims` must have the structure of `params`"):
    first_update(tx)


def test_stacked_batch_axis_out_of_range():
  tx = ll2.layer_l2(1e-4, dims=ll2.stacked(2, where="kernel"))
  with pytest.raises(
    ValueError, match="for leaf 'dense/kernel': batch_axes axis 2 is out of range"
  ):
    first_update(tx)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_scaling_callable_bad_value_names_the_leaf(bad):
  tx = ll2.layer_l2(1e-4, scaling=lambda info: bad)
  with pytest.raises(ValueError, match=r"`scaling` gave .* for leaf 'dense/kernel'; it must be"):
    first_update(tx)


def test_scaling_callable_returning_a_traced_value():
  tx = ll2.layer_l2(1e-4, scaling=lambda info: jnp.asarray(1.0) * jnp.ones(2))
  with pytest.raises(
    TypeError, match="`scaling` must give a Python number for leaf 'dense/kernel'"
  ):
    first_update(tx)


def test_bad_multipliers():
  with pytest.raises(ValueError, match=r"`multipliers\['dense'\]` is -2.0; it must be finite"):
    ll2.layer_l2(1e-4, multipliers={"dense": -2.0})
  with pytest.raises(ValueError, match=r"`multipliers\['\('\]`: not a regular expression"):
    ll2.layer_l2(1e-4, multipliers={"(": 1.0})
  with pytest.raises(TypeError, match=r"`multipliers\['dense'\]` must be a number"):
    ll2.layer_l2(1e-4, multipliers={"dense": "2"})
  tx = ll2.layer_l2(1e-4, multipliers=lambda path, leaf: float("nan"))
  with pytest.raises(ValueError, match="`multipliers` gave nan for leaf 'dense/kernel'"):
    first_update(tx)


def test_mask_of_the_wrong_kind():
  tx = ll2.layer_l2(1e-4, mask={"dense": {"kernel": 1.0, "bias": False}})
  with pytest.raises(TypeError, match="`mask` must hold Python bools; for leaf 'dense/kernel'"):
    first_update(tx)
  tx = ll2.layer_l2(1e-4, mask={"nope": True})
  with pytest.raises(ValueError, match="`mask` must have the structure of `params`"):
    first_update(tx)


def test_penalty_and_describe_need_a_value_not_a_schedule():
  schedule = optax.constant_schedule(1e-4)
  with pytest.raises(TypeError, match="`weight_decay` must be a number here, not a schedule"):
    ll2.penalty(PARAMS, schedule)
  with pytest.raises(TypeError, match="`weight_decay` must be a number here, not a schedule"):
    ll2.describe(PARAMS, schedule)
  with pytest.raises(ValueError, match=r"`weight_decay` is -1\.0"):
    ll2.penalty(PARAMS, -1.0)
