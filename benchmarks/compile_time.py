"""Section 3: trace and compile time against the number of leaves."""

import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import optax

import optax_layer_l2 as ll2
from benchmarks.budgets import Verdicts
from benchmarks.markdown import ms, table
from benchmarks.progress import log
from benchmarks.settings import WEIGHT_DECAY, Settings
from benchmarks.spread import Spread
from benchmarks.timing import timed


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
      timed(lambda params=params: ll2.scales(params, "fan_avg")) for _ in range(3)
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
