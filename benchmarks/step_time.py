"""What ``layer_l2`` costs, measured beside what a user would use instead.

Five measurements, each against ``optax.add_decayed_weights`` on the same mask
(and plain ``optax.adam`` where it makes sense):

1. the time of a jitted, donated train step on a ~100M-parameter MLP and on a
   1,000-leaf model, and whether the compiled step is the same program as
   with ``add_decayed_weights`` (it is, but for the decay's constants);
2. the time of the update alone (``update`` + ``optax.apply_updates``), as
   bytes/s against a plain jitted ``p + a * g``, the machine's roofline;
3. trace and compile time against the number of leaves;
4. the bytes of optimizer state;
5. the peak memory XLA plans for the jitted step.

Times are medians over rounds in which every program runs once, in an order
that rotates from round to round; a ratio is the median of the ratios taken
within each round, so that load which comes and goes hits both sides of it.
Every program is compiled ahead of time and run twice before it is timed.
The table is printed and, for a full run, written to ``docs/performance.md``;
progress goes to stderr.

Usage::

  python benchmarks/step_time.py            # the full run: 10-15 minutes on 2 CPU cores
  python benchmarks/step_time.py --quick    # a smoke run on small models, under a minute
  python benchmarks/step_time.py --quick --output perf.md  # write the table there
"""

import argparse
import dataclasses
import datetime
import functools
import gc
import itertools
import math
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_layer_l2 as ll2

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
LEARNING_RATE = 1e-4
WEIGHT_DECAY = 1e-4
MiB = 2**20

Runner = Callable[[int], Any]
"""Runs a timed program ``n`` times and waits for the device."""


@dataclasses.dataclass(frozen=True)
class Settings:
  """Sizes and repeats of one run.

  Attributes:
    mlp_width: width of the MLP's square kernels.
    mlp_depth: number of dense layers of the MLP.
    batch: batch size of a train step (small, so that the optimizer's share of
      the step, where the decay lives, is large).
    heads: regression heads of the many-leaf model, four leaves each.
    step_rounds: rounds of the train-step measurement.
    update_rounds: rounds of the update-alone measurement.
    compile_rounds: rounds of the trace-and-compile measurement.
    compile_leaves: the tree sizes of the trace-and-compile measurement.
    sample_seconds: the least time one timed sample lasts; a program that is
      faster is called several times in a row within it.
    copies: how many times each timed program is compiled (see
      :func:`compile_copies`).
  """

  mlp_width: int
  mlp_depth: int
  batch: int
  heads: int
  step_rounds: int
  update_rounds: int
  compile_rounds: int
  compile_leaves: tuple[int, ...]
  sample_seconds: float
  copies: int


FULL = Settings(
  mlp_width=4096,
  mlp_depth=6,
  batch=8,
  heads=250,
  step_rounds=17,
  update_rounds=41,
  compile_rounds=5,
  compile_leaves=(10, 100, 1000, 5000),
  sample_seconds=0.3,
  copies=2,
)
QUICK = Settings(
  mlp_width=128,
  mlp_depth=2,
  batch=8,
  heads=2,
  step_rounds=2,
  update_rounds=2,
  compile_rounds=1,
  compile_leaves=(10, 100),
  sample_seconds=0.01,
  copies=1,
)


_STARTED = time.perf_counter()


def log(message: str) -> None:
  """Progress, on stderr, so that stdout holds only the table."""
  print(f"{time.perf_counter() - _STARTED:7.1f}s {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Budgets


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


# --------------------------------------------------------------------------
# Output helpers


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  """A Markdown table."""
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines)


def ms(seconds: float) -> str:
  return f"{seconds * 1e3:.3g}" if seconds < 0.1 else f"{seconds * 1e3:.0f}"


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


def interleaved(
  runners: dict[str, Runner], rounds: int, sample_seconds: float
) -> dict[str, list[float]]:
  """Seconds per call of each runner, one sample of each per round.

  Each runner, called with ``n``, makes ``n`` calls and waits for the device.
  All are run twice first (the first run of a donated program touches fresh
  pages); then as many calls make a sample as it takes the slowest to last
  ``sample_seconds``, and the order of the runners rotates by one each round.
  Python's garbage collector runs between rounds, not within a sample.
  """
  names = list(runners)
  slowest = 0.0
  for name in names:
    runners[name](1)
    start = time.perf_counter()
    runners[name](1)
    slowest = max(slowest, time.perf_counter() - start)
  calls = max(1, math.ceil(sample_seconds / max(slowest, 1e-9)))
  samples: dict[str, list[float]] = {name: [] for name in names}
  for round_ in range(rounds):
    shift = round_ % len(names)
    gc.collect()
    gc.disable()
    try:
      for name in names[shift:] + names[:shift]:
        start = time.perf_counter()
        runners[name](calls)
        samples[name].append((time.perf_counter() - start) / calls)
    finally:
      gc.enable()
  return samples


def compile_copies(
  makers: dict[str, Callable[[], tuple[Runner, Any]]], copies: int
) -> tuple[dict[str, Runner], dict[str, Any]]:
  """Compiles each program ``copies`` times, in mirrored orders; its runner uses them in turn.

  XLA on CPU runs a program that a process compiled later measurably slower
  than the same program compiled earlier: by up to 20% for the 1,000-leaf
  programs here, on the machine this was written on. A program compiled after
  its reference would look slower than it is. Compiled in the order A B C,
  then C B A, every program has the same mean place in the order; the runner
  of each uses its copies in turn, one a round.

  Args:
    makers: by name, a function that compiles a program and returns its
      runner and the compiled program.
    copies: how many copies of each.

  Returns:
    The runners, and the first compiled copy of each program, by name.
  """
  names = list(makers)
  made: dict[str, list[tuple[Runner, Any]]] = {name: [] for name in names}
  for copy in range(copies):
    for name in names if copy % 2 == 0 else reversed(names):
      log(f"  compiling {name}" + (f" (copy {copy + 1} of {copies})" if copies > 1 else ""))
      made[name].append(makers[name]())

  def in_turn(runners: list[Runner]) -> Runner:
    turn = itertools.count()
    return lambda calls: runners[next(turn) % len(runners)](calls)

  return (
    {name: in_turn([runner for runner, _ in made[name]]) for name in names},
    {name: made[name][0][1] for name in names},
  )


# --------------------------------------------------------------------------
# Models


@dataclasses.dataclass(frozen=True)
class Model:
  """A parameter tree, a loss and a batch."""

  title: str
  params: Any
  loss: Callable[[Any, Any], jax.Array]
  batch: Any

  @property
  def num_params(self) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(self.params))

  @property
  def num_leaves(self) -> int:
    return len(jax.tree.leaves(self.params))

  @property
  def nbytes(self) -> int:
    return sum(leaf.nbytes for leaf in jax.tree.leaves(self.params))

  def mask(self) -> Any:
    """The leaves ``layer_l2`` decays by default, as a mask for Optax."""
    return jax.tree.map(lambda s: s > 0, ll2.scales(self.params, "none"))


def normal(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 1.0) -> jax.Array:
  """Drawn by NumPy: JAX would compile a sampler per shape, slowly on a busy machine."""
  return jnp.asarray(rng.standard_normal(shape, dtype=np.float32) * np.float32(scale))


def glorot(rng: np.random.Generator, shape: tuple[int, int]) -> jax.Array:
  return normal(rng, shape, math.sqrt(2.0 / sum(shape)))


def mlp(width: int, depth: int, batch: int) -> Model:
  """``depth`` dense layers of ``width x width`` with ReLU, and a squared error."""
  rng = np.random.default_rng(0)
  params = {
    f"dense_{i}": {"kernel": glorot(rng, (width, width)), "bias": jnp.zeros(width)}
    for i in range(depth)
  }

  def loss(params: Any, batch: Any) -> jax.Array:
    x, y = batch
    for i in range(depth):
      layer = params[f"dense_{i}"]
      x = x @ layer["kernel"] + layer["bias"]
      if i < depth - 1:
        x = jax.nn.relu(x)
    return jnp.mean((x - y) ** 2)

  batch_ = (normal(rng, (batch, width)), normal(rng, (batch, width)))
  title = f"MLP, {depth} x {width}x{width}"
  return Model(title, params, loss, batch_)


def many_leaves(heads: int, batch: int, width: int = 64) -> Model:
  """Regression heads on one input: ``tanh(x W + b) * scale + shift``, four leaves each.

  The heads' widths cycle through 32, 64, 96 and 128, so that the scalings give
  kernels of different shapes different factors; only the kernels are decayed.
  The heads sit side by side rather than in a chain: XLA compiles a chain of
  hundreds of layers many times slower, and the optimizer's work per leaf,
  which this model is here to show, is the same either way.
  """
  rng = np.random.default_rng(1)
  widths = [32 * (1 + i % 4) for i in range(heads)]
  params = {
    f"head_{i:04d}": {
      "dense": {"kernel": glorot(rng, (width, hidden)), "bias": jnp.zeros(hidden)},
      "norm": {"scale": jnp.ones(hidden), "bias": jnp.zeros(hidden)},
    }
    for i, hidden in enumerate(widths)
  }

  def loss(params: Any, batch: Any) -> jax.Array:
    x, y = batch
    total = jnp.zeros(())
    for i, hidden in enumerate(widths):
      head = params[f"head_{i:04d}"]
      h = jnp.tanh(x @ head["dense"]["kernel"] + head["dense"]["bias"])
      h = h * head["norm"]["scale"] + head["norm"]["bias"]
      total = total + jnp.mean((h - y[:, :hidden]) ** 2)
    return total / heads

  batch_ = (normal(rng, (batch, width)), normal(rng, (batch, max(widths))))
  title = f"{heads} regression heads"
  return Model(title, params, loss, batch_)


# --------------------------------------------------------------------------
# 1 and 5. The train step, its time and its memory

ADAM = "`adam`"
DECAYED = "`add_decayed_weights` + `adam`"
DECAYED_AGAIN = "`add_decayed_weights` + `adam`, compiled again (A/A control)"
ADAMW = "`adamw`"
LAYER_ADAMW = '`layer_adamw("fan_avg")`'


MANY_LEAF_SCALINGS = ("none", "fan_avg")
"""The scalings timed on the many-leaf model (all are timed on the MLP)."""


def layer_l2_name(scaling: str) -> str:
  return f'`layer_l2("{scaling}")` + `adam`'


def train_optimizers(mask: Any, scalings: Sequence[str]) -> dict[str, optax.GradientTransformation]:
  """The optimizers of the train-step measurement, by name."""

  def decayed() -> optax.GradientTransformation:
    return optax.chain(optax.add_decayed_weights(WEIGHT_DECAY, mask), optax.adam(LEARNING_RATE))

  optimizers = {ADAM: optax.adam(LEARNING_RATE), DECAYED: decayed(), DECAYED_AGAIN: decayed()}
  for scaling in scalings:
    optimizers[layer_l2_name(scaling)] = optax.chain(
      ll2.layer_l2(WEIGHT_DECAY, scaling), optax.adam(LEARNING_RATE)
    )
  optimizers[ADAMW] = optax.adamw(LEARNING_RATE, weight_decay=WEIGHT_DECAY, mask=mask)
  optimizers[LAYER_ADAMW] = ll2.layer_adamw(LEARNING_RATE, WEIGHT_DECAY, "fan_avg")
  return optimizers


def _is_adam_state(x: Any) -> bool:
  return isinstance(x, optax.ScaleByAdamState)


def adam_state_of(opt_state: Any) -> optax.ScaleByAdamState:
  """The one ``ScaleByAdamState`` inside an optimizer's state."""
  found = [x for x in jax.tree.leaves(opt_state, is_leaf=_is_adam_state) if _is_adam_state(x)]
  if len(found) != 1:
    raise ValueError(f"expected one Adam state, found {len(found)}")
  return found[0]


def with_adam_state(template: Any, adam_state: optax.ScaleByAdamState) -> Any:
  """``template`` (an optimizer's state, as shapes) holding ``adam_state``."""
  state = jax.tree.map(
    lambda x: adam_state if _is_adam_state(x) else x, template, is_leaf=_is_adam_state
  )
  if any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(state)):
    raise ValueError("the optimizer keeps state beside Adam's; the benchmark cannot share it")
  return state


class SharedTraining:
  """One set of parameters and Adam moments, trained by each optimizer in turn.

  Every optimizer here is Adam with or without a decay, and only Adam keeps
  state, so all of them can take their steps on the same arrays: each step
  donates them and hands its outputs to the next, whichever optimizer that is.
  Only one copy of the 1.2 GB is alive, and every optimizer sees the same
  values.
  """

  def __init__(self, model: Model) -> None:
    self.model = model
    self.params = jax.tree.map(jnp.copy, model.params)
    self.adam_state = adam_state_of(optax.adam(LEARNING_RATE).init(self.params))
    self.loss = jnp.zeros(())

  def runner(self, tx: optax.GradientTransformation) -> tuple[Runner, Any]:
    """A function that takes ``n`` steps with ``tx``, and the compiled step."""
    model = self.model

    def step(params: Any, opt_state: Any, batch: Any) -> tuple[Any, Any, jax.Array]:
      loss, grads = jax.value_and_grad(model.loss)(params, batch)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, loss

    shapes = jax.eval_shape(lambda: model.params)
    template = jax.eval_shape(tx.init, shapes)
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(shapes, template, model.batch).compile()

    def run(steps: int) -> None:
      for _ in range(steps):
        opt_state = with_adam_state(template, self.adam_state)
        self.params, opt_state, self.loss = compiled(self.params, opt_state, model.batch)
        self.adam_state = adam_state_of(opt_state)
      jax.block_until_ready((self.params, self.adam_state))

    return run, compiled


@dataclasses.dataclass
class StepResult:
  model: Model
  samples: dict[str, list[float]]
  memory: dict[str, Any]
  programs: dict[str, str]


def program_text(compiled: Any) -> str:
  """The instructions of a compiled program, without source locations or numbered names.

  Names are numbered by XLA as it builds the program, so two programs alike
  in every instruction may number them apart; here each name is replaced by
  the order of its first appearance.
  """
  lines = []
  for line in compiled.as_text().splitlines():
    if " = " in line or line.rstrip().endswith("{"):
      lines.append(re.sub(r", metadata=\{[^}]*\}", "", line))
  names: dict[str, str] = {}

  def rename(match: re.Match) -> str:
    return names.setdefault(match.group(1), f"%{len(names)}")

  return re.sub(r"%?\b([A-Za-z_][\w\-]*\.\d+)\b", rename, "\n".join(lines))


def same_program(ours: str, theirs: str) -> str:
  """Whether two compiled programs are the same, or the same but for their constants."""
  if ours == theirs:
    return "identical"

  def hide(text: str) -> str:
    return re.sub(r"constant\([^)]*\)", "constant(...)", text)

  return "identical but for constants" if hide(ours) == hide(theirs) else "differs"


def measure_steps(model: Model, scalings: Sequence[str], settings: Settings) -> StepResult:
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
  s, programs = result.samples, result.programs
  rows = []
  for name in s:
    median = Spread.of(s[name])
    row = [name, ms(median.median), f"{ms(median.low)}-{ms(median.high)}", "", "", "", "", ""]
    if name == DECAYED_AGAIN:
      row[3] = paired(s, name, DECAYED).ratio_text()
      row[7] = same_program(programs[name], programs[DECAYED])
    if name.startswith("`layer_l2"):
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


def peak_bytes(stats: Any) -> int:
  """Arguments, outputs and temporaries, less the outputs that reuse donated arguments."""
  return (
    stats.argument_size_in_bytes
    + stats.output_size_in_bytes
    - stats.alias_size_in_bytes
    + stats.temp_size_in_bytes
  )


def memory_section(result: StepResult, verdicts: Verdicts) -> str:
  memory = result.memory
  if any(stats is None for stats in memory.values()):
    return f"### {result.model.title}\n\nThis backend reports no memory analysis."
  rows = []
  for name, stats in memory.items():
    if name == DECAYED_AGAIN:
      continue
    row = [
      name,
      f"{stats.argument_size_in_bytes / MiB:.1f}",
      f"{stats.temp_size_in_bytes / MiB:.1f}",
      f"{peak_bytes(stats) / MiB:.1f}",
      "",
      "",
    ]
    reference = DECAYED if name.startswith("`layer_l2") else ADAMW if name == LAYER_ADAMW else None
    if reference is not None:
      ratio = peak_bytes(stats) / peak_bytes(memory[reference])
      row[4:] = [f"{ratio:.4f}", verdicts.check("memory", ratio)]
    rows.append(row)
  header = ["optimizer", "arguments MiB", "temporaries MiB", "peak MiB", "/ reference", "budget"]
  return f"### {result.model.title}\n\n" + table(header, rows)


# --------------------------------------------------------------------------
# 2. The update alone

ROOFLINE = "`p + a * g` (roofline)"
DECAYED_ALONE = "`add_decayed_weights`"


def measure_update(model: Model, settings: Settings, verdicts: Verdicts) -> str:
  """``update`` + ``apply_updates`` alone, against ``p + a * g`` on the same arrays."""
  mask = model.mask()
  grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-6), model.params)
  transforms = {
    DECAYED_ALONE: optax.add_decayed_weights(WEIGHT_DECAY, mask),
    '`layer_l2("none")`': ll2.layer_l2(WEIGHT_DECAY, "none"),
    '`layer_l2("fan_avg")`': ll2.layer_l2(WEIGHT_DECAY, "fan_avg"),
  }

  def roofline(params: Any, grads: Any) -> Any:
    return jax.tree.map(lambda p, g: p + -LEARNING_RATE * g, params, grads)

  def updated(tx: optax.GradientTransformation) -> Callable[[Any, Any], Any]:
    state = tx.init(model.params)

    def update(params: Any, grads: Any) -> Any:
      updates, _ = tx.update(grads, state, params)
      return optax.apply_updates(params, updates)

    return update

  functions = {ROOFLINE: roofline} | {name: updated(tx) for name, tx in transforms.items()}
  carried = {"params": jax.tree.map(jnp.copy, model.params)}

  def runner(function: Callable[[Any, Any], Any]) -> tuple[Runner, Any]:
    compiled = jax.jit(function, donate_argnums=0).lower(carried["params"], grads).compile()

    def run(calls: int) -> None:
      for _ in range(calls):
        carried["params"] = compiled(carried["params"], grads)
      jax.block_until_ready(carried["params"])

    return run, compiled

  makers = {name: functools.partial(runner, function) for name, function in functions.items()}
  runners, _ = compile_copies(makers, settings.copies)
  log(f"  timing {len(runners)} programs x {settings.update_rounds} rounds")
  s = interleaved(runners, settings.update_rounds, settings.sample_seconds)
  moved = 3 * model.nbytes  # read p and g, write p
  rows = []
  for name in s:
    median = statistics.median(s[name])
    row = [name, ms(median), f"{moved / median / 1e9:.2f}", "", "", "", ""]
    if name.startswith("`layer_l2"):
      vs_decayed = paired(s, name, DECAYED_ALONE)
      of_roofline = paired(s, ROOFLINE, name)
      row[3:] = [
        vs_decayed.ratio_text(),
        verdicts.check("update_decayed", vs_decayed.median, vs_decayed.interval),
        of_roofline.ratio_text(),
        verdicts.check("update_roofline", of_roofline.median, of_roofline.interval),
      ]
    elif name == DECAYED_ALONE:
      row[5] = paired(s, ROOFLINE, name).ratio_text()
    rows.append(row)
  header = [
    "program",
    "ms",
    "GB/s",
    "time / `add_decayed_weights` [95% interval]",
    "budget",
    "bytes/s / roofline [95% interval]",
    "budget",
  ]
  del carried["params"]
  return f"### {model.title} ({moved / MiB:,.1f} MiB moved a call)\n\n" + table(header, rows)


# --------------------------------------------------------------------------
# 3. Trace and compile time


def tree_of(leaves: int) -> Any:
  """``leaves // 2`` dense layers of small, varied shapes, as shapes only."""
  f32 = jnp.float32
  return {
    f"dense_{i:05d}": {
      "kernel": jax.ShapeDtypeStruct((16, 8 + i % 17), f32),
      "bias": jax.ShapeDtypeStruct((8 + i % 17,), f32),
    }
    for i in range(leaves // 2)
  }


def measure_compile(settings: Settings, verdicts: Verdicts) -> str:
  """Trace, lower and compile ``update`` + ``apply_updates`` on trees of many leaves."""
  rows = []
  per_leaf_trace: dict[int, float] = {}
  budget_leaves = max(n for n in settings.compile_leaves if n <= 1000)
  for leaves in settings.compile_leaves:
    params = tree_of(leaves)
    mask = jax.tree.map(lambda x: x.ndim >= 2, params)
    makers = {
      "decayed": lambda mask=mask: optax.add_decayed_weights(WEIGHT_DECAY, mask),
      "layer_l2": lambda: ll2.layer_l2(WEIGHT_DECAY, "fan_avg"),
    }
    times: dict[str, dict[str, list[float]]] = {
      name: {"trace": [], "compile": [], "total": []} for name in makers
    }
    # XLA takes long over the largest tree; fewer rounds there.
    rounds = settings.compile_rounds if leaves <= 1000 else max(1, settings.compile_rounds - 2)
    log(f"  {leaves} leaves x {rounds} rounds")
    for round_ in range(rounds):
      order = list(makers) if round_ % 2 == 0 else list(reversed(makers))
      for name in order:
        tx = makers[name]()  # a new function each time, so nothing is cached
        state = jax.eval_shape(tx.init, params)

        def update(params: Any, grads: Any, tx: Any = tx, state: Any = state) -> Any:
          updates, _ = tx.update(grads, state, params)
          return optax.apply_updates(params, updates)

        start = time.perf_counter()
        traced = jax.jit(update).trace(params, params)
        traced_at = time.perf_counter()
        traced.lower().compile()
        done = time.perf_counter()
        times[name]["trace"].append(traced_at - start)
        times[name]["compile"].append(done - traced_at)
        times[name]["total"].append(done - start)
    scales_seconds = min(
      _timed(lambda params=params: ll2.scales(params, "fan_avg")) for _ in range(3)
    )
    ratio = Spread.of(
      [
        ours / theirs
        for ours, theirs in zip(times["layer_l2"]["total"], times["decayed"]["total"], strict=True)
      ]
    )
    trace = statistics.median(times["layer_l2"]["trace"])
    per_leaf_trace[leaves] = trace / leaves
    med = {name: {k: statistics.median(v) for k, v in t.items()} for name, t in times.items()}
    rows.append(
      [
        f"{leaves:,}",
        ms(med["decayed"]["trace"]),
        ms(med["decayed"]["compile"]),
        ms(med["layer_l2"]["trace"]),
        ms(med["layer_l2"]["compile"]),
        ratio.ratio_text(),
        verdicts.check("compile", ratio.median, ratio.interval) if leaves == budget_leaves else "",
        f"{trace / leaves * 1e6:.0f}",
        f"{scales_seconds / leaves * 1e6:.1f}",
      ]
    )
  from_100 = [t for n, t in per_leaf_trace.items() if n >= 100]
  spread = max(from_100) / min(from_100)
  header = [
    "leaves",
    "`add_decayed_weights` trace ms",
    "compile ms",
    "`layer_l2` trace ms",
    "compile ms",
    "total / `add_decayed_weights` [95% interval]",
    "budget",
    "`layer_l2` trace µs/leaf",
    "`scales()` µs/leaf",
  ]
  return (
    table(header, rows)
    + "\n\nTrace time per leaf of `layer_l2`'s update, most / least from 100 leaves up: "
    + f"{spread:.2f} ({verdicts.check('linear', spread)})."
  )


def _timed(function: Callable[[], Any]) -> float:
  start = time.perf_counter()
  function()
  return time.perf_counter() - start


# --------------------------------------------------------------------------
# 4. Optimizer state


def state_bytes(tx: optax.GradientTransformation, params: Any) -> int:
  return sum(np.asarray(leaf).nbytes for leaf in jax.tree.leaves(tx.init(params)))


def state_section(model: Model, verdicts: Verdicts) -> str:
  params, mask = model.params, model.mask()
  schedule = optax.linear_schedule(WEIGHT_DECAY, 0.0, 1000)
  adam = state_bytes(optax.adam(LEARNING_RATE), params)
  rows = []
  for name, tx, key in [
    ("`layer_l2(1e-4)`", ll2.layer_l2(WEIGHT_DECAY), "state_constant"),
    ("`layer_l2(schedule)`", ll2.layer_l2(schedule), "state_schedule"),
    ("`add_decayed_weights(1e-4, mask)`", optax.add_decayed_weights(WEIGHT_DECAY, mask), None),
    ("`add_decayed_weights(schedule, mask)`", optax.add_decayed_weights(schedule, mask), None),
  ]:
    alone = state_bytes(tx, params)
    in_chain = state_bytes(optax.chain(tx, optax.adam(LEARNING_RATE)), params) - adam
    rows.append([name, str(alone), str(in_chain), verdicts.check(key, alone) if key else ""])
  header = ["transformation", "state bytes", "bytes beside `adam`'s in a chain", "budget"]
  return f"On the {model.title} model ({adam:,} bytes of Adam state).\n\n" + table(header, rows)


# --------------------------------------------------------------------------
# The machine and the report


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as cpuinfo:
      for line in cpuinfo:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def memory_gib() -> str:
  try:
    with open("/proc/meminfo") as meminfo:
      for line in meminfo:
        if line.startswith("MemTotal:"):
          return f"{int(line.split()[1]) / 2**20:.0f} GiB"
  except OSError:
    pass
  return "unknown"


def load() -> str:
  try:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())
  except OSError:
    return "unknown"


def machine(load_before: str) -> str:
  rows = [
    ["CPU", cpu_model()],
    ["logical cores", str(os.cpu_count())],
    ["memory", memory_gib()],
    ["system", f"{platform.system()} {platform.machine()}"],
    ["device", f"{jax.default_backend()} ({jax.devices()[0].device_kind})"],
    ["Python", platform.python_version()],
    ["jax / jaxlib", f"{jax.__version__} / {jax.lib.__version__}"],
    ["optax", optax.__version__],
    ["optax_layer_l2", ll2.__version__],
    ["load average (1, 5, 15 min) before", load_before],
    ["load average (1, 5, 15 min) after", load()],
  ]
  return table(["", ""], rows)


def noise_note(results: Sequence[StepResult]) -> str:
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


def report(settings: Settings, quick: bool) -> str:
  load_before = load()
  verdicts = Verdicts()
  started = time.perf_counter()
  models = [
    mlp(settings.mlp_width, settings.mlp_depth, settings.batch),
    many_leaves(settings.heads, settings.batch),
  ]

  # Every scaling compiles to the same program with other constants (the tests
  # check this); on the many-leaf model, whose steps take long to compile, two
  # of them stand for all.
  step_scalings = [tuple(ll2.SCALINGS), MANY_LEAF_SCALINGS]
  step_results = []
  for model, scalings in zip(models, step_scalings, strict=True):
    log(f"[1/5] train step: {model.title}")
    step_results.append(measure_steps(model, scalings, settings))
  log("[2/5] update alone")
  update_tables = []
  for model in models:
    log(f"  {model.title}")
    update_tables.append(measure_update(model, settings, verdicts))
  log("[3/5] trace and compile")
  compile_table = measure_compile(settings, verdicts)
  log("[4/5] optimizer state")
  state_table = state_section(models[1], verdicts)
  log("[5/5] peak memory")
  step_tables = [step_section(result, verdicts) for result in step_results]
  memory_tables = [memory_section(result, verdicts) for result in step_results]
  minutes = (time.perf_counter() - started) / 60

  command = "python benchmarks/step_time.py" + (" --quick" if quick else "")
  today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
  sections = [
    "# Performance",
    f"Made by `{command}` on {today} in {minutes:.1f} minutes"
    + (" (a smoke run on small models: the numbers mean little)." if quick else ".")
    + " Regenerate it with that command. Times are medians over rounds in which each "
    "program ran once, in an order rotating from round to round; a ratio is the median "
    "of the ratios within each round, with a 95% confidence interval of that median in "
    "brackets (two order statistics: no assumption on the distribution). Every program is "
    "compiled ahead of time and run twice before it is timed, and takes and donates its "
    "parameters and optimizer state as a training loop does. "
    + (
      f"Each timed program is compiled {settings.copies} times, in the order A B C then "
      "C B A, and its copies take turns from round to round: XLA on CPU runs a program "
      "that a process compiled later slower than an earlier copy of the very same "
      "program (by up to 20% for the 1,000-leaf programs, on this machine), which would "
      "otherwise count against whichever program was compiled last."
      if settings.copies > 1
      else "Each timed program is compiled once."
    ),
    "## Machine",
    machine(load_before),
    noise_note(step_results),
    "## Budgets",
    "From the SPEC, each checked on every row it applies to below; the worst row is shown. "
    "A median that misses its budget while its 95% interval still reaches the limit is "
    "marked within noise: this run could not tell it from a pass.",
    verdicts.summary(),
    "## 1. Train step",
    f"A jitted step: loss and gradient, `update`, `apply_updates`. `weight_decay={WEIGHT_DECAY}`, "
    f"`learning_rate={LEARNING_RATE}`; `add_decayed_weights` and `adamw` get the mask that "
    "`layer_l2` uses by default (kernels, not biases or norm parameters). All optimizers "
    "train the same arrays in turn. Every scaling traces to the same program, one multiply "
    "and one add per decayed leaf, with other constants (the tests check this), so on the "
    "many-leaf model, whose steps take XLA long to compile, `none` and `fan_avg` stand for "
    "all five.",
    "What a decay costs against plain `adam` is the cost of coupled L2 in XLA, whoever "
    "writes it: the step of `layer_l2` + `adam` is the program of `add_decayed_weights` + "
    "`adam`. XLA on CPU (as of jax 0.10) splits Adam into three loops a leaf: first moment, "
    "second moment, update. A decay added to the gradient is fused into the first two, "
    "which then read the weights too: two more passes over each decayed kernel than plain "
    "Adam's ten, a few percent of a step whose batch of 8 leaves the optimizer most of "
    "the time. A decoupled decay (`adamw`, `layer_adamw`) lands in the third loop, which "
    "reads the weights anyway; compare their `/ adam` column.",
    *step_tables,
    "## 2. Update alone",
    "`update` + `apply_updates` of the transformation alone, jitted, parameters donated. It "
    "reads the parameters and gradients and writes the parameters, as `p + a * g` over the "
    "same arrays does: that is the roofline, the bytes/s this machine's memory gives.",
    *update_tables,
    "## 3. Trace and compile time",
    "`update` + `apply_updates` of the transformation alone on `leaves / 2` dense layers "
    "(kernel and bias) of small, varied shapes, traced and compiled anew each round. "
    "`scales()` is our own Python work per trace: the per-leaf factors.",
    compile_table,
    "## 4. Optimizer state",
    state_table,
    "## 5. Peak memory",
    "Arguments + outputs - donated outputs + temporaries of the compiled train step of "
    "section 1, from `compiled.memory_analysis()`. The reference of `layer_l2` is "
    "`add_decayed_weights` + `adam`, that of `layer_adamw` is `adamw`.",
    *memory_tables,
  ]
  return "\n\n".join(sections) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument(
    "--quick", action="store_true", help="a smoke run on small models; writes no file by default"
  )
  parser.add_argument(
    "--output",
    type=Path,
    default=None,
    help="where to write the Markdown table (default: docs/performance.md for a full run)",
  )
  args = parser.parse_args(argv)
  settings = QUICK if args.quick else FULL
  text = report(settings, args.quick)
  print(text, end="")
  output = args.output if args.output is not None or args.quick else DEFAULT_OUTPUT
  if output is not None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    log(f"wrote {output}")


if __name__ == "__main__":
  main()
