"""The width-study driver: one command line, training and report for every architecture.

``main(arch)`` is a study script's ``main``: it reads the flags into the
settings of ``arch`` (:class:`width_study.architecture.Architecture`), trains
the study, or reads its ``runs.csv`` back for ``--replot``, and writes
``runs.csv``, ``config.json``, ``summary.txt`` and the figures to ``--out``.

Every grid row, or every batch of lattice points, is a single compiled
program: ``jax.vmap`` over the points and the seeds around one jitted
``fit`` of the architecture. For a given seed every point starts from the
same initial weights and sees the same batches, so the curves over the
points are not blurred by seed noise. The data are arguments, not constants
folded into the program, which keeps compiling fast.
"""

import argparse
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_layer_l2 as ll2
from width_study.architecture import Architecture, StudyData
from width_study.grid import MODES, UNREGULARISED, make_optimizer
from width_study.plots import plot_joint_study
from width_study.recipes import InitTransform, Recipe, make_recipe_optimizer
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
from width_study.settings import JointSettings, LambdaSettings, study_from_flags
from width_study.shared_base import AtBase, factors_at_base
from width_study.tables import best_loss_table, joint_tables, optimum_table, reuse_table
from width_study.transfer import transfers

# --- the command line -----------------------------------------------------------------------


def parse_args(
  arch: Architecture, argv: Sequence[str] | None
) -> tuple[LambdaSettings | JointSettings, argparse.Namespace]:
  """The settings of the study the flags ask for, and the flags."""
  helps = arch.flag_help
  parser = argparse.ArgumentParser(description=arch.description)
  parser.add_argument(
    "--study",
    choices=tuple(arch.studies),
    help="joint (the default): learning rate and lambda tuned together (0.3); lambda: one "
    "rate (0.2); with --replot, the study saved in --out",
  )
  parser.add_argument("--out", type=Path, default=arch.out, help="output folder (created)")
  parser.add_argument(
    "--quick",
    action="store_true",
    help="a small smoke-test study (a few minutes); other flags override it",
  )
  parser.add_argument("--widths", type=int, nargs="+", help=helps.get("widths"))
  parser.add_argument("--seeds", type=int)
  parser.add_argument("--steps", type=int, help=helps.get("steps", "training steps per run"))
  parser.add_argument("--batch-size", type=int)
  joint = parser.add_argument_group("joint study")
  joint.add_argument("--recipes", nargs="+", choices=list(arch.recipes))
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
  one.add_argument(
    "--absolute",
    action="store_true",
    default=None,
    help="no base: absolute factors, as version 0.1's study (default: relative to the narrowest)",
  )
  arch.add_flags(parser, joint, one)
  joint.add_argument(
    "--resume",
    action="store_true",
    default=None,
    help="go on from the runs.csv in --out: its points are not trained again",
  )
  parser.add_argument(
    "--replot",
    action="store_true",
    help="no training: redo the tables and plots from runs.csv and config.json in --out",
  )
  args = parser.parse_args(argv)
  return study_from_flags(parser, args, arch.studies), args


# --- the programs ---------------------------------------------------------------------------


def over_points_and_seeds(one_run: Callable[..., dict], hyper: int) -> Callable[..., dict]:
  """``one_run(*hyper values, params, batches, arrays)`` as one jitted program.

  Vmapped over the seeds (``params`` and ``batches``, leading axis) and over
  the grid points (the first ``hyper`` arguments, one value a point): every
  metric comes back with shape ``(points, seeds)``.
  """
  over_seeds = jax.vmap(one_run, in_axes=(*[None] * hyper, 0, 0, None))
  return jax.jit(jax.vmap(over_seeds, in_axes=(*[0] * hyper, None, None, None)))


def lambda_program(
  arch: Architecture, cfg: LambdaSettings, width: int, scaling: str, mode: str, base: Any | None
) -> Callable[..., dict]:
  """One grid row: ``program(lambdas[L], params[S], batches[S], arrays)`` -> metrics ``(L, S)``."""
  fit = arch.fit(cfg, width, "none" if mode == UNREGULARISED[1] else scaling, base)
  learning_rate = arch.learning_rate(cfg)

  def one_run(weight_decay, params, batches, arrays):
    tx = make_optimizer(scaling, mode, weight_decay, learning_rate, base=base)
    return fit(tx, params, batches, arrays)

  return over_points_and_seeds(one_run, 1)


def joint_program(
  arch: Architecture, cfg: JointSettings, width: int, recipe: Recipe, base: Any, steps: int
) -> Callable[..., dict]:
  """Lattice points: ``program(rates[P], lambdas[P], params[S], batches[S], arrays)`` -> ``(P, S)``.

  Each rate is the peak of ``arch.rate_shape``.
  """
  fit = arch.fit(cfg, width, recipe.scaling, base)
  rate_shape = arch.rate_shape(cfg, steps)

  def one_run(rate, weight_decay, params, batches, arrays):
    tx = make_recipe_optimizer(recipe, rate, weight_decay, base, rate_shape)
    return fit(tx, params, batches, arrays)

  return over_points_and_seeds(one_run, 2)


def initial_params(
  arch: Architecture,
  cfg: Any,
  width: int,
  transform: InitTransform | None = None,
  base_width: int | None = None,
) -> Any:
  """The initial weights of every seed (seed ``s`` from ``jax.random.key(s)``), stacked.

  ``transform(params, base)``, a recipe's, is applied to each seed's weights,
  with ``base`` the base width's initial weights of the same seed.
  """
  keys = jnp.stack([jax.random.key(s) for s in range(cfg.seeds)])

  def one(key: jax.Array) -> Any:
    params = arch.init(cfg, width, key)
    if transform is None:
      return params
    return transform(params, arch.init(cfg, width if base_width is None else base_width, key))

  return jax.jit(jax.vmap(one))(keys)


# --- the studies ----------------------------------------------------------------------------


def run_lambda_study(arch: Architecture, cfg: LambdaSettings, data: StudyData) -> list[Row]:
  """Trains every grid row of a lambda study, with a progress bar over the rows."""
  base_width = cfg.base_width()
  base = None if base_width is None else arch.param_shapes(cfg, base_width)
  params: dict[int, Any] = {}

  def train_row(width: int, scaling: str, mode: str, lambdas: np.ndarray) -> dict:
    if width not in params:
      params[width] = initial_params(arch, cfg, width)
    program = lambda_program(arch, cfg, width, scaling, mode, base)
    return program(jnp.asarray(lambdas, jnp.float32), params[width], data.batches, data.arrays)

  def at_base(scaling: str) -> AtBase | None:
    return None if scaling == UNREGULARISED[0] else factors_at_base(base, scaling)

  plan = study_plan(cfg.widths, cfg.scalings, cfg.modes, lambda s, m: grid(arch, cfg, s, m))
  return run_rows(plan, train_row, shared_width=base_width, at_base=at_base)


def grid(arch: Architecture, cfg: LambdaSettings, scaling: str, mode: str) -> np.ndarray:
  """The lambda grid of one ``(scaling, mode)`` of a lambda study of ``arch``."""
  return cfg.grid(arch.centres, scaling, mode, lambda: arch.param_shapes(cfg, min(cfg.widths)))


def run_joint_study(
  arch: Architecture, cfg: JointSettings, data: StudyData, out: Path, resume: bool = False
) -> list[Row]:
  """Trains a joint study (:func:`width_study.runs.run_joint_saved`), with a progress bar.

  ``runs.csv`` in ``out`` is written after every row; with ``resume`` its rows
  are the start of this run. Before anything is trained, what every recipe
  trains at the base width is compared with the first's: its optimizer's
  factors there, and its initial weights (a recipe's init transform must
  leave the base's as they are), since the base's rows serve every recipe.
  """
  base_width = cfg.base_width()
  base = arch.param_shapes(cfg, base_width)
  recipes = {name: arch.recipes[name] for name in cfg.recipes}
  params: dict[tuple[int, InitTransform | None], Any] = {}
  programs: dict[tuple[int, str], Callable[..., dict]] = {}

  def params_of(width: int, recipe: Recipe) -> Any:
    if (width, recipe.init) not in params:
      params[width, recipe.init] = initial_params(arch, cfg, width, recipe.init, base_width)
    return params[width, recipe.init]

  def at_base(name: str) -> AtBase:
    recipe = recipes[name]
    form = recipe.at_base(base)
    if recipe.init is None:
      return form
    plain = jax.tree.leaves(params_of(base_width, dataclasses.replace(recipe, init=None)))
    mine = jax.tree.leaves(params_of(base_width, recipe))
    if all(np.array_equal(a, b) for a, b in zip(plain, mine, strict=True)):
      return form
    transform = getattr(recipe.init, "__name__", "its init transform")
    return dataclasses.replace(form, init=f"{transform} changes them")

  def train_points(width: int, name: str, rates: np.ndarray, lambdas: np.ndarray) -> dict:
    if (width, name) not in programs:
      programs[width, name] = joint_program(arch, cfg, width, recipes[name], base, data.steps)
    rates, lambdas = jnp.asarray(rates, jnp.float32), jnp.asarray(lambdas, jnp.float32)
    start = params_of(width, recipes[name])
    return programs[width, name](rates, lambdas, start, data.batches, data.arrays)

  return run_joint_saved(cfg, train_points, out, arch.metrics, resume, at_base=at_base)


# --- the report -----------------------------------------------------------------------------


def joint_summary(
  arch: Architecture, rows: Sequence[Row], cfg: JointSettings, info: dict[str, Any]
) -> str:
  """A joint study's tables: tuned pairs, drift, regret, quality, then the architecture's."""
  grid = joint_rows(rows)
  found = transfers(grid, cfg.lattice(), cfg.widths, cfg.recipes)
  summaries = {name: arch.recipes[name].summary for name in cfg.recipes}
  lines = [arch.joint_header(cfg, info), ""]
  lines += joint_tables(found, cfg.widths, cfg.recipes, summaries, unit=arch.unit)
  lines += arch.joint_tables(grid, found, cfg)
  return "\n".join(lines)


def lambda_summary(
  arch: Architecture, rows: Sequence[Row], cfg: LambdaSettings, info: dict[str, Any]
) -> str:
  """A lambda study's tables: optimal lambda, drift, reuse cost, quality, and the architecture's."""
  grid, base = regularised(rows), unregularised(rows)
  widths, scalings, modes = cfg.widths, cfg.scalings, cfg.modes
  lines = [arch.lambda_header(cfg, info), ""]
  lines += optimum_table(grid, widths, scalings, modes)
  lines += ["", *reuse_table(grid, widths, scalings, modes)]
  lines += ["", *best_loss_table(grid, base, widths, scalings, modes)]
  lines += arch.lambda_tables(rows, cfg)
  return "\n".join(lines)


def main(arch: Architecture, argv: Sequence[str] | None = None) -> None:
  """A study script's ``main``: the study the flags ask for, trained or replotted, in ``--out``."""
  cfg, args = parse_args(arch, argv)
  out, replot = args.out, args.replot
  out.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  joint = isinstance(cfg, JointSettings)
  config = dataclasses.asdict(cfg) | {
    "study": "joint" if joint else "lambda",
    "jax": jax.__version__,
    "optax": optax.__version__,
    "device": jax.devices()[0].device_kind,
  }
  if not joint:
    grids = {f"{s}/{m}": grid(arch, cfg, s, m).tolist() for s in cfg.scalings for m in cfg.modes}
    config["grids"] = grids
  saved = out / "config.json"
  if replot:
    rows = read_csv(out / "runs.csv")
    info = json.loads(saved.read_text()).get("data", {}) if saved.exists() else {}
  else:
    # Written now for a run that stops early (its runs.csv grows row by row), and again at the end.
    saved.write_text(json.dumps(config, indent=2) + "\n")
    data = arch.load(cfg)
    if joint:
      rows = run_joint_study(arch, cfg, data, out, bool(args.resume))
    else:
      rows = run_lambda_study(arch, cfg, data)
    info = data.info
    if info:
      config["data"] = info
    write_csv(rows, out / "runs.csv", arch.metrics)  # before plotting: a plot failure loses nothing
  if joint:
    plot_joint_study(rows, cfg, out, arch.joint_titles(cfg), arch.unit, arch.span)
    table = joint_summary(arch, rows, cfg, info)
  else:
    arch.lambda_figures(rows, cfg, out)
    table = lambda_summary(arch, rows, cfg, info)
  if replot:
    (out / "summary.txt").write_text(table + "\n")
    print(table)
    return
  elapsed, cpu = time.perf_counter() - start, time.process_time()
  timing = f"wall time {elapsed:.0f} s, processor time {cpu:.0f} s (all threads)"
  (out / "summary.txt").write_text(table + f"\n\n{timing}\n")
  name = lambda r: f"{arch.label}={r.width} {r.scaling} {r.mode}"  # noqa: E731
  config |= {
    "row_seconds": {name(r): round(r.seconds, 2) for r in rows},
    "row_cpu_seconds": {name(r): round(r.cpu_seconds, 2) for r in rows},
    "cpu_seconds": round(cpu, 1),
    "wall_seconds": round(elapsed, 1),
  }
  saved.write_text(json.dumps(config, indent=2) + "\n")
  print(table)
  print(f"\n{timing}; results in {out}")
