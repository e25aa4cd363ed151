"""`layer_lr` and `layer_adamw(lr_scaling=...)`: the factors and the update.

How they behave inside Optax's wrappers is `test_optax_battery.py`'s.
"""

import math
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import get, keys_of, model
from hypothesis import given, settings
from hypothesis import strategies as st

import optax_layer_l2 as ll2

BASE = jax.eval_shape(lambda: model(8))
WIDE = model(32)
# r = c(leaf) / c(base leaf) of each named rate scaling for `WIDE` against `BASE`, worked out by
# hand from their fan-ins (see `model`): 32 against 8 for the dense, query and out kernels and
# 288 against 72 for the conv (4 times), 50 and 40 at both widths for the embedding and the
# first kernel. muP's query multiplier 1/sqrt(head_dim) is 1/sqrt(6) at both widths.
GROWING = [
  ("dense", "kernel"),
  ("conv", "kernel"),
  ("attn", "query", "kernel"),
  ("attn", "out", "kernel"),
]
FIXED = [("embed", "embedding"), ("first", "kernel")]
RATE_FACTORS = {
  "none": {"growing": 1.0, "fixed": 1.0},
  "inv_fan_in": {"growing": 1 / 4, "fixed": 1.0},  # 8 / 32
  "inv_sqrt_fan_in": {"growing": 1 / 2, "fixed": 1.0},  # sqrt(8 / 32)
  "mup": {"growing": 1 / 4, "fixed": 1.0},  # as inv_fan_in, the head_dim unchanged
}


def expected_factor(scaling, keys):
  return RATE_FACTORS[scaling]["growing" if keys in GROWING else "fixed"]


@pytest.mark.parametrize("scaling", list(ll2.LR_SCALINGS))
def test_update_is_multiplied_by_the_factor_relative_to_base(scaling):
  assert list(ll2.LR_SCALINGS) == list(RATE_FACTORS)
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), WIDE)
  tx = ll2.layer_lr(scaling, base=BASE)
  updates, state = tx.update(grads, tx.init(WIDE), WIDE)
  assert state == optax.EmptyState()
  for path, update in jax.tree_util.tree_leaves_with_path(updates):
    keys = keys_of(path)
    if keys in GROWING + FIXED:
      np.testing.assert_allclose(update, 0.5 * expected_factor(scaling, keys), rtol=1e-6)
    else:
      assert update is get(grads, keys), keys  # biases and norm scales: untouched


def test_inv_fan_in_gives_one_over_the_width_multiplier():
  tx = ll2.layer_lr("inv_fan_in", base=BASE)
  grads = jax.tree.map(jnp.ones_like, WIDE)
  updates, _ = tx.update(grads, tx.init(WIDE), WIDE)
  for keys in [("dense", "kernel"), ("conv", "kernel"), ("attn", "query", "kernel")]:
    np.testing.assert_array_equal(get(updates, keys), 0.25)  # fan-in 4 times the base's
  np.testing.assert_array_equal(updates["attn"]["out"]["kernel"], 0.25)  # heads * head_dim
  for keys in [("embed", "embedding"), ("first", "kernel")]:
    assert get(updates, keys) is get(grads, keys)  # fixed fan-in: r == 1, passed through


def test_at_the_base_every_update_comes_back_as_it_came():
  params = model(8)
  grads = jax.tree.map(jnp.sin, params)
  for scaling in ll2.LR_SCALINGS:
    tx = ll2.layer_lr(scaling, base=params)
    updates, _ = tx.update(grads, tx.init(params), params)
    for got, came in zip(jax.tree.leaves(updates), jax.tree.leaves(grads), strict=True):
      assert got is came


def test_mask_dims_and_multipliers_are_layer_l2s():
  grads = jax.tree.map(jnp.ones_like, WIDE)
  only_dense = jax.tree.map(lambda _: False, WIDE)
  only_dense["dense"]["kernel"] = True
  tx = ll2.layer_lr("inv_fan_in", base=BASE, mask=only_dense)
  updates, _ = tx.update(grads, tx.init(WIDE), WIDE)
  np.testing.assert_array_equal(updates["dense"]["kernel"], 0.25)
  np.testing.assert_array_equal(updates["conv"]["kernel"], 1.0)
  # A mask that selects a bias: rank 1, fan-in 1 at every width, so r == 1.
  tx = ll2.layer_lr("inv_fan_in", base=BASE, mask=lambda p: jax.tree.map(lambda _: True, p))
  updates, _ = tx.update(grads, tx.init(WIDE), WIDE)
  np.testing.assert_array_equal(updates["dense"]["bias"], 1.0)
  # dims: the dense kernel read the other way round has fan-in 2 * width: r = 1/4 as well,
  # the query kernel with fan-in heads * head_dim = 12 at both widths: r = 1.
  turned = {"attn/query/kernel": ll2.Dims(in_axes=(-2, -1), out_axes=(0,))}
  tx = ll2.layer_lr("inv_fan_in", base=BASE, dims=lambda path, leaf: turned.get(path))
  updates, _ = tx.update(grads, tx.init(WIDE), WIDE)
  np.testing.assert_array_equal(updates["attn"]["query"]["kernel"], 1.0)
  # Multipliers multiply r; a multiplier of 0 freezes the layer; unmatched leaves keep theirs.
  tx = ll2.layer_lr("inv_fan_in", base=BASE, multipliers={"dense": 2.0, "conv": 0.0})
  updates, _ = tx.update(grads, tx.init(WIDE), WIDE)
  np.testing.assert_array_equal(updates["dense"]["kernel"], 0.5)
  np.testing.assert_array_equal(updates["conv"]["kernel"], 0.0)
  np.testing.assert_array_equal(updates["attn"]["query"]["kernel"], 0.25)
  np.testing.assert_array_equal(updates["dense"]["bias"], 1.0)  # not selected: no multiplier


def test_stacked_layers_get_the_factor_of_one_layer():
  stacked = {"blocks": {"kernel": jnp.ones((4, 32, 32))}}
  base = {"blocks": {"kernel": jnp.ones((4, 8, 8))}}
  tx = ll2.layer_lr("inv_fan_in", base=base, dims=ll2.stacked(0))
  updates, _ = tx.update(stacked, tx.init(stacked), stacked)
  np.testing.assert_array_equal(updates["blocks"]["kernel"], 0.25)
  # Without `stacked`, axis 0 is receptive field, multiplying both fans alike: the same ratio.
  tx = ll2.layer_lr("inv_fan_in", base={"blocks": {"kernel": jnp.ones((1, 8, 8))}})
  updates, _ = tx.update(stacked, tx.init(stacked), stacked)
  np.testing.assert_array_equal(updates["blocks"]["kernel"], 1 / 16)


def test_custom_scaling_sees_fans_and_paths():
  seen = {}

  def by_path(info):
    seen[info.path] = (info.fan_in, info.fan_out)
    return 3.0 if info.path == "dense/kernel" else 1.0

  params = {"dense": {"kernel": jnp.ones((16, 4))}, "other": {"kernel": jnp.ones((16, 4))}}
  base = {"dense": {"kernel": jnp.ones((8, 4))}, "other": {"kernel": jnp.ones((8, 4))}}
  tx = ll2.layer_lr(by_path, base=base)
  updates, _ = tx.update(params, tx.init(params))
  np.testing.assert_array_equal(updates["dense"]["kernel"], 1.0)  # 3 / 3: relative to base
  assert updates["other"]["kernel"] is params["other"]["kernel"]
  assert seen == {"dense/kernel": (8, 4), "other/kernel": (8, 4)}  # the base's, last


def test_odd_leaves_pass_through():
  params = {
    "kernel": jnp.ones((8, 8)),
    "none": None,
    "ints": jnp.ones((4, 4), jnp.int32),
    "empty": jnp.ones((0, 4)),
    "key": jax.random.key(0),
  }
  base = {**params, "kernel": jnp.ones((2, 8))}
  tx = ll2.layer_lr("inv_fan_in", base=base)
  updates, _ = tx.update(params, tx.init(params))
  np.testing.assert_array_equal(updates["kernel"], 0.25)
  assert updates["none"] is None
  for name in ("ints", "empty", "key"):
    assert updates[name] is params[name]
  assert tx.update(None, optax.EmptyState())[0] is None


def test_nan_is_never_hidden():
  grads = jax.tree.map(lambda p: jnp.full_like(p, jnp.nan), WIDE)
  frozen = ll2.layer_lr("inv_fan_in", base=BASE, multipliers={".": 0.0})
  updates, _ = frozen.update(grads, frozen.init(WIDE))
  assert all(bool(jnp.isnan(u).all()) for u in jax.tree.leaves(updates))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float16, jnp.bfloat16])
def test_updates_keep_their_dtype_and_are_rounded_once(dtype):
  params = {"kernel": jnp.ones((24, 4), dtype)}
  base = {"kernel": jnp.ones((8, 4), dtype)}
  grads = {"kernel": jnp.full((24, 4), 1.01, dtype)}
  tx = ll2.layer_lr("inv_fan_in", base=base)
  updates, _ = tx.update(grads, tx.init(params))
  assert updates["kernel"].dtype == dtype
  # The factor 1/3 multiplies in float32 and the product is rounded once.
  expected = (grads["kernel"].astype(jnp.float32) * (1 / 3)).astype(dtype)
  np.testing.assert_array_equal(updates["kernel"], expected)


def _adam_directions(grads, params, steps=1):
  adam = optax.scale_by_adam()
  state = adam.init(params)
  for _ in range(steps):
    directions, state = adam.update(grads, state, params)
  return directions


def test_layer_adamw_multiplies_adam_by_r_but_not_the_decay():
  lr, wd = 1e-2, 0.1
  grads = jax.tree.map(jnp.cos, WIDE)
  tx = ll2.layer_adamw(lr, wd, "none", lr_scaling="inv_fan_in", base=BASE)
  updates, _ = tx.update(grads, tx.init(WIDE), WIDE)
  directions = _adam_directions(grads, WIDE)
  for path, update in jax.tree_util.tree_leaves_with_path(updates):
    keys = keys_of(path)
    u, w = get(directions, keys), get(WIDE, keys)
    if keys in GROWING + FIXED:
      r = expected_factor("inv_fan_in", keys)
      expected = -lr * (r * u + wd * w)  # the decay: lr * wd, not * r
    else:
      expected = -lr * u
    np.testing.assert_allclose(update, expected, rtol=1e-5, atol=1e-8, err_msg=str(keys))


def test_layer_adamw_decay_follows_its_own_scaling_beside_the_rates():
  lr, wd = 1e-2, 0.1
  grads = jax.tree.map(jnp.zeros_like, WIDE)
  tx = ll2.layer_adamw(lr, wd, "inv_sqrt_fan_in", lr_scaling="inv_fan_in", base=BASE)
  updates, _ = tx.update(grads, tx.init(WIDE), WIDE)
  # Zero gradients: Adam's direction is 0, so the update is the decay alone, 1/sqrt(4) of AdamW's.
  dense, first = WIDE["dense"]["kernel"], WIDE["first"]["kernel"]
  np.testing.assert_allclose(updates["dense"]["kernel"], -lr * wd * 0.5 * dense, rtol=1e-6)
  np.testing.assert_allclose(updates["first"]["kernel"], -lr * wd * first, rtol=1e-6)


def test_layer_adamw_without_lr_scaling_is_unchanged():
  grads = jax.tree.map(jnp.cos, WIDE)
  plain = ll2.layer_adamw(1e-2, 0.1, "none", base=BASE)
  ones = ll2.layer_adamw(1e-2, 0.1, "none", base=BASE, lr_scaling="none")
  chain = optax.chain(
    optax.scale_by_adam(), ll2.layer_l2(0.1, "none", base=BASE), optax.scale_by_learning_rate(1e-2)
  )
  expected, _ = chain.update(grads, chain.init(WIDE), WIDE)
  for tx in (plain, ones):
    updates, _ = tx.update(grads, tx.init(WIDE), WIDE)
    chex.assert_trees_all_equal(updates, expected)
  assert len(plain.init(WIDE)) == 3  # no layer_lr in the chain
  assert len(ones.init(WIDE)) == 4


def test_vmap_over_the_learning_rate_sweeps_rates_in_one_program():
  grads = jax.tree.map(jnp.cos, WIDE)
  rates = jnp.array([1e-3, 3e-3, 1e-2])

  def step(lr):
    tx = ll2.layer_adamw(lr, 0.1, "none", lr_scaling="inv_fan_in", base=BASE)
    return tx.update(grads, tx.init(WIDE), WIDE)[0]

  swept = jax.jit(jax.vmap(step))(rates)
  for i, lr in enumerate([1e-3, 3e-3, 1e-2]):
    chex.assert_trees_all_close(
      jax.tree.map(lambda x, i=i: x[i], swept), step(lr), rtol=1e-5, atol=1e-9
    )


def test_describe_shows_the_rate_factor():
  report = ll2.describe(WIDE, 0.1, "none", lr_scaling="inv_fan_in", base=BASE)
  factors = {row.path: row.lr_factor for row in report.rows}
  assert factors["dense/kernel"] == 0.25
  assert factors["attn/out/kernel"] == 0.25
  assert factors["embed/embedding"] == 1.0
  assert factors["dense/bias"] == 1.0  # not selected: the rate as it is
  header = str(report).splitlines()[0].split()
  assert header[header.index("lambda*s") + 1] == "r"
  assert str(report).splitlines()[-1].count("lr_scaling=inv_fan_in") == 1
  plain = ll2.describe(WIDE, 0.1, "none", base=BASE)
  assert all(row.lr_factor is None for row in plain.rows)
  assert "r" not in str(plain).splitlines()[0].split()


widths = st.integers(min_value=1, max_value=64)


@settings(max_examples=25, deadline=None)
@given(
  n_in=widths, n_out=widths, base_in=widths, base_out=widths, power=st.sampled_from([0.5, 1.0])
)
def test_rate_factor_and_decay_factor_come_from_one_computation(
  n_in, n_out, base_in, base_out, power
):
  """The same callable as a decay scaling and as a rate scaling gives the same factor."""

  def c(info):
    return (info.fan_in + 2 * info.fan_out) ** -power

  params = {"kernel": jax.ShapeDtypeStruct((n_in, n_out), jnp.float32)}
  base = {"kernel": jax.ShapeDtypeStruct((base_in, base_out), jnp.float32)}
  s = ll2.scales(params, c, base=base)["kernel"]
  r = ll2.describe(params, 1.0, c, lr_scaling=c, base=base).rows[0].lr_factor
  assert r == s
  assert math.isclose(r, ((base_in + 2 * base_out) / (n_in + 2 * n_out)) ** power, rel_tol=1e-12)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_a_half_precision_update_is_scaled_in_float32_and_rounded_once(dtype):
  """r = 32 / 96 is not a power of two: multiplied in the update's own precision, about a
  third of the elements would round differently."""
  tx = ll2.layer_lr("inv_fan_in", base={"kernel": jnp.ones((32, 8))})
  update = jax.random.normal(jax.random.key(0), (96, 8)).astype(dtype)
  scaled, _ = tx.update({"kernel": update}, tx.init({"kernel": jnp.ones((96, 8))}))
  assert scaled["kernel"].dtype == dtype
  expected = (update.astype(jnp.float32) * (32 / 96)).astype(dtype)
  np.testing.assert_array_equal(scaled["kernel"], expected)


def test_bad_multipliers_raise_when_the_transformation_is_built():
  """Before `init`: a typo in a sweep's configuration fails where it is written."""
  with pytest.raises(ValueError, match=r"`multipliers\['kernel'\]` is -1.0"):
    ll2.layer_lr("inv_fan_in", base={"kernel": jnp.ones((4, 4))}, multipliers={"kernel": -1.0})


def test_scaling_is_the_deprecated_name_of_lr_scaling():
  with pytest.warns(DeprecationWarning) as warned:
    tx = ll2.layer_lr(scaling="inv_sqrt_fan_in", base=BASE)
  assert [str(w.message) for w in warned] == [
    "`layer_lr(scaling=...)` is now `layer_lr(lr_scaling=...)`, the name it has in "
    "`layer_adamw` and `describe`; `scaling=` will be removed after version 0.4."
  ]
  if "MUTANT_UNDER_TEST" not in os.environ:  # the mutation driver's trampolines come between
    assert warned[0].filename == __file__  # the warning points at the caller
  grads = jax.tree.map(jnp.ones_like, WIDE)
  updates, _ = tx.update(grads, tx.init(WIDE))
  expected = ll2.layer_lr("inv_sqrt_fan_in", base=BASE)
  chex.assert_trees_all_equal(updates, expected.update(grads, expected.init(WIDE))[0])
  np.testing.assert_array_equal(updates["dense"]["kernel"], 0.5)  # sqrt(8 / 32), not inv_fan_in
