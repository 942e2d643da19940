"""The documentation: the site builds without a single warning (``sphinx-build -W``), and every
tutorial's code runs as written, on the CPU, each page in a fresh process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
#: Pages whose code must run: every tutorial, the extension guide, the migration guides.
PAGES = sorted((DOCS / "tutorials").glob("*.rst")) + sorted(
    p for p in DOCS.glob("*.rst") if p.name not in ("index.rst", "api.rst")
)
#: What a page needs beyond the test extra's packages.
NEEDS = {
    "blackbox_cem.rst": ("onnx", "onnxruntime"),
    "onnx_attribution.rst": ("onnx", "onnxruntime"),
}


def python_blocks(text: str) -> list[str]:
    """The ``.. code-block:: python`` blocks of a reStructuredText page, dedented, in order."""
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if re.match(r"^\.\. code-block:: python\s*$", lines[i]):
            i += 1
            body: list[str] = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("    ")):
                body.append(lines[i][4:])
                i += 1
            blocks.append("\n".join(body).strip("\n"))
        else:
            i += 1
    return blocks


def test_every_tutorial_has_code_and_no_bare_literal_python() -> None:
    for page in PAGES:
        text = page.read_text()
        assert python_blocks(text), page.name
        # Python shown as a bare ``::`` literal block would escape this test.
        assert not re.search(r"::\n\n    (import|from) ", text), page.name


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One weights cache for every page: the demo's networks train once."""
    return tmp_path_factory.mktemp("cache")


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_tutorial_code_runs_as_written(page: Path, cache: Path, tmp_path: Path) -> None:
    for module in NEEDS.get(page.name, ()):
        pytest.importorskip(module)
    blocks = python_blocks(page.read_text())
    env = {**os.environ, "XDG_CACHE_HOME": str(cache), "MPLBACKEND": "Agg",
           "PYTHONWARNINGS": "ignore"}  # fmt: skip
    scripts = [b for b in blocks if b.startswith("# file: ")]
    if scripts:  # a script the page asks to save and run (e.g. a DDP one)
        for script in scripts:
            name = script.splitlines()[0].removeprefix("# file: ").strip()
            (tmp_path / name).write_text(script)
            command = [sys.executable, name]
            done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True,
                                  text=True, timeout=600)  # fmt: skip
            assert done.returncode == 0, done.stderr[-3000:]
        return
    (tmp_path / "page.py").write_text("\n\n".join(blocks))
    done = subprocess.run([sys.executable, "page.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


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
