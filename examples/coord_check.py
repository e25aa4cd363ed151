"""Coord check: each layer's activation size against width, over the first steps of training.

muP's first diagnostic (Yang et al., Tensor Programs V, section 7): train a
model at several widths for a few steps with one (learning rate, lambda)
pair tuned at the base width, and plot each layer's activation size (mean
``|x|`` of its output) against the width, at initialisation and after each
step. Where the parametrisation is right the lines are flat; where it is not
they grow or shrink with the width, step by step.

The model is the character Transformer of ``examples/transformer_lm.py``
(two pre-norm blocks, 4 heads, ``nnx``), on the text of Python's
documentation topics. A layer's output is read from the computation by
``ll2.activation_sizes`` (the contraction of its kernel with data), so the
same code checks any JAX model. Recipes, each relative to the base width
(``base=``, where all are plain AdamW):

* ``adamw``: one learning rate for every layer (today's practice);
* ``mup``: version 0.3's per-layer rates ``lr_scaling="inv_fan_in"`` with
  independent decay;
* ``mup_init``: the completed recipe, ``ll2.rescale_init`` (muP's
  initialisation: readout variance ``/ m**2``, embeddings at the base's
  size, the query kernels' ``1/head_dim`` logits) and ``lr_scaling="mup"``.

Run::

  python examples/coord_check.py --out runs/coord_check          # widths 32-256 (~10 min)
  python examples/coord_check.py --quick --out runs/coord_quick  # a smoke test (< 2 min)

The folder gets ``sizes.csv`` (one line a recipe, width, seed, step and
layer), ``summary.txt`` (each recipe's spread: for each layer, the largest
over the smallest size across widths after the last step) and
``coord_check.png``.
"""

import argparse
import csv
import json
import re
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import transformer_lm as lm
from text_table import format_table
from tqdm import tqdm

import optax_layer_l2 as ll2
from optax_layer_l2._attention import QUERY

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RECIPES = {
  "adamw": ("one learning rate", None, False),
  "mup": ("rates inv_fan_in (version 0.3)", "inv_fan_in", False),
  "mup_init": ("rescale_init and rates mup (completed)", "mup", True),
}
"""Each recipe: its description, its ``lr_scaling`` and whether it calls ``rescale_init``."""

LAYERS = {
  "embedding": "embed/embedding",
  "query": "blocks/0/attn/query/kernel",
  "attention out": "blocks/1/attn/out/kernel",
  "MLP in": "blocks/1/mlp_in/kernel",
  "MLP out": "blocks/1/mlp_out/kernel",
  "logits": "head/kernel",
}
"""The layers the figure shows, by the path of the kernel whose output it is."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128, 256])
  parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
  parser.add_argument("--steps", type=int, default=5, help="training steps after init")
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--batch-size", type=int, default=16)
  parser.add_argument("--heads", type=int, default=4)
  parser.add_argument(
    "--learning-rate",
    type=float,
    default=0.018,
    help="the rate tuned at the base width (docs/study/joint_onepass: 0.018 at d_model 32)",
  )
  parser.add_argument("--weight-decay", type=float, default=0.27)
  parser.add_argument("--quick", action="store_true", help="widths 32 and 64, 2 steps, 1 seed")
  parser.add_argument("--out", type=Path, default=Path("runs/coord_check"))
  args = parser.parse_args(argv)
  if args.quick:
    args.widths, args.steps, args.seeds = [32, 64], 2, 1
  return args


def measure(args: argparse.Namespace, corpus: lm.Corpus, recipe: str, width: int, seed: int):
  """Activation sizes ``{layer path: [size at step 0, 1, ...]}`` of one model."""
  _, lr_scaling, rescaled = RECIPES[recipe]
  base_width = min(args.widths)
  cfg = lm.Config(corpus.vocab, width, 2, args.heads, 64)
  base_cfg = lm.Config(corpus.vocab, base_width, 2, args.heads, 64)
  key = jax.random.key(seed)
  params = lm.init(key, cfg)
  base = lm.init(key, base_cfg)
  if rescaled:
    params = ll2.rescale_init(params, base=base)
  tx = ll2.layer_adamw(
    args.learning_rate, args.weight_decay, "none", base=base, lr_scaling=lr_scaling
  )
  tokens = jnp.asarray(corpus.train)
  starts = lm.batch_starts(len(corpus.train), cfg.context + 1, args.batch_size, args.steps, seed)
  probe = lm.windows(tokens, jnp.asarray(starts[0]), cfg.context + 1)[:, :-1]
  opt_state = tx.init(params)
  sizes: dict[str, list[float]] = {}
  for step in range(args.steps + 1):
    found = ll2.activation_sizes(forward(cfg), params, probe)
    for path, size in found.items():
      sizes.setdefault(path, []).append(float(size))
    if step < args.steps:
      params, opt_state, _ = fit(
        cfg, tx, params, tokens, jnp.asarray(starts[step : step + 1]), opt_state
      )
  return sizes


_FITS: dict = {}
_FORWARDS: dict = {}


def forward(cfg: lm.Config):
  """The model's forward pass ``(params, tokens) -> logits``, one function a config."""
  if cfg not in _FORWARDS:
    _FORWARDS[cfg] = lambda params, tokens: lm.apply(cfg, params, tokens)
  return _FORWARDS[cfg]


def fit(cfg, tx, params, tokens, starts, opt_state):
  """One jitted step of ``lm.fit`` (compiled once per model and optimizer)."""
  key = (cfg, id(tx))
  if key not in _FITS:
    _FITS[key] = jax.jit(lambda p, s, st: lm.fit(cfg, tx, p, tokens, s, st))
  return _FITS[key](params, starts, opt_state)


def designed(recipe: str, layer: str, width: int, widths: Sequence[int]) -> float:
  """The factor by which a recipe means a layer's output to move with width.

  ``rescale_init`` moves muP's ``1/head_dim`` logits into the query kernels,
  so with the heads fixed their outputs shrink by ``a = sqrt(head_dim(base) /
  head_dim)`` on purpose (the logits do not); every other output is meant to
  stay put.
  """
  if not RECIPES[recipe][2] or not re.search(QUERY, layer):
    return 1.0
  return (min(widths) / width) ** 0.5


def spreads(
  rows: list[dict], recipe: str, widths: Sequence[int], step: int, in_design: bool = False
) -> dict[str, float]:
  """For each layer, the largest over the smallest seed-mean size across ``widths`` at ``step``.

  ``in_design``: each size divided by the factor the recipe means it to move by.
  """
  result = {}
  for path in sorted({row["layer"] for row in rows}):
    means = []
    for width in widths:
      values = [
        row["size"]
        for row in rows
        if (row["recipe"], row["width"], row["layer"], row["step"]) == (recipe, width, path, step)
      ]
      factor = designed(recipe, path, width, widths) if in_design else 1.0
      means.append(float(np.mean(values)) / factor)
    result[path] = max(means) / min(means)
  return result


def plot(rows: list[dict], args: argparse.Namespace, path: Path) -> None:
  recipes = [r for r in args.recipes]
  fig, axes = plt.subplots(
    len(recipes),
    len(LAYERS),
    figsize=(2.6 * len(LAYERS), 2.4 * len(recipes)),
    squeeze=False,
    sharex=True,
  )
  colours = plt.cm.viridis(np.linspace(0, 0.9, args.steps + 1))
  for i, recipe in enumerate(recipes):
    for j, (label, layer) in enumerate(LAYERS.items()):
      ax = axes[i][j]
      for step in range(args.steps + 1):
        means = []
        for width in args.widths:
          values = [
            row["size"]
            for row in rows
            if (row["recipe"], row["width"], row["layer"], row["step"])
            == (recipe, width, layer, step)
          ]
          means.append(np.mean(values))
        ax.plot(args.widths, means, "o-", color=colours[step], ms=3, label=f"step {step}")
      ax.set_xscale("log", base=2)
      ax.set_yscale("log")
      if i == 0:
        ax.set_title(label, fontsize=9)
      if j == 0:
        ax.set_ylabel(f"{recipe}\nmean |x|", fontsize=9)
      if i == len(recipes) - 1:
        ax.set_xlabel("d_model", fontsize=9)
      ax.tick_params(labelsize=7)
  axes[0][-1].legend(fontsize=6, loc="best")
  fig.suptitle(
    f"Coord check: activation size against width, steps 0-{args.steps} "
    f"(lr {args.learning_rate:g}, lambda {args.weight_decay:g}, tuned at d_model "
    f"{min(args.widths)}; {args.seeds} seeds)",
    fontsize=10,
  )
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv: Sequence[str] | None = None) -> list[dict]:
  args = parse_args(argv)
  args.out.mkdir(parents=True, exist_ok=True)
  corpus = lm.split_text(lm.load_text())
  start = time.time()
  rows = []
  runs = [(r, w, s) for r in args.recipes for w in args.widths for s in range(args.seeds)]
  for recipe, width, seed in tqdm(runs, desc="models"):
    for layer, sizes in measure(args, corpus, recipe, width, seed).items():
      for step, size in enumerate(sizes):
        rows.append(
          {
            "recipe": recipe,
            "width": width,
            "seed": seed,
            "step": step,
            "layer": layer,
            "size": size,
          }
        )
  with (args.out / "sizes.csv").open("w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows({**row, "size": f"{row['size']:.6g}"} for row in rows)
  table = []
  for recipe in args.recipes:
    at_init = spreads(rows, recipe, args.widths, 0)
    last = spreads(rows, recipe, args.widths, args.steps)
    meant = spreads(rows, recipe, args.widths, args.steps, in_design=True)
    worst = max(meant, key=meant.get)
    table.append(
      (
        recipe,
        f"{max(at_init.values()):.2f}",
        f"{max(last.values()):.2f}",
        f"{max(meant.values()):.2f}",
        worst,
        f"{np.median(list(meant.values())):.2f}",
      )
    )
  header = (
    "recipe",
    "spread at init",
    f"after {args.steps}",
    f"after {args.steps}, as designed",
    "widest layer",
    "median",
  )
  text = (
    f"Coord check, d_model {args.widths}, {args.seeds} seeds, lr {args.learning_rate:g}, "
    f"lambda {args.weight_decay:g}. Spread: for each layer (the output of each kernel), the "
    "largest seed-mean activation size over the smallest across the widths; the table "
    "gives the worst layer's spread, and the median over layers. 'As designed': each size "
    "divided by the factor the recipe means it to move by (rescale_init scales the query "
    "kernels' outputs by a = sqrt(head_dim(base) / head_dim), muP's 1/head_dim logits; "
    "every other output is meant to stay put); the widest layer and the median are of "
    "these.\n\n" + format_table(header, table)
  )
  (args.out / "summary.txt").write_text(text + "\n")
  (args.out / "config.json").write_text(
    json.dumps(
      {
        **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "wall_seconds": round(time.time() - start, 1),
      },
      indent=2,
    )
  )
  plot(rows, args, args.out / "coord_check.png")
  print(text)
  return rows


if __name__ == "__main__":
  main()
