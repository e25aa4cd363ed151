"""Shared machinery of the width studies: does a tuned lambda carry over across widths?

Used by ``examples/width_sweep.py`` (ReLU MLPs on MNIST-1D) and by the
Transformer study, ``examples/transformer_width_study.py``: each is one
:class:`width_study.architecture.Architecture`, and everything else is shared.
One concept a module:

* :mod:`width_study.architecture`: the seam, what the driver asks of an
  architecture (its shapes, init, training of one model, metrics, report);
* :mod:`width_study.driver`: the command line, the vmapped programs, the
  studies and their outputs, for any architecture;
* :mod:`width_study.settings`: the settings every study shares (the lambda
  grids and the lattice are made from them), from the defaults, a saved
  ``config.json`` and the command-line flags;
* :mod:`width_study.grid`: the optimizers a lambda study compares (coupled,
  decoupled, unregularised) and where its log-spaced lambda grids lie;
* :mod:`width_study.recipes`: the recipes a joint study compares;
* :mod:`width_study.lattice`: the (learning rate, lambda) lattice of a joint
  study and the search that walks it;
* :mod:`width_study.shared_base`: what each optimizer trains at the base
  width, whose rows are trained once and shared, and the check that they may be;
* :mod:`width_study.runs`: a grid row's results, the loops that train every
  row with a progress bar, and ``runs.csv``;
* :mod:`width_study.optimum`: the optimal lambda of a row and what reusing
  another width's optimum costs;
* :mod:`width_study.transfer`: a joint study's tuned pairs, drift and regret;
* :mod:`width_study.tables`: the tables every study prints;
* :mod:`width_study.plots`: loss curves, the optimal lambda against width, and
  a joint study's planes;
* :mod:`width_study.shares`: how a penalty is shared among groups of leaves;
* :mod:`width_study.layer_balance`: the MLP study's own tables and figure, how
  a ReLU MLP's penalty is shared among its kernels.
"""
