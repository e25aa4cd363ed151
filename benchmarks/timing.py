"""Timing compiled programs side by side, so that load which comes and goes hits all alike."""

import gc
import itertools
import math
import time
from collections.abc import Callable
from typing import Any

from benchmarks.progress import log

Runner = Callable[[int], Any]
"""Runs a timed program ``n`` times and waits for the device."""


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


def timed(function: Callable[[], Any]) -> float:
  """Seconds one call of ``function`` takes."""
  start = time.perf_counter()
  function()
  return time.perf_counter() - start
