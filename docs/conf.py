"""Sphinx configuration of foxcem's documentation (``sphinx-build -W -b html docs build``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from foxcem import __version__  # noqa: E402

project = "foxcem"
author = "the foxcem developers"
copyright = "the foxcem developers, Apache-2.0"
release = version = __version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_mock_imports: list[str] = []
napoleon_google_docstring = True
napoleon_numpy_docstring = False
exclude_patterns = ["build", "_build"]
html_theme = "alabaster"
html_static_path: list[str] = []
# Type hints name torch and Captum classes that this site does not document.
nitpicky = False
suppress_warnings = ["ref.python"]


def _escape_shape_stars(app, what, name, obj, options, lines):  # noqa: ANN001
    """Shapes such as ``(*L, n, …)`` in prose read as reST emphasis; escape their stars."""
    import re

    for i, line in enumerate(lines):
        parts = line.split("``")  # leave literals alone: every odd part is inside ``…``
        parts[::2] = [re.sub(r"(?<=[(,\s])\*(?=[A-Za-z])", r"\\*", p) for p in parts[::2]]
        lines[i] = "``".join(parts)


def setup(app):  # noqa: ANN001
    app.connect("autodoc-process-docstring", _escape_shape_stars)
