"""What the tests share: parameter trees, the first update, x64, leaves that are not arrays.

The trees and helpers are plain names, imported as ``from conftest import
make_params`` (the tests folder is no package, so pytest puts it on the path);
``x64`` is a fixture.
"""

import jax
import jax.numpy as jnp
import pytest

# A dense layer small enough that every error names a leaf of it.
PARAMS = {"dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.ones(3)}}
GRADS = jax.tree.map(jnp.ones_like, PARAMS)


def make_params(seed=0, dtype=jnp.float32):
  """A tree with a leaf of every kind a model has, random normal values.

  ``(fan_in, fan_out, numel)`` of its decayed leaves under the default rule:
  ``dense/kernel`` (40, 24): (40, 24, 960); ``conv/kernel`` (3, 3, 4, 8), HWIO:
  (36, 72, 288); ``attn/query/kernel`` (24, 2, 6), features to heads x head_dim:
  (24, 12, 288); ``attn/out/kernel`` (2, 6, 24): (12, 24, 288);
  ``embed/embedding`` (50, 24): (50, 24, 1200). The biases and ``norm/scale`` are
  not decayed.
  """
  keys = iter(jax.random.split(jax.random.key(seed), 16))

  def normal(*shape):
    return jax.random.normal(next(keys), shape, dtype)

  return {
    "dense": {"kernel": normal(40, 24), "bias": normal(24)},
    "conv": {"kernel": normal(3, 3, 4, 8), "bias": normal(8)},
    "attn": {
      "query": {"kernel": normal(24, 2, 6), "bias": normal(2, 6)},
      "out": {"kernel": normal(2, 6, 24), "bias": normal(24)},
    },
    "embed": {"embedding": normal(50, 24)},
    "norm": {"scale": normal(24)},
  }


# The leaves of `make_params` the default rule decays, and those it leaves alone.
DECAYED = [
  ("dense", "kernel"),
  ("conv", "kernel"),
  ("attn", "query", "kernel"),
  ("attn", "out", "kernel"),
  ("embed", "embedding"),
]
UNTOUCHED = [
  ("dense", "bias"),
  ("conv", "bias"),
  ("attn", "query", "bias"),
  ("attn", "out", "bias"),
  ("norm", "scale"),
]

# `c(leaf)` of each named scaling for the decayed leaves of `make_params`, worked out by hand
# from (fan_in, fan_out, numel): dense (40, 24, 960), conv (36, 72, 288), query (24, 12, 288),
# out (12, 24, 288), embedding (50, 24, 1200).
SCALES_OF_MAKE_PARAMS = {
  "none": dict.fromkeys(
    ["dense/kernel", "conv/kernel", "attn/query/kernel", "attn/out/kernel", "embed/embedding"],
    1.0,
  ),
  "numel": {  # 1 / numel
    "dense/kernel": 1 / 960,
    "conv/kernel": 1 / 288,
    "attn/query/kernel": 1 / 288,
    "attn/out/kernel": 1 / 288,
    "embed/embedding": 1 / 1200,
  },
  "fan_avg": {  # (fan_in + fan_out) / numel
    "dense/kernel": 1 / 15,  # 64 / 960
    "conv/kernel": 3 / 8,  # 108 / 288
    "attn/query/kernel": 1 / 8,  # 36 / 288
    "attn/out/kernel": 1 / 8,  # 36 / 288
    "embed/embedding": 37 / 600,  # 74 / 1200
  },
  "fan_in": {  # fan_in / numel = 1 / fan_out
    "dense/kernel": 1 / 24,
    "conv/kernel": 1 / 8,  # 36 / 288
    "attn/query/kernel": 1 / 12,
    "attn/out/kernel": 1 / 24,
    "embed/embedding": 1 / 24,
  },
  "fan_out": {  # fan_out / numel = 1 / fan_in
    "dense/kernel": 1 / 40,
    "conv/kernel": 1 / 4,  # 72 / 288
    "attn/query/kernel": 1 / 24,
    "attn/out/kernel": 1 / 12,
    "embed/embedding": 1 / 50,
  },
  "sqrt_fan_in": {
    "dense/kernel": 6.324555320336759,  # sqrt(40)
    "conv/kernel": 6.0,  # sqrt(36)
    "attn/query/kernel": 4.898979485566356,  # sqrt(24)
    "attn/out/kernel": 3.4641016151377544,  # sqrt(12)
    "embed/embedding": 7.0710678118654755,  # sqrt(50)
  },
  "sqrt_fan_avg": {  # sqrt((fan_in + fan_out) / 2)
    "dense/kernel": 5.656854249492381,  # sqrt(32)
    "conv/kernel": 7.3484692283495345,  # sqrt(54)
    "attn/query/kernel": 4.242640687119285,  # sqrt(18)
    "attn/out/kernel": 4.242640687119285,  # sqrt(18)
    "embed/embedding": 6.082762530298219,  # sqrt(37)
  },
  "inv_sqrt_fan_in": {
    "dense/kernel": 0.15811388300841897,  # 1 / sqrt(40)
    "conv/kernel": 1 / 6,  # 1 / sqrt(36)
    "attn/query/kernel": 0.20412414523193154,  # 1 / sqrt(24)
    "attn/out/kernel": 0.2886751345948129,  # 1 / sqrt(12)
    "embed/embedding": 0.1414213562373095,  # 1 / sqrt(50)
  },
}


def model(width, dtype=jnp.float32):
  """A tree with a leaf of every kind a model has; the hidden parts' sizes follow ``width``.

  Its fan-ins at width 8 and 32: ``embed/embedding`` 50 and 50 (the vocabulary),
  ``dense/kernel`` 8 and 32, ``conv/kernel`` 72 and 288 (3 x 3 x width),
  ``attn/query/kernel`` 8 and 32, ``attn/out/kernel`` 8 and 32 (2 heads x
  width / 2), ``first/kernel`` 40 and 40.
  """
  keys = iter(jax.random.split(jax.random.key(0), 16))

  def normal(*shape):
    return jax.random.normal(next(keys), shape, dtype)

  return {
    "embed": {"embedding": normal(50, width)},
    "dense": {"kernel": normal(width, 2 * width), "bias": normal(2 * width)},
    "conv": {"kernel": normal(3, 3, width, 8), "bias": normal(8)},
    "attn": {
      "query": {"kernel": normal(width, 2, 6), "bias": normal(2, 6)},
      "out": {"kernel": normal(2, width // 2, 24), "bias": normal(24)},
    },
    "first": {"kernel": normal(40, width)},
    "norm": {"scale": normal(width)},
  }


def get(tree, keys):
  """The subtree of ``tree`` at the path ``keys``."""
  for key in keys:
    tree = tree[key]
  return tree


def keys_of(path):
  """The dict keys of a JAX key path, as a tuple."""
  return tuple(k.key for k in path)


def zeros_like(tree):
  return jax.tree.map(jnp.zeros_like, tree)


def first_update(tx, params=PARAMS, grads=GRADS):
  """``tx``'s first update of ``grads`` at ``params``, and its state."""
  return tx.update(grads, tx.init(params), params)


class ShapeOnly:
  """Has a shape but no dtype: not an array."""

  def __init__(self, shape):
    self.shape = shape


def enable_x64():
  """A context in which JAX's default float is float64."""
  enable = getattr(jax, "enable_x64", None)
  if enable is None:  # JAX before `jax.enable_x64` (the declared floor, 0.4.35)
    from jax.experimental import enable_x64 as enable
  return enable(True)


@pytest.fixture
def x64():
  """Runs the test with 64-bit floats on."""
  with enable_x64():
    yield
