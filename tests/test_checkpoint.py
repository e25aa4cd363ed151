"""Optimizer state that survives: checkpoints of a linen ``TrainState`` resume exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import linen as nn
from flax import serialization
from flax.training import train_state

import optax_layer_l2 as ll2

STEPS = 3  # before the checkpoint, and again after it
LEARNING_RATE = 1e-2


def schedule(count):
  """A weight decay that changes every step, so a lost step count would show."""
  return 1.0 / (1.0 + count)


class Net(nn.Module):
  width: int = 16

  @nn.compact
  def __call__(self, x):
    x = nn.LayerNorm()(nn.relu(nn.Dense(self.width)(x)))
    return nn.Dense(3)(x)


NET = Net()  # one instance: `apply_fn` is static in a TrainState, so jit compares it


def data() -> tuple[jax.Array, jax.Array]:
  rng = np.random.default_rng(0)
  return jnp.asarray(rng.normal(size=(32, 5)), jnp.float32), jnp.asarray(rng.integers(0, 3, 32))


def pretrained() -> dict:
  """A reference for L2-SP: weights of the same network, but not its initial ones."""
  x, _ = data()
  return NET.init(jax.random.key(1, impl="rbg"), x)["params"]


def narrow() -> dict:
  """The shapes of the same network at width 4, the base of learning-rate factors."""
  x, _ = data()
  return jax.eval_shape(lambda: Net(4).init(jax.random.key(0, impl="rbg"), x)["params"])


OPTIMIZERS = {
  "chain(layer_l2(schedule), adam)": optax.chain(ll2.layer_l2(schedule), optax.adam(LEARNING_RATE)),
  "chain(layer_l2(schedule, reference), adam)": optax.chain(
    ll2.layer_l2(schedule, reference=pretrained()), optax.adam(LEARNING_RATE)
  ),
  "MultiSteps(reference='init')": optax.MultiSteps(
    optax.chain(ll2.layer_l2(schedule, reference="init"), optax.adam(LEARNING_RATE)),
    every_k_schedule=2,
  ),
  "MultiSteps": optax.MultiSteps(
    optax.chain(ll2.layer_l2(schedule), optax.adam(LEARNING_RATE)), every_k_schedule=2
  ),
  "layer_adamw(schedule, lr_scaling)": ll2.layer_adamw(
    LEARNING_RATE, schedule, "sqrt_fan_in", lr_scaling="inv_fan_in", base=narrow()
  ),
  "inject_hyperparams": optax.inject_hyperparams(
    lambda weight_decay: optax.chain(ll2.layer_l2(weight_decay), optax.adam(LEARNING_RATE))
  )(weight_decay=schedule),
}


def fresh_state(tx: optax.GradientTransformation) -> train_state.TrainState:
  x, _ = data()
  model = NET
  params = model.init(jax.random.key(0, impl="rbg"), x)["params"]  # "rbg" compiles fast
  state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)
  return state.replace(step=jnp.zeros([], jnp.int32))  # as restored: no recompilation


@jax.jit
def train_step(state: train_state.TrainState, x, y) -> train_state.TrainState:
  def loss_fn(params):
    logits = state.apply_fn({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  return state.apply_gradients(grads=jax.grad(loss_fn)(state.params))


def train(state: train_state.TrainState, steps: int) -> train_state.TrainState:
  x, y = data()
  for _ in range(steps):
    state = train_step(state, x, y)
  return state


def assert_trees_equal(a, b) -> None:
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(x, y)


STATES = (ll2.LayerL2State, ll2.LayerL2ReferenceState)


def layer_l2_states(opt_state) -> list:
  """Each ``LayerL2State`` or ``LayerL2ReferenceState`` inside ``opt_state``."""
  leaves = jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, STATES))
  return [leaf for leaf in leaves if isinstance(leaf, STATES)]


def layer_l2_counts(opt_state) -> list[int]:
  """The step count of each ``layer_l2`` state inside ``opt_state``."""
  return [int(state.count) for state in layer_l2_states(opt_state)]


def save_and_restore_flax(
  state: train_state.TrainState, tmp_path, tx: optax.GradientTransformation | None = None
) -> train_state.TrainState:
  """``state`` saved and restored into a fresh state of ``tx`` (default: its own)."""
  path = tmp_path / "state.msgpack"
  path.write_bytes(serialization.to_bytes(state))
  return serialization.from_bytes(fresh_state(tx or state.tx), path.read_bytes())


def save_and_restore_orbax(
  state: train_state.TrainState, tmp_path, tx: optax.GradientTransformation | None = None
) -> train_state.TrainState:
  """``state`` saved and restored into a fresh state of ``tx`` (default: its own)."""
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(tmp_path / "checkpoint", state)
    checkpointer.wait_until_finished()
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, fresh_state(tx or state.tx))
    return checkpointer.restore(tmp_path / "checkpoint", target)


FORMATS = {"flax.serialization": save_and_restore_flax, "orbax.checkpoint": save_and_restore_orbax}


CASES = [(optimizer, "flax.serialization") for optimizer in OPTIMIZERS] + [
  ("chain(layer_l2(schedule), adam)", "orbax.checkpoint"),
  ("chain(layer_l2(schedule, reference), adam)", "orbax.checkpoint"),
  ("layer_adamw(schedule, lr_scaling)", "orbax.checkpoint"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("optimizer", "fmt"), CASES)
def test_training_resumes_from_a_checkpoint_exactly(optimizer, fmt, tmp_path):
  state = train(fresh_state(OPTIMIZERS[optimizer]), STEPS)
  restored = FORMATS[fmt](state, tmp_path)

  assert type(restored.opt_state) is type(state.opt_state)
  if optimizer == "inject_hyperparams":  # the schedule is evaluated by the wrapper
    assert restored.opt_state.hyperparams["weight_decay"] == schedule(STEPS - 1)
  else:
    steps_taken = STEPS // 2 if optimizer.startswith("MultiSteps") else STEPS  # every 2nd
    assert layer_l2_counts(restored.opt_state) == [steps_taken]
  assert_trees_equal(restored.opt_state, state.opt_state)
  assert_trees_equal(restored.params, state.params)
  resumed, continued = train(restored, STEPS), train(state, STEPS)
  assert_trees_equal(resumed.params, continued.params)
  assert_trees_equal(resumed.opt_state, continued.opt_state)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_the_reference_comes_back_from_the_checkpoint(fmt, tmp_path):
  # Restored into the state of an optimizer whose reference is "init" (the initial
  # weights), the reference must be the saved one (other weights): it lives in the state.
  name = "chain(layer_l2(schedule, reference), adam)"
  state = train(fresh_state(OPTIMIZERS[name]), STEPS)
  saved = layer_l2_states(state.opt_state)[0].reference
  init_tx = optax.chain(ll2.layer_l2(schedule, reference="init"), optax.adam(LEARNING_RATE))
  target = fresh_state(init_tx)
  assert not np.array_equal(
    saved["Dense_0"]["kernel"], layer_l2_states(target.opt_state)[0].reference["Dense_0"]["kernel"]
  )
  restored = FORMATS[fmt](state, tmp_path, init_tx)
  assert restored.tx is init_tx
  assert_trees_equal(layer_l2_states(restored.opt_state)[0].reference, saved)
  assert layer_l2_states(restored.opt_state)[0].reference["LayerNorm_0"] == {
    "bias": optax.MaskedNode(),
    "scale": optax.MaskedNode(),
  }
  resumed, continued = train(restored, STEPS), train(state, STEPS)
  assert_trees_equal(resumed.params, continued.params)


def test_a_lost_step_count_would_be_caught():
  # The resume test above is sensitive to the count that layer_l2 keeps: the schedule
  # gives a different weight decay at each step.
  state = train(fresh_state(OPTIMIZERS["chain(layer_l2(schedule), adam)"]), STEPS)
  reset = state.replace(opt_state=(ll2.LayerL2State(jnp.zeros([], jnp.int32)), state.opt_state[1]))
  resumed, wrong = train(state, 1), train(reset, 1)
  assert not np.array_equal(resumed.params["Dense_0"]["kernel"], wrong.params["Dense_0"]["kernel"])
  assert_trees_equal(resumed.params["LayerNorm_0"], wrong.params["LayerNorm_0"])
