"""Smoke test of the width-sweep study: it runs and writes what it promises.

The science is in ``docs/study.md``; this only checks the plumbing, on a study
small enough to finish in well under a minute.
"""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "width_sweep.py"

WIDTHS = (8, 16)
SCALINGS = ("fan_avg",)
MODES = ("coupled", "decoupled")
POINTS = 3
SEEDS = 2

COLUMNS = [
  "width",
  "scaling",
  "mode",
  "lambda",
  "seed",
  "test_acc",
  "test_loss",
  "train_loss",
  "train_acc",
  "ms_Dense_0",
  "ms_Dense_1",
  "ms_Dense_2",
]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
  pytest.importorskip("mnist1d")
  pytest.importorskip("matplotlib")
  pytest.importorskip("tqdm")
  out = tmp_path_factory.mktemp("width_sweep")
  command = [sys.executable, str(SCRIPT), "--quick", "--out", str(out)]
  command += ["--widths", *map(str, WIDTHS), "--scalings", *SCALINGS, "--modes", *MODES]
  command += ["--points", str(POINTS), "--seeds", str(SEEDS), "--steps", "10"]
  result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-4000:]
  return out, result.stdout


@pytest.mark.slow
def test_csv_has_one_row_per_trained_network(study: tuple[Path, str]) -> None:
  out, _ = study
  with (out / "runs.csv").open() as f:
    reader = csv.DictReader(f)
    assert reader.fieldnames == COLUMNS
    rows = list(reader)
  per_width = SEEDS + len(SCALINGS) * len(MODES) * POINTS * SEEDS  # + unregularised
  assert len(rows) == len(WIDTHS) * per_width
  keys = {(r["width"], r["scaling"], r["mode"], r["lambda"], r["seed"]) for r in rows}
  assert len(keys) == len(rows)
  for width in WIDTHS:
    mine = [r for r in rows if int(r["width"]) == width]
    unregularised = [r for r in mine if r["mode"] == "unregularised"]
    assert [float(r["lambda"]) for r in unregularised] == [0.0] * SEEDS
    for scaling in SCALINGS:
      for mode in MODES:
        lambdas = sorted(
          {float(r["lambda"]) for r in mine if (r["scaling"], r["mode"]) == (scaling, mode)}
        )
        assert len(lambdas) == POINTS
        assert all(lam > 0 for lam in lambdas)
  for r in rows:
    assert 0.0 <= float(r["test_acc"]) <= 1.0
    assert float(r["test_loss"]) > 0.0
    for layer in ("Dense_0", "Dense_1", "Dense_2"):
      assert float(r[f"ms_{layer}"]) > 0.0


@pytest.mark.slow
def test_plots_and_summary_are_written(study: tuple[Path, str]) -> None:
  out, stdout = study
  for name in ("loss_acc_coupled.png", "loss_acc_decoupled.png", "optimal_lambda.png"):
    assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
  assert (out / "mean_square.png").stat().st_size > 10_000
  summary = (out / "summary.txt").read_text()
  assert "drift" in summary
  for scaling in SCALINGS:
    for mode in MODES:
      assert any(line.split()[:2] == [scaling, mode] for line in summary.splitlines())
  assert summary.splitlines()[0] in stdout
