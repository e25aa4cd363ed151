"""Loss curves over lambda, and the optimal lambda against width."""

from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib
import numpy as np

from width_study.optimum import optimum
from width_study.runs import Row, regularised, unregularised

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def width_colours(widths: Sequence[int]) -> dict[int, tuple]:
  """A colour per width, from dark (narrow) to light (wide)."""
  cmap = plt.get_cmap("viridis")
  return {w: cmap(i / max(1, len(widths) - 1) * 0.9) for i, w in enumerate(widths)}


def scaling_colours(scalings: Sequence[str]) -> dict[str, str]:
  """The same colour for a scaling in every figure of a study."""
  return {s: f"C{i}" for i, s in enumerate(scalings)}


def plot_curves(
  rows: Sequence[Row],
  widths: Sequence[int],
  scalings: Sequence[str],
  mode: str,
  path: Path,
  title: str,
  loss_ceiling: float | None = None,
  metrics: Sequence[tuple[str, str, float]] = (("test_loss", "test loss", 1.0),),
) -> None:
  """Each ``metrics`` entry against lambda: a column per scaling, a curve per width.

  ``metrics`` holds ``(column, axis label, factor)``; bands span the seeds,
  dotted lines are the unregularised networks, dashed lines the optima.
  """
  grid, base = regularised(rows), unregularised(rows)
  colours = width_colours(widths)
  n = len(scalings)
  fig, axes = plt.subplots(
    len(metrics), n, figsize=(max(4 * n, 9), 3.3 * len(metrics)), sharey="row", squeeze=False
  )
  for j, scaling in enumerate(scalings):
    for w in widths:
      row = grid[scaling, mode, w]
      o = optimum(row)
      for k, (metric, _, factor) in enumerate(metrics):
        ax = axes[k, j]
        values = factor * row.metrics[metric]
        ax.plot(row.lambdas, values.mean(axis=1), "-", color=colours[w], label=f"w={w}")
        ax.fill_between(
          row.lambdas, values.min(axis=1), values.max(axis=1), color=colours[w], alpha=0.15, lw=0
        )
        if w in base:
          ax.axhline(factor * base[w].metrics[metric].mean(), color=colours[w], ls=":", lw=1)
        if metric == "test_loss":
          ax.axvline(10**o.log_lambda, color=colours[w], ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0, j].set_title(f"scaling={scaling}")
    axes[-1, j].set_xlabel("lambda")
  for k, (_, label, _) in enumerate(metrics):
    axes[k, 0].set_ylabel(label)
  if loss_ceiling is not None:
    losses = [grid[key].metrics["test_loss"].mean(axis=1) for key in grid if key[1] == mode]
    bottom = min(np.nanmin(np.where(np.isfinite(v), v, np.nan)) for v in losses)
    axes[0, 0].set_ylim(max(0.0, bottom - 0.1), loss_ceiling)
  axes[0, -1].legend(fontsize=8)
  fig.suptitle(title + "\ndotted: no regularisation; dashed: optimum")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


Prediction = Callable[[str, str, int, float], float | None]
"""``(scaling, mode, width, log10 lambda* of none) -> predicted log10 lambda*`` or ``None``."""


def plot_optimal_lambda(
  rows: Sequence[Row],
  widths: Sequence[int],
  scalings: Sequence[str],
  modes: Sequence[str],
  path: Path,
  title: str,
  prediction: Prediction | None = None,
) -> None:
  """The headline: optimal lambda against width, a line per scaling (flat = transfers)."""
  grid = regularised(rows)
  colours = scaling_colours(scalings)
  fig, axes = plt.subplots(2, len(modes), figsize=(max(5.5 * len(modes), 9), 8.5), squeeze=False)
  for j, mode in enumerate(modes):
    for scaling in scalings:
      opts = [optimum(grid[scaling, mode, w]) for w in widths]
      centre = np.array([o.log_lambda for o in opts])
      lo = np.array([o.seed_range[0] for o in opts])
      hi = np.array([o.seed_range[1] for o in opts])
      predicted = None
      if prediction is not None and "none" in scalings and scaling != "none":
        values = [
          prediction(scaling, mode, w, optimum(grid["none", mode, w]).log_lambda) for w in widths
        ]
        if all(v is not None for v in values):
          predicted = np.array(values)
      for k, ref in enumerate((0.0, centre[0])):
        ax = axes[k, j]
        (line,) = ax.plot(widths, 10 ** (centre - ref), "o-", color=colours[scaling], label=scaling)
        ax.fill_between(
          widths, 10 ** (lo - ref), 10 ** (hi - ref), color=line.get_color(), alpha=0.15, lw=0
        )
        if predicted is not None:
          ax.plot(widths, 10 ** (predicted - ref), "--", color=line.get_color())
        edge = [(w, c) for w, c, o in zip(widths, centre, opts, strict=True) if o.edge]
        if edge:
          ax.plot([w for w, _ in edge], [10 ** (c - ref) for _, c in edge], "x", color="k", ms=9)
    axes[0, j].set_title(f"{mode}: optimal lambda")
    axes[1, j].set_title(f"{mode}: relative to the narrowest width")
    axes[1, j].axhline(1.0, color="k", lw=0.8)
    for ax in axes[:, j]:
      ax.set_xscale("log", base=2)
      ax.set_yscale("log")
      ax.set_xticks(widths, [str(w) for w in widths])
      ax.set_xlabel("width")
      ax.grid(alpha=0.3, which="both")
      ax.legend(fontsize=8)
  axes[0, 0].set_ylabel("lambda*")
  axes[1, 0].set_ylabel("lambda*(w) / lambda*(narrowest)")
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
