"""Sphinx configuration of the lenetish documentation."""

from __future__ import annotations

from importlib.metadata import version as _version

project = "lenetish"
author = "The lenetish developers"
copyright = "2026, The lenetish developers"
release = _version("lenetish")
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
]

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_class_signature = "separated"
autoclass_content = "class"

doctest_global_setup = """
import torch
from lenetish import *
"""

html_theme = "furo"
html_title = f"lenetish {release}"
exclude_patterns = ["_build"]
