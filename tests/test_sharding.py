"""``layer_l2`` and ``layer_lr`` on a device mesh: layouts kept, no communication, the same
numbers.

JAX fixes its device count when it starts, so the checks run once in a child
process that asks for 8 CPU devices (``XLA_FLAGS``); this module is that
child when run as a script, and the tests below read the JSON it prints.
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax.training import train_state
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import optax_layer_l2 as ll2

DEVICES = 8
STEPS = 3
COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "collective-permute", "all-to-all")


class MLP(nn.Module):
  width: int = 64

  @nn.compact
  def __call__(self, x):
    x = nn.LayerNorm(name="norm")(nn.relu(nn.Dense(self.width, name="hidden")(x)))
    return nn.Dense(16, name="out")(x)


def fsdp_spec(path: str, leaf) -> P:
  return P("fsdp", None) if leaf.ndim == 2 else P()


def data_model_spec(path: str, leaf) -> P:
  specs = {
    "hidden/kernel": P(None, "model"),
    "hidden/bias": P("model"),
    "norm/scale": P("model"),
    "norm/bias": P("model"),
    "out/kernel": P("model", None),
  }
  return specs.get(path, P())


def layouts():
  """(mesh, spec of each parameter by path, spec of the batch) for each layout."""
  devices = np.array(jax.devices())
  return {
    "fsdp": (Mesh(devices, ("fsdp",)), fsdp_spec, P("fsdp")),
    "data x model": (Mesh(devices.reshape(2, 4), ("data", "model")), data_model_spec, P("data")),
    "fsdp, explicit axes": (
      jax.make_mesh((DEVICES,), ("fsdp",), axis_types=(AxisType.Explicit,)),
      fsdp_spec,
      P("fsdp"),
    ),
  }


def shard(tree, mesh, spec):
  def put(keypath, leaf):
    path = jax.tree_util.keystr(keypath, simple=True, separator="/")
    return jax.device_put(leaf, NamedSharding(mesh, spec(path, leaf)))

  return jax.tree_util.tree_map_with_path(put, tree)


def cross_entropy(logits, labels):
  # One-hot, not `softmax_cross_entropy_with_integer_labels`: the gradient of
  # its gather is a scatter that JAX 0.11 refuses to shard on its own over
  # explicit mesh axes ("provide output PartitionSpec for the scatter update").
  one_hot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
  return optax.softmax_cross_entropy(logits, one_hot).mean()


def train_step(state, x, y):
  loss, grads = jax.value_and_grad(
    lambda params: cross_entropy(state.apply_fn({"params": params}, x), y)
  )(state.params)
  return state.apply_gradients(grads=grads), loss


def communication(compiled) -> int:
  text = compiled.as_text()
  return sum(text.count(f" {op}(") + text.count(f" {op}-start(") for op in COLLECTIVES)


def layout_of(tree) -> list[str]:
  """Every array leaf's sharding, written so that equivalent ones compare equal."""
  return [
    str(leaf.sharding.spec) if leaf.ndim else "scalar"
    for leaf in jax.tree.leaves(tree)
    if leaf.ndim == 0 or isinstance(leaf.sharding, NamedSharding)
  ]


def same_layout(a, b) -> bool:
  pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  return all(x.sharding.is_equivalent_to(y.sharding, x.ndim) for x, y in pairs if x.ndim)


def decayed_leaves(params) -> list:
  """The leaves of ``params`` that ``layer_l2`` decays by default, in leaf order."""
  factors = jax.tree.leaves(ll2.scales(params))
  return [leaf for leaf, s in zip(jax.tree.leaves(params), factors, strict=True) if s]


def all_bitwise_equal(a, b) -> bool:
  pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  return all(np.array_equal(x, y) for x, y in pairs)


def max_relative_difference(a, b) -> float:
  pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  return max(
    float(np.max(np.abs(np.asarray(x) - np.asarray(y))) / np.max(np.abs(np.asarray(y))))
    for x, y in pairs
  )


def child() -> dict:
  """Runs every check on 8 devices; returns the findings by layout."""
  assert jax.device_count() == DEVICES, jax.devices()
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(32, 24)), jnp.float32)
  y = jnp.asarray(rng.integers(0, 16, size=32))
  model = MLP()
  params = model.init(jax.random.key(0), x)["params"]
  grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
  schedule = optax.linear_schedule(0.5, 0.1, transition_steps=STEPS)
  decay = ll2.layer_l2(schedule, "fan_avg")
  optimizers = {"layer_l2": optax.chain(decay, optax.adam(1e-2)), "adam": optax.adam(1e-2)}

  def fit(params, x, y, tx, steps, pin_on=None):
    """``steps`` train steps, compiled once; with a mesh, the state stays laid out as it came."""
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)
    state = state.replace(step=jnp.zeros((), jnp.int32))
    out_shardings = None
    if pin_on is not None:
      replicated = NamedSharding(pin_on, P())
      layout = jax.tree.map(
        lambda leaf: leaf.sharding if isinstance(leaf.sharding, NamedSharding) else replicated,
        state,
      )
      state = jax.device_put(state, layout)
      out_shardings = (layout, replicated)
    step = jax.jit(train_step, out_shardings=out_shardings).lower(state, x, y).compile()
    start = state
    for _ in range(steps):
      state, _ = step(state, x, y)
    return start, state, step

  decay_state = decay.init(params)
  reference_update, _ = jax.jit(decay.update)(grads, decay_state, params)
  _, reference, _ = fit(params, x, y, optimizers["layer_l2"], STEPS)

  # L2-SP: decay toward the initial weights, kept in the optimizer state.
  toward_init = ll2.layer_l2(schedule, "fan_avg", reference="init")
  sp_optimizer = optax.chain(toward_init, optax.adam(1e-2))
  moved = jax.tree.map(lambda p: p + 0.5, params)
  sp_update, _ = jax.jit(toward_init.update)(grads, toward_init.init(params), moved)
  _, sp_reference, _ = fit(params, x, y, sp_optimizer, STEPS)

  # Learning-rate factors relative to a base of width 16: `out/kernel`'s fan-in is 64 against
  # 16, so r = 1/4; `hidden/kernel` reads the 24 inputs at both widths (r = 1); the rest keep 1.
  base = jax.eval_shape(lambda: MLP(width=16).init(jax.random.key(0), x)["params"])
  rates = ll2.layer_lr("inv_fan_in", base=base)
  rate_update, _ = jax.jit(rates.update)(grads, rates.init(params))
  by_hand = dict(grads, out=dict(grads["out"], kernel=grads["out"]["kernel"] / 4))
  lr_scaled = ll2.layer_adamw(1e-2, schedule, "fan_avg", lr_scaling="inv_fan_in", base=base)
  _, lr_reference, _ = fit(params, x, y, lr_scaled, STEPS)
  _, unscaled, _ = fit(params, x, y, ll2.layer_adamw(1e-2, schedule, "fan_avg"), STEPS)

  findings = {}
  for name, (mesh, spec, batch_spec) in layouts().items():
    sharded_params, sharded_grads = shard(params, mesh, spec), shard(grads, mesh, spec)
    batch = NamedSharding(mesh, batch_spec)
    xs, ys = jax.device_put(x, batch), jax.device_put(y, batch)

    # The decay alone, jitted with nothing pinned.
    compiled_update = (
      jax.jit(decay.update).lower(sharded_grads, decay_state, sharded_params).compile()
    )
    decayed, _ = compiled_update(sharded_grads, decay_state, sharded_params)

    # A whole train step, its output pinned to the input's layout (as sharded training does).
    start, state, _ = fit(sharded_params, xs, ys, optimizers["layer_l2"], STEPS, mesh)

    findings[name] = {
      "decay_bitwise_equal": all(
        np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(decayed), jax.tree.leaves(reference_update), strict=True)
      ),
      "decay_keeps_layout": same_layout(sharded_params, decayed),
      "decay_communication": communication(compiled_update),
      "step_keeps_layout": same_layout(start.params, state.params)
      and same_layout(start.opt_state, state.opt_state),
      "step_relative_difference": max_relative_difference(state.params, reference.params),
      "sharded_leaves": sum(
        not leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(sharded_params)
      ),
    }
    # The same with a reference: "init" and an unsharded pytree are both kept with each
    # leaf's sharding.
    sp_state = toward_init.init(sharded_params)
    pytree_state = ll2.layer_l2(0.5, reference=params).init(sharded_params)
    sharded_moved = shard(moved, mesh, spec)
    compiled_sp = (
      jax.jit(toward_init.update).lower(sharded_grads, sp_state, sharded_moved).compile()
    )
    sp_decayed, _ = compiled_sp(sharded_grads, sp_state, sharded_moved)
    sp_start, sp_trained, _ = fit(sharded_params, xs, ys, sp_optimizer, STEPS, mesh)
    kept = decayed_leaves(sharded_params)
    findings[name]["reference"] = {
      "init_keeps_layout": same_layout(kept, jax.tree.leaves(sp_state.reference)),
      "pytree_keeps_layout": same_layout(kept, jax.tree.leaves(pytree_state.reference)),
      "sharded_references": sum(
        not leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(sp_state.reference)
      ),
      "decay_bitwise_equal": all(
        np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(sp_decayed), jax.tree.leaves(sp_update), strict=True)
      ),
      "decay_keeps_layout": same_layout(sharded_params, sp_decayed),
      "decay_communication": communication(compiled_sp),
      "step_keeps_layout": same_layout(sp_start.params, sp_trained.params)
      and same_layout(sp_start.opt_state, sp_trained.opt_state),
      "step_relative_difference": max_relative_difference(sp_trained.params, sp_reference.params),
    }
    # The learning-rate factors, alone (jitted, nothing pinned) and in `layer_adamw`.
    compiled_rates = (
      jax.jit(rates.update).lower(sharded_grads, rates.init(sharded_params)).compile()
    )
    rated, _ = compiled_rates(sharded_grads, rates.init(sharded_params))
    lr_start, lr_trained, _ = fit(sharded_params, xs, ys, lr_scaled, STEPS, mesh)
    findings[name]["layer_lr"] = {
      "bitwise_equal": all_bitwise_equal(rated, rate_update),
      "keeps_layout": same_layout(sharded_grads, rated),
      "communication": communication(compiled_rates),
      "step_keeps_layout": same_layout(lr_start.params, lr_trained.params)
      and same_layout(lr_start.opt_state, lr_trained.opt_state),
      "step_relative_difference": max_relative_difference(lr_trained.params, lr_reference.params),
    }
    if name == "fsdp":
      # The same step with nothing pinned: does layer_l2 change what XLA decides?
      free = {tx_name: fit(sharded_params, xs, ys, tx, 1) for tx_name, tx in optimizers.items()}
      findings["free"] = {
        "communication": [communication(free[tx_name][2]) for tx_name in optimizers],
        "params": [layout_of(free[tx_name][1].params) for tx_name in optimizers],
        "first_moments": [
          layout_of(free["layer_l2"][1].opt_state[1][0].mu),
          layout_of(free["adam"][1].opt_state[0].mu),
        ],
        "moved": layout_of(free["adam"][1].params) != layout_of(sharded_params),
      }
  findings["layer_lr, unsharded"] = {
    "grads_times_r": all_bitwise_equal(rate_update, by_hand),
    "lr_scaling_moves_the_step": max_relative_difference(lr_reference.params, unscaled.params),
  }
  return findings


LAYOUTS = ("fsdp", "data x model", "fsdp, explicit axes")


@pytest.fixture(scope="module")
def findings() -> dict:
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={DEVICES}")
  env["JAX_PLATFORMS"] = "cpu"
  result = subprocess.run(
    [sys.executable, __file__], env=env, capture_output=True, text=True, timeout=600
  )
  assert result.returncode == 0, result.stderr[-4000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
def test_parameters_are_really_sharded(findings, layout):
  assert findings[layout]["sharded_leaves"] >= 2


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
def test_decay_is_computed_shard_by_shard(findings, layout):
  found = findings[layout]
  assert found["decay_bitwise_equal"]
  assert found["decay_keeps_layout"]
  assert found["decay_communication"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
def test_sharded_train_step_matches_unsharded_and_keeps_layout(findings, layout):
  found = findings[layout]
  assert found["step_keeps_layout"]
  assert found["step_relative_difference"] < 1e-4


@pytest.mark.slow
def test_layer_l2_changes_neither_layout_nor_communication_xla_chooses(findings):
  # Left to itself, XLA may move a leaf: under FSDP it shards the LayerNorm bias, with or
  # without layer_l2. layer_l2 must not change any of its choices, nor add communication.
  free = findings["free"]
  with_decay, adam_only = free["communication"]
  assert with_decay == adam_only > 0
  with_decay, adam_only = free["params"]
  assert with_decay == adam_only
  with_decay, adam_only = free["first_moments"]
  assert with_decay == adam_only
  assert free["moved"]  # this check has teeth: XLA did choose a layout of its own


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_reference_keeps_each_leafs_sharding(findings, layout):
  found = findings[layout]["reference"]
  assert found["sharded_references"] >= 1
  assert found["init_keeps_layout"]
  assert found["pytree_keeps_layout"]  # an unsharded reference is laid out as its leaf
  assert found["decay_bitwise_equal"]
  assert found["decay_keeps_layout"]
  assert found["decay_communication"] == 0
  assert found["step_keeps_layout"]
  assert found["step_relative_difference"] < 1e-4


@pytest.mark.slow
def test_the_unsharded_rate_factors_are_the_ones_worked_out_by_hand(findings):
  found = findings["layer_lr, unsharded"]
  assert found["grads_times_r"]  # `out/kernel` times 1/4, every other leaf as it came
  assert found["lr_scaling_moves_the_step"] > 1e-3  # so the sharded match below has teeth


@pytest.mark.slow
@pytest.mark.parametrize("layout", LAYOUTS)
def test_layer_lr_keeps_each_leafs_sharding_and_the_unsharded_numbers(findings, layout):
  found = findings[layout]["layer_lr"]
  assert found["bitwise_equal"]
  assert found["keeps_layout"]
  assert found["communication"] == 0
  assert found["step_keeps_layout"]  # layer_adamw with lr_scaling, its output pinned
  assert found["step_relative_difference"] < 1e-4


class BoxedMLP(nn.Module):
  """Kernels annotated for sharding by ``nn.with_partitioning``, as linen users do."""

  width: int = 8

  @nn.compact
  def __call__(self, x):
    init = nn.with_partitioning(nn.initializers.lecun_normal(), ("fsdp", None))
    x = nn.relu(nn.Dense(self.width, kernel_init=init, name="hidden")(x))
    return nn.Dense(3, kernel_init=init, name="out")(x)


def test_partitioned_boxes_have_the_paths_and_the_decay_of_bare_arrays():
  params = BoxedMLP().init(jax.random.key(0, impl="rbg"), jnp.ones((2, 4)))["params"]
  assert isinstance(params["hidden"]["kernel"], nn.Partitioned)
  bare = nn.meta.unbox(params)
  rows, bare_rows = ll2.describe(params, 0.5).rows, ll2.describe(bare, 0.5).rows
  assert rows == bare_rows
  assert [row.path for row in rows if row.skipped is None] == ["hidden/kernel", "out/kernel"]

  tx = ll2.layer_l2(0.5)
  grads = jax.tree.map(jnp.ones_like, params)  # boxed, as jax.grad returns them
  updates, _ = tx.update(grads, tx.init(params), params)
  bare_updates, _ = tx.update(nn.meta.unbox(grads), tx.init(bare), bare)
  assert isinstance(updates["hidden"]["kernel"], nn.Partitioned)
  assert updates["hidden"]["kernel"].names == ("fsdp", None)
  pairs = zip(jax.tree.leaves(nn.meta.unbox(updates)), jax.tree.leaves(bare_updates), strict=True)
  for a, b in pairs:
    np.testing.assert_array_equal(a, b)

  # A reference is kept boxed too, so the optimizer state carries the partition names.
  kept = ll2.layer_l2(0.5, reference="init").init(params).reference
  assert isinstance(kept["hidden"]["kernel"], nn.Partitioned)
  assert kept["hidden"]["kernel"].names == ("fsdp", None)
  assert kept["hidden"]["bias"] == optax.MaskedNode()


def test_layer_lr_keeps_partitioned_boxes_and_scales_their_values():
  def init(width):
    return BoxedMLP(width).init(jax.random.key(0, impl="rbg"), jnp.ones((2, 4)))["params"]

  params, base = init(8), jax.eval_shape(lambda: init(2))  # the base's kernels are boxed too
  grads = jax.tree.map(jnp.ones_like, params)
  tx = ll2.layer_lr("inv_fan_in", base=base)
  updates, _ = tx.update(grads, tx.init(params))
  assert isinstance(updates["out"]["kernel"], nn.Partitioned)
  assert updates["out"]["kernel"].names == ("fsdp", None)
  factors = {"hidden/kernel": 1.0, "out/kernel": 2 / 8}  # fan-in 4 at both widths; 8 against 2
  rows = ll2.describe(params, 0.5, lr_scaling="inv_fan_in", base=base).rows
  assert [row.lr_factor for row in rows] == [factors.get(row.path, 1.0) for row in rows]
  for row, update in zip(rows, jax.tree.leaves(nn.meta.unbox(updates)), strict=True):
    np.testing.assert_array_equal(update, np.full(update.shape, factors.get(row.path, 1.0)))


if __name__ == "__main__":
  print(json.dumps(child()))
