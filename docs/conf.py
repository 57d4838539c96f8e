"""Sphinx configuration: furo + MyST, like attrs, structlog and stamina."""

from __future__ import annotations

project = "retrypolicy"
author = "retrypolicy developers"
copyright = "2026, retrypolicy developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = "retrypolicy"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True
nitpicky = False
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
