"""What a joint study found: each recipe's tuned pair per width, its drift, and its regret.

* The **tuned pair** of a recipe at a width is the ``(learning rate, lambda)``
  of its lowest seed-mean loss, refined by a quadratic through the 3 x 3
  lattice points around it; the **drift** is how far, in decades, it moved
  from the base width's.
* The **transfer regret** at a width is the loss there with the base width's
  best lattice pair (what a user who tuned at the base would run) minus the
  best loss that any recipe reached at that width. Both are trained points,
  so it is measured, not interpolated; the per-seed range compares the same
  two points seed by seed.
* The **quality** of a recipe at a width is its own best loss there minus the
  best of any recipe: what tuning it at the target width would reach.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np

from width_study.lattice import Lattice, Point, refined
from width_study.runs import Row

JointGrid = dict[tuple[str, int], Row]
"""A joint study's rows by ``(recipe, width)`` (:func:`width_study.runs.joint_rows`)."""


def losses(row: Row, lattice: Lattice, metric: str = "test_loss") -> dict[Point, np.ndarray]:
  """Each trained point's ``metric`` over the seeds, by lattice point."""
  assert row.rates is not None, "not a joint study's row"
  return {
    lattice.point(rate, lam): row.metrics[metric][k]
    for k, (rate, lam) in enumerate(zip(row.rates, row.lambdas, strict=True))
  }


@dataclasses.dataclass(frozen=True)
class JointOptimum:
  """The tuned pair of one recipe at one width."""

  log_rate: float  # log10 of the learning rate, refined from the seed-mean loss
  log_lambda: float
  best: Point  # the lattice point of the lowest seed-mean loss
  best_loss: float  # its seed-mean loss
  refined: bool  # the 3 x 3 neighbourhood was trained and the quadratic had a minimum
  seed_rates: tuple[float, float]  # min and max of the per-seed refined log10 rates
  seed_lambdas: tuple[float, float]


def joint_optimum(row: Row, lattice: Lattice, metric: str = "test_loss") -> JointOptimum:
  """The tuned pair of a row, from the seed-mean loss and from each seed's."""
  values = losses(row, lattice, metric)
  log_rate, log_lambda, best, ok = refined(lattice, {p: float(v.mean()) for p, v in values.items()})
  seeds = [
    refined(lattice, {p: float(v[s]) for p, v in values.items()})
    for s in range(row.metrics[metric].shape[1])
  ]
  rates = [s[0] for s in seeds]
  lambdas = [s[1] for s in seeds]
  return JointOptimum(
    log_rate,
    log_lambda,
    best,
    float(values[best].mean()),
    ok,
    (min(rates), max(rates)),
    (min(lambdas), max(lambdas)),
  )


@dataclasses.dataclass(frozen=True)
class Transfer:
  """What reusing the base width's tuned pair costs one recipe at one width."""

  recipe: str
  width: int
  optimum: JointOptimum
  drift_rate: float  # decades the tuned learning rate moved from the base width's
  drift_lambda: float
  reused_loss: float  # seed-mean loss at the base width's best pair
  regret: float  # reused_loss minus the best loss of any recipe at this width
  regret_range: tuple[float, float]  # the same difference, seed by seed
  own_regret: float  # reused_loss minus this recipe's own best loss here
  quality: float  # this recipe's best loss minus the best of any recipe here


def transfers(
  grid: JointGrid,
  lattice: Lattice,
  widths: Sequence[int],
  recipes: Sequence[str],
  metric: str = "test_loss",
) -> dict[tuple[str, int], Transfer]:
  """A :class:`Transfer` for every recipe and width (the base width included)."""
  base = joint_optimum(grid[recipes[0], widths[0]], lattice, metric)
  out = {}
  for width in widths:
    optima = {r: joint_optimum(grid[r, width], lattice, metric) for r in recipes}
    winner = min(recipes, key=lambda r: optima[r].best_loss)
    best_any = optima[winner].best_loss
    best_seeds = losses(grid[winner, width], lattice, metric)[optima[winner].best]
    for recipe in recipes:
      o = optima[recipe]
      reused = losses(grid[recipe, width], lattice, metric).get(base.best)
      reused_mean = np.nan if reused is None else float(reused.mean())
      per_seed = (np.full(1, np.nan) if reused is None else reused) - best_seeds
      out[recipe, width] = Transfer(
        recipe,
        width,
        o,
        drift_rate=o.log_rate - base.log_rate,
        drift_lambda=o.log_lambda - base.log_lambda,
        reused_loss=reused_mean,
        regret=reused_mean - best_any,
        regret_range=(float(np.min(per_seed)), float(np.max(per_seed))),
        own_regret=reused_mean - o.best_loss,
        quality=o.best_loss - best_any,
      )
  return out
