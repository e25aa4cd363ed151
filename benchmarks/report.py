"""The Markdown report of a run: every measurement, section by section."""

import datetime
import time

import jax

import optax_layer_l2 as ll2
from benchmarks.budgets import Verdicts
from benchmarks.compile_time import measure_compile
from benchmarks.learning_rate import measure_rates, mlp_base, rates_section, transformer_base
from benchmarks.machine import load, machine
from benchmarks.models import Model, many_leaves, mlp
from benchmarks.optimizer_state import state_section
from benchmarks.optimizers import train_optimizers
from benchmarks.peak_memory import memory_section
from benchmarks.progress import log
from benchmarks.settings import LEARNING_RATE, WEIGHT_DECAY, Settings
from benchmarks.toward_reference import measure_reference, reference_section
from benchmarks.train_step import measure_steps, noise_note, step_section
from benchmarks.transformer import transformer
from benchmarks.update_alone import measure_update

COMMAND = "python -m benchmarks.step_time"

MANY_LEAF_SCALINGS = ("none", "fan_avg")
"""The scalings timed on the many-leaf model (all are timed on the MLP)."""

TRANSFORMER_SCALINGS = ("fan_avg",)
"""The scalings timed on the Transformer: the default."""


def made_by(command: str, minutes: float, settings: Settings, quick: bool) -> str:
  """The report's first paragraph: how it was made and how its numbers were taken."""
  today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
  return (
    f"Made by `{command}` on {today} in {minutes:.1f} minutes"
    + (" (a smoke run on small models: the numbers mean little)." if quick else ".")
    + " Regenerate it with that command. Times are medians over rounds in which each "
    "program ran once, in an order rotating from round to round; a ratio is the median "
    "of the ratios within each round, with a 95% confidence interval of that median in "
    "brackets (two order statistics: no assumption on the distribution). Every program is "
    "compiled ahead of time and run twice before it is timed, and takes and donates its "
    "parameters and optimizer state as a training loop does. "
    + (
      f"Each timed program is compiled {settings.copies} times, in the order A B C then "
      "C B A, and its copies take turns from round to round: XLA on CPU runs a program "
      "that a process compiled later slower than an earlier copy of the very same "
      "program (by up to 20% for the 1,000-leaf programs, on this machine), which would "
      "otherwise count against whichever program was compiled last."
      if settings.copies > 1
      else "Each timed program is compiled once."
    )
  )


def report(settings: Settings, quick: bool) -> str:
  """Runs every measurement under ``settings`` and returns the report as Markdown."""
  load_before = load()
  backend = jax.default_backend()
  verdicts = Verdicts(backend)
  started = time.perf_counter()
  models = [
    mlp(settings.mlp_width, settings.mlp_depth, settings.batch),
    many_leaves(settings.heads, settings.batch),
  ]
  model_of_record = transformer(settings.transformer)

  # Every scaling lowers to the same program with other constants (the tests
  # check this); on the many-leaf model, whose steps take long to compile, two
  # of them stand for all, and on the Transformer the default one does.
  steps = [
    (models[0], tuple(ll2.SCALINGS), settings.step_rounds),
    (models[1], MANY_LEAF_SCALINGS, settings.step_rounds),
    (model_of_record, TRANSFORMER_SCALINGS, settings.transformer_rounds),
  ]
  step_results = []
  for model, scalings, rounds in steps:
    log(f"[1/7] train step: {model.title}")
    optimizers = train_optimizers(model.mask(), scalings)
    step_results.append(measure_steps(model, optimizers, settings, rounds))
  log("[2/7] update alone")
  update_tables = []
  for model in models:
    log(f"  {model.title}")
    update_tables.append(measure_update(model, settings, verdicts))
  log("[3/7] trace and compile")
  compile_table = measure_compile(settings, verdicts)
  log("[4/7] optimizer state")
  state_table = state_section(models[1], verdicts)
  log("[5/7] peak memory")
  step_tables = [step_section(result, verdicts) for result in step_results]
  memory_tables = [memory_section(result, verdicts) for result in step_results]
  reference = reference_part(models[0], settings, verdicts, "[6/7] ")
  rates = rates_part(models[0], model_of_record, settings, verdicts, "[7/7] ")
  minutes = (time.perf_counter() - started) / 60

  sections = [
    "# Performance",
    made_by(COMMAND + (" --quick" if quick else ""), minutes, settings, quick),
    "## Machine",
    machine(load_before),
    noise_note(step_results),
    "## Budgets",
    "From the SPEC, each checked on every row it applies to below; the worst row is shown. "
    "A median that misses its budget while its 95% interval still reaches the limit is "
    "marked within noise: this run could not tell it from a pass.",
    verdicts.summary(),
    "## 1. Train step",
    f"A jitted step: loss and gradient, `update`, `apply_updates`. `weight_decay={WEIGHT_DECAY}`, "
    f"`learning_rate={LEARNING_RATE}`; `add_decayed_weights` and `adamw` get the mask that "
    "`layer_l2` uses by default (kernels and embeddings, not biases or norm parameters). All "
    "optimizers train the same arrays in turn. Every scaling lowers to the same program, one "
    "multiply and one add per decayed leaf, with other constants (the tests check this), so "
    "on the many-leaf model, whose steps take XLA long to compile, `none` and `fan_avg` stand "
    f"for all {len(ll2.SCALINGS)}, and on the Transformer the default, `fan_avg`, does.",
    "The last two columns compare each step's program with that of `add_decayed_weights` + "
    "`adam` (of `adamw`, for `layer_adamw`) as graphs of operations, blind to the names, "
    "order and metadata of instructions and to whether a fusion's constant is inside it or "
    "passed to it: as JAX lowered it, before XLA optimizes it, which is the same on every "
    "backend; and as XLA compiled it for this one. XLA:CPU compiles these programs alike "
    "but for constants; another backend's compiler need not (on a GPU, a factor that is one "
    "constant for every leaf can be fused or shared otherwise than one that differs from "
    "leaf to leaf), so there a compiled program that differs is reported but not counted as "
    "a miss: the lowered programs are the same, and the times are what show a cost.",
    "What a decay costs against plain `adam` is the cost of coupled L2 in XLA, whoever "
    "writes it: the step of `layer_l2` + `adam` is the program of `add_decayed_weights` + "
    "`adam`. XLA on CPU (as of jax 0.10) splits Adam into three loops a leaf: first moment, "
    "second moment, update. A decay added to the gradient is fused into the first two, "
    "which then read the weights too: two more passes over each decayed kernel than plain "
    "Adam's ten, a few percent of a step whose batch of 8 leaves the optimizer most of "
    "the time; the SPEC accepts up to 20% on XLA:CPU, and asks for 1% on a GPU. A "
    "decoupled decay (`adamw`, `layer_adamw`) lands in the third loop, which reads the "
    "weights anyway; compare their `/ adam` column.",
    "The MLP and the many-leaf model take a batch of 8, so that the optimizer, where the "
    "decay lives, is a large share of the step. The Transformer (decoder-only, pre-norm, "
    "causal attention, an MLP of 4 x d_model, learned token and position embeddings, an "
    "untied output head, next-token cross-entropy) takes a batch of whole sequences, as "
    "training does, and shows what the decay costs in a step that matrix products "
    "dominate.",
    *step_tables,
    "## 2. Update alone",
    "`update` + `apply_updates` of the transformation alone, jitted, parameters donated. It "
    "reads the parameters and gradients and writes the parameters, as `p + a * g` over the "
    "same arrays does: that is the roofline, the bytes/s this machine's memory gives.",
    *update_tables,
    "## 3. Trace and compile time",
    "`update` + `apply_updates` of the transformation alone on `leaves / 2` dense layers "
    "(kernel and bias) of small, varied shapes, traced and compiled anew each round. "
    "`scales()` is our own Python work per trace: the per-leaf factors.",
    compile_table,
    "## 4. Optimizer state",
    state_table,
    "## 5. Peak memory",
    "Arguments + outputs - donated outputs + temporaries of the compiled train step of "
    "section 1, from `compiled.memory_analysis()`. The reference of `layer_l2` is "
    "`add_decayed_weights` + `adam`, that of `layer_adamw` is `adamw`.",
    *memory_tables,
    *reference,
    *rates,
  ]
  return "\n\n".join(sections) + "\n"


def reference_part(
  model: Model, settings: Settings, verdicts: Verdicts, step: str = ""
) -> list[str]:
  """Section 6, decay toward a reference, measured on ``model`` (the MLP)."""
  log(f"{step}decay toward a reference: {model.title}")
  return reference_section(measure_reference(model, settings, settings.step_rounds), verdicts)


def rates_part(
  model: Model, transformer_model: Model, settings: Settings, verdicts: Verdicts, step: str = ""
) -> list[str]:
  """Section 7, per-layer learning rates, measured on the MLP and on the Transformer."""
  results = []
  for each, base, rounds in [
    (model, mlp_base(settings), settings.step_rounds),
    (transformer_model, transformer_base(settings), settings.transformer_rounds),
  ]:
    log(f"{step}per-layer learning rates: {each.title}")
    results.append(measure_rates(each, base, settings, rounds))
  return rates_section(results, verdicts)


ALONE = {
  "reference": "decay toward a reference (section 6)",
  "learning_rate": "per-layer learning rates (section 7)",
}
"""The sections that ``--only`` runs alone, by the name it takes."""


def section_report(only: str, settings: Settings, quick: bool) -> str:
  """One section alone (a key of :data:`ALONE`), with the machine and its budgets."""
  load_before = load()
  verdicts = Verdicts(jax.default_backend())
  started = time.perf_counter()
  model = mlp(settings.mlp_width, settings.mlp_depth, settings.batch)
  if only == "reference":
    section = reference_part(model, settings, verdicts)
  elif only == "learning_rate":
    section = rates_part(model, transformer(settings.transformer), settings, verdicts)
  else:
    raise ValueError(f"no section {only!r} to run alone; one of {sorted(ALONE)}")
  minutes = (time.perf_counter() - started) / 60
  command = COMMAND + (" --quick" if quick else "") + f" --only {only}"
  sections = [
    "# Performance",
    made_by(command, minutes, settings, quick),
    "## Machine",
    machine(load_before),
    "## Budgets",
    "The budgets this section is checked against, from the SPEC.",
    verdicts.summary(measured_only=True),
    *section,
  ]
  return "\n\n".join(sections) + "\n"
