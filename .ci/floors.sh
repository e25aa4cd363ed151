#!/usr/bin/env bash
# The lowest versions that pyproject.toml declares, tested. Each set gets a
# fresh virtual environment of its own, outside the work tree, and this package
# is installed into it without its dependencies, so pip cannot lift a floor.
#
#   bash .ci/floors.sh
#
# 1. The run-time floors, jax and jaxlib 0.4.35 and optax 0.2.4, with numpy 1.x
#    and the test tools at their floors: the core tests, the Optax battery,
#    infer_dims, rescale_init and the docstring examples.
# 2. The flax floor of the `test`, `examples` and `docs` extras, flax 0.12.6
#    (the first with `nnx.MultiHeadAttention(num_kv_heads=...)`, which the
#    Flax tests use), with the lowest jax it accepts, 0.8.1, and optax 0.2.4:
#    the Flax tests.
#
# When a floor in pyproject.toml moves, move it here too.
set -euo pipefail
cd "$(dirname "$0")/.."

TEST_TOOLS=("chex==0.1.87" "hypothesis==6.100.0" "pytest==8.0.0" "pytest-xdist==3.5.0")

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT

# floor NAME REQUIREMENT... -- PYTEST_ARGUMENT...
floor() {
  local name=$1
  shift
  local requirements=()
  while [[ $1 != -- ]]; do
    requirements+=("$1")
    shift
  done
  shift
  local python="$workdir/$name/bin/python"
  echo "== floors, $name: ${requirements[*]} ${TEST_TOOLS[*]}"
  python3 -m venv "$workdir/$name"
  "$python" -m pip install --quiet "${requirements[@]}" "${TEST_TOOLS[@]}"
  "$python" -m pip install --quiet --no-deps -e .
  "$python" -m pip list --format=freeze | grep -iE '^(jax|jaxlib|optax|flax|numpy|chex|hypothesis|pytest|pytest-xdist)=='
  "$python" -m pytest -p no:cacheprovider "$@"
}

floor runtime "jax==0.4.35" "jaxlib==0.4.35" "optax==0.2.4" "numpy==1.26.4" \
  -- tests/test_core_*.py tests/test_optax_battery.py tests/test_infer_dims.py tests/test_mup.py optax_layer_l2

floor flax "flax==0.12.6" "jax==0.8.1" "jaxlib==0.8.1" "optax==0.2.4" \
  -- tests/test_flax.py
