"""``rescale_init`` and ``lr_scaling="mup"``: muP's initialisation and rates, relative to a base."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optax_layer_l2 as ll2


def constant_mlp(width: int, scale: float = 1.0) -> dict:
  # Constant leaves have an exact size: each one's RMS is its value. The
  # values are LeCun's standard deviation, 1/sqrt(fan_in), as Flax's Dense
  # would draw them, times `scale`.
  return {
    "hidden": {"kernel": jnp.full((40, width), scale / 40**0.5), "bias": jnp.zeros(width)},
    "middle": {"kernel": jnp.full((width, width), scale / width**0.5)},
    "out": {"kernel": jnp.full((width, 10), scale / width**0.5), "bias": jnp.zeros(10)},
  }


def rms(x: jax.Array) -> float:
  return float(jnp.sqrt(jnp.mean(jnp.asarray(x, jnp.float32) ** 2)))


def test_the_base_itself_comes_back_exactly():
  base = constant_mlp(32)
  out = ll2.rescale_init(base, base=base)
  for got, given in zip(jax.tree.leaves(out), jax.tree.leaves(base), strict=True):
    assert got is given


def test_input_hidden_and_readout_sizes_follow_table_3():
  base, wide = constant_mlp(32), constant_mlp(128)
  out = ll2.rescale_init(wide, base=base)
  # m = 128 / 32 = 4. Input (fan-in 40 fixed): the base's size, 1/sqrt(40).
  assert rms(out["hidden"]["kernel"]) == pytest.approx(1 / 40**0.5, rel=1e-5)
  # Hidden: the base's size 1/sqrt(32) over sqrt(m) = 2: 1/sqrt(128), LeCun's at 128.
  assert rms(out["middle"]["kernel"]) == pytest.approx(1 / 128**0.5, rel=1e-5)
  # Readout: the base's size over m: 1/sqrt(32) / 4.
  assert rms(out["out"]["kernel"]) == pytest.approx(1 / 32**0.5 / 4, rel=1e-5)
  # Biases are not rescaled.
  assert out["out"]["bias"] is wide["out"]["bias"]


def test_sizes_are_measured_so_the_initializer_does_not_matter():
  # A framework that draws everything twice as large: the result is the same,
  # relative to a base drawn by it.
  out = ll2.rescale_init(constant_mlp(128, 2.0), base=constant_mlp(32, 2.0))
  assert rms(out["out"]["kernel"]) == pytest.approx(2 / 32**0.5 / 4, rel=1e-5)
  assert rms(out["middle"]["kernel"]) == pytest.approx(2 / 128**0.5, rel=1e-5)


@pytest.mark.parametrize(
  ("row_variance", "factor"),
  [
    # Flax's `Embed` draws rows of variance 1/features: wider, smaller; muP keeps the base's.
    (lambda d: 1.0 / d, 2.0),
    # Equinox's `Embedding` draws rows of variance 1: already the base's size.
    (lambda d: 1.0, 1.0),
  ],
)
def test_an_embedding_keeps_the_base_size(row_variance, factor):
  base = {"embed": {"embedding": jnp.full((65, 32), row_variance(32) ** 0.5)}}
  wide = {"embed": {"embedding": jnp.full((65, 128), row_variance(128) ** 0.5)}}
  out = ll2.rescale_init(wide, base=base)
  assert rms(out["embed"]["embedding"]) == pytest.approx(rms(base["embed"]["embedding"]), rel=1e-5)
  assert rms(out["embed"]["embedding"]) / rms(wide["embed"]["embedding"]) == pytest.approx(factor)


def attention(d_model: int, key: int = 0) -> dict:
  from flax import nnx

  mha = nnx.MultiHeadAttention(4, d_model, decode=False, rngs=nnx.Rngs(key))
  return nnx.state(mha, nnx.Param)


def test_the_query_kernel_carries_the_logits_one_over_head_dim():
  pytest.importorskip("flax")
  base, wide = attention(32), attention(128)
  out = ll2.rescale_init(wide, base=base)
  # 4 heads: head_dim 8 -> 32, so a = sqrt(8 / 32) = 1/2 on top of the hidden kernel's size.
  # Sizes are measured on random draws of 1,024 and 16,384 weights: a percent or two off.
  for name in ("key", "value", "out"):
    ratio = rms(out[name]["kernel"][...]) / rms(base[name]["kernel"][...])
    assert ratio == pytest.approx(0.5, rel=0.05), name  # hidden: 1/sqrt(m), m = 4
  query = rms(out["query"]["kernel"][...]) / rms(base["query"]["kernel"][...])
  assert query == pytest.approx(0.25, rel=0.05)
  assert out["query"]["kernel"][...].dtype == jnp.float32
  # The rates of "mup" move the same multiplier: 1/m for every kernel, a/m for the query.
  report = ll2.describe(wide, 0.1, "none", base=base, lr_scaling="mup")
  rates = {row.path: row.lr_factor for row in report.rows}
  assert rates["query/kernel"] == pytest.approx(0.125)
  assert rates["key/kernel"] == rates["out/kernel"] == pytest.approx(0.25)
  assert rates["query/bias"] == 1.0
  # Without `query`, the logits are the model's: the query kernel is a hidden one.
  plain = ll2.rescale_init(wide, base=base, query=None)
  ratio = rms(plain["query"]["kernel"][...]) / rms(base["query"]["kernel"][...])
  assert ratio == pytest.approx(0.5, rel=0.05)


def test_an_einsum_query_kernel_by_pattern_and_inferred_dims():
  # Gemma's q_einsum: (heads, d_model, head_dim), read by `infer_dims`.
  def forward(params, x):
    q = jnp.einsum("btd,ndh->btnh", x, params["q_einsum"])
    return jnp.einsum("btnh,nhd->btd", q, params["o_einsum"])

  def block(d_model):
    return {
      "q_einsum": jnp.ones((4, d_model, d_model // 4)),
      "o_einsum": jnp.ones((4, d_model // 4, d_model)),
    }

  base, wide = block(32), block(128)
  dims = ll2.infer_dims(forward, wide, jax.ShapeDtypeStruct((1, 3, 128), jnp.float32))
  out = ll2.rescale_init(wide, base=base, dims=dims, query="q_einsum")
  # Both hidden (d_model in, heads * head_dim out): 1/sqrt(4); the query also 1/2.
  assert rms(out["o_einsum"]) == pytest.approx(0.5)
  assert rms(out["q_einsum"]) == pytest.approx(0.25)


def test_zero_readout_starts_the_readout_at_zero():
  out = ll2.rescale_init(constant_mlp(128), base=constant_mlp(32), zero_readout=True)
  assert not np.any(np.asarray(out["out"]["kernel"]))
  assert rms(out["middle"]["kernel"]) == pytest.approx(1 / 128**0.5, rel=1e-5)


def test_it_runs_under_jit_and_vmap_over_seeds():
  def init(width, key):
    return {
      "middle": {"kernel": jax.random.normal(key, (width, width)) / width**0.5},
      "out": {"kernel": jax.random.normal(key, (width, 10)) / width**0.5},
    }

  keys = jnp.stack([jax.random.key(s) for s in range(3)])

  def one(key):
    return ll2.rescale_init(init(64, key), base=init(16, key))

  batched = jax.jit(jax.vmap(one))(keys)
  for s in range(3):
    eager = one(keys[s])
    for got, want in zip(jax.tree.leaves(batched), jax.tree.leaves(eager), strict=True):
      np.testing.assert_allclose(got[s], want, rtol=1e-6)


def test_half_precision_leaves_keep_their_dtype():
  base = jax.tree.map(lambda x: x.astype(jnp.bfloat16), constant_mlp(32))
  out = ll2.rescale_init(
    jax.tree.map(lambda x: x.astype(jnp.bfloat16), constant_mlp(128)), base=base
  )
  assert out["out"]["kernel"].dtype == jnp.bfloat16
  assert rms(out["out"]["kernel"]) == pytest.approx(1 / 32**0.5 / 4, rel=1e-2)


def test_a_base_of_shapes_cannot_be_measured():
  base = jax.eval_shape(lambda: constant_mlp(32))
  with pytest.raises(TypeError) as raised:
    ll2.rescale_init(constant_mlp(128), base=base)
  assert str(raised.value) == (
    "`rescale_init` needs the base model's initial params (arrays) in `base`; at leaf "
    "'hidden/kernel' it holds ShapeDtypeStruct. It measures the size the framework's "
    "initializer gave each leaf at the base, whatever the initializer."
  )


def test_a_query_kernel_of_one_fan_out_axis_is_refused():
  base = {"attn": {"query": {"kernel": jnp.ones((32, 32))}}}
  wide = {"attn": {"query": {"kernel": jnp.ones((64, 64))}}}
  with pytest.raises(ValueError) as raised:
    ll2.rescale_init(wide, base=base, query="query")
  assert str(raised.value) == (
    "`rescale_init(query=...)`: leaf 'attn/query/kernel' of shape (64, 64) has one fan-out "
    "axis, so its head dimension cannot be told from it; give the query kernel as (d_model, "
    "heads, head_dim), or leave it out of `query` and scale its logits in the model."
  )


def test_an_all_zero_base_leaf_is_refused_where_the_leaf_is_not():
  base = constant_mlp(32)
  base["middle"]["kernel"] = jnp.zeros((32, 32))
  with pytest.raises(ValueError) as raised:
    ll2.rescale_init(constant_mlp(64), base=base)
  assert str(raised.value) == (
    "`rescale_init`: `base` leaf 'middle/kernel' is all zeros but the leaf is not; "
    "the base's size is the size to scale from."
  )


def test_a_base_of_another_structure_names_the_leaf():
  base = constant_mlp(32)
  del base["out"]
  with pytest.raises(ValueError, match="`base` must have the tree structure of `params`"):
    ll2.rescale_init(constant_mlp(64), base=base)


def test_mup_rates_are_the_inv_fan_in_step_with_other_constants():
  # The query multiplier is decided when the transformation is made: the step
  # is the same program as inv_fan_in's, one multiply a scaled leaf, and only
  # the query's constant differs.
  def block(d_model: int) -> dict:
    return {
      "attn": {
        "query": {"kernel": jnp.ones((d_model, 4, d_model // 4))},
        "out": {"kernel": jnp.ones((4, d_model // 4, d_model))},
      },
      "mlp": {"kernel": jnp.ones((d_model, 4 * d_model)), "bias": jnp.zeros(4 * d_model)},
    }

  base, wide = block(32), block(128)

  def step(lr_scaling: str) -> tuple[Any, dict]:
    tx = ll2.layer_lr(lr_scaling, base=base)
    run = lambda g: tx.update(g, tx.init(wide), wide)[0]  # noqa: E731
    return jax.make_jaxpr(run)(wide), run(wide)

  (mup, mup_out), (fan_in, fan_in_out) = step("mup"), step("inv_fan_in")
  program = lambda j: [(e.primitive.name, [v.aval for v in e.outvars]) for e in j.eqns]  # noqa: E731
  assert program(mup.jaxpr) == program(fan_in.jaxpr)
  assert [e.primitive.name for e in mup.jaxpr.eqns].count("mul") == 3  # the bias keeps its rate
  # head_dim 8 -> 32: the query's rate is inv_fan_in's times sqrt(8 / 32).
  np.testing.assert_allclose(
    mup_out["attn"]["query"]["kernel"], 0.5 * fan_in_out["attn"]["query"]["kernel"]
  )
  np.testing.assert_array_equal(mup_out["mlp"]["kernel"], fan_in_out["mlp"]["kernel"])
