"""Runs Optax's own tests of ``add_decayed_weights`` against ``layer_l2``.

``layer_l2(weight_decay, "none", mask=mask)`` is documented as
``optax.add_decayed_weights(weight_decay, mask)``. Optax ships its tests inside
its wheel; this script runs the ones that build ``add_decayed_weights``, with
every name under which Optax reaches it (``optax.add_decayed_weights``,
``optax.transforms.add_decayed_weights``, the private modules Optax's own
optimizers and tests call) bound to::

  lambda weight_decay=0.0, mask=None: layer_l2(weight_decay, "none", mask=mask or every leaf)

``add_decayed_weights`` with ``mask=None`` decays every leaf, where
``layer_l2``'s default mask decays only kernels and embeddings; so ``None``
becomes a mask of every leaf, unless ``--literal-mask`` passes it on as it is.
Every test of those files runs, those that never meet the substitute too.
Run it from the repository root, with the ``test`` extra installed (Optax's
tests need absl, chex and flax)::

  python checks/optax_drop_in.py [--literal-mask] [pytest arguments]

It prints pytest's summary, with the reason for each failure, and exits with
pytest's status. The result, and where ``layer_l2`` differs on purpose, are in
``docs/contributing.md``.
"""

import os
import sys
from pathlib import Path
from typing import Any

import jax
import optax
import pytest

import optax_layer_l2

# Optax's test files that call `add_decayed_weights`, under any of its names.
TEST_FILES = (
  "transforms/_adding_test.py",
  "transforms/_masking_test.py",
  "transforms/_accumulation_test.py",
  "_src/float64_test.py",
)


def every_leaf(params: optax.Params) -> Any:
  """The mask that decays every leaf, as ``add_decayed_weights(mask=None)`` does."""
  return jax.tree.map(lambda _: True, params)


def substitute(literal_mask: bool):
  """``add_decayed_weights`` made of ``layer_l2``."""

  def add_decayed_weights(
    weight_decay: optax.ScalarOrSchedule = 0.0, mask: Any = None
  ) -> optax.GradientTransformation:
    if mask is None and not literal_mask:
      mask = every_leaf
    return optax_layer_l2.layer_l2(weight_decay, "none", mask=mask)

  return add_decayed_weights


def patch_optax(replacement: Any) -> list[str]:
  """Binds every name of ``add_decayed_weights`` in Optax to ``replacement``.

  Returns:
    The names it bound, as ``module.attribute``.
  """
  original = optax.add_decayed_weights
  bound = []
  for name, module in sorted(sys.modules.items()):
    if name.split(".")[0] != "optax":
      continue
    if getattr(module, "add_decayed_weights", None) is original:
      module.add_decayed_weights = replacement
      bound.append(f"{name}.add_decayed_weights")
  return bound


def main(argv: list[str]) -> int:
  literal_mask = "--literal-mask" in argv
  pytest_args = [arg for arg in argv if arg != "--literal-mask"]
  # `import optax` has imported every module that defines or re-exports the
  # name; a module imported later that copies it gets the substitute.
  bound = patch_optax(substitute(literal_mask))
  mask = "passed on as it is" if literal_mask else "None becomes every leaf"
  print(f"add_decayed_weights -> layer_l2(..., 'none', mask=...) ({mask}); bound: {bound}")
  root = Path(optax.__file__).parent
  files = [str(root / name) for name in TEST_FILES]
  return pytest.main(
    [
      # Optax's tests, not ours: none of this repository's pytest settings.
      "-c",
      os.devnull,
      "--rootdir",
      str(root),
      "-p",
      "no:cacheprovider",
      "-q",
      "-rf",
      *files,
      *pytest_args,
    ]
  )


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
