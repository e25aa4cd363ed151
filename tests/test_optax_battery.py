"""Every transformation we ship, through the checks Optax runs on its own optimizers.

As Optax's ``contrib/_common_test.py`` does, one list of transformations
(``CASES``) meets each check: under ``jax.jit`` (equal to eager, compiled once),
dtype preservation, ``optax.inject_hyperparams``, ``optax.MultiSteps``,
``optax.masked``, ``None`` and ``optax.MaskedNode`` leaves, and ``update``
without ``params``. What each transformation computes is pinned in the
``test_core_*`` file of its concept; here, that Optax can wrap it.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import model

import optax_layer_l2 as ll2

BASE_WIDTH, WIDTH = 8, 16
SCHEDULE = optax.exponential_decay(0.1, transition_steps=1, decay_rate=0.5)  # 0.1, 0.05, ...
ADAM_HYPERPARAMS = {"learning_rate", "weight_decay", "b1", "b2", "eps", "eps_root"}


class Trees(NamedTuple):
  """The trees a case is built for and run on."""

  params: Any  # what `init` is given
  moved: Any  # what `update` is given: the params after some training
  base: Any  # the base model's shapes
  reference: Any  # a reference for `reference=`


def trees(dtype=jnp.float32, holes=False):
  """``model(16)`` in ``dtype``, moved, the base ``model(8)``'s shapes, and a reference.

  ``holes`` adds a ``None`` leaf and an ``optax.MaskedNode()`` to each. Where the
  decay pulls toward ``"init"``, it is not zero at ``moved``.
  """

  def extend(tree):
    return {**tree, "missing": None, "masked": optax.MaskedNode()} if holes else tree

  params = extend(model(WIDTH, dtype))
  moved = jax.tree.map(lambda w: w + 1, params)
  base = extend(jax.eval_shape(lambda: model(BASE_WIDTH)))
  reference = jax.tree.map(lambda w: 0.5 * w, params)
  return Trees(params, moved, base, reference)


class Case(NamedTuple):
  """One transformation: its factory, its numeric hyperparameters and its other options."""

  factory: Callable[..., optax.GradientTransformation]
  hyperparams: dict[str, Any]
  options: Callable[[Trees], dict[str, Any]]
  injected: set[str]  # what `optax.inject_hyperparams` keeps in its state
  needs_params: bool = True

  def make(self, at: Trees, **hyperparams: Any) -> optax.GradientTransformation:
    return self.factory(**{**self.hyperparams, **hyperparams}, **self.options(at))


CASES = {
  "layer_l2": Case(ll2.layer_l2, {"weight_decay": 0.1}, lambda t: {}, {"weight_decay"}),
  "layer_l2-schedule": Case(
    ll2.layer_l2, {"weight_decay": SCHEDULE}, lambda t: {"scaling": "fan_in"}, {"weight_decay"}
  ),
  "layer_l2-reference=init": Case(
    ll2.layer_l2, {"weight_decay": 0.1}, lambda t: {"reference": "init"}, {"weight_decay"}
  ),
  "layer_l2-reference=pytree": Case(
    ll2.layer_l2, {"weight_decay": 0.1}, lambda t: {"reference": t.reference}, {"weight_decay"}
  ),
  "layer_l2-schedule-reference=init": Case(
    ll2.layer_l2, {"weight_decay": SCHEDULE}, lambda t: {"reference": "init"}, {"weight_decay"}
  ),
  "layer_l2-base": Case(
    ll2.layer_l2,
    {"weight_decay": 0.1},
    lambda t: {"scaling": "sqrt_fan_in", "base": t.base},
    {"weight_decay"},
  ),
  "layer_lr": Case(
    ll2.layer_lr, {}, lambda t: {"lr_scaling": "inv_fan_in", "base": t.base}, set(), False
  ),
  "layer_adamw": Case(
    ll2.layer_adamw, {"learning_rate": 1e-2, "weight_decay": 0.1}, lambda t: {}, ADAM_HYPERPARAMS
  ),
  "layer_adamw-lr_scaling": Case(
    ll2.layer_adamw,
    {"learning_rate": 1e-2, "weight_decay": 0.1},
    lambda t: {"scaling": "none", "lr_scaling": "inv_fan_in", "base": t.base},
    ADAM_HYPERPARAMS,
  ),
}
NAMES = list(CASES)


def gradients(params, step=0):
  """Gradients that differ from step to step and from leaf to leaf (``None`` stays ``None``)."""
  return jax.tree.map(lambda w: jnp.sin(w + step), params)


def assert_trees_close(actual, expected):
  # Optax's Adam rounds its bias correction differently with injected hyperparameters, and
  # jitted arithmetic may fuse differently: agreement to 1e-5, not bit for bit.
  chex.assert_trees_all_close(actual, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_jitted_steps_match_eager_and_compile_once(name):
  at = trees()
  tx = CASES[name].make(at)

  @jax.jit
  def step(params, state, i):
    updates, state = tx.update(gradients(params, i), state, params)
    return optax.apply_updates(params, updates), state

  state = jax.jit(tx.init)(at.params)
  chex.assert_trees_all_equal(state, tx.init(at.params))  # a jitted `init` copies too
  params, eager_params, eager_state = at.params, at.params, tx.init(at.params)
  for i in range(3):
    params, state = step(params, state, jnp.asarray(i, jnp.float32))
    updates, eager_state = tx.update(gradients(eager_params, i), eager_state, eager_params)
    eager_params = optax.apply_updates(eager_params, updates)
  assert step._cache_size() == 1  # the second and third steps reuse the first one's program
  assert_trees_close(params, eager_params)
  assert_trees_close(state, eager_state)  # a schedule's count included
  assert not np.array_equal(params["dense"]["kernel"], at.params["dense"]["kernel"])


@pytest.mark.parametrize(
  "dtype", [jnp.float32, jnp.bfloat16, jnp.float16], ids=lambda dtype: jnp.dtype(dtype).name
)
@pytest.mark.parametrize("name", NAMES)
def test_updates_and_state_keep_their_dtype(name, dtype):
  at = trees(dtype)
  tx = CASES[name].make(at)
  state = tx.init(at.params)
  updates, new_state = jax.jit(tx.update)(gradients(at.moved), state, at.moved)
  chex.assert_trees_all_equal_dtypes(updates, at.params)
  chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)  # the next step's program
  if name.startswith("layer_l2-reference"):  # the copy of the reference keeps the leaves' dtype
    assert state.reference["dense"]["kernel"].dtype == dtype


@pytest.mark.parametrize("name", NAMES)
def test_inject_hyperparams(name):
  case, at = CASES[name], trees()
  injected = optax.inject_hyperparams(case.factory)(**case.hyperparams, **case.options(at))
  direct = case.make(at)
  state, direct_state = injected.init(at.params), direct.init(at.params)
  assert set(state.hyperparams) == case.injected
  update = jax.jit(injected.update)
  for i in range(2):  # a schedule is evaluated by the wrapper at its own count
    grads = gradients(at.moved, i)
    updates, state = update(grads, state, at.moved)
    expected, direct_state = direct.update(grads, direct_state, at.moved)
    assert_trees_close(updates, expected)
  # A constant hyperparameter changed in the state is the one the next update uses.
  constants = {k: v for k, v in case.hyperparams.items() if not callable(v)}
  if constants:
    state = injected.init(at.params)
    for key, value in constants.items():
      state.hyperparams[key] = jnp.asarray(2 * value)
    doubled = case.make(at, **{key: 2 * value for key, value in constants.items()})
    grads = gradients(at.moved)
    updates, _ = update(grads, state, at.moved)
    expected, _ = doubled.update(grads, doubled.init(at.params), at.moved)
    assert_trees_close(updates, expected)
    as_built, _ = direct.update(grads, direct.init(at.params), at.moved)
    assert not np.allclose(updates["dense"]["kernel"], as_built["dense"]["kernel"])


@pytest.mark.parametrize("name", NAMES)
def test_multi_steps_accumulate_then_apply_once_to_the_mean(name):
  at = trees()
  inner = CASES[name].make(at)
  tx = optax.MultiSteps(inner, every_k_schedule=3)
  state = tx.init(at.params)
  update = jax.jit(tx.update)
  grads = [gradients(at.moved, i) for i in range(3)]
  for g in grads[:2]:
    updates, state = update(g, state, at.moved)
    chex.assert_trees_all_equal(updates, jax.tree.map(jnp.zeros_like, at.params))
  updates, state = update(grads[2], state, at.moved)
  mean = jax.tree.map(lambda *g: sum(g) / 3, *grads)
  expected, inner_state = inner.update(mean, inner.init(at.params), at.moved)
  assert_trees_close(updates, expected)
  assert_trees_close(state.inner_opt_state, inner_state)  # a reference is kept as it was


@pytest.mark.parametrize("name", NAMES)
def test_inside_optax_masked(name):
  # Inside `optax.masked` the transformation sees `MaskedNode`s where the mask is False; the
  # base and the reference are given whole. Every leaf's update depends on that leaf alone, so
  # the selected leaves get what they get unmasked, and the others come back as they came.
  at = trees()
  mask = jax.tree.map(lambda _: False, at.params)
  mask["dense"] = {"kernel": True, "bias": True}
  mask["attn"]["out"]["kernel"] = True
  tx = CASES[name].make(at)
  masked = optax.masked(tx, mask)
  grads = gradients(at.moved)
  updates, _ = jax.jit(masked.update)(grads, masked.init(at.params), at.moved)
  unmasked, _ = tx.update(grads, tx.init(at.params), at.moved)
  for selected, got, alone, came in zip(
    jax.tree.leaves(mask),
    jax.tree.leaves(updates),
    jax.tree.leaves(unmasked),
    jax.tree.leaves(grads),
    strict=True,
  ):
    if selected:
      assert_trees_close(got, alone)
    else:
      np.testing.assert_array_equal(got, came)
  assert not np.allclose(updates["attn"]["out"]["kernel"], grads["attn"]["out"]["kernel"])


@pytest.mark.parametrize("name", NAMES)
def test_none_and_masked_node_leaves_pass_through(name):
  holes, plain = trees(holes=True), trees()
  tx = CASES[name].make(holes)
  updates, _ = jax.jit(tx.update)(gradients(holes.moved), tx.init(holes.params), holes.moved)
  assert updates["missing"] is None
  assert updates["masked"] == optax.MaskedNode()
  tx = CASES[name].make(plain)
  expected, _ = tx.update(gradients(plain.moved), tx.init(plain.params), plain.moved)
  assert_trees_close({k: v for k, v in updates.items() if k in expected}, expected)


@pytest.mark.parametrize("name", NAMES)
def test_update_without_params(name):
  case, at = CASES[name], trees()
  tx = case.make(at)
  grads = gradients(at.moved)
  if case.needs_params:
    with pytest.raises(ValueError, match=r"^`layer_l2` needs the parameters: call `update\("):
      tx.update(grads, tx.init(at.params))
  else:  # the updates' shapes are the params'
    without, _ = tx.update(grads, tx.init(at.params))
    with_params, _ = tx.update(grads, tx.init(at.params), at.moved)
    chex.assert_trees_all_equal(without, with_params)
    assert not np.array_equal(without["dense"]["kernel"], grads["dense"]["kernel"])


def test_inject_hyperparams_takes_a_callable_scaling_and_mask_as_static_args():
  # Without `static_args` a callable is taken for a schedule; with them, it is passed on.
  params = model(WIDTH)
  grads = jax.tree.map(jnp.zeros_like, params)

  def per_fan_in(info):
    return 1.0 / info.fan_in

  injected = optax.inject_hyperparams(ll2.layer_l2, static_args=("scaling", "mask"))(
    weight_decay=1e-2,
    scaling=per_fan_in,
    mask=lambda p: jax.tree.map(lambda x: x.ndim == 2, p),
  )
  state = injected.init(params)
  assert set(state.hyperparams) == {"weight_decay"}
  updates, _ = jax.jit(injected.update)(grads, state, params)
  # dense/kernel (16, 32): fan_in 16, so 1e-2 / 16 of the weight.
  np.testing.assert_allclose(updates["dense"]["kernel"], 1e-2 / 16 * params["dense"]["kernel"])
  np.testing.assert_array_equal(updates["conv"]["kernel"], 0.0)  # rank 4: masked out
