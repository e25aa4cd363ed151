"""A study's settings: their shared fields, a saved ``config.json`` and the command-line flags.

An architecture's ``Config`` and ``JointConfig`` subclass :class:`LambdaSettings`
and :class:`JointSettings`: they give the defaults of its studies and add the
fields of its own (an init, a context length). The lambda grids and the
(learning rate, lambda) lattice are made from these fields here, and nowhere
else.
"""

import argparse
import dataclasses
import json
from typing import Any

import numpy as np

from width_study.grid import MODES, Centres
from width_study.lattice import Lattice, Point


@dataclasses.dataclass(frozen=True, kw_only=True)
class LambdaSettings:
  """What every lambda study (``--study lambda``, one learning rate) sets."""

  widths: tuple[int, ...]
  scalings: tuple[str, ...]
  modes: tuple[str, ...] = MODES
  seeds: int
  points: int  # lambdas a grid
  decades: float = 4.0  # the span of each grid
  steps: int
  batch_size: int
  learning_rate: float = 3e-3
  absolute: bool = False  # True: no base; else every scaling relative to the narrowest width

  def base_width(self) -> int | None:
    """The width of the base model, or ``None`` without one."""
    return None if self.absolute else min(self.widths)

  def relative_to(self, label: str) -> str:
    """How the factors are taken, for a summary's first paragraph."""
    if self.absolute:
      return "absolute factors (no base)"
    return f"every scaling relative to the {label}={self.base_width()} model (base=)"

  def grid(self, centres: Centres, scaling: str, mode: str, narrowest: Any) -> np.ndarray:
    """The lambda grid of one ``(scaling, mode)``: ``points`` over ``decades`` around its centre.

    ``narrowest`` is a callable giving the narrowest model's parameter
    shapes, read only for an absolute grid whose centre is not listed.
    """
    return centres.grid(scaling, mode, self.absolute, narrowest, self.decades, self.points)


@dataclasses.dataclass(frozen=True, kw_only=True)
class JointSettings:
  """What every joint study (``--study joint``, learning rate and lambda tuned together) sets."""

  widths: tuple[int, ...]
  recipes: tuple[str, ...]
  seeds: int
  steps: int
  batch_size: int
  # The base width's box of the lattice, in log10; the searches walk out of it where they need to.
  rates: tuple[float, float]
  lambdas: tuple[float, float] = (-1.667, 0.333)
  per_decade: int = 3  # lattice points a decade
  max_moves: int = 4  # moves of each search beyond its start

  def base_width(self) -> int:
    """The width of the base model, where the lattice's box is trained once for every recipe."""
    return min(self.widths)

  def lattice(self) -> Lattice:
    """The study's (learning rate, lambda) lattice, from the corner of the box."""
    return Lattice(self.rates[0], self.lambdas[0], self.per_decade)

  def box(self) -> list[Point]:
    """The lattice points of the base width's box."""
    return self.lattice().box(self.rates, self.lambdas)


def from_flags(default: Any, args: argparse.Namespace) -> Any:
  """``default`` (a frozen dataclass), then ``config.json`` in ``args.out`` for
  ``--replot`` (a field it lacks keeps ``default``'s value), then every flag that
  was given, named as the field it sets."""
  cfg = default
  saved = args.out / "config.json"
  fields = [field.name for field in dataclasses.fields(default)]
  if args.replot and saved.exists():
    settings = json.loads(saved.read_text())
    cfg = dataclasses.replace(
      default,
      **{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items() if k in fields},
    )
  overrides = {
    name: getattr(args, name) for name in fields if getattr(args, name, None) is not None
  }
  for name, value in overrides.items():
    if isinstance(value, list):
      overrides[name] = tuple(value)
  return dataclasses.replace(cfg, **overrides)


def saved_study(args: argparse.Namespace) -> str | None:
  """For ``--replot``: the study that made ``args.out``, from its ``config.json``.

  Folders written before there were joint studies name none, and are lambda
  studies (their configuration has ``scalings``).
  """
  saved = args.out / "config.json"
  if not (args.replot and saved.exists()):
    return None
  settings = json.loads(saved.read_text())
  return settings.get("study", "lambda" if "scalings" in settings else None)


def study_from_flags(
  parser: argparse.ArgumentParser, args: argparse.Namespace, studies: dict[str, tuple[Any, Any]]
) -> Any:
  """The settings of the study ``args.study``: ``studies[name] = (default, quick)``.

  Without ``--study``: the study saved in ``args.out`` for ``--replot``, else
  the first of ``studies``.

  A flag of an argument group titled ``"<other> study"`` given for study
  ``name`` is an error: it would be silently ignored.
  """
  if args.study is None:
    args.study = saved_study(args) or next(iter(studies))
  default, quick = studies[args.study]
  cfg = from_flags(quick if args.quick else default, args)
  for group in parser._action_groups:
    if (
      not group.title or not group.title.endswith(" study") or group.title == f"{args.study} study"
    ):
      continue
    for action in group._group_actions:
      if getattr(args, action.dest, None) is not None:
        parser.error(f"{action.option_strings[0]} belongs to the {group.title}")
  return cfg
