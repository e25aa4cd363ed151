"""Section 2: the update alone, against ``p + a * g`` on the same arrays (the roofline)."""

import functools
import statistics
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

import optax_layer_l2 as ll2
from benchmarks.budgets import Verdicts
from benchmarks.markdown import ms, table
from benchmarks.models import Model
from benchmarks.progress import log
from benchmarks.settings import LEARNING_RATE, WEIGHT_DECAY, MiB, Settings
from benchmarks.spread import paired
from benchmarks.timing import Runner, compile_copies, interleaved

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
