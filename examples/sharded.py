"""Sharded training with ``layer_l2``: parameters spread over a device mesh.

``layer_l2`` adds ``weight_decay * s * w`` leaf by leaf, so under ``jax.jit``
the decay of each shard is computed where the shard lives: no communication,
and each leaf comes out laid out as it went in. This program shows it for two
layouts of a Flax linen MLP:

* ``fsdp``: one mesh axis of all devices; every kernel is split along its
  first axis (``PartitionSpec("fsdp", None)``) and the batch along the same
  axis, as in fully sharded data parallelism;
* ``data x model``: a 2-D mesh; kernels are split along their hidden axis
  over ``model`` (Megatron-style), the batch over ``data``.

For each layout it trains a few steps of
``optax.chain(ll2.layer_l2(...), optax.adam(...))``, the step compiled with
its output pinned to the input's layout as sharded training does, and prints:
whether the decay alone, compiled with nothing pinned, keeps every leaf's
layout; how many communication ops the decay holds, and the whole step (with
``layer_l2`` / with plain Adam); and how far the sharded run ends from the
unsharded one.

It runs on the accelerators if there are at least two. Otherwise it asks the
CPU to pose as 8 devices (``XLA_FLAGS=--xla_force_host_platform_device_count=8``,
set here unless ``XLA_FLAGS`` is already set; JAX reads it when imported)::

  python examples/sharded.py
  python examples/sharded.py --steps 20 --width 512
"""

import os

# Before JAX is imported: JAX reads it once, when it starts.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import argparse
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax.training import train_state
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import optax_layer_l2 as ll2

COLLECTIVE = re.compile(r"\b(all-gather|all-reduce|reduce-scatter|collective-permute|all-to-all)\(")


class MLP(nn.Module):
  width: int

  @nn.compact
  def __call__(self, x):
    x = nn.LayerNorm(name="norm")(nn.relu(nn.Dense(self.width, name="hidden")(x)))
    return nn.Dense(16, name="out")(x)


def fsdp_layout(devices: list[jax.Device]):
  """Every kernel split along its first axis, the batch over the same mesh axis."""
  mesh = Mesh(np.array(devices), ("fsdp",))

  def spec(path: str, leaf) -> P:
    return P("fsdp", None) if leaf.ndim == 2 else P()

  return mesh, spec, P("fsdp")


def data_model_layout(devices: list[jax.Device]):
  """A ``data x model`` mesh: hidden units over ``model``, the batch over ``data``."""
  mesh = Mesh(np.array(devices).reshape(2, len(devices) // 2), ("data", "model"))

  def spec(path: str, leaf) -> P:
    if path == "hidden/kernel":
      return P(None, "model")  # columns: each device computes some hidden units
    if path in ("hidden/bias", "norm/scale", "norm/bias"):
      return P("model")
    if path == "out/kernel":
      return P("model", None)  # rows: the matching slice of hidden units
    return P()

  return mesh, spec, P("data")


LAYOUTS = {"fsdp": fsdp_layout, "data x model": data_model_layout}


def leaf_path(keypath) -> str:
  """A leaf's path as ``layer_l2`` writes it: ``hidden/kernel``."""
  return jax.tree_util.keystr(keypath, simple=True, separator="/")


def shard_like(tree, mesh, spec):
  """A ``NamedSharding`` for every leaf of ``tree``, chosen by its path."""
  return jax.tree_util.tree_map_with_path(
    lambda keypath, leaf: NamedSharding(mesh, spec(leaf_path(keypath), leaf)), tree
  )


def cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def train_step(state: train_state.TrainState, x, y):
  loss, grads = jax.value_and_grad(
    lambda params: cross_entropy(state.apply_fn({"params": params}, x), y)
  )(state.params)
  return state.apply_gradients(grads=grads), loss


def compile_step(state: train_state.TrainState, x, y, mesh: Mesh):
  """``train_step`` compiled to hand the state back laid out as it came in.

  Scalars (step counts) are replicated over the mesh.
  """
  replicated = NamedSharding(mesh, P())
  layout = jax.tree.map(lambda leaf: getattr(leaf, "sharding", replicated), state)
  layout = jax.tree.map(lambda s: s if isinstance(s, NamedSharding) else replicated, layout)
  return jax.jit(train_step, out_shardings=(layout, replicated)).lower(state, x, y).compile()


def collectives(compiled) -> int:
  """How many communication ops a compiled program holds."""
  return len(COLLECTIVE.findall(compiled.as_text()))


def sharding_kept(before, after) -> bool:
  """Whether every array leaf of ``after`` is laid out as in ``before``."""
  pairs = zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True)
  return all(a.sharding.is_equivalent_to(b.sharding, a.ndim) for a, b in pairs)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--steps", type=int, default=10, help="training steps per run")
  parser.add_argument("--width", type=int, default=256, help="hidden units (divisible by 8)")
  parser.add_argument("--weight-decay", type=float, default=0.1, help="lambda of layer_l2")
  args = parser.parse_args(argv)

  devices = jax.devices()
  if len(devices) < 2:  # one accelerator: use the CPU devices that XLA_FLAGS asked for
    devices = jax.devices("cpu")
  if len(devices) < 2 or len(devices) % 2 or args.width % len(devices):
    raise SystemExit(
      f"Needs an even number of devices (at least 2) that divides --width; found {devices}. "
      "Unset XLA_FLAGS to get 8 CPU devices."
    )
  print(f"{len(devices)} devices: {devices}")
  jax.config.update("jax_default_device", devices[0])  # the unsharded run, on the same kind
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(64, 32)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 16, size=64))
  model = MLP(args.width)
  params = model.init(jax.random.key(0), x)["params"]
  decay = ll2.layer_l2(args.weight_decay)
  optimizers = {"layer_l2+adam": optax.chain(decay, optax.adam(1e-2)), "adam": optax.adam(1e-2)}

  def fit(params, x, y, tx, mesh=None):
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)
    step = jax.jit(train_step) if mesh is None else compile_step(state, x, y, mesh)
    for _ in range(args.steps):
      state, _ = step(state, x, y)
    return state, step

  reference, _ = fit(params, x, y, optimizers["layer_l2+adam"])
  rows = []
  for name, layout in LAYOUTS.items():
    mesh, spec, batch_spec = layout(devices)
    sharded_params = jax.device_put(params, shard_like(params, mesh, spec))
    x_sharded = jax.device_put(x, NamedSharding(mesh, batch_spec))
    y_sharded = jax.device_put(y, NamedSharding(mesh, batch_spec))
    runs = {
      tx_name: fit(sharded_params, x_sharded, y_sharded, tx, mesh)
      for tx_name, tx in optimizers.items()
    }
    state, step = runs["layer_l2+adam"]

    # The decay alone, jitted with nothing pinned: where do its outputs land?
    grads = sharded_params  # any updates laid out like the parameters will do
    decay_state = decay.init(sharded_params)
    compiled = jax.jit(decay.update).lower(grads, decay_state, sharded_params).compile()
    decayed, _ = compiled(grads, decay_state, sharded_params)

    diff = max(
      np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b)))
      for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(reference.params), strict=True)
    )
    rows.append(
      (
        name,
        " x ".join(f"{axis}={size}" for axis, size in mesh.shape.items()),
        "yes" if sharding_kept(grads, decayed) else "NO",
        str(collectives(compiled)),
        f"{collectives(step)} / {collectives(runs['adam'][1])}",
        f"{diff:.1e}",
      )
    )
  header = ("layout", "mesh", "decay keeps layout", "decay comms", "step comms", "max rel diff")
  widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
  print(
    f"\n{args.steps} steps of chain(layer_l2({args.weight_decay:g}), adam), sharded; "
    "step comms: with layer_l2 / plain adam; diff: against the unsharded run.\n"
  )
  for i, row in enumerate([header, *rows]):
    print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if i == 0:
      print("  ".join("-" * width for width in widths))
  print("\nThe data x model layout, leaf by leaf:\n")
  mesh, spec, _ = data_model_layout(devices)
  for keypath, sharding in jax.tree_util.tree_leaves_with_path(shard_like(params, mesh, spec)):
    print(f"  {leaf_path(keypath):<13} {sharding.spec}")


if __name__ == "__main__":
  main()
