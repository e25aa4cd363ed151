"""Whether two programs are the same, or the same but for their constants.

A program is compared in two forms:

* lowered: the HLO that JAX hands to XLA, before XLA optimizes it. It is made
  by JAX from our code alone, the same on every backend, so whether two
  lowered programs agree means the same on a CPU and on a GPU.
* compiled: the HLO that XLA's optimizer made of it for this backend, which is
  what runs. XLA:CPU compiles programs that differ only in constants into the
  same program with other constants. XLA:GPU need not: a factor that is one
  constant for every leaf (``add_decayed_weights``, ``adamw``) can be fused,
  shared or deduplicated otherwise than one that differs from leaf to leaf,
  and kernels are named, numbered and ordered as the GPU compiler goes (with
  jax 0.11.2 on a CUDA GPU, the compiled steps of ``layer_l2("fan_avg")`` and
  ``add_decayed_weights`` differed as text while ``layer_l2("none")``'s
  matched). The time, not the text, shows whether that costs anything.

Either form is compared as a graph, not as text: :func:`fingerprint` hashes
each instruction from its shape, opcode, attributes and the hashes of its
operands and called computations, so that the names XLA numbers as it goes,
the order of the instructions and of the computations, the sharing of
identical computations, and metadata (source lines, ``backend_config``) do
not count, and constants count only if asked.
"""

import functools
import hashlib
import re
from typing import Any, NamedTuple

IGNORED_ATTRIBUTES = frozenset(
  {
    "metadata",
    "backend_config",
    "frontend_attributes",
    "statistics",
    "origin",
    "control-predecessors",
  }
)
"""Attributes that say where an instruction came from, how it is tuned or when it runs, not
what it computes."""

_INSTRUCTION = re.compile(r"^\s+(ROOT\s+)?%?([^\s=]+)\s*=\s*(.*)$")
_COMMENT = re.compile(r"/\*.*?\*/")
_NAME = re.compile(r"%?([A-Za-z_][\w.\-]*)")
_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.)*"|[(){}\[\],]')
"""A quoted string, a bracket or a comma: what the structure of an HLO line is made of."""
_OPENING, _CLOSING = frozenset("({["), frozenset(")}]")


def lowered_text(lowered: Any) -> str:
  """The HLO of a ``jax.stages.Lowered``, before XLA optimizes it."""
  return lowered.as_text(dialect="hlo")


def compiled_text(compiled: Any) -> str:
  """The HLO of a ``jax.stages.Compiled``, as XLA optimized it for its backend."""
  return compiled.as_text()


def same_program(ours: str, theirs: str) -> str:
  """Whether two HLO modules are the same program, or the same but for their constants.

  Args:
    ours: the text of one HLO module, lowered or compiled.
    theirs: the text of the other, of the same form.

  Returns:
    ``"identical"``, ``"identical but for constants"`` or ``"differs"``.
  """
  if fingerprint(ours) == fingerprint(theirs):
    return "identical"
  if fingerprint(ours, constants=False) == fingerprint(theirs, constants=False):
    return "identical but for constants"
  return "differs"


@functools.lru_cache(maxsize=32)
def fingerprint(text: str, *, constants: bool = True) -> str:
  """A hash of the computation graph of an HLO module, blind to names, order and metadata.

  Args:
    text: an HLO module as text (``Lowered.as_text(dialect="hlo")`` or
      ``Compiled.as_text()``).
    constants: whether the values of constants count.

  Returns:
    A hex digest, equal for two modules whose entry computations compute the
    same graph of operations.
  """
  computations, entry = _parsed(text)
  digests: dict[str, str] = {}

  def digest_of(name: str) -> str:
    if name not in digests:
      called = {}
      for instruction in computations[name].values():
        for attribute in instruction.attributes:
          for match in _NAME.finditer(attribute):
            if match.group(1) in computations and match.group(1) != name:
              called[match.group(1)] = digest_of(match.group(1))
      digests[name] = _computation_digest(computations[name], called, constants)
    return digests[name]

  return digest_of(entry)


class _Instruction(NamedTuple):
  """One line of a computation: ``[ROOT] name = shape opcode(operands), attributes``.

  Only the attributes that say what the instruction computes are kept (see
  :data:`IGNORED_ATTRIBUTES`).
  """

  is_root: bool
  shape: str
  opcode: str
  operands: list[str]
  attributes: list[str]

  def operand_names(self) -> list[str]:
    """The instructions this one reads (none for a constant or a parameter)."""
    if self.opcode in ("constant", "parameter"):
      return []
    names = []
    for operand in self.operands:
      match = _NAME.fullmatch(operand.split()[-1])
      names.append(match.group(1) if match else operand)
    return names


@functools.lru_cache(maxsize=2)
def _parsed(text: str) -> tuple[dict[str, dict[str, _Instruction]], str]:
  """The computations of a module, their instructions by name, and the entry's name."""
  computations: dict[str, dict[str, _Instruction]] = {}
  entry, current = None, None
  for line in text.splitlines():
    if current is None:
      if (
        line.rstrip().endswith("{") and not line[:1].isspace() and not line.startswith("HloModule")
      ):
        words = line.split()
        is_entry = words[0] == "ENTRY"
        current = words[int(is_entry)].lstrip("%")
        computations[current] = {}
        entry = current if is_entry else entry
    elif line.strip() == "}":
      current = None
    else:
      match = _INSTRUCTION.match(_COMMENT.sub("", line))
      if match:
        is_root, name, rest = match.groups()
        computations[current][name] = _Instruction(bool(is_root), *_split(rest))
  if entry is None:
    raise ValueError("no ENTRY computation in the HLO text")
  return computations, entry


def _hash(text: str) -> str:
  return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


def _closing(text: str, start: int) -> int:
  """The index of the bracket that closes the one at ``start``, skipping quoted strings."""
  depth = 0
  for match in _STRUCTURE.finditer(text, start):
    char = match.group()
    if char in _OPENING:
      depth += 1
    elif char in _CLOSING:
      depth -= 1
      if depth == 0:
        return match.start()
  raise ValueError(f"unbalanced brackets in HLO: {text!r}")


def _split_top_level(text: str) -> list[str]:
  """``text`` split at the commas outside brackets and quoted strings."""
  parts, start, depth = [], 0, 0
  for match in _STRUCTURE.finditer(text):
    char = match.group()
    if char in _OPENING:
      depth += 1
    elif char in _CLOSING:
      depth -= 1
    elif char == "," and depth == 0:
      parts.append(text[start : match.start()].strip())
      start = match.end()
  parts.append(text[start:].strip())
  return [part for part in parts if part]


def _split(rest: str) -> tuple[str, str, list[str], list[str]]:
  """The shape, opcode, operands and kept attributes of an instruction's right-hand side."""
  rest = rest.strip()
  end = _closing(rest, 0) + 1 if rest.startswith("(") else rest.index(" ")
  shape, rest = rest[:end], rest[end:].strip()
  opening = rest.index("(")
  closing = _closing(rest, opening)
  operands = _split_top_level(rest[opening + 1 : closing])
  attributes = [
    attribute
    for attribute in _split_top_level(rest[closing + 1 :])
    if attribute.split("=", 1)[0] not in IGNORED_ATTRIBUTES
  ]
  return shape, rest[:opening].strip(), operands, attributes


def _computation_digest(
  instructions: dict[str, _Instruction], called: dict[str, str], constants: bool
) -> str:
  """The hash of a computation: of its instructions, each hashed with its operands' hashes."""
  digests: dict[str, str] = {}

  def rename(match: re.Match) -> str:
    token = match.group(1)
    if token in called:
      return f"@{called[token]}"
    return f"#{digests[token]}" if token in digests else match.group(0)

  def digest(instruction: _Instruction) -> str:
    if instruction.opcode == "parameter" or (instruction.opcode == "constant" and constants):
      arguments = instruction.operands
    elif instruction.opcode == "constant":
      arguments = ["..."]
    else:
      arguments = [f"#{digests.get(o, o)}" for o in instruction.operand_names()]
    kept = [_NAME.sub(rename, attribute) for attribute in instruction.attributes]
    return _hash(f"{instruction.shape} {instruction.opcode}({', '.join(arguments)}) {kept}")

  for name in instructions:  # an explicit stack: chains of thousands of instructions occur
    stack = [name]
    while stack:
      top = stack[-1]
      pending = [
        o for o in instructions[top].operand_names() if o in instructions and o not in digests
      ]
      if top in digests:
        stack.pop()
      elif pending:
        stack.extend(pending)
      else:
        digests[top] = digest(instructions[top])
        stack.pop()
  roots = [digests[name] for name, instruction in instructions.items() if instruction.is_root]
  return _hash("\n".join(sorted(digests.values())) + "\nROOT " + " ".join(roots))
