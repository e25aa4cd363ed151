"""Shared machinery of the width studies: does a tuned lambda carry over across widths?

Used by ``examples/width_sweep.py`` (ReLU MLPs on MNIST-1D) and by the
Transformer study. One concept a module:

* :mod:`width_study.grid`: the optimizers compared (coupled, decoupled,
  unregularised) and the log-spaced lambda grids;
* :mod:`width_study.runs`: a grid row's results, the driver that trains every
  row with a progress bar, and ``runs.csv``;
* :mod:`width_study.optimum`: the optimal lambda of a row and what reusing
  another width's optimum costs;
* :mod:`width_study.tables`: the transfer tables every study prints;
* :mod:`width_study.plots`: loss curves and the optimal lambda against width.
* :mod:`width_study.settings`: a study's settings from its defaults, a saved
  ``config.json`` and the command-line flags.
"""
