"""`penalty` and `describe`: values, per-leaf trees and the printed table."""

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
