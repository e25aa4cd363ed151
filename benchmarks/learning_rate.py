"""Section 7: per-layer learning rates (``layer_lr``): what they add to a train step.

``layer_lr`` multiplies each leaf's update by a factor ``r`` that it computes
from shapes when the step is traced, relative to a base model, and passes a
leaf whose ``r`` is 1 through untouched. So a step with it is the step without
it and one multiply per leaf whose factor is not 1, and the SPEC allows it 2%
over that step on ~100M parameters. The base here is the timed model at half
its width, as shapes (``jax.eval_shape``).
"""

import collections
import dataclasses
from collections.abc import Sequence
from typing import Any

import jax

import optax_layer_l2 as ll2
from benchmarks.budgets import Verdicts
from benchmarks.markdown import ms, table
from benchmarks.models import Model, mlp
from benchmarks.optimizers import (
  ADAM,
  LAYER_ADAMW_NONE,
  LAYER_ADAMW_RATES_OF_ONE,
  WITHOUT_RATES,
  rate_optimizers,
)
from benchmarks.programs import operations_beyond, same_program
from benchmarks.settings import LEARNING_RATE, WEIGHT_DECAY, Settings
from benchmarks.spread import Spread, paired
from benchmarks.train_step import StepResult, measure_steps
from benchmarks.transformer import init as transformer_init

BASE_DIVISOR = 2
"""The base model is the timed one at ``1 / BASE_DIVISOR`` of its width."""

FACTOR_OPCODES = frozenset({"broadcast", "constant"})
"""What carries a factor to its multiply in a lowered program: a constant broadcast to the
leaf's shape, which leaves of one shape and factor share."""


@dataclasses.dataclass(frozen=True)
class Base:
  """The model the learning rate was tuned on: its name in the report, and its shapes."""

  title: str
  shapes: Any


def mlp_base(settings: Settings) -> Base:
  """The MLP of ``settings`` at ``1 / BASE_DIVISOR`` of its width, as shapes."""
  width = settings.mlp_width // BASE_DIVISOR
  shapes = jax.eval_shape(lambda: mlp(width, settings.mlp_depth, settings.batch).params)
  return Base(f"the same MLP at width {width}", shapes)


def transformer_base(settings: Settings) -> Base:
  """The Transformer of ``settings`` at ``1 / BASE_DIVISOR`` of ``d_model``, as shapes."""
  config = dataclasses.replace(
    settings.transformer, d_model=settings.transformer.d_model // BASE_DIVISOR
  )
  shapes = jax.eval_shape(lambda: transformer_init(config))
  return Base(f"the same Transformer at d_model {config.d_model}", shapes)


@dataclasses.dataclass(frozen=True)
class Factors:
  """The factors ``r`` that ``layer_lr("inv_fan_in")`` gives the leaves it selects.

  Attributes:
    counts: how many selected leaves get each factor.
  """

  counts: dict[float, int]

  @classmethod
  def of(cls, params: Any, base: Any) -> "Factors":
    """The factors of ``params`` relative to ``base``, as :func:`ll2.describe` reports them."""
    shapes = jax.eval_shape(lambda: params)
    report = ll2.describe(shapes, WEIGHT_DECAY, "none", lr_scaling="inv_fan_in", base=base)
    selected = [row.lr_factor for row in report.rows if row.skipped is None]
    return cls(dict(sorted(collections.Counter(selected).items())))

  @property
  def selected(self) -> int:
    return sum(self.counts.values())

  @property
  def scaled(self) -> int:
    """How many selected leaves have a factor other than 1: one multiply each."""
    return sum(count for factor, count in self.counts.items() if factor != 1.0)

  def text(self) -> str:
    """``'6 at r = 0.5'``: how many leaves get each factor."""
    return ", ".join(f"{count} at r = {factor:g}" for factor, count in self.counts.items())


@dataclasses.dataclass
class RateResult:
  """What the measurement of per-layer learning rates found on one model.

  Attributes:
    step: the steps' times and programs.
    base: the base model of the factors.
    factors: the factors of ``inv_fan_in``.
  """

  step: StepResult
  base: Base
  factors: Factors

  def scaled(self, name: str) -> int:
    """How many leaves ``name``'s step multiplies by a factor other than 1."""
    return 0 if name == LAYER_ADAMW_RATES_OF_ONE else self.factors.scaled


def measure_rates(model: Model, base: Base, settings: Settings, rounds: int) -> RateResult:
  """Times each step with ``layer_lr`` beside the same step without it."""
  factors = Factors.of(model.params, base.shapes)
  step = measure_steps(model, rate_optimizers(base.shapes), settings, rounds)
  return RateResult(step, base, factors)


def adds_one_multiply_per_scaled_leaf(ours: str, theirs: str, scaled: int) -> bool:
  """Whether HLO ``ours`` is ``theirs`` and one multiply per scaled leaf, by its factor.

  With no scaled leaf, the programs must be identical. Otherwise ``ours``
  holds ``scaled`` more multiplies, at most as many more constants and
  broadcasts (the factors, shared by leaves of one shape and factor), and
  nothing else more or less.
  """
  if scaled == 0:
    return same_program(ours, theirs) == "identical"
  extra = operations_beyond(ours, theirs)
  return extra.get("multiply") == scaled and all(
    opcode == "multiply" or (opcode in FACTOR_OPCODES and 0 < count <= scaled)
    for opcode, count in extra.items()
  )


def beyond_text(ours: str, theirs: str) -> str:
  """What HLO ``ours`` holds beyond ``theirs``: ``'+1 constant, +6 multiply'``, or the same."""
  compared = same_program(ours, theirs)
  if compared != "differs":
    return compared
  return ", ".join(
    f"{count:+d} {opcode}" for opcode, count in operations_beyond(ours, theirs).items()
  )


def _lowered_cell(result: RateResult, name: str, verdicts: Verdicts) -> str:
  lowered, without = result.step.lowered, WITHOUT_RATES[name]
  scaled = result.scaled(name)
  same = adds_one_multiply_per_scaled_leaf(lowered[name], lowered[without], scaled)
  leaves = f"for {scaled} scaled leaves" if scaled else "no leaf scaled"
  verdict = verdicts.check("rates_program", int(same))
  return f"{beyond_text(lowered[name], lowered[without])}, {leaves} ({verdict})"


def step_table(result: RateResult, verdicts: Verdicts) -> str:
  """Each step with ``layer_lr`` against the same step without it: its time and program."""
  s = result.step.samples
  rows = []
  for name in s:
    median = Spread.of(s[name])
    row = [name, ms(median.median), f"{ms(median.low)}-{ms(median.high)}", "", "", "", ""]
    if name in WITHOUT_RATES:
      without = WITHOUT_RATES[name]
      ratio = paired(s, name, without)
      compiled = result.step.compiled
      row[3:] = [
        f"{ratio.ratio_text()} (vs {without})",
        verdicts.check("step_rates", ratio.median, ratio.interval),
        _lowered_cell(result, name, verdicts),
        beyond_text(compiled[name], compiled[without]),
      ]
    rows.append(row)
  header = [
    "optimizer",
    "ms/step",
    "middle half",
    "/ the same step without `layer_lr` [95% interval]",
    "budget",
    "lowered program, beside that step's",
    "compiled program, beside that step's",
  ]
  return table(header, rows)


def controls(result: RateResult) -> str:
  """The A/A control of this section, and the spread of one step without ``layer_lr``."""
  s = result.step.samples
  control = paired(s, LAYER_ADAMW_RATES_OF_ONE, LAYER_ADAMW_NONE)
  spreads = []
  for name in (ADAM, LAYER_ADAMW_NONE):
    spread = Spread.of(s[name])
    spreads.append(
      f"{name} {ms(spread.low)}-{ms(spread.high)} ms "
      f"(±{50 * (spread.high - spread.low) / spread.median:.1f}%)"
    )
  return (
    f"A/A control, a step with `layer_lr` whose every factor is 1, the program of "
    f"{LAYER_ADAMW_NONE}: {control.ratio_text()}; its distance from 1 is the noise of this "
    f"table. The middle half of one step: {'; '.join(spreads)}."
  )


def rates_section(results: Sequence[RateResult], verdicts: Verdicts) -> list[str]:
  """Section 7 of the report: its text and a table a model, each value checked."""
  lr, wd = f"{LEARNING_RATE:g}", f"{WEIGHT_DECAY:g}"
  parts = [
    "## 7. Per-layer learning rates",
    '`layer_lr("inv_fan_in", base=base)` multiplies each selected leaf\'s update by '
    "`r = c(leaf) / c(base leaf)` with `c = 1 / fan_in`, a Python float computed from shapes "
    "when the step is traced; a leaf whose `r` is 1 (biases and norm parameters, which it does "
    "not select, and kernels or embeddings whose fan-in is the base's) comes back untouched. "
    "So a step with it should be the step without it and one multiply per scaled leaf, and "
    "the SPEC allows it 2% over that step on ~100M parameters. Here `base` is the shapes "
    "(`jax.eval_shape`) of the timed model with its width (the MLP's, the Transformer's "
    f"`d_model`) divided by {BASE_DIVISOR}. Timed as in section 1, side by side on the same "
    f'arrays: `layer_adamw({lr}, {wd}, "none", lr_scaling="inv_fan_in", base=base)` '
    "(`scale_by_adam -> layer_lr -> layer_l2 -> scale_by_learning_rate`) against "
    f'`layer_adamw({lr}, {wd}, "none")`; `chain(scale_by_adam(), layer_lr("inv_fan_in", '
    f"base=base), scale_by_learning_rate({lr}))` against `adam({lr})`; and, as an A/A "
    f'control, `layer_adamw({lr}, {wd}, "none", lr_scaling="none", base=base)`, whose every '
    f'factor is 1, against `layer_adamw({lr}, {wd}, "none")`. Each lowered program is '
    "compared with that "
    "of the step without `layer_lr` by the count of each operation: it must hold one more "
    "multiply per leaf whose factor is not 1, and nothing more but the factors' constants "
    "broadcast to the leaves' shapes (shared by leaves of one shape and factor); with every "
    "factor 1, it must be the same program. The compiled programs are compared the same way, "
    "for the record: XLA may fold a factor into the learning rate's multiply, or fuse it into "
    "Adam's update loop.",
  ]
  for result in results:
    model, factors = result.step.model, result.factors
    parts += [
      f"### {model.title} ({model.num_params / 1e6:.1f}M parameters, "
      f"{model.num_leaves} leaves, {model.batch_text})",
      f"Against a base of {result.base.title}, `inv_fan_in` selects {factors.selected} leaves "
      f"of {model.num_leaves}: {factors.text()}.",
      step_table(result, verdicts),
      controls(result),
    ]
  return parts
