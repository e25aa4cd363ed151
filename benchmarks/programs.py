"""Whether two compiled programs are the same, or the same but for their constants."""

import re
from typing import Any


def program_text(compiled: Any) -> str:
  """The instructions of a compiled program, without source locations or numbered names.

  Names are numbered by XLA as it builds the program, so two programs alike
  in every instruction may number them apart; here each name is replaced by
  the order of its first appearance.
  """
  lines = []
  for line in compiled.as_text().splitlines():
    if " = " in line or line.rstrip().endswith("{"):
      lines.append(re.sub(r", metadata=\{[^}]*\}", "", line))
  names: dict[str, str] = {}

  def rename(match: re.Match) -> str:
    return names.setdefault(match.group(1), f"%{len(names)}")

  return re.sub(r"%?\b([A-Za-z_][\w\-]*\.\d+)\b", rename, "\n".join(lines))


def same_program(ours: str, theirs: str) -> str:
  """Whether two compiled programs are the same, or the same but for their constants."""
  if ours == theirs:
    return "identical"

  def hide(text: str) -> str:
    return re.sub(r"constant\([^)]*\)", "constant(...)", text)

  return "identical but for constants" if hide(ours) == hide(theirs) else "differs"
