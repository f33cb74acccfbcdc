"""Sphinx configuration: the API reference from the docstrings, and the Markdown pages.

Sphinx with autodoc, because the docstrings are reStructuredText already (double
backquotes, ``:meth:`` roles) and because it is what the libraries we model ourselves
on use (trio, attrs, CPython).  MyST reads the Markdown pages (README, contract,
semantics, architecture, proactor, reliability) as they are.  ``make docs`` builds with
warnings as errors.
"""

from __future__ import annotations

import sys
from pathlib import Path

import wsp_async

sys.path.insert(0, str(Path(__file__).parent))
from apipages import write_pages

write_pages(Path(__file__).parent / "api")

project = "wsp_async"
author = "the wsp_async developers"
release = version = wsp_async.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "myst_parser"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
myst_heading_anchors = 3

autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# The signatures show the library's own annotations; names from asyncio or attrs that
# Sphinx cannot cross-reference are not an error of the reference.
nitpicky = False

html_theme = "alabaster"
html_title = f"wsp_async {release}"
