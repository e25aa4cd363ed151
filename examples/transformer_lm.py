"""A character-level transformer language model, trained with four optimizers.

A decoder-only, pre-norm transformer in Flax NNX (``nnx.Embed`` for tokens and
positions, ``nnx.MultiHeadAttention`` with a causal mask, MLP blocks with
``4 * d_model`` hidden units, ``nnx.LayerNorm``, an untied output head
``nnx.Linear(d_model, vocab)``) learns to predict the next character of the
English text of Python's own documentation, the standard-library module
``pydoc_data.topics`` (about 465,000 characters; nothing is downloaded). The
first 90% of the text is the training split, the last 10% the validation
split; ``--train-chars`` keeps only the start of the training split, because a
small training set is where regularisation matters.

The same initial weights are trained on the same batches four ways:

* ``layer_l2+adam``: ``optax.chain(ll2.layer_l2(coupled_wd, scaling), optax.adam(lr))``,
  per-layer L2 regularisation that Adam then normalises (coupled);
* ``layer_adamw``: ``ll2.layer_adamw(lr, decoupled_wd, scaling)``, per-layer
  decay applied after Adam, as ``optax.adamw`` does (decoupled);
* ``adam``: ``optax.adam(lr)``, no decay;
* ``adamw``: ``optax.adamw(lr, adamw_wd, mask=...)``, plain decoupled decay on
  the leaves ``layer_l2`` decays by default (kernels and embeddings, never
  biases or layer-norm scales).

Each of the three decays has its own strength: the same number means very
different things in coupled and decoupled form, and with and without the
per-layer factor ``s`` (1/32 to 1/51 for these kernels with ``fan_avg``). The
learning rate warms up linearly and then follows a cosine decay.

The program prints what ``layer_l2`` gives every ``nnx.Param`` leaf
(``ll2.describe``), shows a progress bar per run, and ends with a table of
train and validation loss in bits per character, measured on every character
of the characters trained on and of the validation split, in windows of
``context + 1`` characters that share their end points (so the first
characters of a window see little context).

How ``ll2.describe`` reads the NNX paths: attention ``query``/``key``/``value``
kernels ``(d_model, heads, head_dim)`` have fan-in ``d_model`` and fan-out
``heads * head_dim``, ``out`` kernels ``(heads, head_dim, d_model)`` the
reverse; MLP and head kernels are dense kernels; layer-norm ``scale``/``bias``
and the attention and dense biases are not decayed. The embedding tables
``(num_embeddings, features)`` are rank-2 leaves, so the default rule reads
them like dense kernels: fan-in ``num_embeddings`` (the vocabulary, or the
context length for the position table), fan-out ``features = d_model``. Flax's
``Embed`` initializer treats them the other way round: it draws each row with
variance ``1 / features``, as if ``features`` were the fan-in. ``fan_avg`` and
``numel`` are symmetric in the two fans, so this only matters for ``fan_in``
and ``fan_out``; ``--embedding-fan-in features`` passes
``dims=ll2.Dims(in_axes=-1, out_axes=-2)`` for the embedding tables to turn
them round.

At the defaults (seed 0) decay helps: validation loss is 2.574 bits per
character with plain Adam, 2.373 with ``layer_l2+adam``, 2.275 with
``layer_adamw`` and 2.281 with ``adamw`` (train loss 1.250, 1.824, 1.580 and
1.238). Each decay strength was picked from a coarse pilot of two or three
values at these settings, so the table shows that decay matters here, not
which decay is best. In the pilot, the training set mattered as much as the
decay: with 50,000 characters (1,500 steps) every run ended above 3.3 bits on
validation, decay or not; with 100,000 characters but only 1,500 steps, plain
Adam (2.43 bits) beat coupled ``layer_l2`` at 0.3, 1 and 3.

The model, data and training pieces are plain functions for reuse (a width
study can ``jax.vmap`` them over seeds and decay strengths): ``init(key, cfg)``
returns the ``nnx.Param`` state, ``apply(cfg, params, tokens)`` the logits,
``loss(cfg, params, windows)`` the mean cross-entropy in nats, and
``fit(cfg, tx, params, tokens, starts)`` trains with one ``lax.scan``.

Run it from a clone of the repository::

  python -m pip install -e ".[examples]"
  python examples/transformer_lm.py                  # 4 x 2,500 steps, ~17 min on a busy 2-core CPU
  python examples/transformer_lm.py --quick          # a smoke test, ~35 s there
  python examples/transformer_lm.py --train-chars 0  # the whole training split
"""

import argparse
import dataclasses
import functools
import math
import sys
import time
from collections.abc import Callable
from pydoc_data.topics import topics

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from text_table import format_table
from tqdm import tqdm

import optax_layer_l2 as ll2

BITS_PER_NAT = 1 / math.log(2)


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class Corpus:
  """A text mapped to a character vocabulary and split by position.

  Attributes:
    chars: the vocabulary, one character a token id, in sorted order.
    train: token ids of the first ``1 - valid_fraction`` of the text.
    valid: token ids of the rest.
  """

  chars: str
  train: np.ndarray
  valid: np.ndarray

  @property
  def vocab(self) -> int:
    """The number of distinct characters."""
    return len(self.chars)

  def decode(self, tokens: np.ndarray) -> str:
    """The text of token ids ``tokens``."""
    return "".join(self.chars[int(t)] for t in tokens)


def load_text() -> str:
  """The English text of Python's documentation topics, in sorted key order."""
  return "".join(topics[key] for key in sorted(topics))


def split_text(text: str, valid_fraction: float = 0.1) -> Corpus:
  """Maps ``text`` to ids of its sorted character set; the last part is validation."""
  chars = "".join(sorted(set(text)))
  code_points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
  vocabulary = np.frombuffer(chars.encode("utf-32-le"), dtype=np.uint32)
  tokens = np.searchsorted(vocabulary, code_points).astype(np.int32)
  cut = len(tokens) - round(valid_fraction * len(tokens))
  return Corpus(chars, tokens[:cut], tokens[cut:])


def batch_starts(num_tokens: int, length: int, batch_size: int, steps: int, seed: int):
  """``(steps, batch_size)`` random window starts; a window is ``length`` tokens."""
  rng = np.random.default_rng(seed)
  return rng.integers(0, num_tokens - length + 1, size=(steps, batch_size), dtype=np.int32)


def one_pass_starts(num_tokens: int, context: int, batch_size: int, seed: int) -> np.ndarray:
  """``(steps, batch_size)`` window starts that predict every character once, shuffled.

  Windows of ``context + 1`` tokens start every ``context`` tokens, so
  consecutive windows share one end point and each token after the first is
  a target exactly once; their order is shuffled by ``seed`` and the windows
  that do not fill a last batch are left out. One pass over the text, the
  regime of large-model training: no character is trained on twice.
  """
  starts = np.arange(0, num_tokens - context, context, dtype=np.int32)
  steps = len(starts) // batch_size
  order = np.random.default_rng(seed).permutation(len(starts))[: steps * batch_size]
  return starts[order].reshape(steps, batch_size)


def windows(tokens: jax.Array, starts: jax.Array, length: int) -> jax.Array:
  """The windows ``tokens[s : s + length]`` for every ``s`` in ``starts``."""
  return jnp.asarray(tokens)[starts[..., None] + jnp.arange(length)]


# ----------------------------------------------------------------------------- model


@dataclasses.dataclass(frozen=True)
class Config:
  """Shape of the model. Hashable, so it can be a static argument."""

  vocab: int
  d_model: int = 64
  layers: int = 2
  heads: int = 4
  context: int = 64


class Block(nnx.Module):
  """Pre-norm block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    d = cfg.d_model
    self.attn_norm = nnx.LayerNorm(d, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(cfg.heads, d, decode=False, rngs=rngs)
    self.mlp_norm = nnx.LayerNorm(d, rngs=rngs)
    self.mlp_in = nnx.Linear(d, 4 * d, rngs=rngs)
    self.mlp_out = nnx.Linear(4 * d, d, rngs=rngs)

  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    x = x + self.attn(self.attn_norm(x), mask=mask)
    return x + self.mlp_out(nnx.gelu(self.mlp_in(self.mlp_norm(x))))


class TransformerLM(nnx.Module):
  """Decoder-only transformer: token ids ``(..., T)`` to next-token logits ``(..., T, vocab)``."""

  def __init__(self, cfg: Config, *, rngs: nnx.Rngs):
    self.embed = nnx.Embed(cfg.vocab, cfg.d_model, rngs=rngs)
    self.position = nnx.Embed(cfg.context, cfg.d_model, rngs=rngs)
    self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.layers)])
    self.norm = nnx.LayerNorm(cfg.d_model, rngs=rngs)
    self.head = nnx.Linear(cfg.d_model, cfg.vocab, rngs=rngs)

  def __call__(self, tokens: jax.Array) -> jax.Array:
    x = self.embed(tokens) + self.position(jnp.arange(tokens.shape[-1]))
    mask = nnx.make_causal_mask(tokens)  # (..., 1, T, T): position i sees positions <= i
    for block in self.blocks:
      x = block(x, mask)
    return self.head(self.norm(x))


@functools.cache
def graphdef(cfg: Config) -> nnx.GraphDef:
  """The model's structure without its weights (computed once per ``cfg``)."""
  abstract = nnx.eval_shape(lambda: TransformerLM(cfg, rngs=nnx.Rngs(0)))
  return nnx.split(abstract, nnx.Param)[0]


def init(key: jax.Array, cfg: Config) -> nnx.State:
  """Fresh weights: the ``nnx.Param`` state of a ``TransformerLM``. Works under ``jax.vmap``."""
  model = TransformerLM(cfg, rngs=nnx.Rngs(params=key))
  graph, params = nnx.split(model, nnx.Param)
  assert graph == graphdef(cfg), "the model holds state other than nnx.Param"
  return params


def apply(cfg: Config, params: nnx.State, tokens: jax.Array) -> jax.Array:
  """Logits ``(..., T, vocab)`` for token ids ``(..., T)``, ``T <= cfg.context``."""
  return nnx.merge(graphdef(cfg), params)(tokens)


def loss(cfg: Config, params: nnx.State, batch: jax.Array) -> jax.Array:
  """Mean next-token cross-entropy in nats over windows ``(..., cfg.context + 1)``."""
  logits = apply(cfg, params, batch[..., :-1])
  return optax.softmax_cross_entropy_with_integer_labels(logits, batch[..., 1:]).mean()


# ----------------------------------------------------------------------------- training


def fit(
  cfg: Config,
  tx: optax.GradientTransformation,
  params: nnx.State,
  tokens: jax.Array,
  starts: jax.Array,
  opt_state: optax.OptState | None = None,
) -> tuple[nnx.State, optax.OptState, jax.Array]:
  """Trains on the windows at ``starts`` ``(steps, batch)`` of ``tokens``, one ``lax.scan``.

  Pure: jit it, or vmap it over seeds and decay strengths. Returns the new
  params, the optimizer state and the training loss (nats) of every step.
  """
  if opt_state is None:
    opt_state = tx.init(params)

  def step(carry, step_starts):
    params, opt_state = carry
    batch = windows(tokens, step_starts, cfg.context + 1)
    value, grads = jax.value_and_grad(functools.partial(loss, cfg))(params, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), value

  (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), starts)
  return params, opt_state, losses


@functools.partial(jax.jit, static_argnames=("cfg", "batch_size"))
def evaluate(cfg: Config, params: nnx.State, tokens: jax.Array, batch_size: int = 128) -> jax.Array:
  """Bits per character over ``tokens``, each character predicted once.

  The text is cut into windows of ``cfg.context + 1`` tokens that share their
  end points, so every character but the first is a target once; a tail
  shorter than the context is left out.
  """
  length = cfg.context + 1
  num = (len(tokens) - 1) // cfg.context  # full windows; a short tail is left out
  chunks = -(-num // batch_size)
  starts = jnp.arange(chunks * batch_size).reshape(chunks, batch_size) * cfg.context
  real = starts < num * cfg.context
  starts = jnp.where(real, starts, 0)

  def chunk(total, xs):
    chunk_starts, chunk_real = xs
    batch = windows(tokens, chunk_starts, length)
    logits = apply(cfg, params, batch[:, :-1])
    nats = optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:])
    return total + jnp.sum(nats * chunk_real[:, None]), None

  total, _ = jax.lax.scan(chunk, jnp.zeros(()), (starts, real))
  return total / (num * cfg.context) * BITS_PER_NAT


def decayed_leaves(params: nnx.State) -> nnx.State:
  """A bool per leaf: the leaves ``layer_l2`` decays by default (kernels, embeddings)."""
  return jax.tree.map(lambda s: s > 0, ll2.scales(params, "none"))


def embedding_dims(fan_in: str) -> Callable | None:
  """``dims`` for ``layer_l2``: ``None`` (the default rule) or the embeddings turned round."""
  if fan_in == "vocab":
    return None
  turned = ll2.Dims(in_axes=-1, out_axes=-2)
  return lambda path, leaf: turned if path.endswith("/embedding") else None


def make_optimizers(
  args: argparse.Namespace, params: nnx.State
) -> dict[str, optax.GradientTransformation]:
  """The four optimizers, with the same learning-rate schedule."""
  warmup = min(100, args.steps // 10)
  lr = optax.warmup_cosine_decay_schedule(0.0, args.learning_rate, warmup, args.steps)
  dims = embedding_dims(args.embedding_fan_in)
  return {
    "layer_l2+adam": optax.chain(
      ll2.layer_l2(args.coupled_wd, args.scaling, dims=dims), optax.adam(lr)
    ),
    "layer_adamw": ll2.layer_adamw(lr, args.decoupled_wd, args.scaling, dims=dims),
    "adam": optax.adam(lr),
    "adamw": optax.adamw(lr, weight_decay=args.adamw_wd, mask=decayed_leaves(params)),
  }


@dataclasses.dataclass
class Run:
  """One trained model, its final bits per character and its run time."""

  name: str
  params: nnx.State
  train_bpc: float
  valid_bpc: float
  seconds: float


def train(
  name: str, cfg: Config, tx, params, train_tokens, valid_tokens, starts, eval_every
) -> Run:
  """Trains ``params`` with ``tx`` on the batches ``starts``, with a progress bar."""
  begin = time.perf_counter()
  chunk_fit = jax.jit(functools.partial(fit, cfg, tx))
  opt_state = tx.init(params)
  with tqdm(total=len(starts), desc=f"{name:>13}", unit="step", file=sys.stderr) as bar:
    for first in range(0, len(starts), eval_every):  # one lax.scan between evaluations
      chunk = starts[first : first + eval_every]
      params, opt_state, losses = chunk_fit(params, train_tokens, chunk, opt_state)
      valid = float(evaluate(cfg, params, valid_tokens))
      bar.update(len(chunk))
      bar.set_postfix(train=f"{float(losses.mean()) * BITS_PER_NAT:.3f}", valid=f"{valid:.3f}")
  train_bpc = float(evaluate(cfg, params, train_tokens))
  valid_bpc = float(evaluate(cfg, params, valid_tokens))
  return Run(name, params, train_bpc, valid_bpc, time.perf_counter() - begin)


# ----------------------------------------------------------------------------- output


RESULTS_HEADER = ("optimizer", "train bpc", "valid bpc", "gap", "decayed RMS", "time (s)")


def results_row(run: Run) -> tuple[str, ...]:
  """Bits per character, their gap, and the RMS of the decayed leaves' weights."""
  mask = jax.tree.leaves(decayed_leaves(run.params))
  leaves = [w for w, m in zip(jax.tree.leaves(run.params), mask, strict=True) if m]
  rms = math.sqrt(sum(float(jnp.sum(w**2)) for w in leaves) / sum(w.size for w in leaves))
  return (
    run.name,
    f"{run.train_bpc:.3f}",
    f"{run.valid_bpc:.3f}",
    f"{run.valid_bpc - run.train_bpc:+.3f}",
    f"{rms:.4f}",
    f"{run.seconds:.0f}",
  )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
    description="Train a character-level NNX transformer with four optimizers, "
    "with and without (per-layer) weight decay.",
    formatter_class=argparse.ArgumentDefaultsHelpFormatter,
  )
  parser.add_argument("--steps", type=int, default=2500, help="training steps per run")
  parser.add_argument("--batch-size", type=int, default=32, help="windows per step")
  parser.add_argument("--d-model", type=int, default=64, help="width of the residual stream")
  parser.add_argument("--layers", type=int, default=2, help="transformer blocks")
  parser.add_argument("--heads", type=int, default=4, help="attention heads")
  parser.add_argument("--context", type=int, default=64, help="characters the model sees")
  parser.add_argument(
    "--train-chars",
    type=int,
    default=100_000,
    help="train on the first N characters of the training split (0: all of it)",
  )
  parser.add_argument("--learning-rate", type=float, default=3e-3, help="Adam's peak step size")
  parser.add_argument("--scaling", default="fan_avg", choices=list(ll2.SCALINGS), help="c(w)")
  parser.add_argument("--coupled-wd", type=float, default=0.3, help="lambda of layer_l2+adam")
  parser.add_argument("--decoupled-wd", type=float, default=100.0, help="lambda of layer_adamw")
  parser.add_argument("--adamw-wd", type=float, default=1.0, help="weight_decay of optax.adamw")
  parser.add_argument(
    "--embedding-fan-in",
    choices=("vocab", "features"),
    default="vocab",
    help="fan-in axis of the embedding tables for layer_l2 (vocab: the library's default rule)",
  )
  parser.add_argument("--seed", type=int, default=0, help="seeds the weights and the batches")
  parser.add_argument("--eval-every", type=int, default=250, help="steps between valid evals")
  parser.add_argument(
    "--quick", action="store_true", help="a small, fast run (d_model 32, 300 steps)"
  )
  args = parser.parse_args(argv)
  if args.quick:
    args.steps, args.d_model, args.batch_size, args.eval_every = 300, 32, 16, 100
    args.context, args.train_chars = 32, 20_000
  return args


def main(argv: list[str] | None = None) -> list[Run]:
  args = parse_args(argv)
  begin = time.perf_counter()
  corpus = split_text(load_text())
  train_tokens = corpus.train[: args.train_chars or None]
  print(
    f"Text: pydoc_data.topics of Python {sys.version}: "
    f"{len(corpus.train) + len(corpus.valid):,} characters, vocabulary of {corpus.vocab}; "
    f"train {len(corpus.train):,}, valid {len(corpus.valid):,}; "
    f"training on the first {len(train_tokens):,}."
  )
  cfg = Config(corpus.vocab, args.d_model, args.layers, args.heads, args.context)
  params = init(jax.random.key(args.seed), cfg)
  count = sum(leaf.size for leaf in jax.tree.leaves(params))
  print(
    f"Model: {cfg.layers} blocks, d_model {cfg.d_model}, {cfg.heads} heads, "
    f"context {cfg.context}; {count:,} parameters."
  )

  dims = embedding_dims(args.embedding_fan_in)
  print(
    f"\nWhat layer_l2 gives each nnx.Param, at initialisation "
    f"(coupled lambda; embedding fan-in: {args.embedding_fan_in}):\n"
  )
  print(ll2.describe(params, args.coupled_wd, args.scaling, dims=dims))
  print()

  starts = batch_starts(len(train_tokens), cfg.context + 1, args.batch_size, args.steps, args.seed)
  train_tokens, valid_tokens = jnp.asarray(train_tokens), jnp.asarray(corpus.valid)
  runs = [
    train(name, cfg, tx, params, train_tokens, valid_tokens, starts, args.eval_every)
    for name, tx in make_optimizers(args, params).items()
  ]

  print(
    f"\n{args.steps} steps of {args.batch_size} windows, Adam lr={args.learning_rate:g} "
    f"(warm-up, cosine), scaling {args.scaling!r}; lambdas: layer_l2+adam "
    f"{args.coupled_wd:g}, layer_adamw {args.decoupled_wd:g}, adamw {args.adamw_wd:g}; "
    f"seed {args.seed}. Loss in bits per character (log2 of the vocabulary: "
    f"{math.log2(corpus.vocab):.3f}).\n"
  )
  print(format_table(RESULTS_HEADER, [results_row(run) for run in runs]))
  print(f"\nDone in {time.perf_counter() - begin:.0f} s.")
  return runs


if __name__ == "__main__":
  main()
