"""What ``layer_l2`` costs, measured beside what a user would use instead.

Run it from the repository root::

  python -m benchmarks.step_time            # the full run, written to docs/performance.md
  python -m benchmarks.step_time --quick    # a smoke run on small models
  python -m benchmarks.step_time --only reference  # one section alone
  python -m benchmarks.step_time --only learning_rate

Each part lives in the module named for it:

* ``step_time``: the command line;
* ``report``: the Markdown report, section by section;
* ``settings``: the sizes and repeats of a full and of a quick run;
* ``models``: the MLP and the many-leaf model; ``transformer``: a decoder-only
  Transformer;
* ``optimizers``: the optimizers compared, and their names in the tables;
* ``training``: one set of parameters and Adam moments that every optimizer
  trains in turn;
* ``timing``: interleaved timing of compiled programs;
* ``spread``: medians, ratios and their confidence intervals;
* ``programs``: whether two programs are the same but for their constants,
  compared as graphs of operations, blind to names, order and metadata;
* ``budgets``: the SPEC's limits and the verdicts against them;
* one module a measurement: ``train_step``, ``update_alone``, ``compile_time``,
  ``optimizer_state``, ``peak_memory``, ``toward_reference`` (a decay
  toward a reference: its train step and its state), and ``learning_rate``
  (per-layer learning rates: the train step with and without them);
* ``machine``: the machine the numbers were measured on;
* ``markdown`` and ``progress``: tables, and progress on stderr.
"""
