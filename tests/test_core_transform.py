"""`layer_l2`: the update it computes, and how it behaves inside Optax."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_layer_l2 as ll2

SCALINGS = list(ll2.SCALINGS)


def make_params(dtype=jnp.float32):
  """A tree with a leaf of every kind a model has."""
  keys = iter(jax.random.split(jax.random.key(0), 16))

  def normal(shape):
    return jax.random.normal(next(keys), shape, dtype)

  return {
    "dense": {"kernel": normal((40, 24)), "bias": normal((24,))},
    "conv": {"kernel": normal((3, 3, 4, 8)), "bias": normal((8,))},
    "attn": {
      "query": {"kernel": normal((24, 2, 6)), "bias": normal((2, 6))},
      "out": {"kernel": normal((2, 6, 24)), "bias": normal((24,))},
    },
    "embed": {"embedding": normal((50, 24))},
    "norm": {"scale": normal((24,))},
  }


# Independent expectations for `make_params`: (fan_in, fan_out, numel) by leaf.
EXPECTED_FANS = {
  ("dense", "kernel"): (40, 24, 960),
  ("conv", "kernel"): (36, 72, 288),
  ("attn", "query", "kernel"): (24, 12, 288),
  ("attn", "out", "kernel"): (12, 24, 288),
  ("embed", "embedding"): (50, 24, 1200),
}
FORMULAS = {
  "none": lambda fi, fo, n: 1.0,
  "numel": lambda fi, fo, n: 1.0 / n,
  "fan_avg": lambda fi, fo, n: (fi + fo) / n,
  "fan_in": lambda fi, fo, n: fi / n,
  "fan_out": lambda fi, fo, n: fo / n,
  "sqrt_fan_in": lambda fi, fo, n: fi**0.5,
  "sqrt_fan_avg": lambda fi, fo, n: ((fi + fo) / 2) ** 0.5,
  "inv_sqrt_fan_in": lambda fi, fo, n: fi**-0.5,
}


def get(tree, keys):
  for key in keys:
    tree = tree[key]
  return tree


@pytest.mark.parametrize("scaling", SCALINGS)
def test_update_is_gradient_plus_scaled_weights(scaling):
  params = make_params()
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.25), params)
  tx = ll2.layer_l2(0.3, scaling)
  updates, _ = tx.update(grads, tx.init(params), params)
  decayed = set(EXPECTED_FANS)
  for path, update in jax.tree_util.tree_leaves_with_path(updates):
    keys = tuple(k.key for k in path)
    g = np.asarray(get(grads, keys), np.float64)
    p = np.asarray(get(params, keys), np.float64)
    if keys in decayed:
      s = FORMULAS[scaling](*EXPECTED_FANS[keys])
      np.testing.assert_allclose(update, g + 0.3 * s * p, rtol=1e-6, atol=1e-7)
    else:
      np.testing.assert_array_equal(update, g)


@pytest.mark.parametrize("scaling", SCALINGS)
def test_scales_match_the_table(scaling):
  s = ll2.scales(make_params(), scaling)
  for keys, fans in EXPECTED_FANS.items():
    assert get(s, keys) == pytest.approx(FORMULAS[scaling](*fans), rel=1e-12)
  assert s["dense"]["bias"] == s["norm"]["scale"] == s["attn"]["query"]["bias"] == 0.0


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


def test_inside_optax_masked():
  params = make_params()
  grads = jax.tree.map(jnp.zeros_like, params)
  outer = {k: k == "dense" for k in params}
  tx = optax.masked(ll2.layer_l2(1.0, "none"), outer)
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["dense"]["kernel"], params["dense"]["kernel"])
  np.testing.assert_array_equal(updates["conv"]["kernel"], 0.0)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32])
@pytest.mark.parametrize("scaling", SCALINGS)
def test_updates_keep_their_dtype(dtype, scaling):
  params = make_params(dtype)
  grads = jax.tree.map(lambda p: jnp.ones_like(p) * 0.5, params)
  tx = optax.chain(ll2.layer_l2(1e-2, scaling), optax.adam(1e-3))
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  chex.assert_trees_all_equal_dtypes(updates, params)
  updates, _ = jax.jit(ll2.layer_l2(1e-2, scaling).update)(grads, optax.EmptyState(), params)
  chex.assert_trees_all_equal_dtypes(updates, params)


def test_float64_under_x64():
  # `jax.enable_x64` is new; the declared floor, JAX 0.4.35, has only the
  # `jax.experimental` context manager, which newer JAX no longer has.
  if hasattr(jax, "enable_x64"):
    enable_x64 = jax.enable_x64
  else:
    from jax.experimental import enable_x64
  with enable_x64(True):
    params = {"kernel": jnp.full((4, 4), 3.0, jnp.float64)}
    tx = ll2.layer_l2(1e-3, "fan_avg")
    updates, _ = tx.update({"kernel": jnp.zeros((4, 4), jnp.float64)}, tx.init(params), params)
    assert updates["kernel"].dtype == jnp.float64
    assert float(updates["kernel"][0, 0]) == 1e-3 * 0.5 * 3.0


def test_half_precision_decay_does_not_underflow():
  # weight_decay * s = 1e-3 / 65536 ~ 1.5e-8 is below float16's smallest
  # subnormal (6e-8): in float16 the coefficient would be 0. Computed in
  # float32 and rounded once, 1.5e-8 * 100 = 1.5e-6 is representable.
  params = {"kernel": jnp.full((256, 256), 100.0, jnp.float16)}
  grads = {"kernel": jnp.zeros((256, 256), jnp.float16)}
  tx = ll2.layer_l2(1e-3, "numel")
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  expected = np.float16(1e-3 / 65536 * 100.0)
  assert expected > 0
  assert updates["kernel"].dtype == jnp.float16
  np.testing.assert_array_equal(updates["kernel"], expected)
  naive = grads["kernel"] + jnp.float16(1e-3 / 65536) * params["kernel"]
  assert float(naive[0, 0]) == 0.0  # what a float16 computation loses


def test_bfloat16_is_rounded_once():
  params = {"kernel": jnp.full((8, 8), 1.0, jnp.bfloat16)}
  grads = {"kernel": jnp.full((8, 8), 1.0, jnp.bfloat16)}
  tx = ll2.layer_l2(3e-3, "none")
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_array_equal(
    updates["kernel"], jnp.asarray(1.003, jnp.float32).astype(jnp.bfloat16)
  )


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


def test_inject_hyperparams_with_static_string_and_callable():
  params = make_params()
  grads = jax.tree.map(jnp.zeros_like, params)
  direct = ll2.layer_l2(1e-2, "fan_in")
  expected, _ = direct.update(grads, direct.init(params), params)
  injected = optax.inject_hyperparams(ll2.layer_l2)(weight_decay=1e-2, scaling="fan_in")
  state = injected.init(params)
  updates, state = jax.jit(injected.update)(grads, state, params)
  chex.assert_trees_all_close(updates, expected, rtol=1e-6)
  state.hyperparams["weight_decay"] = jnp.asarray(2e-2)
  doubled, _ = jax.jit(injected.update)(grads, state, params)
  chex.assert_trees_all_close(doubled, jax.tree.map(lambda u: 2 * u, expected), rtol=1e-6)

  def custom(info):
    return 1.0 / info.fan_in

  injected = optax.inject_hyperparams(ll2.layer_l2, static_args=("scaling", "mask"))(
    weight_decay=1e-2, scaling=custom, mask=lambda p: jax.tree.map(lambda x: x.ndim == 2, p)
  )
  updates, _ = jax.jit(injected.update)(grads, injected.init(params), params)
  np.testing.assert_allclose(updates["dense"]["kernel"], 1e-2 / 40 * params["dense"]["kernel"])
  np.testing.assert_array_equal(updates["conv"]["kernel"], 0.0)  # rank 4: masked out


def test_multisteps_accumulates_before_decaying():
  params = make_params()
  grads = jax.tree.map(jnp.ones_like, params)
  tx = optax.MultiSteps(optax.chain(ll2.layer_l2(1e-2), optax.sgd(1.0)), every_k_schedule=3)
  state = tx.init(params)
  update = jax.jit(tx.update)
  for _ in range(2):
    updates, state = update(grads, state, params)
    chex.assert_trees_all_equal(updates, jax.tree.map(jnp.zeros_like, params))
  updates, state = update(grads, state, params)
  inner = optax.chain(ll2.layer_l2(1e-2), optax.sgd(1.0))
  expected, _ = inner.update(grads, inner.init(params), params)
  chex.assert_trees_all_close(updates, expected, rtol=1e-6)


def test_second_jitted_step_does_not_recompile():
  params = make_params()
  tx = optax.chain(ll2.layer_l2(optax.exponential_decay(1e-2, 10, 0.5)), optax.adam(1e-3))

  @jax.jit
  def step(params, state):
    grads = jax.tree.map(jnp.sin, params)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  state = tx.init(params)
  params, state = step(params, state)
  params, state = step(params, state)
  params, state = step(params, state)
  assert step._cache_size() == 1


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
  for keys in EXPECTED_FANS:
    assert float(jnp.sum(get(params, keys) ** 2)) < float(jnp.sum(get(start, keys) ** 2))
  chex.assert_trees_all_equal(params["dense"]["bias"], start["dense"]["bias"])


def test_user_mask_pytree_prefix_and_callable():
  params = make_params()
  grads = jax.tree.map(jnp.zeros_like, params)
  prefix = {"dense": True, "conv": False, "attn": False, "embed": False, "norm": False}
  full = jax.tree.map(lambda _: False, params)
  full["dense"]["kernel"] = full["dense"]["bias"] = True
  for mask in (prefix, full, lambda p: prefix):
    tx = ll2.layer_l2(1.0, "none", mask=mask)
    updates, _ = tx.update(grads, tx.init(params), params)
    # A user mask replaces the default: the dense bias is decayed too.
    chex.assert_trees_all_equal(updates["dense"], params["dense"])
    np.testing.assert_array_equal(updates["conv"]["kernel"], 0.0)


def test_multipliers_first_matching_pattern_wins():
  params = make_params()
  multipliers = {r"^attn/": 0.0, r"kernel": 2.0, r"dense": 5.0}
  s = ll2.scales(params, "none", multipliers=multipliers)
  assert s["dense"]["kernel"] == 2.0
  assert s["attn"]["query"]["kernel"] == 0.0
  assert s["embed"]["embedding"] == 1.0
  grads = jax.tree.map(jnp.zeros_like, params)
  tx = ll2.layer_l2(1.0, "none", multipliers=multipliers)
  updates, _ = tx.update(grads, tx.init(params), params)
  assert updates["attn"]["query"]["kernel"] is grads["attn"]["query"]["kernel"]


def test_multipliers_callable_and_custom_scaling_see_paths_and_fans():
  seen = {}

  def scaling(info):
    seen[info.path] = info
    return 1.0

  params = make_params()
  s = ll2.scales(params, scaling, multipliers=lambda path, leaf: leaf.ndim / 10)
  assert s["conv"]["kernel"] == pytest.approx(0.4)
  info = seen["attn/out/kernel"]
  assert (info.shape, info.fan_in, info.fan_out, info.numel) == ((2, 6, 24), 12, 24, 288)
  assert set(seen) == {"/".join(keys) for keys in EXPECTED_FANS}


def test_scales_from_eval_shape():
  shapes = jax.eval_shape(make_params)
  assert ll2.scales(shapes, "fan_avg") == ll2.scales(make_params(), "fan_avg")
