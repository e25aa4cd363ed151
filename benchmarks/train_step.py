"""Section 1: the time of a jitted train step under each optimizer, side by side."""

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

from benchmarks.budgets import Verdicts
from benchmarks.markdown import ms, table
from benchmarks.models import Model
from benchmarks.optimizers import (
  ADAM,
  ADAMW,
  DECAYED,
  DECAYED_AGAIN,
  LAYER_ADAMW,
  is_layer_l2,
  train_optimizers,
)
from benchmarks.programs import program_text, same_program
from benchmarks.progress import log
from benchmarks.settings import Settings
from benchmarks.spread import Spread, paired
from benchmarks.timing import compile_copies, interleaved
from benchmarks.training import SharedTraining


@dataclasses.dataclass
class StepResult:
  """What the train-step measurement found on one model.

  Attributes:
    model: the model.
    samples: seconds per step, one sample a round, by optimizer.
    memory: ``compiled.memory_analysis()`` of each optimizer's step.
    programs: the text of each optimizer's compiled step.
  """

  model: Model
  samples: dict[str, list[float]]
  memory: dict[str, Any]
  programs: dict[str, str]


def measure_steps(model: Model, scalings: Sequence[str], settings: Settings) -> StepResult:
  """Compiles the step of every optimizer on ``model`` and times them side by side."""
  optimizers = train_optimizers(model.mask(), scalings)
  training = SharedTraining(model)
  makers = {name: functools.partial(training.runner, tx) for name, tx in optimizers.items()}
  runners, compiled = compile_copies(makers, settings.copies)
  memory = {name: program.memory_analysis() for name, program in compiled.items()}
  programs = {name: program_text(program) for name, program in compiled.items()}
  del compiled
  log(f"  timing {len(runners)} steps x {settings.step_rounds} rounds")
  samples = interleaved(runners, settings.step_rounds, settings.sample_seconds)
  result = StepResult(model, samples, memory, programs)
  del training, runners
  return result


def step_section(result: StepResult, verdicts: Verdicts) -> str:
  """The table of one model's train steps, with each ratio checked against its budget."""
  s, programs = result.samples, result.programs
  rows = []
  for name in s:
    median = Spread.of(s[name])
    row = [name, ms(median.median), f"{ms(median.low)}-{ms(median.high)}", "", "", "", "", ""]
    if name == DECAYED_AGAIN:
      row[3] = paired(s, name, DECAYED).ratio_text()
      row[7] = same_program(programs[name], programs[DECAYED])
    if is_layer_l2(name):
      vs_decayed = paired(s, name, DECAYED)
      vs_adam = paired(s, name, ADAM)
      same = same_program(programs[name], programs[DECAYED])
      row[3:] = [
        vs_decayed.ratio_text(),
        verdicts.check("step_decayed", vs_decayed.median, vs_decayed.interval),
        vs_adam.ratio_text(),
        verdicts.check("step_adam", vs_adam.median, vs_adam.interval),
        f"{same} ({verdicts.check('program', int(same != 'differs'))})",
      ]
    if name in (DECAYED, ADAMW, LAYER_ADAMW):
      row[5] = paired(s, name, ADAM).ratio_text()
    if name == LAYER_ADAMW:
      vs_adamw = paired(s, name, ADAMW)
      same = same_program(programs[name], programs[ADAMW])
      row[3:5] = [
        f"{vs_adamw.ratio_text()} (vs `adamw`)",
        verdicts.check("step_adamw", vs_adamw.median, vs_adamw.interval),
      ]
      row[7] = f"{same} as `adamw`'s ({verdicts.check('program', int(same != 'differs'))})"
    rows.append(row)
  model = result.model
  header = [
    "optimizer",
    "ms/step",
    "middle half",
    "/ `add_decayed_weights` + `adam` [95% interval]",
    "budget",
    "/ `adam` [95% interval]",
    "budget",
    "compiled program, against `add_decayed_weights` + `adam`'s",
  ]
  return "\n\n".join(
    [
      f"### {model.title} ({model.num_params / 1e6:.1f}M parameters, "
      f"{model.num_leaves} leaves, batch {model.batch[0].shape[0]})",
      table(header, rows),
    ]
  )


def noise_note(results: Sequence[StepResult]) -> str:
  """How noisy the machine was: the A/A control and the spread of one step, on each model."""
  parts = []
  for result in results:
    control = paired(result.samples, DECAYED_AGAIN, DECAYED)
    spread = Spread.of(result.samples[DECAYED])
    parts.append(
      f"on the {result.model.title}, the A/A control (the same `add_decayed_weights` step, "
      f"compiled twice) came out at {control.ratio_text()}, and one step of "
      f"`add_decayed_weights` + `adam` took {ms(spread.low)}-{ms(spread.high)} ms "
      f"(middle half, ±{50 * (spread.high - spread.low) / spread.median:.1f}%)"
    )
  return (
    "How noisy the machine was: "
    + "; ".join(parts)
    + ". Two programs that are the same cannot differ in time; where section 1 finds a "
    "program identical to `add_decayed_weights` + `adam`'s, its ratio is one more A/A "
    "control, and the distance of such ratios from 1 is the noise of this run."
  )
