"""Does a lambda tuned at a narrow Transformer carry over to wider ones?

The width study of ``examples/width_sweep.py``, on the character-level
language model of ``examples/transformer_lm.py``: pre-norm blocks with layer
norms, softmax attention, GELU MLPs, token and position embeddings and an
untied head. There the ReLU rescaling argument of the MLP study no longer
holds, and the layers' shapes differ most.

For each ``d_model`` (heads fixed, so ``head_dim`` grows with it), each
scaling relative to the narrowest model (``base=``; ``--absolute`` for none)
and each way of applying it (coupled: ``chain(layer_l2, adam)``; decoupled:
``layer_adamw``), a log-spaced grid of ``lambda`` is trained over several
seeds on a small training set, and the ``lambda`` with the lowest mean
validation loss (bits per character) is found. Every grid row is one
compiled program: ``jax.vmap`` over ``lambda`` and seeds around one
``lax.scan``.

Besides the optima, each run records how its penalty ``s * ||w||^2`` is
shared between the embeddings, attention, MLP and head kernels.

Run::

  python examples/transformer_width_study.py --out runs/transformer       # the default (34 min)
  python examples/transformer_width_study.py --quick --out runs/tquick    # a smoke test
  python examples/transformer_width_study.py --out runs/transformer --replot
  python examples/transformer_width_study.py --widths 32 64 128 256 512 --seeds 3  # on a GPU

Writes ``runs.csv``, ``config.json``, ``summary.txt``, ``loss_<mode>.png`` and
``optimal_lambda.png`` to ``--out``. See ``docs/study.md``.
"""

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import transformer_lm as lm
from width_study.grid import MODES, UNREGULARISED, lambda_grid, make_optimizer
from width_study.optimum import optimum
from width_study.plots import plot_curves, plot_optimal_lambda
from width_study.runs import (
  Row,
  read_csv,
  regularised,
  run_rows,
  study_plan,
  unregularised,
  write_csv,
)
from width_study.settings import from_flags
from width_study.tables import best_loss_table, optimum_table, reuse_table

import optax_layer_l2 as ll2

SCALINGS = ("none", "fan_avg", "sqrt_fan_avg")
"""The scalings of the default study; ``--scalings`` takes any of ``ll2.SCALINGS``."""
GROUPS = ("embed", "attn", "mlp", "head")
METRICS = ("test_loss", "train_loss", *(f"share_{g}" for g in GROUPS))

# log10 of each mode's grid centre, relative to the narrowest model (where
# every scaling is plain L2): near the optima of plain L2 at d_model = 32 in a
# pilot on 8,000 characters (600 steps, 5 lambdas: 0.03 coupled, 4 decoupled).
RELATIVE_CENTRES = {"coupled": -1.5, "decoupled": 0.5}


def group_of(path: str) -> str:
  """Which part of the model a decayed leaf belongs to."""
  if path.startswith(("embed/", "position/")):
    return "embed"
  if "/attn/" in path:
    return "attn"
  if "/mlp_" in path:
    return "mlp"
  return "head"


@dataclasses.dataclass(frozen=True)
class Config:
  """The settings of one study; the defaults are the default study (2 CPU cores)."""

  widths: tuple[int, ...] = (32, 64, 128)
  scalings: tuple[str, ...] = SCALINGS
  modes: tuple[str, ...] = MODES
  seeds: int = 2
  points: int = 9
  decades: float = 4.0
  steps: int = 300
  batch_size: int = 16
  context: int = 64
  layers: int = 2
  heads: int = 4
  train_chars: int = 8_000
  valid_chars: int = 20_000
  learning_rate: float = 3e-3
  absolute: bool = False  # True: no base; else every scaling relative to the narrowest width

  def base_width(self) -> int | None:
    return None if self.absolute else min(self.widths)

  def grid(self, scaling: str, mode: str) -> np.ndarray:
    centre = RELATIVE_CENTRES[mode]
    if self.absolute:  # plain L2's centre over the geometric mean of the absolute factors
      factors = jax.tree.leaves(ll2.scales(shapes(self, min(self.widths)), scaling))
      centre -= float(np.mean(np.log10([s for s in factors if s > 0])))
    return lambda_grid(centre, self.decades, self.points)


QUICK = Config(widths=(16, 32), seeds=1, points=3, decades=2.0, steps=30, context=16)


def model_config(cfg: Config, vocab: int, width: int) -> lm.Config:
  return lm.Config(vocab, width, cfg.layers, cfg.heads, cfg.context)


_VOCAB: dict[str, int] = {}


def shapes(cfg: Config, width: int) -> dict:
  """The parameter shapes of the model of ``d_model = width`` (for ``base=``)."""
  if "vocab" not in _VOCAB:
    _VOCAB["vocab"] = lm.split_text(lm.load_text()).vocab
  model = model_config(cfg, _VOCAB["vocab"], width)
  return jax.eval_shape(lambda: lm.init(jax.random.key(0), model))


def make_row_program(cfg: Config, vocab: int, width: int, scaling: str, mode: str):
  """One grid row as one program: ``(lambdas[L], params[S], ...)`` -> metrics ``(L, S)``."""
  model = model_config(cfg, vocab, width)
  base_width = cfg.base_width()
  base = None if base_width is None else shapes(cfg, base_width)
  warmup = max(1, cfg.steps // 10)
  lr = optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, warmup, cfg.steps)
  factor_scaling = "none" if mode == UNREGULARISED[1] else scaling
  # The part of the model of each leaf, in the order of the leaves of the params.
  groups = [group_of(row.path) for row in ll2.describe(shapes(cfg, width), 1.0).rows]

  def shares(params) -> dict:
    """Each group's fraction of the penalty ``sum s * ||w||^2`` under ``factor_scaling``."""
    per_leaf = ll2.penalty(params, 1.0, factor_scaling, base=base, per_leaf=True)
    totals = {g: jnp.zeros(()) for g in GROUPS}
    for group, value in zip(groups, jax.tree.leaves(per_leaf), strict=True):
      totals[group] += value
    whole = sum(totals.values())
    return {f"share_{g}": totals[g] / whole for g in GROUPS}

  def one_run(weight_decay, params, starts, train, valid):
    tx = make_optimizer(scaling, mode, weight_decay, lr, base=base)
    params, _, _ = lm.fit(model, tx, params, train, starts)
    metrics = {
      "test_loss": lm.evaluate(model, params, valid),
      "train_loss": lm.evaluate(model, params, train),
    }
    return metrics | shares(params)

  over_seeds = jax.vmap(one_run, in_axes=(None, 0, 0, None, None))
  return jax.jit(jax.vmap(over_seeds, in_axes=(0, None, None, None, None)))


def run_study(cfg: Config) -> tuple[list[Row], dict]:
  corpus = lm.split_text(lm.load_text())
  train = jnp.asarray(corpus.train[: cfg.train_chars])
  valid = jnp.asarray(corpus.valid[: cfg.valid_chars])
  data = {
    "python": sys.version.split()[0],
    "vocab": corpus.vocab,
    "train_chars": int(train.shape[0]),
    "valid_chars": int(valid.shape[0]),
  }
  seeds = range(cfg.seeds)
  starts = jnp.stack(
    [
      jnp.asarray(lm.batch_starts(len(train), cfg.context + 1, cfg.batch_size, cfg.steps, s))
      for s in seeds
    ]
  )
  params: dict[int, dict] = {}

  def train_row(width: int, scaling: str, mode: str, lambdas: np.ndarray) -> dict:
    model = model_config(cfg, corpus.vocab, width)
    if width not in params:
      keys = jnp.stack([jax.random.key(s) for s in seeds])
      params[width] = jax.jit(jax.vmap(lambda k: lm.init(k, model)))(keys)
    program = make_row_program(cfg, corpus.vocab, width, scaling, mode)
    return program(jnp.asarray(lambdas, jnp.float32), params[width], starts, train, valid)

  plan = study_plan(cfg.widths, cfg.scalings, cfg.modes, cfg.grid)
  return run_rows(plan, train_row, shared_width=cfg.base_width()), data


def summary(rows: Sequence[Row], cfg: Config, data: dict) -> str:
  grid, base = regularised(rows), unregularised(rows)
  widths, scalings, modes = cfg.widths, cfg.scalings, cfg.modes
  relative = "absolute factors (no base)"
  if cfg.base_width() is not None:
    relative = f"every scaling relative to the d_model={cfg.base_width()} model (base=)"
  lines = [
    f"Character LM on pydoc_data.topics (Python {data.get('python', '?')}; "
    f"{data.get('train_chars', '?')} training, {data.get('valid_chars', '?')} validation "
    f"characters): {cfg.layers} pre-norm blocks, {cfg.heads} heads, context {cfg.context}; "
    f"Adam lr={cfg.learning_rate:g} (warm-up, cosine), {cfg.steps} steps of "
    f"{cfg.batch_size} windows, {cfg.seeds} seeds, {cfg.points} lambdas over "
    f"{cfg.decades:g} decades; {relative}. Widths are d_model. 'test loss' below is the "
    "validation loss in bits per character.",
    "",
  ]
  lines += optimum_table(grid, widths, scalings, modes)
  lines += ["", *reuse_table(grid, widths, scalings, modes)]
  lines += ["", *best_loss_table(grid, base, widths, scalings, modes)]
  lines += [
    "",
    "How the penalty s*||w||^2 is shared at each optimum (unregularised: under plain L2),",
    "in % for embeddings / attention / MLP / head kernels.",
  ]
  header = f"{'scaling':<12} {'mode':<13} " + " ".join(f"{f'd={w}':>15}" for w in widths)
  lines += [header, "-" * len(header)]

  def shares(row: Row) -> str:
    i = 0
    if row.mode != UNREGULARISED[1]:
      i = int(np.argmin(np.abs(np.log10(row.lambdas) - optimum(row).log_lambda)))
    values = [100 * row.metrics[f"share_{g}"][i].mean() for g in GROUPS]
    return "/".join(f"{v:.0f}" for v in values).rjust(15)

  lines.append(f"{'none':<12} {'unregularised':<13} " + " ".join(shares(base[w]) for w in widths))
  for mode in modes:
    for scaling in scalings:
      cells = " ".join(shares(grid[scaling, mode, w]) for w in widths)
      lines.append(f"{scaling:<12} {mode:<13} {cells}")
  return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> tuple[Config, Path, bool]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", type=Path, default=Path("runs/transformer_width_study"))
  parser.add_argument("--quick", action="store_true", help="a tiny smoke-test study")
  parser.add_argument("--widths", type=int, nargs="+", help="d_model values")
  parser.add_argument("--scalings", nargs="+", choices=list(ll2.SCALINGS))
  parser.add_argument("--modes", nargs="+", choices=MODES)
  parser.add_argument("--seeds", type=int)
  parser.add_argument("--points", type=int, help="lambda values per grid")
  parser.add_argument("--decades", type=float, help="span of each lambda grid")
  parser.add_argument("--steps", type=int)
  parser.add_argument("--batch-size", type=int)
  parser.add_argument("--train-chars", type=int)
  parser.add_argument("--learning-rate", type=float)
  parser.add_argument("--absolute", action="store_true", default=None, help="no base")
  parser.add_argument("--replot", action="store_true", help="tables and plots from runs.csv")
  args = parser.parse_args(argv)
  cfg = from_flags(QUICK if args.quick else Config(), args)
  return cfg, args.out, args.replot


def main(argv: Sequence[str] | None = None) -> None:
  cfg, out, replot = parse_args(argv)
  out.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  config = dataclasses.asdict(cfg) | {
    "grids": {f"{s}/{m}": cfg.grid(s, m).tolist() for s in cfg.scalings for m in cfg.modes},
    "jax": jax.__version__,
    "device": jax.devices()[0].device_kind,
  }
  if replot:
    rows = read_csv(out / "runs.csv")
    data = json.loads((out / "config.json").read_text()).get("data", {})
  else:
    rows, data = run_study(cfg)
    config["data"] = data
    write_csv(rows, out / "runs.csv", METRICS)
  for mode in cfg.modes:
    plot_curves(
      rows,
      cfg.widths,
      cfg.scalings,
      mode,
      out / f"loss_{mode}.png",
      title=f"Character LM, {mode} decay: validation bits per character, "
      f"mean over {cfg.seeds} seeds (band: min-max)",
      metrics=(("test_loss", "validation bpc", 1.0), ("train_loss", "training bpc", 1.0)),
    )
  plot_optimal_lambda(
    rows,
    cfg.widths,
    cfg.scalings,
    cfg.modes,
    out / "optimal_lambda.png",
    title="Character LM: optimal lambda (lowest mean validation loss) against d_model;\n"
    "flat = lambda transfers. Band: range of per-seed optima; x: at the grid's edge",
  )
  table = summary(rows, cfg, data)
  if not replot:
    elapsed = time.perf_counter() - start
    table += f"\n\nwall time {elapsed:.0f} s, processor time {time.process_time():.0f} s"
    config |= {"wall_seconds": round(elapsed, 1), "cpu_seconds": round(time.process_time(), 1)}
    config["row_seconds"] = {f"d={r.width} {r.scaling} {r.mode}": round(r.seconds, 2) for r in rows}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
  (out / "summary.txt").write_text(table + "\n")
  print(table)


if __name__ == "__main__":
  main()
