"""Do a learning rate and a lambda tuned at a narrow Transformer carry over to wider ones?

The width study of ``examples/width_sweep.py``, on the character-level
language model of ``examples/transformer_lm.py``: pre-norm blocks with layer
norms, softmax attention, GELU MLPs, token and position embeddings and an
untied head. For each ``d_model`` (heads fixed, so ``head_dim`` grows with
it) every optimizer is relative to the narrowest model (``base=``).

Two studies:

* ``--study joint`` (the default, version 0.3): the learning rate and
  ``lambda`` tuned together. Each recipe of ``width_study.recipes`` (plain
  AdamW, version 0.2's ``sqrt_fan_avg`` decay, muP-style per-layer rates
  with several decay rules) trains points of one log-spaced (learning rate,
  lambda) lattice: a box at the base width, where every recipe is plain
  AdamW and which is trained once, then at each wider width the window
  around the base's tuned pair, walking on until the best point is
  surrounded (``width_study.lattice``). By default in one pass over the
  training text (every character predicted once, about 408 steps of 16
  windows of 64): the regime of large-model training. ``--train-chars 30000
  --steps 1200`` is the data-limited setting of version 0.2.
* ``--study lambda`` (version 0.2): one learning rate; for each scaling and
  way of applying it (coupled: ``chain(layer_l2, adam)``; decoupled:
  ``layer_adamw``), a log-spaced grid of ``lambda`` over several seeds on a
  small training set.

Every program trains many models at once: ``jax.vmap`` over the grid points
and seeds around one ``lax.scan``. Besides the losses, each run records how
its penalty ``s * ||w||^2`` is shared between the embeddings, attention,
MLP and head kernels.

Run::

  python examples/transformer_width_study.py --out runs/joint           # the default (51 min)
  python examples/transformer_width_study.py --quick --out runs/jquick  # a smoke test (about 70 s)
  python examples/transformer_width_study.py --recipes adamw sqrt_fan_avg mup mup_sqrt_decay sqrt_lr
  python examples/transformer_width_study.py --train-chars 30000 --steps 1200 --out runs/long
  python examples/transformer_width_study.py --study lambda --out runs/lambda  # version 0.2's study
  python examples/transformer_width_study.py --out runs/joint --replot

Writes ``runs.csv``, ``config.json`` and ``summary.txt`` to ``--out``, and the
figures: ``planes.png`` and ``joint_optima.png`` (joint), ``loss_<mode>.png``
and ``optimal_lambda.png`` (lambda). See ``docs/study.md``.
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
from width_study.lattice import Lattice
from width_study.optimum import optimum
from width_study.plots import plot_curves, plot_joint_optima, plot_optimal_lambda, plot_planes
from width_study.recipes import RECIPES, make_recipe_optimizer
from width_study.runs import (
  Row,
  joint_rows,
  read_csv,
  regularised,
  run_joint_saved,
  run_rows,
  study_plan,
  unregularised,
  write_csv,
)
from width_study.settings import study_from_flags
from width_study.tables import best_loss_table, joint_tables, optimum_table, reuse_table
from width_study.transfer import transfers

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
  """The settings of one lambda study (``--study lambda``); the defaults are version 0.2's."""

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

JOINT_RECIPES = ("adamw", "sqrt_fan_avg", "mup")
"""The recipes of the default joint study: one rate (plain, and version 0.2's decay rule)
against the recommended ``mup``; ``--recipes`` takes any of ``RECIPES``. The default
study took 51 minutes (3,037 s) on 2 CPU cores."""


@dataclasses.dataclass(frozen=True)
class JointConfig:
  """The settings of one joint study (``--study joint``); the defaults are the default study."""

  widths: tuple[int, ...] = (32, 64, 128)
  recipes: tuple[str, ...] = JOINT_RECIPES
  seeds: int = 2
  steps: int = 0  # 0: one pass over the training text, every character predicted once
  batch_size: int = 16
  context: int = 64
  layers: int = 2
  heads: int = 4
  train_chars: int = 0  # 0: the whole training split
  valid_chars: int = 20_000
  # The base width's box of the lattice, in log10, 3 points a decade: around
  # the optima of a pilot in one pass (best rate >= 1e-2 at d_model 32, its
  # lambda falling about as fast as the rate rises). The searches walk out of
  # it where they need to.
  rates: tuple[float, float] = (-2.667, -1.0)
  lambdas: tuple[float, float] = (-1.667, 0.333)
  per_decade: int = 3
  max_moves: int = 4

  def lattice(self) -> Lattice:
    return Lattice(self.rates[0], self.lambdas[0], self.per_decade)


JOINT_QUICK = JointConfig(
  widths=(16, 32),
  seeds=1,
  context=16,
  train_chars=8_000,
  valid_chars=4_000,
  rates=(-2.0, -1.667),
  lambdas=(-1.0, -0.667),
  max_moves=1,
)


def model_config(cfg: Config | JointConfig, vocab: int, width: int) -> lm.Config:
  return lm.Config(vocab, width, cfg.layers, cfg.heads, cfg.context)


_VOCAB: dict[str, int] = {}


def shapes(cfg: Config | JointConfig, width: int) -> dict:
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
  shares = penalty_shares(shapes(cfg, width), "none" if mode == UNREGULARISED[1] else scaling, base)

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


def penalty_shares(shapes_of_params: dict, scaling: str, base: dict | None):
  """``shares(params)``: each group's share of the penalty ``sum s * ||w||^2`` under ``scaling``."""
  # The part of the model of each leaf, in the order of the leaves of the params.
  groups = [group_of(row.path) for row in ll2.describe(shapes_of_params, 1.0).rows]

  def shares(params) -> dict:
    per_leaf = ll2.penalty(params, 1.0, scaling, base=base, per_leaf=True)
    totals = {g: jnp.zeros(()) for g in GROUPS}
    for group, value in zip(groups, jax.tree.leaves(per_leaf), strict=True):
      totals[group] += value
    whole = sum(totals.values())
    return {f"share_{g}": totals[g] / whole for g in GROUPS}

  return shares


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


def make_joint_program(cfg: JointConfig, vocab: int, width: int, recipe: str, steps: int):
  """Lattice points as one program: ``(rates[P], lambdas[P], params[S], ...)`` -> ``(P, S)``."""
  model = model_config(cfg, vocab, width)
  base = shapes(cfg, min(cfg.widths))
  rate_shape = optax.warmup_cosine_decay_schedule(0.0, 1.0, max(1, steps // 10), steps)
  shares = penalty_shares(shapes(cfg, width), RECIPES[recipe].scaling, base)

  def one_run(rate, weight_decay, params, starts, train, valid, train_sample):
    tx = make_recipe_optimizer(RECIPES[recipe], rate, weight_decay, base, rate_shape)
    params, _, _ = lm.fit(model, tx, params, train, starts)
    metrics = {
      "test_loss": lm.evaluate(model, params, valid),
      "train_loss": lm.evaluate(model, params, train_sample),
    }
    return metrics | shares(params)

  over_seeds = jax.vmap(one_run, in_axes=(None, None, 0, 0, None, None, None))
  return jax.jit(jax.vmap(over_seeds, in_axes=(0, 0, None, None, None, None, None)))


def run_joint_study(cfg: JointConfig, out: Path, resume: bool = False) -> tuple[list[Row], dict]:
  """Trains a joint study; ``runs.csv`` in ``out`` is written after every row, and with
  ``resume`` its rows are the start of this run."""
  corpus = lm.split_text(lm.load_text())
  train = jnp.asarray(corpus.train[: cfg.train_chars or None])
  valid = jnp.asarray(corpus.valid[: cfg.valid_chars])
  # The training loss is measured on the first `valid_chars` training characters.
  train_sample = train[: cfg.valid_chars]
  seeds = range(cfg.seeds)
  if cfg.steps:
    batches = [
      lm.batch_starts(len(train), cfg.context + 1, cfg.batch_size, cfg.steps, s) for s in seeds
    ]
  else:
    batches = [lm.one_pass_starts(len(train), cfg.context, cfg.batch_size, s) for s in seeds]
  starts = jnp.stack([jnp.asarray(b) for b in batches])
  steps = int(starts.shape[1])
  data = {
    "python": sys.version.split()[0],
    "vocab": corpus.vocab,
    "train_chars": int(train.shape[0]),
    "valid_chars": int(valid.shape[0]),
    "steps": steps,
    "passes": round(steps * cfg.batch_size * cfg.context / int(train.shape[0]), 2),
  }
  params: dict[int, dict] = {}
  programs: dict[tuple[int, str], object] = {}

  def train_points(width: int, recipe: str, rates: np.ndarray, lambdas: np.ndarray) -> dict:
    if width not in params:
      model = model_config(cfg, corpus.vocab, width)
      keys = jnp.stack([jax.random.key(s) for s in seeds])
      params[width] = jax.jit(jax.vmap(lambda k: lm.init(k, model)))(keys)
    if (width, recipe) not in programs:
      programs[width, recipe] = make_joint_program(cfg, corpus.vocab, width, recipe, steps)
    program = programs[width, recipe]
    rates, lambdas = jnp.asarray(rates, jnp.float32), jnp.asarray(lambdas, jnp.float32)
    return program(rates, lambdas, params[width], starts, train, valid, train_sample)

  return run_joint_saved(cfg, train_points, out, METRICS, resume), data


def joint_summary(rows: Sequence[Row], cfg: JointConfig, data: dict) -> str:
  regime = (
    f"{data.get('steps', '?')} steps of {cfg.batch_size} random windows"
    if cfg.steps
    else f"one pass: {data.get('steps', '?')} steps of {cfg.batch_size} windows, every "
    "training character predicted once"
  )
  lines = [
    f"Character LM on pydoc_data.topics (Python {data.get('python', '?')}; "
    f"{data.get('train_chars', '?')} training, {data.get('valid_chars', '?')} validation "
    f"characters): {cfg.layers} pre-norm blocks, {cfg.heads} heads, context {cfg.context}; "
    f"{regime} ({data.get('passes', '?')} passes); layer_adamw with warm-up and cosine decay; "
    f"{cfg.seeds} seeds; learning rate and lambda on a lattice of {cfg.per_decade} points a "
    f"decade, relative to the d_model={cfg.widths[0]} model (base=). Widths are d_model; "
    "'test loss' is the validation loss in bits per character.",
    "",
  ]
  grid = joint_rows(rows)
  found = transfers(grid, cfg.lattice(), cfg.widths, cfg.recipes)
  summaries = {name: RECIPES[name].summary for name in cfg.recipes}
  lines += joint_tables(found, cfg.widths, cfg.recipes, summaries, unit="bpc")
  lines += [
    "",
    "How the penalty s*||w||^2 is shared at each recipe's best point, in % for embeddings /",
    "attention / MLP / head kernels.",
  ]
  header = f"{'recipe':<15} " + " ".join(f"{f'd={w}':>15}" for w in cfg.widths)
  lines += [header, "-" * len(header)]
  lattice = cfg.lattice()
  for recipe in cfg.recipes:
    cells = []
    for w in cfg.widths:
      row = grid[recipe, w]
      best = found[recipe, w].optimum.best
      k = [lattice.point(r, lam) for r, lam in zip(row.rates, row.lambdas, strict=True)].index(best)
      values = [100 * row.metrics[f"share_{g}"][k].mean() for g in GROUPS]
      cells.append("/".join(f"{v:.0f}" for v in values).rjust(15))
    lines.append(f"{recipe:<15} " + " ".join(cells))
  trained = sum(
    row.metrics["test_loss"].size for row in grid.values() if row.width != cfg.widths[0]
  )
  trained += grid[cfg.recipes[0], cfg.widths[0]].metrics["test_loss"].size
  lines += ["", f"{trained} models trained."]
  return "\n".join(lines)


def joint_figures(rows: Sequence[Row], cfg: JointConfig, out: Path) -> None:
  grid = joint_rows(rows)
  found = transfers(grid, cfg.lattice(), cfg.widths, cfg.recipes)
  regime = "random windows" if cfg.steps else "one pass"
  plot_planes(
    grid,
    cfg.lattice(),
    found,
    cfg.widths,
    cfg.recipes,
    out / "planes.png",
    title=f"Character LM ({regime}): validation bpc over (learning rate, lambda), "
    f"mean over {cfg.seeds} seeds",
    unit="bpc",
  )
  plot_joint_optima(
    found,
    cfg.widths,
    cfg.recipes,
    out / "joint_optima.png",
    title=f"Character LM ({regime}): tuned pair against d_model, and what reusing "
    f"d_model={cfg.widths[0]}'s costs (band: per-seed range)",
    unit="bpc",
  )


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


def parse_args(argv: Sequence[str] | None) -> tuple[Config | JointConfig, argparse.Namespace]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument(
    "--study",
    choices=("joint", "lambda"),
    help="joint (the default) or lambda; with --replot, the study saved in --out",
  )
  parser.add_argument("--out", type=Path, default=Path("runs/transformer_width_study"))
  parser.add_argument("--quick", action="store_true", help="a tiny smoke-test study")
  parser.add_argument("--widths", type=int, nargs="+", help="d_model values")
  parser.add_argument("--seeds", type=int)
  parser.add_argument("--steps", type=int, help="training steps (joint: 0 for one pass)")
  parser.add_argument("--batch-size", type=int)
  parser.add_argument("--train-chars", type=int, help="joint: 0 for the whole training split")
  joint = parser.add_argument_group("joint study")
  joint.add_argument("--recipes", nargs="+", choices=list(RECIPES))
  joint.add_argument("--rates", type=float, nargs=2, help="log10 range of the base box's rates")
  joint.add_argument("--lambdas", type=float, nargs=2, help="log10 range of its lambdas")
  joint.add_argument("--per-decade", type=int, help="lattice points a decade")
  joint.add_argument("--max-moves", type=int, help="moves of each search beyond its start")
  one = parser.add_argument_group("lambda study")
  one.add_argument("--scalings", nargs="+", choices=list(ll2.SCALINGS))
  one.add_argument("--modes", nargs="+", choices=MODES)
  one.add_argument("--points", type=int, help="lambda values per grid")
  one.add_argument("--decades", type=float, help="span of each lambda grid")
  one.add_argument("--learning-rate", type=float)
  one.add_argument("--absolute", action="store_true", default=None, help="no base")
  joint.add_argument(
    "--resume",
    action="store_true",
    default=None,
    help="go on from the runs.csv in --out: its points are not trained again",
  )
  parser.add_argument("--replot", action="store_true", help="tables and plots from runs.csv")
  args = parser.parse_args(argv)
  studies = {"joint": (JointConfig(), JOINT_QUICK), "lambda": (Config(), QUICK)}
  return study_from_flags(parser, args, studies), args


def main(argv: Sequence[str] | None = None) -> None:
  cfg, args = parse_args(argv)
  out, replot = args.out, args.replot
  out.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  config = dataclasses.asdict(cfg) | {
    "study": "joint" if isinstance(cfg, JointConfig) else "lambda",
    "jax": jax.__version__,
    "device": jax.devices()[0].device_kind,
  }
  if isinstance(cfg, Config):
    config["grids"] = {f"{s}/{m}": cfg.grid(s, m).tolist() for s in cfg.scalings for m in cfg.modes}
  if replot:
    rows = read_csv(out / "runs.csv")
    saved = out / "config.json"
    data = json.loads(saved.read_text()).get("data", {}) if saved.exists() else {}
  else:
    # Written now for a run that stops early (its runs.csv grows row by row), and again at the end.
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    if isinstance(cfg, JointConfig):
      rows, data = run_joint_study(cfg, out, bool(args.resume))
    else:
      rows, data = run_study(cfg)
    config["data"] = data
    write_csv(rows, out / "runs.csv", METRICS)  # before plotting: a plot failure loses nothing
  if isinstance(cfg, JointConfig):
    joint_figures(rows, cfg, out)
    table = joint_summary(rows, cfg, data)
  else:
    lambda_figures(rows, cfg, out)
    table = summary(rows, cfg, data)
  if not replot:
    elapsed = time.perf_counter() - start
    table += f"\n\nwall time {elapsed:.0f} s, processor time {time.process_time():.0f} s"
    config |= {"wall_seconds": round(elapsed, 1), "cpu_seconds": round(time.process_time(), 1)}
    config["row_seconds"] = {f"d={r.width} {r.scaling} {r.mode}": round(r.seconds, 2) for r in rows}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
  (out / "summary.txt").write_text(table + "\n")
  print(table)


def lambda_figures(rows: Sequence[Row], cfg: Config, out: Path) -> None:
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


if __name__ == "__main__":
  main()
