"""Sphinx configuration for the optax_layer_l2 documentation.

Build the site with ``sphinx-build -W --keep-going -b html docs docs/_build/html``
and run every example in it with ``sphinx-build -W -b doctest docs docs/_build/doctest``.
"""

import doctest
import os
import sys

# The sharded-mesh recipe runs on four CPU devices. XLA reads this flag when
# JAX first creates its CPU backend, which happens after this file runs.
if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
  ).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

sys.path.insert(0, os.path.abspath(".."))

from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.errors import ExtensionError

import optax_layer_l2

project = "optax_layer_l2"
author = "The optax_layer_l2 authors"
copyright = "the optax_layer_l2 authors"
release = optax_layer_l2.__version__
version = release

extensions = [
  "myst_parser",
  "sphinx.ext.autodoc",
  "sphinx.ext.napoleon",
  "sphinx.ext.doctest",
  "sphinx.ext.mathjax",
  "sphinx.ext.viewcode",
  "sphinx_copybutton",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "README.md"]

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# API reference: Google-style docstrings. Signatures show names and defaults;
# the Args sections say what each argument accepts, in words.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# Attributes of classes as one compact field list, types from the annotations.
napoleon_use_ivar = True
autodoc_typehints = "none"
autodoc_member_order = "bysource"
# Not `autodoc_preserve_defaults`: it replaces the documented functions'
# signatures in place, which `optax.inject_hyperparams` then reads in the
# doctests that follow.
add_module_names = False
python_display_short_literal_types = True

# Doctests: the ``{doctest}`` blocks of the guide and recipes, and the
# ``>>>`` examples of every docstring on the API page.
doctest_test_doctest_blocks = "default"
# As the pytest run of the docstrings, less its NUMBER option, which Sphinx
# lacks: printed floats must match exactly here.
doctest_default_flags = (
  doctest.ELLIPSIS
  | doctest.IGNORE_EXCEPTION_DETAIL
  | doctest.DONT_ACCEPT_TRUE_FOR_1
  | doctest.NORMALIZE_WHITESPACE
)
doctest_global_setup = """
import jax
import jax.numpy as jnp
import optax
import optax_layer_l2 as ll2
"""

html_theme = "sphinx_book_theme"
html_title = f"optax_layer_l2 {release}"
html_theme_options = {
  "home_page_in_toc": True,
  "show_toc_level": 2,
  "navigation_with_keys": False,
  # The sidebar has the search field; no second one in a top bar.
  "navbar_persistent": [],
}
copybutton_prompt_text = r">>> |\.\.\. "
copybutton_prompt_is_regexp = True


def check_public_names_documented(app: Sphinx, env: BuildEnvironment) -> None:
  """Fails the build when a name in ``optax_layer_l2.__all__`` has no reference entry."""
  del app
  documented = env.get_domain("py").objects
  missing = [name for name in optax_layer_l2.__all__ if f"optax_layer_l2.{name}" not in documented]
  if missing:
    raise ExtensionError(
      "these names in `optax_layer_l2.__all__` have no entry in the API reference "
      f"(docs/api.md): {', '.join(missing)}. Add an autodoc directive for each."
    )


def setup(app: Sphinx) -> None:
  app.connect("env-check-consistency", check_public_names_documented)
