"""The models whose train steps are timed: a parameter tree, a loss and a batch."""

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import optax_layer_l2 as ll2


@dataclasses.dataclass(frozen=True)
class Model:
  """A parameter tree, a loss and a batch.

  Attributes:
    title: the model's name in the report.
    params: the parameter tree.
    loss: ``loss(params, batch)``, a scalar.
    batch: the one batch every step takes.
    batch_text: the batch's size, as the report says it.
  """

  title: str
  params: Any
  loss: Callable[[Any, Any], jax.Array]
  batch: Any
  batch_text: str

  @property
  def num_params(self) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(self.params))

  @property
  def num_leaves(self) -> int:
    return len(jax.tree.leaves(self.params))

  @property
  def nbytes(self) -> int:
    return sum(leaf.nbytes for leaf in jax.tree.leaves(self.params))

  def mask(self) -> Any:
    """The leaves ``layer_l2`` decays by default, as a mask for Optax."""
    return jax.tree.map(lambda s: s > 0, ll2.scales(self.params, "none"))


def normal(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 1.0) -> jax.Array:
  """Drawn by NumPy: JAX would compile a sampler per shape, slowly on a busy machine."""
  return jnp.asarray(rng.standard_normal(shape, dtype=np.float32) * np.float32(scale))


def glorot(rng: np.random.Generator, shape: tuple[int, int]) -> jax.Array:
  return normal(rng, shape, math.sqrt(2.0 / sum(shape)))


def mlp(width: int, depth: int, batch: int) -> Model:
  """``depth`` dense layers of ``width x width`` with ReLU, and a squared error."""
  rng = np.random.default_rng(0)
  params = {
    f"dense_{i}": {"kernel": glorot(rng, (width, width)), "bias": jnp.zeros(width)}
    for i in range(depth)
  }

  def loss(params: Any, batch: Any) -> jax.Array:
    x, y = batch
    for i in range(depth):
      layer = params[f"dense_{i}"]
      x = x @ layer["kernel"] + layer["bias"]
      if i < depth - 1:
        x = jax.nn.relu(x)
    return jnp.mean((x - y) ** 2)

  batch_ = (normal(rng, (batch, width)), normal(rng, (batch, width)))
  title = f"MLP, {depth} x {width}x{width}"
  return Model(title, params, loss, batch_, f"batch {batch}")


def many_leaves(heads: int, batch: int, width: int = 64) -> Model:
  """Regression heads on one input: ``tanh(x W + b) * scale + shift``, four leaves each.

  The heads' widths cycle through 32, 64, 96 and 128, so that the scalings give
  kernels of different shapes different factors; only the kernels are decayed.
  The heads sit side by side rather than in a chain: XLA compiles a chain of
  hundreds of layers many times slower, and the optimizer's work per leaf,
  which this model is here to show, is the same either way.
  """
  rng = np.random.default_rng(1)
  widths = [32 * (1 + i % 4) for i in range(heads)]
  params = {
    f"head_{i:04d}": {
      "dense": {"kernel": glorot(rng, (width, hidden)), "bias": jnp.zeros(hidden)},
      "norm": {"scale": jnp.ones(hidden), "bias": jnp.zeros(hidden)},
    }
    for i, hidden in enumerate(widths)
  }

  def loss(params: Any, batch: Any) -> jax.Array:
    x, y = batch
    total = jnp.zeros(())
    for i, hidden in enumerate(widths):
      head = params[f"head_{i:04d}"]
      h = jnp.tanh(x @ head["dense"]["kernel"] + head["dense"]["bias"])
      h = h * head["norm"]["scale"] + head["norm"]["bias"]
      total = total + jnp.mean((h - y[:, :hidden]) ** 2)
    return total / heads

  batch_ = (normal(rng, (batch, width)), normal(rng, (batch, max(widths))))
  title = f"{heads} regression heads"
  return Model(title, params, loss, batch_, f"batch {batch}")
