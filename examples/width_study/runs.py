"""A grid row's results, the drivers that train every row, and ``runs.csv``."""

import csv
import dataclasses
import sys
import time
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from width_study.grid import UNREGULARISED
from width_study.lattice import Lattice, Point, Results, Search, best_point, search, window
from width_study.settings import JointSettings
from width_study.shared_base import AtBase, check_shared

JOINT = "joint"
"""The ``mode`` of a joint study's rows, whose ``scaling`` is a recipe's name."""


@dataclasses.dataclass
class Row:
  """The results of one grid row: metrics of shape ``(len(lambdas), seeds)``.

  In a joint study each grid point is a ``(learning rate, lambda)`` pair:
  ``rates`` holds the learning rates beside ``lambdas``; ``None`` elsewhere
  (one learning rate for the whole study).
  """

  width: int
  scaling: str
  mode: str
  lambdas: np.ndarray
  metrics: dict[str, np.ndarray]
  seconds: float = 0.0  # wall time, compiling included
  cpu_seconds: float = 0.0  # processor time of this process, all threads
  rates: np.ndarray | None = None


Plan = Sequence[tuple[int, str, str, np.ndarray]]
"""``(width, scaling, mode, lambdas)`` of each row to train, in order."""


def study_plan(
  widths: Sequence[int],
  scalings: Sequence[str],
  modes: Sequence[str],
  grid: Callable[[str, str], np.ndarray],
) -> Plan:
  """Per width: the unregularised row, then a row per scaling and mode, on its ``grid``."""
  plan = []
  for width in widths:
    plan.append((width, *UNREGULARISED, np.zeros(1)))
    plan += [(width, s, m, grid(s, m)) for s in scalings for m in modes]
  return plan


def run_rows(
  plan: Plan,
  train_row: Callable[[int, str, str, np.ndarray], dict],
  shared_width: int | None = None,
  at_base: Callable[[str], Hashable] | None = None,
) -> list[Row]:
  """Trains every row of ``plan`` with ``train_row``, with a progress bar over the rows.

  ``train_row(width, scaling, mode, lambdas)`` returns the row's metrics, each
  of shape ``(len(lambdas), seeds)`` (JAX or NumPy arrays). At
  ``shared_width``, the base of scalings relative to it, every factor is 1
  and every scaling trains the same networks: there a mode's row is trained
  once and serves every scaling with the same grid and the same
  ``at_base(scaling)`` (what the scaling is at the base,
  :func:`width_study.shared_base.factors_at_base`); a scaling that differs
  there is trained on its own.
  """
  rows = []
  trained: dict[tuple, dict] = {}
  bar = tqdm(plan, desc="grid rows", unit="row", file=sys.stderr)
  for width, scaling, mode, lambdas in bar:
    bar.set_postfix_str(f"w={width} {scaling} {mode}")
    start, cpu_start = time.perf_counter(), time.process_time()
    key: tuple = (width, scaling, mode)
    if width == shared_width:
      form = None if at_base is None else at_base(scaling)
      key = (width, mode, tuple(np.asarray(lambdas).tolist()), form)
    if key not in trained:
      out = train_row(width, scaling, mode, lambdas)
      trained[key] = {k: np.asarray(v, np.float64) for k, v in jax.device_get(out).items()}
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    rows.append(Row(width, scaling, mode, np.asarray(lambdas), trained[key], seconds, cpu_seconds))
  bar.close()
  return rows


def run_joint(
  widths: Sequence[int],
  recipes: Sequence[str],
  lattice: Lattice,
  base_box: Sequence[Point],
  train_points: Callable[[int, str, np.ndarray, np.ndarray], dict],
  max_moves: int,
  done: Sequence[Row] = (),
  on_row: Callable[[list[Row]], None] | None = None,
  at_base: Callable[[str], AtBase] | None = None,
) -> list[Row]:
  """Trains a joint study: the base width once, then every recipe at every wider width.

  At the base (the first width) every recipe is plain AdamW, so its
  lattice is searched once, from ``base_box``, under the first recipe's name,
  and serves every recipe; ``at_base(recipe)`` says what each recipe trains
  there, and a recipe that differs from the first raises a ``ValueError``
  before anything is trained (:func:`width_study.shared_base.check_shared`). At
  each wider width each recipe starts from the 3 x 3 window around the
  base's best pair and walks toward lower loss (:func:`width_study.lattice.search`)
  for at most ``max_moves`` moves. ``train_points(width, recipe, rates,
  lambdas)`` trains the pairs ``(rates[k], lambdas[k])`` and returns each
  metric with shape ``(len(rates), seeds)``.

  ``done`` holds rows of an earlier run (``--resume``): their points are not
  trained again, and each search goes on from them, further if ``max_moves``
  allows; at the base from the earlier best point instead of ``base_box``. On
  a lattice of twice the points a decade, that refines every optimum.
  ``on_row(rows)`` is called with the rows so far after each one, to save
  them.
  """
  base_width, *wider = widths
  if at_base is not None:
    check_shared({recipe: at_base(recipe) for recipe in recipes}, base_width)
  rows = []
  bar = tqdm(total=len(widths) * len(recipes), desc="recipes x widths", file=sys.stderr)

  def train(width: int, recipe: str) -> Callable:
    def on(points: Sequence[Point]) -> dict:
      bar.set_postfix_str(f"d={width} {recipe}: {len(points)} points")
      pairs = np.array([lattice.pair(p) for p in points])
      out = train_points(width, recipe, pairs[:, 0], pairs[:, 1])
      return {k: np.asarray(v, np.float64) for k, v in jax.device_get(out).items()}

    return on

  def rows_of(width: int, recipe: str, found: Search, seconds: float, cpu: float) -> Row:
    points = sorted(found.results)
    pairs = np.array([lattice.pair(p) for p in points])
    names = found.results[points[0]]
    metrics = {name: np.stack([found.results[p][name] for p in points]) for name in names}
    return Row(width, recipe, JOINT, pairs[:, 1], metrics, seconds, cpu, rates=pairs[:, 0])

  earlier = {(row.scaling, row.width): row for row in done if row.mode == JOINT}

  def results_of(row: Row | None) -> Results:
    if row is None:
      return {}
    assert row.rates is not None
    points = [lattice.point(r, lam) for r, lam in zip(row.rates, row.lambdas, strict=True)]
    return {p: {k: v[i] for k, v in row.metrics.items()} for i, p in enumerate(points)}

  start, cpu_start = time.perf_counter(), time.process_time()
  at_base = next((row for (_, w), row in earlier.items() if w == base_width), None)
  before = results_of(at_base)
  # Resumed, the base goes on from its best point (on a finer lattice, say), not from the box.
  first = window(best_point(before)) if before else base_box
  base = search(train(base_width, recipes[0]), first, max_moves, results=before)
  seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
  for recipe in recipes:
    rows.append(rows_of(base_width, recipe, base, seconds, cpu))
    bar.update()
  if on_row is not None:
    on_row(rows)
  tuned = best_point(base.results)
  for width in wider:
    for recipe in recipes:
      start, cpu_start = time.perf_counter(), time.process_time()
      before = results_of(earlier.get((recipe, width)))
      found = search(train(width, recipe), window(tuned), max_moves, results=before)
      seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
      rows.append(rows_of(width, recipe, found, seconds, cpu))
      bar.update()
      if on_row is not None:
        on_row(rows)
  bar.close()
  return rows


def run_joint_saved(
  cfg: JointSettings,
  train_points: Callable[[int, str, np.ndarray, np.ndarray], dict],
  out: Path,
  metrics: Sequence[str],
  resume: bool = False,
  at_base: Callable[[str], AtBase] | None = None,
) -> list[Row]:
  """:func:`run_joint` on ``cfg``'s lattice and box, writing ``out/runs.csv`` after every row.

  With ``resume`` the rows already in ``out/runs.csv`` are the start of this run.
  """
  path = out / "runs.csv"
  return run_joint(
    cfg.widths,
    cfg.recipes,
    cfg.lattice(),
    cfg.box(),
    train_points,
    cfg.max_moves,
    done=read_csv(path) if resume and path.exists() else [],
    on_row=lambda rows: write_csv(rows, path, metrics),
    at_base=at_base,
  )


KEYS = ("width", "scaling", "mode", "lambda", "seed")
RATE = "learning_rate"
"""The column of a joint study's learning rates in ``runs.csv``, after ``lambda``."""


def write_csv(rows: Sequence[Row], path: Path, metrics: Sequence[str]) -> None:
  """One line per trained network: its grid cell, seed and ``metrics``."""
  joint = any(row.rates is not None for row in rows)
  with path.open("w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow([*KEYS[:4], *([RATE] if joint else []), KEYS[4], *metrics])
    for row in rows:
      for i, lam in enumerate(row.lambdas):
        rate = [] if not joint else [""] if row.rates is None else [f"{row.rates[i]:.6g}"]
        for seed in range(row.metrics[metrics[0]].shape[1]):
          values = [row.metrics[name][i, seed] for name in metrics]
          # 9 digits restore a float32 exactly: `--replot` finds the same best points.
          writer.writerow(
            [row.width, row.scaling, row.mode, f"{lam:.6g}", *rate, seed]
            + [f"{v:.9g}" for v in values]
          )


def read_csv(path: Path) -> list[Row]:
  """The rows of a study from its ``runs.csv`` (for ``--replot``)."""
  with path.open() as f:
    lines = list(csv.DictReader(f))
  groups: dict[tuple[int, str, str], list[dict[str, str]]] = {}
  for line in lines:
    groups.setdefault((int(line["width"]), line["scaling"], line["mode"]), []).append(line)
  rows = []
  for (width, scaling, mode), group in groups.items():
    joint = bool(group[0].get(RATE))

    def pair(line: dict[str, str], joint: bool = joint) -> tuple[float, float]:
      return (float(line[RATE]) if joint else 0.0, float(line["lambda"]))

    pairs = sorted({pair(line) for line in group})
    seeds = sorted({int(line["seed"]) for line in group})
    names = [c for c in group[0] if c not in (*KEYS, RATE)]
    metrics = {name: np.full((len(pairs), len(seeds)), np.nan) for name in names}
    for line in group:
      i, j = pairs.index(pair(line)), seeds.index(int(line["seed"]))
      for name in names:
        metrics[name][i, j] = float(line[name])
    rates = np.array([rate for rate, _ in pairs]) if joint else None
    lambdas = np.array([lam for _, lam in pairs])
    rows.append(Row(width, scaling, mode, lambdas, metrics, rates=rates))
  return rows


def joint_rows(rows: Sequence[Row]) -> dict[tuple[str, int], Row]:
  """A joint study's rows, by ``(recipe, width)``."""
  return {(r.scaling, r.width): r for r in rows if r.mode == JOINT}


def regularised(rows: Sequence[Row]) -> dict[tuple[str, str, int], Row]:
  """The rows with a lambda grid, by ``(scaling, mode, width)``."""
  return {(r.scaling, r.mode, r.width): r for r in rows if r.mode != UNREGULARISED[1]}


def unregularised(rows: Sequence[Row]) -> dict[int, Row]:
  """The plain-Adam rows, by width."""
  return {r.width: r for r in rows if r.mode == UNREGULARISED[1]}
