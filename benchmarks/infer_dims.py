"""What ``ll2.infer_dims`` costs: its time against ``jax.make_jaxpr`` of the same function.

``infer_dims`` traces the function once with ``jax.make_jaxpr`` and walks the
equations it gets, so its time is the trace and the walk. The SPEC's budget
is the ratio of the two, within 3x on a 1,000-leaf model.

The model is a decoder-only Transformer of ``--blocks`` blocks in plain
``jax.numpy``, as shapes from ``jax.eval_shape`` (nothing is computed). Each
block has 20 leaves: Gemma-style query, key and value einsum kernels
``(heads, d_model, head_dim)`` and an output kernel ``(heads, head_dim,
d_model)``, each with a bias; a gated MLP (gate, up and down kernels with
biases); three layer norms of a scale and a bias. With the token embedding,
tied to the readout here only in shape (the readout is its own leaf), and a
final norm, 48 blocks make 964 leaves.

Each round times both, one after the other in an order that alternates
from round to round; the table gives the medians, and the ratio is the
median of the ratios within each round.

Usage, from the repository root::

  python -m benchmarks.infer_dims            # 48 blocks, 964 leaves, 9 rounds: about a minute
  python -m benchmarks.infer_dims --quick    # 2 blocks, 3 rounds: a smoke run of seconds
"""

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

import optax_layer_l2 as ll2
from benchmarks.markdown import table
from benchmarks.progress import log

BUDGET = 3.0


def transformer_shapes(
  blocks: int, d_model: int = 256, heads: int = 4, vocab: int = 1024
) -> dict[str, Any]:
  """The parameter shapes of the Transformer, from ``jax.eval_shape``."""
  head_dim, hidden = d_model // heads, 4 * d_model

  def init() -> dict[str, Any]:
    def norm() -> dict[str, jax.Array]:
      return {"scale": jnp.ones(d_model), "bias": jnp.zeros(d_model)}

    def dense(*shape: int) -> dict[str, jax.Array]:
      return {"kernel": jnp.zeros(shape), "bias": jnp.zeros(shape[-1])}

    def projection(*shape: int) -> dict[str, jax.Array]:
      return {"kernel": jnp.zeros(shape), "bias": jnp.zeros((heads, head_dim))}

    params: dict[str, Any] = {
      "embed": {"embedding": jnp.zeros((vocab, d_model))},
      "final_norm": norm(),
      "readout": {"kernel": jnp.zeros((d_model, vocab))},
    }
    for i in range(blocks):
      params[f"block_{i:02d}"] = {
        "attention_norm": norm(),
        "query": projection(heads, d_model, head_dim),
        "key": projection(heads, d_model, head_dim),
        "value": projection(heads, d_model, head_dim),
        "out": {"kernel": jnp.zeros((heads, head_dim, d_model)), "bias": jnp.zeros(d_model)},
        "mlp_norm": norm(),
        "gate": dense(d_model, hidden),
        "up": dense(d_model, hidden),
        "down": dense(hidden, d_model),
        "post_norm": norm(),
      }
    return params

  return jax.eval_shape(init)


def _layer_norm(p: dict[str, jax.Array], x: jax.Array) -> jax.Array:
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) * jax.lax.rsqrt(var + 1e-6) * p["scale"] + p["bias"]


def forward(params: dict[str, Any], tokens: jax.Array) -> jax.Array:
  """Next-token logits of the Transformer, causal attention, the blocks in a Python loop."""
  x = params["embed"]["embedding"][tokens]
  length = tokens.shape[-1]
  causal = jnp.tril(jnp.ones((length, length), bool))
  for name in sorted(key for key in params if key.startswith("block_")):
    p = params[name]
    h = _layer_norm(p["attention_norm"], x)
    q = jnp.einsum("btd,ndh->btnh", h, p["query"]["kernel"]) + p["query"]["bias"]
    k = jnp.einsum("btd,ndh->btnh", h, p["key"]["kernel"]) + p["key"]["bias"]
    v = jnp.einsum("btd,ndh->btnh", h, p["value"]["kernel"]) + p["value"]["bias"]
    logits = jnp.einsum("btnh,bsnh->bnts", q, k) / jnp.sqrt(q.shape[-1])
    weights = jax.nn.softmax(jnp.where(causal, logits, -1e9), axis=-1)
    attended = jnp.einsum("bnts,bsnh->btnh", weights, v)
    x = x + jnp.einsum("btnh,nhd->btd", attended, p["out"]["kernel"]) + p["out"]["bias"]
    h = _layer_norm(p["mlp_norm"], x)
    gate = jax.nn.gelu(h @ p["gate"]["kernel"] + p["gate"]["bias"])
    up = h @ p["up"]["kernel"] + p["up"]["bias"]
    x = _layer_norm(p["post_norm"], x + (gate * up) @ p["down"]["kernel"] + p["down"]["bias"])
  return _layer_norm(params["final_norm"], x) @ params["readout"]["kernel"]


def measure(blocks: int, rounds: int) -> dict[str, Any]:
  """Seconds of ``infer_dims`` and of ``jax.make_jaxpr`` on the model, round after round."""
  params = transformer_shapes(blocks)
  tokens = jax.ShapeDtypeStruct((2, 16), jnp.int32)
  # A new function each time: JAX caches what it traced by the function traced.
  runs: dict[str, Callable[[], Any]] = {
    "jax.make_jaxpr": lambda: jax.make_jaxpr(lambda p, t: forward(p, t))(params, tokens),
    "ll2.infer_dims": lambda: ll2.infer_dims(lambda p, t: forward(p, t), params, tokens),
  }
  for run in runs.values():  # JAX's own caches of abstract rules and the like, filled once
    run()
  seconds: dict[str, list[float]] = {name: [] for name in runs}
  for round_ in range(rounds):
    order = list(runs) if round_ % 2 == 0 else list(reversed(runs))
    for name in order:
      start = time.perf_counter()
      runs[name]()
      seconds[name].append(time.perf_counter() - start)
    log(f"  round {round_ + 1} of {rounds}")
  ratios = [
    ours / theirs
    for ours, theirs in zip(seconds["ll2.infer_dims"], seconds["jax.make_jaxpr"], strict=True)
  ]
  dims = ll2.infer_dims(forward, params, tokens)
  inferred = sum(isinstance(d, ll2.Dims) for d in jax.tree.leaves(dims, is_leaf=_is_dims))
  return {
    "leaves": len(jax.tree.leaves(params)),
    "inferred": inferred,
    "equations": len(jax.make_jaxpr(forward)(params, tokens).jaxpr.eqns),
    "seconds": {name: statistics.median(values) for name, values in seconds.items()},
    "ratio": statistics.median(ratios),
    "ratios": (min(ratios), max(ratios)),
  }


def _is_dims(x: Any) -> bool:
  return x is None or isinstance(x, ll2.Dims)


def report(blocks: int, rounds: int) -> str:
  """The Markdown table of one measurement, and its verdict against the budget."""
  result = measure(blocks, rounds)
  rows = [
    [name, f"{value:.3f}", "1" if name == "jax.make_jaxpr" else f"{result['ratio']:.2f}"]
    for name, value in result["seconds"].items()
  ]
  low, high = result["ratios"]
  verdict = "PASS" if result["ratio"] <= BUDGET else "MISS"
  return (
    f"A {blocks}-block Transformer: {result['leaves']} leaves ({result['inferred']} contracted "
    f"with data), {result['equations']} equations at the top level; medians of {rounds} "
    "rounds.\n\n"
    + table(["", "seconds", "ratio"], rows)
    + f"\n\nRatio {result['ratio']:.2f} (rounds {low:.2f} to {high:.2f}), budget <= {BUDGET:g}: "
    f"{verdict}.\n"
  )


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="2 blocks, 3 rounds: a smoke run")
  parser.add_argument("--blocks", type=int, default=None, help="blocks of the model (48)")
  parser.add_argument("--rounds", type=int, default=None, help="rounds of timing (9)")
  args = parser.parse_args(argv)
  blocks = args.blocks or (2 if args.quick else 48)
  rounds = args.rounds or (3 if args.quick else 9)
  log(f"infer_dims against make_jaxpr, {blocks} blocks, {rounds} rounds")
  print(report(blocks, rounds), end="")


if __name__ == "__main__":
  main()
