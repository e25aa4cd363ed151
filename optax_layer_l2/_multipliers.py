"""A different ``weight_decay`` per layer: the ``multipliers`` argument."""

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from optax_layer_l2._scaling import checked_factor

MultiplierFn: TypeAlias = Callable[[str, Any], float]
Multipliers: TypeAlias = Mapping[str, float] | MultiplierFn


def resolve_multipliers(multipliers: Multipliers | None) -> MultiplierFn:
  """``multipliers`` as a callable ``(path, leaf) -> float``.

  A mapping goes from regular expression to multiplier; the first pattern
  (in the mapping's order) that ``re.search``es a leaf's path wins, and a leaf
  that no pattern matches keeps multiplier 1. Patterns and values are checked
  here, when the transformation is built.
  """
  if multipliers is None:
    return lambda path, leaf: 1.0
  if isinstance(multipliers, Mapping):
    rules = []
    for pattern, value in multipliers.items():
      if not isinstance(pattern, str):
        raise TypeError(f"`multipliers` keys must be regular-expression strings, got {pattern!r}.")
      try:
        compiled = re.compile(pattern)
      except re.error as error:
        raise ValueError(
          f"`multipliers[{pattern!r}]`: not a regular expression ({error})."
        ) from None
      if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"`multipliers[{pattern!r}]` must be a number, got {value!r}.")
      if not math.isfinite(value) or value < 0:
        raise ValueError(
          f"`multipliers[{pattern!r}]` is {value!r}; it must be finite and non-negative."
        )
      rules.append((compiled, float(value)))

    def from_patterns(path: str, leaf: Any) -> float:
      del leaf
      for compiled, value in rules:
        if compiled.search(path):
          return value
      return 1.0

    return from_patterns
  if callable(multipliers):
    return lambda path, leaf: checked_factor(multipliers(path, leaf), "multipliers", path)
  raise TypeError(
    "`multipliers` must be a mapping from regular expression to float, or a "
    f"callable `(path, leaf) -> float`, got {multipliers!r}."
  )
