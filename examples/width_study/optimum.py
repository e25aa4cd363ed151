"""The optimal lambda of a grid row, and what reusing another width's costs."""

import dataclasses

import numpy as np

from width_study.grid import UNREGULARISED
from width_study.runs import Row


def refined_argmin(log_lambdas: np.ndarray, values: np.ndarray) -> tuple[float, int]:
  """The minimiser of ``values`` over the grid, refined by a parabola in log10(lambda).

  The parabola passes through the lowest grid point and its two neighbours; its
  vertex then lies within half a grid step of that point. At an edge of the
  grid there is no refinement. Returns ``(log10 lambda*, index of the lowest
  grid point)``; an index of 0 or ``len - 1`` means the grid may be too narrow.
  """
  values = np.where(np.isfinite(values), values, np.inf)
  i = int(np.argmin(values))
  if i == 0 or i == len(values) - 1 or not np.isfinite(values[i - 1 : i + 2]).all():
    return float(log_lambdas[i]), i
  f0, f1, f2 = values[i - 1 : i + 2]
  step = log_lambdas[i + 1] - log_lambdas[i]
  curvature = f0 - 2 * f1 + f2
  offset = 0.0 if curvature <= 0 else 0.5 * step * (f0 - f2) / curvature
  return float(log_lambdas[i] + offset), i


@dataclasses.dataclass(frozen=True)
class Optimum:
  """The optimal lambda of one grid row."""

  log_lambda: float  # from the seed-mean test loss, refined
  seed_range: tuple[float, float]  # min and max of the per-seed refined optima
  edge: str  # "low" / "high": the lowest mean loss is at that end of the grid; else ""
  acc_at_optimum: float  # seed-mean test accuracy at the grid point nearest the optimum
  best_acc: float  # the best seed-mean test accuracy over the grid


def optimum(row: Row, metric: str = "test_loss") -> Optimum:
  """The optimum of a row: lowest seed-mean ``metric``, parabolic refinement."""
  log_lambdas = np.log10(row.lambdas)
  loss = row.metrics[metric]
  mean = loss.mean(axis=1)
  log_opt, i = refined_argmin(log_lambdas, mean)
  per_seed = [refined_argmin(log_lambdas, loss[:, s])[0] for s in range(loss.shape[1])]
  acc = row.metrics.get("test_acc", np.full_like(loss, np.nan)).mean(axis=1)
  return Optimum(
    log_lambda=log_opt,
    seed_range=(min(per_seed), max(per_seed)),
    edge="low" if i == 0 else "high" if i == len(log_lambdas) - 1 else "",
    acc_at_optimum=float(acc[i]),
    best_acc=float(np.nanmax(acc)) if np.isfinite(acc).any() else float("nan"),
  )


def transfer_cost(tuned: Row, target: Row, metric: str = "test_loss") -> tuple[float, float]:
  """What reusing ``tuned``'s optimal lambda on ``target`` costs, against retuning.

  Returns the increase in seed-mean ``metric`` and the change in seed-mean test
  accuracy (percentage points; NaN where there is none) of ``target`` at the
  lambda that is optimal for ``tuned``, against ``target`` at its own optimum;
  both read off ``target``'s curves, linear in log10 lambda, so equal optima
  cost exactly nothing. A reused lambda beyond ``target``'s grid is read at
  the grid's edge, which understates the cost; the tables mark such optima.
  """
  x = np.log10(target.lambdas)
  loss = target.metrics[metric].mean(axis=1)
  reused, own = optimum(tuned, metric).log_lambda, optimum(target, metric).log_lambda
  loss_cost = float(np.interp(reused, x, loss) - np.interp(own, x, loss))
  if "test_acc" not in target.metrics:
    return loss_cost, float("nan")
  acc = 100 * target.metrics["test_acc"].mean(axis=1)
  return loss_cost, float(np.interp(reused, x, acc) - np.interp(own, x, acc))


def nearest_point(row: Row, metric: str = "test_loss") -> int:
  """The index of the grid point nearest the row's optimum (0 in an unregularised row)."""
  if row.mode == UNREGULARISED[1]:
    return 0
  return int(np.argmin(np.abs(np.log10(row.lambdas) - optimum(row, metric).log_lambda)))
