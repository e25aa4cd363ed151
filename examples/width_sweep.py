"""Does any per-layer scaling make the best L2 strength carry over across widths?

A study on MNIST-1D. For MLPs ``40 -> w -> w -> 10`` of several widths ``w``,
each per-layer scaling of ``optax_layer_l2`` (``none`` is plain L2) and each
way of applying it (coupled: ``chain(layer_l2, adam)``; decoupled:
``layer_adamw``), train a log-spaced grid of ``lambda`` values over several
seeds, and find the ``lambda`` with the lowest mean test loss. If a scaling
makes ``lambda`` carry over, that optimum stays put as the width changes.

Every grid row (one width, scaling and mode) is a single compiled program:
``jax.vmap`` over ``lambda`` and seeds around one jitted ``lax.scan`` training
loop. The data set is generated offline by the ``mnist1d`` package.

Run::

  python examples/width_sweep.py --out runs/width_sweep          # the full study (~35 min)
  python examples/width_sweep.py --quick --out runs/quick         # a smoke test (~2 min)
  python examples/width_sweep.py --out runs/width_sweep --replot  # tables and plots again

The output folder gets ``runs.csv`` (one line per trained network),
``config.json``, ``summary.txt`` (the printed tables) and the plots
``loss_acc_<mode>.png``, ``optimal_lambda.png`` and ``mean_square.png``.
See ``docs/study.md`` for what came out.
"""

import argparse
import csv
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib
import matplotlib.ticker
import numpy as np
import optax
from tqdm import tqdm

import optax_layer_l2 as ll2

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SCALINGS = ("none", "numel", "fan_avg", "fan_in")
MODES = ("coupled", "decoupled")
LAYERS = ("Dense_0", "Dense_1", "Dense_2")

# log10 of the centre of each lambda grid. The scalings differ by orders of
# magnitude in `s` (for a 512 x 512 kernel: 1, 4e-6, 4e-3, 2e-3), and the
# decoupled decay is multiplied by the learning rate, so every
# (scaling, mode) pair needs its own centre. Found with a pilot of 17 values
# over 8 decades at widths 32 and 256 (one seed), and set a quarter decade below
# the middle of its optima: the loss falls slowly below an optimum and collapses
# fast above it. In the full study every optimum lies 1.25 decades or more
# inside its grid.
GRID_CENTRES = {
  ("none", "coupled"): -2.75,
  ("numel", "coupled"): 0.95,
  ("fan_avg", "coupled"): -1.25,
  ("fan_in", "coupled"): -0.95,
  ("none", "decoupled"): -0.45,
  ("numel", "decoupled"): 3.05,
  ("fan_avg", "decoupled"): 0.85,
  ("fan_in", "decoupled"): 1.15,
}

UNREGULARISED = ("-", "unregularised")
"""``(scaling, mode)`` of the runs with plain Adam and no penalty (lambda = 0)."""


@dataclasses.dataclass(frozen=True)
class Config:
  """The settings of one study; the defaults are the full study."""

  widths: tuple[int, ...] = (32, 64, 128, 256, 512)
  scalings: tuple[str, ...] = SCALINGS
  modes: tuple[str, ...] = MODES
  seeds: int = 3
  points: int = 16
  decades: float = 5.0
  steps: int = 1000
  batch_size: int = 128
  learning_rate: float = 3e-3
  init: str = "glorot"

  def grid(self, scaling: str, mode: str) -> np.ndarray:
    """The lambda grid of one (scaling, mode) pair."""
    centre = GRID_CENTRES[scaling, mode]
    return np.logspace(centre - self.decades / 2, centre + self.decades / 2, self.points)


QUICK = Config(widths=(32, 128), seeds=2, points=6, steps=300)


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


def make_optimizer(
  scaling: str, mode: str, weight_decay: jax.Array, learning_rate: float
) -> optax.GradientTransformation:
  """The optimizer of one run; ``weight_decay`` may be traced (vmapped)."""
  if mode == "coupled":  # L2 regularisation: the decay joins the gradient, Adam normalises it
    return optax.chain(ll2.layer_l2(weight_decay, scaling), optax.adam(learning_rate))
  if mode == "decoupled":  # AdamW-style: lr * lambda * s * w, outside Adam's normalisation
    return ll2.layer_adamw(learning_rate, weight_decay, scaling)
  if mode == UNREGULARISED[1]:
    return optax.adam(learning_rate)
  raise ValueError(f"unknown mode {mode!r}")


# --- training: one compiled program per grid row --------------------------------------------


def batch_indices(key: jax.Array, n: int, steps: int, batch_size: int) -> jax.Array:
  """``(steps, batch_size)`` example indices: a fresh shuffle every epoch."""
  per_epoch = n // batch_size
  epochs = -(-steps // per_epoch)
  keys = jax.random.split(key, epochs)
  perms = jax.vmap(lambda k: jax.random.permutation(k, n)[: per_epoch * batch_size])(keys)
  return perms.reshape(epochs * per_epoch, batch_size)[:steps]


def initial_params(width: int, cfg: Config, features: int, seeds: jax.Array) -> dict:
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
  model = MLP(width, init_name=cfg.init)

  def data_loss(params, xb, yb):
    logits = model.apply({"params": params}, xb)
    return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

  def evaluate(params, xs, ys):
    logits = model.apply({"params": params}, xs)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, ys).mean()
    return loss, (logits.argmax(-1) == ys).mean()

  def one_run(weight_decay, params, batches, data):
    tx = make_optimizer(scaling, mode, weight_decay, cfg.learning_rate)

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

  over_seeds = jax.vmap(one_run, in_axes=(None, 0, 0, None))
  return jax.jit(jax.vmap(over_seeds, in_axes=(0, None, None, None)))


@dataclasses.dataclass
class Row:
  """The results of one grid row: metrics of shape ``(len(lambdas), seeds)``."""

  width: int
  scaling: str
  mode: str
  lambdas: np.ndarray
  metrics: dict[str, np.ndarray]
  seconds: float  # wall time, compiling included
  cpu_seconds: float  # processor time of this process, all threads


def run_study(cfg: Config, data: dict[str, np.ndarray]) -> list[Row]:
  """Trains every grid row, with a progress bar over the rows."""
  device_data = {k: jnp.asarray(v) for k, v in data.items()}
  seeds = jnp.arange(cfg.seeds)
  n, features = data["x"].shape
  batches = jax.jit(
    jax.vmap(
      lambda seed: batch_indices(jax.random.key(seed + 10_000), n, cfg.steps, cfg.batch_size)
    )
  )(seeds)
  params = {}
  plan = []
  for width in cfg.widths:
    plan.append((width, *UNREGULARISED))
    plan += [(width, s, m) for s in cfg.scalings for m in cfg.modes]
  rows = []
  bar = tqdm(plan, desc="grid rows", unit="row", file=sys.stderr)
  for width, scaling, mode in bar:
    bar.set_postfix_str(f"w={width} {scaling} {mode}")
    lambdas = np.zeros(1) if mode == UNREGULARISED[1] else cfg.grid(scaling, mode)
    start, cpu_start = time.perf_counter(), time.process_time()
    if width not in params:
      params[width] = initial_params(width, cfg, features, seeds)
    program = make_row_program(width, scaling, mode, cfg)
    out = program(jnp.asarray(lambdas, jnp.float32), params[width], batches, device_data)
    metrics = {k: np.asarray(v, np.float64) for k, v in jax.device_get(out).items()}
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    rows.append(Row(width, scaling, mode, lambdas, metrics, seconds, cpu_seconds))
  bar.close()
  return rows


# --- the optimum ----------------------------------------------------------------------------


def refined_argmin(log_lambdas: np.ndarray, values: np.ndarray) -> tuple[float, int]:
  """The minimiser of ``values`` over the grid, refined by a parabola in log10(lambda).

  The parabola passes through the lowest grid point and its two neighbours; its
  vertex then lies within half a grid step of that point. At an edge of the
  grid there is no refinement. Returns ``(log10 lambda*, index of the lowest
  grid point)``; an index of 0 or ``len - 1`` means the grid may be too narrow.
  """
  values = np.where(np.isfinite(values), values, np.inf)
  i = int(np.argmin(values))
  if i == 0 or i == len(values) - 1 or not np.isfinite(values[i - 1 : i + 2]).all():
    return float(log_lambdas[i]), i
  f0, f1, f2 = values[i - 1 : i + 2]
  step = log_lambdas[i + 1] - log_lambdas[i]
  curvature = f0 - 2 * f1 + f2
  offset = 0.0 if curvature <= 0 else 0.5 * step * (f0 - f2) / curvature
  return float(log_lambdas[i] + offset), i


@dataclasses.dataclass(frozen=True)
class Optimum:
  """The optimal lambda of one grid row."""

  log_lambda: float  # from the seed-mean test loss, refined
  seed_range: tuple[float, float]  # min and max of the per-seed refined optima
  edge: str  # "low" / "high": the lowest mean loss is at that end of the grid; else ""
  acc_at_optimum: float  # seed-mean test accuracy at the grid point nearest the optimum
  best_acc: float  # the best seed-mean test accuracy over the grid


def optimum(row: Row) -> Optimum:
  """The optimum of a row: lowest seed-mean test loss, parabolic refinement."""
  log_lambdas = np.log10(row.lambdas)
  loss = row.metrics["test_loss"]
  log_opt, i = refined_argmin(log_lambdas, loss.mean(axis=1))
  per_seed = [refined_argmin(log_lambdas, loss[:, s])[0] for s in range(loss.shape[1])]
  acc = row.metrics["test_acc"].mean(axis=1)
  return Optimum(
    log_lambda=log_opt,
    seed_range=(min(per_seed), max(per_seed)),
    edge="low" if i == 0 else "high" if i == len(log_lambdas) - 1 else "",
    acc_at_optimum=float(acc[i]),
    best_acc=float(acc.max()),
  )


def transfer_cost(tuned: Row, target: Row) -> tuple[float, float]:
  """What reusing ``tuned``'s optimal lambda on ``target`` costs, against retuning.

  Returns the increase in seed-mean test loss and the change in seed-mean test
  accuracy (percentage points) of ``target`` at the lambda that is optimal for
  ``tuned``, against ``target`` at its own optimum; both read off ``target``'s
  curves, linear in log10 lambda, so equal optima cost exactly nothing.
  """
  x = np.log10(target.lambdas)
  loss = target.metrics["test_loss"].mean(axis=1)
  acc = 100 * target.metrics["test_acc"].mean(axis=1)
  reused, own = optimum(tuned).log_lambda, optimum(target).log_lambda
  return (
    float(np.interp(reused, x, loss) - np.interp(own, x, loss)),
    float(np.interp(reused, x, acc) - np.interp(own, x, acc)),
  )


# --- output ---------------------------------------------------------------------------------


def write_csv(rows: Sequence[Row], path: Path) -> None:
  """One line per trained network."""
  ms_columns = [f"ms_{layer}" for layer in LAYERS]
  columns = ["width", "scaling", "mode", "lambda", "seed", "test_acc", "test_loss"]
  columns += ["train_loss", "train_acc", *ms_columns]
  with path.open("w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(columns)
    for row in rows:
      for i, lam in enumerate(row.lambdas):
        for seed in range(row.metrics["test_loss"].shape[1]):
          values = [row.metrics[c][i, seed] for c in columns[5:]]
          writer.writerow(
            [row.width, row.scaling, row.mode, f"{lam:.6g}", seed] + [f"{v:.6g}" for v in values]
          )


def read_csv(path: Path) -> list[Row]:
  """The rows of a study from its ``runs.csv`` (for ``--replot``)."""
  with path.open() as f:
    lines = list(csv.DictReader(f))
  groups: dict[tuple[int, str, str], list[dict[str, str]]] = {}
  for line in lines:
    groups.setdefault((int(line["width"]), line["scaling"], line["mode"]), []).append(line)
  rows = []
  for (width, scaling, mode), group in groups.items():
    lambdas = sorted({float(line["lambda"]) for line in group})
    seeds = sorted({int(line["seed"]) for line in group})
    names = [c for c in group[0] if c not in ("width", "scaling", "mode", "lambda", "seed")]
    metrics = {name: np.full((len(lambdas), len(seeds)), np.nan) for name in names}
    for line in group:
      i, j = lambdas.index(float(line["lambda"])), seeds.index(int(line["seed"]))
      for name in names:
        metrics[name][i, j] = float(line[name])
    rows.append(Row(width, scaling, mode, np.array(lambdas), metrics, 0.0, 0.0))
  return rows


def _regularised(rows: Sequence[Row]) -> dict[tuple[str, str, int], Row]:
  return {(r.scaling, r.mode, r.width): r for r in rows if r.mode != UNREGULARISED[1]}


def _unregularised(rows: Sequence[Row]) -> dict[int, Row]:
  return {r.width: r for r in rows if r.mode == UNREGULARISED[1]}


def summary(rows: Sequence[Row], cfg: Config) -> str:
  """The tables: optimal lambda per width and its drift; accuracies; layer balance."""
  grid = _regularised(rows)
  base = _unregularised(rows)
  widths = cfg.widths
  lines = [
    f"MLP 40-w-w-10, {cfg.init} init, Adam lr={cfg.learning_rate:g}, {cfg.steps} steps of "
    f"batch {cfg.batch_size}, {cfg.seeds} seeds, {cfg.points} lambdas over {cfg.decades:g} "
    "decades per (scaling, mode).",
    "",
    "Optimal lambda: lowest test loss (mean over seeds), refined by a parabola in log10 lambda.",
    "'<' / '>': at the low / high end of the grid. drift = log10(lambda*_widest / "
    "lambda*_narrowest); [a, b]: the drift between the extreme per-seed optima.",
    f"reuse cost: at w={widths[-1]}, with the lambda* of w={widths[0]} instead of its own: "
    "test loss increase / accuracy change (points).",
  ]
  header = f"{'scaling':<8} {'mode':<9} " + " ".join(f"{f'w={w}':>9}" for w in widths)
  header += f" {'drift':>6} {'[a, b]':>12} {'reuse cost':>14}"
  lines += [header, "-" * len(header)]
  for mode in cfg.modes:
    for scaling in cfg.scalings:
      opts = [optimum(grid[scaling, mode, w]) for w in widths]
      cells = []
      for o in opts:
        mark = {"low": "<", "high": ">", "": ""}[o.edge]
        cells.append(f"{mark}{10**o.log_lambda:.2g}".rjust(9))
      drift = opts[-1].log_lambda - opts[0].log_lambda
      lo = opts[-1].seed_range[0] - opts[0].seed_range[1]
      hi = opts[-1].seed_range[1] - opts[0].seed_range[0]
      loss, acc = transfer_cost(grid[scaling, mode, widths[0]], grid[scaling, mode, widths[-1]])
      lines.append(
        f"{scaling:<8} {mode:<9} "
        + " ".join(cells)
        + f" {drift:+6.2f} {f'[{lo:+.1f}, {hi:+.1f}]':>12} {f'{loss:+.3f} / {acc:+.1f}':>14}"
      )
  lines += [
    "",
    "Test accuracy (%, mean over seeds): at the loss-optimal lambda / best over the grid.",
  ]
  header = f"{'scaling':<8} {'mode':<13} " + " ".join(f"{f'w={w}':>11}" for w in widths)
  lines += [header, "-" * len(header)]
  cells = [f"{100 * base[w].metrics['test_acc'].mean():.1f}".rjust(11) for w in widths]
  lines.append(f"{'-':<8} {'unregularised':<13} " + " ".join(cells))
  for mode in cfg.modes:
    for scaling in cfg.scalings:
      cells = []
      for w in widths:
        o = optimum(grid[scaling, mode, w])
        cells.append(f"{100 * o.acc_at_optimum:.1f}/{100 * o.best_acc:.1f}".rjust(11))
      lines.append(f"{scaling:<8} {mode:<13} " + " ".join(cells))
  lines += ["", "Best test loss (mean over seeds) over the grid."]
  header = f"{'scaling':<8} {'mode':<13} " + " ".join(f"{f'w={w}':>7}" for w in widths)
  lines += [header, "-" * len(header)]
  cells = [f"{base[w].metrics['test_loss'].mean():7.3f}" for w in widths]
  lines.append(f"{'-':<8} {'unregularised':<13} " + " ".join(cells))
  for mode in cfg.modes:
    for scaling in cfg.scalings:
      cells = [
        f"{np.nanmin(grid[scaling, mode, w].metrics['test_loss'].mean(axis=1)):7.3f}"
        for w in widths
      ]
      lines.append(f"{scaling:<8} {mode:<13} " + " ".join(cells))
  if "coupled" in cfg.modes and "none" in cfg.scalings:
    lines += [
      "",
      "Coupled: lambda* against the rescaling-symmetry prediction lambda*_none / geomean(s)",
      "(observed / predicted; see symmetry_prediction).",
    ]
    header = f"{'scaling':<8} " + " ".join(f"{f'w={w}':>17}" for w in widths)
    lines += [header, "-" * len(header)]
    for scaling in cfg.scalings:
      cells = []
      for w in widths:
        observed = optimum(grid[scaling, "coupled", w]).log_lambda
        none = optimum(grid["none", "coupled", w]).log_lambda
        predicted = symmetry_prediction(none, w, scaling)
        cells.append(f"{10**observed:.2g} / {10**predicted:.2g}".rjust(17))
      lines.append(f"{scaling:<8} " + " ".join(cells))
  lines += [
    "",
    "Mean square ms of the trained kernels (40->w, w->w, w->10; mean over seeds), times",
    "(n_in + n_out) and times n_in. Glorot init gives (n_in + n_out)*ms = 2, LeCun n_in*ms = 1.",
  ]
  header = f"{'width':>5} {'weights':<22} {'(n_in+n_out)*ms':>24} {'n_in*ms':>24}"
  lines += [header, "-" * len(header)]
  for w in widths:
    sources = [("unregularised", base[w])]
    if ("fan_avg", "coupled", w) in grid:
      sources.append(("fan_avg coupled optimum", grid["fan_avg", "coupled", w]))
    for name, row in sources:
      ms = trained_mean_square(row)
      n_in, n_out = np.array(layer_shapes(w)).T
      avg = " ".join(f"{v:7.2f}" for v in (n_in + n_out) * ms)
      inn = " ".join(f"{v:7.2f}" for v in n_in * ms)
      lines.append(f"{w:>5} {name:<22} {avg:>24} {inn:>24}")
  lines += [
    "",
    "How unequal is the per-layer penalty s*||W||^2 of the three kernels under each scaling?",
    "max / min over the kernels (1.0: every layer pays alike). Of the unregularised trained",
    "weights, and, for comparison, of the expected Glorot init (ms = 2 / (n_in + n_out)).",
  ]
  header = f"{'penalty measured by':<27} " + " ".join(f"{f'w={w}':>7}" for w in widths)
  lines += [header, "-" * len(header)]
  for source in ("unregularised", "Glorot init"):
    for scaling in SCALINGS:
      cells = []
      for w in widths:
        if source == "Glorot init":
          ms = np.array([2 / (a + b) for a, b in layer_shapes(w)])
        else:
          ms = trained_mean_square(base[w])
        cells.append(f"{penalty_spread(ms, w, scaling):7.1f}")
      lines.append(f"{f'{scaling}, {source}':<27} " + " ".join(cells))
  lines += [
    "",
    "The same spread at each (scaling, mode)'s optimum, measured by that scaling.",
  ]
  header = f"{'optimum of':<27} " + " ".join(f"{f'w={w}':>7}" for w in widths)
  lines += [header, "-" * len(header)]
  for mode in cfg.modes:
    for scaling in cfg.scalings:
      cells = []
      for w in widths:
        ms = trained_mean_square(grid[scaling, mode, w])
        cells.append(f"{penalty_spread(ms, w, scaling):7.1f}")
      lines.append(f"{f'{scaling} {mode}':<27} " + " ".join(cells))
  return "\n".join(lines)


def trained_mean_square(row: Row) -> np.ndarray:
  """Seed-mean mean square of the three kernels, at the grid point nearest the optimum."""
  i = 0
  if row.mode != UNREGULARISED[1]:
    i = int(np.argmin(np.abs(np.log10(row.lambdas) - optimum(row).log_lambda)))
  return np.array([row.metrics[f"ms_{layer}"][i].mean() for layer in LAYERS])


def kernel_factors(width: int, scaling: str) -> np.ndarray:
  """The factor ``s`` of each kernel, from ``ll2.scales`` (shapes are enough)."""
  shapes = {
    layer: {"kernel": jax.ShapeDtypeStruct(shape, jnp.float32)}
    for layer, shape in zip(LAYERS, layer_shapes(width), strict=True)
  }
  factors = ll2.scales(shapes, scaling)
  return np.array([factors[layer]["kernel"] for layer in LAYERS])


def penalty_spread(ms: np.ndarray, width: int, scaling: str) -> float:
  """max / min over the kernels of ``s * ||W||^2``."""
  numel = np.array([a * b for a, b in layer_shapes(width)])
  per_layer = kernel_factors(width, scaling) * numel * ms
  return float(per_layer.max() / per_layer.min())


def symmetry_prediction(none_log_lambda: float, width: int, scaling: str) -> float:
  """log10 of the lambda that matches plain L2's ``10**none_log_lambda`` in a ReLU MLP.

  Scaling kernel ``l`` by ``a_l`` (and the biases along) with ``prod(a_l) = 1``
  leaves a ReLU MLP's function unchanged, and minimising
  ``sum_l s_l ||W_l||^2`` over those rescalings leaves
  ``L * prod(s_l)**(1/L) * prod(||W_l||^2)**(1/L)``. So the penalised problems of
  ``(lambda, s)`` and of plain L2 with ``lambda * prod(s_l)**(1/L)`` have the
  same minimisers up to rescaling: only the geometric mean of the factors counts.
  """
  return none_log_lambda - float(np.mean(np.log10(kernel_factors(width, scaling))))


def _width_colours(widths: Sequence[int]) -> dict[int, tuple]:
  cmap = plt.get_cmap("viridis")
  return {w: cmap(i / max(1, len(widths) - 1) * 0.9) for i, w in enumerate(widths)}


def plot_curves(rows: Sequence[Row], cfg: Config, mode: str, path: Path) -> None:
  """Test loss and accuracy against lambda: a panel per scaling, a curve per width."""
  grid, base = _regularised(rows), _unregularised(rows)
  colours = _width_colours(cfg.widths)
  n = len(cfg.scalings)
  fig, axes = plt.subplots(2, n, figsize=(max(4 * n, 9), 6.5), sharey="row", squeeze=False)
  for j, scaling in enumerate(cfg.scalings):
    for w in cfg.widths:
      row = grid[scaling, mode, w]
      o = optimum(row)
      for k, metric in enumerate(("test_loss", "test_acc")):
        ax = axes[k, j]
        scale = 100 if metric == "test_acc" else 1
        values = scale * row.metrics[metric]
        mean = values.mean(axis=1)
        ax.plot(row.lambdas, mean, "-", color=colours[w], label=f"w={w}")
        ax.fill_between(
          row.lambdas, values.min(axis=1), values.max(axis=1), color=colours[w], alpha=0.15, lw=0
        )
        ax.axhline(scale * base[w].metrics[metric].mean(), color=colours[w], ls=":", lw=1)
        if metric == "test_loss":
          ax.axvline(10**o.log_lambda, color=colours[w], ls="--", lw=0.8)
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0, j].set_title(f"scaling={scaling}")
    axes[1, j].set_xlabel("lambda")
  axes[0, 0].set_ylabel("test loss")
  axes[1, 0].set_ylabel("test accuracy (%)")
  losses = [grid[k].metrics["test_loss"].mean(axis=1) for k in grid if k[1] == mode]
  bottom = min(np.nanmin(np.where(np.isfinite(v), v, np.nan)) for v in losses)
  axes[0, 0].set_ylim(max(0.0, bottom - 0.1), 2.45)  # chance level: log(10) = 2.30
  axes[0, -1].legend(fontsize=8)
  fig.suptitle(
    f"MNIST-1D, {mode} decay: mean over {cfg.seeds} seeds (band: min-max)\n"
    "dotted: no regularisation; dashed: optimum"
  )
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_optimal_lambda(rows: Sequence[Row], cfg: Config, path: Path) -> None:
  """The headline: optimal lambda against width, a line per scaling (flat = transfers)."""
  grid = _regularised(rows)
  colours = {s: f"C{i}" for i, s in enumerate(SCALINGS)}
  fig, axes = plt.subplots(
    2, len(cfg.modes), figsize=(max(5.5 * len(cfg.modes), 9), 8.5), squeeze=False
  )
  for j, mode in enumerate(cfg.modes):
    for scaling in cfg.scalings:
      opts = [optimum(grid[scaling, mode, w]) for w in cfg.widths]
      centre = np.array([o.log_lambda for o in opts])
      lo = np.array([o.seed_range[0] for o in opts])
      hi = np.array([o.seed_range[1] for o in opts])
      for k, ref in enumerate((0.0, centre[0])):
        ax = axes[k, j]
        (line,) = ax.plot(
          cfg.widths, 10 ** (centre - ref), "o-", color=colours[scaling], label=scaling
        )
        ax.fill_between(
          cfg.widths, 10 ** (lo - ref), 10 ** (hi - ref), color=line.get_color(), alpha=0.15, lw=0
        )
        if mode == "coupled" and scaling != "none" and "none" in cfg.scalings:
          predicted = [
            symmetry_prediction(optimum(grid["none", mode, w]).log_lambda, w, scaling)
            for w in cfg.widths
          ]
          ax.plot(cfg.widths, 10 ** (np.array(predicted) - ref), "--", color=line.get_color())
        edge = [w for w, o in zip(cfg.widths, opts, strict=True) if o.edge]
        if edge:
          ax.plot(
            edge,
            [10 ** (c - ref) for w, c in zip(cfg.widths, centre, strict=True) if w in edge],
            "x",
            color="k",
            ms=9,
          )
    axes[0, j].set_title(f"{mode}: optimal lambda")
    axes[1, j].set_title(f"{mode}: relative to the narrowest width")
    axes[1, j].axhline(1.0, color="k", lw=0.8)
    for ax in axes[:, j]:
      ax.set_xscale("log", base=2)
      ax.set_yscale("log")
      ax.set_xticks(cfg.widths, [str(w) for w in cfg.widths])
      ax.set_xlabel("width w")
      ax.grid(alpha=0.3, which="both")
      ax.legend(fontsize=8)
  axes[0, 0].set_ylabel("lambda*")
  axes[1, 0].set_ylabel("lambda*(w) / lambda*(narrowest)")
  fig.suptitle(
    "Optimal lambda (lowest mean test loss) against width; flat = lambda transfers.\n"
    "Band: range of per-seed optima; x: optimum at the grid's edge;\n"
    "dashed (coupled): none's optimum / geometric mean of s"
  )
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_mean_square(rows: Sequence[Row], cfg: Config, path: Path) -> None:
  """Trained mean square per layer against 1/(n_in + n_out) and against 1/n_in.

  Rows of panels: the unregularised networks, then each mode at the optima of
  ``none``, ``fan_avg`` and ``fan_in`` (``numel`` is in the printed tables).
  Each width's three kernels are joined by a thin line: a line parallel to
  ``ms = x`` means the three layers pay the same penalty under the scaling of
  that column (``fan_avg`` on the left, ``fan_in`` on the right).
  """
  grid, base = _regularised(rows), _unregularised(rows)
  markers = dict(zip(LAYERS, ("o", "s", "^"), strict=True))
  colours = {s: f"C{i}" for i, s in enumerate(SCALINGS)}
  shown = [s for s in ("none", "fan_avg", "fan_in") if s in cfg.scalings]
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


def parse_args(argv: Sequence[str] | None) -> tuple[Config, Path]:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument(
    "--out", type=Path, default=Path("runs/width_sweep"), help="output folder (created)"
  )
  parser.add_argument(
    "--quick",
    action="store_true",
    help="a small smoke-test study (a few minutes); other flags override it",
  )
  parser.add_argument("--widths", type=int, nargs="+")
  parser.add_argument("--scalings", nargs="+", choices=SCALINGS)
  parser.add_argument("--modes", nargs="+", choices=MODES)
  parser.add_argument("--seeds", type=int)
  parser.add_argument("--points", type=int, help="lambda values per grid")
  parser.add_argument("--decades", type=float, help="span of each lambda grid")
  parser.add_argument("--steps", type=int, help="Adam steps per run")
  parser.add_argument("--batch-size", type=int)
  parser.add_argument("--learning-rate", type=float)
  parser.add_argument("--init", choices=sorted(INITS))
  parser.add_argument(
    "--replot",
    action="store_true",
    help="no training: redo the tables and plots from runs.csv and config.json in --out",
  )
  args = parser.parse_args(argv)
  cfg = QUICK if args.quick else Config()
  saved = args.out / "config.json"
  if args.replot and saved.exists():
    settings = json.loads(saved.read_text())
    fields = {field.name for field in dataclasses.fields(Config)}
    cfg = Config(
      **{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items() if k in fields}
    )
  overrides = {
    field.name: getattr(args, field.name)
    for field in dataclasses.fields(Config)
    if getattr(args, field.name) is not None
  }
  for name in ("widths", "scalings", "modes"):
    if name in overrides:
      overrides[name] = tuple(overrides[name])
  return dataclasses.replace(cfg, **overrides), args.out, args.replot


def main(argv: Sequence[str] | None = None) -> None:
  cfg, out, replot = parse_args(argv)
  out.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  config = dataclasses.asdict(cfg) | {
    "grids": {f"{s}/{m}": cfg.grid(s, m).tolist() for s in cfg.scalings for m in cfg.modes},
    "jax": jax.__version__,
    "optax": optax.__version__,
  }
  if replot:
    rows = read_csv(out / "runs.csv")
  else:
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    rows = run_study(cfg, load_mnist1d())
    write_csv(rows, out / "runs.csv")  # before plotting, so that a plot failure loses nothing
  for mode in cfg.modes:
    plot_curves(rows, cfg, mode, out / f"loss_acc_{mode}.png")
  plot_optimal_lambda(rows, cfg, out / "optimal_lambda.png")
  plot_mean_square(rows, cfg, out / "mean_square.png")
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
