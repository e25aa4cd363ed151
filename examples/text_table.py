"""The plain-text tables the examples print their results in."""

from collections.abc import Sequence


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  """A table under a rule: first column left-aligned, the rest right-aligned.

  >>> print(format_table(("name", "value"), [("a", "1.5"), ("long name", "10")]))
  name       value
  ---------  -----
  a            1.5
  long name     10
  """
  table = [tuple(header), *map(tuple, rows)]
  widths = [max(len(row[i]) for row in table) for i in range(len(header))]
  lines = [
    "  ".join(
      cell.rjust(width) if i else cell.ljust(width)
      for i, (cell, width) in enumerate(zip(row, widths, strict=True))
    )
    for row in table
  ]
  lines.insert(1, "  ".join("-" * width for width in widths))
  return "\n".join(lines)
