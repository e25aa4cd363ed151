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


def with_adam_state(state: Any, adam_state: Any) -> Any:
  """``state``, an optimizer's state, holding ``adam_state`` in place of its own Adam state."""
  return jax.tree.map(
    lambda x: adam_state if _is_adam_state(x) else x, state, is_leaf=_is_adam_state
  )


def keeps_own_state(template: Any) -> bool:
  """Whether an optimizer's state (``template``, as shapes) holds arrays beside Adam's."""
  return len(jax.tree.leaves(template)) > len(jax.tree.leaves(adam_state_of(template)))


class SharedTraining:
  """One set of parameters and Adam moments, trained by each optimizer in turn.

  Every optimizer here is Adam with or without a decay, so all of them can
  take their steps on the same parameters and Adam moments: each step donates
  them and hands its outputs to the next, whichever optimizer that is. Only
  one copy of the 1.2 GB is alive, and every optimizer sees the same values.
  State that an optimizer keeps beside Adam's (the reference of a decay
  toward one, a schedule's step count) is its own: made by its ``init`` from
  the shared parameters when its step is compiled, and donated and handed
  back by each of its steps.
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
    # Adam's place holds shapes until a step puts the shared moments there.
    own = template
    if keeps_own_state(template):
      own = with_adam_state(tx.init(self.params), adam_state_of(template))

    def run(steps: int) -> None:
      nonlocal own
      for _ in range(steps):
        opt_state = with_adam_state(own, self.adam_state)
        self.params, own, self.loss = compiled(self.params, opt_state, model.batch)
        self.adam_state = adam_state_of(own)
      jax.block_until_ready((self.params, own))

    return run, CompiledStep(lowered, compiled)
