"""`base=`: every scaling relative to the model on which lambda was tuned."""

import gc
import re
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import ShapeOnly, get

import optax_layer_l2 as ll2


def transformer_like(d, vocab=50, heads=2):
  """A tree with dense, attention, embedding, norm and bias leaves at width ``d``."""
  keys = iter(jax.random.split(jax.random.key(d), 16))

  def normal(*shape):
    return jax.random.normal(next(keys), shape)

  return {
    "embed": {"embedding": normal(vocab, d)},
    "attn": {
      "query": {"kernel": normal(d, heads, d // heads), "bias": normal(heads, d // heads)},
      "out": {"kernel": normal(heads, d // heads, d), "bias": normal(d)},
    },
    "mlp": {"kernel": normal(d, 4 * d), "bias": normal(4 * d)},
    "norm": {"scale": normal(d)},
    "head": {"kernel": normal(d, vocab)},
  }


# `c(leaf) / c(base leaf)` of each named scaling for `transformer_like(64)` against
# `transformer_like(16)`, worked out by hand. (fan_in, fan_out, numel) at width d: embedding
# (50, d, 50d), query and out (d, d, d^2), mlp (d, 4d, 4d^2), head (d, 50, 50d). So numel
# grows 4 times for the embedding and the head, 16 times for the rest; and fan_avg's
# (fan_in + fan_out)/numel is 114/3200 against 66/800 for the embedding and the head,
# 19/44 of it.
RELATIVE = {
  "none": (1.0, 1.0, 1.0, 1.0, 1.0),
  "numel": (1 / 4, 1 / 16, 1 / 16, 1 / 16, 1 / 4),
  "fan_avg": (19 / 44, 1 / 4, 1 / 4, 1 / 4, 19 / 44),
  "fan_in": (1 / 4, 1 / 4, 1 / 4, 1 / 4, 1.0),  # 1/fan_out: 50 at both widths for the head
  "fan_out": (1.0, 1 / 4, 1 / 4, 1 / 4, 1 / 4),  # 1/fan_in: 50 for the embedding
  "sqrt_fan_in": (1.0, 2.0, 2.0, 2.0, 2.0),
  # sqrt(114 / 66) = sqrt(19 / 11) for the embedding and the head; sqrt(4) for the rest.
  "sqrt_fan_avg": (1.3142574813455419, 2.0, 2.0, 2.0, 1.3142574813455419),
  "inv_sqrt_fan_in": (1.0, 0.5, 0.5, 0.5, 0.5),
}
RELATIVE_LEAVES = [
  ("embed", "embedding"),
  ("attn", "query", "kernel"),
  ("attn", "out", "kernel"),
  ("mlp", "kernel"),
  ("head", "kernel"),
]


@pytest.mark.parametrize("scaling", list(ll2.SCALINGS))
def test_factor_is_the_ratio_of_leaf_to_base(scaling):
  params, base = transformer_like(64), transformer_like(16)
  s = ll2.scales(params, scaling, base=base)
  assert list(RELATIVE) == list(ll2.SCALINGS)
  for keys, expected in zip(RELATIVE_LEAVES, RELATIVE[scaling], strict=True):
    assert get(s, keys) == pytest.approx(expected, rel=1e-12), keys
  assert s["mlp"]["bias"] == s["norm"]["scale"] == s["attn"]["query"]["bias"] == 0.0


@pytest.mark.parametrize("scaling", list(ll2.SCALINGS))
def test_every_scaling_is_plain_l2_at_the_base(scaling):
  params = transformer_like(32)
  multipliers = {"head": 0.5}
  relative = ll2.scales(params, scaling, base=params, multipliers=multipliers)
  plain = ll2.scales(params, "none", multipliers=multipliers)
  assert jax.tree.map(
    lambda a, b: a == pytest.approx(b, rel=1e-12), relative, plain
  ) == jax.tree.map(lambda _: True, plain)


def test_sqrt_fan_in_doubles_at_four_times_the_width():
  s = ll2.scales(transformer_like(128), "sqrt_fan_in", base=transformer_like(32))
  assert s["mlp"]["kernel"] == 2.0  # fan_in 128 against 32
  assert s["head"]["kernel"] == 2.0
  assert s["embed"]["embedding"] == 1.0  # fan_in is the vocabulary, the same at every width


def test_base_may_be_shapes():
  params, base = transformer_like(64), transformer_like(16)
  shapes = jax.eval_shape(lambda: base)
  assert ll2.scales(params, "fan_avg", base=shapes) == ll2.scales(params, "fan_avg", base=base)


def test_callable_scaling_is_relative_too():
  params, base = transformer_like(64), transformer_like(16)

  def per_output(info):
    return 1.0 / info.fan_out

  s = ll2.scales(params, per_output, base=base)
  assert s["mlp"]["kernel"] == pytest.approx(64 / 256)  # (1 / 256) / (1 / 64)


def test_base_uses_the_same_dims_rule():
  params = {"layers": {"kernel": jnp.zeros((6, 64, 128))}}
  base = {"layers": {"kernel": jnp.zeros((6, 16, 32))}}
  s = ll2.scales(params, "numel", dims=ll2.stacked(0), base=base)
  assert s["layers"]["kernel"] == pytest.approx((16 * 32) / (64 * 128))
  dims = {"layers": {"kernel": ll2.Dims(in_axes=1, out_axes=2, batch_axes=0)}}
  assert ll2.scales(params, "numel", dims=dims, base=base) == s


def test_update_and_penalty_use_the_relative_factor():
  params, base = transformer_like(64), transformer_like(16)
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.25), params)
  tx = ll2.layer_l2(0.3, "sqrt_fan_in", base=base)
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  np.testing.assert_allclose(
    updates["mlp"]["kernel"], 0.25 + 0.3 * 2.0 * params["mlp"]["kernel"], rtol=1e-6, atol=1e-7
  )
  np.testing.assert_array_equal(updates["norm"]["scale"], grads["norm"]["scale"])
  zeros = jax.tree.map(jnp.zeros_like, params)
  decay, _ = tx.update(zeros, tx.init(params), params)
  gradient = jax.grad(lambda p: ll2.penalty(p, 0.3, "sqrt_fan_in", base=base))(params)
  for d, g in zip(jax.tree.leaves(decay), jax.tree.leaves(gradient), strict=True):
    np.testing.assert_array_equal(d, g)  # the same factor and coefficient: exactly equal


def test_base_is_no_constant_of_the_program():
  params, base = transformer_like(32), transformer_like(16)
  tx = ll2.layer_l2(0.1, "fan_avg", base=base)
  jaxpr = jax.make_jaxpr(lambda g, p: tx.update(g, tx.init(p), p)[0])(params, params)
  assert jaxpr.consts == []


def test_layer_adamw_at_its_base_is_adamw():
  params = transformer_like(32)
  grads = jax.tree.map(lambda p: 0.1 * p + 0.01, params)
  mask = jax.tree.map(lambda s: s > 0, ll2.scales(params, "none"))
  ours = ll2.layer_adamw(1e-2, 0.5, "fan_avg", base=params)
  theirs = optax.adamw(1e-2, weight_decay=0.5, mask=mask)
  a, _ = ours.update(grads, ours.init(params), params)
  b, _ = theirs.update(grads, theirs.init(params), params)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-9)


def test_describe_shows_the_base_shape():
  report = ll2.describe(transformer_like(64), 0.1, "sqrt_fan_in", base=transformer_like(16))
  rows = {row.path: row for row in report.rows}
  assert rows["mlp/kernel"].base_shape == (16, 64)
  assert rows["mlp/kernel"].shape == (64, 256)
  assert rows["mlp/kernel"].coefficient == pytest.approx(0.2)
  assert rows["mlp/bias"].base_shape is None
  text = str(report)
  assert "base shape" in text.splitlines()[0]
  assert re.search(r"mlp/kernel\s+\(64, 256\)\s+\(16, 64\)", text)
  assert "relative to base" in text.splitlines()[-1]
  assert "base shape" not in str(ll2.describe(transformer_like(16), 0.1))


def test_base_of_another_structure_is_named():
  params, base = transformer_like(32), transformer_like(16)
  del base["head"]
  with pytest.raises(
    ValueError, match=r"`base` must have the tree structure of `params`.*'head/kernel'"
  ):
    ll2.scales(params, base=base)
  tx = ll2.layer_l2(0.1, base=base)
  with pytest.raises(ValueError, match=r"`base` must have the tree structure"):
    tx.update(params, tx.init(params), params)


def test_base_leaf_of_another_rank_is_named():
  params, base = transformer_like(32), transformer_like(16)
  base["mlp"]["kernel"] = jnp.zeros((16 * 64,))
  with pytest.raises(ValueError, match=r"`base` leaf 'mlp/kernel' has shape \(1024,\), of rank 1"):
    ll2.penalty(params, 0.1, base=base)


def test_base_without_an_array_at_a_decayed_leaf_is_named():
  params, base = transformer_like(32), transformer_like(16)
  base["mlp"]["kernel"] = None
  with pytest.raises(ValueError, match=r"`base` holds None at leaf 'mlp/kernel'"):
    ll2.describe(params, 0.1, base=base)


def test_base_where_the_scaling_is_zero_is_named():
  params, base = transformer_like(32), transformer_like(16)

  def zero_when_narrow(info):
    return 0.0 if info.fan_in < 32 else 1.0

  with pytest.raises(ValueError, match=r"`scaling` gave 0 for leaf 'attn/out/kernel' of `base`"):
    ll2.scales(params, zero_when_narrow, base=base)


def test_base_where_the_scaling_is_negative_names_the_base():
  params, base = transformer_like(32), transformer_like(16)

  def negative_when_narrow(info):
    return -1.0 if info.fan_in < 32 else 1.0

  with pytest.raises(ValueError, match=r"'attn/out/kernel \(in `base`\)'.*non-negative"):
    ll2.scales(params, negative_when_narrow, base=base)


def test_base_is_matched_by_leaf_paths_not_node_types():
  # `nnx.Optimizer` gives `init` a State of `nnx.Param` and `update` bare arrays; a base of
  # either kind fits both, as a list fits a tuple of the same paths.
  factor = ll2.scales((jnp.ones((8, 8)),), "sqrt_fan_in", base=[jnp.ones((2, 8))])
  assert factor == (2.0,)
  # A bare array is a tree of one leaf, at the path "".
  assert ll2.scales(jnp.ones((8, 8)), "sqrt_fan_in", base=jnp.ones((2, 8))) == 2.0


def test_a_dims_rule_is_asked_about_the_base_leaves_too():
  # A rule may answer by shape: here the wide kernel (16, 4) is read (in, out) and the base's
  # (8, 4) the other way round, fan-in 4. So "sqrt_fan_in" is sqrt(16 / 4) = 2, not sqrt(16 / 8).
  asked = []

  def rule(path, leaf):
    asked.append(tuple(leaf.shape))
    return ll2.Dims(0, 1) if leaf.shape[0] > 8 else ll2.Dims(1, 0)

  params, base = {"kernel": jnp.ones((16, 4))}, {"kernel": jnp.ones((8, 4))}
  assert ll2.scales(params, "sqrt_fan_in", dims=rule, base=base) == {"kernel": 2.0}
  assert asked == [(16, 4), (8, 4)]


def test_a_scaling_callable_sees_the_base_leaf_under_the_same_path():
  seen = []

  def scaling(info):
    seen.append(info)
    return 1.0

  params = {"dense": {"kernel": jnp.ones((8, 6)), "bias": jnp.ones(6)}}
  base = {"dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones(3)}}
  assert ll2.scales(params, scaling, base=base)["dense"]["kernel"] == 1.0
  assert seen == [
    ll2.LeafInfo("dense/kernel", (8, 6), fan_in=8, fan_out=6, numel=48, dims=ll2.Dims(0, 1)),
    ll2.LeafInfo("dense/kernel", (4, 3), fan_in=4, fan_out=3, numel=12, dims=ll2.Dims(0, 1)),
  ]


def test_only_the_base_shapes_are_kept():
  base = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}}
  kernel = weakref.ref(base["dense"]["kernel"])
  tx = ll2.layer_l2(0.1, base=base)
  del base
  gc.collect()
  assert kernel() is None
  params = {"dense": {"kernel": jnp.ones((4, 6)), "bias": jnp.ones(6)}}
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  # fan_avg relative to the base: (10 / 24) / (5 / 6) = 0.5.
  np.testing.assert_allclose(updates["dense"]["kernel"], 0.1 * 0.5)


def test_a_base_needs_only_shapes():
  params = {"dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones(3)}}
  shapes = {"dense": {"kernel": ShapeOnly((2, 3)), "bias": ShapeOnly((3,))}}
  arrays = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}}
  assert ll2.scales(params, base=shapes) == ll2.scales(params, base=arrays)
  # fan_avg: (4 + 3) / 12 against (2 + 3) / 6, 7/10 of it.
  assert ll2.scales(params, base=shapes)["dense"]["kernel"] == pytest.approx(7 / 10, rel=1e-15)
  grads = jax.tree.map(jnp.zeros_like, params)
  for tx in (ll2.layer_l2(0.1, base=shapes), ll2.layer_adamw(1e-3, 0.1, base=shapes)):
    updates, _ = tx.update(grads, tx.init(params), params)
    assert float(updates["dense"]["bias"][0]) == 0.0
    assert float(updates["dense"]["kernel"][0, 0]) != 0.0
