"""Behaviour that mutation testing (see docs/contributing.md) found no test pinning down.

Each test here failed on at least one mutant of the library that every other
fast test let through.
"""

import gc
import weakref
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_layer_l2 as ll2


class ShapeOnly:
  """Has a shape but no dtype: not an array."""

  def __init__(self, shape):
    self.shape = shape


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
  assert [row.shape for row in report.rows] == [
    (3, 3), (0, 4), (3,), (2, 3), None, (2, 3), None, (2, 5), (), (), (4,)
  ]  # fmt: skip


def test_a_user_mask_replaces_the_default_rule():
  # A mask decays what it selects, vectors and scalars included, and nothing else.
  mask = jax.tree.map(lambda leaf: False, MIXED, is_leaf=lambda x: x is None)
  mask.update(vector=True, scalar=True, hidden={"kernel": False, "bias": True})
  report = ll2.describe(MIXED, 0.1, mask=mask)
  assert [row.shape for row in report.rows] == [
    (3, 3), (0, 4), (3,), (2, 3), None, (2, 3), None, (2, 5), (), (), (4,)
  ]  # fmt: skip
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


def test_dims_meant_for_kernels_may_cover_biases():
  # One `Dims(0, 1)` for every leaf: the bias it cannot fit is skipped by name first.
  params = {"dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones(3)}}
  report = ll2.describe(params, 1.0, dims=ll2.Dims(0, 1))
  assert rows_of(report) == {
    "dense/bias": ("named 'bias'", None, None, 0.0),
    "dense/kernel": (None, 4, 3, 7 / 12),
  }


def test_a_scaling_callable_receives_the_leaf_info():
  seen = []

  def scaling(info):
    seen.append(info)
    return 2.0

  params = {"dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones(3)}}
  assert ll2.scales(params, scaling)["dense"]["kernel"] == 2.0
  assert seen == [ll2.LeafInfo("dense/kernel", (4, 3), fan_in=4, fan_out=3, numel=12)]


def test_a_scaling_callable_sees_the_base_leaf_under_the_same_path():
  seen = []

  def scaling(info):
    seen.append(info)
    return 1.0

  params = {"dense": {"kernel": jnp.ones((8, 6)), "bias": jnp.ones(6)}}
  base = {"dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones(3)}}
  assert ll2.scales(params, scaling, base=base)["dense"]["kernel"] == 1.0
  assert seen == [
    ll2.LeafInfo("dense/kernel", (8, 6), fan_in=8, fan_out=6, numel=48),
    ll2.LeafInfo("dense/kernel", (4, 3), fan_in=4, fan_out=3, numel=12),
  ]


def test_zero_from_a_scaling_or_a_multiplier_callable_is_allowed():
  # 0 is finite and non-negative: the leaf is simply not decayed.
  params = {"dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones(3)}}
  assert ll2.scales(params, lambda info: 0.0)["dense"]["kernel"] == 0.0
  report = ll2.describe(params, 0.1, multipliers=lambda path, leaf: 0.0)
  assert rows_of(report)["dense/kernel"] == ("multiplier 0", 4, 3, 0.0)


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


def test_complex_leaves_are_not_decayed():
  params = {"c": {"kernel": jnp.ones((3, 3), jnp.complex64)}}
  assert rows_of(ll2.describe(params, 0.1)) == {"c/kernel": ("dtype complex64", None, None, 0.0)}


def test_a_none_in_the_mask_decays_nothing_below_it():
  params = {
    "dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones(3)},
    "gone": None,
    "head": {"kernel": jnp.ones((3, 2))},
  }
  s = ll2.scales(params, "none", mask={"dense": None, "gone": None, "head": True})
  assert s == {"dense": {"bias": 0.0, "kernel": 0.0}, "gone": None, "head": {"kernel": 1.0}}


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


class Box(NamedTuple):
  value: jax.Array


class Layer(NamedTuple):
  kernel: Box
  bias: jax.Array


class Pair:
  """A pytree registered without keys: its children get `FlattenedIndexKey`s."""

  def __init__(self, first, second):
    self.first, self.second = first, second


jax.tree_util.register_pytree_node(
  Pair, lambda pair: ((pair.first, pair.second), None), lambda _, children: Pair(*children)
)


class Named:
  """A pytree registered with keys of its own: plain strings."""

  def __init__(self, weight):
    self.weight = weight


jax.tree_util.register_pytree_with_keys(
  Named, lambda named: ((("w", named.weight),), None), lambda _, children: Named(*children)
)


def test_paths_of_attributes_sequences_and_keyless_nodes():
  # A trailing attribute `value` (an `nnx.Variable`'s) is dropped from the path.
  params = {
    "layers": [
      Layer(Box(jnp.ones((4, 3))), jnp.ones(3)),
      Layer(Box(jnp.ones((3, 2))), jnp.ones(2)),
    ],
    "pair": Pair(jnp.ones((2, 2)), jnp.ones((5, 5))),
    "named": Named(jnp.ones((3, 3))),
  }
  report = ll2.describe(params, 0.1, "none")
  assert [(row.path, row.skipped) for row in report.rows] == [
    ("layers/0/kernel", None),
    ("layers/0/bias", "named 'bias'"),
    ("layers/1/kernel", None),
    ("layers/1/bias", "named 'bias'"),
    ("named/w", None),
    ("pair/0", None),
    ("pair/1", None),
  ]


def test_a_skipped_leaf_records_factor_and_multiplier_zero():
  # `LeafDecision` (private) documents 0 for both on a leaf that is not decayed.
  from optax_layer_l2._rule import LeafRule, decide

  params = {"dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones(3)}}
  rule = LeafRule.build("none", multipliers={"kernel": 2.0})
  decisions = decide(rule, params).leaves
  assert [(d.path, d.factor, d.multiplier, d.scale, d.reason) for d in decisions] == [
    ("dense/bias", 0.0, 0.0, 0.0, "named 'bias'"),
    ("dense/kernel", 1.0, 2.0, 2.0, None),
  ]


class Flat:
  """A scaling without a `__name__`: the report names it by its repr."""

  def __call__(self, info):
    return 1.0

  def __repr__(self):
    return "Flat()"


def test_the_printed_report_with_every_column():
  params = {
    "dense": {"kernel": jnp.full((4, 3), 2.0), "bias": jnp.ones(3)},
    "name": "text",
    "big": {"kernel": jnp.ones((30, 20))},
  }
  base = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}, "name": "text"}
  base["big"] = {"kernel": jnp.ones((10, 20))}
  reference = jax.tree.map(lambda x: 0.5 * x if hasattr(x, "shape") else x, params)
  arguments = dict(base=base, reference=reference, multipliers={"big": 2.0})
  report = ll2.describe(params, 0.01, Flat(), **arguments)
  assert str(report) == "\n".join(
    [
      "path          shape     base shape  fan_in  fan_out  s  lambda*s  ||w - w_ref||  penalty  skipped",  # noqa: E501
      "------------  --------  ----------  ------  -------  -  --------  -------------  -------  ------------------",  # noqa: E501
      "big/kernel    (30, 20)  (10, 20)        30       20  2      0.02          12.25      1.5",
      "dense/bias    (3,)      -                1        3  0         0              -        0  named 'bias'",  # noqa: E501
      "dense/kernel  (4, 3)    (2, 3)           4        3  1      0.01          3.464     0.06",
      "name          -         -                -        -  0         0              -        0  not an array (str)",  # noqa: E501
      "2 of 4 leaves decayed toward the reference; weight_decay=0.01, scaling=Flat() relative to "
      "base; total penalty 1.56",
    ]
  )
  # The penalty column is `penalty` with the same arguments.
  per_leaf = ll2.penalty(params, 0.01, Flat(), **arguments, per_leaf=True)
  assert [row.penalty for row in report.rows] == [
    float(per_leaf["big"]["kernel"]), 0.0, float(per_leaf["dense"]["kernel"]), 0.0
  ]  # fmt: skip


def test_the_printed_report_of_shapes_and_its_pretty_print():
  shapes = jax.eval_shape(lambda: {"dense": {"kernel": jnp.ones((4, 3))}})
  report = ll2.describe(shapes, 0.5)
  table = "\n".join(
    [
      "path          shape   fan_in  fan_out       s  lambda*s  penalty  skipped",
      "------------  ------  ------  -------  ------  --------  -------  -------",
      "dense/kernel  (4, 3)       4        3  0.5833    0.2917        -",
      "1 of 1 leaves decayed; weight_decay=0.5, scaling=fan_avg; total penalty -",
    ]
  )
  assert str(report) == table

  class Printer:  # the part of IPython's printer that `_repr_pretty_` uses
    def __init__(self):
      self.written = []

    def text(self, text):
      self.written.append(text)

  printer = Printer()
  report._repr_pretty_(printer, cycle=False)
  assert printer.written == [table]


def _enable_x64():
  enable_x64 = getattr(jax, "enable_x64", None)
  if enable_x64 is None:  # JAX before `jax.enable_x64`
    from jax.experimental import enable_x64
  return enable_x64(True)


def test_distance_from_the_reference_keeps_float64():
  with _enable_x64():
    params = {"kernel": jnp.full((2, 2), 1 + 2.0**-40, jnp.float64)}
    reference = {"kernel": jnp.ones((2, 2), jnp.float64)}
    (row,) = ll2.describe(params, 0.1, "none", reference=reference).rows
  assert row.distance == 2.0**-39  # in float32, 1 + 2**-40 would be 1: distance 0


def test_layer_adamw_hands_every_argument_on():
  params = {"dense": {"kernel": jnp.linspace(-1.0, 1.0, 12).reshape(4, 3), "bias": jnp.ones(3)}}
  grads = jax.tree.map(lambda w: 0.3 * w + 0.1, params)
  adam = dict(b1=0.5, b2=0.8, eps=1e-3, eps_root=1e-4, mu_dtype=jnp.bfloat16, nesterov=True)
  decay = dict(
    mask={"dense": {"kernel": True, "bias": True}},
    dims={"dense": {"kernel": ll2.Dims(1, 0), "bias": None}},
    multipliers={"bias": 3.0},
  )
  ours = ll2.layer_adamw(0.1, 0.5, "fan_in", **adam, **decay)
  spelled_out = optax.chain(
    optax.scale_by_adam(**adam),
    ll2.layer_l2(0.5, "fan_in", **decay),
    optax.scale_by_learning_rate(0.1),
  )
  states = ours.init(params), spelled_out.init(params)
  assert states[0][0].mu["dense"]["kernel"].dtype == jnp.bfloat16
  for _ in range(3):
    (a, state_a), (b, state_b) = (
      tx.update(grads, state, params) for tx, state in zip((ours, spelled_out), states, strict=True)
    )
    states = state_a, state_b
    jax.tree.map(np.testing.assert_array_equal, a, b)
  # Different arguments give a different step: the comparison can tell.
  plain = ll2.layer_adamw(0.1, 0.5, "fan_in")
  other, _ = plain.update(grads, plain.init(params), params)
  assert not np.array_equal(other["dense"]["bias"], a["dense"]["bias"])


def test_the_report_penalty_uses_mask_dims_and_base():
  params = {"dense": {"kernel": jnp.ones((4, 6))}, "v": jnp.ones(3)}
  arguments = dict(
    mask={"dense": {"kernel": True}, "v": True},
    dims={"dense": {"kernel": ll2.Dims(1, 0)}, "v": None},
    base={"dense": {"kernel": jnp.ones((2, 6))}, "v": jnp.ones(3)},
  )
  report = ll2.describe(params, 0.1, "fan_in", **arguments)
  # kernel: (6 / 24) / (6 / 12) = 0.5; v: (1 / 3) / (1 / 3) = 1.
  assert [(row.path, row.scale) for row in report.rows] == [("dense/kernel", 0.5), ("v", 1.0)]
  np.testing.assert_allclose([row.penalty for row in report.rows], [0.5 * 0.1 * 0.5 * 24, 0.15])


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


def _dtypes_traced(fn, *args):
  """Every dtype an array (not a scalar) of the program of ``fn(*args)`` has."""
  jaxpr = jax.make_jaxpr(fn)(*args)
  values = [*jaxpr.jaxpr.invars, *(v for eqn in jaxpr.eqns for v in eqn.outvars)]
  return {str(v.aval.dtype) for v in values if v.aval.shape}


@pytest.mark.parametrize("toward", ["zero", "reference"])
@pytest.mark.parametrize("rate", ["constant", "schedule"])
def test_under_x64_narrow_leaves_are_decayed_and_penalised_without_float64(toward, rate):
  # Under x64 Python floats are float64, and so may a schedule's values be;
  # the decay of float32 and bfloat16 leaves must still be computed in
  # float32, at float32's speed and memory.
  narrow = {"float32", "bfloat16"}
  with _enable_x64():
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
    assert ll2.penalty({}, 1e-3).dtype == jnp.float32


def test_a_penalty_of_nothing_is_a_float32_zero():
  total = ll2.penalty({"dense": {"bias": jnp.ones(3)}}, 1e-3)
  assert (total.shape, total.dtype, float(total)) == ((), jnp.float32, 0.0)
  empty = ll2.penalty({}, 1e-3)
  assert (empty.shape, empty.dtype, float(empty)) == ((), jnp.float32, 0.0)


def test_under_x64_the_wider_of_update_and_param_decides_the_precision():
  # 1 + 2**-24 + 2**-50 is above the midpoint between 1 and the next float32,
  # 1 + 2**-23: computed in float64 and rounded once it gives 1 + 2**-23. In
  # float32 the 2**-50 is lost first, and the tie rounds to even, 1.
  with _enable_x64():
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


def test_with_a_reference_a_none_update_stays_none():
  params = {"a": jnp.ones((2, 2)), "b": jnp.ones((2, 2))}
  tx = ll2.layer_l2(0.5, "none", reference="init")
  state = tx.init(params)
  moved = jax.tree.map(lambda w: w + 1.0, params)
  updates, _ = tx.update({"a": None, "b": jnp.zeros((2, 2))}, state, moved)
  assert updates["a"] is None
  np.testing.assert_allclose(updates["b"], 0.5)


def test_a_base_needs_only_shapes():
  params = {"dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones(3)}}
  shapes = {"dense": {"kernel": ShapeOnly((2, 3)), "bias": ShapeOnly((3,))}}
  arrays = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}}
  assert ll2.scales(params, base=shapes) == ll2.scales(params, base=arrays)
  assert ll2.scales(params, base=shapes)["dense"]["kernel"] == (4 + 3) / 12 / ((2 + 3) / 6)
  grads = jax.tree.map(jnp.zeros_like, params)
  for tx in (ll2.layer_l2(0.1, base=shapes), ll2.layer_adamw(1e-3, 0.1, base=shapes)):
    updates, _ = tx.update(grads, tx.init(params), params)
    assert float(updates["dense"]["bias"][0]) == 0.0
    assert float(updates["dense"]["kernel"][0, 0]) != 0.0


class UnknownDtype(ShapeOnly):
  """Has a shape and a dtype that NumPy cannot read."""

  dtype = "no such dtype"


def test_a_leaf_of_a_dtype_numpy_cannot_read_is_skipped():
  (row,) = ll2.describe({"odd": {"kernel": UnknownDtype((4, 3))}}, 0.1).rows
  assert (row.skipped, row.scale) == ("dtype no such dtype", 0.0)


def test_under_x64_the_distance_of_float32_leaves_is_computed_in_float32():
  # As the penalty is: sqrt(2) rounded to float32, not float64's.
  with _enable_x64():
    params = {"kernel": jnp.ones((1, 2), jnp.float32)}
    reference = {"kernel": jnp.zeros((1, 2), jnp.float32)}
    (row,) = ll2.describe(params, 0.1, "none", reference=reference).rows
  assert row.distance == float(np.sqrt(np.float32(2.0)))
  assert row.distance != float(np.sqrt(2.0))
