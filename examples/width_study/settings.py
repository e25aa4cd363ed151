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
