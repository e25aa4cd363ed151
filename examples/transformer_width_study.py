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
MLP and head kernels. This file holds what is particular to the Transformer;
the driver it shares with the MLP study is ``examples/width_study/driver.py``.

Run::

  python examples/transformer_width_study.py --out runs/joint           # default: 2 seeds (31 min)
  python examples/transformer_width_study.py --quick --out runs/jquick  # a smoke test (about 70 s)
  python examples/transformer_width_study.py --seeds 4 --out runs/joint4  # the study's (55 min)
  python examples/transformer_width_study.py --recipes adamw sqrt_fan_avg mup mup_sqrt_decay sqrt_lr
  python examples/transformer_width_study.py --train-chars 30000 --steps 1200 --out runs/long
  python examples/transformer_width_study.py --study lambda --out runs/lambda  # version 0.2's study
  python examples/transformer_width_study.py --out runs/joint --replot

Writes ``runs.csv``, ``config.json`` and ``summary.txt`` to ``--out``, and the
figures: ``planes.png`` and ``joint_optima.png`` (joint), ``loss_<mode>.png``
and ``optimal_lambda.png`` (lambda). See ``docs/study.md``.
"""

import dataclasses
import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import optax
import transformer_lm as lm
from width_study import driver
from width_study.architecture import Architecture, StudyData
from width_study.grid import Centres
from width_study.optimum import nearest_point
from width_study.plots import plot_lambda_study
from width_study.runs import Row, regularised, unregularised
from width_study.settings import JointSettings, LambdaSettings
from width_study.shares import penalty_shares, share_cell
from width_study.tables import best_point_table, models_trained, scaling_table

SCALINGS = ("none", "fan_avg", "sqrt_fan_avg")
"""The scalings of the default study; ``--scalings`` takes any of ``ll2.SCALINGS``."""
GROUPS = ("embed", "attn", "mlp", "head")
METRICS = ("test_loss", "train_loss", *(f"share_{g}" for g in GROUPS))

# log10 of each mode's grid centre, relative to the narrowest model (where
# every scaling is plain L2): near the optima of plain L2 at d_model = 32 in a
# pilot on 8,000 characters (600 steps, 5 lambdas: 0.03 coupled, 4 decoupled).
# Without a base, plain L2's centre over the geometric mean of the factors.
CENTRES = Centres(relative={"coupled": -1.5, "decoupled": 0.5})


def group_of(path: str) -> str:
  """Which part of the model a decayed leaf belongs to."""
  if path.startswith(("embed/", "position/")):
    return "embed"
  if "/attn/" in path:
    return "attn"
  if "/mlp_" in path:
    return "mlp"
  return "head"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Text:
  """The model and the text, in both studies."""

  layers: int = 2
  heads: int = 4
  context: int = 64
  train_chars: int = 8_000  # 0: the whole training split
  valid_chars: int = 20_000


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config(LambdaSettings, Text):
  """The settings of one lambda study (``--study lambda``); the defaults are version 0.2's."""

  widths: tuple[int, ...] = (32, 64, 128)
  scalings: tuple[str, ...] = SCALINGS
  seeds: int = 2
  points: int = 9
  steps: int = 300
  batch_size: int = 16


QUICK = Config(widths=(16, 32), seeds=1, points=3, decades=2.0, steps=30, context=16)


@dataclasses.dataclass(frozen=True, kw_only=True)
class JointConfig(JointSettings, Text):
  """The settings of one joint study (``--study joint``); the defaults are the default study."""

  widths: tuple[int, ...] = (32, 64, 128)
  # One rate, version 0.3's per-layer rates and the completed recipe. Version
  # 0.3's default (`sqrt_fan_avg` where `mup_init` is) took 51 minutes (3,037 s)
  # on 2 CPU cores; `mup_init`'s rows took as long as `sqrt_fan_avg`'s on a
  # shared machine (1,252 s against 1,279 s), so about the same is expected.
  recipes: tuple[str, ...] = ("adamw", "mup", "mup_init")
  seeds: int = 2
  steps: int = 0  # 0: one pass over the training text, every character predicted once
  batch_size: int = 16
  train_chars: int = 0
  # The base width's box, 3 points a decade: around the optima of a pilot in
  # one pass (best rate >= 1e-2 at d_model 32, its lambda falling about as
  # fast as the rate rises).
  rates: tuple[float, float] = (-2.667, -1.0)


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


@functools.cache
def corpus() -> lm.Corpus:
  """The character corpus, read once."""
  return lm.split_text(lm.load_text())


def model_config(cfg: Config | JointConfig, width: int) -> lm.Config:
  return lm.Config(corpus().vocab, width, cfg.layers, cfg.heads, cfg.context)


def corpus_text(cfg: Config | JointConfig, info: dict[str, Any]) -> str:
  """The start of a summary's first paragraph: the text and the model."""
  return (
    f"Character LM on pydoc_data.topics (Python {info.get('python', '?')}; "
    f"{info.get('train_chars', '?')} training, {info.get('valid_chars', '?')} validation "
    f"characters): {cfg.layers} pre-norm blocks, {cfg.heads} heads, context {cfg.context}; "
  )


class TransformerStudy(Architecture):
  """The character-level Transformer of ``examples/transformer_lm.py``; widths are ``d_model``."""

  out = Path("runs/transformer_width_study")
  studies: ClassVar = {"joint": (JointConfig(), JOINT_QUICK), "lambda": (Config(), QUICK)}
  label, unit = "d", "bpc"
  centres = CENTRES
  metrics = METRICS
  flag_help: ClassVar = {"widths": "d_model values", "steps": "training steps; joint: 0, one pass"}

  def param_shapes(self, cfg, width):
    return jax.eval_shape(lambda: lm.init(jax.random.key(0), model_config(cfg, width)))

  def init(self, cfg, width, key):
    return lm.init(key, model_config(cfg, width))

  def load(self, cfg):
    """The training and validation text, and each seed's window starts."""
    train = jnp.asarray(corpus().train[: cfg.train_chars or None])
    valid = jnp.asarray(corpus().valid[: cfg.valid_chars])
    joint = isinstance(cfg, JointConfig)
    # A joint study measures the training loss on the first `valid_chars` training characters.
    sample = train[: cfg.valid_chars] if joint else train
    seeds, n = range(cfg.seeds), len(train)
    if cfg.steps:
      starts = [lm.batch_starts(n, cfg.context + 1, cfg.batch_size, cfg.steps, s) for s in seeds]
    else:
      starts = [lm.one_pass_starts(n, cfg.context, cfg.batch_size, s) for s in seeds]
    batches = jnp.stack([jnp.asarray(b) for b in starts])
    info = {"python": sys.version.split()[0], "vocab": corpus().vocab, "train_chars": n}
    info["valid_chars"] = int(valid.shape[0])
    if joint:
      steps = int(batches.shape[1])
      info |= {"steps": steps, "passes": round(steps * cfg.batch_size * cfg.context / n, 2)}
    return StudyData({"train": train, "valid": valid, "train_sample": sample}, batches, info)

  def fit(self, cfg, width, scaling, base):
    model = model_config(cfg, width)
    shares = penalty_shares(self.param_shapes(cfg, width), scaling, base, group_of, GROUPS)

    def fit(tx, params, starts, data):
      params, _, _ = lm.fit(model, tx, params, data["train"], starts)
      test, train = (lm.evaluate(model, params, data[k]) for k in ("valid", "train_sample"))
      return {"test_loss": test, "train_loss": train} | shares(params)

    return fit

  def learning_rate(self, cfg):
    warmup = max(1, cfg.steps // 10)
    return optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, warmup, cfg.steps)

  def add_flags(self, parser, joint, lambdas):
    parser.add_argument("--train-chars", type=int, help="joint: 0 for the whole training split")

  def joint_header(self, cfg, info):
    steps = info.get("steps", "?")
    regime = f"{steps} steps of {cfg.batch_size} random windows"
    if not cfg.steps:
      regime = f"one pass: {steps} steps of {cfg.batch_size} windows, every training character"
      regime += " predicted once"
    return corpus_text(cfg, info) + (
      f"{regime} ({info.get('passes', '?')} passes); layer_adamw with warm-up and cosine decay; "
      f"{cfg.seeds} seeds; learning rate and lambda on a lattice of {cfg.per_decade} points a "
      f"decade, relative to the d_model={cfg.widths[0]} model (base=). Widths are d_model; "
      "'test loss' is the validation loss in bits per character."
    )

  def joint_tables(self, grid, found, cfg):
    lines = [
      "",
      "How the penalty s*||w||^2 is shared at each recipe's best point, in % for embeddings /",
      "attention / MLP / head kernels.",
    ]
    cell = functools.partial(share_cell, groups=GROUPS)
    lines += best_point_table(grid, found, cfg.lattice(), cfg.widths, cfg.recipes, cell, 15, "d")
    return [*lines, "", f"{models_trained(grid, cfg.widths, cfg.recipes)} models trained."]

  def joint_titles(self, cfg):
    regime = "random windows" if cfg.steps else "one pass"
    return (
      f"Character LM ({regime}): validation bpc over (learning rate, lambda), "
      f"mean over {cfg.seeds} seeds",
      f"Character LM ({regime}): tuned pair against d_model, and what reusing "
      f"d_model={cfg.widths[0]}'s costs (band: per-seed range)",
    )

  def lambda_header(self, cfg, info):
    return corpus_text(cfg, info) + (
      f"Adam lr={cfg.learning_rate:g} (warm-up, cosine), {cfg.steps} steps of "
      f"{cfg.batch_size} windows, {cfg.seeds} seeds, {cfg.points} lambdas over "
      f"{cfg.decades:g} decades; {cfg.relative_to('d_model')}. Widths are d_model. 'test loss' "
      "below is the validation loss in bits per character."
    )

  def lambda_tables(self, rows: Sequence[Row], cfg: Config) -> list[str]:
    def cell(row: Row) -> str:
      return share_cell({k: v[nearest_point(row)] for k, v in row.metrics.items()}, GROUPS)

    grid, base, cells = regularised(rows), unregularised(rows), (cell, cell)
    return [
      "",
      "How the penalty s*||w||^2 is shared at each optimum (unregularised: under plain L2),",
      "in % for embeddings / attention / MLP / head kernels.",
      *scaling_table(grid, base, cfg.widths, cfg.scalings, cfg.modes, cells, 15, "d", "none"),
    ]

  def lambda_figures(self, rows: Sequence[Row], cfg: Config, out: Path) -> None:
    plot_lambda_study(
      rows,
      cfg,
      out,
      (
        "loss_{mode}.png",
        f"Character LM, {{mode}} decay: validation bits per character, mean over {cfg.seeds} "
        "seeds (band: min-max)",
      ),
      metrics=(("test_loss", "validation bpc", 1.0), ("train_loss", "training bpc", 1.0)),
      optimal_title="Character LM: optimal lambda (lowest mean validation loss) against "
      "d_model;\nflat = lambda transfers. Band: range of per-seed optima; x: at the grid's edge",
    )


def main(argv: Sequence[str] | None = None) -> None:
  driver.main(TransformerStudy(), argv)


if __name__ == "__main__":
  main()
