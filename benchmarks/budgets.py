"""The SPEC's performance budgets, and the verdict of a run against each."""

import dataclasses
from collections.abc import Sequence

from benchmarks.markdown import table


@dataclasses.dataclass(frozen=True)
class Budget:
  """A limit from the SPEC on one measured quantity."""

  what: str
  relation: str  # "<=", ">=" or "=="
  limit: float
  digits: int = 3

  def passes(self, value: float) -> bool:
    if self.relation == "<=":
      return value <= self.limit
    if self.relation == ">=":
      return value >= self.limit
    return value == self.limit

  def text(self) -> str:
    return f"{self.relation} {self.limit:g}"

  def verdict(self, value: float) -> str:
    return "PASS" if self.passes(value) else "MISS"

  def could_pass(self, interval: tuple[float, float] | None) -> bool:
    """Whether a value in ``interval``, the 95% confidence interval, would pass."""
    if interval is None:
      return False
    low, high = interval
    return self.passes(low) or self.passes(high) or low <= self.limit <= high

  def worst(self, values: Sequence[float]) -> float:
    if self.relation == "<=":
      return max(values)
    if self.relation == ">=":
      return min(values)
    return next((v for v in values if v != self.limit), values[0])


BUDGETS = {
  "step_decayed": Budget(
    "Train step, `layer_l2` + adam / `add_decayed_weights` + adam (masked alike)", "<=", 1.02
  ),
  "step_adam": Budget("Train step, `layer_l2` + adam / plain `adam`", "<=", 1.03),
  "step_adamw": Budget("Train step, `layer_adamw` / `adamw` (masked alike)", "<=", 1.02),
  "update_decayed": Budget("Update alone, `layer_l2` / `add_decayed_weights`", "<=", 1.02),
  "update_roofline": Budget("Update alone, `layer_l2` bytes/s / `p + a * g` bytes/s", ">=", 0.80),
  "compile": Budget(
    "Trace + compile, `layer_l2` / `add_decayed_weights`, at 1,000 leaves", "<=", 1.25
  ),
  "linear": Budget(
    "Trace of `layer_l2`'s update, most / least time per leaf, from 100 leaves up", "<=", 2.0
  ),
  "state_constant": Budget("Optimizer state of `layer_l2`, constant `weight_decay`", "==", 0, 0),
  "state_schedule": Budget("Optimizer state of `layer_l2`, scheduled `weight_decay`", "==", 4, 0),
  "memory": Budget("Peak memory of the jitted step, `layer_l2` / `add_decayed_weights`", "<=", 1.0),
  "program": Budget(
    "Compiled train step of `layer_l2` + adam the same as `add_decayed_weights` + adam's, "
    "but for constants (1 = yes; `layer_adamw` against `adamw`)",
    "==",
    1,
    0,
  ),
}


class Verdicts:
  """Every measured value that a budget applies to, by budget."""

  def __init__(self) -> None:
    self.values: dict[str, list[float]] = {key: [] for key in BUDGETS}
    self.intervals: dict[str, list[tuple[float, float] | None]] = {key: [] for key in BUDGETS}

  def check(self, key: str, value: float, interval: tuple[float, float] | None = None) -> str:
    """Records ``value`` (and its 95% interval) under budget ``key``; returns ``'<= 1.02 PASS'``."""
    self.values[key].append(value)
    self.intervals[key].append(interval)
    budget = BUDGETS[key]
    return f"{budget.text()} {budget.verdict(value)}"

  def summary(self) -> str:
    rows = []
    for key, budget in BUDGETS.items():
      values = self.values[key]
      if not values:
        rows.append([budget.what, "not measured", budget.text(), "MISS"])
        continue
      worst = budget.worst(values)
      passed = sum(budget.passes(v) for v in values)
      missed = [i for v, i in zip(values, self.intervals[key], strict=True) if not budget.passes(v)]
      noise = "; every miss within noise" if missed and all(map(budget.could_pass, missed)) else ""
      rows.append(
        [
          budget.what,
          f"{worst:.{budget.digits}f}" + (f" (worst of {len(values)})" if len(values) > 1 else ""),
          budget.text(),
          f"{budget.verdict(worst)} ({passed}/{len(values)} pass{noise})",
        ]
      )
    return table(["budget", "measured", "limit", "result"], rows)
