"""The examples run as documented (with small flags) and print what they promise."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SMALL = ["--steps", "40", "--width", "32", "--eval-every", "20", "--weight-decay", "1.0"]


class Output(NamedTuple):
  stdout: str
  stderr: str


def start(script: str, *args: str) -> subprocess.Popen:
  env = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}
  env["JAX_PLATFORMS"] = "cpu"
  command = [sys.executable, str(EXAMPLES / script), *args]
  return subprocess.Popen(
    command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
  )


def results(stdout: str) -> dict[str, dict[str, float]]:
  """The final table of a quickstart: accuracies, test cross-entropy, penalty by optimizer."""
  lines = stdout.splitlines()
  start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["optimizer", "train"])
  table = {}
  for line in lines[start + 2 : start + 4]:
    name, train_acc, test_acc, xent, penalty = line.split()
    table[name] = {
      "train_acc": float(train_acc.rstrip("%")),
      "test_acc": float(test_acc.rstrip("%")),
      "test_xent": float(xent),
      "penalty": float(penalty),
    }
  return table


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, Output | Path]:
  """Runs the examples side by side, each in its own process as a user would."""
  plot = tmp_path_factory.mktemp("quickstart") / "curves.png"
  runs = {"sharded.py": start("sharded.py", "--steps", "2", "--width", "64")}
  if all(importlib.util.find_spec(name) for name in ("mnist1d", "tqdm", "matplotlib")):
    runs["quickstart.py"] = start("quickstart.py", *SMALL, "--plot", str(plot))
    runs["nnx_quickstart.py"] = start("nnx_quickstart.py", *SMALL)
  outputs = {}
  for name, process in runs.items():
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, f"{name} failed:\n{stderr[-4000:]}"
    outputs[name] = Output(stdout, stderr)
  outputs["plot"] = plot  # where quickstart.py was asked to save its curves
  return outputs


def output_of(outputs: dict, script: str) -> Output:
  if script not in outputs:
    pytest.skip("the quickstarts need the examples extras: mnist1d, tqdm, matplotlib")
  return outputs[script]


def check_quickstart_output(result: Output, kernels: list[str]) -> None:
  stdout = result.stdout
  # `describe` before and after training, every kernel decayed and no bias.
  summaries = re.findall(
    r"^(\d+) of (\d+) leaves decayed; weight_decay=1, scaling=fan_avg", stdout, re.M
  )
  assert summaries == [("3", "6"), ("3", "6")]
  for kernel in kernels:
    assert len(re.findall(rf"^{re.escape(kernel)} .* (\(\d+, \d+\))", stdout, re.M)) == 2, kernel
  assert "named 'bias'" in stdout

  table = results(stdout)
  assert set(table) == {"adam", "layer_l2+adam"}
  for row in table.values():
    assert 12.5 < row["test_acc"] <= 100.0  # ten classes: chance is 10%
    assert 0.0 < row["test_xent"] < 10.0
  assert 0.0 < table["layer_l2+adam"]["penalty"] < table["adam"]["penalty"]
  # A progress bar for each run (tqdm writes to stderr).
  assert "layer_l2+adam" in result.stderr and "40/40" in result.stderr


@pytest.mark.slow
def test_quickstart_prints_both_tables_and_the_results(outputs):
  result, plot = output_of(outputs, "quickstart.py"), outputs["plot"]
  check_quickstart_output(result, ["Dense_0/kernel", "Dense_1/kernel", "Dense_2/kernel"])
  assert "MLP 2x32, 40 steps of 100" in result.stdout
  assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_nnx_quickstart_prints_both_tables_and_the_results(outputs):
  check_quickstart_output(
    output_of(outputs, "nnx_quickstart.py"), ["hidden/0/kernel", "hidden/1/kernel", "out/kernel"]
  )


@pytest.mark.slow
def test_sharded_example_keeps_layouts_and_matches_unsharded(outputs):
  result = outputs["sharded.py"]
  assert "8 devices" in result.stdout
  lines = result.stdout.splitlines()
  header = next(i for i, line in enumerate(lines) if line.startswith("layout "))
  names = ["layout", "mesh", "decay keeps layout", "decay comms", "step comms", "max rel diff"]
  starts = [lines[header].index(name) for name in names]
  rows = {}
  for line in lines[header + 2 : header + 4]:
    cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    rows[cells[0]] = dict(zip(names, cells, strict=True))
  assert set(rows) == {"fsdp", "data x model"}
  for row in rows.values():
    assert row["decay keeps layout"] == "yes"
    assert row["decay comms"] == "0"
    with_decay, adam_only = row["step comms"].split(" / ")
    assert with_decay == adam_only
    assert float(row["max rel diff"]) < 1e-4
