"""Sphinx configuration for the optax_l1 documentation.

Build (from the repository root, after ``pip install -e ".[docs]"``)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

and run every code block of the pages (guides and docstrings) as doctests::

    sphinx-build -W --keep-going -b doctest docs docs/_build/doctest

Nothing is fetched from the network at build time: math is rendered in the
browser by MathJax, and there is no intersphinx.
"""

from __future__ import annotations

import doctest
import os
import re
import sys

# Doctests and autodoc run on the CPU, quietly, whatever the machine has.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# The package is normally installed (pip install -e ".[docs]"); a plain
# checkout works too.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import optax_l1  # noqa: E402  (after the environment is set)

project = "optax_l1"
author = "optax_l1 developers"
copyright = "optax_l1 developers"  # pylint: disable=redefined-builtin
release = optax_l1.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.doctest",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# -- autodoc / autosummary / napoleon ---------------------------------------
autosummary_generate = False  # the API pages list every entry by hand
autodoc_member_order = "bysource"
# Signatures show the parameters' names and defaults as written in the
# source; the types are in each entry's Args / Returns.
autodoc_typehints = "none"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_custom_sections = [("References", "notes_style")]

# -- MyST (guides in Markdown) ----------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# -- doctest -----------------------------------------------------------------
# The docstrings' examples are written for pytest's doctest flags
# (pyproject.toml: NORMALIZE_WHITESPACE and NUMBER). Sphinx's doctest builder
# knows no NUMBER, so the same rule is implemented here: a float in the
# expected output matches the actual one to the precision it is written
# with (``0.2`` matches ``0.20000002``, ``0.`` matches ``-0.``).
NUMBER = doctest.register_optionflag("NUMBER")  # pytest's flag, if registered

_FLOAT = re.compile(r"""
    (?<![\w.])[+-]?
    (?: (?P<int>\d+)\.(?P<frac>\d*) | \.(?P<frac2>\d+) | (?P<int2>\d+)(?=[eE]) )
    (?: [eE](?P<exp>[+-]?\d+) )?
    (?![\w.])""", re.VERBOSE)


class NumberOutputChecker(doctest.OutputChecker):
  """``doctest.OutputChecker`` with pytest's ``NUMBER`` option."""

  def check_output(self, want: str, got: str, optionflags: int) -> bool:
    if super().check_output(want, got, optionflags):
      return True
    if not optionflags & NUMBER:
      return False
    wants, gots = list(_FLOAT.finditer(want)), list(_FLOAT.finditer(got))
    if len(wants) != len(gots):
      return False
    pieces, last = [], 0
    for w, g in zip(wants, gots):
      frac = w.group("frac") if w.group("frac") is not None else (
          w.group("frac2") or "")
      precision = len(frac) - int(w.group("exp") or 0)
      if abs(float(w.group()) - float(g.group())) > max(
          10.0 ** -precision, 1e-6 * abs(float(w.group()))):
        return False
      pieces.append(got[last:g.start()] + w.group())
      last = g.end()
    return super().check_output(want, "".join(pieces) + got[last:],
                                optionflags)


doctest_default_flags = (doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
                         | doctest.IGNORE_EXCEPTION_DETAIL
                         | doctest.DONT_ACCEPT_TRUE_FOR_1 | NUMBER)
# No global setup: every example imports what it uses, as a reader would.

# -- HTML ----------------------------------------------------------------------
html_theme = "alabaster"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_title = f"optax_l1 {release}"
html_theme_options = {
    "description": "Exact zeros for JAX neural networks: proximal L1, group "
                   "lasso and pruning masks as optax transformations.",
    "fixed_sidebar": True,
    "page_width": "1180px",
    "sidebar_width": "250px",
}
html_sidebars = {"**": ["about.html", "navigation.html", "searchbox.html"]}


def setup(app):
  """Makes the doctest builder use :class:`NumberOutputChecker`."""
  from sphinx.ext import doctest as sphinx_doctest  # pylint: disable=g-import-not-at-top

  runner = sphinx_doctest.SphinxDocTestRunner
  if not getattr(runner, "_optax_l1_number", False):
    init = runner.__init__

    def __init__(self, *args, checker=None, **kwargs):
      init(self, *args, checker=checker or NumberOutputChecker(), **kwargs)

    runner.__init__ = __init__
    runner._optax_l1_number = True  # pylint: disable=protected-access
  return {"parallel_read_safe": True, "parallel_write_safe": True}
