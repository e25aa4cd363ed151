"""``infer_dims`` on the layers of Flax, Equinox and Haiku, against each framework's initializer.

Each layer is built with a uniform variance-scaling kernel initializer
where the framework takes one (Flax's ``variance_scaling(1.0, mode,
"uniform")``, Haiku's ``VarianceScaling``), and with its own where it has
its own (Equinox draws uniformly within ``1 / sqrt(fan_in)``). A uniform draw
within ``limit = sqrt(3 * scale / fan)`` reaches nearly its limit in a few
hundred draws, so ``3 * scale / max|w|^2`` estimates the fan that the
framework used, from above, within about ``2 / n`` for ``n`` elements. The
fan that the inferred ``Dims`` give must match it within 5%: the errors
this guards against (an attention kernel's fan-in counted with the heads, a
conv kernel's with its output channels) are 2x or more.

Flax's ``DenseGeneral`` and ``nnx.LinearGeneral`` flatten their kernel to
``(inputs, outputs)`` for the initializer, so for them this checks the whole
mapping of the kernel's axes to the computation's.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_layer_l2 as ll2

nn = pytest.importorskip("flax.linen")
nnx = pytest.importorskip("flax.nnx")

KEY = jax.random.key(0)
MODES = ["fan_in", "fan_out"]


def uniform(mode):
  return jax.nn.initializers.variance_scaling(1.0, mode, "uniform")


def framework_fan(leaf, limit_squared_times_fan=3.0):
  """The fan of the uniform init that drew ``leaf``: ``limit^2 = limit_squared_times_fan / fan``."""
  leaf = np.asarray(leaf, np.float64)
  assert leaf.size >= 200, f"too few elements ({leaf.size}) to estimate the limit"
  return limit_squared_times_fan / np.max(np.abs(leaf)) ** 2


def assert_fans_match_init(leaf, dims, mode, limit_squared_times_fan=3.0):
  fans = ll2.fans(leaf.shape, dims)
  ours = fans.fan_in if mode == "fan_in" else fans.fan_out
  theirs = framework_fan(leaf, limit_squared_times_fan)
  assert theirs == pytest.approx(ours, rel=0.05), (mode, leaf.shape, dims, ours, theirs)


def _is_dims(x):
  return x is None or isinstance(x, ll2.Dims)


def pairs(params, dims):
  """``(path, leaf, dims)`` of every leaf that the computation contracts with data."""
  leaves = jax.tree_util.tree_flatten_with_path(params, is_leaf=lambda x: x is None)[0]
  found = jax.tree.leaves(dims, is_leaf=_is_dims)
  assert len(leaves) == len(found)
  return [
    (jax.tree_util.keystr(path, simple=True, separator="/"), leaf, d)
    for (path, leaf), d in zip(leaves, found, strict=True)
    if d is not None
  ]


def linen_dims(module, *inputs):
  params = module.init(KEY, *inputs)
  return params, ll2.infer_dims(lambda p, *xs: module.apply(p, *xs), params, *inputs)


def fans_by_path(params, dims):
  return {path: ll2.fans(leaf.shape, d)[:2] for path, leaf, d in pairs(params, dims)}


# ---------------------------------------------------------------------------
# Flax linen.


@pytest.mark.parametrize("mode", MODES)
def test_linen_dense(mode):
  params, dims = linen_dims(nn.Dense(48, kernel_init=uniform(mode)), jnp.ones((2, 40)))
  assert fans_by_path(params, dims) == {"params/kernel": (40, 48)}
  assert dims["params"]["bias"] is None
  assert_fans_match_init(params["params"]["kernel"], dims["params"]["kernel"], mode)


@pytest.mark.parametrize("mode", MODES)
def test_linen_dense_general_with_multi_axis_features(mode):
  # An attention query projection: d_model 64 -> (heads 8, head_dim 16).
  module = nn.DenseGeneral((8, 16), kernel_init=uniform(mode))
  params, dims = linen_dims(module, jnp.ones((2, 5, 64)))
  assert fans_by_path(params, dims) == {"params/kernel": (64, 128)}
  assert ll2.fans((64, 8, 16))[:2] == (512, 1024)  # the shape rule's guess
  assert_fans_match_init(params["params"]["kernel"], dims["params"]["kernel"], mode)


@pytest.mark.parametrize("mode", MODES)
def test_linen_dense_general_over_two_input_axes(mode):
  # An attention output projection: (heads 8, head_dim 16) -> d_model 64.
  module = nn.DenseGeneral(64, axis=(-2, -1), kernel_init=uniform(mode))
  params, dims = linen_dims(module, jnp.ones((2, 5, 8, 16)))
  assert fans_by_path(params, dims) == {"params/kernel": (128, 64)}
  assert_fans_match_init(params["params"]["kernel"], dims["params"]["kernel"], mode)


@pytest.mark.parametrize("mode", MODES)
def test_linen_einsum_gemma_query(mode):
  # Gemma's q_einsum: kernel (heads, d_model, head_dim). Flax initializes an Einsum
  # kernel by its shape, so the initializer is told the axes; the default ones
  # (-2, -1) would give fan-in 64 * 8 = 512.
  init = jax.nn.initializers.variance_scaling(1.0, mode, "uniform", in_axis=1, out_axis=(0, 2))
  module = nn.Einsum((8, 64, 16), "btd,ndh->btnh", kernel_init=init, use_bias=False)
  params, dims = linen_dims(module, jnp.ones((2, 5, 64)))
  assert fans_by_path(params, dims) == {"params/kernel": (64, 128)}
  assert dims["params"]["kernel"] == ll2.Dims(in_axes=1, out_axes=(0, 2))
  assert_fans_match_init(params["params"]["kernel"], dims["params"]["kernel"], mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
  "make, channels, expected",
  [
    (lambda init: nn.Conv(16, (3, 3), kernel_init=init), 3, (27, 144)),
    (lambda init: nn.ConvTranspose(16, (3, 3), kernel_init=init), 3, (27, 144)),
    (lambda init: nn.Conv(30, (3, 3), feature_group_count=3, kernel_init=init), 6, (18, 270)),
  ],
  ids=["Conv", "ConvTranspose", "grouped-Conv"],
)
def test_linen_convolutions(make, channels, expected, mode):
  params, dims = linen_dims(make(uniform(mode)), jnp.ones((2, 8, 8, channels)))
  assert fans_by_path(params, dims) == {"params/kernel": expected}
  assert_fans_match_init(params["params"]["kernel"], dims["params"]["kernel"], mode)


def test_linen_embed_reads_as_the_default_rule():
  # The lookup axis is fan-in, as the default rule has it (Flax's own init,
  # variance 1/features, is not a fan rule, so the rule is what is compared).
  params, dims = linen_dims(nn.Embed(100, 32), jnp.ones((2, 7), jnp.int32))
  table = params["params"]["embedding"]
  assert dims["params"]["embedding"] == ll2.Dims(0, 1)
  assert ll2.fans(table.shape, dims["params"]["embedding"]) == ll2.fans(table.shape)
  assert dims["params"]["embedding"].use.endswith(", a lookup")


@pytest.mark.parametrize("mode", MODES)
def test_linen_multi_head_dot_product_attention(mode):
  module = nn.MultiHeadDotProductAttention(num_heads=4, qkv_features=64, kernel_init=uniform(mode))
  x = jnp.ones((2, 5, 48))
  params, dims = linen_dims(module, x)
  assert fans_by_path(params, dims) == {
    "params/key/kernel": (48, 64),
    "params/out/kernel": (64, 48),
    "params/query/kernel": (48, 64),
    "params/value/kernel": (48, 64),
  }
  for _, leaf, d in pairs(params, dims):
    assert_fans_match_init(leaf, d, mode)


class Block(nn.Module):
  kernel_init: object

  @nn.compact
  def __call__(self, x, _):
    return nn.LayerNorm()(nn.relu(nn.Dense(32, kernel_init=self.kernel_init)(x))), None


class Stack(nn.Module):
  kernel_init: object

  @nn.compact
  def __call__(self, x):
    x = nn.Dense(32, kernel_init=self.kernel_init)(x)
    scanned = nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True}, length=4)(
      self.kernel_init
    )
    x, _ = scanned(x, None)
    return nn.Dense(10, kernel_init=self.kernel_init)(x)


@pytest.mark.parametrize("mode", MODES)
def test_linen_scan_stacked_blocks_get_per_layer_fans(mode):
  params, dims = linen_dims(Stack(uniform(mode)), jnp.ones((2, 40)))
  block = dims["params"]["ScanBlock_0"]
  assert block["Dense_0"]["kernel"] == ll2.Dims(in_axes=1, out_axes=2, batch_axes=0)
  assert block["Dense_0"]["bias"] is None and block["LayerNorm_0"]["scale"] is None
  assert fans_by_path(params, dims) == {
    "params/Dense_0/kernel": (40, 32),
    "params/Dense_1/kernel": (32, 10),
    "params/ScanBlock_0/Dense_0/kernel": (32, 32),
  }
  for _, leaf, d in pairs(params, dims):
    assert_fans_match_init(leaf, d, mode)


def test_linen_bfloat16_compute_with_float32_params():
  module = nn.DenseGeneral((8, 16), dtype=jnp.bfloat16, kernel_init=uniform("fan_in"))
  params, dims = linen_dims(module, jnp.ones((2, 5, 64), jnp.bfloat16))
  assert params["params"]["kernel"].dtype == jnp.float32
  assert fans_by_path(params, dims) == {"params/kernel": (64, 128)}
  assert_fans_match_init(params["params"]["kernel"], dims["params"]["kernel"], "fan_in")


def test_linen_model_given_as_eval_shape_shapes():
  module = nn.MultiHeadDotProductAttention(num_heads=4, qkv_features=64)
  x = jax.ShapeDtypeStruct((2, 5, 48), jnp.float32)
  shapes = jax.eval_shape(module.init, KEY, x)
  dims = ll2.infer_dims(lambda p, x: module.apply(p, x), shapes, x)
  params = nn.MultiHeadDotProductAttention(
    num_heads=4, qkv_features=64, kernel_init=uniform("fan_in")
  ).init(KEY, jnp.ones((2, 5, 48)))
  assert jax.tree.structure(params) == jax.tree.structure(dims, is_leaf=_is_dims)
  for _, leaf, d in pairs(params, dims):
    assert_fans_match_init(leaf, d, "fan_in")


# ---------------------------------------------------------------------------
# Flax NNX.


def nnx_dims(module, *inputs):
  graphdef, state = nnx.split(module, nnx.Param)
  rest = nnx.split(module, nnx.Param, ...)[2]

  def fn(params, *xs):
    return nnx.merge(graphdef, params, rest)(*xs)

  return state, ll2.infer_dims(fn, state, *inputs)


def nnx_pairs(state, dims):
  return pairs(nnx.to_pure_dict(state), nnx.to_pure_dict(dims))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
  "make, x, expected",
  [
    (lambda init: nnx.Linear(40, 48, kernel_init=init, rngs=nnx.Rngs(0)), (2, 40), (40, 48)),
    (
      lambda init: nnx.LinearGeneral(64, (8, 16), kernel_init=init, rngs=nnx.Rngs(0)),
      (2, 64),
      (64, 128),
    ),
    (
      lambda init: nnx.LinearGeneral(
        (8, 16), 64, axis=(-2, -1), kernel_init=init, rngs=nnx.Rngs(0)
      ),
      (2, 8, 16),
      (128, 64),
    ),
    (
      lambda init: nnx.Conv(3, 16, (3, 3), kernel_init=init, rngs=nnx.Rngs(0)),
      (2, 8, 8, 3),
      (27, 144),
    ),
  ],
  ids=["Linear", "LinearGeneral", "LinearGeneral-two-axes", "Conv"],
)
def test_nnx_layers(make, x, expected, mode):
  state, dims = nnx_dims(make(uniform(mode)), jnp.ones(x))
  (found,) = nnx_pairs(state, dims)
  path, leaf, d = found
  assert (path, ll2.fans(leaf.shape, d)[:2]) == ("kernel", expected)
  assert_fans_match_init(leaf, d, mode)


@pytest.mark.parametrize("mode", MODES)
def test_nnx_einsum(mode):
  init = jax.nn.initializers.variance_scaling(1.0, mode, "uniform", in_axis=1, out_axis=(0, 2))
  module = nnx.Einsum("btd,ndh->btnh", (8, 64, 16), kernel_init=init, rngs=nnx.Rngs(0))
  state, dims = nnx_dims(module, jnp.ones((2, 5, 64)))
  (found,) = nnx_pairs(state, dims)
  path, leaf, d = found
  assert (path, ll2.fans(leaf.shape, d)[:2]) == ("kernel", (64, 128))
  assert_fans_match_init(leaf, d, mode)


@pytest.mark.parametrize("mode", MODES)
def test_nnx_multi_head_attention(mode):
  module = nnx.MultiHeadAttention(
    num_heads=4, in_features=48, qkv_features=64, kernel_init=uniform(mode), decode=False,
    rngs=nnx.Rngs(0),
  )  # fmt: skip
  state, dims = nnx_dims(module, jnp.ones((2, 5, 48)))
  found = {path: ll2.fans(leaf.shape, d)[:2] for path, leaf, d in nnx_pairs(state, dims)}
  assert found == {
    "key/kernel": (48, 64),
    "out/kernel": (64, 48),
    "query/kernel": (48, 64),
    "value/kernel": (48, 64),
  }
  for _, leaf, d in nnx_pairs(state, dims):
    assert_fans_match_init(leaf, d, mode)


class _NnxBlock(nnx.Module):
  def __init__(self, rngs):
    self.linear = nnx.Linear(32, 32, kernel_init=uniform("fan_in"), rngs=rngs)
    self.norm = nnx.LayerNorm(32, rngs=rngs)

  def __call__(self, x):
    return self.norm(jax.nn.relu(self.linear(x)))


class _NnxStack(nnx.Module):
  def __init__(self, rngs):
    @nnx.split_rngs(splits=4)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def blocks(rngs):
      return _NnxBlock(rngs)

    self.blocks = blocks(rngs)
    self.head = nnx.Linear(32, 10, kernel_init=uniform("fan_in"), rngs=rngs)

  def __call__(self, x):
    @nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)
    def run(block, x):
      return block(x)

    return self.head(run(self.blocks, x))


def test_nnx_vmap_made_stack_run_by_nnx_scan():
  state, dims = nnx_dims(_NnxStack(nnx.Rngs(0)), jnp.ones((2, 32)))
  pure = nnx.to_pure_dict(dims)
  assert pure["blocks"]["linear"]["kernel"] == ll2.Dims(in_axes=1, out_axes=2, batch_axes=0)
  assert pure["blocks"]["norm"] == {"scale": None, "bias": None}
  found = {path: ll2.fans(leaf.shape, d)[:2] for path, leaf, d in nnx_pairs(state, dims)}
  assert found == {"blocks/linear/kernel": (32, 32), "head/kernel": (32, 10)}
  for _, leaf, d in nnx_pairs(state, dims):
    assert_fans_match_init(leaf, d, "fan_in")
  # And the result goes into the transformation as it is, a tree of nnx.Param.
  scales = nnx.to_pure_dict(ll2.scales(state, "fan_in", dims=dims))
  assert scales["blocks"]["linear"]["kernel"] == 1 / 32 and scales["head"]["kernel"] == 1 / 10
  assert scales["blocks"]["norm"]["scale"] == 0.0


def test_nnx_optimizer_takes_the_inferred_dims_as_they_are():
  # nnx.Optimizer gives `init` the params as nnx.Param and `update` as bare arrays;
  # the result holds Dims without the boxes, a prefix of both.
  model = nnx.LinearGeneral(32, (4, 8), rngs=nnx.Rngs(0))
  _, dims = nnx_dims(model, jnp.ones((2, 32)))
  assert not any(isinstance(x, nnx.Variable) for x in jax.tree.leaves(dims, is_leaf=_is_dims))
  tx = optax.chain(ll2.layer_l2(0.5, "fan_in", dims=dims), optax.sgd(1.0))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  kernel = model.kernel[...]

  @nnx.jit
  def step(model, optimizer):
    grads = nnx.grad(lambda m: 0.0 * m(jnp.ones((2, 32))).sum())(model)
    optimizer.update(model, grads)

  step(model, optimizer)
  # The decay alone: w - 0.5 * (fan_in / numel = 1 / 32) * w; the bias is not decayed.
  np.testing.assert_allclose(model.kernel[...], kernel * (1 - 0.5 / 32), rtol=1e-6)
  np.testing.assert_array_equal(model.bias[...], 0.0)


# ---------------------------------------------------------------------------
# Equinox: its own init draws within 1 / sqrt(fan_in), so fan_in = 1 / max|w|^2.


def eqx_dims(model, fn, x):
  eqx = pytest.importorskip("equinox")
  params, static = eqx.partition(model, eqx.is_array)
  return params, ll2.infer_dims(lambda p, x: fn(eqx.combine(p, static), x), params, x)


def _batched(model, x):
  return jax.vmap(model)(x)


def _attend(model, x):
  return jax.vmap(lambda y: model(y, y, y))(x)


def _lookup(model, ids):
  return jax.vmap(jax.vmap(model))(ids)


def test_equinox_linear_and_mlp():
  eqx = pytest.importorskip("equinox")
  mlp = eqx.nn.MLP(40, 10, 64, 2, key=KEY)
  params, dims = eqx_dims(mlp, _batched, jnp.ones((2, 40)))
  found = {path: ll2.fans(leaf.shape, d)[:2] for path, leaf, d in pairs(params, dims)}
  assert found == {
    "layers/0/weight": (40, 64),
    "layers/1/weight": (64, 64),
    "layers/2/weight": (64, 10),
  }
  assert dims.layers[0].weight == ll2.Dims(in_axes=1, out_axes=0)  # (out, in)
  assert dims.layers[0].bias is None
  for _, leaf, d in pairs(params, dims):
    assert_fans_match_init(leaf, d, "fan_in", limit_squared_times_fan=1.0)


@pytest.mark.parametrize(
  "make, channels, expected",
  [
    (lambda eqx: eqx.nn.Conv2d(3, 16, 3, key=KEY), 3, (27, 144)),
    (lambda eqx: eqx.nn.Conv2d(32, 32, 3, groups=32, key=KEY), 32, (9, 288)),
    # Equinox's ConvTranspose draws within 1 / sqrt(in_channels / groups * kernel
    # size), as a Conv with those input channels: the axis the data is contracted with.
    (lambda eqx: eqx.nn.ConvTranspose2d(3, 16, 3, key=KEY), 3, (27, 144)),
    (lambda eqx: eqx.nn.ConvTranspose2d(16, 16, 3, stride=2, key=KEY), 16, (144, 144)),
  ],
  ids=["Conv2d", "depthwise-Conv2d", "ConvTranspose2d", "strided-ConvTranspose2d"],
)
def test_equinox_convolutions(make, channels, expected):
  eqx = pytest.importorskip("equinox")
  params, dims = eqx_dims(make(eqx), _batched, jnp.ones((2, channels, 8, 8)))
  assert dims.weight.in_axes == (1,) and dims.weight.out_axes == (0,)  # OIHW
  assert ll2.fans(params.weight.shape, dims.weight)[:2] == expected
  assert dims.bias is None
  assert_fans_match_init(params.weight, dims.weight, "fan_in", limit_squared_times_fan=1.0)


def test_equinox_multihead_attention():
  eqx = pytest.importorskip("equinox")
  params, dims = eqx_dims(eqx.nn.MultiheadAttention(4, 48, key=KEY), _attend, jnp.ones((2, 5, 48)))
  found = {path: ll2.fans(leaf.shape, d)[:2] for path, leaf, d in pairs(params, dims)}
  assert found == {
    "query_proj/weight": (48, 48),
    "key_proj/weight": (48, 48),
    "value_proj/weight": (48, 48),
    "output_proj/weight": (48, 48),
  }
  for _, leaf, d in pairs(params, dims):
    assert d == ll2.Dims(in_axes=1, out_axes=0)
    assert_fans_match_init(leaf, d, "fan_in", limit_squared_times_fan=1.0)


def test_equinox_embedding_reads_as_the_default_rule():
  eqx = pytest.importorskip("equinox")
  params, dims = eqx_dims(eqx.nn.Embedding(100, 32, key=KEY), _lookup, jnp.ones((2, 7), jnp.int32))
  assert dims.weight == ll2.Dims(0, 1)  # Equinox draws N(0, 1): no fan to compare with
  assert ll2.fans(params.weight.shape, dims.weight) == ll2.fans(params.weight.shape)


# ---------------------------------------------------------------------------
# Haiku.


def haiku_dims(build, x):
  hk = pytest.importorskip("haiku")
  model = hk.without_apply_rng(hk.transform(build))
  params = model.init(KEY, x)
  return params, ll2.infer_dims(model.apply, params, x)


@pytest.mark.parametrize("mode", MODES)
def test_haiku_linear_and_conv(mode):
  hk = pytest.importorskip("haiku")
  init = hk.initializers.VarianceScaling(1.0, mode, "uniform")

  def build(x):
    h = jax.nn.relu(hk.Conv2D(16, 3, w_init=init)(x))
    return hk.Linear(10, w_init=init)(h.reshape(x.shape[0], -1)[:, :64])

  params, dims = haiku_dims(build, jnp.ones((2, 8, 8, 3)))
  assert fans_by_path(params, dims) == {"conv2_d/w": (27, 144), "linear/w": (64, 10)}
  assert dims["conv2_d"]["b"] is None and dims["linear"]["b"] is None
  for _, leaf, d in pairs(params, dims):
    assert_fans_match_init(leaf, d, mode)


@pytest.mark.parametrize("mode", MODES)
def test_haiku_multi_head_attention(mode):
  hk = pytest.importorskip("haiku")
  init = hk.initializers.VarianceScaling(1.0, mode, "uniform")

  def build(x):
    return hk.MultiHeadAttention(num_heads=4, key_size=16, w_init=init, model_size=48)(x, x, x)

  params, dims = haiku_dims(build, jnp.ones((2, 5, 48)))
  assert fans_by_path(params, dims) == {
    "multi_head_attention/key/w": (48, 64),
    "multi_head_attention/linear/w": (64, 48),
    "multi_head_attention/query/w": (48, 64),
    "multi_head_attention/value/w": (48, 64),
  }
  for _, leaf, d in pairs(params, dims):
    assert_fans_match_init(leaf, d, mode)
