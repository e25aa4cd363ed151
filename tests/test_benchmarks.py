"""The benchmark script runs, and the budgets that need no clock hold exactly.

Timings are never asserted here: ``python -m benchmarks.step_time`` measures them and
``docs/performance.md`` reports them. What can be checked exactly is: the
script's smoke run and its table; the state it keeps, and with
``reference="init"`` exactly one copy of the decayed leaves; that the program it
lowers, on any backend, and compiles, on the CPU, is the one
``optax.add_decayed_weights`` gives, with other constants, and toward a
reference that one with one more array read and subtracted per decayed leaf;
that a step with per-layer learning rates is the step without them and one
multiply per leaf whose factor is not 1;
that the program comparison sees through names, order and metadata but not
through a change of operation; and that its Python work is done once per
trace, not per step.
"""

import functools
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
  "## 6. Decay toward a reference",
  "## 7. Per-layer learning rates",
]
BUDGET_ROWS = 18
ON_CPU = jax.default_backend() == "cpu"


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


def _step_time(*args, cwd, timeout=600):
  """``python -m benchmarks.step_time --quick *args`` run in ``cwd``, the repository importable."""
  return subprocess.run(
    [sys.executable, "-m", "benchmarks.step_time", "--quick", *args],
    capture_output=True,
    text=True,
    timeout=timeout,
    check=False,
    cwd=cwd,
    env={
      **os.environ,
      "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    },
  )


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
  output = tmp_path_factory.mktemp("bench") / "nested" / "performance.md"
  return _step_time("--output", str(output), cwd=output.parents[1], timeout=900), output


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
  # Sections 1, 2 and 5 have one table per model: the MLP and the many-leaf one;
  # sections 1, 5 and 7 one for the Transformer, and section 7 one for the MLP.
  assert sum(h.startswith("### MLP") for h in headings) == 4
  assert sum("regression heads" in h for h in headings) == 3
  assert sum(h.startswith("### Transformer") for h in headings) == 3


@pytest.mark.slow
def test_quick_run_tables_are_well_formed(quick_run):
  result, _ = quick_run
  tables = _tables(result.stdout)
  # machine, budgets, 3 x step, 2 x update, compile, state, 3 x memory, reference step and
  # state, 2 x learning-rate step
  assert len(tables) == 16
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
  not_applicable = r"n/a on this backend \(\w+\) for \d+: [^|]+"
  verdict = rf"(PASS|MISS) \(\d+/\d+ pass(; every miss within noise)?\)(; {not_applicable})?"
  for row in rows:
    assert re.fullmatch(f"{verdict}|{not_applicable}", row[3]), row
  # The budgets that need no clock hold in any run; a compiled program that
  # differs is a miss on the CPU only.
  exact = {row[0]: row for row in rows if re.search("state|Peak memory|Lowered|Compiled", row[0])}
  assert len(exact) == 8
  for what, row in exact.items():
    if what.startswith("Compiled") and not ON_CPU:
      assert not row[3].startswith("MISS"), row
    else:
      assert row[3].startswith("PASS") and "n/a" not in row[3], row


@pytest.mark.slow
def test_quick_run_times_a_transformer_against_each_reference(quick_run):
  result, _ = quick_run
  section = result.stdout.split("## 1. Train step", 1)[1].split("## 2.", 1)[0]
  table = _tables(section.split("### Transformer", 1)[1])[0]
  rows = {row[0]: row for row in table[2:]}
  assert set(rows) == {
    "`adam`",
    "`add_decayed_weights` + `adam`",
    "`add_decayed_weights` + `adam`, compiled again (A/A control)",
    '`layer_l2("fan_avg")` + `adam`',
    "`adamw`",
    '`layer_adamw("fan_avg")`',
  }
  ratio = r"\d+\.\d{3} \[\d+\.\d{3}, \d+\.\d{3}\]"
  ours, decoupled = rows['`layer_l2("fan_avg")` + `adam`'], rows['`layer_adamw("fan_avg")`']
  for cell in (ours[3], ours[5], decoupled[5]):
    assert re.fullmatch(ratio, cell), cell
  assert re.fullmatch(ratio + r" \(vs `adamw`\)", decoupled[3])
  assert re.fullmatch(r"<= \d\.\d+ (PASS|MISS)", ours[4])
  assert ours[7] == "identical but for constants (== 1 PASS)"
  assert decoupled[7] == "identical but for constants as `adamw`'s (== 1 PASS)"


RATIO = r"\d+\.\d{3} \[\d+\.\d{3}, \d+\.\d{3}\]"
TOWARD_ZERO = '`layer_l2("fan_avg")` + `adam`'
TOWARD_INIT = [f'`layer_l2("{s}", reference="init")` + `adam`' for s in ("none", "fan_avg")]


def _reference_tables(report):
  """The step table and the state table of section 6, each as rows by their first cell."""
  section = report.split("## 6. Decay toward a reference", 1)[1].split("\n## ", 1)[0]
  steps, state = _tables(section)
  return {row[0]: row for row in steps[2:]}, {row[0]: row for row in state[2:]}


@pytest.mark.slow
def test_quick_run_times_decay_toward_a_reference(quick_run):
  result, _ = quick_run
  steps, _ = _reference_tables(result.stdout)
  assert list(steps) == ["`add_decayed_weights` + `adam`", TOWARD_ZERO, *TOWARD_INIT]
  zero = steps[TOWARD_ZERO]
  assert re.fullmatch(RATIO, zero[3]), zero
  assert re.fullmatch(r"<= 1\.02 (PASS|MISS)", zero[4]), zero
  # `reference=None` is still `add_decayed_weights` + `adam`'s program.
  assert zero[5] == "identical but for constants (== 1 PASS)"
  for name in TOWARD_INIT:
    row = steps[name]
    assert re.fullmatch(RATIO, row[3]), row
    assert re.fullmatch(r"<= 1\.05 (PASS|MISS)", row[4]), row
    # The quick MLP has 2 kernels: one more array read, and one subtract, for each.
    assert row[5] == "+2 parameter, +2 subtract (2 decayed leaves)"
  assert steps[TOWARD_INIT[1]][6] == f"identical but for constants as {TOWARD_INIT[0]}'s"


@pytest.mark.slow
def test_quick_run_state_toward_a_reference_is_the_decayed_leaves(quick_run):
  """One copy of the kernels, 2 x 128 x 128 float32, and an int32 count for a schedule."""
  result, _ = quick_run
  _, state = _reference_tables(result.stdout)
  kernels = 2 * 128 * 128 * 4
  rows = {
    '`layer_l2(1e-4, reference="init")`': 0,
    '`layer_l2(schedule, reference="init")`': 4,
  }
  assert list(state) == list(rows)
  for name, count in rows.items():
    decayed, alone, in_chain, beyond = (int(c.replace(",", "")) for c in state[name][1:5])
    assert decayed == kernels
    assert alone == in_chain == kernels + count
    assert beyond == count
    assert state[name][5] == f"== {count} PASS"
  budgets = {row[0]: row for row in _tables(result.stdout.split("## Budgets", 1)[1])[0][2:]}
  for what, row in budgets.items():
    if 'reference="init"' in what:
      assert re.fullmatch(r"(PASS|MISS) \(\d/\d pass(; every miss within noise)?\)", row[3])


@pytest.mark.slow
def test_only_reference_runs_section_6_alone_and_writes_no_file(tmp_path):
  written = (ROOT / "docs" / "performance.md").stat().st_mtime_ns
  result = _step_time("--only", "reference", cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  headings = [line for line in result.stdout.splitlines() if line.startswith("#")]
  assert headings == ["# Performance", "## Machine", "## Budgets", "## 6. Decay toward a reference"]
  assert "`python -m benchmarks.step_time --quick --only reference`" in result.stdout
  budgets = _tables(result.stdout.split("## Budgets", 1)[1])[0][2:]
  # Only the budgets this section measures: none is reported as not measured.
  assert len(budgets) == 6
  assert all(row[1] != "not measured" for row in budgets)
  assert list(tmp_path.iterdir()) == []
  assert (ROOT / "docs" / "performance.md").stat().st_mtime_ns == written


ADAM_RATES = '`scale_by_adam` + `layer_lr("inv_fan_in")` + `scale_by_learning_rate`'
LAYER_ADAMW_NONE = '`layer_adamw("none")`'
LAYER_ADAMW_RATES = '`layer_adamw("none", lr_scaling="inv_fan_in")`'
LAYER_ADAMW_ONES = '`layer_adamw("none", lr_scaling="none")`, every factor 1 (A/A control)'


@pytest.fixture(scope="module")
def rates_run(tmp_path_factory):
  """``--quick --only learning_rate``, run where nothing else is, and what it left there."""
  cwd = tmp_path_factory.mktemp("rates")
  written = (ROOT / "docs" / "performance.md").stat().st_mtime_ns
  result = _step_time("--only", "learning_rate", cwd=cwd)
  left = list(cwd.iterdir())
  return result, left, (ROOT / "docs" / "performance.md").stat().st_mtime_ns == written


def _rate_tables(report):
  """Section 7's sentence on the factors and its step table, by model, rows by first cell."""
  section = report.split("## 7. Per-layer learning rates", 1)[1]
  found = {}
  for part in section.split("\n### ")[1:]:
    model = "MLP" if part.startswith("MLP") else "Transformer"
    (table,) = _tables(part)
    found[model] = part.split("\n\n")[1], {row[0]: row for row in table[2:]}
  return found


@pytest.mark.slow
def test_only_learning_rate_runs_section_7_alone_and_writes_no_file(rates_run):
  result, left, docs_untouched = rates_run
  assert result.returncode == 0, result.stderr[-3000:]
  headings = [line for line in result.stdout.splitlines() if line.startswith("#")]
  assert headings[:4] == [
    "# Performance",
    "## Machine",
    "## Budgets",
    "## 7. Per-layer learning rates",
  ]
  assert [h.split(",")[0] for h in headings[4:]] == ["### MLP", "### Transformer"]
  assert "`python -m benchmarks.step_time --quick --only learning_rate`" in result.stdout
  budgets = _tables(result.stdout.split("## Budgets", 1)[1])[0][2:]
  # Only the two budgets this section measures, on 3 rows of each of 2 models.
  assert [row[0].split(" /")[0].split(":")[0] for row in budgets] == [
    "Train step with `layer_lr`",
    "Lowered train step with `layer_lr`",
  ]
  assert re.fullmatch(r"\d+\.\d{3} \(worst of 6\)", budgets[0][1])
  assert re.fullmatch(r"(PASS|MISS) \(\d/6 pass(; every miss within noise)?\)", budgets[0][3])
  assert budgets[1][1:] == ["1 (worst of 6)", "== 1", "PASS (6/6 pass)"]
  assert left == []
  assert docs_untouched


@pytest.mark.slow
@pytest.mark.parametrize("run", ["quick_run", "rates_run"])
@pytest.mark.parametrize(
  "model, factors, scaled",
  [
    # The quick MLP's input has the width too: both kernels' fan-in halves.
    ("MLP", "selects 2 leaves of 4: 2 at r = 0.5.", 2),
    # Of the Transformer's 9 kernels and embeddings, the embeddings' fan-in (vocabulary,
    # context) is the base's: factor 1, no multiply.
    ("Transformer", "selects 9 leaves of 17: 7 at r = 0.5, 2 at r = 1.", 7),
  ],
)
def test_quick_run_times_per_layer_learning_rates(request, run, model, factors, scaled):
  result = request.getfixturevalue(run)[0]
  assert result.returncode == 0, result.stderr[-3000:]
  sentence, rows = _rate_tables(result.stdout)[model]
  assert sentence.endswith(factors), sentence
  assert list(rows) == ["`adam`", ADAM_RATES, LAYER_ADAMW_NONE, LAYER_ADAMW_RATES, LAYER_ADAMW_ONES]
  for name in ("`adam`", LAYER_ADAMW_NONE):
    assert rows[name][3:] == ["", "", "", ""]
  # One multiply per leaf whose factor is not 1, and the constants that carry the factors.
  one_multiply_each = (
    rf"(\+\d+ broadcast, )?(\+\d+ constant, )?\+{scaled} multiply, for {scaled} scaled leaves"
  )
  for name, without in [
    (ADAM_RATES, "`adam`"),
    (LAYER_ADAMW_RATES, LAYER_ADAMW_NONE),
    (LAYER_ADAMW_ONES, LAYER_ADAMW_NONE),
  ]:
    row = rows[name]
    assert re.fullmatch(rf"{RATIO} \(vs {re.escape(without)}\)", row[3]), row
    assert re.fullmatch(r"<= 1\.02 (PASS|MISS)", row[4]), row
    if name != LAYER_ADAMW_ONES:
      assert re.fullmatch(rf"{one_multiply_each} \(== 1 PASS\)", row[5]), row
  # Every factor 1: not one operation more, lowered or compiled.
  assert rows[LAYER_ADAMW_ONES][5] == "identical, no leaf scaled (== 1 PASS)"
  assert rows[LAYER_ADAMW_ONES][6] == "identical"


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


@pytest.mark.parametrize("weight_decay, count", [(1e-4, 0), (optax.constant_schedule(1e-4), 4)])
def test_state_toward_a_reference_is_one_copy_of_the_decayed_leaves(weight_decay, count):
  params = _params()
  kernels = sum(16 * (8 + 3 * i) * 4 for i in range(4))  # float32 kernels; biases, norm not decayed
  assert _benchmark_module("toward_reference").decayed_bytes(params, _mask(params)) == kernels
  state_bytes = _benchmark_module("optimizer_state").state_bytes
  tx = ll2.layer_l2(weight_decay, reference="init")
  assert state_bytes(tx, params) == kernels + count
  adam = optax.adam(1e-3)
  assert state_bytes(optax.chain(tx, adam), params) - state_bytes(adam, params) == kernels + count


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


def _lowered_step(tx, params, platform=None):
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  state = tx.init(params)
  traced = jax.jit(step, donate_argnums=(0, 1)).trace(params, state, params)
  return traced.lower(lowering_platforms=None if platform is None else (platform,))


@functools.cache
def _steps(platform=None):
  """``layer_l2`` + adam, ``add_decayed_weights`` + adam, plain adam, ``layer_adamw``, ``adamw``."""
  params = _params()
  adam = optax.adam(1e-3)
  txs = {
    "none": optax.chain(ll2.layer_l2(1e-4, "none"), adam),
    "fan_avg": optax.chain(ll2.layer_l2(1e-4, "fan_avg"), adam),
    "decayed": optax.chain(optax.add_decayed_weights(1e-4, _mask(params)), adam),
    "adam": adam,
    "layer_adamw": ll2.layer_adamw(1e-3, 1e-4, "fan_avg"),
    "adamw": optax.adamw(1e-3, weight_decay=1e-4, mask=_mask(params)),
    "fan_avg_toward_zero": optax.chain(ll2.layer_l2(1e-4, "fan_avg", reference=None), adam),
    "none_toward_init": optax.chain(ll2.layer_l2(1e-4, "none", reference="init"), adam),
    "fan_avg_toward_init": optax.chain(ll2.layer_l2(1e-4, "fan_avg", reference="init"), adam),
  }
  return {name: _lowered_step(tx, params, platform) for name, tx in txs.items()}


@functools.cache
def _compiled_steps():
  return {name: lowered.compile() for name, lowered in _steps().items()}


SAME = [
  ("none", "decayed", "identical"),
  ("fan_avg", "decayed", "identical but for constants"),
  ("layer_adamw", "adamw", "identical but for constants"),
  ("adam", "decayed", "differs"),
  ("adamw", "decayed", "differs"),
  ("fan_avg_toward_zero", "decayed", "identical but for constants"),
  ("fan_avg_toward_init", "none_toward_init", "identical but for constants"),
  ("none_toward_init", "decayed", "differs"),
]


@pytest.mark.parametrize("platform", ["cpu", "cuda"])
def test_lowered_step_is_the_program_of_the_reference_on_every_platform(platform):
  """Lowering needs no device: the CUDA program is checked on any machine."""
  bench = _benchmark_module("programs")
  steps = _steps(platform)
  texts = {name: bench.lowered_text(lowered) for name, lowered in steps.items()}
  found = [
    (ours, theirs, bench.same_program(texts[ours], texts[theirs])) for ours, theirs, _ in SAME
  ]
  assert found == SAME


@pytest.mark.skipif(
  not ON_CPU,
  reason="XLA:CPU compiles programs that differ only in constants into the same program; "
  "other backends' compilers need not (on a GPU a factor that is one constant for every "
  "leaf can be fused or shared otherwise than one per leaf), so there the lowered "
  "programs, the same on every backend, are compared instead",
)
def test_compiled_step_is_the_program_of_the_reference_on_the_cpu():
  bench = _benchmark_module("programs")
  texts = {name: bench.compiled_text(compiled) for name, compiled in _compiled_steps().items()}
  assert texts["fan_avg"] != texts["decayed"]  # the factors differ
  found = [
    (ours, theirs, bench.same_program(texts[ours], texts[theirs])) for ours, theirs, _ in SAME
  ]
  assert found == SAME


@pytest.mark.parametrize(
  "ours, expected",
  [
    ("fan_avg_toward_zero", {}),
    ("none_toward_init", {"parameter": 4, "subtract": 4}),
    ("fan_avg_toward_init", {"parameter": 4, "subtract": 4}),
  ],
)
def test_lowered_step_toward_a_reference_reads_and_subtracts_it_once_per_decayed_leaf(
  ours, expected
):
  bench = _benchmark_module("programs")
  texts = {name: bench.lowered_text(lowered) for name, lowered in _steps().items()}
  assert bench.operations_beyond(texts[ours], texts["decayed"]) == expected
  assert bench.operations_beyond(texts["decayed"], texts[ours]) == {
    opcode: -count for opcode, count in expected.items()
  }


def _narrow_base():
  """The shapes of ``_params()`` with half the fan-in in its first two kernels, not in the others.

  So ``inv_fan_in`` gives the first two kernels a factor of 0.5, and the other two 1.
  """
  base = jax.eval_shape(_params)
  for i in (0, 1):
    kernel = base[f"dense_{i}"]["kernel"]
    base[f"dense_{i}"]["kernel"] = jax.ShapeDtypeStruct((8, kernel.shape[1]), kernel.dtype)
  return base


@functools.cache
def _rate_texts(platform=None):
  """The lowered steps of the optimizers of section 7, on ``_params()`` against the narrow base."""
  optimizers = _benchmark_module("optimizers")
  txs = {
    **optimizers.rate_optimizers(_narrow_base()),
    "base of the same shapes": optax.chain(
      optax.scale_by_adam(),
      ll2.layer_lr("inv_fan_in", base=jax.eval_shape(_params)),
      optax.scale_by_learning_rate(1e-4),
    ),
  }
  lowered_text = _benchmark_module("programs").lowered_text
  return {name: lowered_text(_lowered_step(tx, _params(), platform)) for name, tx in txs.items()}


def test_section_7_counts_the_factors_of_each_selected_leaf():
  factors = _benchmark_module("learning_rate").Factors.of(_params(), _narrow_base())
  assert factors.counts == {0.5: 2, 1.0: 2}  # the kernels; not the biases or the norm scale
  assert (factors.selected, factors.scaled) == (4, 2)
  assert factors.text() == "2 at r = 0.5, 2 at r = 1"


@pytest.mark.parametrize("platform", ["cpu", "cuda"])
def test_lowered_step_with_layer_lr_adds_one_multiply_per_scaled_leaf(platform):
  """Two kernels of factor 0.5: two multiplies; kernels of factor 1 and biases: nothing."""
  bench = _benchmark_module("learning_rate")
  operations_beyond = _benchmark_module("programs").operations_beyond
  texts = _rate_texts(platform)
  for ours, theirs, scaled in [
    (ADAM_RATES, "`adam`", 2),
    (LAYER_ADAMW_RATES, LAYER_ADAMW_NONE, 2),
    (LAYER_ADAMW_ONES, LAYER_ADAMW_NONE, 0),
    ("base of the same shapes", "`adam`", 0),
  ]:
    assert bench.adds_one_multiply_per_scaled_leaf(texts[ours], texts[theirs], scaled)
    extra = operations_beyond(texts[ours], texts[theirs])
    assert extra.get("multiply", 0) == scaled
    assert set(extra) <= {"broadcast", "constant", "multiply"}
  assert bench.beyond_text(texts[LAYER_ADAMW_ONES], texts[LAYER_ADAMW_NONE]) == "identical"


@pytest.mark.parametrize(
  "ours, theirs, scaled",
  [
    (ADAM_RATES, "`adam`", 1),
    (ADAM_RATES, "`adam`", 3),
    (ADAM_RATES, "`adam`", 0),
    (LAYER_ADAMW_ONES, LAYER_ADAMW_NONE, 2),
    (LAYER_ADAMW_RATES, "`adam`", 2),
    ("`adam`", ADAM_RATES, 2),
  ],
  ids=["too few", "too many", "none expected", "none made", "and a decay", "fewer"],
)
def test_program_check_of_layer_lr_sees_any_other_change(ours, theirs, scaled):
  bench = _benchmark_module("learning_rate")
  texts = _rate_texts()
  assert not bench.adds_one_multiply_per_scaled_leaf(texts[ours], texts[theirs], scaled)


def test_compiled_step_plans_the_memory_of_the_reference():
  peak_bytes = _benchmark_module("peak_memory").peak_bytes
  stats = {name: compiled.memory_analysis() for name, compiled in _compiled_steps().items()}
  if stats["decayed"] is None:
    pytest.skip("this backend reports no memory analysis")
  assert peak_bytes(stats["none"]) == peak_bytes(stats["decayed"])
  assert peak_bytes(stats["fan_avg"]) == peak_bytes(stats["decayed"])
  assert peak_bytes(stats["layer_adamw"]) == peak_bytes(stats["adamw"])


def _module(
  names=("fused_decay", "fused_decay.1", "decay_fusion", "decay_fusion.1"),
  decays=("0.0001", "0.0001"),
  op="add",
  shared=False,
  reordered=False,
  metadata="",
  passed_in=False,
):
  """A small HLO module as XLA prints it: two fusions that decay a gradient each.

  ``names`` name the two fused computations and the two fusions; ``shared``
  makes both fusions call the first computation, as XLA can when the two are
  identical; ``reordered`` prints the computations and the entry's
  independent instructions in another order; ``metadata`` is appended to every
  instruction; ``passed_in`` passes the first decay to both fusions as an
  operand, as XLA does with a constant that several fusions use.
  """
  first, second, fusion, fusion_1 = names
  decay = "%param_2" if passed_in else "%constant.1"

  def computation(name, value):
    return [
      f"%{name} (param_0: f32[4], param_1: f32[4]{', param_2: f32[]' * passed_in}) -> f32[4] {{",
      f"  %param_0 = f32[4]{{0}} parameter(0){metadata}",
      f"  %param_1 = f32[4]{{0}} parameter(1){metadata}",
      "  %param_2 = f32[] parameter(2)"
      if passed_in
      else f"  %constant.1 = f32[] constant({value})",
      f"  %broadcast.1 = f32[4]{{0}} broadcast({decay}), dimensions={{}}{metadata}",
      f"  %multiply.2 = f32[4]{{0}} multiply(%param_1, %broadcast.1){metadata}",
      f"  ROOT %{op}.3 = f32[4]{{0}} {op}(%param_0, %multiply.2){metadata}",
      "}",
    ]

  computations = [computation(first, decays[0])]
  if not shared:
    computations.append(computation(second, decays[1]))
  passed = ", %constant.5" * passed_in
  fusions = [
    f"  %{fusion} = f32[4]{{0}} fusion(%g.1, %p.1{passed}), kind=kLoop, calls=%{first}{metadata}",
    f"  %{fusion_1} = f32[4]{{0}} fusion(%g.2, %p.2{passed}), kind=kLoop, "
    f"calls=%{first if shared else second}{metadata}",
  ]
  if passed_in:
    fusions.insert(0, f"  %constant.5 = f32[] constant({decays[0]})")
  parameters = [
    f"  %{n}.{i} = f32[4]{{0}} parameter({2 * i + k - 2})"
    for i in (1, 2)
    for k, n in enumerate("pg")
  ]
  if reordered:
    computations.reverse()
    fusions.reverse()
    parameters.reverse()
  entry = [
    "ENTRY %main.9 (p.1: f32[4], g.1: f32[4], p.2: f32[4], g.2: f32[4]) -> (f32[4], f32[4]) {",
    *parameters,
    *fusions,
    f"  ROOT %tuple.7 = (f32[4]{{0}}, /*index=1*/f32[4]{{0}}) tuple(%{fusion}, %{fusion_1})",
    "}",
  ]
  header = [
    "HloModule jit_step, is_scheduled=true, entry_computation_layout={(f32[4]{0})->f32[4]{0}}"
  ]
  return "\n\n".join("\n".join(lines) for lines in [header, *computations, entry])


GPU_METADATA = (
  ', metadata={op_name="jit(step)/mul" source_file="x.py" source_line=3}, '
  'backend_config={"operation_queue_id":"0","fusion_backend_config":{"kind":"__loop"}}'
)


@pytest.mark.parametrize(
  "other",
  [
    _module(
      names=("fused_multiply.7", "fused_multiply.8", "loop_add_fusion.2", "loop_add_fusion.5")
    ),
    _module(reordered=True),
    _module(metadata=GPU_METADATA),
    _module(shared=True),
    _module(passed_in=True),
    _module(passed_in=True, shared=True, reordered=True),
  ],
  ids=["numbering", "order", "metadata", "shared computation", "constant passed in", "all"],
)
def test_program_comparison_ignores_incidental_text(other):
  bench = _benchmark_module("programs")
  assert other != _module()
  assert bench.same_program(other, _module()) == "identical"


@pytest.mark.parametrize(
  "other, expected",
  [
    (_module(decays=("0.0001", "2.5e-05")), "identical but for constants"),
    (_module(decays=("2.5e-05", "2.5e-05"), shared=True), "identical but for constants"),
    (_module(decays=("2.5e-05", "0.0001"), passed_in=True), "identical but for constants"),
    (_module(op="subtract"), "differs"),
    (_module(op="subtract", decays=("1", "1"), metadata=GPU_METADATA), "differs"),
    (_module().replace("fusion(%g.1, %p.1)", "fusion(%p.1, %g.1)"), "differs"),
    (_module().replace("fusion(%g.2, %p.2)", "fusion(%g.1, %p.2)"), "differs"),
  ],
  ids=[
    "constant",
    "shared constant",
    "constant passed in",
    "op",
    "op and constants",
    "operand order",
    "wiring",
  ],
)
def test_program_comparison_sees_constants_and_operations(other, expected):
  bench = _benchmark_module("programs")
  assert bench.same_program(other, _module()) == expected


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
