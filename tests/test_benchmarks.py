"""The benchmark script runs, and the budgets that need no clock hold exactly.

Timings are never asserted here: ``python -m benchmarks.step_time`` measures them and
``docs/performance.md`` reports them. What can be checked exactly is: the
script's smoke run and its table; the state it keeps; that the program it
compiles is the one ``optax.add_decayed_weights`` compiles, with other
constants; and that its Python work is done once per trace, not per step.
"""

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_layer_l2 as ll2

ROOT = Path(__file__).resolve().parents[1]


def _benchmark_module(name):
  """A module of the ``benchmarks`` package, which sits beside the library, not inside it."""
  with pytest.MonkeyPatch.context() as patch:
    patch.syspath_prepend(str(ROOT))
    return importlib.import_module(f"benchmarks.{name}")


SECTIONS = [
  "# Performance",
  "## Machine",
  "## Budgets",
  "## 1. Train step",
  "## 2. Update alone",
  "## 3. Trace and compile time",
  "## 4. Optimizer state",
  "## 5. Peak memory",
]
BUDGET_ROWS = 11


def _params():
  """Dense layers of different shapes, and a norm scale the default never decays."""
  params = {
    f"dense_{i}": {
      "kernel": jnp.full((16, 8 + 3 * i), 0.5, jnp.float32),
      "bias": jnp.ones(8 + 3 * i),
    }
    for i in range(4)
  }
  params["norm"] = {"scale": jnp.ones(8)}
  return params


def _mask(params):
  return jax.tree.map(lambda s: s > 0, ll2.scales(params, "none"))


def _tables(text):
  """Each Markdown table of ``text``, as a list of rows of cells."""
  tables, current = [], []
  for line in [*text.splitlines(), ""]:
    if line.startswith("|"):
      current.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    elif current:
      tables.append(current)
      current = []
  return tables


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
  output = tmp_path_factory.mktemp("bench") / "nested" / "performance.md"
  result = subprocess.run(
    [sys.executable, "-m", "benchmarks.step_time", "--quick", "--output", str(output)],
    capture_output=True,
    text=True,
    timeout=900,
    check=False,
    cwd=output.parents[1],
    env={
      **os.environ,
      "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    },
  )
  return result, output


@pytest.mark.slow
def test_quick_run_writes_the_table_to_the_output_path(quick_run):
  result, output = quick_run
  assert result.returncode == 0, result.stderr[-3000:]
  assert output.exists()
  assert output.read_text() == result.stdout


@pytest.mark.slow
def test_quick_run_has_every_section_in_order(quick_run):
  result, _ = quick_run
  headings = [line for line in result.stdout.splitlines() if line.startswith("#")]
  top = [h for h in headings if not h.startswith("###")]
  assert top == SECTIONS
  # Sections 1, 2 and 5 have one table per model: the MLP and the many-leaf one.
  assert sum(h.startswith("### MLP") for h in headings) == 3
  assert sum("regression heads" in h for h in headings) == 3


@pytest.mark.slow
def test_quick_run_tables_are_well_formed(quick_run):
  result, _ = quick_run
  tables = _tables(result.stdout)
  assert len(tables) == 10  # machine, budgets, 2 x step, 2 x update, compile, state, 2 x memory
  for rows in tables:
    assert len(rows) >= 3
    assert {len(row) for row in rows} == {len(rows[0])}
    assert all(re.fullmatch(r"-+", cell) for cell in rows[1])


@pytest.mark.slow
def test_quick_run_names_each_budget_with_a_verdict(quick_run):
  result, _ = quick_run
  budgets = _tables(result.stdout.split("## Budgets", 1)[1])[0]
  header, rows = budgets[0], budgets[2:]
  assert header == ["budget", "measured", "limit", "result"]
  assert len(rows) == BUDGET_ROWS
  for row in rows:
    assert re.fullmatch(r"(PASS|MISS) \(\d+/\d+ pass(; every miss within noise)?\)", row[3]), row
  # The budgets that need no clock hold in any run.
  exact = {row[0]: row for row in rows if re.search("state|Peak memory|Compiled", row[0])}
  assert len(exact) == 4
  assert all(row[3].startswith("PASS") for row in exact.values()), exact


@pytest.mark.slow
def test_quick_run_reports_the_machine_without_paths(quick_run):
  result, output = quick_run
  machine = dict(row for row in _tables(result.stdout)[0][2:])
  assert machine["logical cores"].isdigit()
  assert machine["jax / jaxlib"].startswith(jax.__version__)
  for path in {str(ROOT), str(Path.home()), str(output.parent), sys.executable}:
    assert path not in result.stdout


@pytest.mark.parametrize("weight_decay, expected", [(1e-4, 0), (optax.constant_schedule(1e-4), 4)])
def test_state_is_empty_or_one_int32(weight_decay, expected):
  params = _params()
  state = ll2.layer_l2(weight_decay).init(params)
  assert sum(np.asarray(x).nbytes for x in jax.tree.leaves(state)) == expected
  adam = optax.adam(1e-3)
  with_adam = optax.chain(ll2.layer_l2(weight_decay), adam).init(params)
  extra = sum(x.nbytes for x in jax.tree.leaves(with_adam)) - sum(
    x.nbytes for x in jax.tree.leaves(adam.init(params))
  )
  assert extra == expected


@pytest.mark.parametrize("scaling", list(ll2.SCALINGS))
def test_update_traces_to_the_program_of_add_decayed_weights(scaling):
  """One multiply and one add per decayed leaf, the factor folded into a literal."""
  params = _params()

  def equations(tx):
    state = tx.init(params)
    jaxpr = jax.make_jaxpr(lambda g, p: tx.update(g, state, p)[0])(params, params)
    return jaxpr.consts, [
      (eqn.primitive.name, [str(v.aval) for v in eqn.invars]) for eqn in jaxpr.eqns
    ]

  ours = equations(ll2.layer_l2(1e-4, scaling))
  theirs = equations(optax.add_decayed_weights(1e-4, _mask(params)))
  assert ours == theirs
  assert [name for name, _ in ours[1]] == ["mul", "add"] * 4


def _compiled_step(tx, params):
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  state = tx.init(params)
  return jax.jit(step, donate_argnums=(0, 1)).lower(params, state, params).compile()


@pytest.mark.parametrize(
  "scaling, expected", [("none", "identical"), ("fan_avg", "identical but for constants")]
)
def test_compiled_step_is_the_program_of_add_decayed_weights(scaling, expected):
  bench = _benchmark_module("programs")
  params = _params()
  adam = optax.adam(1e-3)
  ours = _compiled_step(optax.chain(ll2.layer_l2(1e-4, scaling), adam), params)
  theirs = _compiled_step(optax.chain(optax.add_decayed_weights(1e-4, _mask(params)), adam), params)
  assert bench.same_program(bench.program_text(ours), bench.program_text(theirs)) == expected
  ours_memory, theirs_memory = ours.memory_analysis(), theirs.memory_analysis()
  if ours_memory is None:
    pytest.skip("this backend reports no memory analysis")
  peak_bytes = _benchmark_module("peak_memory").peak_bytes
  assert peak_bytes(ours_memory) == peak_bytes(theirs_memory)


def test_compiled_layer_adamw_is_the_program_of_adamw():
  bench = _benchmark_module("programs")
  params = _params()
  ours = _compiled_step(ll2.layer_adamw(1e-3, 1e-4, "fan_avg"), params)
  theirs = _compiled_step(optax.adamw(1e-3, weight_decay=1e-4, mask=_mask(params)), params)
  assert bench.program_text(ours) != bench.program_text(theirs)  # the factors differ
  assert bench.same_program(bench.program_text(ours), bench.program_text(theirs)) == (
    "identical but for constants"
  )


def test_program_comparison_sees_a_real_difference():
  bench = _benchmark_module("programs")
  params = _params()
  adam = optax.adam(1e-3)
  plain = _compiled_step(adam, params)
  decayed = _compiled_step(
    optax.chain(optax.add_decayed_weights(1e-4, _mask(params)), adam), params
  )
  assert bench.same_program(bench.program_text(plain), bench.program_text(decayed)) == "differs"


def test_scales_are_computed_once_per_trace_not_per_step():
  params = _params()
  calls = []

  def scaling(info):
    calls.append(info.path)
    return 1.0

  tx = optax.chain(ll2.layer_l2(1e-4, scaling), optax.adam(1e-3))
  step = jax.jit(lambda p, s, g: tx.update(g, s, p))
  state = tx.init(params)
  for _ in range(3):
    _, state = step(params, state, params)
  assert sorted(calls) == [f"dense_{i}/kernel" for i in range(4)]
