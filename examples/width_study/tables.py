"""The transfer tables every width study prints.

Each takes the regularised rows by ``(scaling, mode, width)`` (see
:func:`width_study.runs.regularised`) and reads the seed-mean test loss.
"""

from collections.abc import Sequence

import numpy as np

from width_study.optimum import optimum, transfer_cost
from width_study.runs import Row

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
  lines += _header(f"{'scaling':<12} {'mode':<13}", [f"w={w}" for w in widths], 7)
  cells = [f"{baseline[w].metrics['test_loss'].mean():7.3f}" for w in widths]
  lines.append(f"{'-':<12} {'unregularised':<13} " + " ".join(cells))
  for mode in modes:
    for scaling in scalings:
      cells = [f"{best_loss(grid[scaling, mode, w]):7.3f}" for w in widths]
      lines.append(f"{scaling:<12} {mode:<13} " + " ".join(cells))
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
      cells = [f"{g:+7.3f}" for g in [*gaps, max(gaps)]]
      lines.append(f"{scaling:<12} {mode:<13} " + " ".join(cells))
  return lines


def accuracy_table(
  grid: Grid,
  baseline: dict[int, Row],
  widths: Sequence[int],
  scalings: Sequence[str],
  modes: Sequence[str],
) -> list[str]:
  """Test accuracy at the loss-optimal lambda and the best over the grid."""
  lines = ["Test accuracy (%, mean over seeds): at the loss-optimal lambda / best over the grid."]
  lines += _header(f"{'scaling':<12} {'mode':<13}", [f"w={w}" for w in widths], 11)
  cells = [f"{100 * baseline[w].metrics['test_acc'].mean():.1f}".rjust(11) for w in widths]
  lines.append(f"{'-':<12} {'unregularised':<13} " + " ".join(cells))
  for mode in modes:
    for scaling in scalings:
      cells = []
      for w in widths:
        o = optimum(grid[scaling, mode, w])
        cells.append(f"{100 * o.acc_at_optimum:.1f}/{100 * o.best_acc:.1f}".rjust(11))
      lines.append(f"{scaling:<12} {mode:<13} " + " ".join(cells))
  return lines
