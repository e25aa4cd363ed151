"""The transfer tables every width study prints.

Each takes the regularised rows by ``(scaling, mode, width)`` (see
:func:`width_study.runs.regularised`) and reads the seed-mean test loss.
"""

from collections.abc import Callable, Sequence

import numpy as np

from width_study.lattice import Lattice
from width_study.optimum import optimum, transfer_cost
from width_study.runs import Row, regularised, unregularised
from width_study.settings import LambdaSettings
from width_study.transfer import JointGrid, Transfer

Grid = dict[tuple[str, str, int], Row]


def _header(first: str, cells: Sequence[str], width: int) -> list[str]:
  line = first + " " + " ".join(c.rjust(width) for c in cells)
  return [line, "-" * len(line)]


def best_loss(row: Row) -> float:
  """The lowest seed-mean test loss over the row's grid."""
  return float(np.nanmin(row.metrics["test_loss"].mean(axis=1)))


def optimum_table(
  grid: Grid, widths: Sequence[int], scalings: Sequence[str], modes: Sequence[str]
) -> list[str]:
  """Optimal lambda per width, its drift, and what reusing the narrowest's costs at the widest."""
  lines = [
    "Optimal lambda: lowest test loss (mean over seeds), refined by a parabola in log10 lambda.",
    "'<' / '>': at the low / high end of the grid. drift = log10(lambda*_widest / "
    "lambda*_narrowest); [a, b]: the drift between the extreme per-seed optima.",
    f"reuse cost: at w={widths[-1]}, with the lambda* of w={widths[0]} instead of its own: "
    "test loss increase / accuracy change (points).",
  ]
  cells = [f"w={w}" for w in widths]
  lines += _header(f"{'scaling':<12} {'mode':<9}", [*cells], 9)
  lines[-2] += f" {'drift':>6} {'[a, b]':>12} {'reuse cost':>14}"
  lines[-1] = "-" * len(lines[-2])
  for mode in modes:
    for scaling in scalings:
      opts = [optimum(grid[scaling, mode, w]) for w in widths]
      values = []
      for o in opts:
        mark = {"low": "<", "high": ">", "": ""}[o.edge]
        values.append(f"{mark}{10**o.log_lambda:.2g}".rjust(9))
      drift = opts[-1].log_lambda - opts[0].log_lambda
      lo = opts[-1].seed_range[0] - opts[0].seed_range[1]
      hi = opts[-1].seed_range[1] - opts[0].seed_range[0]
      loss, acc = transfer_cost(grid[scaling, mode, widths[0]], grid[scaling, mode, widths[-1]])
      cost = f"{loss:+.3f}" + ("" if np.isnan(acc) else f" / {acc:+.1f}")
      lines.append(
        f"{scaling:<12} {mode:<9} "
        + " ".join(values)
        + f" {drift:+6.2f} {f'[{lo:+.1f}, {hi:+.1f}]':>12} {cost:>14}"
      )
  return lines


def reuse_table(
  grid: Grid, widths: Sequence[int], scalings: Sequence[str], modes: Sequence[str]
) -> list[str]:
  """The test-loss cost of reusing the narrowest width's lambda at every wider width."""
  lines = [
    f"Reuse cost: test loss at each width with the lambda* of w={widths[0]}, minus the test",
    "loss at that width's own lambda* (mean over seeds; 0 = lambda carries over). max: the",
    "worst over the wider widths.",
  ]
  lines += _header(f"{'scaling':<12} {'mode':<9}", [f"w={w}" for w in widths[1:]] + ["max"], 8)
  for mode in modes:
    for scaling in scalings:
      costs = [
        transfer_cost(grid[scaling, mode, widths[0]], grid[scaling, mode, w])[0] for w in widths[1:]
      ]
      cells = [f"{c:+8.3f}" for c in costs] + [f"{max(costs, default=0.0):+8.3f}"]
      lines.append(f"{scaling:<12} {mode:<9} " + " ".join(cells))
  return lines


def best_loss_table(
  grid: Grid,
  baseline: dict[int, Row],
  widths: Sequence[int],
  scalings: Sequence[str],
  modes: Sequence[str],
) -> list[str]:
  """Best test loss over the grid, and its gap to tuned plain L2 (``none``) in the same mode."""
  lines = ["Best test loss (mean over seeds) over the grid."]
  cells = (
    lambda row: f"{row.metrics['test_loss'].mean():7.3f}",
    lambda row: f"{best_loss(row):7.3f}",
  )
  lines += scaling_table(grid, baseline, widths, scalings, modes, cells, 7)
  if "none" not in scalings:
    return lines
  lines += [
    "",
    "Quality of each scaling against tuned plain L2 in the same mode: best test loss minus",
    "none's (negative: better). max: the worst over the widths.",
  ]
  lines += _header(f"{'scaling':<12} {'mode':<13}", [f"w={w}" for w in widths] + ["max"], 7)
  for mode in modes:
    for scaling in scalings:
      if scaling == "none":
        continue
      gaps = [best_loss(grid[scaling, mode, w]) - best_loss(grid["none", mode, w]) for w in widths]
      cells_text = [f"{g:+7.3f}" for g in [*gaps, max(gaps)]]
      lines.append(f"{scaling:<12} {mode:<13} " + " ".join(cells_text))
  return lines


def accuracy_table(rows: Sequence[Row], cfg: LambdaSettings) -> list[str]:
  """Test accuracy at the loss-optimal lambda and the best over the grid (a ``test_acc`` metric)."""

  def cell(row: Row) -> str:
    o = optimum(row)
    return f"{100 * o.acc_at_optimum:.1f}/{100 * o.best_acc:.1f}".rjust(11)

  def plain(row: Row) -> str:
    return f"{100 * row.metrics['test_acc'].mean():.1f}".rjust(11)

  grid, baseline = regularised(rows), unregularised(rows)
  lines = ["Test accuracy (%, mean over seeds): at the loss-optimal lambda / best over the grid."]
  table = scaling_table(grid, baseline, cfg.widths, cfg.scalings, cfg.modes, (plain, cell), 11)
  return lines + table


def scaling_table(
  grid: Grid,
  baseline: dict[int, Row],
  widths: Sequence[int],
  scalings: Sequence[str],
  modes: Sequence[str],
  cells: tuple[Callable[[Row], str], Callable[[Row], str]],
  cell_width: int,
  label: str = "w",
  plain: str = "-",
) -> list[str]:
  """A line per ``(scaling, mode)``, the unregularised networks first, a column a width.

  ``cells`` makes the text of an unregularised row's cell and of a regularised
  row's; the unregularised line is named ``plain`` in the scaling column.
  """
  plain_cell, cell = cells
  lines = _header(f"{'scaling':<12} {'mode':<13}", [f"{label}={w}" for w in widths], cell_width)
  lines.append(
    f"{plain:<12} {'unregularised':<13} " + " ".join(plain_cell(baseline[w]) for w in widths)
  )
  for mode in modes:
    for scaling in scalings:
      row_cells = [cell(grid[scaling, mode, w]) for w in widths]
      lines.append(f"{scaling:<12} {mode:<13} " + " ".join(row_cells))
  return lines


# --- joint studies: the learning rate and lambda tuned together -------------------------------


def joint_tables(
  found: dict[tuple[str, int], Transfer],
  widths: Sequence[int],
  recipes: Sequence[str],
  summaries: dict[str, str],
  unit: str = "test loss",
) -> list[str]:
  """The tuned pair, its drift, the transfer regret and the quality of every recipe."""
  lines = ["Recipes (each relative to the base width, where every one is plain AdamW):"]
  lines += [f"  {name:<15} {summaries[name]}" for name in recipes]
  lines += [
    "",
    "Tuned pair: learning rate / lambda of the lowest seed-mean "
    + unit
    + ", refined by a quadratic",
    "through the 3 x 3 lattice points around it ('~': not refined, the best lattice point).",
    f"drift: decades moved from w={widths[0]} to w={widths[-1]}, learning rate / lambda; "
    "[a, b]: the same between",
    "the extreme per-seed optima.",
  ]
  cells = [f"w={w}" for w in widths]
  header = f"{'recipe':<15} " + " ".join(c.rjust(15) for c in cells)
  header += f" {'drift lr':>9} {'[a, b]':>13} {'drift lam':>9} {'[a, b]':>13}"
  lines += [header, "-" * len(header)]
  for recipe in recipes:
    row = []
    for w in widths:
      o = found[recipe, w].optimum
      mark = "" if o.refined else "~"
      row.append(f"{mark}{10**o.log_rate:.2g} / {10**o.log_lambda:.2g}".rjust(15))
    base, last = found[recipe, widths[0]].optimum, found[recipe, widths[-1]]
    # Rounded, and + 0.0 so that a difference of -2e-16 prints as +0.00, not -0.00.
    rate_range = (
      round(last.optimum.seed_rates[0] - base.seed_rates[1], 2) + 0.0,
      round(last.optimum.seed_rates[1] - base.seed_rates[0], 2) + 0.0,
    )
    lam_range = (
      round(last.optimum.seed_lambdas[0] - base.seed_lambdas[1], 2) + 0.0,
      round(last.optimum.seed_lambdas[1] - base.seed_lambdas[0], 2) + 0.0,
    )
    lines.append(
      f"{recipe:<15} "
      + " ".join(row)
      + f" {last.drift_rate:+9.2f} {f'[{rate_range[0]:+.2f}, {rate_range[1]:+.2f}]':>13}"
      + f" {last.drift_lambda:+9.2f} {f'[{lam_range[0]:+.2f}, {lam_range[1]:+.2f}]':>13}"
    )
  lines += [
    "",
    f"Transfer regret: {unit} at each width with the w={widths[0]} tuned pair, minus the best "
    f"{unit}",
    "any recipe reached at that width (seed means; [a, b]: the same difference seed by seed).",
    "max: the worst over the wider widths.",
  ]
  header = f"{'recipe':<15} " + " ".join(f"{f'w={w}':>24}" for w in widths[1:]) + f" {'max':>8}"
  lines += [header, "-" * len(header)]
  for recipe in recipes:
    row, worst = [], -np.inf
    for w in widths[1:]:
      t = found[recipe, w]
      worst = max(worst, t.regret)
      row.append(f"{t.regret:+.3f} [{t.regret_range[0]:+.3f}, {t.regret_range[1]:+.3f}]".rjust(24))
    lines.append(f"{recipe:<15} " + " ".join(row) + f" {worst:+8.3f}")
  lines += [
    "",
    f"Tuned quality: best {unit} of each recipe at each width, and its gap to the best recipe",
    "there (0: this recipe is the best tuned there). max: the worst gap.",
  ]
  header = f"{'recipe':<15} " + " ".join(f"{f'w={w}':>16}" for w in widths) + f" {'max':>8}"
  lines += [header, "-" * len(header)]
  for recipe in recipes:
    gaps = [found[recipe, w].quality for w in widths]
    row = [
      f"{found[recipe, w].optimum.best_loss:.3f} ({g:+.3f})".rjust(16)
      for w, g in zip(widths, gaps, strict=True)
    ]
    lines.append(f"{recipe:<15} " + " ".join(row) + f" {max(gaps):+8.3f}")
  return lines


def best_point_table(
  grid: JointGrid,
  found: dict[tuple[str, int], Transfer],
  lattice: Lattice,
  widths: Sequence[int],
  recipes: Sequence[str],
  cell: Callable[[dict[str, np.ndarray]], str],
  cell_width: int,
  label: str = "w",
) -> list[str]:
  """A line per recipe, a column a width: ``cell`` of the recipe's best point there.

  ``cell(metrics)`` gets each metric's values over the seeds at that point.
  """
  header = f"{'recipe':<15} " + " ".join(f"{f'{label}={w}':>{cell_width}}" for w in widths)
  lines = [header, "-" * len(header)]
  for recipe in recipes:
    cells = []
    for w in widths:
      row = grid[recipe, w]
      assert row.rates is not None, "not a joint study's row"
      points = [lattice.point(r, lam) for r, lam in zip(row.rates, row.lambdas, strict=True)]
      k = points.index(found[recipe, w].optimum.best)
      cells.append(cell({name: values[k] for name, values in row.metrics.items()}))
    lines.append(f"{recipe:<15} " + " ".join(cells))
  return lines


def models_trained(grid: JointGrid, widths: Sequence[int], recipes: Sequence[str]) -> int:
  """How many models a joint study trained: every point and seed, the shared base's once."""
  base, *wider = widths
  trained = sum(row.metrics["test_loss"].size for row in grid.values() if row.width in wider)
  return trained + grid[recipes[0], base].metrics["test_loss"].size
