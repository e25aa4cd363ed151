"""Whether two programs are the same, or the same but for their constants.

A program is compared in two forms:

* lowered: the HLO that JAX hands to XLA, before XLA optimizes it. It is made
  by JAX from our code alone, the same on every backend, so whether two
  lowered programs agree means the same on a CPU and on a GPU.
* compiled: the HLO that XLA's optimizer made of it for this backend, which is
  what runs. Programs that differ only in constants need not compile alike: a
  factor that is one constant for every leaf (``add_decayed_weights``,
  ``adamw``) is one instruction with many users, which XLA passes into each
  fusion as an operand, where a factor that only one leaf uses is folded into
  its fusion; XLA:GPU may also fuse, share or deduplicate kernels otherwise,
  and names, numbers and orders them as it goes (with jax 0.11.2 on a CUDA GPU,
  the compiled steps of ``layer_l2("fan_avg")`` and ``add_decayed_weights``
  differed as text while ``layer_l2("none")``'s matched). The time, not the
  text, shows whether that costs anything.

Either form is compared as a graph, not as text: :func:`fingerprint` hashes
each instruction from its shape, opcode, attributes and the hashes of its
operands and called computations, so that the names XLA numbers as it goes,
the order of the instructions and of the computations, the sharing of
identical computations, whether a fusion's constant is inside it or passed to
it, and metadata (source lines, ``backend_config``) do not count, and
constants count only if asked.
"""

import collections
import functools
import hashlib
import re
from collections.abc import Callable
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


def operations_beyond(ours: str, theirs: str) -> dict[str, int]:
  """How many more instructions of each opcode ``ours`` holds than ``theirs`` (fewer if < 0).

  Counted over every computation of each HLO module; opcodes whose counts
  agree are left out, in the order of the opcode's name.
  """
  counts = [
    collections.Counter(
      instruction.opcode
      for computation in _parsed(text)[0].values()
      for instruction in computation.values()
    )
    for text in (ours, theirs)
  ]
  return {
    opcode: counts[0][opcode] - counts[1][opcode]
    for opcode in sorted(counts[0] | counts[1])
    if counts[0][opcode] != counts[1][opcode]
  }


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
  digests: dict[tuple[str, Bindings], str] = {}

  def digest_of(name: str, bound: Bindings = ()) -> str:
    if (name, bound) not in digests:
      digests[name, bound] = _computation_digest(
        computations[name], digest_of, computations, constants, dict(bound)
      )
    return digests[name, bound]

  return digest_of(entry)


Bindings = tuple[tuple[int, str], ...]
"""The parameters of a fused computation that its fusion passes constants to: (index, value)."""


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
  instructions: dict[str, _Instruction],
  digest_of: Callable[[str, Bindings], str],
  computations: dict[str, Any],
  constants: bool,
  bound: dict[int, str],
) -> str:
  """The hash of a computation: of its root and parameters, each hashed with its operands'.

  A fusion that passes a constant to its fused computation is hashed as if
  the constant were inside it (``bound`` holds such constants by parameter
  index): XLA folds a constant into a fusion when the fusion is its only
  user, and passes it in when others use it too, as when one factor serves
  every leaf.
  """
  digests: dict[str, str] = {}

  def constant(shape: str, value: str) -> str:
    return _hash(f"{shape} constant({value if constants else '...'}) []")

  def called(instruction: _Instruction) -> dict[str, str]:
    """The computations ``instruction`` calls, each with its hash at this call."""
    bindings: Bindings = ()
    if instruction.opcode == "fusion":
      bindings = tuple(
        (i, instructions[o].operands[0])
        for i, o in enumerate(instruction.operand_names())
        if o in instructions and instructions[o].opcode == "constant"
      )
    return {
      match.group(1): digest_of(match.group(1), bindings)
      for attribute in instruction.attributes
      for match in _NAME.finditer(attribute)
      if match.group(1) in computations
    }

  def digest(instruction: _Instruction) -> str:
    if instruction.opcode == "constant":
      return constant(instruction.shape, instruction.operands[0])
    if instruction.opcode == "parameter":
      index = int(instruction.operands[0])
      if index in bound:
        return constant(instruction.shape, bound[index])
      arguments = [str(index - sum(i < index for i in bound))]
    else:
      arguments = [
        f"#{digests.get(o, o)}"
        for o in instruction.operand_names()
        if instruction.opcode != "fusion" or instructions.get(o, instruction).opcode != "constant"
      ]
    calls = called(instruction)

    def rename(match: re.Match) -> str:
      return f"@{calls[match.group(1)]}" if match.group(1) in calls else match.group(0)

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
  root = next(digests[name] for name, instruction in instructions.items() if instruction.is_root)
  parameters = sorted(
    digests[name]
    for name, instruction in instructions.items()
    if instruction.opcode == "parameter" and int(instruction.operands[0]) not in bound
  )
  return _hash(f"ROOT {root} PARAMETERS {parameters}")
