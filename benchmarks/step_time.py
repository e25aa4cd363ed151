"""What ``layer_l2`` costs, measured beside what a user would use instead.

Seven measurements, each beside what a user would run instead:
``optax.add_decayed_weights`` on the same mask (and plain ``optax.adam`` where
it makes sense) or, for per-layer learning rates, the same step without them:

1. the time of a jitted, donated train step on a ~100M-parameter MLP, on a
   1,000-leaf model and on a 21M-parameter decoder-only Transformer, and
   whether the step is the same program as with ``add_decayed_weights`` but
   for the decay's constants, as JAX lowered it (on every backend) and as XLA
   compiled it;
2. the time of the update alone (``update`` + ``optax.apply_updates``), as
   bytes/s against a plain jitted ``p + a * g``, the machine's roofline;
3. trace and compile time against the number of leaves;
4. the bytes of optimizer state;
5. the peak memory XLA plans for the jitted step;
6. a decay toward a reference (``reference="init"``): the time of the train
   step on the MLP, and the bytes of the reference it keeps in its state;
7. per-layer learning rates (``layer_lr``): the time of the train step on the
   MLP and the Transformer with and without them, and what they add to the
   lowered program (one multiply per leaf whose factor is not 1).

Times are medians over rounds in which every program runs once, in an order
that rotates from round to round; a ratio is the median of the ratios taken
within each round, so that load which comes and goes hits both sides of it.
Every program is compiled ahead of time and run twice before it is timed.
The report is printed and, for a full run, written to ``docs/performance.md``;
progress goes to stderr.

Usage, from the repository root::

  python -m benchmarks.step_time            # the full run: 20-45 minutes on 2 CPU cores, by load
  python -m benchmarks.step_time --quick    # a smoke run on small models, under a minute
  python -m benchmarks.step_time --quick --output perf.md  # write the report there
  python -m benchmarks.step_time --only reference  # section 6 alone: 5-10 minutes; writes no file
  python -m benchmarks.step_time --only learning_rate  # section 7 alone: 5-10 min; no file
"""

import argparse
from collections.abc import Sequence
from pathlib import Path

from benchmarks.progress import log
from benchmarks.report import ALONE, report, section_report
from benchmarks.settings import FULL, QUICK

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def main(argv: Sequence[str] | None = None) -> None:
  """Runs the benchmark, prints the report and writes it where ``--output`` says."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument(
    "--quick", action="store_true", help="a smoke run on small models; writes no file by default"
  )
  parser.add_argument(
    "--only",
    choices=list(ALONE),
    default=None,
    help="run one section alone, writing no file by default: "
    + "; ".join(f"'{name}', {what}" for name, what in ALONE.items()),
  )
  parser.add_argument(
    "--output",
    type=Path,
    default=None,
    help="where to write the Markdown report (default: docs/performance.md for a full run)",
  )
  args = parser.parse_args(argv)
  settings = QUICK if args.quick else FULL
  if args.only:
    text = section_report(args.only, settings, args.quick)
  else:
    text = report(settings, args.quick)
  print(text, end="")
  whole = not (args.quick or args.only)
  output = args.output if args.output is not None else DEFAULT_OUTPUT if whole else None
  if output is not None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    log(f"wrote {output}")


if __name__ == "__main__":
  main()
