"""The (learning rate, lambda) lattice of a joint study, and the search that walks it.

A joint study tunes two numbers at once. Training a full two-dimensional grid
at every width and for every recipe costs more than two CPU cores have, and
most of it would sit far from any optimum. So the study trains points of one
log-spaced lattice, shared by every width and recipe: a full box at the base
width, then, at each wider width and for each recipe, the 3 x 3 window around
the base's tuned pair, walking on while the best point found has an untrained
neighbour. Every reported optimum is therefore surrounded by trained points
(unless the walk ran out of moves, which the tables mark), and the base's
tuned pair is a trained point at every width, so what reusing it costs is a
measured loss, not an interpolation.
"""

import dataclasses
from collections.abc import Callable, Iterable, Sequence

import numpy as np

Point = tuple[int, int]
"""Lattice indices ``(i, j)`` of a ``(learning rate, lambda)`` pair."""


@dataclasses.dataclass(frozen=True)
class Lattice:
  """Log-spaced pairs: point ``(i, j)`` is ``(learning rate, lambda)`` =
  ``(10**(rate_at + i / per_decade), 10**(lambda_at + j / per_decade))``."""

  rate_at: float  # log10 of the learning rate at i = 0
  lambda_at: float  # log10 of lambda at j = 0
  per_decade: int = 3

  def pair(self, point: Point) -> tuple[float, float]:
    """The ``(learning rate, lambda)`` of a lattice point."""
    i, j = point
    return 10 ** (self.rate_at + i / self.per_decade), 10 ** (self.lambda_at + j / self.per_decade)

  def point(self, rate: float, weight_decay: float) -> Point:
    """The lattice point of a trained pair (its values as written to ``runs.csv``)."""
    i = round((np.log10(rate) - self.rate_at) * self.per_decade)
    j = round((np.log10(weight_decay) - self.lambda_at) * self.per_decade)
    return int(i), int(j)

  def box(self, log_rates: tuple[float, float], log_lambdas: tuple[float, float]) -> list[Point]:
    """Every lattice point whose log10 rate and log10 lambda lie in the two ranges."""
    lo_i, hi_i = (round((x - self.rate_at) * self.per_decade) for x in log_rates)
    lo_j, hi_j = (round((x - self.lambda_at) * self.per_decade) for x in log_lambdas)
    return [(i, j) for i in range(lo_i, hi_i + 1) for j in range(lo_j, hi_j + 1)]


def window(centre: Point, radius: int = 1) -> list[Point]:
  """The ``(2 radius + 1)**2`` points around ``centre``, itself included."""
  i, j = centre
  steps = range(-radius, radius + 1)
  return [(i + di, j + dj) for di in steps for dj in steps]


Results = dict[Point, dict[str, np.ndarray]]
"""Per trained point, each metric over the seeds (shape ``(seeds,)``)."""


def best_point(results: Results, metric: str = "test_loss") -> Point:
  """The trained point of the lowest seed-mean ``metric`` (NaN counts as worst)."""
  means = {p: float(np.mean(m[metric])) for p, m in results.items()}
  return min(means, key=lambda p: (np.inf if not np.isfinite(means[p]) else means[p], p))


@dataclasses.dataclass
class Search:
  """What :func:`search` trained and where it stopped."""

  results: Results
  moves: int  # how many times the window moved after the start
  settled: bool  # the best point's 8 neighbours are all trained


def search(
  train: Callable[[Sequence[Point]], dict[str, np.ndarray]],
  start: Iterable[Point],
  max_moves: int,
  metric: str = "test_loss",
  results: Results | None = None,
) -> Search:
  """Trains ``start``, then the untrained neighbours of the best point, until it has none.

  ``train(points)`` returns each metric with shape ``(len(points), seeds)``.
  After ``start`` (and whatever ``results`` already holds), each move trains
  the 3 x 3 window around the current best point where it is untrained; the
  search stops when that window is complete (``settled``) or after
  ``max_moves`` moves.
  """
  results = dict(results or {})
  todo = [p for p in dict.fromkeys(start) if p not in results]
  moves = 0
  while True:
    if todo:
      out = train(todo)
      for k, point in enumerate(todo):
        results[point] = {name: np.asarray(values[k]) for name, values in out.items()}
    todo = [p for p in window(best_point(results, metric)) if p not in results]
    if not todo:
      return Search(results, moves, settled=True)
    if moves == max_moves:
      return Search(results, moves, settled=False)
    moves += 1


def quadratic_vertex(values: np.ndarray) -> tuple[float, float] | None:
  """The minimiser of the quadratic fitted to a 3 x 3 block, in steps from its centre.

  ``values[a, b]`` is the loss at offset ``(a - 1, b - 1)``. Least squares on
  ``f = c0 + c1 x + c2 y + c3 x^2 + c4 y^2 + c5 x y``; ``None`` when the fit
  has no minimum (a Hessian that is not positive definite, or flat in a
  direction to within rounding) or the block holds a non-finite value. The
  vertex is clipped to the block.
  """
  if values.shape != (3, 3) or not np.isfinite(values).all():
    return None
  x, y = (g.ravel() for g in np.meshgrid([-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0], indexing="ij"))
  design = np.stack([np.ones(9), x, y, x * x, y * y, x * y], axis=1)
  c = np.linalg.lstsq(design, values.ravel(), rcond=None)[0]
  hessian = np.array([[2 * c[3], c[5]], [c[5], 2 * c[4]]])
  # Positive definite beyond the rounding of the fit: a curvature of 1e-17 is a flat direction.
  curvatures = np.linalg.eigvalsh(hessian)
  if curvatures.min() <= 1e-9 * np.abs(curvatures).max():
    return None
  dx, dy = np.linalg.solve(hessian, -c[1:3])
  return float(np.clip(dx, -1, 1)), float(np.clip(dy, -1, 1))


def refined(lattice: Lattice, values: dict[Point, float]) -> tuple[float, float, Point, bool]:
  """The optimum of one loss surface: ``(log10 rate, log10 lambda, best point, refined)``.

  The best trained point, moved to the vertex of the quadratic through its 3 x 3
  neighbourhood where that neighbourhood is trained and the fit has a minimum;
  otherwise the best point itself (``refined`` is then False).
  """
  finite = {p: v for p, v in values.items() if np.isfinite(v)}
  best = min(finite, key=lambda p: (finite[p], p)) if finite else min(values)
  block = np.array(
    [[values.get((best[0] + a, best[1] + b), np.nan) for b in (-1, 0, 1)] for a in (-1, 0, 1)]
  )
  vertex = quadratic_vertex(block)
  dx, dy = (0.0, 0.0) if vertex is None else vertex
  log_rate = lattice.rate_at + (best[0] + dx) / lattice.per_decade
  log_lambda = lattice.lambda_at + (best[1] + dy) / lattice.per_decade
  return log_rate, log_lambda, best, vertex is not None
