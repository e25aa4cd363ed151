"""Flax linen and NNX: fans against the layers' own initializers, and real training loops."""

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx
from flax.training import train_state

import optax_layer_l2 as ll2

# --------------------------------------------------------------------------------------------
# Fans. `variance_scaling(1.0, mode, "uniform")(key, shape)` is
# `uniform(key, shape, dtype, -1, 1) * sqrt(3 / fan)`, with `fan` computed by JAX from the shape
# the layer hands its initializer. A kernel_init that divides the one by the other stores
# `sqrt(3 / fan)` in every weight, so each layer reports, exactly, the fan its own initializer
# arithmetic uses: no statistics.


def rbg_key() -> jax.Array:
  """A PRNG key of the "rbg" kind: it gives exact fans as well, and compiles far faster."""
  return jax.random.key(0, impl="rbg")


def probe(mode: str) -> Callable[..., jax.Array]:
  """A kernel_init whose every entry is ``sqrt(3 / fan)``, ``fan`` as JAX computes it."""
  variance_scaling = jax.nn.initializers.variance_scaling(1.0, mode, "uniform")

  def init(key, shape, dtype=jnp.float32):
    uniform = jax.random.uniform(key, shape, dtype, -1)  # as variance_scaling draws it
    return jnp.where(uniform == 0, jnp.nan, variance_scaling(key, shape, dtype) / uniform)

  return init


def fan_used(leaf: Any) -> int:
  """The fan a probed leaf was initialised with (the same in every layer of a stack)."""
  values = np.asarray(leaf, np.float64)
  values = values[np.isfinite(values)]  # NaN where the uniform draw was exactly 0
  assert values.size > 0.99 * np.size(leaf)
  fans = 3.0 / np.square(values)
  fan = int(np.round(fans[0]))
  np.testing.assert_allclose(fans, fan, rtol=1e-5)
  return fan


def linen_params(module: nn.Module, *inputs: jax.Array) -> Any:
  return module.init(rbg_key(), *inputs)["params"]


def nnx_params(make: Callable[[nnx.Rngs], nnx.Module]) -> Any:
  return nnx.state(make(nnx.Rngs(rbg_key())), nnx.Param)


def stacked_nnx_params(make: Callable[[nnx.Rngs], nnx.Module], layers: int) -> Any:
  """Params of ``layers`` copies of a module stacked along axis 0 by ``nnx.vmap``."""

  @nnx.split_rngs(splits=layers)
  @nnx.vmap(in_axes=(0,), out_axes=0)
  def create(rngs):
    return make(rngs)

  return nnx.state(create(nnx.Rngs(rbg_key())), nnx.Param)


class ScannedDense(nn.Module):
  """One layer of a stack built by ``nn.scan``: reads the carry (8), outputs 12 features."""

  kernel_init: Callable[..., jax.Array]

  @nn.compact
  def __call__(self, carry, _):
    return carry, nn.Dense(12, kernel_init=self.kernel_init)(carry)


def scanned_params(init, layers=3, carry=8):
  stack = nn.scan(
    ScannedDense, variable_axes={"params": 0}, split_rngs={"params": True}, length=layers
  )
  return linen_params(stack(init), jnp.ones((1, carry)), None)


def general_dims(path: str, leaf: Any) -> ll2.Dims | None:
  """``dims`` for a DenseGeneral/LinearGeneral kernel ``(5, 6, 3, 4)``: two in, two out axes."""
  del leaf
  return ll2.Dims(in_axes=(0, 1), out_axes=(2, 3)) if path.endswith("kernel") else None


x_1d, x_2d, x_seq = jnp.ones((1, 8, 4)), jnp.ones((1, 8, 8, 4)), jnp.ones((1, 3, 10))

# (id, params from a kernel_init, the `dims` argument, number of stacked layers)
FAN_CASES = [
  (
    "linen-Dense",
    lambda init: linen_params(nn.Dense(7, kernel_init=init), jnp.ones((1, 5))),
    None,
    1,
  ),
  (
    "nnx-Linear",
    lambda init: nnx_params(lambda rngs: nnx.Linear(5, 7, kernel_init=init, rngs=rngs)),
    None,
    1,
  ),
  (
    "linen-Conv-HWIO",
    lambda init: linen_params(nn.Conv(6, (3, 3), kernel_init=init), x_2d),
    None,
    1,
  ),
  (
    "linen-Conv-1d-grouped",
    lambda init: linen_params(nn.Conv(6, (5,), feature_group_count=2, kernel_init=init), x_1d),
    None,
    1,
  ),
  (
    "nnx-Conv-HWIO",
    lambda init: nnx_params(lambda rngs: nnx.Conv(4, 6, (3, 3), kernel_init=init, rngs=rngs)),
    None,
    1,
  ),
  (
    "linen-Embed",
    lambda init: linen_params(nn.Embed(11, 5, embedding_init=init), jnp.zeros((1,), jnp.int32)),
    None,
    1,
  ),
  (
    "nnx-Embed",
    lambda init: nnx_params(lambda rngs: nnx.Embed(11, 5, embedding_init=init, rngs=rngs)),
    None,
    1,
  ),
  (
    "linen-MultiHeadDotProductAttention",
    lambda init: linen_params(
      nn.MultiHeadDotProductAttention(
        num_heads=4, qkv_features=16, out_features=12, kernel_init=init
      ),
      x_seq,
    ),
    None,
    1,
  ),
  (
    "nnx-MultiHeadAttention-grouped-kv",
    lambda init: nnx_params(
      lambda rngs: nnx.MultiHeadAttention(
        num_heads=4,
        in_features=10,
        qkv_features=16,
        out_features=12,
        num_kv_heads=2,
        kernel_init=init,
        decode=False,
        rngs=rngs,
      )
    ),
    None,
    1,
  ),
  (
    "linen-DenseGeneral",
    lambda init: linen_params(
      nn.DenseGeneral((3, 4), axis=(-2, -1), kernel_init=init), jnp.ones((1, 5, 6))
    ),
    general_dims,
    1,
  ),
  (
    "nnx-LinearGeneral",
    lambda init: nnx_params(
      lambda rngs: nnx.LinearGeneral((5, 6), (3, 4), axis=(-2, -1), kernel_init=init, rngs=rngs)
    ),
    general_dims,
    1,
  ),
  ("linen-scan-Dense", scanned_params, ll2.stacked(0), 3),
  (
    "nnx-vmap-MultiHeadAttention-grouped-kv",
    lambda init: stacked_nnx_params(
      lambda rngs: nnx.MultiHeadAttention(
        num_heads=4,
        in_features=10,
        qkv_features=16,
        num_kv_heads=2,
        kernel_init=init,
        decode=False,
        rngs=rngs,
      ),
      layers=3,
    ),
    ll2.stacked(0),
    3,
  ),
]


@pytest.mark.parametrize(
  ("build", "dims", "layers"),
  [case[1:] for case in FAN_CASES],
  ids=[case[0] for case in FAN_CASES],
)
def test_fans_match_the_layers_own_initializer(build, dims, layers):
  by_mode = {mode: build(probe(mode)) for mode in ("fan_in", "fan_out")}
  params = by_mode["fan_in"]
  rows = ll2.describe(params, 1.0, dims=dims).rows
  factors = jax.tree.leaves(ll2.scales(params, "fan_avg", dims=dims))
  leaves = {mode: jax.tree.leaves(tree) for mode, tree in by_mode.items()}
  weights = [i for i, row in enumerate(rows) if row.path.split("/")[-1] in ("kernel", "embedding")]
  assert weights, "no kernel in the case"
  for i in weights:
    fan_in = fan_used(leaves["fan_in"][i])
    fan_out = fan_used(leaves["fan_out"][i])
    assert (rows[i].fan_in, rows[i].fan_out) == (fan_in, fan_out), rows[i].path
    numel = leaves["fan_in"][i].size // layers
    assert factors[i] == pytest.approx((fan_in + fan_out) / numel, rel=1e-12)
    assert rows[i].skipped is None


def test_default_rule_misreads_dense_general_without_dims():
  # Documents why `dims` is needed: by default, axis -2 alone is fan-in.
  params = {"kernel": jnp.zeros((5, 6, 3, 4))}
  (row,) = ll2.describe(params, 1.0).rows
  assert (row.fan_in, row.fan_out) == (5 * 6 * 3, 5 * 6 * 4)
  (row,) = ll2.describe(params, 1.0, dims=general_dims).rows
  assert (row.fan_in, row.fan_out) == (30, 12)


# --------------------------------------------------------------------------------------------
# Training loops: a linen `TrainState` loop and an `nnx.Optimizer` loop.

WEIGHT_DECAY = 1.0
LEARNING_RATE = 1e-2
STEPS = 60


def teacher_data() -> tuple[jax.Array, jax.Array]:
  """128 points in 8-D labelled by a random linear teacher into 4 classes."""
  rng = np.random.default_rng(42)
  x = rng.normal(size=(128, 8)).astype(np.float32)
  return jnp.asarray(x), jnp.asarray(np.argmax(x @ rng.normal(size=(8, 4)), axis=-1))


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


class LinenNet(nn.Module):
  width: int = 32

  @nn.compact
  def __call__(self, x):
    x = nn.LayerNorm(name="norm")(nn.Dense(self.width, name="hidden")(x))
    return nn.Dense(4, name="out")(nn.relu(x))


class NnxNet(nnx.Module):
  def __init__(self, rngs: nnx.Rngs, width: int = 32):
    self.hidden = nnx.Linear(8, width, rngs=rngs)
    self.norm = nnx.LayerNorm(width, rngs=rngs)
    self.out = nnx.Linear(width, 4, rngs=rngs)

  def __call__(self, x):
    return self.out(nnx.relu(self.norm(self.hidden(x))))


DECAYED = ("hidden/kernel", "out/kernel")
UNTOUCHED = ("hidden/bias", "norm/bias", "norm/scale", "out/bias")


def by_path(tree: Any) -> dict[str, np.ndarray]:
  """Leaves by their ``layer_l2`` path, as NumPy arrays."""
  rows = ll2.describe(tree, 1.0).rows
  return {row.path: np.asarray(leaf) for row, leaf in zip(rows, jax.tree.leaves(tree), strict=True)}


def linen_state(tx: optax.GradientTransformation) -> train_state.TrainState:
  x, _ = teacher_data()
  model = LinenNet()
  params = model.init(rbg_key(), x)["params"]
  return train_state.TrainState.create(apply_fn=model.apply, params=params, tx=tx)


@jax.jit
def linen_step(state: train_state.TrainState, x: jax.Array, y: jax.Array):
  def loss_fn(params):
    return cross_entropy(state.apply_fn({"params": params}, x), y)

  loss, grads = jax.value_and_grad(loss_fn)(state.params)
  return state.apply_gradients(grads=grads), loss


def linen_fit(tx: optax.GradientTransformation, steps: int = STEPS) -> "Trained":
  x, y = teacher_data()
  state, losses = linen_state(tx), []
  for step in range(steps):
    state, loss = linen_step(state, x, y)
    losses.append(float(loss))
    if step == 0:
      first = state.params
  return Trained(first, state.params, losses)


@nnx.jit
def nnx_step(model: NnxNet, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array) -> jax.Array:
  loss, grads = nnx.value_and_grad(lambda model: cross_entropy(model(x), y))(model)
  optimizer.update(model, grads)
  return loss


def nnx_fit(tx: optax.GradientTransformation, steps: int = STEPS) -> "Trained":
  x, y = teacher_data()
  model = NnxNet(nnx.Rngs(rbg_key()))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  losses = []
  for step in range(steps):
    losses.append(float(nnx_step(model, optimizer, x, y)))
    if step == 0:
      first = nnx.clone(nnx.state(model, nnx.Param))
  return Trained(first, nnx.state(model, nnx.Param), losses)


class Trained(NamedTuple):
  first: Any  # the parameters after one step
  last: Any  # ... after STEPS steps (or the `steps` asked for)
  losses: list[float]


def regularised(weight_decay=WEIGHT_DECAY, **kwargs) -> optax.GradientTransformation:
  return optax.chain(ll2.layer_l2(weight_decay, **kwargs), optax.adam(LEARNING_RATE))


# Built once, so that each framework compiles one train step per optimizer.
OPTIMIZERS = {
  "adam": optax.adam(LEARNING_RATE),
  "layer_l2": regularised(),
  "layer_l2, hidden off": regularised(multipliers={"^hidden/": 0.0}),
  "layer_l2 toward init": regularised(reference="init"),
}
FITS = {"linen": linen_fit, "nnx": nnx_fit}


@functools.cache
def trained(framework: str, optimizer: str) -> Trained:
  return FITS[framework](OPTIMIZERS[optimizer])


@pytest.mark.slow
@pytest.mark.parametrize("framework", FITS)
def test_training_shrinks_kernels_and_leaves_biases_and_norm_scales(framework):
  plain, decayed = trained(framework, "adam"), trained(framework, "layer_l2")
  assert decayed.losses[-1] < 0.5 * decayed.losses[0]
  assert plain.losses[-1] < 0.5 * plain.losses[0]
  for path in DECAYED:
    norm = np.linalg.norm(by_path(decayed.last)[path])
    assert norm < 0.9 * np.linalg.norm(by_path(plain.last)[path]), path

  # One step from the same weights: only the kernels differ, bit for bit.
  plain_1, decayed_1 = by_path(plain.first), by_path(decayed.first)
  for path in UNTOUCHED:
    np.testing.assert_array_equal(decayed_1[path], plain_1[path], err_msg=path)
  for path in DECAYED:
    assert not np.array_equal(decayed_1[path], plain_1[path]), path


@pytest.mark.parametrize("framework", FITS)
def test_layer_l2_passes_bias_and_scale_gradients_through_bit_for_bit(framework):
  params = trained(framework, "adam").last
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.125), params)
  tx = ll2.layer_l2(WEIGHT_DECAY)
  updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
  updates, grads = by_path(updates), by_path(grads)
  for path in UNTOUCHED:
    np.testing.assert_array_equal(updates[path], grads[path], err_msg=path)
  for path in DECAYED:
    assert not np.array_equal(updates[path], grads[path]), path


def test_paths_are_the_same_for_linen_dicts_and_nnx_states():
  x, _ = teacher_data()
  linen = LinenNet().init(rbg_key(), x)["params"]
  state = nnx.state(NnxNet(nnx.Rngs(rbg_key())), nnx.Param)
  assert [row.path for row in ll2.describe(linen, 1.0).rows] == sorted(DECAYED + UNTOUCHED)
  assert [row.path for row in ll2.describe(state, 1.0).rows] == sorted(DECAYED + UNTOUCHED)
  # The full linen variables dict adds the collection name in front.
  variables = LinenNet().init(rbg_key(), x)
  assert ll2.describe(variables, 1.0).rows[0].path == "params/hidden/bias"

  def dims(path, leaf):
    return ll2.Dims(in_axes=-1, out_axes=-2) if path.startswith("out/") else None

  options = {
    "multipliers": {"^hidden/": 3.0, "norm/scale": 0.5},
    "dims": dims,
    "mask": lambda p: jax.tree.map(lambda leaf: leaf.ndim == 2 or leaf.shape == (32,), p),
  }
  scales_linen = jax.tree.leaves(ll2.scales(linen, "fan_in", **options))
  scales_nnx = jax.tree.leaves(ll2.scales(state, "fan_in", **options))
  assert scales_linen == scales_nnx
  s = dict(zip(sorted(DECAYED + UNTOUCHED), scales_nnx, strict=True))
  assert s["hidden/kernel"] == 3.0 * 8 / (8 * 32)  # multiplier 3, fan_in / numel
  assert s["out/kernel"] == 4 / (32 * 4)  # dims swap the axes: fan_in is 4
  assert s["norm/scale"] == 0.5 * 1 / 32  # the mask lets it in, rank 1: fan_in 1


@pytest.mark.parametrize("framework", FITS)
def test_multipliers_select_layers_by_path_inside_the_optimizer(framework):
  plain = by_path(trained(framework, "adam").first)
  decayed = by_path(trained(framework, "layer_l2, hidden off").first)
  np.testing.assert_array_equal(decayed["hidden/kernel"], plain["hidden/kernel"])
  assert not np.array_equal(decayed["out/kernel"], plain["out/kernel"])


def initial_params(framework: str, width: int = 32) -> Any:
  """The weights every fit in ``framework`` starts from (at another ``width``: a base model)."""
  if framework == "linen":
    return LinenNet(width).init(rbg_key(), teacher_data()[0])["params"]
  return nnx.state(NnxNet(nnx.Rngs(rbg_key()), width), nnx.Param)


@pytest.mark.slow
@pytest.mark.parametrize("framework", FITS)
def test_decay_toward_init_keeps_kernels_near_their_initial_values(framework):
  start = by_path(initial_params(framework))
  plain, zero = trained(framework, "adam"), trained(framework, "layer_l2")
  toward = trained(framework, "layer_l2 toward init")
  assert toward.losses[-1] < 0.5 * toward.losses[0]
  for path in DECAYED:

    def moved(run, path=path):
      return np.linalg.norm(by_path(run.last)[path] - start[path])

    assert moved(toward) < 0.9 * moved(plain), path
    norm = np.linalg.norm(by_path(toward.last)[path])
    assert norm > np.linalg.norm(by_path(zero.last)[path]), path  # not pulled toward zero
  # At the reference the decay is exactly zero: the first step is Adam's, bit for bit.
  first, plain_first = by_path(toward.first), by_path(plain.first)
  for path in DECAYED + UNTOUCHED:
    np.testing.assert_array_equal(first[path], plain_first[path], err_msg=path)


def test_nnx_optimizer_keeps_a_pytree_reference_of_the_kernels_only():
  x, y = teacher_data()
  model = NnxNet(nnx.Rngs(rbg_key()))
  pretrained = nnx.state(NnxNet(nnx.Rngs(jax.random.key(1, impl="rbg"))), nnx.Param)
  optimizer = nnx.Optimizer(model, regularised(100.0, reference=pretrained), wrt=nnx.Param)
  kept = jax.tree.leaves(optimizer.opt_state[0])
  reference = by_path(pretrained)
  assert [np.asarray(leaf).shape for leaf in kept] == [(8, 32), (32, 4)]
  assert sum(leaf.nbytes for leaf in kept) == sum(reference[path].nbytes for path in DECAYED)
  before = by_path(nnx.state(model, nnx.Param))
  for _ in range(5):
    nnx_step(model, optimizer, x, y)
  after = by_path(nnx.state(model, nnx.Param))
  for path in DECAYED:
    distance = np.linalg.norm(after[path] - reference[path])
    assert distance < np.linalg.norm(before[path] - reference[path]), path
  report = ll2.describe(nnx.state(model, nnx.Param), 100.0, reference=pretrained)
  rows = {row.path: row for row in report.rows}
  distance = np.linalg.norm(after["out/kernel"] - reference["out/kernel"])
  assert rows["out/kernel"].distance == pytest.approx(distance, rel=1e-5)


# --------------------------------------------------------------------------------------------
# Learning-rate factors: `layer_adamw(lr_scaling=...)` in both loops, `layer_lr` on NNX paths.

BASE_WIDTH = 8  # the hidden width of the base model the rate was tuned on


def lr_scaled_by_hand() -> optax.GradientTransformation:
  """``layer_adamw`` with ``"none"`` and ``lr_scaling="inv_fan_in"``, width 32 against
  ``BASE_WIDTH``, from Optax alone.

  Both kernels of the base have fan-in 8 (the 8 input features, the width 8), so a kernel of
  fan-in ``n`` gets ``r = 8 / n`` (``hidden`` 1, ``out`` 1/4). The decay is not multiplied by it.
  """

  def rate(update):
    return update * (BASE_WIDTH / update.shape[0]) if update.ndim == 2 else update

  return optax.chain(
    optax.scale_by_adam(),
    optax.stateless(lambda updates, params: jax.tree.map(rate, updates)),
    optax.add_decayed_weights(WEIGHT_DECAY, mask=lambda p: jax.tree.map(lambda w: w.ndim == 2, p)),
    optax.scale_by_learning_rate(LEARNING_RATE),
  )


@pytest.mark.parametrize("framework", ["linen", "nnx"])
def test_layer_adamw_with_lr_scaling_is_adam_times_r_plus_unscaled_decay(framework):
  # `nnx.Optimizer` gives `init` a State of `nnx.Param` and `update` bare arrays: a `base` of
  # either kind is matched to both by its leaf paths.
  name = framework
  base = jax.eval_shape(lambda: initial_params(name, BASE_WIDTH))
  tx = ll2.layer_adamw(LEARNING_RATE, WEIGHT_DECAY, "none", lr_scaling="inv_fan_in", base=base)
  fit = FITS[name]
  scaled, by_hand = fit(tx, 3), fit(lr_scaled_by_hand(), 3)
  for got, want in ((scaled.first, by_hand.first), (scaled.last, by_hand.last)):
    got, want = by_path(got), by_path(want)
    for path in DECAYED + UNTOUCHED:
      np.testing.assert_allclose(got[path], want[path], rtol=1e-6, atol=1e-8, err_msg=path)

  # One step from the same weights: only `out/kernel`, whose fan-in grew 4 times, moves
  # otherwise than without `lr_scaling`; its Adam step is a quarter, its decay the same.
  unscaled = by_path(fit(ll2.layer_adamw(LEARNING_RATE, WEIGHT_DECAY, "none"), 1).first)
  first = by_path(scaled.first)
  for path in (*UNTOUCHED, "hidden/kernel"):
    np.testing.assert_array_equal(first[path], unscaled[path], err_msg=path)
  start = by_path(initial_params(name))["out/kernel"]
  decay = LEARNING_RATE * WEIGHT_DECAY * start
  np.testing.assert_allclose(
    start - first["out/kernel"] - decay,
    (start - unscaled["out/kernel"] - decay) / 4,
    rtol=1e-4,
    atol=3e-7,
  )


class NnxAttentionNet(nnx.Module):
  """An embedding, self-attention with one head per 4 features, and a linear readout."""

  def __init__(self, width: int, rngs: nnx.Rngs):
    self.embed = nnx.Embed(11, width, rngs=rngs)
    self.attention = attention(width)(rngs)
    self.head = nnx.Linear(width, 5, rngs=rngs)


def attention(width: int) -> Callable[[nnx.Rngs], nnx.MultiHeadAttention]:
  return lambda rngs: nnx.MultiHeadAttention(
    num_heads=width // 4, in_features=width, decode=False, rngs=rngs
  )


# At width 32 against 8 (heads 8 against 2): query/key/value kernels (32, 8, 4) have fan-in 32,
# the features; `out` kernels (8, 4, 32) have 8 * 4, heads times head_dim; the readout 32. The
# embedding (11, 32) reads as a dense kernel of fan-in 11, which does not grow with the width.
GROWING = (
  *(f"attention/{name}/kernel" for name in ("key", "out", "query", "value")),
  "head/kernel",
)


@pytest.mark.parametrize(
  ("lr_scaling", "factor"), [("inv_fan_in", 1 / 4), ("inv_sqrt_fan_in", 1 / 2), ("none", 1.0)]
)
def test_layer_lr_factors_on_nnx_attention_embedding_and_linear_paths(lr_scaling, factor):
  params = nnx_params(lambda rngs: NnxAttentionNet(32, rngs))
  base = jax.eval_shape(lambda: nnx_params(lambda rngs: NnxAttentionNet(BASE_WIDTH, rngs)))
  report = ll2.describe(params, 0.1, "none", lr_scaling=lr_scaling, base=base)
  rows = {row.path: row for row in report.rows}
  selected = sorted(path for path, row in rows.items() if row.skipped is None)
  assert selected == sorted((*GROWING, "embed/embedding"))
  assert len(rows) == len(selected) + 5  # four projection biases and the readout's
  for path, row in rows.items():
    assert row.lr_factor == pytest.approx(factor if path in GROWING else 1.0, rel=1e-12), path
  assert (rows["attention/query/kernel"].fan_in, rows["attention/out/kernel"].fan_in) == (32, 32)
  assert rows["embed/embedding"].fan_in == 11

  # The transformation multiplies each leaf's update by the factor the report gives it.
  tx = ll2.layer_lr(lr_scaling, base=base)
  updates, _ = jax.jit(tx.update)(jax.tree.map(jnp.ones_like, params), tx.init(params))
  for row, update in zip(report.rows, jax.tree.leaves(updates), strict=True):
    np.testing.assert_allclose(update, row.lr_factor, rtol=1e-6, err_msg=row.path)


# (id, params of `layers` stacked layers of a width, params of one such layer alone)
STACKED_LR_CASES = [
  (
    "linen-scan-Dense",
    lambda width, layers: scanned_params(nn.initializers.lecun_normal(), layers, width),
    lambda width: linen_params(nn.Dense(12), jnp.ones((1, width))),
  ),
  (
    "nnx-vmap-MultiHeadAttention",
    lambda width, layers: stacked_nnx_params(attention(width), layers),
    lambda width: nnx_params(attention(width)),
  ),
]


@pytest.mark.parametrize(
  ("stack", "alone"),
  [case[1:] for case in STACKED_LR_CASES],
  ids=[case[0] for case in STACKED_LR_CASES],
)
def test_each_stacked_layer_gets_the_rate_factor_it_would_get_alone(stack, alone):
  # Three layers of width 32 against a base of two of width 8: the layer axis is in neither
  # fan, so every kernel gets 8/32 of the rate, as one layer alone does.
  params, base = stack(32, 3), jax.eval_shape(lambda: stack(BASE_WIDTH, 2))
  options = {"lr_scaling": "inv_fan_in", "base": base, "dims": ll2.stacked(0)}
  rows = ll2.describe(params, 1.0, "none", **options).rows
  alone_base = jax.eval_shape(lambda: alone(BASE_WIDTH))
  alone_rows = ll2.describe(alone(32), 1.0, "none", lr_scaling="inv_fan_in", base=alone_base).rows
  assert [row.lr_factor for row in rows] == [row.lr_factor for row in alone_rows]
  kernels = [row.lr_factor for row in rows if row.skipped is None]
  assert kernels and all(factor == BASE_WIDTH / 32 for factor in kernels)

  tx = ll2.layer_lr("inv_fan_in", base=base, dims=ll2.stacked(0))
  updates, _ = jax.jit(tx.update)(jax.tree.map(jnp.ones_like, params), tx.init(params))
  for row, update in zip(rows, jax.tree.leaves(updates), strict=True):
    np.testing.assert_array_equal(update, np.full(update.shape, row.lr_factor), err_msg=row.path)
  # Without `dims` the layer axis counts in the fan-in, and the base's depth with it.
  options.pop("dims")
  unstacked = ll2.describe(params, 1.0, "none", **options).rows
  assert all(row.lr_factor != BASE_WIDTH / 32 for row in unstacked if row.skipped is None)


# --------------------------------------------------------------------------------------------
# Optax wrappers in the linen loop.


def test_multi_steps_in_the_linen_loop_equals_one_step_on_the_mean_gradient():
  x, y = teacher_data()
  halves = [(x[:64], y[:64]), (x[64:], y[64:])]
  state = linen_state(optax.MultiSteps(regularised(), every_k_schedule=2))
  start = state.params
  state, _ = linen_step(state, *halves[0])
  unchanged = jax.tree.map(np.array_equal, state.params, start)
  assert all(jax.tree.leaves(unchanged)), "MultiSteps applied an update before k micro-steps"
  state, _ = linen_step(state, *halves[1])

  @jax.jit
  def one_step_on_the_mean_gradient(state):
    def grads(x, y):
      return jax.grad(lambda p: cross_entropy(state.apply_fn({"params": p}, x), y))(state.params)

    mean = jax.tree.map(lambda a, b: (a + b) / 2, grads(*halves[0]), grads(*halves[1]))
    return state.apply_gradients(grads=mean)

  reference = one_step_on_the_mean_gradient(linen_state(regularised()))
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
    state.params,
    reference.params,
  )
  assert not np.array_equal(state.params["hidden"]["kernel"], start["hidden"]["kernel"])


def test_inject_hyperparams_in_the_linen_loop_follows_the_injected_rate():
  x, y = teacher_data()
  injected = optax.inject_hyperparams(
    lambda weight_decay, learning_rate: optax.chain(
      ll2.layer_l2(weight_decay), optax.adam(learning_rate)
    )
  )(weight_decay=0.5, learning_rate=LEARNING_RATE)
  schedule = optax.piecewise_constant_schedule(0.5, {3: 4.0})  # 0.5 for 3 steps, then 2.0
  scheduled = regularised(schedule)
  constant = regularised(0.5)

  states = {"injected": linen_state(injected), "scheduled": linen_state(scheduled)}
  states["constant"] = linen_state(constant)
  for step in range(6):
    if step == 3:
      hyperparams = states["injected"].opt_state.hyperparams
      hyperparams["weight_decay"] = jnp.asarray(2.0, hyperparams["weight_decay"].dtype)
    states = {name: linen_step(state, x, y)[0] for name, state in states.items()}
    if step == 2:  # the schedule is still at 0.5
      jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
        states["scheduled"].params,
        states["constant"].params,
      )
  assert states["scheduled"].opt_state[0].count == 6
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
    states["injected"].params,
    states["scheduled"].params,
  )
  kernel = states["constant"].params["hidden"]["kernel"]
  assert not np.allclose(states["injected"].params["hidden"]["kernel"], kernel, rtol=1e-5)


def test_the_printed_report_of_a_flax_attention_layer_says_where_its_fans_came_from():
  # Flax's attention kernels are read by their path; the table then has a column saying so.
  attention = nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=8)
  params = jax.eval_shape(lambda: attention.init(jax.random.key(0), jnp.ones((1, 3, 8))))
  report = ll2.describe(params["params"], 0.1)
  assert str(report) == "\n".join(
    [
      "path          shape      fan_in  fan_out  fans from      s  lambda*s  penalty  skipped",
      "------------  ---------  ------  -------  ----------  ----  --------  -------  ------------",
      "key/bias      (2, 4)          2        4  shape rule     0         0        -  named 'bias'",
      "key/kernel    (8, 2, 4)       8        8  path rule   0.25     0.025        -",
      "out/bias      (8,)            1        8  shape rule     0         0        -  named 'bias'",
      "out/kernel    (2, 4, 8)       8        8  path rule   0.25     0.025        -",
      "query/bias    (2, 4)          2        4  shape rule     0         0        -  named 'bias'",
      "query/kernel  (8, 2, 4)       8        8  path rule   0.25     0.025        -",
      "value/bias    (2, 4)          2        4  shape rule     0         0        -  named 'bias'",
      "value/kernel  (8, 2, 4)       8        8  path rule   0.25     0.025        -",
      "4 of 8 leaves decayed; weight_decay=0.1, scaling=fan_avg; total penalty -",
    ]
  )
