"""The README's quick start runs as written."""

import contextlib
import io
import pathlib
import re

import numpy as np

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_quick_start_runs_and_decays_the_kernel_only():
  code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
  namespace = {}
  printed = io.StringIO()
  with contextlib.redirect_stdout(printed):
    exec(compile(code, str(README), "exec"), namespace)
  params = namespace["params"]
  # One Adam step on the decay alone, g = 1e-4 * s * 1: a step of lr * g / (|g| + eps).
  g = 1e-4 * (40 + 256) / (40 * 256)
  np.testing.assert_allclose(params["hidden"]["kernel"], 1.0 - 1e-3 * g / (g + 1e-8), rtol=1e-6)
  np.testing.assert_array_equal(params["hidden"]["bias"], 0.0)
  assert "hidden/kernel  (40, 256)      40      256  0.02891  2.891e-06" in printed.getvalue()
