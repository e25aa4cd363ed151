"""A decoder-only Transformer language model, in plain ``jax.numpy``, to time a train step on.

Pre-norm blocks of causal multi-head attention and an MLP of ``4 * d_model``
hidden units with GELU, learned token and position embeddings, a final layer
norm and an untied output head, trained on next-token cross-entropy. The leaves
are named and shaped as Flax names and shapes them, so that ``layer_l2`` reads
them as it reads a Flax model's: ``query``/``key``/``value`` kernels
``(d_model, heads, head_dim)``, ``out`` kernels ``(heads, head_dim, d_model)``,
embedding tables ``(num_embeddings, d_model)``, dense kernels ``(n_in, n_out)``.
Kernels and embeddings are decayed by default; biases and layer-norm scales are
not.
"""

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.models import Model, glorot, normal


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """The sizes of the model and of its batch.

  Attributes:
    vocab: tokens in the vocabulary.
    d_model: width of the residual stream.
    heads: attention heads; ``d_model`` must be a multiple of it.
    layers: Transformer blocks.
    context: tokens a sequence holds.
    batch: sequences a step trains on.
  """

  vocab: int
  d_model: int
  heads: int
  layers: int
  context: int
  batch: int


def _norm(d: int) -> dict[str, jax.Array]:
  return {"scale": jnp.ones(d), "bias": jnp.zeros(d)}


def _projection(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> jax.Array:
  return normal(rng, shape, 1.0 / math.sqrt(fan_in))


def init(config: TransformerConfig, seed: int = 2) -> dict[str, Any]:
  """The parameters, drawn by NumPy (see :func:`benchmarks.models.normal`)."""
  rng = np.random.default_rng(seed)
  d, heads = config.d_model, config.heads
  head_dim = d // heads
  params: dict[str, Any] = {
    "token_embed": {"embedding": normal(rng, (config.vocab, d), 1.0 / math.sqrt(d))},
    "position_embed": {"embedding": normal(rng, (config.context, d), 1.0 / math.sqrt(d))},
  }
  for i in range(config.layers):
    params[f"block_{i}"] = {
      "attention_norm": _norm(d),
      "attention": {
        "query": {"kernel": _projection(rng, (d, heads, head_dim), d)},
        "key": {"kernel": _projection(rng, (d, heads, head_dim), d)},
        "value": {"kernel": _projection(rng, (d, heads, head_dim), d)},
        "out": {"kernel": _projection(rng, (heads, head_dim, d), d)},
      },
      "mlp_norm": _norm(d),
      "mlp": {
        "up": {"kernel": glorot(rng, (d, 4 * d)), "bias": jnp.zeros(4 * d)},
        "down": {"kernel": glorot(rng, (4 * d, d)), "bias": jnp.zeros(d)},
      },
    }
  params["final_norm"] = _norm(d)
  params["head"] = {"kernel": glorot(rng, (d, config.vocab))}
  return params


def _layer_norm(x: jax.Array, norm: dict[str, jax.Array]) -> jax.Array:
  mean = jnp.mean(x, axis=-1, keepdims=True)
  variance = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(variance + 1e-6) * norm["scale"] + norm["bias"]


def _attention(x: jax.Array, attention: dict[str, Any]) -> jax.Array:
  query = jnp.einsum("btd,dhk->bthk", x, attention["query"]["kernel"])
  key = jnp.einsum("btd,dhk->bthk", x, attention["key"]["kernel"])
  value = jnp.einsum("btd,dhk->bthk", x, attention["value"]["kernel"])
  logits = jnp.einsum("bqhk,bshk->bhqs", query, key) / math.sqrt(query.shape[-1])
  causal = jnp.tril(jnp.ones((x.shape[1], x.shape[1]), bool))
  weights = jax.nn.softmax(jnp.where(causal, logits, -1e9), axis=-1)
  mixed = jnp.einsum("bhqs,bshk->bqhk", weights, value)
  return jnp.einsum("bqhk,hkd->bqd", mixed, attention["out"]["kernel"])


def apply(params: dict[str, Any], tokens: jax.Array) -> jax.Array:
  """The logits of the next token after each of ``tokens`` (batch, time)."""
  x = params["token_embed"]["embedding"][tokens]
  x = x + params["position_embed"]["embedding"][: tokens.shape[1]]
  blocks = sorted(name for name in params if name.startswith("block_"))
  for name in blocks:
    block = params[name]
    x = x + _attention(_layer_norm(x, block["attention_norm"]), block["attention"])
    h = _layer_norm(x, block["mlp_norm"])
    h = jax.nn.gelu(h @ block["mlp"]["up"]["kernel"] + block["mlp"]["up"]["bias"])
    x = x + h @ block["mlp"]["down"]["kernel"] + block["mlp"]["down"]["bias"]
  return _layer_norm(x, params["final_norm"]) @ params["head"]["kernel"]


def loss(params: dict[str, Any], sequences: jax.Array) -> jax.Array:
  """Mean next-token cross-entropy over ``sequences`` (batch, context + 1), in nats."""
  logits = apply(params, sequences[:, :-1])
  targets = sequences[:, 1:]
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.mean(jnp.take_along_axis(log_probs, targets[..., None], axis=-1))


def transformer(config: TransformerConfig) -> Model:
  """The model, with one batch of random tokens."""
  params = init(config)
  rng = np.random.default_rng(3)
  sequences = jnp.asarray(
    rng.integers(0, config.vocab, (config.batch, config.context + 1), dtype=np.int32)
  )
  title = (
    f"Transformer, {config.layers} block{'s' * (config.layers != 1)} of d_model {config.d_model}, "
    f"{config.heads} heads, vocabulary {config.vocab}"
  )
  batch_text = f"batch {config.batch} x {config.context} tokens"
  return Model(title, params, loss, sequences, batch_text)
