"""The package's structure: layers that import downwards only, no cycles, no private imports
across modules, small modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "foxcem"

#: Each top-level part of the package and the parts it may import (besides itself).
LAYERS: dict[str, set[str]] = {
    "core": set(),
    "attribution": {"core"},
    "cem": {"core"},
    "metrics": {"core"},
    "viz": {"core"},
    "io": {"core"},
    "integrations": {"core", "attribution", "cem", "metrics", "viz", "io"},
    "cli": {"core", "attribution", "cem", "metrics", "viz", "io", "integrations", "demo"},
    "demo": {"core", "attribution", "cem", "metrics", "viz", "io"},
    "compat": {"core", "attribution", "cem"},
}
#: Modules outside the layers: the package root (the public API) and its helpers.
ROOT_MODULES = {"foxcem", "foxcem.__main__", "foxcem._version", "foxcem._compat"}
MAX_LINES = 340


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, name: str) -> list[tuple[str, list[str], int]]:
    """(imported module, imported names, line) for every import, type-checking ones excluded."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skip: set[int] = set()
    for node in ast.walk(tree):  # `if TYPE_CHECKING:` blocks are not imports at run time
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((base, [a.name for a in node.names], node.lineno))
    return found


def _resolve(target: str, names: list[str], modules: dict[str, Path]) -> list[str]:
    """The foxcem modules an import statement loads (``from pkg import submodule`` included)."""
    if not target.startswith("foxcem"):
        return []
    resolved = [target] if target in modules else []
    resolved += [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
    return resolved


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, names, _ in _imports(path, name):
            graph[name].update(t for t in _resolve(target, names, modules) if t != name)
    return graph


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else ""


def test_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_layers_import_downwards_only() -> None:
    problems = []
    for module, targets in _graph().items():
        if module in ROOT_MODULES:
            continue
        part = _part(module)
        assert part in LAYERS, f"{module} is in no layer; add its folder to LAYERS"
        for target in targets:
            other = _part(target)
            if target in ROOT_MODULES or other == part:
                if target == "foxcem":
                    problems.append(f"{module} imports the package root")
                continue
            if other not in LAYERS[part]:
                problems.append(f"{module} ({part}) imports {target} ({other})")
    assert not problems, "\n".join(problems)


def test_no_private_name_is_imported_across_modules() -> None:
    modules = _modules()
    problems = []
    for name, path in modules.items():
        for target, names, line in _imports(path, name):
            if not target.startswith("foxcem") or target == "foxcem._version":
                continue
            private_module = any(
                part.startswith("_") and not part.startswith("__") for part in target.split(".")
            )
            private_names = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if name == "foxcem" and target == "foxcem" and names == ["_compat"]:
                continue  # the package root installs its own old-path helper
            if private_module or private_names:
                problems.append(f"{path.name}:{line} imports {target} {private_names}")
    assert not problems, "\n".join(problems)


def test_modules_are_small() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    large = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not large, f"modules over {MAX_LINES} lines: {large}"


def test_the_checker_sees_what_it_should() -> None:
    """The graph is not empty by accident: known edges are there."""
    graph = _graph()
    assert "foxcem.core.checks" in graph["foxcem.cem.loss"]
    assert "foxcem.cem.gradient_source" in graph["foxcem.cem.urv"]
    assert "foxcem.attribution" in graph["foxcem"]
