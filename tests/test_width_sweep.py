"""Smoke test of the width-sweep study: it runs and writes what it promises.

The science is in ``docs/study.md``; this only checks the plumbing, on a study
small enough to finish in well under a minute.
"""

import csv
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
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
  command = [sys.executable, str(SCRIPT), "--quick", "--study", "lambda", "--out", str(out)]
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


# --- the joint study: learning rate and lambda tuned together ---------------------------

RECIPES = ("adamw", "mup")
JOINT_SEEDS = 2
# --quick's base box, 2 x 2 points of the lattice (3 a decade), and one move of each search.
BOX_RATES, BOX_LAMBDAS = (-2.333, -2.0), (-0.667, -0.333)
JOINT_COLUMNS = ["width", "scaling", "mode", "lambda", "learning_rate", "seed", *COLUMNS[5:]]
PNG = b"\x89PNG\r\n\x1a\n"


def _run(*args: str) -> subprocess.CompletedProcess:
  command = [sys.executable, str(SCRIPT), *args]
  return subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def joint_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
  pytest.importorskip("mnist1d")
  pytest.importorskip("matplotlib")
  pytest.importorskip("tqdm")
  out = tmp_path_factory.mktemp("width_sweep_joint")
  result = _run(
    *("--quick", "--out", str(out), "--widths", *map(str, WIDTHS), "--recipes", *RECIPES),
    *("--seeds", str(JOINT_SEEDS), "--steps", "5", "--max-moves", "1"),
    *("--rates", *map(str, BOX_RATES), "--lambdas", *map(str, BOX_LAMBDAS)),
  )
  assert result.returncode == 0, result.stderr[-4000:]
  return out, result.stdout


def _points(rows: list[dict[str, str]]) -> dict[tuple[str, str], dict[int, dict[str, str]]]:
  """Each trained ``(learning_rate, lambda)`` of ``rows``, its lines by seed."""
  points: dict[tuple[str, str], dict[int, dict[str, str]]] = {}
  for r in rows:
    seeds = points.setdefault((r["learning_rate"], r["lambda"]), {})
    assert int(r["seed"]) not in seeds  # one line per point and seed
    seeds[int(r["seed"])] = r
  return points


def _steps(pair: tuple[str, str], centre: tuple[str, str]) -> tuple[int, int]:
  """Lattice steps (3 a decade) from ``centre`` to ``pair``, each coordinate."""
  logs = [
    3 * (math.log10(float(a)) - math.log10(float(b))) for a, b in zip(pair, centre, strict=True)
  ]
  assert all(abs(x - round(x)) < 1e-3 for x in logs), (pair, centre)
  return round(logs[0]), round(logs[1])


@pytest.mark.slow
def test_joint_csv_has_one_row_per_trained_point_and_seed(joint_study: tuple[Path, str]) -> None:
  out, _ = joint_study
  with (out / "runs.csv").open() as f:
    reader = csv.DictReader(f)
    assert reader.fieldnames == JOINT_COLUMNS
    rows = list(reader)
  assert {r["mode"] for r in rows} == {"joint"}
  assert {(int(r["width"]), r["scaling"]) for r in rows} == {
    (w, s) for w in WIDTHS for s in RECIPES
  }
  for r in rows:
    assert 0.0 <= float(r["test_acc"]) <= 1.0
    assert 0.0 < float(r["test_loss"]) < 10.0
    assert float(r["ms_Dense_1"]) > 0.0
  study = {
    (w, s): _points([r for r in rows if (int(r["width"]), r["scaling"]) == (w, s)])
    for w in WIDTHS
    for s in RECIPES
  }
  for points in study.values():
    assert len(points) >= 9  # a window of 3 x 3 at least
    assert all(sorted(seeds) == list(range(JOINT_SEEDS)) for seeds in points.values())

  def lines(width: int, recipe: str) -> list[list[str]]:
    return [
      list(r.values())[3:] for r in rows if (int(r["width"]), r["scaling"]) == (width, recipe)
    ]

  # At the base every recipe is plain AdamW: one search, the same lines for all.
  base, wide = WIDTHS
  assert lines(base, "adamw") == lines(base, "mup")
  assert lines(wide, "adamw") != lines(wide, "mup")
  # The base's search trained its 2 x 2 box, then moved once, to the 3 x 3 window
  # around the box's best point, and stopped there: max_moves = 1.
  trained = study[base, RECIPES[0]]
  corner = (f"{10 ** BOX_RATES[0]:.6g}", f"{10 ** BOX_LAMBDAS[0]:.6g}")
  steps = {_steps(p, corner) for p in trained}
  assert {(0, 0), (0, 1), (1, 0), (1, 1)} <= steps
  low = min(steps)
  assert low in {(-1, -1), (-1, 0), (0, -1), (0, 0)}
  assert steps == {(low[0] + di, low[1] + dj) for di in range(3) for dj in range(3)}

  def mean_loss(pair: tuple[str, str]) -> float:
    return sum(float(r["test_loss"]) for r in trained[pair].values()) / JOINT_SEEDS

  best = min(trained, key=lambda p: (mean_loss(p), float(p[0]), float(p[1])))
  window = {(di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1)}
  # Every wider search starts at the window around the base's best point.
  for recipe in RECIPES:
    assert window <= {_steps(p, best) for p in study[wide, recipe]}


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
  for title in ("Tuned pair", "Transfer regret", "Tuned quality"):
    assert [line.split()[0] for line in _table(summary, title)] == list(RECIPES), title
  assert f"relative to the w={WIDTHS[0]} model (base=)" in summary
  assert summary.splitlines()[0] in stdout
  # The transfer regret is the mean of the per-seed gaps, so it lies in their range [a, b];
  # with one wider width, it is also the max.
  for line in _table(summary, "Transfer regret"):
    regret, lo, hi, worst = (float(x.strip("[],")) for x in line.split()[1:])
    assert lo - 1e-3 <= regret <= hi + 1e-3
    assert worst == regret
  config = (out / "config.json").read_text()
  assert '"study": "joint"' in config


@pytest.mark.slow
def test_joint_replot_reproduces_the_summary(joint_study: tuple[Path, str], tmp_path: Path) -> None:
  out, _ = joint_study
  for name in ("runs.csv", "config.json"):
    shutil.copy(out / name, tmp_path / name)
  result = _run("--replot", "--out", str(tmp_path))
  assert result.returncode == 0, result.stderr[-4000:]
  # The same tables from runs.csv alone; only the timing of the training is missing.
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
    (("--study", "joint", "--points", "3"), "--points belongs to the lambda study"),
    (("--study", "lambda", "--recipes", "adamw"), "--recipes belongs to the joint study"),
  ],
)
def test_a_flag_of_the_other_study_is_an_error(
  flags: tuple[str, ...], message: str, tmp_path: Path
) -> None:
  pytest.importorskip("mnist1d")
  pytest.importorskip("matplotlib")
  pytest.importorskip("tqdm")
  result = _run("--quick", "--out", str(tmp_path / "out"), *flags)
  assert result.returncode == 2
  assert message in result.stderr
  assert "usage:" in result.stderr
  assert not (tmp_path / "out").exists()


# --- the shared machinery, on synthetic rows whose answers are known ---------------------


def _width_study():
  sys.path.insert(0, str(ROOT / "examples"))
  try:
    from width_study import optimum, runs, tables
  finally:
    sys.path.pop(0)
  return optimum, runs, tables


def _parabola_row(width: int, centre: float, depth: float = 1.0):
  """A row whose seed-mean test loss is ``depth + (log10 lambda - centre)**2``."""
  import numpy as np

  _, runs, _ = _width_study()
  lambdas = np.logspace(-3, 1, 17)
  loss = depth + (np.log10(lambdas) - centre) ** 2
  metrics = {"test_loss": np.stack([loss - 0.01, loss + 0.01], axis=1)}
  return runs.Row(width, "sqrt_fan_avg", "decoupled", lambdas, metrics)


def test_rows_at_the_shared_width_are_trained_once_per_mode() -> None:
  import numpy as np

  _, runs, _ = _width_study()
  grid = {"coupled": np.array([0.1, 1.0]), "decoupled": np.array([1.0, 10.0])}
  plan = runs.study_plan((8, 16), ("none", "sqrt_fan_avg"), tuple(grid), lambda s, m: grid[m])
  assert [row[:3] for row in plan[:5]] == [
    (8, "-", "unregularised"),
    (8, "none", "coupled"),
    (8, "none", "decoupled"),
    (8, "sqrt_fan_avg", "coupled"),
    (8, "sqrt_fan_avg", "decoupled"),
  ]
  calls = []

  def train_row(width, scaling, mode, lambdas):
    calls.append((width, scaling, mode))
    return {"test_loss": np.full((len(lambdas), 1), float(len(calls)))}

  rows = runs.run_rows(plan, train_row, shared_width=8)
  # At width 8 sqrt_fan_avg reuses none's rows; at 16 every row is trained.
  assert calls == [
    (8, "-", "unregularised"),
    (8, "none", "coupled"),
    (8, "none", "decoupled"),
    (16, "-", "unregularised"),
    *((16, s, m) for s in ("none", "sqrt_fan_avg") for m in grid),
  ]
  assert [r.metrics["test_loss"][0, 0] for r in rows[:5]] == [1.0, 2.0, 3.0, 2.0, 3.0]
  # Without a shared width, every row is trained.
  before = len(calls)
  assert len(runs.run_rows(plan, train_row)) == len(plan) == len(calls) - before


def test_refined_optimum_finds_the_vertex_between_grid_points() -> None:
  optimum, _, _ = _width_study()
  assert optimum.optimum(_parabola_row(32, -0.6)).log_lambda == pytest.approx(-0.6, abs=1e-9)
  assert optimum.optimum(_parabola_row(32, 2.0)).edge == "high"


def test_reusing_an_optimum_costs_nothing_when_it_stays_and_the_gap_when_it_moves() -> None:
  optimum, _, _ = _width_study()
  narrow, same, moved = _parabola_row(32, -0.5), _parabola_row(64, -0.5), _parabola_row(64, 0.5)
  assert optimum.transfer_cost(narrow, same)[0] == pytest.approx(0.0, abs=1e-12)
  # One decade off the optimum of (x - 0.5)^2 on a grid with 4 points a decade:
  # linear interpolation between the grid points at -0.5 and 0.5 is exact there.
  assert optimum.transfer_cost(narrow, moved)[0] == pytest.approx(1.0, abs=1e-9)


def test_tables_report_drift_reuse_cost_and_quality_gap() -> None:
  _, runs, tables = _width_study()
  rows = [_parabola_row(32, -0.5), _parabola_row(64, 0.5)]
  plain = [_parabola_row(32, -0.5, depth=1.0), _parabola_row(64, -0.5, depth=0.9)]
  for row in plain:
    row.scaling = "none"
  grid = runs.regularised([*rows, *plain])
  text = "\n".join(tables.optimum_table(grid, (32, 64), ("none", "sqrt_fan_avg"), ("decoupled",)))
  line = next(x for x in text.splitlines() if x.startswith("sqrt_fan_avg"))
  assert "+1.00" in line  # drift in decades
  reuse = "\n".join(tables.reuse_table(grid, (32, 64), ("sqrt_fan_avg",), ("decoupled",)))
  assert reuse.splitlines()[-1].split()[2:] == ["+1.000", "+1.000"]
  baseline = {
    w: runs.Row(w, "-", "unregularised", np.zeros(1), {"test_loss": np.full((1, 2), 2.0)})
    for w in (32, 64)
  }
  quality = tables.best_loss_table(
    grid, baseline, (32, 64), ("none", "sqrt_fan_avg"), ("decoupled",)
  )
  gap = quality[-1].split()
  assert gap[:2] == ["sqrt_fan_avg", "decoupled"]
  assert [float(x) for x in gap[2:]] == pytest.approx([0.0, 0.1, 0.1], abs=1e-3)
