"""How a model's penalty ``s * ||w||^2`` is shared among groups of its leaves."""

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import optax_layer_l2 as ll2


def penalty_shares(
  shapes: Any,
  scaling: str,
  base: Any | None,
  group_of: Callable[[str], str],
  groups: Sequence[str],
) -> Callable[[Any], dict[str, jax.Array]]:
  """``shares(params)``: each group's share of ``sum s * ||w||^2`` under ``scaling``, as
  metrics ``share_<group>``; ``group_of(path)`` names the group of a decayed leaf."""
  # The group of each leaf, in the order of the leaves of the params.
  leaf_groups = [group_of(row.path) for row in ll2.describe(shapes, 1.0).rows]

  def shares(params: Any) -> dict[str, jax.Array]:
    per_leaf = ll2.penalty(params, 1.0, scaling, base=base, per_leaf=True)
    totals = {g: jnp.zeros(()) for g in groups}
    for group, value in zip(leaf_groups, jax.tree.leaves(per_leaf), strict=True):
      totals[group] += value
    whole = sum(totals.values())
    return {f"share_{g}": totals[g] / whole for g in groups}

  return shares


def share_cell(metrics: dict[str, np.ndarray], groups: Sequence[str]) -> str:
  """A table cell: each group's seed-mean share in %, ``"20/27/39/15"``, 15 characters wide."""
  values = [100 * metrics[f"share_{g}"].mean() for g in groups]
  return "/".join(f"{v:.0f}" for v in values).rjust(15)
