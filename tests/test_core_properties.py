"""Laws that hold for every tree, checked on random ones (hypothesis)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import optax_layer_l2 as ll2

SETTINGS = settings(
  max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)

NAMES = ["kernel", "bias", "scale", "embedding", "w"]
# Few distinct sizes, so that eager JAX reuses its compiled kernels across examples.
shapes = st.lists(st.sampled_from([1, 2, 3]), min_size=0, max_size=3).map(tuple)


@st.composite
def param_trees(draw):
  """A nested dict of float32 leaves of random rank, names and values."""
  rng = np.random.default_rng(draw(st.integers(0, 2**16)))

  def leaf():
    return jnp.asarray(rng.normal(0.0, 2.0, draw(shapes)), jnp.float32)

  tree = {}
  for i in range(draw(st.integers(1, 3))):
    layer = {name: leaf() for name in draw(st.sets(st.sampled_from(NAMES), min_size=1))}
    tree[f"layer_{i}"] = layer
  return tree


@SETTINGS
@given(params=param_trees(), scaling=st.sampled_from(list(ll2.SCALINGS)), wd=st.floats(1e-6, 10.0))
def test_grad_of_penalty_is_exactly_the_decay(params, scaling, wd):
  tx = ll2.layer_l2(wd, scaling)
  zeros = jax.tree.map(jnp.zeros_like, params)
  decay, _ = tx.update(zeros, tx.init(params), params)
  grad = jax.grad(ll2.penalty)(params, wd, scaling)
  chex.assert_trees_all_equal(decay, grad)


@SETTINGS
@given(
  params=param_trees(),
  scaling=st.sampled_from(list(ll2.SCALINGS)),
  wd=st.floats(1e-6, 10.0),
  seed=st.integers(0, 2**16),
  kind=st.sampled_from(["init", "pytree"]),
)
def test_grad_of_penalty_toward_a_reference_is_exactly_the_decay(params, scaling, wd, seed, kind):
  rng = np.random.default_rng(seed)
  reference = jax.tree.map(lambda p: jnp.asarray(rng.normal(0.0, 2.0, p.shape), p.dtype), params)
  tx = ll2.layer_l2(wd, scaling, reference="init" if kind == "init" else reference)
  state = tx.init(reference if kind == "init" else params)
  zeros = jax.tree.map(jnp.zeros_like, params)
  decay, _ = tx.update(zeros, state, params)
  grad = jax.grad(ll2.penalty)(params, wd, scaling, reference=reference)
  chex.assert_trees_all_equal(decay, grad)
  jitted, _ = jax.jit(tx.update)(zeros, state, params)
  chex.assert_trees_all_equal(jitted, grad)


@SETTINGS
@given(params=param_trees(), wd=st.floats(1e-6, 10.0))
def test_none_is_add_decayed_weights_on_the_same_mask(params, wd):
  mask = jax.tree.map(lambda s: s > 0, ll2.scales(params, "none"))
  grads = jax.tree.map(lambda p: jnp.cos(p), params)
  ours = ll2.layer_l2(wd, "none")
  theirs = optax.add_decayed_weights(wd, mask)
  a, _ = ours.update(grads, ours.init(params), params)
  b, _ = theirs.update(grads, theirs.init(params), params)
  chex.assert_trees_all_equal(a, b)


@SETTINGS
@given(params=param_trees(), wd=st.floats(1e-6, 10.0), scaling=st.sampled_from(list(ll2.SCALINGS)))
def test_penalty_is_half_lambda_s_squared_norm(params, wd, scaling):
  s = ll2.scales(params, scaling)
  expected = sum(
    0.5 * wd * scale * float(np.sum(np.asarray(p, np.float64) ** 2))
    for p, scale in zip(jax.tree.leaves(params), jax.tree.leaves(s), strict=True)
  )
  assert float(ll2.penalty(params, wd, scaling)) == pytest.approx(expected, rel=1e-5, abs=1e-30)


@SETTINGS
@given(n_in=st.integers(1, 512), n_out=st.integers(1, 512))
def test_fan_avg_is_symmetric_for_dense_kernels(n_in, n_out):
  a = ll2.scales({"kernel": jax.ShapeDtypeStruct((n_in, n_out), jnp.float32)}, "fan_avg")
  b = ll2.scales({"kernel": jax.ShapeDtypeStruct((n_out, n_in), jnp.float32)}, "fan_avg")
  assert a["kernel"] == pytest.approx(b["kernel"], rel=1e-15)
  assert a["kernel"] == pytest.approx((n_in + n_out) / (n_in * n_out), rel=1e-15)


@SETTINGS
@given(
  field=st.lists(st.integers(1, 7), min_size=1, max_size=3).map(tuple),
  n_in=st.integers(1, 256),
  n_out=st.integers(1, 256),
)
def test_receptive_field_cancels_in_fan_avg(field, n_in, n_out):
  conv = {"kernel": jax.ShapeDtypeStruct((*field, n_in, n_out), jnp.float32)}
  dense = {"kernel": jax.ShapeDtypeStruct((n_in, n_out), jnp.float32)}
  assert ll2.scales(conv, "fan_avg")["kernel"] == pytest.approx(
    ll2.scales(dense, "fan_avg")["kernel"], rel=1e-12
  )


@SETTINGS
@given(params=param_trees(), depth=st.integers(1, 4))
def test_stacking_changes_no_factor(params, depth):
  stacked = jax.tree.map(lambda p: jax.ShapeDtypeStruct((depth, *p.shape), p.dtype), params)
  for scaling in ll2.SCALINGS:
    assert ll2.scales(stacked, scaling, dims=ll2.stacked(0, where="")) == ll2.scales(
      params, scaling
    )


@SETTINGS
@given(n=st.integers(2, 256))
def test_fan_avg_equalises_glorot_scale_layers(n):
  # sum(W^2) * c is the same for every layer whose mean square is 2/(n_in + n_out).
  for n_in, n_out in [(n, n), (n, 4 * n), (3 * n, 5)]:
    c = ll2.scales({"kernel": jax.ShapeDtypeStruct((n_in, n_out), jnp.float32)}, "fan_avg")
    sum_of_squares = n_in * n_out * 2.0 / (n_in + n_out)
    assert c["kernel"] * sum_of_squares == pytest.approx(2.0, rel=1e-12)
