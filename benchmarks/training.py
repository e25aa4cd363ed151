"""One set of parameters and Adam moments, trained by every optimizer in turn."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from benchmarks.models import Model
from benchmarks.settings import LEARNING_RATE
from benchmarks.timing import Runner


class CompiledStep(NamedTuple):
  """A train step, as JAX lowered it and as XLA compiled it."""

  lowered: jax.stages.Lowered
  compiled: jax.stages.Compiled


def _is_adam_state(x: Any) -> bool:
  return isinstance(x, optax.ScaleByAdamState)


def adam_state_of(opt_state: Any) -> optax.ScaleByAdamState:
  """The one ``ScaleByAdamState`` inside an optimizer's state."""
  found = [x for x in jax.tree.leaves(opt_state, is_leaf=_is_adam_state) if _is_adam_state(x)]
  if len(found) != 1:
    raise ValueError(f"expected one Adam state, found {len(found)}")
  return found[0]


def with_adam_state(template: Any, adam_state: optax.ScaleByAdamState) -> Any:
  """``template`` (an optimizer's state, as shapes) holding ``adam_state``."""
  state = jax.tree.map(
    lambda x: adam_state if _is_adam_state(x) else x, template, is_leaf=_is_adam_state
  )
  if any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(state)):
    raise ValueError("the optimizer keeps state beside Adam's; the benchmark cannot share it")
  return state


class SharedTraining:
  """One set of parameters and Adam moments, trained by each optimizer in turn.

  Every optimizer here is Adam with or without a decay, and only Adam keeps
  state, so all of them can take their steps on the same arrays: each step
  donates them and hands its outputs to the next, whichever optimizer that is.
  Only one copy of the 1.2 GB is alive, and every optimizer sees the same
  values.
  """

  def __init__(self, model: Model) -> None:
    self.model = model
    self.params = jax.tree.map(jnp.copy, model.params)
    self.adam_state = adam_state_of(optax.adam(LEARNING_RATE).init(self.params))
    self.loss = jnp.zeros(())

  def runner(self, tx: optax.GradientTransformation) -> tuple[Runner, CompiledStep]:
    """A function that takes ``n`` steps with ``tx``, and the step as lowered and compiled."""
    model = self.model

    def step(params: Any, opt_state: Any, batch: Any) -> tuple[Any, Any, jax.Array]:
      loss, grads = jax.value_and_grad(model.loss)(params, batch)
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, loss

    shapes = jax.eval_shape(lambda: model.params)
    template = jax.eval_shape(tx.init, shapes)
    lowered = jax.jit(step, donate_argnums=(0, 1)).lower(shapes, template, model.batch)
    compiled = lowered.compile()

    def run(steps: int) -> None:
      for _ in range(steps):
        opt_state = with_adam_state(template, self.adam_state)
        self.params, opt_state, self.loss = compiled(self.params, opt_state, model.batch)
        self.adam_state = adam_state_of(opt_state)
      jax.block_until_ready((self.params, self.adam_state))

    return run, CompiledStep(lowered, compiled)
