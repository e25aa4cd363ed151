"""Smoke test of the Transformer width study: it runs and writes what it promises.

The science is in ``docs/study.md``; this checks the plumbing on a study small
enough to finish in about a minute, and the grouping of the penalty.
"""

import csv
import json
import math
import shutil
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
  command = [sys.executable, str(SCRIPT), "--quick", "--study", "lambda", "--out", str(out)]
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


# --- the joint study: learning rate and lambda tuned together ---------------------------

RECIPES = ("adamw", "mup_sqrt_decay")
# A 2 x 2 base box (3 points a decade) and no move: the base trains its box, every wider
# search the 3 x 3 window around the base's best point. The lambdas are large enough that
# the few steps tell the points apart in runs.csv's 6 digits (for the --replot test).
BOX_RATES, BOX_LAMBDAS = (-2.0, -1.667), (0.0, 0.333)
TRAIN_CHARS = 2000  # one pass: 124 windows of 16, 7 steps of 16 windows
JOINT_COLUMNS = ["width", "scaling", "mode", "lambda", "learning_rate", "seed", "test_loss"]
JOINT_COLUMNS += ["train_loss", "share_embed", "share_attn", "share_mlp", "share_head"]
PNG = b"\x89PNG\r\n\x1a\n"


def _run(*args: str) -> subprocess.CompletedProcess:
  command = [sys.executable, str(SCRIPT), *args]
  return subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture(scope="module")
def joint_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
  pytest.importorskip("matplotlib")
  pytest.importorskip("tqdm")
  out = tmp_path_factory.mktemp("transformer_width_study_joint")
  result = _run(
    *("--quick", "--out", str(out), "--widths", *map(str, WIDTHS), "--recipes", *RECIPES),
    *("--train-chars", str(TRAIN_CHARS), "--seeds", "1", "--max-moves", "0"),
    *("--rates", *map(str, BOX_RATES), "--lambdas", *map(str, BOX_LAMBDAS)),
  )
  assert result.returncode == 0, result.stderr[-4000:]
  return out, result.stdout


def _steps(pair: tuple[str, str], centre: tuple[str, str]) -> tuple[int, int]:
  """Lattice steps (3 a decade) from ``centre`` to ``pair``, each coordinate."""
  logs = [
    3 * (math.log10(float(a)) - math.log10(float(b))) for a, b in zip(pair, centre, strict=True)
  ]
  assert all(abs(x - round(x)) < 1e-3 for x in logs), (pair, centre)
  return round(logs[0]), round(logs[1])


@pytest.mark.slow
def test_joint_runs_train_the_box_then_the_window_around_its_best(
  joint_study: tuple[Path, str],
) -> None:
  out, _ = joint_study
  with (out / "runs.csv").open() as f:
    reader = csv.DictReader(f)
    assert reader.fieldnames == JOINT_COLUMNS
    rows = list(reader)
  assert {r["mode"] for r in rows} == {"joint"}
  assert {r["seed"] for r in rows} == {"0"}
  for row in rows:
    assert 0.0 < float(row["test_loss"]) < 8.0  # bits per character
    shares = [float(row[f"share_{g}"]) for g in ("embed", "attn", "mlp", "head")]
    assert all(0.0 < s < 1.0 for s in shares)
    assert sum(shares) == pytest.approx(1.0, abs=1e-4)

  def lines(width: int, recipe: str) -> dict[tuple[str, str], list[str]]:
    """The metrics of each trained (learning rate, lambda) of a recipe at a width."""
    mine = [r for r in rows if (int(r["width"]), r["scaling"]) == (width, recipe)]
    points = {(r["learning_rate"], r["lambda"]): list(r.values())[6:] for r in mine}
    assert len(points) == len(mine)  # one line per point (and its one seed)
    return points

  base, wide = WIDTHS
  # At the base every recipe is plain AdamW: one search, the same lines for all.
  trained = lines(base, RECIPES[0])
  assert lines(base, RECIPES[1]) == trained
  corner = (f"{10 ** BOX_RATES[0]:.6g}", f"{10 ** BOX_LAMBDAS[0]:.6g}")
  assert {_steps(p, corner) for p in trained} == {(0, 0), (0, 1), (1, 0), (1, 1)}
  best = min(trained, key=lambda p: (float(trained[p][0]), float(p[0]), float(p[1])))
  # Wider, each recipe trains exactly the window around the base's best point, and
  # the recipes train different networks there.
  window = {(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1)}
  for recipe in RECIPES:
    assert {_steps(p, best) for p in lines(wide, recipe)} == window
  assert lines(wide, RECIPES[0]) != lines(wide, RECIPES[1])
  assert len(rows) == len(RECIPES) * (4 + 9)  # the base's lines repeated for each recipe
  config = json.loads((out / "config.json").read_text())
  assert config["study"] == "joint"
  assert config["data"]["steps"] == 7


def _table(summary: str, title: str) -> list[str]:
  """The rows of the table after the paragraph starting ``title``."""
  lines = summary.splitlines()
  start = next(k for k, line in enumerate(lines) if line.startswith(title))
  header = next(k for k in range(start, len(lines)) if lines[k].startswith("recipe "))
  rows = []
  for line in lines[header + 2 :]:
    if not line:
      break
    rows.append(line)
  return rows


@pytest.mark.slow
def test_joint_plots_and_summary_are_written(joint_study: tuple[Path, str]) -> None:
  out, stdout = joint_study
  for name in ("planes.png", "joint_optima.png"):
    assert (out / name).read_bytes()[:8] == PNG, name
  assert not (out / "optimal_lambda.png").exists()  # the lambda study's, not run
  summary = (out / "summary.txt").read_text()
  assert f"{TRAIN_CHARS} training" in summary
  assert "one pass: 7 steps of 16 windows" in summary
  assert f"relative to the d_model={WIDTHS[0]} model (base=)" in summary
  for title in ("Tuned pair", "Transfer regret", "Tuned quality", "How the penalty"):
    assert [line.split()[0] for line in _table(summary, title)] == list(RECIPES), title
  assert f"{4 + len(RECIPES) * 9} models trained." in summary.splitlines()
  for line in _table(summary, "Transfer regret"):
    regret, lo, hi, worst = (float(x.strip("[],")) for x in line.split()[1:])
    assert lo == regret == hi == worst  # one seed
  # The shares of the penalty at each best point, in %, add up to 100 (to rounding).
  for line in _table(summary, "How the penalty"):
    for cell in line.split()[1:]:
      assert sum(int(x) for x in cell.split("/")) == pytest.approx(100, abs=2)
  assert summary.splitlines()[0] in stdout


@pytest.mark.slow
def test_joint_replot_reproduces_the_summary(joint_study: tuple[Path, str], tmp_path: Path) -> None:
  out, _ = joint_study
  for name in ("runs.csv", "config.json"):
    shutil.copy(out / name, tmp_path / name)
  result = _run("--replot", "--out", str(tmp_path))
  assert result.returncode == 0, result.stderr[-4000:]
  # The same tables from runs.csv and the data of config.json; only the timing is missing.
  table, timing = (out / "summary.txt").read_text().rsplit("\n\n", 1)
  assert timing.startswith("wall time ")
  assert (tmp_path / "summary.txt").read_text() == table + "\n"
  assert result.stdout == table + "\n"
  for name in ("planes.png", "joint_optima.png"):
    assert (tmp_path / name).read_bytes()[:8] == PNG, name


@pytest.mark.parametrize(
  ("flags", "message"),
  [
    (("--scalings", "none"), "--scalings belongs to the lambda study"),
    (("--absolute",), "--absolute belongs to the lambda study"),
    (("--study", "lambda", "--max-moves", "2"), "--max-moves belongs to the joint study"),
  ],
)
def test_a_flag_of_the_other_study_is_an_error(
  flags: tuple[str, ...], message: str, tmp_path: Path
) -> None:
  pytest.importorskip("tqdm")
  result = _run("--quick", "--out", str(tmp_path / "out"), *flags)
  assert result.returncode == 2
  assert message in result.stderr
  assert "usage:" in result.stderr
  assert not (tmp_path / "out").exists()
