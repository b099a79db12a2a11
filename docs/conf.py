"""Sphinx configuration for the mcem documentation."""

import os
import sys

# autodoc imports mcem from the repository root, without installing it.
sys.path.insert(0, os.path.abspath(".."))

import mcem  # noqa: E402

project = "mcem"
author = "The mcem developers"
copyright = "The mcem developers"
version = release = mcem.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "README.md", "Thumbs.db", ".DS_Store"]

# MyST: LaTeX with $...$, $$...$$ (labels allowed) and amsmath environments.
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

# autodoc / napoleon: numpy-style docstrings, signatures without type hints clutter.
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_default_options = {"undoc-members": False}

nitpicky = False

html_theme = "alabaster"
html_theme_options = {
    "description": "Maximum likelihood in latent-variable models by Monte Carlo EM",
    "fixed_sidebar": True,
}
html_title = f"mcem {release}"


# Docstrings are written as plain text first and reStructuredText second: absolute values such as
# "|X|" or "log |d theta / d u|" read as reST substitution references, which do not exist and
# fail the build. Escape the bars of such spans (outside ``inline literals``) before parsing.
import re  # noqa: E402

_SUBST = re.compile(r"(?<![\\|])\|(?=\S)([^|`]*?\S)\|(?![_|])")
_LITERAL = re.compile(r"(``.*?``)")


def _escape_bars(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        parts = _LITERAL.split(line)
        parts = [p if p.startswith("``") else _SUBST.sub(r"\\|\1\\|", p) for p in parts]
        lines[i] = "".join(parts)


def setup(app):
    app.connect("autodoc-process-docstring", _escape_bars)
