"""Loss curves over lambda, the optimal lambda against width, and a joint study's planes.

:func:`plot_joint_study` and :func:`plot_lambda_study` draw every figure of a study.
"""

from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib
import numpy as np

from width_study.lattice import Lattice
from width_study.optimum import optimum
from width_study.runs import Row, joint_rows, regularised, unregularised
from width_study.settings import JointSettings, LambdaSettings
from width_study.transfer import JointGrid, Transfer, losses, transfers

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


# --- joint studies ------------------------------------------------------------------------------


def plot_planes(
  grid: JointGrid,
  lattice: Lattice,
  found: dict[tuple[str, int], Transfer],
  widths: Sequence[int],
  recipes: Sequence[str],
  path: Path,
  title: str,
  span: float = 0.3,
  unit: str = "test loss",
) -> None:
  """Each recipe's loss over the (learning rate, lambda) plane: a row a recipe, a column a width.

  A cell is a trained lattice point, coloured by its seed-mean loss minus the
  best loss of any recipe at that width (``span`` and above: the lightest).
  Star: the base width's tuned pair, reused at every width; circle: the
  recipe's own best point at that width; cross: its refined optimum.
  """
  base = found[recipes[0], widths[0]].optimum.best
  fig, axes = plt.subplots(
    len(recipes),
    len(widths),
    figsize=(3.3 * len(widths) + 1.2, 2.9 * len(recipes) + 0.8),
    squeeze=False,
    sharex=True,
    sharey=True,
  )
  step = 1 / lattice.per_decade
  image = None
  for c, width in enumerate(widths):
    best_any = min(found[r, width].optimum.best_loss for r in recipes)
    for r, recipe in enumerate(recipes):
      ax = axes[r, c]
      values = {p: float(v.mean()) for p, v in losses(grid[recipe, width], lattice).items()}
      points = np.array(list(values))
      i0, j0 = points.min(axis=0)
      i1, j1 = points.max(axis=0)
      cells = np.full((j1 - j0 + 1, i1 - i0 + 1), np.nan)
      for (i, j), v in values.items():
        cells[j - j0, i - i0] = v - best_any
      x = lattice.rate_at + (np.arange(i0, i1 + 2) - 0.5) * step
      y = lattice.lambda_at + (np.arange(j0, j1 + 2) - 0.5) * step
      image = ax.pcolormesh(
        x, y, np.ma.masked_invalid(cells), cmap="viridis", vmin=0.0, vmax=span, shading="flat"
      )
      for (i, j), v in values.items():
        log_rate, log_lambda = (np.log10(value) for value in lattice.pair((i, j)))
        gap = v - best_any
        colour = "w" if gap < 0.6 * span else "k"
        ax.text(
          log_rate, log_lambda, f"{gap:.2f}", ha="center", va="center", fontsize=6, color=colour
        )
      o = found[recipe, width].optimum
      ax.plot(*np.log10(lattice.pair(base)), marker="*", ms=13, mfc="none", mec="red", mew=1.5)
      ax.plot(*np.log10(lattice.pair(o.best)), marker="o", ms=11, mfc="none", mec="orange", mew=1.5)
      ax.plot(o.log_rate, o.log_lambda, marker="x", ms=7, color="orange")
      ax.grid(alpha=0.2)
      if r == 0:
        ax.set_title(f"w={width}")
      if c == 0:
        ax.set_ylabel(f"{recipe}\nlog10 lambda")
      if r == len(recipes) - 1:
        ax.set_xlabel("log10 learning rate")
  if image is not None:
    fig.colorbar(image, ax=axes, shrink=0.6, label=f"{unit} minus the best at that width")
  fig.suptitle(
    title + "\nstar: the base width's tuned pair; circle: the best point; x: refined optimum"
  )
  fig.savefig(path, dpi=100, bbox_inches="tight")
  plt.close(fig)


def plot_joint_optima(
  found: dict[tuple[str, int], Transfer],
  widths: Sequence[int],
  recipes: Sequence[str],
  path: Path,
  title: str,
  unit: str = "test loss",
) -> None:
  """The tuned learning rate, the tuned lambda and the transfer regret against width."""
  colours = scaling_colours(recipes)
  fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
  for recipe in recipes:
    rows = [found[recipe, w] for w in widths]
    style = {"color": colours[recipe], "label": recipe}
    axes[0].plot(widths, [10**t.optimum.log_rate for t in rows], "o-", **style)
    axes[1].plot(widths, [10**t.optimum.log_lambda for t in rows], "o-", **style)
    axes[2].plot(widths, [t.regret for t in rows], "o-", **style)
    lo = [t.regret_range[0] for t in rows]
    hi = [t.regret_range[1] for t in rows]
    axes[2].fill_between(widths, lo, hi, color=colours[recipe], alpha=0.12, lw=0)
  for ax, label in zip(
    axes, ("tuned learning rate", "tuned lambda", f"transfer regret ({unit})"), strict=True
  ):
    ax.set_xscale("log", base=2)
    ax.set_xticks(widths, [str(w) for w in widths])
    ax.set_xlabel("width")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3, which="both")
  axes[0].set_yscale("log")
  axes[1].set_yscale("log")
  axes[2].axhline(0.0, color="k", lw=0.8)
  axes[0].legend(fontsize=8)
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_joint_study(
  rows: Sequence[Row],
  cfg: JointSettings,
  out: Path,
  titles: tuple[str, str],
  unit: str = "test loss",
  span: float = 0.3,
) -> None:
  """A joint study's figures, ``planes.png`` and ``joint_optima.png``, into ``out``."""
  grid = joint_rows(rows)
  found = transfers(grid, cfg.lattice(), cfg.widths, cfg.recipes)
  planes, optima = titles
  plot_planes(
    grid, cfg.lattice(), found, cfg.widths, cfg.recipes, out / "planes.png", planes, span, unit
  )
  plot_joint_optima(found, cfg.widths, cfg.recipes, out / "joint_optima.png", optima, unit)


def plot_lambda_study(
  rows: Sequence[Row],
  cfg: LambdaSettings,
  out: Path,
  curves: tuple[str, str],
  metrics: Sequence[tuple[str, str, float]],
  optimal_title: str,
  loss_ceiling: float | None = None,
  prediction: Prediction | None = None,
) -> None:
  """A lambda study's figures into ``out``: the curves of each mode and ``optimal_lambda.png``.

  ``curves`` holds the file name and the title of a mode's curves of
  ``metrics`` (see :func:`plot_curves`), each with ``{mode}`` where the mode goes.
  """
  for mode in cfg.modes:
    name, title = (text.format(mode=mode) for text in curves)
    plot_curves(
      rows, cfg.widths, cfg.scalings, mode, out / name, title, loss_ceiling, metrics=metrics
    )
  path = out / "optimal_lambda.png"
  plot_optimal_lambda(rows, cfg.widths, cfg.scalings, cfg.modes, path, optimal_title, prediction)
