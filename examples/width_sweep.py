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
loop. The data set is generated offline by the ``mnist1d`` package. This file
holds what is particular to the MLP; the driver it shares with the Transformer
study is ``examples/width_study/driver.py``.

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

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from width_study import driver, layer_balance
from width_study.architecture import Architecture, StudyData
from width_study.grid import Centres
from width_study.plots import plot_lambda_study
from width_study.recipes import RATE_SHAPES, RECIPES
from width_study.runs import Row
from width_study.settings import JointSettings, LambdaSettings
from width_study.tables import accuracy_table, best_point_table

SCALINGS = ("none", "fan_avg", "sqrt_fan_in", "sqrt_fan_avg")
"""The scalings of the default study; ``--scalings`` takes any of ``ll2.SCALINGS``."""
LAYERS = ("Dense_0", "Dense_1", "Dense_2")
METRICS = ("test_acc", "test_loss", "train_loss", "train_acc", *(f"ms_{n}" for n in LAYERS))
FEATURES, CLASSES = 40, 10

CENTRES = Centres(
  # With the narrowest model as base, every scaling is plain L2 there, so one
  # centre a mode holds every optimum: plain L2's optima at width 32 (version
  # 0.1: 0.004 coupled, 0.28 decoupled), raised a little for the scalings whose
  # optimum grows with width. Every optimum of the default study lies a decade
  # or more inside its grid.
  relative={"coupled": -2.3, "decoupled": -0.3},
  # Without a base (`--absolute`) the scalings differ by orders of magnitude in
  # `s` (for a 512 x 512 kernel: 1, 4e-6, 4e-3, 2e-3), and the decoupled decay
  # is multiplied by the learning rate, so every (scaling, mode) pair needs its
  # own centre. Found with a pilot of 17 values over 8 decades at widths 32 and
  # 256 (one seed), and set a quarter decade below the middle of its optima:
  # the loss falls slowly below an optimum and collapses fast above it.
  absolute={
    "none": {"coupled": -2.75, "decoupled": -0.45},
    "numel": {"coupled": 0.95, "decoupled": 3.05},
    "fan_avg": {"coupled": -1.25, "decoupled": 0.85},
    "fan_in": {"coupled": -0.95, "decoupled": 1.15},
  },
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(LambdaSettings):
  """The settings of one lambda study (``--study lambda``); the defaults are the full study."""

  widths: tuple[int, ...] = (32, 64, 128, 256, 512)
  init: str = "glorot"
  scalings: tuple[str, ...] = SCALINGS
  seeds: int = 3
  points: int = 17
  steps: int = 1000
  batch_size: int = 128


QUICK = Config(widths=(32, 128), seeds=2, points=7, decades=3.0, steps=300)


@dataclasses.dataclass(frozen=True, kw_only=True)
class JointConfig(JointSettings):
  """The settings of one joint study (``--study joint``); the defaults are the default study."""

  widths: tuple[int, ...] = (32, 64, 128, 256, 512)
  init: str = "glorot"
  recipes: tuple[str, ...] = tuple(RECIPES)  # every recipe
  seeds: int = 3
  steps: int = 1000
  batch_size: int = 128
  schedule: str = "cosine"  # of the learning rate: "cosine" (10% warm-up) or "constant"
  # The base width's box, 3 points a decade, around a pilot's optima (best
  # rate 1e-2 at widths 32 and 256).
  rates: tuple[float, float] = (-3.0, -1.333)


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


def batch_indices(key: jax.Array, n: int, steps: int, batch_size: int) -> jax.Array:
  """``(steps, batch_size)`` example indices: a fresh shuffle every epoch."""
  per_epoch = n // batch_size
  epochs = -(-steps // per_epoch)
  keys = jax.random.split(key, epochs)
  perms = jax.vmap(lambda k: jax.random.permutation(k, n)[: per_epoch * batch_size])(keys)
  return perms.reshape(epochs * per_epoch, batch_size)[:steps]


INITS = {
  "glorot": nn.initializers.glorot_normal,  # variance 2 / (n_in + n_out)
  "lecun": nn.initializers.lecun_normal,  # variance 1 / n_in
}


class MLP(nn.Module):
  """``in -> width -> width -> classes`` with ReLU."""

  width: int
  classes: int = CLASSES
  init_name: str = "glorot"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel_init = INITS[self.init_name]()
    x = nn.relu(nn.Dense(self.width, kernel_init=kernel_init)(x))
    x = nn.relu(nn.Dense(self.width, kernel_init=kernel_init)(x))
    return nn.Dense(self.classes, kernel_init=kernel_init)(x)


def param_shapes(width: int) -> dict:
  """The shapes of the MLP's parameters (for ``base=``)."""
  model = MLP(width)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, FEATURES))))["params"]


KERNELS = layer_balance.Kernels(LAYERS, param_shapes, ("40 -> w", "w -> w", "w -> 10"))


# --- the architecture of the study ----------------------------------------------------------


class MLPStudy(Architecture):
  """The MLP ``40 -> w -> w -> 10`` on MNIST-1D."""

  out = Path("runs/width_sweep")
  studies: ClassVar = {"joint": (JointConfig(), JOINT_QUICK), "lambda": (Config(), QUICK)}
  span = 0.2
  centres = CENTRES
  metrics = METRICS
  flag_help: ClassVar = {"steps": "Adam steps per run"}

  def param_shapes(self, cfg, width):
    return param_shapes(width)

  def init(self, cfg, width, key):
    return MLP(width, init_name=cfg.init).init(key, jnp.zeros((1, FEATURES)))["params"]

  def load(self, cfg):
    data = load_mnist1d()
    n = data["x"].shape[0]

    def shuffles(seed: jax.Array) -> jax.Array:  # each seed its own
      return batch_indices(jax.random.key(seed + 10_000), n, cfg.steps, cfg.batch_size)

    batches = jax.jit(jax.vmap(shuffles))(jnp.arange(cfg.seeds))
    return StudyData({k: jnp.asarray(v) for k, v in data.items()}, batches)

  def fit(self, cfg, width, scaling, base):
    model = MLP(width, init_name=cfg.init)

    def evaluate(params, xs, ys):  # the loss, and the accuracy beside it
      logits = model.apply({"params": params}, xs)
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, ys).mean()
      return loss, (logits.argmax(-1) == ys).mean()

    def fit(tx, params, batches, data):
      def step(carry, batch):
        params, opt_state = carry
        grads, _ = jax.grad(evaluate, has_aux=True)(params, data["x"][batch], data["y"][batch])
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

      (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), batches)
      test_loss, test_acc = evaluate(params, data["x_test"], data["y_test"])
      train_loss, train_acc = evaluate(params, data["x"], data["y"])
      squares = [jnp.mean(params[layer]["kernel"] ** 2) for layer in LAYERS]
      return dict(zip(METRICS, (test_acc, test_loss, train_loss, train_acc, *squares), strict=True))

    return fit

  def rate_shape(self, cfg, steps):
    return RATE_SHAPES[cfg.schedule](steps)

  def add_flags(self, parser, joint, lambdas):
    parser.add_argument("--init", choices=sorted(INITS))
    joint.add_argument("--schedule", choices=list(RATE_SHAPES), help="of the learning rate")

  def joint_header(self, cfg, info):
    warm_up = " (10% warm-up)" if cfg.schedule == "cosine" else ""
    return (
      f"MLP 40-w-w-10, {cfg.init} init, layer_adamw with a {cfg.schedule} learning rate"
      f"{warm_up}, {cfg.steps} steps of batch {cfg.batch_size}, {cfg.seeds} seeds; learning "
      f"rate and lambda on a lattice of {cfg.per_decade} points a decade, relative to the "
      f"w={cfg.widths[0]} model (base=)."
    )

  def joint_tables(self, grid, found, cfg):
    accuracy = lambda metrics: f"{100 * metrics['test_acc'].mean():7.1f}"  # noqa: E731
    table = best_point_table(grid, found, cfg.lattice(), cfg.widths, cfg.recipes, accuracy, 7)
    return ["", "Test accuracy (%, mean over seeds) at each recipe's best point.", *table]

  def joint_titles(self, cfg):
    return (
      f"MNIST-1D MLP: test loss over (learning rate, lambda), mean over {cfg.seeds} seeds",
      f"MNIST-1D MLP: tuned pair against width, and what reusing w={cfg.widths[0]}'s "
      "costs (band: per-seed range)",
    )

  def lambda_header(self, cfg, info):
    return (
      f"MLP 40-w-w-10, {cfg.init} init, Adam lr={cfg.learning_rate:g}, {cfg.steps} steps of "
      f"batch {cfg.batch_size}, {cfg.seeds} seeds, {cfg.points} lambdas over {cfg.decades:g} "
      f"decades per (scaling, mode); {cfg.relative_to('w')}."
    )

  def lambda_tables(self, rows: Sequence[Row], cfg: Config) -> list[str]:
    return ["", *accuracy_table(rows, cfg), *layer_balance.tables(rows, cfg, KERNELS)]

  def lambda_figures(self, rows: Sequence[Row], cfg: Config, out: Path) -> None:
    title = f"MNIST-1D, {{mode}} decay: mean over {cfg.seeds} seeds (band: min-max)"
    plot_lambda_study(
      rows,
      cfg,
      out,
      ("loss_acc_{mode}.png", title),
      metrics=(("test_loss", "test loss", 1.0), ("test_acc", "test accuracy (%)", 100.0)),
      optimal_title="Optimal lambda (lowest mean test loss) against width; flat = lambda "
      "transfers.\nBand: range of per-seed optima; x: optimum at the grid's edge;\n"
      "dashed (coupled): none's optimum / geometric mean of s",
      loss_ceiling=2.45,  # chance level: log(10) = 2.30
      prediction=layer_balance.coupled_prediction(KERNELS, cfg.base_width()),
    )
    layer_balance.plot_mean_square(rows, cfg, KERNELS, cfg.init, out / "mean_square.png")


def main(argv: Sequence[str] | None = None) -> None:
  driver.main(MLPStudy(), argv)


if __name__ == "__main__":
  main()
