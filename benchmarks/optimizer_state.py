"""Section 4: the bytes of optimizer state ``layer_l2`` keeps."""

from typing import Any

import jax
import numpy as np
import optax

import optax_layer_l2 as ll2
from benchmarks.budgets import Verdicts
from benchmarks.markdown import table
from benchmarks.models import Model
from benchmarks.settings import LEARNING_RATE, WEIGHT_DECAY


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
