"""Imports point one way: no cycle among the project's modules.

The graph is read from the source with `ast` (nothing is imported): an edge for every
module-level `import` / `from ... import` of one of our modules, relative imports resolved.
Imports inside functions do not count (they run later, on purpose), nor do `if TYPE_CHECKING:`
blocks; class bodies and module-level `try`/`if` blocks do (they run at import).
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "nodes", "gateway", "deploy")
TOP_LEVEL = ("cli*.py", "server.py")


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file, for every .py of the project's packages and top-level faces."""
    files = [f for pattern in TOP_LEVEL for f in root.glob(pattern)]
    files += [f for package in PACKAGES if (root / package).is_dir() for f in (root / package).rglob("*.py")]
    modules = {}
    for path in files:
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _top_level_imports(tree: ast.Module):
    """Import statements that run when the module is imported (not inside functions or TYPE_CHECKING)."""
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending.extend(node.orelse)
        else:
            # the statements inside a class body, try/except, if, with, for, match
            pending.extend(child for child in ast.iter_child_nodes(node)
                           if isinstance(child, (ast.stmt, ast.excepthandler, ast.match_case)))


def _imported(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    """The project modules one import statement loads (itself, or the submodules it names)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & known
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join([*package, *([base] if base else [])])
    found = set()
    for alias in node.names:
        sub = f"{base}.{alias.name}" if base else alias.name
        found.add(sub if sub in known else base)  # `from pkg import sub` loads the submodule, else pkg
    return found & known


def import_graph(root: Path = ROOT) -> nx.DiGraph:
    """Module -> the project modules it imports at module level."""
    modules = project_modules(root)
    known = set(modules)
    graph = nx.DiGraph()
    graph.add_nodes_from(known)
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _top_level_imports(tree):
            for target in _imported(module, path.name == "__init__.py", node, known):
                if target != module:
                    graph.add_edge(module, target)
    return graph


def test_imports_graph_resolves_relative_imports():
    graph = import_graph()
    assert graph.has_edge("engine.models.manager", "engine.errors")  # from ..errors import ...
    assert graph.has_edge("engine.models", "engine.models.manager")  # from .manager import ...
    assert graph.has_edge("nodes.llm.ollama_backend", "nodes.llm.types")


def test_imports_graph_sees_module_level_cycles_only(tmp_path):
    package = tmp_path / "engine"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("try:\n    from .c import X\nexcept ImportError:\n    X = None\n")
    (package / "c.py").write_text("import engine.a\n\ndef later():\n    from . import d\n")
    (package / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import Y\n")
    graph = import_graph(tmp_path)
    assert list(nx.simple_cycles(graph)) and sorted(graph.edges) == [
        ("engine.a", "engine.b"), ("engine.b", "engine.c"), ("engine.c", "engine.a")]


def test_imports_have_no_cycle():
    cycles = sorted(" -> ".join([*cycle, cycle[0]]) for cycle in nx.simple_cycles(import_graph()))
    assert not cycles, "import cycles (module-level imports):\n" + "\n".join(cycles[:20])
