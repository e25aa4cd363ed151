"""A grid row's results, the driver that trains every row, and ``runs.csv``."""

import csv
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np
from tqdm import tqdm

from width_study.grid import UNREGULARISED


@dataclasses.dataclass
class Row:
  """The results of one grid row: metrics of shape ``(len(lambdas), seeds)``."""

  width: int
  scaling: str
  mode: str
  lambdas: np.ndarray
  metrics: dict[str, np.ndarray]
  seconds: float = 0.0  # wall time, compiling included
  cpu_seconds: float = 0.0  # processor time of this process, all threads


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
) -> list[Row]:
  """Trains every row of ``plan`` with ``train_row``, with a progress bar over the rows.

  ``train_row(width, scaling, mode, lambdas)`` returns the row's metrics, each
  of shape ``(len(lambdas), seeds)`` (JAX or NumPy arrays). At
  ``shared_width``, the base of scalings relative to it, every factor is 1
  and every scaling trains the same networks on the same grid: there each
  mode's row is trained once and serves every scaling.
  """
  rows = []
  trained: dict[tuple, dict] = {}
  bar = tqdm(plan, desc="grid rows", unit="row", file=sys.stderr)
  for width, scaling, mode, lambdas in bar:
    bar.set_postfix_str(f"w={width} {scaling} {mode}")
    start, cpu_start = time.perf_counter(), time.process_time()
    key = (width, mode) if width == shared_width else (width, scaling, mode)
    if key not in trained:
      out = train_row(width, scaling, mode, lambdas)
      trained[key] = {k: np.asarray(v, np.float64) for k, v in jax.device_get(out).items()}
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    rows.append(Row(width, scaling, mode, np.asarray(lambdas), trained[key], seconds, cpu_seconds))
  bar.close()
  return rows


KEYS = ("width", "scaling", "mode", "lambda", "seed")


def write_csv(rows: Sequence[Row], path: Path, metrics: Sequence[str]) -> None:
  """One line per trained network: its grid cell, seed and ``metrics``."""
  with path.open("w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow([*KEYS, *metrics])
    for row in rows:
      for i, lam in enumerate(row.lambdas):
        for seed in range(row.metrics[metrics[0]].shape[1]):
          values = [row.metrics[name][i, seed] for name in metrics]
          writer.writerow(
            [row.width, row.scaling, row.mode, f"{lam:.6g}", seed] + [f"{v:.6g}" for v in values]
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
    lambdas = sorted({float(line["lambda"]) for line in group})
    seeds = sorted({int(line["seed"]) for line in group})
    names = [c for c in group[0] if c not in KEYS]
    metrics = {name: np.full((len(lambdas), len(seeds)), np.nan) for name in names}
    for line in group:
      i, j = lambdas.index(float(line["lambda"])), seeds.index(int(line["seed"]))
      for name in names:
        metrics[name][i, j] = float(line[name])
    rows.append(Row(width, scaling, mode, np.array(lambdas), metrics))
  return rows


def regularised(rows: Sequence[Row]) -> dict[tuple[str, str, int], Row]:
  """The rows with a lambda grid, by ``(scaling, mode, width)``."""
  return {(r.scaling, r.mode, r.width): r for r in rows if r.mode != UNREGULARISED[1]}


def unregularised(rows: Sequence[Row]) -> dict[int, Row]:
  """The plain-Adam rows, by width."""
  return {r.width: r for r in rows if r.mode == UNREGULARISED[1]}
