"""The precision of the decay, the penalty and the distance: at least float32, rounded once.

Half-precision leaves are widened so that a small term is not lost before it
is rounded, once, to the leaf's dtype; under x64 the narrow leaves stay narrow
(no float64 on their path) and the float64 ones keep float64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optax_layer_l2 as ll2


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


def test_float64_under_x64(x64):
  params = {"kernel": jnp.full((4, 4), 3.0, jnp.float64)}
  tx = ll2.layer_l2(1e-3, "fan_avg")
  updates, _ = tx.update({"kernel": jnp.zeros((4, 4), jnp.float64)}, tx.init(params), params)
  assert updates["kernel"].dtype == jnp.float64
  assert float(updates["kernel"][0, 0]) == 1e-3 * 0.5 * 3.0  # fan_avg: (4 + 4) / 16


def _dtypes_traced(fn, *args):
  """Every dtype an array (not a scalar) of the program of ``fn(*args)`` has."""
  jaxpr = jax.make_jaxpr(fn)(*args)
  values = [*jaxpr.jaxpr.invars, *(v for eqn in jaxpr.eqns for v in eqn.outvars)]
  return {str(v.aval.dtype) for v in values if v.aval.shape}


@pytest.mark.parametrize("toward", ["zero", "reference"])
@pytest.mark.parametrize("rate", ["constant", "schedule"])
def test_under_x64_narrow_leaves_are_decayed_and_penalised_without_float64(x64, toward, rate):
  # Under x64 Python floats are float64, and so may a schedule's values be;
  # the decay of float32 and bfloat16 leaves must still be computed in
  # float32, at float32's speed and memory.
  narrow = {"float32", "bfloat16"}
  params = {
    "dense": {"kernel": jnp.ones((4, 3), jnp.float32), "bias": jnp.ones(3, jnp.float32)},
    "half": {"kernel": jnp.ones((3, 2), jnp.bfloat16)},
  }
  reference = None if toward == "zero" else jax.tree.map(lambda w: 0.5 * w, params)

  def schedule(count):
    return jnp.asarray(1e-3, jnp.float64) / (1 + count)

  weight_decay = 1e-3 if rate == "constant" else schedule
  tx = ll2.layer_l2(weight_decay, "fan_avg", reference=reference)
  state = tx.init(params)
  assert _dtypes_traced(lambda g, p: tx.update(g, state, p)[0], params, params) <= narrow
  assert _dtypes_traced(lambda p: ll2.penalty(p, 1e-3, reference=reference), params) <= narrow
  per_leaf = ll2.penalty(params, 1e-3, reference=reference, per_leaf=True)
  assert {str(v.dtype) for v in jax.tree.leaves(per_leaf)} == {"float32"}
  # A float64 JAX scalar, unlike a Python float, has a dtype of its own: still float32.
  wide_rate = jnp.asarray(1e-3, jnp.float64)
  per_leaf = ll2.penalty(params, wide_rate, reference=reference, per_leaf=True)
  assert {str(v.dtype) for v in jax.tree.leaves(per_leaf)} == {"float32"}
  assert ll2.penalty({}, 1e-3).dtype == jnp.float32


def test_under_x64_the_wider_of_update_and_param_decides_the_precision(x64):
  # 1 + 2**-24 + 2**-50 is above the midpoint between 1 and the next float32,
  # 1 + 2**-23: computed in float64 and rounded once it gives 1 + 2**-23. In
  # float32 the 2**-50 is lost first, and the tie rounds to even, 1.
  tx = ll2.layer_l2(1.0, "none", mask=True)
  fine = {"w": jnp.asarray([2.0**-24 + 2.0**-50], jnp.float64)}
  narrow_update = {"w": jnp.ones(1, jnp.float32)}
  updates, _ = tx.update(narrow_update, tx.init(fine), fine)
  assert updates["w"].dtype == jnp.float32
  assert float(updates["w"][0]) == 1 + 2.0**-23
  # A float64 update of a float32 leaf: 0.1 * 3 in float64, not float32's 0.3000000119.
  tx = ll2.layer_l2(0.1, "none", mask=True)
  three = {"w": jnp.full(1, 3.0, jnp.float32)}
  updates, _ = tx.update({"w": jnp.zeros(1, jnp.float64)}, tx.init(three), three)
  assert updates["w"].dtype == jnp.float64
  assert float(updates["w"][0]) == 0.1 * 3.0


def test_under_x64_the_distance_from_the_reference_keeps_float64(x64):
  params = {"kernel": jnp.full((2, 2), 1 + 2.0**-40, jnp.float64)}
  reference = {"kernel": jnp.ones((2, 2), jnp.float64)}
  (row,) = ll2.describe(params, 0.1, "none", reference=reference).rows
  assert row.distance == 2.0**-39  # in float32, 1 + 2**-40 would be 1: distance 0


def test_under_x64_the_distance_of_float32_leaves_is_computed_in_float32(x64):
  # As the penalty is: sqrt(2) rounded to float32, not float64's.
  params = {"kernel": jnp.ones((1, 2), jnp.float32)}
  reference = {"kernel": jnp.zeros((1, 2), jnp.float32)}
  (row,) = ll2.describe(params, 0.1, "none", reference=reference).rows
  assert row.distance == float(np.sqrt(np.float32(2.0)))
  assert row.distance != float(np.sqrt(2.0))
