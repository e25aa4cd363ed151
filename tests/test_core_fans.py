"""Fans, element counts and axis rules, checked against JAX's initializers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optax_layer_l2 as ll2


def jax_fan(shape, mode, in_axis=-2, out_axis=-1, batch_axis=()):
  """The fan JAX's `variance_scaling` uses for `shape`, recovered exactly.

  With the same key, `variance_scaling(1, mode, "uniform")` draws
  `uniform(-1, 1) * sqrt(3 / fan)`, so the ratio of the two draws is
  `sqrt(3 / fan)`.
  """
  key = jax.random.key(0)
  init = jax.nn.initializers.variance_scaling(
    1.0, mode, "uniform", in_axis=in_axis, out_axis=out_axis, batch_axis=batch_axis
  )
  drawn = np.asarray(init(key, shape, jnp.float32), np.float64)
  unit = np.asarray(jax.random.uniform(key, shape, jnp.float32, -1, 1), np.float64)
  ratio = np.median(np.abs(drawn[unit != 0] / unit[unit != 0]))
  return 3.0 / ratio**2


CASES = [
  # shape, Dims or None, the same axes for JAX (in, out, batch)
  ((40, 256), None, (-2, -1, ())),
  ((3, 3, 16, 32), None, (-2, -1, ())),  # conv HWIO
  ((5, 16, 32), None, (-2, -1, ())),  # conv 1-D, WIO
  ((8, 64, 128), ll2.Dims(-2, -1, batch_axes=0), (-2, -1, (0,))),  # stacked dense
  ((64, 4, 16), ll2.Dims(0, (1, 2)), (0, (1, 2), ())),  # attention query kernel
  ((4, 16, 64), ll2.Dims((0, 1), 2), ((0, 1), 2, ())),  # attention out kernel
  ((2, 3, 3, 8, 16), ll2.Dims(-2, -1, batch_axes=(0,)), (-2, -1, (0,))),
]


@pytest.mark.parametrize(("shape", "dims", "jax_axes"), CASES)
@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_fans_match_jax_initializers(shape, dims, jax_axes, mode):
  in_axis, out_axis, batch_axis = jax_axes
  ours = ll2.fans(shape, dims)
  expected = jax_fan(shape, mode, in_axis, out_axis, batch_axis)
  assert getattr(ours, mode) == pytest.approx(expected, rel=1e-5)


def test_numel_leaves_out_batch_axes():
  assert ll2.fans((8, 64, 128), ll2.Dims(-2, -1, batch_axes=0)) == ll2.Fans(64, 128, 64 * 128)
  assert ll2.fans((3, 3, 16, 32)) == ll2.Fans(3 * 3 * 16, 3 * 3 * 32, 3 * 3 * 16 * 32)


def test_rank_one_and_scalar():
  assert ll2.fans((7,)) == ll2.Fans(1, 7, 7)
  assert ll2.fans(()) == ll2.Fans(1, 1, 1)


def test_dims_normalises_ints_to_tuples():
  dims = ll2.Dims(in_axes=0, out_axes=[1, 2], batch_axes=3)
  assert (dims.in_axes, dims.out_axes, dims.batch_axes) == ((0,), (1, 2), (3,))


@pytest.mark.parametrize("layer", ["query", "key", "value"])
def test_attention_projection_kernels_by_path(layer):
  params = {"attn": {layer: {"kernel": jnp.zeros((64, 4, 16)), "bias": jnp.zeros((4, 16))}}}
  s = ll2.scales(params, "fan_in")
  # fan_in = features = 64, fan_out = heads * head_dim = 64, numel = 64 * 64.
  assert s["attn"][layer]["kernel"] == 64 / (64 * 64)
  assert s["attn"][layer]["bias"] == 0.0
  s_out = ll2.scales({"attn": {layer: {"kernel": jnp.zeros((32, 4, 16))}}}, "fan_in")
  assert s_out["attn"][layer]["kernel"] == 32 / (32 * 64)


def test_attention_out_kernel_by_path():
  params = {"attn": {"out": {"kernel": jnp.zeros((4, 16, 32))}}}
  assert ll2.scales(params, "fan_in")["attn"]["out"]["kernel"] == 64 / (64 * 32)
  assert ll2.scales(params, "fan_out")["attn"]["out"]["kernel"] == 32 / (64 * 32)


def test_a_rank_three_kernel_elsewhere_is_a_conv():
  params = {"conv": {"kernel": jnp.zeros((5, 16, 32))}}
  assert ll2.scales(params, "fan_in")["conv"]["kernel"] == (5 * 16) / (5 * 16 * 32)


def test_grouped_query_key_kernel_has_fewer_heads():
  params = {"attn": {"key": {"kernel": jnp.zeros((64, 2, 16))}}}
  assert ll2.scales(params, "fan_out")["attn"]["key"]["kernel"] == 32 / (64 * 32)


def test_stacked_rule_gives_every_layer_its_own_factor():
  single = {
    "block": {
      "query": {"kernel": jnp.zeros((64, 4, 16))},
      "out": {"kernel": jnp.zeros((4, 16, 64))},
      "mlp": {"kernel": jnp.zeros((64, 256))},
    }
  }
  stack = jax.tree.map(lambda x: jnp.zeros((6, *x.shape)), single)
  for scaling in ll2.SCALINGS:
    alone = ll2.scales(single, scaling)
    stacked = ll2.scales(stack, scaling, dims=ll2.stacked(0))
    assert stacked == alone


def test_stacked_rule_defaults_to_the_leading_axis_and_counts_from_the_end():
  params = {"layers": {"kernel": jnp.zeros((6, 64, 128))}}
  leading = ll2.scales(params, "fan_avg", dims=ll2.stacked(0))
  assert leading["layers"]["kernel"] == (64 + 128) / (64 * 128)
  assert ll2.scales(params, "fan_avg", dims=ll2.stacked()) == leading
  assert ll2.scales(params, "fan_avg", dims=ll2.stacked(-3, where="layers")) == leading


def test_stacked_scalars_are_scalars_only_where_the_rule_says_so():
  params = {"layers": {"gain": jnp.zeros(6)}}
  decayed = {"layers": {"gain": True}}
  # `where` names the leaf: six stacked scalars, each of one element.
  named = ll2.scales(params, "numel", mask=decayed, dims=ll2.stacked(0, where="layers"))
  assert named["layers"]["gain"] == 1.0
  # Without `where`, a leaf of rank no higher than the batch axes is no stack:
  # a vector of 6, fan-in 1 and fan-out 6.
  unnamed = ll2.scales(params, "numel", mask=decayed, dims=ll2.stacked(0))
  assert unnamed["layers"]["gain"] == 1 / 6
  (row,) = ll2.describe(params, 1.0, mask=decayed, dims=ll2.stacked(0)).rows
  assert (row.fan_in, row.fan_out) == (1, 6)


def test_attention_kernels_are_found_at_the_top_of_the_tree():
  params = {"query": {"kernel": jnp.zeros((16, 4, 8))}, "out": {"kernel": jnp.zeros((4, 8, 16))}}
  # "fan_in" is fan_in / numel = 1 / fan_out: query's fan-out is heads * head_dim.
  s = ll2.scales(params, "fan_in")
  assert s == {"query": {"kernel": 1 / 32}, "out": {"kernel": 1 / 16}}


def test_stacked_rule_with_where_leaves_other_leaves_to_default():
  params = {"layers": {"kernel": jnp.zeros((6, 64, 128))}, "head": {"kernel": jnp.zeros((64, 10))}}
  s = ll2.scales(params, "numel", dims=ll2.stacked(0, where="^layers/"))
  assert s["layers"]["kernel"] == 1 / (64 * 128)
  assert s["head"]["kernel"] == 1 / 640


def test_stacked_biases_stay_undecayed_by_name():
  params = {"layers": {"kernel": jnp.zeros((6, 8, 8)), "bias": jnp.zeros((6, 8))}}
  s = ll2.scales(params, dims=ll2.stacked(0))
  assert s["layers"]["bias"] == 0.0
  assert s["layers"]["kernel"] == 16 / 64


def test_stacked_vectors_are_rank_one_per_layer():
  # A (layers, n) leaf named by `where`: rank 1 per layer, not decayed.
  params = {"layers": {"alpha": jnp.zeros((6, 8))}}
  assert ll2.scales(params, dims=ll2.stacked(0, where="layers"))["layers"]["alpha"] == 0.0
  assert ll2.scales(params)["layers"]["alpha"] == (6 + 8) / 48  # unstacked: a 6 x 8 matrix


def test_a_bare_stacked_rule_will_not_guess_at_a_matrix_outside_the_stack():
  # Before 0.4, a bare `stacked(0)` read the embedding as 100 stacked vectors and
  # silently stopped decaying it.
  params = {
    "embed": {"embedding": jnp.zeros((100, 32))},
    "layers": {"kernel": jnp.zeros((6, 32, 32)), "bias": jnp.zeros((6, 32))},
  }
  with pytest.raises(ValueError) as raised:
    ll2.scales(params, dims=ll2.stacked(0))
  assert str(raised.value) == (
    "`stacked([0])` cannot tell whether leaf 'embed/embedding' of shape (100, 32) is one "
    "layer or a stack of 100 vectors; give `stacked(..., where=...)` a regular expression "
    "for the stacked layers' paths, or use `ll2.infer_dims`, which reads the stacking from "
    "the computation."
  )
  s = ll2.scales(params, "numel", dims=ll2.stacked(0, where="^layers/"))
  assert s["embed"]["embedding"] == 1 / 3200
  assert s["layers"]["kernel"] == 1 / 1024


def test_receptive_field_multiplies_both_fans():
  fans = ll2.fans((3, 5, 16, 32))
  assert fans.fan_in == 15 * 16 and fans.fan_out == 15 * 32
  assert math.prod((3, 5, 16, 32)) == fans.numel


def test_one_dims_for_the_whole_tree_skips_leaves_the_default_mask_excludes():
  # Equinox `Linear` weights are (out, in); its biases and norm weights are rank 1.
  params = {
    "linear": {"weight": jnp.zeros((10, 40)), "bias": jnp.zeros(10)},
    "norm": {"weight": jnp.zeros(40)},
  }
  s = ll2.scales(params, "fan_in", dims=ll2.Dims(in_axes=-1, out_axes=-2))
  assert s == {"linear": {"weight": 40 / 400, "bias": 0.0}, "norm": {"weight": 0.0}}
  with pytest.raises(ValueError, match="for leaf 'linear/bias': out_axes axis -2 is out of range"):
    ll2.scales(params, "fan_in", dims=ll2.Dims(-1, -2), mask={"linear": True, "norm": True})


def test_a_dims_rule_is_asked_about_arrays_only():
  asked = []

  def rule(path, leaf):
    asked.append((path, tuple(leaf.shape)))
    return ll2.Dims(1, 2, batch_axes=0) if leaf.ndim == 3 else None

  params = {
    "w": jnp.ones((2, 3, 4)),
    "none": None,
    "name": "x",
    "c": jnp.ones((3, 3), jnp.complex64),
  }
  s = ll2.scales(params, "numel", dims=rule)
  assert s == {"c": 0.0, "name": 0.0, "none": None, "w": 1 / 12}
  assert asked == [("c", (3, 3)), ("w", (2, 3, 4))]


def test_each_row_says_where_its_fans_came_from():
  params = {
    "attn": {
      "query": {"kernel": jnp.ones((16, 2, 8)), "bias": jnp.ones((2, 8))},
      "out": {"kernel": jnp.ones((2, 8, 16))},
    },
    "conv": {"kernel": jnp.ones((3, 16, 4))},  # rank 3, but not an attention kernel
    "dense": {"kernel": jnp.ones((16, 4)), "bias": jnp.ones(4)},
    "count": jnp.zeros((2, 2), jnp.int32),
    "gain": jnp.ones(4),  # rank 1
    "off": {"kernel": jnp.ones((4, 4))},  # multiplier 0
  }
  rows = {row.path: row for row in ll2.describe(params, 0.1, multipliers={"off": 0.0}).rows}
  assert {path: row.fans_from for path, row in rows.items()} == {
    "gain": "shape rule",  # skipped for its rank, by the shape rule's fans
    "off/kernel": "shape rule",
    "attn/out/kernel": "path rule",
    "attn/query/bias": "shape rule",  # skipped by name, its fans by the shape rule all the same
    "attn/query/kernel": "path rule",
    "conv/kernel": "shape rule",
    "count": None,  # not floating: no fans
    "dense/bias": "shape rule",
    "dense/kernel": "shape rule",
  }
  # The path rule: features to heads x head_dim, and back.
  assert (rows["attn/query/kernel"].fan_in, rows["attn/query/kernel"].fan_out) == (16, 16)
  assert (rows["attn/out/kernel"].fan_in, rows["attn/out/kernel"].fan_out) == (16, 16)
  assert (rows["conv/kernel"].fan_in, rows["conv/kernel"].fan_out) == (48, 12)  # 3 x 16, 3 x 4
  # A user's `Dims`, as a tree or a rule, and only where given.
  for given in ({"dense": {"kernel": ll2.Dims(1, 0)}}, lambda path, leaf: ll2.Dims(1, 0)):
    report = ll2.describe({"dense": {"kernel": jnp.ones((16, 4))}}, 0.1, dims=given)
    (row,) = report.rows
    assert (row.fans_from, row.fan_in, row.fan_out) == ("dims", 4, 16)
  # A bias or a vector that one `Dims` covers gets no fans: the `Dims` was meant for kernels.
  dense = {"dense": {"kernel": jnp.ones((16, 4)), "bias": jnp.ones(4), "gain": jnp.ones(4)}}
  bias, gain, kernel = ll2.describe(dense, 0.1, dims=ll2.Dims(0, 1)).rows
  assert (bias.skipped, bias.fans_from, bias.fan_in) == ("named 'bias'", None, None)
  assert (gain.skipped, gain.fans_from, gain.fan_in) == ("rank 1", None, None)
  assert kernel.fans_from == "dims"


def test_a_bare_stacked_rule_reads_a_bias_or_scale_of_one_more_axis_as_the_stack():
  # A (layers, n) leaf named `bias` or `scale` is never decayed, so reading it as a stack of
  # vectors guesses nothing; at the top of the tree or deep in it, it is no error. (Fans from
  # a `dims` rule are left out for a leaf skipped by name.)
  params = {
    "scale": jnp.ones((6, 8)),
    "blocks": {"norm": {"scale": jnp.ones((6, 8))}, "mlp": {"bias": jnp.ones((6, 8))}},
    "layers": {"kernel": jnp.ones((6, 8, 8))},
  }
  rows = {row.path: row for row in ll2.describe(params, 0.1, dims=ll2.stacked(0)).rows}
  assert {path: (row.skipped, row.fan_in, row.fan_out) for path, row in rows.items()} == {
    "blocks/mlp/bias": ("named 'bias'", None, None),
    "blocks/norm/scale": ("named 'scale'", None, None),
    "layers/kernel": (None, 8, 8),
    "scale": ("named 'scale'", None, None),
  }


def test_equal_dims_hash_alike_and_different_dims_apart():
  assert hash(ll2.Dims(0, [1])) == hash(ll2.Dims((0,), 1))
  assert {ll2.Dims(0, 1): "a"}[ll2.Dims([0], (1,))] == "a"
  hashes = {hash(ll2.Dims(0, 1)), hash(ll2.Dims(1, 0)), hash(ll2.Dims(0, 1, batch_axes=2))}
  assert len(hashes) == 3


class CallableDims:
  """A callable pytree holding `Dims`, as an Equinox module from `infer_dims` is."""

  def __init__(self, kernel):
    self.kernel = kernel

  def __call__(self, path, leaf):
    raise AssertionError("a pytree of `Dims` is not called")


jax.tree_util.register_pytree_with_keys(
  CallableDims,
  lambda tree: (((jax.tree_util.GetAttrKey("kernel"), tree.kernel),), None),
  lambda _, children: CallableDims(*children),
)


def test_a_callable_pytree_of_dims_is_a_tree_not_a_rule():
  params = CallableDims(jnp.ones((4, 6)))
  s = ll2.scales(params, "fan_in", dims=CallableDims(ll2.Dims(1, 0)))
  assert s.kernel == 6 / 24  # fan_in 6 (axis 1), not the default's 4
