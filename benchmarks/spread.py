"""Medians, ratios of paired samples, and confidence intervals of the median."""

import dataclasses
import math
import statistics
from collections.abc import Sequence


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
  """A distribution-free confidence interval of the median: two order statistics.

  ``[x_(k), x_(n+1-k)]`` with the largest ``k`` for which the chance that fewer
  than ``k`` of ``n`` samples fall below the median, ``P(Binomial(n, 1/2) < k)``,
  is at most ``(1 - confidence) / 2``. With fewer than 6 samples no such ``k``
  exists and the interval is the whole range.
  """
  ordered = sorted(values)
  n = len(ordered)
  below, k = 0.0, 0
  while k < n and below + math.comb(n, k) / 2**n <= (1 - confidence) / 2:
    below += math.comb(n, k) / 2**n
    k += 1
  k = max(k, 1)
  return ordered[k - 1], ordered[n - k]


@dataclasses.dataclass(frozen=True)
class Spread:
  """The median of a sample, its middle half and the 95% confidence interval of the median."""

  median: float
  low: float
  high: float
  interval: tuple[float, float]

  @classmethod
  def of(cls, values: Sequence[float]) -> "Spread":
    if len(values) < 2:
      return cls(values[0], values[0], values[0], (values[0], values[0]))
    low, _, high = statistics.quantiles(values, n=4, method="inclusive")
    return cls(statistics.median(values), low, high, median_interval(values))

  def ratio_text(self) -> str:
    low, high = self.interval
    return f"{self.median:.3f} [{low:.3f}, {high:.3f}]"


def paired(samples: dict[str, list[float]], a: str, b: str) -> Spread:
  """``a / b``: the ratios within each round, summarised."""
  return Spread.of([x / y for x, y in zip(samples[a], samples[b], strict=True)])
