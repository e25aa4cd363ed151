"""The sizes and repeats of a full run and of a quick one, and the hyperparameters."""

import dataclasses

LEARNING_RATE = 1e-4
WEIGHT_DECAY = 1e-4
MiB = 2**20


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
      :func:`benchmarks.timing.compile_copies`).
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
