"""Progress of a run, on stderr, so that stdout holds only the report."""

import sys
import time

_STARTED = time.perf_counter()


def log(message: str) -> None:
  """Prints ``message`` to stderr, after the seconds since the run started."""
  print(f"{time.perf_counter() - _STARTED:7.1f}s {message}", file=sys.stderr, flush=True)
