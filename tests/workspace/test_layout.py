"""The house rules of the workspace package: imports run one way, modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import holdall.workspace

PACKAGE = Path(holdall.workspace.__file__).parent


def _imports(path: Path) -> set[str]:
    """Workspace modules `path` imports anywhere (top level, functions, type-checking blocks)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "holdall.workspace":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("holdall.workspace."):
                found.add(node.module.rsplit(".", 1)[1])
    return found


def test_workspace_imports_form_no_cycle() -> None:
    modules = {p.stem: _imports(p) for p in PACKAGE.glob("_*.py")}
    graph = {name: {m for m in deps if m in modules} for name, deps in modules.items()}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"import cycle: {' -> '.join((*path, name))}"
        if name in done:
            return
        for dependency in sorted(graph[name]):
            visit(dependency, (*path, name))
        done.add(name)

    for name in sorted(graph):
        visit(name, ())


def test_every_workspace_module_stays_under_800_lines() -> None:
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.glob("*.py")}
    assert max(sizes.values()) < 800, sizes
