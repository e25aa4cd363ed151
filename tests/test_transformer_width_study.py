"""Smoke test of the Transformer width study: it runs and writes what it promises.

The science is in ``docs/study.md``; this checks the plumbing on a study small
enough to finish in about a minute, and the grouping of the penalty.
"""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "transformer_width_study.py"
WIDTHS = (8, 16)
POINTS = 2
SCALINGS = ("none", "sqrt_fan_avg")


def _study_module():
  sys.path.insert(0, str(ROOT / "examples"))
  try:
    import transformer_width_study
  finally:
    sys.path.pop(0)
  return transformer_width_study


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
  pytest.importorskip("matplotlib")
  pytest.importorskip("tqdm")
  out = tmp_path_factory.mktemp("transformer_width_study")
  command = [sys.executable, str(SCRIPT), "--quick", "--out", str(out)]
  command += ["--widths", *map(str, WIDTHS), "--scalings", *SCALINGS]
  command += ["--modes", "decoupled", "--points", str(POINTS), "--steps", "5"]
  result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
  assert result.returncode == 0, result.stderr[-4000:]
  return out, result.stdout


def test_penalty_groups_follow_the_model_paths() -> None:
  study = _study_module()
  assert study.group_of("embed/embedding") == "embed"
  assert study.group_of("position/embedding") == "embed"
  assert study.group_of("blocks/0/attn/query/kernel") == "attn"
  assert study.group_of("blocks/1/mlp_in/kernel") == "mlp"
  assert study.group_of("head/kernel") == "head"


@pytest.mark.slow
def test_runs_and_shares_are_written(study: tuple[Path, str]) -> None:
  out, stdout = study
  with (out / "runs.csv").open() as f:
    rows = list(csv.DictReader(f))
  # Per width: one unregularised network and POINTS lambdas a scaling, one seed each.
  assert len(rows) == len(WIDTHS) * (1 + len(SCALINGS) * POINTS)
  for row in rows:
    assert 0.0 < float(row["test_loss"]) < 8.0  # bits per character; log2(vocab) is about 6.6
    shares = [float(row[f"share_{g}"]) for g in ("embed", "attn", "mlp", "head")]
    assert all(0.0 < s < 1.0 for s in shares)
    assert sum(shares) == pytest.approx(1.0, abs=1e-4)
  assert {r["mode"] for r in rows} == {"unregularised", "decoupled"}
  for name in ("loss_decoupled.png", "optimal_lambda.png"):
    assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name

  # At the base width both scalings are plain L2: the same networks; wider, not.
  def metrics(width, scaling):
    return [
      (r["lambda"], r["test_loss"], r["share_mlp"])
      for r in rows
      if r["width"] == str(width) and r["scaling"] == scaling
    ]

  assert metrics(WIDTHS[0], "none") == metrics(WIDTHS[0], "sqrt_fan_avg")
  assert metrics(WIDTHS[1], "none") != metrics(WIDTHS[1], "sqrt_fan_avg")
  summary = (out / "summary.txt").read_text()
  assert "relative to the d_model=8 model (base=)" in summary
  assert any(line.split()[:2] == ["sqrt_fan_avg", "decoupled"] for line in summary.splitlines())
  assert summary.splitlines()[0] in stdout
