"""``activation_sizes`` and the coord check example."""

import csv
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optax_layer_l2 as ll2

ROOT = Path(__file__).resolve().parents[1]


def test_each_layer_is_the_output_of_its_kernel():
  params = {
    "embed": jnp.arange(12.0).reshape(4, 3) / 10,
    "dense": {"kernel": jnp.full((3, 5), 0.5), "bias": jnp.ones(5)},
  }

  def forward(params, ids):
    x = params["embed"][ids]  # a lookup: rows 1 and 2, mean |x| = (3 + 4 + 5 + 6 + 7 + 8) / 60
    return jax.nn.relu(x @ params["dense"]["kernel"] + params["dense"]["bias"])

  sizes = ll2.activation_sizes(forward, params, jnp.array([1, 2]))
  assert list(sizes) == ["dense/kernel", "embed"]
  assert float(sizes["embed"]) == pytest.approx(33 / 60)
  # x @ kernel: each row sums to 1.2 or 2.1, times 0.5; the bias comes after.
  assert float(sizes["dense/kernel"]) == pytest.approx((1.2 + 2.1) / 2 * 0.5)


def test_nested_jit_and_custom_jvp_are_looked_into():
  @jax.jit
  def layer(w, x):
    return jax.nn.gelu(x @ w)

  def forward(params, x):
    return layer(params["b"], layer(params["a"], x))

  params = {"a": jnp.full((2, 4), 1.0), "b": jnp.full((4, 3), -1.0)}
  sizes = ll2.activation_sizes(forward, params, jnp.ones((1, 2)))
  hidden = float(jax.nn.gelu(2.0))
  assert float(sizes["a"]) == pytest.approx(2.0)
  assert float(sizes["b"]) == pytest.approx(4 * hidden)


def test_a_leaf_used_twice_gets_the_mean_of_its_outputs():
  def forward(params, x):
    return (x @ params["w"]) @ params["w"]

  sizes = ll2.activation_sizes(forward, {"w": 2 * jnp.eye(2)}, jnp.ones((1, 2)))
  assert float(sizes["w"]) == pytest.approx((2 + 4) / 2)


@pytest.mark.slow
def test_the_quick_coord_check_writes_its_table_and_figure(tmp_path):
  pytest.importorskip("matplotlib")
  pytest.importorskip("tqdm")
  command = [sys.executable, str(ROOT / "examples" / "coord_check.py"), "--quick"]
  result = subprocess.run(
    [*command, "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, check=False
  )
  assert result.returncode == 0, result.stderr[-3000:]
  with (tmp_path / "sizes.csv").open() as f:
    rows = list(csv.DictReader(f))
  # 3 recipes x 2 widths x 1 seed x 3 measurements (init, 2 steps), one row a layer.
  assert {(row["recipe"], row["width"], row["step"]) for row in rows} == {
    (recipe, width, step)
    for recipe in ("adamw", "mup", "mup_init")
    for width in ("32", "64")
    for step in ("0", "1", "2")
  }
  layers = {row["layer"] for row in rows}
  assert {"embed/embedding", "head/kernel", "blocks/0/attn/query/kernel"} <= layers
  assert all(np.isfinite(float(row["size"])) and float(row["size"]) > 0 for row in rows)

  # At init, adamw and mup start alike; mup_init's readout is half as large at d_model 64.
  def size(recipe, layer, width="64"):
    (value,) = [
      float(row["size"])
      for row in rows
      if (row["recipe"], row["layer"], row["width"], row["step"]) == (recipe, layer, width, "0")
    ]
    return value

  assert size("adamw", "head/kernel") == size("mup", "head/kernel")
  ratio = size("mup_init", "head/kernel") / size("adamw", "head/kernel")
  assert ratio == pytest.approx(2**-0.5, rel=0.1)
  assert "spread at init" in result.stdout and "after 2, as designed" in result.stdout
  assert (tmp_path / "coord_check.png").stat().st_size > 10_000
