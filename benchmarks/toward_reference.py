"""Section 6: decay toward a reference (``reference="init"``, L2-SP): the train step and the state.

The reference lives in the optimizer state, one copy of each decayed leaf, so
a step reads one more array per decayed leaf and subtracts it. The SPEC allows
the step 5% over ``add_decayed_weights`` + ``adam`` for that, and the state
must be that copy exactly: the decayed leaves' bytes, and 4 more (an int32
step count) with a scheduled ``weight_decay``.
"""

from typing import Any

import jax
import optax

import optax_layer_l2 as ll2
from benchmarks.budgets import Verdicts
from benchmarks.markdown import ms, table
from benchmarks.models import Model
from benchmarks.optimizer_state import state_bytes
from benchmarks.optimizers import DECAYED, layer_l2_name, reference_optimizers, toward_init_name
from benchmarks.programs import operations_beyond, same_program
from benchmarks.settings import LEARNING_RATE, WEIGHT_DECAY, MiB, Settings
from benchmarks.spread import Spread, paired
from benchmarks.train_step import StepResult, compare_programs, measure_steps

SCALINGS = ("none", "fan_avg")
"""The scalings timed toward ``"init"``: plain L2, and the default."""

TOWARD_ZERO = layer_l2_name("fan_avg")
"""``layer_l2("fan_avg")`` + ``adam`` with ``reference=None``: the decay toward zero."""

FIRST_TOWARD_INIT = toward_init_name(SCALINGS[0])
"""The step toward ``"init"`` that the other is compared with."""


def decayed_bytes(params: Any, mask: Any) -> int:
  """The bytes of the leaves of ``params`` that ``mask`` decays: one copy of each."""
  return sum(
    leaf.nbytes
    for leaf, decayed in zip(jax.tree.leaves(params), jax.tree.leaves(mask), strict=True)
    if decayed
  )


def measure_reference(model: Model, settings: Settings, rounds: int) -> StepResult:
  """Times the steps toward ``"init"`` beside ``add_decayed_weights``' and the one toward zero."""
  return measure_steps(model, reference_optimizers(model.mask(), SCALINGS), settings, rounds)


def _lowered_beyond(result: StepResult, name: str, decayed_leaves: int) -> str:
  """What ``name``'s lowered step holds beyond ``add_decayed_weights`` + ``adam``'s."""
  ours, theirs = result.lowered[name], result.lowered[DECAYED]
  if same_program(ours, theirs) != "differs":
    return same_program(ours, theirs)
  extra = operations_beyond(ours, theirs)
  counts = ", ".join(f"{count:+d} {opcode}" for opcode, count in extra.items())
  return f"{counts} ({decayed_leaves} decayed leaves)"


def _compiled_as_first(result: StepResult, name: str) -> str:
  """Whether ``name``'s compiled step is that of the first step toward ``"init"``."""
  compared = same_program(result.compiled[name], result.compiled[FIRST_TOWARD_INIT])
  return f"{compared} as {FIRST_TOWARD_INIT}'s"


def controls(result: StepResult) -> str:
  """The ratios of steps whose programs are the same but for constants: the noise of this run."""
  s = result.samples
  pairs = [(TOWARD_ZERO, DECAYED)] + [
    (name, FIRST_TOWARD_INIT) for name in s if name not in (DECAYED, TOWARD_ZERO, FIRST_TOWARD_INIT)
  ]
  parts = [f"{ours} / {theirs}: {paired(s, ours, theirs).ratio_text()}" for ours, theirs in pairs]
  return (
    "A/A controls, pairs of steps that are the same program but for constants: "
    + "; ".join(parts)
    + ". Their distance from 1 is the noise of this section."
  )


def step_table(result: StepResult, verdicts: Verdicts) -> str:
  """Each step's time against ``add_decayed_weights`` + ``adam``'s, and its program."""
  s = result.samples
  decayed_leaves = sum(jax.tree.leaves(result.model.mask()))
  rows = []
  for name in s:
    median = Spread.of(s[name])
    stats = result.memory[name]
    arguments = "n/a" if stats is None else f"{stats.argument_size_in_bytes / MiB:.1f}"
    row = [name, ms(median.median), f"{ms(median.low)}-{ms(median.high)}", "", "", "", "", ""]
    if name == TOWARD_ZERO:
      vs_decayed = paired(s, name, DECAYED)
      row[3:7] = [
        vs_decayed.ratio_text(),
        verdicts.check("step_decayed", vs_decayed.median, vs_decayed.interval),
        *compare_programs(result, name, DECAYED, verdicts),
      ]
    elif name != DECAYED:
      vs_decayed = paired(s, name, DECAYED)
      row[3:7] = [
        vs_decayed.ratio_text(),
        verdicts.check("step_reference", vs_decayed.median, vs_decayed.interval),
        _lowered_beyond(result, name, decayed_leaves),
        "" if name == FIRST_TOWARD_INIT else _compiled_as_first(result, name),
      ]
    row[7] = arguments
    rows.append(row)
  header = [
    "optimizer",
    "ms/step",
    "middle half",
    "/ `add_decayed_weights` + `adam` [95% interval]",
    "budget",
    "lowered program, beside `add_decayed_weights` + `adam`'s",
    "compiled program",
    "arguments MiB",
  ]
  return table(header, rows)


def state_table(model: Model, verdicts: Verdicts) -> str:
  """The bytes of state a decay toward ``"init"`` keeps, against the decayed leaves' bytes."""
  params, mask = model.params, model.mask()
  copy = decayed_bytes(params, mask)
  adam = state_bytes(optax.adam(LEARNING_RATE), params)
  schedule = optax.linear_schedule(WEIGHT_DECAY, 0.0, 1000)
  rows = []
  for name, weight_decay, key in [
    ('`layer_l2(1e-4, reference="init")`', WEIGHT_DECAY, "state_reference"),
    ('`layer_l2(schedule, reference="init")`', schedule, "state_reference_schedule"),
  ]:
    tx = ll2.layer_l2(weight_decay, reference="init")
    alone = state_bytes(tx, params)
    in_chain = state_bytes(optax.chain(tx, optax.adam(LEARNING_RATE)), params) - adam
    rows.append(
      [
        name,
        f"{copy:,}",
        f"{alone:,}",
        f"{in_chain:,}",
        f"{in_chain - copy:,}",
        verdicts.check(key, in_chain - copy),
      ]
    )
  header = [
    "transformation",
    "decayed leaves' bytes",
    "state bytes",
    "bytes beside `adam`'s in a chain",
    "beside `adam`'s, less the decayed leaves' bytes",
    "budget",
  ]
  return table(header, rows)


def reference_section(result: StepResult, verdicts: Verdicts) -> list[str]:
  """Section 6 of the report: its text and tables, each value checked against its budget."""
  model = result.model
  return [
    "## 6. Decay toward a reference",
    '`layer_l2(..., reference="init")` decays each decayed leaf toward the params given to '
    "`init` instead of toward zero (L2-SP): the term is `weight_decay * s * (w - w_ref)`. The "
    "reference lives in the optimizer state, one copy of each decayed leaf, so a step reads "
    "one more array per decayed leaf and subtracts it; the SPEC allows 5% over "
    "`add_decayed_weights` + `adam` for that. The steps are timed as those of section 1, side by "
    "side on the same arrays, each optimizer keeping its own reference (made by its `init` "
    "from those arrays), beside `add_decayed_weights` + `adam` and beside "
    '`layer_l2("fan_avg")` + `adam` toward zero (`reference=None`, the default), whose '
    "program must still be `add_decayed_weights` + `adam`'s but for constants: that row is an "
    "A/A control of this section, and so is the ratio of the two steps toward `init`, whose "
    "programs are the same but for constants. The lowered programs toward `init` are "
    "compared with `add_decayed_weights` + `adam`'s by the count of each operation, the "
    "compiled ones with each other; the arguments of a step are its parameters, optimizer "
    "state and batch.",
    f"On the {model.title} model ({model.num_params / 1e6:.1f}M parameters, "
    f"{model.num_leaves} leaves, {model.batch_text}):",
    step_table(result, verdicts),
    controls(result),
    f"The state, on the same model. `schedule` is `linear_schedule({WEIGHT_DECAY:g}, 0, 1000)`; "
    "the decayed leaves are those of the default mask, the one `add_decayed_weights` gets.",
    state_table(model, verdicts),
  ]
