"""Section 5: the peak memory XLA plans for the compiled train step."""

from typing import Any

from benchmarks.budgets import Verdicts
from benchmarks.markdown import table
from benchmarks.optimizers import ADAMW, DECAYED, DECAYED_AGAIN, LAYER_ADAMW, is_layer_l2
from benchmarks.settings import MiB
from benchmarks.train_step import StepResult


def peak_bytes(stats: Any) -> int:
  """Arguments, outputs and temporaries, less the outputs that reuse donated arguments."""
  return (
    stats.argument_size_in_bytes
    + stats.output_size_in_bytes
    - stats.alias_size_in_bytes
    + stats.temp_size_in_bytes
  )


def memory_section(result: StepResult, verdicts: Verdicts) -> str:
  """The peak memory of each optimizer's step, against its reference's."""
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
    reference = DECAYED if is_layer_l2(name) else ADAMW if name == LAYER_ADAMW else None
    if reference is not None:
      ratio = peak_bytes(stats) / peak_bytes(memory[reference])
      row[4:] = [f"{ratio:.4f}", verdicts.check("memory", ratio)]
    rows.append(row)
  header = ["optimizer", "arguments MiB", "temporaries MiB", "peak MiB", "/ reference", "budget"]
  return f"### {result.model.title}\n\n" + table(header, rows)
