"""The base width's rows, trained once and shared: what each optimizer is there, and the check.

Relative to the base model (``base=``) every decay scaling and every
learning-rate scaling has the factor 1 at the base width itself. So there
every recipe of a joint study is plain AdamW, and every scaling of a lambda
study in one mode is plain L2: the drivers train the base width once and
give its rows to all of them. That holds only while each of them really
builds that optimizer and starts from those weights at the base. A recipe
that did not (an absolute factor, an init rescaled unlike the base's) would
silently inherit rows that are not its own, so the drivers compare what each
one trains at the base, :class:`AtBase`, before they share.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

import optax_layer_l2 as ll2

PLAIN_INIT = "the architecture's init"
"""The ``init`` of an :class:`AtBase` whose initial weights are not transformed."""


@dataclasses.dataclass(frozen=True)
class AtBase:
  """What one optimizer trains at the base width, enough to tell two apart.

  Attributes:
    factors: each leaf's ``(path, s, r)``: its decay factor ``s`` (0 when it
      is not decayed) and its learning-rate factor ``r`` (1 without rate
      factors). With Adam's settings fixed, they decide the optimizer.
    init: how the initial weights differ from the architecture's, in words
      (:data:`PLAIN_INIT` when they do not).
  """

  factors: tuple[tuple[str, float, float], ...]
  init: str = PLAIN_INIT

  def difference(self, other: "AtBase") -> str | None:
    """Where ``self`` differs from ``other``, in words; ``None`` when it does not."""
    if self.init != other.init:
      return f"its initial weights: {self.init}, not {other.init}"
    mine = {path: (s, r) for path, s, r in self.factors}
    theirs = {path: (s, r) for path, s, r in other.factors}
    for path in sorted(mine.keys() | theirs.keys()):
      if mine.get(path) != theirs.get(path):
        (s, r), (s0, r0) = mine.get(path, (None, None)), theirs.get(path, (None, None))
        return f"{path} has s={s}, r={r} against s={s0}, r={r0}"
    return None


def factors_at_base(base: Any, scaling: str, lr_scaling: str | None = None) -> AtBase:
  """What ``layer_adamw(..., scaling, base=base, lr_scaling=lr_scaling)`` is at the base itself.

  Read from :func:`ll2.describe` on the base model's shapes, the same
  factors the optimizer is built from (``layer_l2`` takes the same ``s``).
  """
  report = ll2.describe(base, 1.0, scaling, base=base, lr_scaling=lr_scaling)
  factors = tuple(
    (row.path, row.scale, 1.0 if row.lr_factor is None else row.lr_factor) for row in report.rows
  )
  return AtBase(factors)


def check_shared(forms: Mapping[str, AtBase], width: int) -> None:
  """Raises unless every form is the first's: the rows trained once at ``width`` serve all.

  ``forms`` holds what each recipe trains at the base width, by name, the
  first the recipe whose name the base's search is trained under.

  Raises:
    ValueError: naming the first recipe that differs, and how.
  """
  (first, shared), *others = forms.items()
  for name, form in others:
    why = form.difference(shared)
    if why is not None:
      raise ValueError(
        f"recipe {name!r} does not train what {first!r} trains at the base width {width} "
        f"({why}): the base's rows are trained once, with {first!r}, and shared by every "
        f"recipe, so they would not be {name!r}'s own. Make it plain AdamW from the "
        "architecture's init at the base, or run it in a study of its own."
      )
