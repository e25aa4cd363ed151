"""A study's settings: its defaults, a saved ``config.json`` and the command-line flags."""

import argparse
import dataclasses
import json
from typing import Any


def from_flags(default: Any, args: argparse.Namespace) -> Any:
  """``default`` (a frozen dataclass), then ``config.json`` in ``args.out`` for
  ``--replot``, then every flag that was given, named as the field it sets."""
  cfg = default
  saved = args.out / "config.json"
  fields = [field.name for field in dataclasses.fields(default)]
  if args.replot and saved.exists():
    settings = json.loads(saved.read_text())
    cfg = type(default)(
      **{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items() if k in fields}
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
