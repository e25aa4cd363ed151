"""The factor ``s = c(leaf) * multiplier(leaf)``: the named scalings worked out by hand,
callables, multipliers, and the tables of names."""

import jax
import jax.numpy as jnp
import pytest
from conftest import SCALES_OF_MAKE_PARAMS, get, make_params

import optax_layer_l2 as ll2


def test_the_named_scalings_and_rate_scalings():
  assert list(ll2.SCALINGS) == [
    "none", "numel", "fan_avg", "fan_in", "fan_out", "sqrt_fan_in", "sqrt_fan_avg",
    "inv_sqrt_fan_in",
  ]  # fmt: skip
  assert list(ll2.LR_SCALINGS) == ["none", "inv_fan_in", "inv_sqrt_fan_in", "mup"]
  assert list(SCALES_OF_MAKE_PARAMS) == list(ll2.SCALINGS)


@pytest.mark.parametrize("table", ["SCALINGS", "LR_SCALINGS"])
def test_the_tables_of_names_are_read_only(table):
  names = getattr(ll2, table)
  before = dict(names)
  with pytest.raises(TypeError, match="does not support item assignment"):
    names["mine"] = lambda info: 1.0
  with pytest.raises(TypeError, match="does not support item deletion"):
    del names["none"]
  assert dict(names) == before


@pytest.mark.parametrize("scaling", list(ll2.SCALINGS))
def test_scales_are_the_hand_computed_factors(scaling):
  s = ll2.scales(make_params(), scaling)
  for path, expected in SCALES_OF_MAKE_PARAMS[scaling].items():
    assert get(s, path.split("/")) == pytest.approx(expected, rel=1e-12), path
  assert s["dense"]["bias"] == s["norm"]["scale"] == s["attn"]["query"]["bias"] == 0.0


def test_scales_from_eval_shape():
  shapes = jax.eval_shape(make_params)
  assert ll2.scales(shapes, "fan_avg") == ll2.scales(make_params(), "fan_avg")


def test_a_scaling_callable_receives_the_leaf_info():
  seen = []

  def scaling(info):
    seen.append(info)
    return 2.0

  params = {"dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones(3)}}
  assert ll2.scales(params, scaling)["dense"]["kernel"] == 2.0
  assert seen == [
    ll2.LeafInfo("dense/kernel", (4, 3), fan_in=4, fan_out=3, numel=12, dims=ll2.Dims(0, 1))
  ]


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
  assert set(seen) == set(SCALES_OF_MAKE_PARAMS["none"])


def test_zero_from_a_scaling_or_a_multiplier_callable_is_allowed():
  # 0 is finite and non-negative: the leaf is simply not decayed.
  params = {"dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones(3)}}
  assert ll2.scales(params, lambda info: 0.0)["dense"]["kernel"] == 0.0
  (_, kernel) = ll2.describe(params, 0.1, multipliers=lambda path, leaf: 0.0).rows
  assert (kernel.skipped, kernel.fan_in, kernel.fan_out, kernel.scale) == ("multiplier 0", 4, 3, 0)


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


def test_a_multipliers_callable_receives_the_path_and_the_leaf():
  seen = []

  def multipliers(path, leaf):
    seen.append((path, leaf.shape))
    return 3.0 if path == "dense/kernel" else 1.0

  params = {
    "dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones(3)},
    "head": {"kernel": jnp.ones((3, 2))},
  }
  s = ll2.scales(params, "none", multipliers=multipliers)
  assert s == {"dense": {"bias": 0.0, "kernel": 3.0}, "head": {"kernel": 1.0}}
  assert seen == [("dense/kernel", (4, 3)), ("head/kernel", (3, 2))]


def test_the_rate_scalings_of_a_query_kernel():
  # A Flax query kernel (16, 2, 8): fan_in 16, two heads of head_dim 8. muP's rate is 1/fan_in
  # and 1/sqrt(head_dim) more: 1/16 / sqrt(8) = 0.0220970869...; without its `Dims` (a
  # `LeafInfo` built by hand) the head dimension is unknown, and it is 1/fan_in.
  with_dims = ll2.LeafInfo("attn/query/kernel", (16, 2, 8), 16, 16, 256, dims=ll2.Dims(0, (1, 2)))
  without = ll2.LeafInfo("attn/query/kernel", (16, 2, 8), 16, 16, 256)
  expected = {"none": 1.0, "inv_fan_in": 1 / 16, "inv_sqrt_fan_in": 1 / 4}
  for name, factor in expected.items():
    assert ll2.LR_SCALINGS[name](with_dims) == ll2.LR_SCALINGS[name](without) == factor
  assert ll2.LR_SCALINGS["mup"](with_dims) == pytest.approx(0.022097086912079608, rel=1e-15)
  assert ll2.LR_SCALINGS["mup"](without) == 1 / 16
