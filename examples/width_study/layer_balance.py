"""How a ReLU MLP's penalty is shared among its kernels: the MLP study's own tables and figure.

Three questions of the lambda study (``examples/width_sweep.py``) that only an
MLP of fixed depth asks: how the mean square of each trained kernel follows
its fans (the init's ``2 / (n_in + n_out)`` or ``1 / n_in``), how unequal the
kernels' penalties ``s * ||W||^2`` are under each scaling, and how far the
rescaling symmetry of a ReLU network predicts the coupled optima.
"""

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib.ticker
import numpy as np

import optax_layer_l2 as ll2
from width_study.optimum import nearest_point, optimum
from width_study.plots import Prediction, plt, scaling_colours
from width_study.runs import Row, regularised, unregularised
from width_study.settings import LambdaSettings


@dataclasses.dataclass(frozen=True)
class Kernels:
  """The kernels of an MLP, in order from the input.

  Attributes:
    names: each kernel's layer, as in the parameters (``"Dense_0"``, its
      ``"kernel"``) and in the metrics ``ms_<name>``, the trained kernel's
      mean square.
    params: ``params(width)``, the shapes of every parameter of the model.
    labels: each kernel's shape in words, for the legend (``"40 -> w"``).
  """

  names: tuple[str, ...]
  params: Callable[[int], Any]
  labels: tuple[str, ...]

  def shapes(self, width: int) -> list[tuple[int, int]]:
    """``(n_in, n_out)`` of each kernel of the model of ``width``."""
    params = self.params(width)
    return [tuple(params[name]["kernel"].shape) for name in self.names]


def tables(rows: Sequence[Row], cfg: LambdaSettings, kernels: Kernels) -> list[str]:
  """The symmetry prediction of the coupled optima, the mean squares and the penalty spreads."""
  grid, base = regularised(rows), unregularised(rows)
  widths, scalings, modes = cfg.widths, cfg.scalings, cfg.modes
  lines: list[str] = []
  if "coupled" in modes and "none" in scalings:
    lines += [
      "",
      "Coupled: lambda* against the rescaling-symmetry prediction lambda*_none / geomean(s)",
      "(observed / predicted; see symmetry_prediction).",
    ]
    header = f"{'scaling':<12} " + " ".join(f"{f'w={w}':>17}" for w in widths)
    lines += [header, "-" * len(header)]
    for scaling in scalings:
      cells = []
      for w in widths:
        observed = optimum(grid[scaling, "coupled", w]).log_lambda
        none = optimum(grid["none", "coupled", w]).log_lambda
        predicted = symmetry_prediction(kernels, none, w, scaling, cfg.base_width())
        cells.append(f"{10**observed:.2g} / {10**predicted:.2g}".rjust(17))
      lines.append(f"{scaling:<12} " + " ".join(cells))
  lines += [
    "",
    "Mean square ms of the trained kernels (40->w, w->w, w->10; mean over seeds), times",
    "(n_in + n_out) and times n_in. Glorot init gives (n_in + n_out)*ms = 2, LeCun n_in*ms = 1.",
  ]
  header = f"{'width':>5} {'weights':<28} {'(n_in+n_out)*ms':>24} {'n_in*ms':>24}"
  lines += [header, "-" * len(header)]
  for w in widths:
    sources = [("unregularised", base[w])]
    for scaling in ("sqrt_fan_avg", "sqrt_fan_in"):
      if (scaling, "decoupled", w) in grid:
        sources.append((f"{scaling} decoupled optimum", grid[scaling, "decoupled", w]))
    for name, row in sources:
      ms = trained_mean_square(row, kernels)
      n_in, n_out = np.array(kernels.shapes(w)).T
      avg = " ".join(f"{v:7.2f}" for v in (n_in + n_out) * ms)
      inn = " ".join(f"{v:7.2f}" for v in n_in * ms)
      lines.append(f"{w:>5} {name:<28} {avg:>24} {inn:>24}")
  lines += [
    "",
    "How unequal is the per-layer penalty s*||W||^2 of the three kernels under each scaling",
    "(absolute factors, no base)? max / min over the kernels (1.0: every layer pays alike).",
    "Of the unregularised trained weights, and of the expected Glorot init (ms = 2/(n_in+n_out)).",
  ]
  header = f"{'penalty measured by':<32} " + " ".join(f"{f'w={w}':>7}" for w in widths)
  lines += [header, "-" * len(header)]
  for source in ("unregularised", "Glorot init"):
    for scaling in ll2.SCALINGS:
      cells = []
      for w in widths:
        if source == "Glorot init":
          ms = np.array([2 / (a + b) for a, b in kernels.shapes(w)])
        else:
          ms = trained_mean_square(base[w], kernels)
        cells.append(f"{penalty_spread(kernels, ms, w, scaling, None):7.1f}")
      lines.append(f"{f'{scaling}, {source}':<32} " + " ".join(cells))
  lines += [
    "",
    "The same spread at each (scaling, mode)'s optimum, measured by the factors it trained with.",
  ]
  header = f"{'optimum of':<32} " + " ".join(f"{f'w={w}':>7}" for w in widths)
  lines += [header, "-" * len(header)]
  for mode in modes:
    for scaling in scalings:
      cells = []
      for w in widths:
        ms = trained_mean_square(grid[scaling, mode, w], kernels)
        cells.append(f"{penalty_spread(kernels, ms, w, scaling, cfg.base_width()):7.1f}")
      lines.append(f"{f'{scaling} {mode}':<32} " + " ".join(cells))
  return lines


def trained_mean_square(row: Row, kernels: Kernels) -> np.ndarray:
  """Seed-mean mean square of each kernel, at the grid point nearest the optimum."""
  i = nearest_point(row)
  return np.array([row.metrics[f"ms_{layer}"][i].mean() for layer in kernels.names])


def kernel_factors(
  kernels: Kernels, width: int, scaling: str, base_width: int | None
) -> np.ndarray:
  """The factor ``s`` of each kernel, from ``ll2.scales`` (shapes are enough)."""
  base = None if base_width is None else kernels.params(base_width)
  factors = ll2.scales(kernels.params(width), scaling, base=base)
  return np.array([factors[layer]["kernel"] for layer in kernels.names])


def penalty_spread(
  kernels: Kernels, ms: np.ndarray, width: int, scaling: str, base_width: int | None
) -> float:
  """max / min over the kernels of ``s * ||W||^2``."""
  numel = np.array([a * b for a, b in kernels.shapes(width)])
  per_layer = kernel_factors(kernels, width, scaling, base_width) * numel * ms
  return float(per_layer.max() / per_layer.min())


def symmetry_prediction(
  kernels: Kernels, none_log_lambda: float, width: int, scaling: str, base_width: int | None
) -> float:
  """log10 of the lambda that matches plain L2's ``10**none_log_lambda`` in a ReLU MLP.

  Scaling kernel ``l`` by ``a_l`` (and the biases along) with ``prod(a_l) = 1``
  leaves a ReLU MLP's function unchanged, and minimising
  ``sum_l s_l ||W_l||^2`` over those rescalings leaves
  ``L * prod(s_l)**(1/L) * prod(||W_l||^2)**(1/L)``. So the penalised problems of
  ``(lambda, s)`` and of plain L2 with ``lambda * prod(s_l)**(1/L)`` have the
  same minimisers up to rescaling: only the geometric mean of the factors counts.
  """
  factors = kernel_factors(kernels, width, scaling, base_width)
  return none_log_lambda - float(np.mean(np.log10(factors)))


def plot_mean_square(
  rows: Sequence[Row], cfg: LambdaSettings, kernels: Kernels, init: str, path: Path
) -> None:
  """Trained mean square per layer against 1/(n_in + n_out) and against 1/n_in.

  Rows of panels: the unregularised networks, then each mode at the optima of
  ``none``, ``sqrt_fan_in`` and ``sqrt_fan_avg`` (the others are in the printed tables).
  Each width's three kernels are joined by a thin line: a line parallel to
  ``ms = x`` means the three layers pay the same penalty under the scaling of
  that column (``fan_avg`` on the left, fan-in scale on the right).
  """
  grid, base = regularised(rows), unregularised(rows)
  markers = dict(zip(kernels.names, ("o", "s", "^"), strict=True))
  colours = scaling_colours(cfg.scalings)
  shown = [s for s in ("none", "sqrt_fan_in", "sqrt_fan_avg") if s in cfg.scalings]
  panels = [("unregularised", [("unregularised", None)])]
  panels += [(f"{m}, at each optimum", [(s, (s, m)) for s in shown]) for m in cfg.modes]
  fig, axes = plt.subplots(
    len(panels), 2, figsize=(12, 4.6 * len(panels)), squeeze=False, sharex="col", sharey=True
  )
  xs_all = []
  for r, (_, sources) in enumerate(panels):
    for name, key in sources:
      colour = "k" if key is None else colours[name]
      for w in cfg.widths:
        ms = trained_mean_square(base[w] if key is None else grid[(*key, w)], kernels)
        for c, fan in enumerate((lambda a, b: 1 / (a + b), lambda a, b: 1 / a)):
          xs = np.array([fan(a, b) for a, b in kernels.shapes(w)])
          xs_all += list(xs)
          order = np.argsort(xs)
          axes[r, c].plot(xs[order], ms[order], "-", color=colour, lw=0.7, alpha=0.6)
          for x, m, layer in zip(xs, ms, kernels.names, strict=True):
            axes[r, c].scatter(x, m, marker=markers[layer], s=28, color=colour)
  ref = np.array([min(xs_all) / 1.3, max(xs_all) * 1.3])
  for r, (title, _) in enumerate(panels):
    for c, label in enumerate(("1 / (n_in + n_out)", "1 / n_in")):
      ax = axes[r, c]
      ax.plot(ref, ref, "k-", lw=0.8)
      ax.plot(ref, 2 * ref, "k--", lw=0.8)
      ax.set_xscale("log")
      ax.set_yscale("log")
      ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
      ax.set_xlabel(label)
      ax.set_title(f"{title}: mean square against {label}", fontsize=10)
      ax.grid(alpha=0.3, which="both")
    axes[r, 0].set_ylabel("mean square of trained kernel")
  reading = {
    "glorot": "Glorot init: ms = 2 x on the left",
    "lecun": "LeCun init: ms = x on the right",
  }
  handles = [plt.Line2D([], [], color="k", marker="o", ls="", label="unregularised")]
  handles += [
    plt.Line2D([], [], color=colours[s], marker="o", ls="", label=f"{s} at its optimum")
    for s in shown
  ]
  handles += [
    plt.Line2D([], [], color="gray", marker=m, ls="", label=f"{layer}: {shape}")
    for (layer, m), shape in zip(markers.items(), kernels.labels, strict=True)
  ]
  handles += [
    plt.Line2D([], [], color="k", lw=0.8, label="ms = x"),
    plt.Line2D([], [], color="k", lw=0.8, ls="--", label="ms = 2 x"),
  ]
  fig.legend(handles=handles, fontsize=8, loc="lower center", ncol=5)
  fig.suptitle(
    f"Mean square of trained kernels, widths {', '.join(map(str, cfg.widths))} "
    f"({reading[init]})\nthin lines join one width's three layers"
  )
  fig.tight_layout(rect=(0, 0.05, 1, 1))
  fig.savefig(path, dpi=110)
  plt.close(fig)


def coupled_prediction(kernels: Kernels, base_width: int | None) -> Prediction:
  """:func:`symmetry_prediction` for the coupled mode, as the optimal-lambda figure draws it."""

  def predict(scaling: str, mode: str, width: int, none_log_lambda: float) -> float | None:
    if mode != "coupled":
      return None
    return symmetry_prediction(kernels, none_log_lambda, width, scaling, base_width)

  return predict
