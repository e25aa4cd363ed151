"""Does any per-layer scaling make the best L2 strength carry over across widths?

A study on MNIST-1D. For MLPs ``40 -> w -> w -> 10`` of several widths ``w``,
each per-layer scaling of ``optax_layer_l2`` (``none`` is plain L2) and each
way of applying it (coupled: ``chain(layer_l2, adam)``; decoupled:
``layer_adamw``), train a log-spaced grid of ``lambda`` values over several
seeds, and find the ``lambda`` with the lowest mean test loss. If a scaling
makes ``lambda`` carry over, that optimum stays put as the width changes.

By default every scaling is relative to the narrowest model (``base=`` its
shapes), so at the narrowest width every scaling is plain L2 and the question
is exactly the user's: tune ``lambda`` there, reuse it wider. ``--absolute``
runs the scalings without a base, as version 0.1's study did.

Every grid row (one width, scaling and mode) is a single compiled program:
``jax.vmap`` over ``lambda`` and seeds around one jitted ``lax.scan`` training
loop. The data set is generated offline by the ``mnist1d`` package. The
machinery shared with the Transformer study lives in ``examples/width_study``.

Run::

  python examples/width_sweep.py --out runs/width_sweep          # the full study (~40 min)
  python examples/width_sweep.py --quick --out runs/quick         # a smoke test (~2 min)
  python examples/width_sweep.py --out runs/width_sweep --replot  # tables and plots again
  python examples/width_sweep.py --widths 32 64 128 256 512 1024 2048  # wider, on a GPU

The output folder gets ``runs.csv`` (one line per trained network),
``config.json``, ``summary.txt`` (the printed tables) and the plots
``loss_acc_<mode>.png``, ``optimal_lambda.png`` and ``mean_square.png``.
See ``docs/study.md`` for what came out.
"""

import argparse
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib.ticker
import numpy as np
import optax
from width_study.grid import MODES, UNREGULARISED, lambda_grid, make_optimizer
from width_study.lattice import Lattice
from width_study.optimum import optimum
from width_study.plots import (
  plot_curves,
  plot_joint_optima,
  plot_optimal_lambda,
  plot_planes,
  plt,
  scaling_colours,
)
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
from width_study.tables import (
  accuracy_table,
  best_loss_table,
  joint_tables,
  optimum_table,
  reuse_table,
)
from width_study.transfer import transfers

import optax_layer_l2 as ll2

SCALINGS = ("none", "fan_avg", "sqrt_fan_in", "sqrt_fan_avg")
"""The scalings of the default study; ``--scalings`` takes any of ``ll2.SCALINGS``."""
LAYERS = ("Dense_0", "Dense_1", "Dense_2")
METRICS = ("test_acc", "test_loss", "train_loss", "train_acc", *(f"ms_{n}" for n in LAYERS))

# log10 of the centre of each lambda grid without a base (`--absolute`). The
# scalings differ by orders of magnitude in `s` (for a 512 x 512 kernel: 1,
# 4e-6, 4e-3, 2e-3), and the decoupled decay is multiplied by the learning
# rate, so every (scaling, mode) pair needs its own centre. Found with a pilot
# of 17 values over 8 decades at widths 32 and 256 (one seed), and set a
# quarter decade below the middle of its optima: the loss falls slowly below
# an optimum and collapses fast above it. A scaling not listed is centred by
# the rescaling argument: none's centre over the geometric mean of its
# factors at the narrowest width.
ABSOLUTE_CENTRES = {
  ("none", "coupled"): -2.75,
  ("numel", "coupled"): 0.95,
  ("fan_avg", "coupled"): -1.25,
  ("fan_in", "coupled"): -0.95,
  ("none", "decoupled"): -0.45,
  ("numel", "decoupled"): 3.05,
  ("fan_avg", "decoupled"): 0.85,
  ("fan_in", "decoupled"): 1.15,
}
# With the narrowest model as base, every scaling is plain L2 there, so one
# centre a mode holds every optimum: plain L2's optima at width 32 (version
# 0.1: 0.004 coupled, 0.28 decoupled), raised a little for the scalings whose
# optimum grows with width. Every optimum of the default study lies a decade
# or more inside its grid.
RELATIVE_CENTRES = {"coupled": -2.3, "decoupled": -0.3}


@dataclasses.dataclass(frozen=True)
class Config:
  """The settings of one study; the defaults are the full study."""

  widths: tuple[int, ...] = (32, 64, 128, 256, 512)
  scalings: tuple[str, ...] = SCALINGS
  modes: tuple[str, ...] = MODES
  seeds: int = 3
  points: int = 17
  decades: float = 4.0
  steps: int = 1000
  batch_size: int = 128
  learning_rate: float = 3e-3
  init: str = "glorot"
  absolute: bool = False  # True: no base; else every scaling relative to the narrowest width

  def base_width(self) -> int | None:
    """The width of the base model, or ``None`` without one."""
    return None if self.absolute else min(self.widths)

  def grid(self, scaling: str, mode: str) -> np.ndarray:
    """The lambda grid of one (scaling, mode) pair."""
    if not self.absolute:
      centre = RELATIVE_CENTRES[mode]
    elif (scaling, mode) in ABSOLUTE_CENTRES:
      centre = ABSOLUTE_CENTRES[scaling, mode]
    else:
      factors = kernel_factors(min(self.widths), scaling, None)
      centre = ABSOLUTE_CENTRES["none", mode] - float(np.mean(np.log10(factors)))
    return lambda_grid(centre, self.decades, self.points)


QUICK = Config(widths=(32, 128), seeds=2, points=7, decades=3.0, steps=300)

JOINT_RECIPES = ("adamw", "sqrt_fan_avg", "mup", "mup_sqrt_decay", "sqrt_lr")
"""The recipes of the default joint study; ``--recipes`` takes any of ``RECIPES``."""


@dataclasses.dataclass(frozen=True)
class JointConfig:
  """The settings of one joint study (``--study joint``); the defaults are the default study."""

  widths: tuple[int, ...] = (32, 64, 128, 256, 512)
  recipes: tuple[str, ...] = JOINT_RECIPES
  seeds: int = 3
  steps: int = 1000
  batch_size: int = 128
  init: str = "glorot"
  schedule: str = "cosine"  # of the learning rate: "cosine" (10% warm-up) or "constant"
  # The base width's box of the lattice, in log10, 3 points a decade, around
  # a pilot's optima (best rate 1e-2 at widths 32 and 256); the searches walk
  # out of it where they need to.
  rates: tuple[float, float] = (-3.0, -1.333)
  lambdas: tuple[float, float] = (-1.667, 0.333)
  per_decade: int = 3
  max_moves: int = 4

  def lattice(self) -> Lattice:
    return Lattice(self.rates[0], self.lambdas[0], self.per_decade)


JOINT_QUICK = JointConfig(
  widths=(32, 128),
  recipes=("adamw", "mup"),
  seeds=2,
  steps=300,
  rates=(-2.333, -2.0),
  lambdas=(-0.667, -0.333),
  max_moves=1,
)


# --- data and model -------------------------------------------------------------------------


def load_mnist1d() -> dict[str, np.ndarray]:
  """MNIST-1D generated offline (4,000 train, 1,000 test), standardised per feature."""
  from mnist1d.data import get_dataset_args, make_dataset

  data = make_dataset(get_dataset_args())
  x, x_test = data["x"].astype(np.float32), data["x_test"].astype(np.float32)
  mean, std = x.mean(axis=0), x.std(axis=0)
  return {
    "x": (x - mean) / std,
    "y": data["y"].astype(np.int32),
    "x_test": (x_test - mean) / std,
    "y_test": data["y_test"].astype(np.int32),
  }


INITS = {
  "glorot": nn.initializers.glorot_normal,  # variance 2 / (n_in + n_out)
  "lecun": nn.initializers.lecun_normal,  # variance 1 / n_in
}


class MLP(nn.Module):
  """``in -> width -> width -> classes`` with ReLU."""

  width: int
  classes: int = 10
  init_name: str = "glorot"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel_init = INITS[self.init_name]()
    x = nn.relu(nn.Dense(self.width, kernel_init=kernel_init)(x))
    x = nn.relu(nn.Dense(self.width, kernel_init=kernel_init)(x))
    return nn.Dense(self.classes, kernel_init=kernel_init)(x)


def layer_shapes(width: int, features: int = 40, classes: int = 10) -> list[tuple[int, int]]:
  """``(n_in, n_out)`` of the three kernels."""
  return [(features, width), (width, width), (width, classes)]


def param_shapes(width: int, features: int = 40) -> dict:
  """The shapes of the MLP's parameters (for ``base=``)."""
  model = MLP(width)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, features))))["params"]


# --- training: one compiled program per grid row --------------------------------------------


def batch_indices(key: jax.Array, n: int, steps: int, batch_size: int) -> jax.Array:
  """``(steps, batch_size)`` example indices: a fresh shuffle every epoch."""
  per_epoch = n // batch_size
  epochs = -(-steps // per_epoch)
  keys = jax.random.split(key, epochs)
  perms = jax.vmap(lambda k: jax.random.permutation(k, n)[: per_epoch * batch_size])(keys)
  return perms.reshape(epochs * per_epoch, batch_size)[:steps]


def initial_params(width: int, cfg: Config | JointConfig, features: int, seeds: jax.Array) -> dict:
  """The initial weights for every seed, stacked on a leading axis."""
  model = MLP(width, init_name=cfg.init)
  dummy = jnp.zeros((1, features))
  return jax.jit(jax.vmap(lambda seed: model.init(jax.random.key(seed), dummy)["params"]))(seeds)


def make_row_program(width: int, scaling: str, mode: str, cfg: Config) -> Callable[..., dict]:
  """One grid row as a single jitted program.

  ``program(lambdas[L], params[S, ...], batches[S, steps, batch], data)``
  trains ``L * S`` networks and returns their metrics, each of shape
  ``(L, S)``. For a given seed every lambda starts from the same initial
  weights and sees the same batches, so the curves over lambda are not
  blurred by seed noise. The data are arguments, not constants folded into
  the program, which keeps compiling fast.
  """
  base_width = cfg.base_width()
  base = None if base_width is None else param_shapes(base_width)
  fit = make_fit(width, cfg.init)

  def one_run(weight_decay, params, batches, data):
    tx = make_optimizer(scaling, mode, weight_decay, cfg.learning_rate, base=base)
    return fit(tx, params, batches, data)

  over_seeds = jax.vmap(one_run, in_axes=(None, 0, 0, None))
  return jax.jit(jax.vmap(over_seeds, in_axes=(0, None, None, None)))


def make_fit(width: int, init: str) -> Callable[..., dict]:
  """``fit(tx, params, batches, data)``: one MLP trained with ``tx`` in a ``lax.scan``; metrics."""
  model = MLP(width, init_name=init)

  def data_loss(params, xb, yb):
    logits = model.apply({"params": params}, xb)
    return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

  def evaluate(params, xs, ys):
    logits = model.apply({"params": params}, xs)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, ys).mean()
    return loss, (logits.argmax(-1) == ys).mean()

  def fit(tx, params, batches, data):
    def step(carry, batch):
      params, opt_state = carry
      grads = jax.grad(data_loss)(params, data["x"][batch], data["y"][batch])
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), batches)
    test_loss, test_acc = evaluate(params, data["x_test"], data["y_test"])
    train_loss, train_acc = evaluate(params, data["x"], data["y"])
    metrics = {
      "test_acc": test_acc,
      "test_loss": test_loss,
      "train_loss": train_loss,
      "train_acc": train_acc,
    }
    for layer in LAYERS:
      metrics[f"ms_{layer}"] = jnp.mean(params[layer]["kernel"] ** 2)
    return metrics

  return fit


RATE_SHAPES: dict[str, Callable[[int], optax.Schedule | None]] = {
  "constant": lambda steps: None,
  "cosine": lambda steps: optax.warmup_cosine_decay_schedule(0.0, 1.0, max(1, steps // 10), steps),
}
"""The learning rate's shape over ``steps``, multiplying the peak rate of each lattice point."""


def make_joint_program(width: int, recipe: str, cfg: JointConfig) -> Callable[..., dict]:
  """Points of the lattice as one program.

  ``program(rates[P], lambdas[P], params[S, ...], batches[S, steps, batch], data)``
  trains the ``P`` pairs ``(rates[k], lambdas[k])`` for every seed, the rate
  the peak of ``cfg.schedule``, and returns metrics of shape ``(P, S)``.
  """
  base = param_shapes(min(cfg.widths))
  fit = make_fit(width, cfg.init)
  rate_shape = RATE_SHAPES[cfg.schedule](cfg.steps)

  def one_run(rate, weight_decay, params, batches, data):
    tx = make_recipe_optimizer(RECIPES[recipe], rate, weight_decay, base, rate_shape)
    return fit(tx, params, batches, data)

  over_seeds = jax.vmap(one_run, in_axes=(None, None, 0, 0, None))
  return jax.jit(jax.vmap(over_seeds, in_axes=(0, 0, None, None, None)))


def seed_batches(cfg: Config | JointConfig, n: int, seeds: jax.Array) -> jax.Array:
  """``(seeds, steps, batch_size)`` example indices: each seed its own shuffles."""
  return jax.jit(
    jax.vmap(
      lambda seed: batch_indices(jax.random.key(seed + 10_000), n, cfg.steps, cfg.batch_size)
    )
  )(seeds)


def run_joint_study(
  cfg: JointConfig, data: dict[str, np.ndarray], out: Path, resume: bool = False
) -> list[Row]:
  """Trains a joint study (``width_study.runs.run_joint_saved``), with a progress bar.

  ``runs.csv`` in ``out`` is written after every row; with ``resume`` its rows
  are the start of this run.
  """
  device_data = {k: jnp.asarray(v) for k, v in data.items()}
  seeds = jnp.arange(cfg.seeds)
  n, features = data["x"].shape
  batches = seed_batches(cfg, n, seeds)
  params: dict[int, dict] = {}
  programs: dict[tuple[int, str], Callable[..., dict]] = {}

  def train_points(width: int, recipe: str, rates: np.ndarray, lambdas: np.ndarray) -> dict:
    if width not in params:
      params[width] = initial_params(width, cfg, features, seeds)
    if (width, recipe) not in programs:
      programs[width, recipe] = make_joint_program(width, recipe, cfg)
    rates, lambdas = jnp.asarray(rates, jnp.float32), jnp.asarray(lambdas, jnp.float32)
    return programs[width, recipe](rates, lambdas, params[width], batches, device_data)

  return run_joint_saved(cfg, train_points, out, METRICS, resume)


def run_study(cfg: Config, data: dict[str, np.ndarray]) -> list[Row]:
  """Trains every grid row, with a progress bar over the rows."""
  device_data = {k: jnp.asarray(v) for k, v in data.items()}
  seeds = jnp.arange(cfg.seeds)
  n, features = data["x"].shape
  batches = seed_batches(cfg, n, seeds)
  params: dict[int, dict] = {}

  def train_row(width: int, scaling: str, mode: str, lambdas: np.ndarray) -> dict:
    if width not in params:
      params[width] = initial_params(width, cfg, features, seeds)
    program = make_row_program(width, scaling, mode, cfg)
    return program(jnp.asarray(lambdas, jnp.float32), params[width], batches, device_data)

  plan = study_plan(cfg.widths, cfg.scalings, cfg.modes, cfg.grid)
  return run_rows(plan, train_row, shared_width=cfg.base_width())


# --- the MLP's own tables -------------------------------------------------------------------


def summary(rows: Sequence[Row], cfg: Config) -> str:
  """The tables: optimal lambda, drift and reuse cost; quality; accuracies; layer balance."""
  grid, base = regularised(rows), unregularised(rows)
  widths, scalings, modes = cfg.widths, cfg.scalings, cfg.modes
  relative = "absolute factors (no base)"
  if cfg.base_width() is not None:
    relative = f"every scaling relative to the w={cfg.base_width()} model (base=)"
  lines = [
    f"MLP 40-w-w-10, {cfg.init} init, Adam lr={cfg.learning_rate:g}, {cfg.steps} steps of "
    f"batch {cfg.batch_size}, {cfg.seeds} seeds, {cfg.points} lambdas over {cfg.decades:g} "
    f"decades per (scaling, mode); {relative}.",
    "",
  ]
  lines += optimum_table(grid, widths, scalings, modes)
  lines += ["", *reuse_table(grid, widths, scalings, modes)]
  lines += ["", *best_loss_table(grid, base, widths, scalings, modes)]
  lines += ["", *accuracy_table(grid, base, widths, scalings, modes)]
  if "coupled" in modes and "none" in scalings:
    lines += [
      "",
      "Coupled: lambda* against the rescaling-symmetry prediction lambda*_none / geomean(s)",
      "(observed / predicted; see symmetry_prediction).",
    ]
    header = f"{'scaling':<12} " + " ".join(f"{f'w={w}':>17}" for w in widths)
    lines += [header, "-" * len(header)]
    for scaling in scalings:
      cells = []
      for w in widths:
        observed = optimum(grid[scaling, "coupled", w]).log_lambda
        none = optimum(grid["none", "coupled", w]).log_lambda
        predicted = symmetry_prediction(none, w, scaling, cfg.base_width())
        cells.append(f"{10**observed:.2g} / {10**predicted:.2g}".rjust(17))
      lines.append(f"{scaling:<12} " + " ".join(cells))
  lines += [
    "",
    "Mean square ms of the trained kernels (40->w, w->w, w->10; mean over seeds), times",
    "(n_in + n_out) and times n_in. Glorot init gives (n_in + n_out)*ms = 2, LeCun n_in*ms = 1.",
  ]
  header = f"{'width':>5} {'weights':<28} {'(n_in+n_out)*ms':>24} {'n_in*ms':>24}"
  lines += [header, "-" * len(header)]
  for w in widths:
    sources = [("unregularised", base[w])]
    for scaling in ("sqrt_fan_avg", "sqrt_fan_in"):
      if (scaling, "decoupled", w) in grid:
        sources.append((f"{scaling} decoupled optimum", grid[scaling, "decoupled", w]))
    for name, row in sources:
      ms = trained_mean_square(row)
      n_in, n_out = np.array(layer_shapes(w)).T
      avg = " ".join(f"{v:7.2f}" for v in (n_in + n_out) * ms)
      inn = " ".join(f"{v:7.2f}" for v in n_in * ms)
      lines.append(f"{w:>5} {name:<28} {avg:>24} {inn:>24}")
  lines += [
    "",
    "How unequal is the per-layer penalty s*||W||^2 of the three kernels under each scaling",
    "(absolute factors, no base)? max / min over the kernels (1.0: every layer pays alike).",
    "Of the unregularised trained weights, and of the expected Glorot init (ms = 2/(n_in+n_out)).",
  ]
  header = f"{'penalty measured by':<32} " + " ".join(f"{f'w={w}':>7}" for w in widths)
  lines += [header, "-" * len(header)]
  for source in ("unregularised", "Glorot init"):
    for scaling in ll2.SCALINGS:
      cells = []
      for w in widths:
        if source == "Glorot init":
          ms = np.array([2 / (a + b) for a, b in layer_shapes(w)])
        else:
          ms = trained_mean_square(base[w])
        cells.append(f"{penalty_spread(ms, w, scaling, None):7.1f}")
      lines.append(f"{f'{scaling}, {source}':<32} " + " ".join(cells))
  lines += [
    "",
    "The same spread at each (scaling, mode)'s optimum, measured by the factors it trained with.",
  ]
  header = f"{'optimum of':<32} " + " ".join(f"{f'w={w}':>7}" for w in widths)
  lines += [header, "-" * len(header)]
  for mode in modes:
    for scaling in scalings:
      cells = []
      for w in widths:
        ms = trained_mean_square(grid[scaling, mode, w])
        cells.append(f"{penalty_spread(ms, w, scaling, cfg.base_width()):7.1f}")
      lines.append(f"{f'{scaling} {mode}':<32} " + " ".join(cells))
  return "\n".join(lines)


def trained_mean_square(row: Row) -> np.ndarray:
  """Seed-mean mean square of the three kernels, at the grid point nearest the optimum."""
  i = 0
  if row.mode != UNREGULARISED[1]:
    i = int(np.argmin(np.abs(np.log10(row.lambdas) - optimum(row).log_lambda)))
  return np.array([row.metrics[f"ms_{layer}"][i].mean() for layer in LAYERS])


def kernel_factors(width: int, scaling: str, base_width: int | None) -> np.ndarray:
  """The factor ``s`` of each kernel, from ``ll2.scales`` (shapes are enough)."""
  base = None if base_width is None else param_shapes(base_width)
  factors = ll2.scales(param_shapes(width), scaling, base=base)
  return np.array([factors[layer]["kernel"] for layer in LAYERS])


def penalty_spread(ms: np.ndarray, width: int, scaling: str, base_width: int | None) -> float:
  """max / min over the kernels of ``s * ||W||^2``."""
  numel = np.array([a * b for a, b in layer_shapes(width)])
  per_layer = kernel_factors(width, scaling, base_width) * numel * ms
  return float(per_layer.max() / per_layer.min())


def symmetry_prediction(
  none_log_lambda: float, width: int, scaling: str, base_width: int | None
) -> float:
  """log10 of the lambda that matches plain L2's ``10**none_log_lambda`` in a ReLU MLP.

  Scaling kernel ``l`` by ``a_l`` (and the biases along) with ``prod(a_l) = 1``
  leaves a ReLU MLP's function unchanged, and minimising
  ``sum_l s_l ||W_l||^2`` over those rescalings leaves
  ``L * prod(s_l)**(1/L) * prod(||W_l||^2)**(1/L)``. So the penalised problems of
  ``(lambda, s)`` and of plain L2 with ``lambda * prod(s_l)**(1/L)`` have the
  same minimisers up to rescaling: only the geometric mean of the factors counts.
  """
  factors = kernel_factors(width, scaling, base_width)
  return none_log_lambda - float(np.mean(np.log10(factors)))


def plot_mean_square(rows: Sequence[Row], cfg: Config, path: Path) -> None:
  """Trained mean square per layer against 1/(n_in + n_out) and against 1/n_in.

  Rows of panels: the unregularised networks, then each mode at the optima of
  ``none``, ``sqrt_fan_in`` and ``sqrt_fan_avg`` (the others are in the printed tables).
  Each width's three kernels are joined by a thin line: a line parallel to
  ``ms = x`` means the three layers pay the same penalty under the scaling of
  that column (``fan_avg`` on the left, fan-in scale on the right).
  """
  grid, base = regularised(rows), unregularised(rows)
  markers = dict(zip(LAYERS, ("o", "s", "^"), strict=True))
  colours = scaling_colours(cfg.scalings)
  shown = [s for s in ("none", "sqrt_fan_in", "sqrt_fan_avg") if s in cfg.scalings]
  panels = [("unregularised", [("unregularised", None)])]
  panels += [(f"{m}, at each optimum", [(s, (s, m)) for s in shown]) for m in cfg.modes]
  fig, axes = plt.subplots(
    len(panels), 2, figsize=(12, 4.6 * len(panels)), squeeze=False, sharex="col", sharey=True
  )
  xs_all = []
  for r, (_, sources) in enumerate(panels):
    for name, key in sources:
      colour = "k" if key is None else colours[name]
      for w in cfg.widths:
        ms = trained_mean_square(base[w] if key is None else grid[(*key, w)])
        for c, fan in enumerate((lambda a, b: 1 / (a + b), lambda a, b: 1 / a)):
          xs = np.array([fan(a, b) for a, b in layer_shapes(w)])
          xs_all += list(xs)
          order = np.argsort(xs)
          axes[r, c].plot(xs[order], ms[order], "-", color=colour, lw=0.7, alpha=0.6)
          for x, m, layer in zip(xs, ms, LAYERS, strict=True):
            axes[r, c].scatter(x, m, marker=markers[layer], s=28, color=colour)
  ref = np.array([min(xs_all) / 1.3, max(xs_all) * 1.3])
  for r, (title, _) in enumerate(panels):
    for c, label in enumerate(("1 / (n_in + n_out)", "1 / n_in")):
      ax = axes[r, c]
      ax.plot(ref, ref, "k-", lw=0.8)
      ax.plot(ref, 2 * ref, "k--", lw=0.8)
      ax.set_xscale("log")
      ax.set_yscale("log")
      ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
      ax.set_xlabel(label)
      ax.set_title(f"{title}: mean square against {label}", fontsize=10)
      ax.grid(alpha=0.3, which="both")
    axes[r, 0].set_ylabel("mean square of trained kernel")
  init = {"glorot": "Glorot init: ms = 2 x on the left", "lecun": "LeCun init: ms = x on the right"}
  handles = [plt.Line2D([], [], color="k", marker="o", ls="", label="unregularised")]
  handles += [
    plt.Line2D([], [], color=colours[s], marker="o", ls="", label=f"{s} at its optimum")
    for s in shown
  ]
  handles += [
    plt.Line2D([], [], color="gray", marker=m, ls="", label=f"{layer}: {shape}")
    for (layer, m), shape in zip(markers.items(), ("40 -> w", "w -> w", "w -> 10"), strict=True)
  ]
  handles += [
    plt.Line2D([], [], color="k", lw=0.8, label="ms = x"),
    plt.Line2D([], [], color="k", lw=0.8, ls="--", label="ms = 2 x"),
  ]
  fig.legend(handles=handles, fontsize=8, loc="lower center", ncol=5)
  fig.suptitle(
    f"Mean square of trained kernels, widths {', '.join(map(str, cfg.widths))} "
    f"({init[cfg.init]})\nthin lines join one width's three layers"
  )
  fig.tight_layout(rect=(0, 0.05, 1, 1))
  fig.savefig(path, dpi=110)
  plt.close(fig)


# --- command line ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> tuple[Config | JointConfig, argparse.Namespace]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument(
    "--study",
    choices=("joint", "lambda"),
    help="joint (the default): learning rate and lambda tuned together (0.3); lambda: one "
    "rate (0.2); with --replot, the study saved in --out",
  )
  parser.add_argument(
    "--out", type=Path, default=Path("runs/width_sweep"), help="output folder (created)"
  )
  parser.add_argument(
    "--quick",
    action="store_true",
    help="a small smoke-test study (a few minutes); other flags override it",
  )
  parser.add_argument("--widths", type=int, nargs="+")
  parser.add_argument("--seeds", type=int)
  parser.add_argument("--steps", type=int, help="Adam steps per run")
  parser.add_argument("--batch-size", type=int)
  parser.add_argument("--init", choices=sorted(INITS))
  joint = parser.add_argument_group("joint study")
  joint.add_argument("--recipes", nargs="+", choices=list(RECIPES))
  joint.add_argument("--schedule", choices=list(RATE_SHAPES), help="of the learning rate")
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
  studies = {"joint": (JointConfig(), JOINT_QUICK), "lambda": (Config(), QUICK)}
  return study_from_flags(parser, args, studies), args


def joint_summary(rows: Sequence[Row], cfg: JointConfig) -> str:
  """The joint study's tables: tuned pairs, drift, transfer regret, quality, accuracy."""
  grid = joint_rows(rows)
  found = transfers(grid, cfg.lattice(), cfg.widths, cfg.recipes)
  lines = [
    f"MLP 40-w-w-10, {cfg.init} init, layer_adamw with a {cfg.schedule} learning rate"
    f"{' (10% warm-up)' if cfg.schedule == 'cosine' else ''}, "
    f"{cfg.steps} steps of batch {cfg.batch_size}, {cfg.seeds} seeds; learning rate and "
    f"lambda on a lattice of {cfg.per_decade} points a decade, relative to the "
    f"w={cfg.widths[0]} model (base=).",
    "",
  ]
  summaries = {name: RECIPES[name].summary for name in cfg.recipes}
  lines += joint_tables(found, cfg.widths, cfg.recipes, summaries)
  lines += ["", "Test accuracy (%, mean over seeds) at each recipe's best point."]
  header = f"{'recipe':<15} " + " ".join(f"{f'w={w}':>7}" for w in cfg.widths)
  lines += [header, "-" * len(header)]
  lattice = cfg.lattice()
  for recipe in cfg.recipes:
    cells = []
    for w in cfg.widths:
      row = grid[recipe, w]
      points = [lattice.point(r, lam) for r, lam in zip(row.rates, row.lambdas, strict=True)]
      k = points.index(found[recipe, w].optimum.best)
      cells.append(f"{100 * row.metrics['test_acc'][k].mean():7.1f}")
    lines.append(f"{recipe:<15} " + " ".join(cells))
  return "\n".join(lines)


def joint_figures(rows: Sequence[Row], cfg: JointConfig, out: Path) -> None:
  """The joint study's figures: the loss planes and the tuned pairs against width."""
  grid = joint_rows(rows)
  found = transfers(grid, cfg.lattice(), cfg.widths, cfg.recipes)
  plot_planes(
    grid,
    cfg.lattice(),
    found,
    cfg.widths,
    cfg.recipes,
    out / "planes.png",
    title=f"MNIST-1D MLP: test loss over (learning rate, lambda), mean over {cfg.seeds} seeds",
    span=0.2,
  )
  plot_joint_optima(
    found,
    cfg.widths,
    cfg.recipes,
    out / "joint_optima.png",
    title=f"MNIST-1D MLP: tuned pair against width, and what reusing w={cfg.widths[0]}'s "
    "costs (band: per-seed range)",
  )


def plot_all(rows: Sequence[Row], cfg: Config, out: Path) -> None:
  """Every figure of the study into ``out``."""
  for mode in cfg.modes:
    plot_curves(
      rows,
      cfg.widths,
      cfg.scalings,
      mode,
      out / f"loss_acc_{mode}.png",
      title=f"MNIST-1D, {mode} decay: mean over {cfg.seeds} seeds (band: min-max)",
      loss_ceiling=2.45,  # chance level: log(10) = 2.30
      metrics=(("test_loss", "test loss", 1.0), ("test_acc", "test accuracy (%)", 100.0)),
    )

  def predict(scaling: str, mode: str, width: int, none_log_lambda: float) -> float | None:
    if mode != "coupled":
      return None
    return symmetry_prediction(none_log_lambda, width, scaling, cfg.base_width())

  plot_optimal_lambda(
    rows,
    cfg.widths,
    cfg.scalings,
    cfg.modes,
    out / "optimal_lambda.png",
    title="Optimal lambda (lowest mean test loss) against width; flat = lambda transfers.\n"
    "Band: range of per-seed optima; x: optimum at the grid's edge;\n"
    "dashed (coupled): none's optimum / geometric mean of s",
    prediction=predict,
  )
  plot_mean_square(rows, cfg, out / "mean_square.png")


def main(argv: Sequence[str] | None = None) -> None:
  cfg, args = parse_args(argv)
  out, replot = args.out, args.replot
  out.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  joint = isinstance(cfg, JointConfig)
  config = dataclasses.asdict(cfg) | {
    "study": "joint" if joint else "lambda",
    "jax": jax.__version__,
    "optax": optax.__version__,
    "device": jax.devices()[0].device_kind,
  }
  if not joint:
    config["grids"] = {f"{s}/{m}": cfg.grid(s, m).tolist() for s in cfg.scalings for m in cfg.modes}
  if replot:
    rows = read_csv(out / "runs.csv")
  else:
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    data = load_mnist1d()
    rows = run_joint_study(cfg, data, out, bool(args.resume)) if joint else run_study(cfg, data)
    write_csv(rows, out / "runs.csv", METRICS)  # before plotting: a plot failure loses nothing
  if joint:
    joint_figures(rows, cfg, out)
    table = joint_summary(rows, cfg)
  else:
    plot_all(rows, cfg, out)
    table = summary(rows, cfg)
  if replot:
    (out / "summary.txt").write_text(table + "\n")
    print(table)
    return
  elapsed = time.perf_counter() - start
  cpu = time.process_time()
  timing = f"wall time {elapsed:.0f} s, processor time {cpu:.0f} s (all threads)"
  (out / "summary.txt").write_text(table + f"\n\n{timing}\n")
  config |= {
    "row_seconds": {f"w={r.width} {r.scaling} {r.mode}": round(r.seconds, 2) for r in rows},
    "row_cpu_seconds": {f"w={r.width} {r.scaling} {r.mode}": round(r.cpu_seconds, 2) for r in rows},
    "cpu_seconds": round(cpu, 1),
    "wall_seconds": round(elapsed, 1),
  }
  (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
  print(table)
  print(f"\n{timing}; results in {out}")


if __name__ == "__main__":
  main()
