"""Which leaves get a factor: the default rule, a user's mask, and each reason to skip a leaf."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from conftest import ShapeOnly, make_params

import optax_layer_l2 as ll2
from optax_layer_l2._rule import LeafRule, Skip, decide

MIXED = {
  "none": None,
  "name": "text",
  "odd": ShapeOnly((3, 3)),
  "count": jnp.zeros((3, 3), jnp.int32),
  "rng": jax.random.key(0),
  "empty": jnp.zeros((0, 4)),
  "off": {"kernel": jnp.ones((2, 5))},
  "hidden": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)},
  "norm": {"scale": jnp.ones((2, 3))},
  "vector": jnp.ones(4),
  "scalar": jnp.ones(()),
}
# The rows of `describe(MIXED, ...)`, in the order of the leaves (`None` left out).
MIXED_SHAPES = [(3, 3), (0, 4), (3,), (2, 3), None, (2, 3), None, (2, 5), (), (), (4,)]


def rows_of(report):
  return {row.path: (row.skipped, row.fan_in, row.fan_out, row.scale) for row in report.rows}


def test_every_reason_to_skip_a_leaf_under_the_default_mask():
  report = ll2.describe(MIXED, 0.1, multipliers={"off": 0.0})
  assert rows_of(report) == {
    "count": ("dtype int32", None, None, 0.0),
    "empty": ("empty", None, None, 0.0),
    "hidden/bias": ("named 'bias'", 1, 3, 0.0),
    "hidden/kernel": (None, 2, 3, (2 + 3) / 6),
    "name": ("not an array (str)", None, None, 0.0),
    "odd": ("not an array (ShapeOnly)", None, None, 0.0),
    "norm/scale": ("named 'scale'", 2, 3, 0.0),
    "off/kernel": ("multiplier 0", 2, 5, 0.0),
    "rng": ("dtype key<fry>", None, None, 0.0),
    "scalar": ("rank 0", 1, 1, 0.0),
    "vector": ("rank 1", 1, 4, 0.0),
  }
  assert [row.shape for row in report.rows] == MIXED_SHAPES


def test_each_skipped_row_names_its_kind_of_skip():
  # `Row.skip` is for programs what `Row.skipped` says in words.
  report = ll2.describe(MIXED, 0.1, multipliers={"off": 0.0})
  assert {row.path: row.skip for row in report.rows} == {
    "count": Skip.DTYPE,
    "empty": Skip.EMPTY,
    "hidden/bias": Skip.NAMED,
    "hidden/kernel": None,
    "name": Skip.NOT_ARRAY,
    "odd": Skip.NOT_ARRAY,
    "norm/scale": Skip.NAMED,
    "off/kernel": Skip.MULTIPLIER_ZERO,
    "rng": Skip.DTYPE,
    "scalar": Skip.RANK,
    "vector": Skip.RANK,
  }
  masked = ll2.describe(MIXED, 0.1, mask=jax.tree.map(lambda leaf: False, MIXED))
  assert {row.skip for row in masked.rows} == {
    Skip.DTYPE,
    Skip.EMPTY,
    Skip.NOT_ARRAY,
    Skip.MASKED_OUT,
  }
  assert [row.path for row in masked.rows if row.skip is Skip.MASKED_OUT] == [
    "hidden/bias", "hidden/kernel", "norm/scale", "off/kernel", "scalar", "vector"
  ]  # fmt: skip


def test_with_inferred_dims_a_leaf_not_contracted_with_data_is_skipped_with_why():
  # `infer_dims` gives `None` for a leaf the computation does not contract with data, and says
  # why; under the default mask that leaf is skipped for that reason, rank 2 or not.
  params = {"w": jnp.ones((4, 3)), "table": jnp.ones((5, 3)), "b": jnp.ones(3)}
  dims = {
    "w": ll2.InferredDims(0, 1, use="`dot_general`", why_none={"table": "used by `gather`"}),
    "table": None,
    "b": None,
  }
  rows = {row.path: row for row in ll2.describe(params, 0.1, dims=dims).rows}
  assert (rows["w"].skip, rows["w"].fans_from, rows["w"].scale) == (None, "inferred", 7 / 12)
  assert (rows["table"].skip, rows["table"].skipped) == (Skip.NOT_CONTRACTED, "used by `gather`")
  assert (rows["table"].shape, rows["table"].fans_from) == ((5, 3), None)
  assert (rows["b"].skip, rows["b"].skipped) == (
    Skip.NOT_CONTRACTED,
    "not contracted with data by fn",
  )


def test_a_user_mask_replaces_the_default_rule():
  # A mask decays what it selects, vectors and scalars included, and nothing else.
  mask = jax.tree.map(lambda leaf: False, MIXED, is_leaf=lambda x: x is None)
  mask.update(vector=True, scalar=True, hidden={"kernel": False, "bias": True})
  report = ll2.describe(MIXED, 0.1, mask=mask)
  assert [row.shape for row in report.rows] == MIXED_SHAPES
  assert rows_of(report) == {
    "count": ("dtype int32", None, None, 0.0),
    "empty": ("empty", None, None, 0.0),
    "hidden/bias": (None, 1, 3, 4 / 3),
    "hidden/kernel": ("masked out", None, None, 0.0),
    "name": ("not an array (str)", None, None, 0.0),
    "odd": ("not an array (ShapeOnly)", None, None, 0.0),
    "norm/scale": ("masked out", None, None, 0.0),
    "off/kernel": ("masked out", None, None, 0.0),
    "rng": ("dtype key<fry>", None, None, 0.0),
    "scalar": (None, 1, 1, 2.0),
    "vector": (None, 1, 4, 5 / 4),
  }


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


def test_a_none_in_the_mask_decays_nothing_below_it():
  params = {
    "dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones(3)},
    "gone": None,
    "head": {"kernel": jnp.ones((3, 2))},
  }
  s = ll2.scales(params, "none", mask={"dense": None, "gone": None, "head": True})
  assert s == {"dense": {"bias": 0.0, "kernel": 0.0}, "gone": None, "head": {"kernel": 1.0}}


def test_dims_meant_for_kernels_may_cover_biases():
  # One `Dims(0, 1)` for every leaf: the bias it cannot fit is skipped by name first.
  params = {"dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones(3)}}
  report = ll2.describe(params, 1.0, dims=ll2.Dims(0, 1))
  assert rows_of(report) == {
    "dense/bias": ("named 'bias'", None, None, 0.0),
    "dense/kernel": (None, 4, 3, 7 / 12),
  }


def test_complex_leaves_are_not_decayed():
  params = {"c": {"kernel": jnp.ones((3, 3), jnp.complex64)}}
  assert rows_of(ll2.describe(params, 0.1)) == {"c/kernel": ("dtype complex64", None, None, 0.0)}


class UnknownDtype(ShapeOnly):
  """Has a shape and a dtype that NumPy cannot read."""

  dtype = "no such dtype"


def test_a_leaf_of_a_dtype_numpy_cannot_read_is_skipped():
  (row,) = ll2.describe({"odd": {"kernel": UnknownDtype((4, 3))}}, 0.1).rows
  assert (row.skipped, row.skip, row.scale) == ("dtype no such dtype", Skip.DTYPE, 0.0)


def test_a_skipped_leaf_records_factor_and_multiplier_zero():
  # `LeafDecision` documents 0 for both on a leaf that is not decayed.
  params = {"dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones(3)}}
  rule = LeafRule.build("none", multipliers={"kernel": 2.0})
  decisions = decide(rule, params).leaves
  assert [(d.path, d.factor, d.multiplier, d.scale, d.reason) for d in decisions] == [
    ("dense/bias", 0.0, 0.0, 0.0, "named 'bias'"),
    ("dense/kernel", 1.0, 2.0, 2.0, None),
  ]
