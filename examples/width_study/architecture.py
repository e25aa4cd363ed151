"""The seam between the width-study driver and one architecture: what the driver asks of it.

A study script (``examples/width_sweep.py``, ``examples/transformer_width_study.py``)
subclasses :class:`Architecture`: its settings and their defaults, its
parameter shapes, its init, the training of one model, its metrics and the
words and figures of its report. :mod:`width_study.driver` does the rest for
every architecture alike: the command line, the grids and the lattice, the
vmapped programs, the searches, ``runs.csv``, ``config.json`` and
``summary.txt``.
"""

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import jax
import optax

from width_study.grid import Centres
from width_study.recipes import RATE_SHAPES, RECIPES, Recipe
from width_study.runs import Row
from width_study.settings import JointSettings, LambdaSettings
from width_study.transfer import JointGrid, Transfer

Fit = Callable[[optax.GradientTransformation, Any, Any, dict[str, jax.Array]], dict[str, jax.Array]]
"""``fit(tx, params, batches, arrays)``: one model trained with ``tx``, and its metrics.

``params`` and ``batches`` are one seed's (the driver vmaps over the seeds and
the grid points); ``arrays`` are the data every run sees. Pure and traceable.
"""


@dataclasses.dataclass(frozen=True)
class StudyData:
  """What the runs of one study train on.

  Attributes:
    arrays: the data every run sees (training and test sets), on the device.
    batches: each seed's batches, stacked on a leading axis: ``(seeds, steps, ...)``.
    info: what the report says of the data (its size, the steps), saved in
      ``config.json`` as ``"data"`` where not empty and read back by ``--replot``.
  """

  arrays: dict[str, jax.Array]
  batches: jax.Array
  info: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def steps(self) -> int:
    """The training steps of every run."""
    return int(self.batches.shape[1])


class Architecture:
  """One architecture of the width studies; a study script subclasses it.

  Attributes:
    description: the first line of ``--help``: by default the first paragraph
      of the docstring of the module that defines the architecture.
    out: the default ``--out``.
    studies: ``"joint"`` and ``"lambda"``, each ``(default settings, --quick's)``;
      the first is the default study.
    centres: where its lambda grids lie (:class:`width_study.grid.Centres`).
    metrics: the columns of ``runs.csv`` after the keys, as ``fit`` returns them.
    recipes: the recipes ``--recipes`` may name.
    label: what its tables call a width (``"w"``: ``w=32``).
    unit: what its joint tables call the loss.
    span: the loss above the best that the planes' colours span.
    flag_help: help of the shared flags in its own words, by flag (``"widths"``).
  """

  out: Path
  studies: dict[str, tuple[Any, Any]]
  centres: Centres
  metrics: tuple[str, ...]
  recipes: ClassVar[dict[str, Recipe]] = RECIPES
  label: str = "w"
  unit: str = "test loss"
  span: float = 0.3
  flag_help: ClassVar[dict[str, str]] = {}

  @property
  def description(self) -> str:
    """The first paragraph of the defining module's docstring."""
    doc = sys.modules[type(self).__module__].__doc__ or ""
    return doc.split("\n\n")[0]

  # --- the model ----------------------------------------------------------------------------

  def param_shapes(self, cfg: Any, width: int) -> Any:
    """The shapes of the model of ``width`` (``jax.eval_shape``), for ``base=``."""
    raise NotImplementedError

  def init(self, cfg: Any, width: int, key: jax.Array) -> Any:
    """One model's initial weights; traced under ``jax.vmap`` over the seeds' keys."""
    raise NotImplementedError

  def load(self, cfg: Any) -> StudyData:
    """The data of a study and each seed's batches."""
    raise NotImplementedError

  def fit(self, cfg: Any, width: int, scaling: str, base: Any | None) -> Fit:
    """The training of one model of ``width``; ``scaling`` is the decay scaling its
    optimizer uses (relative to ``base``), for metrics that measure the penalty."""
    raise NotImplementedError

  def learning_rate(self, cfg: LambdaSettings) -> optax.ScalarOrSchedule:
    """The learning rate of a lambda study: ``cfg.learning_rate``, constant."""
    return cfg.learning_rate

  def rate_shape(self, cfg: JointSettings, steps: int) -> Callable[[jax.Array], jax.Array] | None:
    """A joint study's learning rate over ``steps``, multiplying each point's peak rate
    (``None``: constant): a 10% warm-up and a cosine decay."""
    return RATE_SHAPES["cosine"](steps)

  # --- the command line -----------------------------------------------------------------

  def add_flags(
    self,
    parser: argparse.ArgumentParser,
    joint: argparse._ArgumentGroup,
    lambdas: argparse._ArgumentGroup,
  ) -> None:
    """Adds the flags of its own settings: for both studies to ``parser``, else to a group."""

  # --- the report ---------------------------------------------------------------------------

  def joint_header(self, cfg: Any, info: dict[str, Any]) -> str:
    """The first paragraph of a joint study's summary: what was trained, and how."""
    raise NotImplementedError

  def joint_tables(
    self, grid: JointGrid, found: dict[tuple[str, int], Transfer], cfg: Any
  ) -> list[str]:
    """Its own tables after the shared ones of a joint study (each after an empty line)."""
    return []

  def joint_titles(self, cfg: Any) -> tuple[str, str]:
    """The titles of a joint study's ``planes.png`` and ``joint_optima.png``."""
    raise NotImplementedError

  def lambda_header(self, cfg: Any, info: dict[str, Any]) -> str:
    """The first paragraph of a lambda study's summary."""
    raise NotImplementedError

  def lambda_tables(self, rows: Sequence[Row], cfg: Any) -> list[str]:
    """Its own tables after the shared ones of a lambda study (each after an empty line)."""
    return []

  def lambda_figures(self, rows: Sequence[Row], cfg: Any, out: Path) -> None:
    """Every figure of a lambda study into ``out`` (:func:`width_study.plots.plot_lambda_study`)."""
    raise NotImplementedError
