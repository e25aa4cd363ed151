"""`penalty` and `describe`: values, per-leaf trees, leaf paths and the printed table."""

import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optax_layer_l2 as ll2


def params():
  return {
    "hidden": {"kernel": jnp.full((40, 256), 0.5), "bias": jnp.ones(256)},
    "out": {"kernel": jnp.full((256, 10), 2.0), "bias": jnp.ones(10)},
    "count": jnp.zeros((), jnp.int32),
  }


def test_penalty_total_and_per_leaf():
  p = params()
  hidden = 0.5 * 1e-2 * (296 / 10240) * (10240 * 0.25)
  out = 0.5 * 1e-2 * (266 / 2560) * (2560 * 4.0)
  assert float(ll2.penalty(p, 1e-2)) == pytest.approx(hidden + out, rel=1e-6)
  per_leaf = ll2.penalty(p, 1e-2, per_leaf=True)
  assert float(per_leaf["hidden"]["kernel"]) == pytest.approx(hidden, rel=1e-6)
  assert float(per_leaf["out"]["kernel"]) == pytest.approx(out, rel=1e-6)
  assert float(per_leaf["hidden"]["bias"]) == 0.0 and float(per_leaf["count"]) == 0.0
  assert jax.tree.structure(per_leaf) == jax.tree.structure(p)


def test_penalty_is_float32_for_half_precision_and_jits():
  p = {"kernel": jnp.full((300, 300), 30.0, jnp.float16)}  # sum of squares overflows float16
  value = jax.jit(lambda p: ll2.penalty(p, 1e-3, "none"))(p)
  assert value.dtype == jnp.float32
  assert float(value) == pytest.approx(0.5 * 1e-3 * 90000 * 900.0, rel=1e-5)


def test_penalty_with_multipliers_and_mask():
  p = params()
  only_out = ll2.penalty(p, 1e-2, "none", multipliers={"hidden": 0.0})
  assert float(only_out) == pytest.approx(0.5 * 1e-2 * 2560 * 4.0, rel=1e-6)
  with_biases = ll2.penalty(p, 1e-2, "none", mask={"hidden": True, "out": False, "count": False})
  assert float(with_biases) == pytest.approx(0.5 * 1e-2 * (10240 * 0.25 + 256), rel=1e-6)


def test_penalty_of_an_empty_selection_is_zero():
  assert float(ll2.penalty({"bias": jnp.ones(3)}, 1.0)) == 0.0


def test_describe_rows():
  report = ll2.describe(params(), 1e-2, "fan_avg")
  rows = {row.path: row for row in report.rows}
  assert set(rows) == {"hidden/kernel", "hidden/bias", "out/kernel", "out/bias", "count"}
  kernel = rows["hidden/kernel"]
  assert (kernel.shape, kernel.fan_in, kernel.fan_out) == ((40, 256), 40, 256)
  assert kernel.scale == pytest.approx(296 / 10240)
  assert kernel.coefficient == pytest.approx(1e-2 * 296 / 10240)
  assert kernel.penalty == pytest.approx(
    float(ll2.penalty(params(), 1e-2, per_leaf=True)["hidden"]["kernel"])
  )
  assert kernel.skipped is None
  assert rows["hidden/bias"].skipped == "named 'bias'"
  assert rows["count"].skipped == "dtype int32"
  assert report.total_penalty == pytest.approx(float(ll2.penalty(params(), 1e-2)), rel=1e-6)


def test_describe_prints_an_aligned_table():
  text = str(ll2.describe(params(), 1e-2, "numel"))
  lines = text.splitlines()
  assert lines[0].split() == [
    "path",
    "shape",
    "fan_in",
    "fan_out",
    "s",
    "lambda*s",
    "penalty",
    "skipped",
  ]
  assert set(lines[1]) <= {"-", " "}
  assert len(lines) == 2 + 5 + 1
  kernel_line = next(line for line in lines if line.startswith("out/kernel"))
  assert "0.0003906" in kernel_line  # 1 / 2560
  # Columns line up: every row's `shape` cell starts where the header's does.
  column = lines[0].index("shape")
  assert all(line[column - 2 : column] == "  " for line in lines[2:-1])
  assert lines[-1].startswith("2 of 5 leaves decayed; weight_decay=0.01, scaling=numel")


def test_describe_abstract_params_has_no_penalty():
  report = ll2.describe(jax.eval_shape(params), 1e-2)
  assert all(row.penalty is None for row in report.rows if row.skipped is None)
  assert report.total_penalty is None
  assert "total penalty -" in str(report)


def test_describe_names_a_custom_scaling():
  def by_fan_in(info):
    return 1.0 / info.fan_in

  report = ll2.describe(params(), 1.0, by_fan_in)
  assert report.scaling == "by_fan_in"
  np.testing.assert_allclose([r.scale for r in report.rows if r.skipped is None], [1 / 40, 1 / 256])


def test_a_penalty_of_nothing_is_a_float32_zero():
  total = ll2.penalty({"dense": {"bias": jnp.ones(3)}}, 1e-3)
  assert (total.shape, total.dtype, float(total)) == ((), jnp.float32, 0.0)
  empty = ll2.penalty({}, 1e-3)
  assert (empty.shape, empty.dtype, float(empty)) == ((), jnp.float32, 0.0)


def test_row_rate_is_the_coefficient_and_deprecated():
  (row,) = ll2.describe({"dense": {"kernel": jnp.ones((4, 4))}}, 0.5).rows
  assert row.coefficient == 0.25  # 0.5 * (4 + 4) / 16
  with pytest.warns(DeprecationWarning) as warned:
    rate = row.rate
  assert rate == row.coefficient
  assert [str(w.message) for w in warned] == [
    '`Row.rate` is now `Row.coefficient` (`weight_decay * s`); "rate" means the learning '
    "rate only. `Row.rate` will be removed after version 0.4."
  ]
  if "MUTANT_UNDER_TEST" not in os.environ:  # the mutation driver's trampolines come between
    assert warned[0].filename == __file__  # the warning points at the caller


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


def test_the_printed_report_with_rate_factors_from_the_same_dims():
  # With `dims` the dense kernel's fan-in is its 4 outputs at both widths: r = 1, not 8 / 16.
  params = {
    "dense": {"kernel": jnp.ones((16, 4)), "bias": jnp.ones(4)},
    "hidden": {"kernel": jnp.ones((16, 16))},
  }
  base = {"dense": {"kernel": jnp.ones((8, 4)), "bias": jnp.ones(4)}}
  base["hidden"] = {"kernel": jnp.ones((8, 16))}
  dims = {"dense": {"kernel": ll2.Dims(1, 0), "bias": None}, "hidden": {"kernel": None}}
  report = ll2.describe(params, 0.1, "none", lr_scaling="inv_fan_in", base=base, dims=dims)
  assert str(report) == "\n".join(
    [
      "path           shape     base shape  fan_in  fan_out  fans from   s  lambda*s    r  penalty  skipped",  # noqa: E501
      "-------------  --------  ----------  ------  -------  ----------  -  --------  ---  -------  ------------",  # noqa: E501
      "dense/bias     (4,)      -                1        4  shape rule  0         0    1        0  named 'bias'",  # noqa: E501
      "dense/kernel   (16, 4)   (8, 4)           4       16  dims        1       0.1    1      3.2",
      "hidden/kernel  (16, 16)  (8, 16)         16       16  shape rule  1       0.1  0.5     12.8",
      "2 of 3 leaves decayed; weight_decay=0.1, scaling=none relative to base, "
      "lr_scaling=inv_fan_in; total penalty 16",
    ]
  )


def test_penalty_reads_the_fans_from_dims():
  params = {"dense": {"kernel": jnp.ones((4, 6))}}
  # fan_in / numel with the default rule: 4 / 24; with `Dims(1, 0)`: 6 / 24.
  np.testing.assert_allclose(ll2.penalty(params, 0.1, "fan_in"), 0.5 * 0.1 * (4 / 24) * 24)
  np.testing.assert_allclose(
    ll2.penalty(params, 0.1, "fan_in", dims=ll2.Dims(1, 0)), 0.5 * 0.1 * (6 / 24) * 24
  )


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


def test_the_fans_from_column_appears_only_beside_more_than_the_shape_rule():
  dense = {"dense": {"kernel": jnp.ones((8, 4)), "bias": jnp.ones(4)}}
  assert "fans from" not in str(ll2.describe(dense, 0.1))  # every fan from the shape rule
  # With a `Dims` the kernel's fans are the user's; the bias, skipped by name, has none.
  assert str(ll2.describe(dense, 0.1, dims=ll2.Dims(0, 1))) == "\n".join(
    [
      "path          shape   fan_in  fan_out  fans from      s  lambda*s  penalty  skipped",
      "------------  ------  ------  -------  ---------  -----  --------  -------  ------------",
      "dense/bias    (4,)         -        -  -              0         0        0  named 'bias'",
      "dense/kernel  (8, 4)       8        4  dims       0.375    0.0375      0.6",
      "1 of 2 leaves decayed; weight_decay=0.1, scaling=fan_avg; total penalty 0.6",
    ]
  )
