"""Section 1: the time of a jitted train step under each optimizer, side by side."""

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import optax

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
)
from benchmarks.programs import compiled_text, lowered_text, same_program
from benchmarks.progress import log
from benchmarks.settings import Settings
from benchmarks.spread import Spread, paired
from benchmarks.timing import compile_copies, interleaved
from benchmarks.training import SharedTraining

COMPILED_DIFFERS = (
  "this backend's compiler may fuse or share kernels otherwise when a factor is one constant "
  "for every leaf than when it differs from leaf to leaf, which is no cost by itself; the "
  "lowered programs are the same but for constants on every backend, and the step times "
  "show any cost"
)
"""Why a compiled program that differs is no miss on a backend other than the CPU."""


@dataclasses.dataclass
class StepResult:
  """What the train-step measurement found on one model.

  Attributes:
    model: the model.
    samples: seconds per step, one sample a round, by optimizer.
    memory: ``compiled.memory_analysis()`` of each optimizer's step.
    lowered: the HLO of each optimizer's step, as JAX lowered it.
    compiled: the HLO of each optimizer's step, as XLA compiled it.
  """

  model: Model
  samples: dict[str, list[float]]
  memory: dict[str, Any]
  lowered: dict[str, str]
  compiled: dict[str, str]


def measure_steps(
  model: Model,
  optimizers: dict[str, optax.GradientTransformation],
  settings: Settings,
  rounds: int,
) -> StepResult:
  """Compiles the step of every optimizer on ``model`` and times them side by side.

  Args:
    model: the model.
    optimizers: the optimizers to time, by name (see :mod:`benchmarks.optimizers`).
    settings: the settings of the run.
    rounds: how many rounds to time.
  """
  training = SharedTraining(model)
  makers = {name: functools.partial(training.runner, tx) for name, tx in optimizers.items()}
  runners, steps = compile_copies(makers, settings.copies)
  memory = {name: step.compiled.memory_analysis() for name, step in steps.items()}
  lowered = {name: lowered_text(step.lowered) for name, step in steps.items()}
  compiled = {name: compiled_text(step.compiled) for name, step in steps.items()}
  del steps
  log(f"  timing {len(runners)} steps x {rounds} rounds")
  samples = interleaved(runners, rounds, settings.sample_seconds)
  result = StepResult(model, samples, memory, lowered, compiled)
  del training, runners
  return result


def compare_programs(
  result: StepResult, name: str, reference: str, verdicts: Verdicts
) -> tuple[str, str]:
  """The cells saying whether ``name``'s step is ``reference``'s, lowered and compiled.

  The lowered programs must be the same but for constants on every backend.
  The compiled ones must be on the CPU; elsewhere a compiled program that
  differs is reported, but not as a miss (see :data:`COMPILED_DIFFERS`).
  """
  of = "" if reference == DECAYED else f" as {reference}'s"
  lowered = same_program(result.lowered[name], result.lowered[reference])
  compiled = same_program(result.compiled[name], result.compiled[reference])
  if compiled != "differs" or verdicts.backend == "cpu":
    compiled_verdict = verdicts.check("compiled_program", int(compiled != "differs"))
  else:
    compiled_verdict = verdicts.skip("compiled_program", COMPILED_DIFFERS)
  return (
    f"{lowered}{of} ({verdicts.check('lowered_program', int(lowered != 'differs'))})",
    f"{compiled}{of} ({compiled_verdict})",
  )


def step_section(result: StepResult, verdicts: Verdicts) -> str:
  """The table of one model's train steps, with each ratio checked against its budget."""
  s = result.samples
  rows = []
  for name in s:
    median = Spread.of(s[name])
    row = [name, ms(median.median), f"{ms(median.low)}-{ms(median.high)}"] + [""] * 6
    if name == DECAYED_AGAIN:
      row[3] = paired(s, name, DECAYED).ratio_text()
      row[7] = same_program(result.lowered[name], result.lowered[DECAYED])
      row[8] = same_program(result.compiled[name], result.compiled[DECAYED])
    if is_layer_l2(name):
      vs_decayed = paired(s, name, DECAYED)
      vs_adam = paired(s, name, ADAM)
      row[3:] = [
        vs_decayed.ratio_text(),
        verdicts.check("step_decayed", vs_decayed.median, vs_decayed.interval),
        vs_adam.ratio_text(),
        verdicts.check("step_adam", vs_adam.median, vs_adam.interval),
        *compare_programs(result, name, DECAYED, verdicts),
      ]
    if name in (DECAYED, ADAMW):
      row[5] = paired(s, name, ADAM).ratio_text()
    if name == LAYER_ADAMW:
      vs_adamw = paired(s, name, ADAMW)
      vs_adam = paired(s, name, ADAM)
      row[3:] = [
        f"{vs_adamw.ratio_text()} (vs `adamw`)",
        verdicts.check("step_adamw", vs_adamw.median, vs_adamw.interval),
        vs_adam.ratio_text(),
        verdicts.check("step_decoupled", vs_adam.median, vs_adam.interval),
        *compare_programs(result, name, ADAMW, verdicts),
      ]
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
    "lowered program, against `add_decayed_weights` + `adam`'s",
    "compiled program",
  ]
  return "\n\n".join(
    [
      f"### {model.title} ({model.num_params / 1e6:.1f}M parameters, "
      f"{model.num_leaves} leaves, {model.batch_text})",
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
