"""``describe``: a report of what every leaf gets."""

import dataclasses
import warnings
from typing import Any, SupportsFloat, cast

import jax
import jax.numpy as jnp
import numpy as np

from optax_layer_l2._masking import MaskOrFn
from optax_layer_l2._multipliers import Multipliers
from optax_layer_l2._numeric import compute_dtype, decayed_value
from optax_layer_l2._penalty import leaf_penalties
from optax_layer_l2._reference import check_reference, reference_leaves
from optax_layer_l2._rule import DimsOption, FansFrom, LeafRule, Skip, decide
from optax_layer_l2._scaling import ScalingFn, scaling_name
from optax_layer_l2._weight_decay import check_weight_decay


@dataclasses.dataclass(frozen=True)
class Row:
  """One leaf of a :class:`Report`.

  Attributes:
    path: the leaf's path.
    shape: its shape (``None`` if it is not an array).
    fan_in: fan-in of one layer (``None`` where not computed).
    fan_out: fan-out of one layer (``None`` where not computed).
    scale: the factor ``s`` (0 when not decayed).
    coefficient: ``weight_decay * s``, the decay per unit of weight (called
      ``rate`` before version 0.4; "rate" now means the learning rate only).
    penalty: ``0.5 * weight_decay * s * ||w - w_ref||^2`` now (``w_ref = 0``
      without a reference; ``None`` when the leaf holds no values, e.g. from
      ``jax.eval_shape``).
    skipped: why the leaf is not decayed, or ``None``.
    base_shape: the shape of the base model's leaf, where ``base`` was given
      and the leaf is decayed; else ``None``.
    distance: ``||w - w_ref||`` now, where a ``reference`` was given and the
      leaf is decayed and holds values; else ``None``.
    lr_factor: the leaf's learning-rate factor ``r`` (:func:`layer_lr`), where
      an ``lr_scaling`` was given; else ``None``.
    fans_from: where the fans came from, where they were computed: ``"inferred"``
      (:func:`infer_dims`), ``"dims"`` (the user's), ``"path rule"`` (a Flax
      attention kernel read by its path) or ``"shape rule"`` (the default
      rule of ``jax.nn.initializers.variance_scaling``); else ``None``.
    skip: why the leaf is not decayed, as a :class:`Skip` kind for programs
      (``skipped`` says it in words), or ``None``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax_layer_l2 as ll2
    >>> row = ll2.describe({"dense": {"kernel": jnp.ones((4, 4))}}, 0.5).rows[0]
    >>> row.path, row.fan_in, row.fan_out, row.scale, row.coefficient, row.penalty
    ('dense/kernel', 4, 4, 0.5, 0.25, 2.0)
  """

  path: str
  shape: tuple[int, ...] | None
  fan_in: int | None
  fan_out: int | None
  scale: float
  coefficient: float
  penalty: float | None
  skipped: str | None
  base_shape: tuple[int, ...] | None = None
  distance: float | None = None
  lr_factor: float | None = None
  fans_from: str | None = None
  skip: Skip | None = None

  @property
  def rate(self) -> float:
    """Deprecated: :attr:`coefficient`, ``weight_decay * s``."""
    warnings.warn(
      '`Row.rate` is now `Row.coefficient` (`weight_decay * s`); "rate" means the '
      "learning rate only. `Row.rate` will be removed after version 0.4.",
      DeprecationWarning,
      stacklevel=2,
    )
    return self.coefficient


@dataclasses.dataclass(frozen=True)
class Report:
  """What :func:`describe` returns: ``rows`` for programs, a table when printed.

  Attributes:
    weight_decay: the rate ``lambda`` the report was made for.
    scaling: the scaling's name.
    rows (tuple[Row, ...]): one :class:`Row` a leaf, in the order of the
      leaves of ``params`` (``None`` leaves left out).
    reference: whether the decay pulls toward a ``reference`` (the table then
      has a column ``||w - w_ref||``).
    lr_scaling: the learning-rate scaling's name, where one was given (the
      table then has a column ``r``); else ``None``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax_layer_l2 as ll2
    >>> params = {"dense": {"kernel": jnp.ones((4, 4)), "bias": jnp.ones(4)}}
    >>> report = ll2.describe(params, 0.5)
    >>> [(row.path, row.skipped) for row in report.rows]
    [('dense/bias', "named 'bias'"), ('dense/kernel', None)]
    >>> report.total_penalty
    2.0
  """

  weight_decay: float
  scaling: str
  rows: tuple[Row, ...]
  reference: bool = False
  lr_scaling: str | None = None

  @property
  def total_penalty(self) -> float | None:
    """The sum of the rows' penalties, or ``None`` if any is unknown."""
    values = [row.penalty for row in self.rows if row.skipped is None]
    known = [value for value in values if value is not None]
    if len(known) < len(values):
      return None
    return float(sum(known))

  def __str__(self) -> str:
    with_base = any(row.base_shape is not None for row in self.rows)
    # The column of where the fans came from appears when any came from more than shapes.
    with_sources = any(row.fans_from not in (None, SHAPE_RULE) for row in self.rows)
    header: tuple[str, ...]
    header = ("path", "shape", "fan_in", "fan_out", "s", "lambda*s", "penalty", "skipped")
    if self.lr_scaling is not None:
      header = (*header[:6], "r", *header[6:])
    if self.reference:
      header = (*header[:6], DISTANCE, *header[6:])
    if with_sources:
      header = (*header[:4], FANS_FROM, *header[4:])
    if with_base:
      header = (*header[:2], "base shape", *header[2:])
    table: list[tuple[str, ...]] = [header]
    for row in self.rows:
      cells = [
        row.path,
        "-" if row.shape is None else str(row.shape),
        "-" if row.fan_in is None else str(row.fan_in),
        "-" if row.fan_out is None else str(row.fan_out),
        f"{row.scale:.4g}",
        f"{row.coefficient:.4g}",
        "-" if row.penalty is None else f"{row.penalty:.4g}",
        "" if row.skipped is None else row.skipped,
      ]
      if self.lr_scaling is not None:
        cells.insert(6, "-" if row.lr_factor is None else f"{row.lr_factor:.4g}")
      if self.reference:
        cells.insert(6, "-" if row.distance is None else f"{row.distance:.4g}")
      if with_sources:
        cells.insert(4, "-" if row.fans_from is None else row.fans_from)
      if with_base:
        cells.insert(2, "-" if row.base_shape is None else str(row.base_shape))
      table.append(tuple(cells))
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    right = {
      i
      for i, name in enumerate(header)
      if name in ("fan_in", "fan_out", "s", "lambda*s", "r", DISTANCE, "penalty")
    }
    lines = []
    for line in table:
      cells = [
        cell.rjust(width) if i in right else cell.ljust(width)
        for i, (cell, width) in enumerate(zip(line, widths, strict=True))
      ]
      lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * width for width in widths))
    decayed = sum(row.skipped is None for row in self.rows)
    total = self.total_penalty
    lines.append(
      f"{decayed} of {len(self.rows)} leaves decayed"
      f"{' toward the reference' if self.reference else ''}; weight_decay={self.weight_decay:g}, "
      f"scaling={self.scaling}{' relative to base' if with_base else ''}"
      f"{'' if self.lr_scaling is None else f', lr_scaling={self.lr_scaling}'}; total penalty "
      + ("-" if total is None else f"{total:.6g}")
    )
    return "\n".join(lines)

  def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
    del cycle
    printer.text(str(self))


DISTANCE = "||w - w_ref||"
"""The report's column of each decayed leaf's distance from its reference."""

FANS_FROM = "fans from"
"""The report's column of where each row's fans came from."""

SHAPE_RULE = FansFrom.SHAPE_RULE.value


def _holds_values(leaf: Any) -> bool:
  return isinstance(leaf, (jax.Array, np.ndarray)) and not isinstance(leaf, jax.core.Tracer)


def _distance(param: Any, reference: Any) -> float:
  """``||w - w_ref||``, computed in at least float32."""
  param = jnp.asarray(param)
  wide = decayed_value(param, reference, compute_dtype(param.dtype))
  return float(jnp.sqrt(jnp.sum(wide * wide)))


def describe(
  params: Any,
  weight_decay: jax.typing.ArrayLike,
  scaling: str | ScalingFn = "fan_avg",
  *,
  mask: MaskOrFn | None = None,
  dims: DimsOption | None = None,
  multipliers: Multipliers | None = None,
  base: Any | None = None,
  reference: Any | None = None,
  lr_scaling: str | ScalingFn | None = None,
) -> Report:
  """A report of what every leaf of ``params`` gets from :func:`layer_l2`.

  One row a leaf: path, shape, fans, ``s``, ``weight_decay * s`` and the
  leaf's current penalty, or why it is not decayed; with a ``reference``,
  also each decayed leaf's distance ``||w - w_ref||`` from it. Use it when switching
  from plain L2: ``weight_decay * s`` is the per-weight rate each layer now
  gets, to compare with the single rate it had.

  Args:
    params: the parameter tree (arrays, or ``jax.eval_shape`` output, in which
      case the penalty column is empty).
    weight_decay: the rate ``lambda``, a number.
    scaling: as in :func:`layer_l2`.
    mask: as in :func:`layer_l2`.
    dims: as in :func:`layer_l2`.
    multipliers: as in :func:`layer_l2`.
    base: as in :func:`layer_l2`; the report then shows each decayed leaf's
      base shape beside its own.
    reference: as in :func:`penalty`: a pytree with the structure of
      ``params`` (arrays, or shapes when ``params`` are shapes).
    lr_scaling: as in :func:`layer_adamw` (needs ``base``): the report then
      shows each leaf's learning-rate factor ``r`` in a column ``r``.

  Returns:
    A :class:`Report`; ``print`` it for the table, read ``.rows`` in programs.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax_layer_l2 as ll2
    >>> params = {"hidden": {"kernel": jnp.ones((40, 256)), "bias": jnp.zeros(256)},
    ...           "out": {"kernel": jnp.ones((256, 10)), "bias": jnp.zeros(10)}}
    >>> print(ll2.describe(params, 1e-3))
    path           shape      fan_in  fan_out        s   lambda*s  penalty  skipped
    -------------  ---------  ------  -------  -------  ---------  -------  ------------
    hidden/bias    (256,)          1      256        0          0        0  named 'bias'
    hidden/kernel  (40, 256)      40      256  0.02891  2.891e-05    0.148
    out/bias       (10,)           1       10        0          0        0  named 'bias'
    out/kernel     (256, 10)     256       10   0.1039  0.0001039    0.133
    2 of 4 leaves decayed; weight_decay=0.001, scaling=fan_avg; total penalty 0.281
    >>> [row.path for row in ll2.describe(params, 1e-3).rows if row.skipped is None]
    ['hidden/kernel', 'out/kernel']

    Toward a reference, each decayed leaf's distance from it, in a column
    ``||w - w_ref||`` of the printed table:

    >>> import jax
    >>> pretrained = jax.tree.map(lambda w: 0.5 * w, params)
    >>> report = ll2.describe(params, 1e-3, reference=pretrained)
    >>> [(row.path, round(row.distance, 2)) for row in report.rows if row.skipped is None]
    [('hidden/kernel', 50.6), ('out/kernel', 25.3)]
    >>> round(report.total_penalty, 5)  # a quarter of the penalty toward zero
    0.07025
    >>> "||w - w_ref||" in str(report).splitlines()[0]
    True
  """
  check_weight_decay(weight_decay, allow_schedule=False)
  check_reference(reference, allow_init=False)
  lr_rule = None
  if lr_scaling is not None:
    lr_rule = LeafRule.for_rates(lr_scaling, base=base, dims=dims)
  rule = LeafRule.build(scaling, mask=mask, dims=dims, multipliers=multipliers, base=base)
  decisions = decide(rule, params)
  leaves = decisions.treedef.flatten_up_to(params)
  lr_factors: list[float | None] = [None] * len(leaves)
  if lr_rule is not None:
    lr_factors = [d.rate_factor for d in decide(lr_rule, params).leaves]
  factors = decisions.scales()
  targets = [None] * len(leaves)
  if reference is not None:
    found = reference_leaves(reference, params, factors, need_values=False)
    targets = decisions.treedef.flatten_up_to(found)
  concrete = all(
    _holds_values(leaf) and (reference is None or _holds_values(target))
    for leaf, target, d in zip(leaves, targets, decisions.leaves, strict=True)
    if d.selected
  )
  per_leaf = None
  if concrete:
    tree_targets = None if reference is None else decisions.tree(targets)
    values = leaf_penalties(params, factors, weight_decay, tree_targets)
    per_leaf = decisions.treedef.flatten_up_to(values)
  # `check_weight_decay` let only a real number through.
  rate = float(cast(SupportsFloat, weight_decay))
  rows = []
  for i, decision in enumerate(decisions.leaves):
    if decision.skip is Skip.NONE_LEAF:
      continue
    leaf_penalty = None
    if per_leaf is not None and per_leaf[i] is not None:
      leaf_penalty = float(per_leaf[i])
    rows.append(
      Row(
        path=decision.path,
        shape=decision.shape,
        fan_in=None if decision.fans is None else decision.fans.fan_in,
        fan_out=None if decision.fans is None else decision.fans.fan_out,
        scale=decision.scale,
        coefficient=rate * decision.scale,
        penalty=leaf_penalty,
        skipped=decision.reason,
        base_shape=decision.base_shape,
        distance=_distance(leaves[i], targets[i]) if concrete and targets[i] is not None else None,
        lr_factor=lr_factors[i],
        fans_from=None if decision.fans_from is None else decision.fans_from.value,
        skip=decision.skip,
      )
    )
  return Report(
    weight_decay=rate,
    scaling=scaling_name(scaling),
    rows=tuple(rows),
    reference=reference is not None,
    lr_scaling=None if lr_scaling is None else scaling_name(lr_scaling),
  )
