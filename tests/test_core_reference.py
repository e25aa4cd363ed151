"""`reference=`: decay toward a reference (L2-SP), kept in the optimizer state."""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import DECAYED, UNTOUCHED, get, make_params, zeros_like

import optax_layer_l2 as ll2

SCALINGS = list(ll2.SCALINGS)


def pretrained():
  """A reference: other weights of the same model."""
  return make_params(seed=1)


def nbytes(tree) -> int:
  return sum(leaf.nbytes for leaf in jax.tree.leaves(tree))


# --- the update -----------------------------------------------------------------------------


@pytest.mark.parametrize("scaling", SCALINGS)
@pytest.mark.parametrize("kind", ["init", "pytree"])
def test_update_is_gradient_plus_scaled_distance_from_the_reference(scaling, kind):
  start, params = pretrained(), make_params()
  reference = "init" if kind == "init" else start
  tx = ll2.layer_l2(0.3, scaling, reference=reference)
  state = tx.init(start if kind == "init" else params)  # "init": the params given to init
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.25), params)
  updates, _ = jax.jit(tx.update)(grads, state, params)
  s = ll2.scales(params, scaling)
  for keys in DECAYED:
    w, w_ref = np.asarray(get(params, keys), np.float64), np.asarray(get(start, keys), np.float64)
    expected = 0.25 + 0.3 * get(s, keys) * (w - w_ref)
    np.testing.assert_allclose(get(updates, keys), expected, rtol=1e-5, atol=1e-6)
  for keys in UNTOUCHED:
    np.testing.assert_array_equal(get(updates, keys), 0.25)


def test_at_the_reference_the_decay_is_exactly_zero():
  params = make_params()
  grads = jax.tree.map(jnp.sin, params)
  tx = ll2.layer_l2(5.0, reference="init")
  updates, _ = tx.update(grads, tx.init(params), params)
  chex.assert_trees_all_equal(updates, grads)


def test_leaves_that_are_not_decayed_are_returned_as_they_came():
  params = make_params()
  grads = jax.tree.map(jnp.ones_like, params)
  tx = ll2.layer_l2(1e-2, reference="init")
  updates, _ = tx.update(grads, tx.init(params), params)
  for keys in UNTOUCHED:
    assert get(updates, keys) is get(grads, keys)


def test_with_a_reference_a_none_update_stays_none():
  params = {"a": jnp.ones((2, 2)), "b": jnp.ones((2, 2))}
  tx = ll2.layer_l2(0.5, "none", reference="init")
  state = tx.init(params)
  moved = jax.tree.map(lambda w: w + 1.0, params)
  updates, _ = tx.update({"a": None, "b": jnp.zeros((2, 2))}, state, moved)
  assert updates["a"] is None
  np.testing.assert_allclose(updates["b"], 0.5)


def test_a_schedule_counts_and_decays_toward_the_reference():
  params, start = make_params(), pretrained()
  tx = ll2.layer_l2(optax.linear_schedule(0.0, 1.0, 10), "none", reference=start)
  state = tx.init(params)
  assert isinstance(state, ll2.LayerL2ReferenceState)
  assert state.count.dtype == jnp.int32 and state.count.shape == ()
  zeros = zeros_like(params)
  updates, state = tx.update(zeros, state, params)
  chex.assert_trees_all_equal(updates, zeros)  # schedule(0) == 0
  updates, state = tx.update(zeros, state, params)
  assert int(state.count) == 2
  w, w_ref = params["dense"]["kernel"], start["dense"]["kernel"]
  np.testing.assert_allclose(updates["dense"]["kernel"], 0.1 * (w - w_ref), rtol=1e-6)


def test_training_on_the_decay_alone_converges_to_the_reference_not_to_zero():
  params, start = make_params(), pretrained()
  tx = optax.chain(ll2.layer_l2(1.0, "none", reference=start), optax.sgd(0.5))

  @jax.jit
  def step(params, state):
    updates, state = tx.update(zeros_like(params), state, params)
    return optax.apply_updates(params, updates), state

  state = tx.init(params)
  for _ in range(60):
    params, state = step(params, state)
  for keys in DECAYED:
    np.testing.assert_allclose(get(params, keys), get(start, keys), rtol=1e-5, atol=1e-6)
  for keys in UNTOUCHED:
    np.testing.assert_array_equal(get(params, keys), get(make_params(), keys))


def test_layer_adamw_decays_toward_the_reference_outside_adam():
  params = make_params()
  grads = jax.tree.map(lambda p: 0.1 * p + 0.01, params)
  adam = optax.adam(1e-2)
  toward = {
    "reference": ll2.layer_adamw(1e-2, 0.5, "fan_avg", reference="init"),
    "zero": ll2.layer_adamw(1e-2, 0.5, "fan_avg"),
  }
  states = {name: tx.init(params) for name, tx in toward.items()}
  # At the reference the decay is exactly zero: the first step is Adam's.
  first, states["reference"] = toward["reference"].update(grads, states["reference"], params)
  chex.assert_trees_all_equal(first, adam.update(grads, adam.init(params), params)[0])
  _, states["zero"] = toward["zero"].update(grads, states["zero"], params)
  # Then both have the same Adam state; they differ by lr * lambda * s * w_ref.
  moved = jax.tree.map(lambda p: p + 1.0, params)
  steps = {
    name: tx.update(zeros_like(params), states[name], moved)[0] for name, tx in toward.items()
  }
  s = ll2.scales(params)["dense"]["kernel"]
  np.testing.assert_allclose(
    steps["reference"]["dense"]["kernel"] - steps["zero"]["dense"]["kernel"],
    1e-2 * 0.5 * s * params["dense"]["kernel"],
    rtol=1e-4,
    atol=1e-9,
  )
  np.testing.assert_array_equal(steps["reference"]["dense"]["bias"], steps["zero"]["dense"]["bias"])


# --- the state ------------------------------------------------------------------------------


def test_state_holds_a_copy_of_the_decayed_leaves_only():
  params = make_params()
  tx = ll2.layer_l2(1e-2, reference="init")
  state = tx.init(params)
  assert isinstance(state, ll2.LayerL2ReferenceState)
  assert state.count is None
  for keys in DECAYED:
    ref = get(state.reference, keys)
    np.testing.assert_array_equal(ref, get(params, keys))
    assert ref.dtype == get(params, keys).dtype
    # A copy of its own, so that the params may be donated to a jitted step.
    assert ref.unsafe_buffer_pointer() != get(params, keys).unsafe_buffer_pointer()
  for keys in UNTOUCHED:
    assert get(state.reference, keys) == optax.MaskedNode()


@pytest.mark.parametrize("schedule", [False, True])
@pytest.mark.parametrize("kind", ["init", "pytree"])
def test_state_bytes_are_the_decayed_leaves_bytes(schedule, kind):
  params = make_params()
  params["half"] = {"kernel": jnp.ones((16, 8), jnp.bfloat16)}
  params["off"] = {"kernel": jnp.ones((32, 32))}  # multiplier 0: not decayed
  reference = "init" if kind == "init" else jax.tree.map(lambda p: p + 1, params)
  weight_decay = optax.constant_schedule(1e-2) if schedule else 1e-2
  tx = ll2.layer_l2(weight_decay, reference=reference, multipliers={"^off/": 0.0})
  state = tx.init(params)
  decayed = [get(params, keys) for keys in DECAYED] + [params["half"]["kernel"]]
  assert nbytes(state) == sum(leaf.nbytes for leaf in decayed) + (4 if schedule else 0)
  assert state.reference["half"]["kernel"].dtype == jnp.bfloat16
  assert state.reference["off"]["kernel"] == optax.MaskedNode()


def test_without_a_reference_the_state_is_todays():
  params = make_params()
  assert ll2.layer_l2(1e-2).init(params) == optax.EmptyState()
  assert ll2.layer_l2(1e-2, reference=None).init(params) == optax.EmptyState()
  state = ll2.layer_l2(optax.constant_schedule(1e-2), reference=None).init(params)
  assert type(state) is ll2.LayerL2State
  assert nbytes(state) == 4


def test_masked_out_and_odd_leaves_hold_nothing():
  params = {
    "kernel": jnp.ones((3, 4)),
    "other": jnp.ones((3, 4)),
    "step": jnp.zeros((2, 2), jnp.int32),
    "rng": jax.random.key(0),
    "empty": jnp.zeros((0, 4)),
    "missing": None,
  }
  mask = {k: k != "other" for k in params}
  tx = ll2.layer_l2(0.5, "none", mask=mask, reference="init")
  state = tx.init(params)
  assert list(jax.tree.leaves(state)) == [state.reference["kernel"]]
  for name in ("other", "step", "rng", "empty", "missing"):
    assert state.reference[name] == optax.MaskedNode(), name
  grads = dict(params, kernel=jnp.zeros((3, 4)), other=jnp.zeros((3, 4)), rng=jax.random.key(1))
  moved = dict(params, kernel=jnp.full((3, 4), 3.0))
  updates, _ = jax.jit(tx.update)(grads, state, moved)
  np.testing.assert_allclose(updates["kernel"], 0.5 * 2.0)
  np.testing.assert_array_equal(updates["other"], 0.0)
  assert updates["step"].dtype == jnp.int32 and updates["missing"] is None


def test_only_decayed_leaves_keep_a_reference_under_every_option():
  params = {
    "layers": {"kernel": jnp.ones((6, 4, 3)), "alpha": jnp.ones((6, 3))},
    "head": {"kernel": jnp.ones((3, 2))},
  }

  # Stacked, `alpha` is a vector per layer and not decayed; the head's scaling is 0.
  def scaling(info):
    return 0.0 if info.path == "head/kernel" else 1.0

  tx = ll2.layer_l2(0.1, scaling, dims=ll2.stacked(0, where="layers"), reference="init")
  stored = tx.init(params).reference
  assert isinstance(stored["layers"]["alpha"], optax.MaskedNode)
  assert isinstance(stored["head"]["kernel"], optax.MaskedNode)
  np.testing.assert_array_equal(stored["layers"]["kernel"], params["layers"]["kernel"])


def test_inside_optax_masked_the_state_keeps_only_the_selected_decayed_leaves():
  # The values are `test_optax_battery.py`'s; here, what the state costs.
  params = make_params()
  outer = {k: k == "dense" for k in params}
  tx = optax.masked(ll2.layer_l2(1.0, "none", reference="init"), outer)
  state = tx.init(params)
  assert nbytes(state) == params["dense"]["kernel"].nbytes


# --- the compiled program -------------------------------------------------------------------


def test_without_a_reference_the_program_is_add_decayed_weights():
  params = make_params()
  mask = jax.tree.map(lambda s: s > 0, ll2.scales(params, "none"))
  grads = jax.tree.map(jnp.cos, params)

  def program(tx):
    return str(jax.make_jaxpr(lambda g, s, p: tx.update(g, s, p))(grads, tx.init(params), params))

  ours = program(ll2.layer_l2(1e-2, "none", reference=None))
  assert ours == program(optax.add_decayed_weights(1e-2, mask))
  assert ours != program(ll2.layer_l2(1e-2, "none", reference="init"))


def test_without_a_reference_a_schedule_adds_only_its_count():
  params = make_params()
  s = ll2.scales(params, "fan_avg")
  grads = jax.tree.map(jnp.cos, params)
  schedule = optax.linear_schedule(0.0, 1e-2, 10)
  tx = ll2.layer_l2(schedule, "fan_avg", reference=None)

  def by_hand(g, count, p):
    rate = schedule(count)
    count = optax.safe_increment(count)
    return jax.tree.map(lambda g, p, s: g + rate * s * p if s else g, g, p, s), count

  state = tx.init(params)
  ours = jax.make_jaxpr(lambda g, c, p: tx.update(g, ll2.LayerL2State(c), p))
  assert str(ours(grads, state.count, params)) == str(
    jax.make_jaxpr(by_hand)(grads, state.count, params)
  )


def test_without_a_reference_the_program_is_one_multiply_add_per_decayed_leaf():
  params = make_params()
  s = ll2.scales(params, "fan_avg")
  grads = jax.tree.map(jnp.cos, params)
  tx = ll2.layer_l2(1e-2, "fan_avg")

  def by_hand(g, p):
    return jax.tree.map(lambda g, p, s: g + 1e-2 * s * p if s else g, g, p, s)

  ours = jax.make_jaxpr(lambda g, p: tx.update(g, optax.EmptyState(), p)[0])(grads, params)
  assert str(ours) == str(jax.make_jaxpr(by_hand)(grads, params))


@pytest.mark.parametrize("kind", ["init", "pytree"])
def test_the_reference_is_no_constant_of_the_program(kind):
  params = make_params()
  tx = ll2.layer_l2(0.1, reference="init" if kind == "init" else pretrained())
  state = tx.init(params)
  jaxpr = jax.make_jaxpr(lambda g, s, p: tx.update(g, s, p)[0])(params, state, params)
  assert jaxpr.consts == []
  step = jax.jit(lambda g, s, p: tx.update(g, s, p)[0])
  first = step(zeros_like(params), state, params)
  other = state._replace(reference=jax.tree.map(lambda r: r + 1.0, state.reference))
  second = step(zeros_like(params), other, params)
  assert step._cache_size() == 1  # read as an argument: a new reference, the same program
  s = ll2.scales(params)["dense"]["kernel"]
  np.testing.assert_allclose(
    second["dense"]["kernel"] - first["dense"]["kernel"], -0.1 * s, rtol=1e-4
  )


# --- with JAX's transformations (Optax's wrappers: test_optax_battery.py) -------------------


def test_vmap_over_weight_decay_sweeps_lambdas_toward_the_reference():
  params, start = make_params(), pretrained()
  lambdas = jnp.array([0.0, 1e-3, 1e-2, 1e-1])

  def step(weight_decay):
    tx = ll2.layer_l2(weight_decay, "fan_avg", reference=start)
    return tx.update(zeros_like(params), tx.init(params), params)[0]

  swept = jax.jit(jax.vmap(step))(lambdas)
  for i, weight_decay in enumerate([0.0, 1e-3, 1e-2, 1e-1]):
    chex.assert_trees_all_close(
      jax.tree.map(lambda x, i=i: x[i], swept), step(weight_decay), rtol=1e-6, atol=1e-9
    )


def test_vmap_over_weight_decay_with_one_state_outside():
  params = make_params()
  tx_state = ll2.layer_l2(0.0, reference="init").init(params)
  moved = jax.tree.map(lambda p: p + 1.0, params)

  def step(weight_decay):
    return ll2.layer_l2(weight_decay, "none", reference="init").update(
      zeros_like(params), tx_state, moved
    )[0]["dense"]["kernel"]

  swept = jax.vmap(step)(jnp.array([0.5, 2.0]))
  np.testing.assert_allclose(swept[:, 0, 0], [0.5, 2.0], rtol=1e-6)


def test_base_multipliers_and_mask_compose_with_the_reference():
  params, start = make_params(), pretrained()
  base = jax.eval_shape(lambda: make_params())
  options = {
    "base": base,
    "multipliers": {"^embed/": 0.0, "^conv/": 3.0},
    "mask": lambda p: jax.tree.map(lambda x: x.ndim >= 2, p),
  }
  tx = ll2.layer_l2(0.1, "fan_avg", reference=start, **options)
  updates, _ = tx.update(zeros_like(params), tx.init(params), params)
  s = ll2.scales(params, "fan_avg", **options)
  assert s["conv"]["kernel"] == 3.0 and s["embed"]["embedding"] == 0.0
  for keys in [("dense", "kernel"), ("conv", "kernel"), ("attn", "query", "bias")]:
    expected = 0.1 * get(s, keys) * (get(params, keys) - get(start, keys))
    np.testing.assert_allclose(get(updates, keys), expected, rtol=1e-5, atol=1e-7)
  np.testing.assert_array_equal(updates["embed"]["embedding"], 0.0)
  gradient = jax.grad(lambda p: ll2.penalty(p, 0.1, "fan_avg", reference=start, **options))(params)
  chex.assert_trees_all_equal(updates, gradient)


# --- dtypes ---------------------------------------------------------------------------------


def test_half_precision_decay_toward_a_reference_does_not_underflow():
  # weight_decay * s = 1e-3 / 65536 ~ 1.5e-8 is below float16's smallest subnormal (6e-8):
  # in float16 the coefficient is 0. Computed in float32 and rounded once, the decay of a
  # distance of 64 (100 - 36) is ~1e-6, which float16 holds.
  params = {"kernel": jnp.full((256, 256), 100.0, jnp.float16)}
  reference = {"kernel": jnp.full((256, 256), 36.0, jnp.float16)}
  grads = {"kernel": jnp.zeros((256, 256), jnp.float16)}
  tx = ll2.layer_l2(1e-3, "numel", reference=reference)
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  expected = (jnp.float32(1e-3 / 65536) * jnp.float32(64.0)).astype(jnp.float16)
  assert float(expected) > 0
  assert updates["kernel"].dtype == jnp.float16
  np.testing.assert_array_equal(updates["kernel"], expected)
  naive = grads["kernel"] + jnp.float16(1e-3 / 65536) * (params["kernel"] - reference["kernel"])
  assert float(naive[0, 0]) == 0.0  # what a float16 computation loses


def test_bfloat16_distance_is_taken_in_float32_and_rounded_once():
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.normal(size=(64, 64)) * 100, jnp.bfloat16)
  w_ref = jnp.asarray(rng.normal(size=(64, 64)), jnp.bfloat16)
  g = jnp.asarray(rng.normal(size=(64, 64)), jnp.bfloat16)
  tx = ll2.layer_l2(3e-3, "none", reference={"kernel": w_ref})
  updates, _ = tx.update({"kernel": g}, tx.init({"kernel": w}), {"kernel": w})
  f32 = jnp.float32
  once = (g.astype(f32) + f32(3e-3) * (w.astype(f32) - w_ref.astype(f32))).astype(jnp.bfloat16)
  np.testing.assert_array_equal(updates["kernel"], once)
  in_bfloat16 = g + jnp.bfloat16(3e-3) * (w - w_ref)
  assert not np.array_equal(np.asarray(in_bfloat16, f32), np.asarray(once, f32))


def test_grad_of_penalty_is_exactly_the_decay_in_half_precision():
  params, start = make_params(dtype=jnp.bfloat16), make_params(seed=1, dtype=jnp.bfloat16)
  tx = ll2.layer_l2(0.7, "fan_in", reference=start)
  decay, _ = tx.update(zeros_like(params), tx.init(params), params)
  grad = jax.grad(ll2.penalty)(params, 0.7, "fan_in", reference=start)
  chex.assert_trees_all_equal(decay, grad)


# --- penalty and describe -------------------------------------------------------------------


def test_penalty_is_half_lambda_s_squared_distance():
  params, start = make_params(), pretrained()
  s = ll2.scales(params, "fan_avg")
  expected = sum(
    0.5 * 0.2 * scale * float(np.sum((np.asarray(p, np.float64) - np.asarray(r, np.float64)) ** 2))
    for p, r, scale in zip(
      jax.tree.leaves(params), jax.tree.leaves(start), jax.tree.leaves(s), strict=True
    )
  )
  assert float(ll2.penalty(params, 0.2, reference=start)) == pytest.approx(expected, rel=1e-5)
  per_leaf = ll2.penalty(params, 0.2, reference=start, per_leaf=True)
  assert float(per_leaf["dense"]["bias"]) == 0.0
  assert float(ll2.penalty(params, 0.2, reference=params)) == 0.0


def test_penalty_takes_the_reference_kept_in_the_state():
  params, start = make_params(), pretrained()
  tx = ll2.layer_l2(0.2, reference=start)
  kept = tx.init(params).reference
  assert float(ll2.penalty(params, 0.2, reference=kept)) == float(
    ll2.penalty(params, 0.2, reference=start)
  )


def test_describe_shows_the_distance_from_the_reference():
  params, start = make_params(), pretrained()
  report = ll2.describe(params, 0.1, reference=start)
  rows = {row.path: row for row in report.rows}
  distance = float(np.linalg.norm(np.asarray(params["dense"]["kernel"] - start["dense"]["kernel"])))
  assert rows["dense/kernel"].distance == pytest.approx(distance, rel=1e-5)
  assert rows["dense/bias"].distance is None
  assert report.total_penalty == pytest.approx(float(ll2.penalty(params, 0.1, reference=start)))
  lines = str(report).splitlines()
  assert "||w - w_ref||" in lines[0]
  assert re.search(rf"dense/kernel .* {distance:.4g} ", str(report))
  assert "decayed toward the reference" in lines[-1]
  plain = ll2.describe(params, 0.1)
  assert "||w - w_ref||" not in str(plain) and "toward" not in str(plain)
  assert all(row.distance is None for row in plain.rows)


def test_describe_of_shapes_with_a_reference():
  shapes = jax.eval_shape(make_params)
  report = ll2.describe(shapes, 0.1, reference=shapes)
  assert report.reference and all(row.distance is None for row in report.rows)
  assert report.total_penalty is None


# --- errors ---------------------------------------------------------------------------------


def test_unknown_string_is_named():
  message = r"`reference='zero'` is not known; use None \(decay toward zero\), 'init'"
  with pytest.raises(ValueError, match=message):
    ll2.layer_l2(1e-2, reference="zero")
  with pytest.raises(ValueError, match=message):
    ll2.layer_adamw(1e-3, 1e-2, reference="zero")
  with pytest.raises(ValueError, match=message):
    ll2.penalty(make_params(), 1e-2, reference="zero")


def test_init_is_only_for_the_optimizer():
  with pytest.raises(ValueError, match=r"`reference='init'` needs the optimizer's `init`"):
    ll2.penalty(make_params(), 1e-2, reference="init")
  with pytest.raises(ValueError, match=r"`reference='init'` needs the optimizer's `init`"):
    ll2.describe(make_params(), 1e-2, reference="init")


def test_callable_reference_is_a_type_error():
  with pytest.raises(TypeError, match=r"`reference` must be None, 'init' or a pytree"):
    ll2.layer_l2(1e-2, reference=lambda params: params)


def test_reference_of_another_structure_is_named():
  params, start = make_params(), pretrained()
  del start["norm"]
  tx = ll2.layer_l2(1e-2, reference=start)
  message = r"`reference` must have the tree structure of `params`; `reference` lacks the leaf"
  with pytest.raises(ValueError, match=message + r" 'norm/scale'"):
    tx.init(params)
  with pytest.raises(ValueError, match=message):
    ll2.penalty(params, 1e-2, reference=start)
  start = pretrained()
  start["dense"]["w"] = start["dense"].pop("kernel")
  with pytest.raises(ValueError, match=r"`params` has leaf 'dense/kernel' where `reference` has"):
    ll2.describe(params, 1e-2, reference=start)


def test_reference_leaf_of_another_shape_is_named():
  params, start = make_params(), pretrained()
  start["dense"]["kernel"] = jnp.zeros((24, 40))
  with pytest.raises(
    ValueError, match=r"`reference` leaf 'dense/kernel' has shape \(24, 40\), but the leaf has"
  ):
    ll2.layer_l2(1e-2, reference=start).init(params)
  start = pretrained()
  start["dense"]["bias"] = jnp.zeros(3)  # not decayed, but a wrong model all the same
  with pytest.raises(ValueError, match=r"`reference` leaf 'dense/bias' has shape \(3,\)"):
    ll2.penalty(params, 1e-2, reference=start)


def test_reference_leaf_of_another_dtype_is_named():
  params, start = make_params(), pretrained()
  start["conv"]["kernel"] = start["conv"]["kernel"].astype(jnp.bfloat16)
  with pytest.raises(
    TypeError, match=r"`reference` leaf 'conv/kernel' has dtype bfloat16, but the leaf has dtype"
  ):
    ll2.layer_adamw(1e-3, 1e-2, reference=start).init(params)


def test_reference_without_an_array_at_a_decayed_leaf_is_named():
  params, start = make_params(), pretrained()
  start["embed"]["embedding"] = None
  with pytest.raises(ValueError, match=r"`reference` holds None at leaf 'embed/embedding'"):
    ll2.layer_l2(1e-2, reference=start).init(params)
  start["embed"]["embedding"] = jax.ShapeDtypeStruct((50, 24), jnp.float32)
  with pytest.raises(TypeError, match=r"holds ShapeDtypeStruct at leaf 'embed/embedding'"):
    ll2.penalty(params, 1e-2, reference=start)


def test_a_state_from_other_params_is_named_at_update():
  params = make_params()
  tx = ll2.layer_l2(1e-2, reference="init")
  state = tx.init(params)
  other = dict(params, extra={"kernel": jnp.ones((4, 4))})
  with pytest.raises(ValueError, match=r"the optimizer state's `reference` must have the tree"):
    tx.update(zeros_like(other), state, other)
  masked = ll2.layer_l2(1e-2, reference="init", multipliers={"^dense/": 0.0}).init(params)
  with pytest.raises(
    ValueError,
    match=r"the optimizer state's `reference` holds MaskedNode\(\) at leaf 'dense/kernel'",
  ):
    tx.update(zeros_like(params), masked, params)
