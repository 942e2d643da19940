"""The documentation site builds without a single warning (``sphinx-build -W``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.slow
def test_docs_build_warning_free(tmp_path: Path) -> None:
    pytest.importorskip("sphinx")
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS),
         str(tmp_path / "html")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    pages = {p.name for p in (tmp_path / "html").rglob("*.html")}
    for page in ("index.html", "api.html", "extending.html", "blackbox_cem.html"):
        assert page in pages, page
    api = (tmp_path / "html" / "api.html").read_text()
    assert "URVGradientEstimator" in api and "visualize_image_attr" in api
