"""The fine-tuning example runs with ``--quick`` and prints its table of every method."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "finetune.py"
METHODS = ["no decay", "L2 toward 0", "L2-SP", "frozen body", "scratch"]
NUMBER = r"(\d+\.\d+) \+- (\d+\.\d+)"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  if not all(importlib.util.find_spec(name) for name in ("mnist1d", "tqdm", "matplotlib")):
    pytest.skip("the example needs the examples extras: mnist1d, tqdm, matplotlib")
  plot = tmp_path_factory.mktemp("finetune") / "finetune.png"
  env = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}
  env["JAX_PLATFORMS"] = "cpu"
  result = subprocess.run(
    [sys.executable, str(SCRIPT), "--quick", "--plot", str(plot)],
    capture_output=True,
    text=True,
    env=env,
    timeout=600,
  )
  assert result.returncode == 0, result.stderr[-4000:]
  return result, plot


def table(stdout: str) -> dict[str, dict[str, object]]:
  """The results table by method: chosen lambdas and (mean, std) of each metric."""
  lines = stdout.splitlines()
  start = next(i for i, line in enumerate(lines) if line.startswith("method "))
  rows = {}
  for line in lines[start + 2 : start + 2 + len(METHODS)]:
    method = next(name for name in METHODS if line.startswith(name + " "))
    rest = line[len(method) :].split()
    numbers = [(float(a), float(b)) for a, b in re.findall(NUMBER, line)]
    rows[method] = dict(
      zip(["val_loss", "test_acc", "test_loss", "moved"], numbers, strict=True), lambdas=rest[0]
    )
  return rows


@pytest.mark.slow
def test_finetune_quick_prints_a_row_per_method_and_saves_the_figure(run):
  result, plot = run
  rows = table(result.stdout)
  assert list(rows) == METHODS
  for method, row in rows.items():
    assert 10.0 < row["test_acc"][0] <= 100.0, method  # ten classes: chance is 10%
    assert 0.0 < row["test_loss"][0] < 10.0, method
    assert row["test_acc"][1] >= 0.0
  for method in ("L2 toward 0", "L2-SP"):  # a lambda per seed, from the grid
    lambdas = [float(value) for value in rows[method]["lambdas"].split(",")]
    assert len(lambdas) == 3 and all(1e-1 <= value <= 1e4 for value in lambdas), method
  for method in ("no decay", "frozen body", "scratch"):
    assert rows[method]["lambdas"] == "-"
  assert rows["frozen body"]["moved"] == (0.0, 0.0)  # the body did not move
  assert rows["L2-SP"]["moved"][0] < rows["no decay"]["moved"][0]  # pulled toward the start
  # The fresh head is not decayed; the kernels of the body are, toward the pretrained weights.
  assert re.search(r"^head/kernel .* multiplier 0$", result.stdout, re.M)
  assert "2 of 6 leaves decayed" in result.stdout
  assert "fine-tuning" in result.stderr and "5/5" in result.stderr  # tqdm's progress bar
  assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
