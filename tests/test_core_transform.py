"""`layer_l2` and `layer_adamw`: the update they compute.

How they behave inside Optax's wrappers is `test_optax_battery.py`'s.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import DECAYED, SCALES_OF_MAKE_PARAMS, get, keys_of, make_params

import optax_layer_l2 as ll2

SCALINGS = list(ll2.SCALINGS)


@pytest.mark.parametrize("scaling", SCALINGS)
def test_update_is_gradient_plus_scaled_weights(scaling):
  params = make_params()
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.25), params)
  tx = ll2.layer_l2(0.3, scaling)
  updates, _ = tx.update(grads, tx.init(params), params)
  expected_scales = SCALES_OF_MAKE_PARAMS[scaling]
  for path, update in jax.tree_util.tree_leaves_with_path(updates):
    keys = keys_of(path)
    g = np.asarray(get(grads, keys), np.float64)
    p = np.asarray(get(params, keys), np.float64)
    if keys in DECAYED:
      s = expected_scales["/".join(keys)]
      np.testing.assert_allclose(update, g + 0.3 * s * p, rtol=1e-6, atol=1e-7)
    else:
      np.testing.assert_array_equal(update, g)


def test_none_equals_add_decayed_weights_on_the_same_mask():
  params = make_params()
  grads = jax.tree.map(lambda p: p * 0.1 + 1.0, params)
  mask = jax.tree.map(lambda s: s > 0, ll2.scales(params, "none"))
  ours = ll2.layer_l2(1e-2, "none")
  theirs = optax.add_decayed_weights(1e-2, mask)
  a, _ = jax.jit(ours.update)(grads, ours.init(params), params)
  b, _ = jax.jit(theirs.update)(grads, theirs.init(params), params)
  chex.assert_trees_all_equal(a, b)


def test_layer_adamw_none_equals_optax_adamw():
  params = make_params()
  mask = jax.tree.map(lambda s: s > 0, ll2.scales(params, "none"))
  ours = ll2.layer_adamw(1e-3, 1e-2, "none")
  theirs = optax.adamw(1e-3, weight_decay=1e-2, mask=mask)
  s_ours, s_theirs = ours.init(params), theirs.init(params)
  p_ours = p_theirs = params
  for step in range(3):
    grads = jax.tree.map(lambda p, step=step: jnp.sin(p + step), p_ours)
    u_ours, s_ours = jax.jit(ours.update)(grads, s_ours, p_ours)
    u_theirs, s_theirs = jax.jit(theirs.update)(grads, s_theirs, p_theirs)
    p_ours = optax.apply_updates(p_ours, u_ours)
    p_theirs = optax.apply_updates(p_theirs, u_theirs)
  chex.assert_trees_all_close(p_ours, p_theirs, rtol=1e-6, atol=1e-7)


def test_layer_adamw_decay_is_learning_rate_times_lambda_s_w():
  params = {"kernel": jnp.full((8, 4), 2.0)}
  tx = ll2.layer_adamw(0.1, 0.5, "fan_avg")
  updates, _ = tx.update({"kernel": jnp.zeros((8, 4))}, tx.init(params), params)
  np.testing.assert_allclose(updates["kernel"], -0.1 * 0.5 * (12 / 32) * 2.0, rtol=1e-6)


def test_constant_keeps_no_state_and_schedule_keeps_an_int32_count():
  params = make_params()
  assert ll2.layer_l2(1e-4).init(params) == optax.EmptyState()
  assert jax.tree.leaves(ll2.layer_l2(1e-4).init(params)) == []
  tx = ll2.layer_l2(optax.linear_schedule(0.0, 1.0, 10))
  state = tx.init(params)
  assert isinstance(state, ll2.LayerL2State)
  assert state.count.dtype == jnp.int32 and state.count.shape == ()
  grads = jax.tree.map(jnp.zeros_like, params)
  updates, state = tx.update(grads, state, params)
  chex.assert_trees_all_equal(updates, grads)  # schedule(0) == 0
  updates, state = tx.update(grads, state, params)
  assert int(state.count) == 2
  kernel = params["dense"]["kernel"]
  np.testing.assert_allclose(updates["dense"]["kernel"], 0.1 * (64 / 960) * kernel, rtol=1e-6)


def test_static_zero_returns_updates_unchanged():
  params = make_params()
  grads = jax.tree.map(jnp.ones_like, params)
  tx = ll2.layer_l2(0.0)
  updates, _ = tx.update(grads, tx.init(params), params)
  assert all(u is g for u, g in zip(jax.tree.leaves(updates), jax.tree.leaves(grads), strict=True))


def test_leaves_that_are_not_decayed_are_returned_as_they_came():
  params = make_params()
  params["dense"]["bias"] = jnp.full((24,), jnp.inf)
  grads = jax.tree.map(jnp.ones_like, params)
  tx = ll2.layer_l2(1e-2)
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  np.testing.assert_array_equal(updates["dense"]["bias"], 1.0)  # not inf * 0 = nan
  eager, _ = tx.update(grads, tx.init(params), params)
  assert eager["norm"]["scale"] is grads["norm"]["scale"]


def test_nan_gradients_stay_nan():
  params = make_params()
  grads = jax.tree.map(lambda p: jnp.full_like(p, jnp.nan), params)
  tx = ll2.layer_l2(1e-2)
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  assert all(bool(jnp.all(jnp.isnan(u))) for u in jax.tree.leaves(updates))


def test_odd_leaves_pass_through():
  params = {
    "kernel": jnp.ones((3, 4)),
    "step": jnp.zeros((2, 2), jnp.int32),
    "rng": jax.random.key(0),
    "empty": jnp.zeros((0, 4)),
    "missing": None,
  }
  grads = {
    "kernel": jnp.ones((3, 4)),
    "step": jnp.ones((2, 2), jnp.int32),
    "rng": jax.random.key(1),
    "empty": jnp.zeros((0, 4)),
    "missing": None,
  }
  tx = ll2.layer_l2(0.5, "none")
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["kernel"], 1.5)
  np.testing.assert_array_equal(updates["step"], grads["step"])
  assert updates["step"].dtype == jnp.int32
  np.testing.assert_array_equal(
    jax.random.key_data(updates["rng"]), jax.random.key_data(grads["rng"])
  )
  assert updates["empty"].shape == (0, 4)
  assert updates["missing"] is None
  s = ll2.scales(params)
  assert s["missing"] is None and s["step"] == s["rng"] == s["empty"] == 0.0


def test_none_update_for_a_present_parameter_stays_none():
  params = {"a": jnp.ones((2, 2)), "b": jnp.ones((2, 2))}
  tx = ll2.layer_l2(0.5, "none")
  updates, _ = tx.update({"a": None, "b": jnp.zeros((2, 2))}, tx.init(params), params)
  assert updates["a"] is None
  np.testing.assert_allclose(updates["b"], 0.5)


def test_vmap_over_weight_decay_sweeps_lambdas_in_one_program():
  params = make_params()
  grads = jax.tree.map(jnp.zeros_like, params)
  lambdas = jnp.array([0.0, 1e-3, 1e-2, 1e-1])

  def step(wd):
    tx = ll2.layer_l2(wd, "fan_avg")
    return tx.update(grads, tx.init(params), params)[0]

  swept = jax.jit(jax.vmap(step))(lambdas)
  for i, wd in enumerate([0.0, 1e-3, 1e-2, 1e-1]):
    one = step(wd)
    chex.assert_trees_all_close(jax.tree.map(lambda x, i=i: x[i], swept), one, rtol=1e-6)


def test_chained_before_adam_trains_towards_smaller_weights():
  params = make_params()
  tx = optax.chain(ll2.layer_l2(1.0, "fan_avg"), optax.adam(1e-2))
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    grads = jax.tree.map(jnp.zeros_like, params)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  start = params
  for _ in range(20):
    params, state = step(params, state)
  for keys in DECAYED:
    assert float(jnp.sum(get(params, keys) ** 2)) < float(jnp.sum(get(start, keys) ** 2))
  chex.assert_trees_all_equal(params["dense"]["bias"], start["dense"]["bias"])


def test_layer_adamw_hands_every_argument_on():
  params = {"dense": {"kernel": jnp.linspace(-1.0, 1.0, 12).reshape(4, 3), "bias": jnp.ones(3)}}
  grads = jax.tree.map(lambda w: 0.3 * w + 0.1, params)
  adam = dict(b1=0.5, b2=0.8, eps=1e-3, eps_root=1e-4, mu_dtype=jnp.bfloat16, nesterov=True)
  decay = dict(
    mask={"dense": {"kernel": True, "bias": True}},
    dims={"dense": {"kernel": ll2.Dims(1, 0), "bias": None}},
    multipliers={"bias": 3.0},
  )
  ours = ll2.layer_adamw(0.1, 0.5, "fan_in", **adam, **decay)
  spelled_out = optax.chain(
    optax.scale_by_adam(**adam),
    ll2.layer_l2(0.5, "fan_in", **decay),
    optax.scale_by_learning_rate(0.1),
  )
  states = ours.init(params), spelled_out.init(params)
  assert states[0][0].mu["dense"]["kernel"].dtype == jnp.bfloat16
  for _ in range(3):
    (a, state_a), (b, state_b) = (
      tx.update(grads, state, params) for tx, state in zip((ours, spelled_out), states, strict=True)
    )
    states = state_a, state_b
    jax.tree.map(np.testing.assert_array_equal, a, b)
  # Different arguments give a different step: the comparison can tell.
  plain = ll2.layer_adamw(0.1, 0.5, "fan_in")
  other, _ = plain.update(grads, plain.init(params), params)
  assert not np.array_equal(other["dense"]["bias"], a["dense"]["bias"])
