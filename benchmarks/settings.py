"""The sizes and repeats of a full run and of a quick one, and the hyperparameters."""

import dataclasses

from benchmarks.transformer import TransformerConfig

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
    transformer: the sizes of the Transformer and of its batch.
    step_rounds: rounds of the train-step measurement on the MLP and the
      many-leaf model.
    transformer_rounds: rounds of the train-step measurement on the
      Transformer, whose steps take longer.
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
  transformer: TransformerConfig
  step_rounds: int
  transformer_rounds: int
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
  transformer=TransformerConfig(vocab=8192, d_model=512, heads=8, layers=4, context=64, batch=8),
  step_rounds=17,
  transformer_rounds=9,
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
  transformer=TransformerConfig(vocab=256, d_model=32, heads=2, layers=1, context=16, batch=2),
  step_rounds=2,
  transformer_rounds=2,
  update_rounds=2,
  compile_rounds=1,
  compile_leaves=(10, 100),
  sample_seconds=0.01,
  copies=1,
)
