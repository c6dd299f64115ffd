"""The import graph stays a layered graph: no module imports another that (directly or not) imports
it back, and the algorithms never import the notebook UI.

Every import counts, also those inside functions and ``lazy_import("...")`` (a lazy import that
closes a circle still ties the two modules together), except those under ``if TYPE_CHECKING:``,
which never run. The one exception
is the root package's lazy facade (``fednb.connect`` and friends, ``%load_ext fednb``): only its
module-level imports count, because its function-level ones run after every module has loaded.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "fednb"
ALGORITHMS = ("fednb.federated", "fednb.privacy", "fednb.learn")
UI = ("fednb.widgets", "fednb.jupyter")


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if package else parts)] = (path, package)
    return out


def _type_checking_only(tree: ast.AST) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return skipped


def _owner(name: str, modules: dict) -> str | None:
    """The fednb module that ``name`` (a module, or a name defined in one) lives in."""
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name if name in modules else None


def _imports(module: str, package: bool, tree: ast.Module, modules: dict, top_level_only: bool):
    """(line, fednb module) for every import; ``from pkg import name`` imports the submodule
    ``pkg.name`` when there is one, else ``pkg``."""
    skipped = _type_checking_only(tree)
    for node in tree.body if top_level_only else ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            names = [f"{origin}.{a.name}" if f"{origin}.{a.name}" in modules else origin for a in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_import" and node.args
              and isinstance(node.args[0], ast.Constant)):  # fednb.lazy_import: an import all the same
            names = [node.args[0].value]
        else:
            continue
        for name in names:
            target = _owner(name, modules) if name.split(".")[0] == "fednb" else None
            if target is not None and target != module:
                yield node.lineno, target


def import_graph() -> dict[str, dict[str, int]]:
    """{module: {fednb module it imports: first line that does}}."""
    modules = _modules()
    graph: dict[str, dict[str, int]] = defaultdict(dict)
    for module, (path, package) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for line, target in _imports(module, package, tree, modules, top_level_only=module == "fednb"):
            graph[module].setdefault(target, line)
    return graph


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan 1972), iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in list(graph):
        if start in index:
            continue
        work = [(start, iter(graph.get(start, ())))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, ()))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _describe(graph: dict[str, dict[str, int]], component: list[str]) -> str:
    members = set(component)
    return "\n".join(f"  {a}:{line} imports {b}" for a in component
                     for b, line in sorted(graph.get(a, {}).items()) if b in members)


def test_no_import_circles():
    graph = import_graph()
    found = circles(graph)
    assert not found, "import circles:\n" + "\n\n".join(_describe(graph, c) for c in found)


def test_algorithms_never_import_the_ui():
    graph = import_graph()
    bad = [f"{a}:{line} imports {b}" for a, targets in graph.items() if a.startswith(ALGORITHMS)
           for b, line in targets.items() if b.startswith(UI)]
    assert not bad, "algorithms import the notebook UI (render through fednb.display instead):\n" + "\n".join(bad)


def test_the_checker_sees_circles_lazy_imports_and_relative_imports(tmp_path, monkeypatch):
    """The checks above can fail: a lazy, relative import closing a circle is found, and one under
    TYPE_CHECKING is not."""
    pkg = tmp_path / "fednb"
    (pkg / "federated").mkdir(parents=True)
    (pkg / "widgets").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "federated" / "__init__.py").write_text("")
    (pkg / "widgets" / "__init__.py").write_text("")
    (pkg / "federated" / "stats.py").write_text("def show():\n    from fednb.widgets import view\n")
    (pkg / "widgets" / "view.py").write_text("from ..federated import stats\n")
    (pkg / "federated" / "glm.py").write_text("from fednb.lazy_import import lazy_import\n"
                                              "result = lazy_import('fednb.federated.glm_result')\n")
    (pkg / "federated" / "glm_result.py").write_text("from fednb.federated.glm import pool\n")
    (pkg / "widgets" / "typed.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from fednb.federated import stats\n")
    monkeypatch.setitem(globals(), "ROOT", pkg)
    graph = import_graph()
    assert sorted(circles(graph)) == [["fednb.federated.glm", "fednb.federated.glm_result"],
                                      ["fednb.federated.stats", "fednb.widgets.view"]]
    assert "fednb.widgets.typed" not in graph
    with pytest.raises(AssertionError, match="fednb.federated.stats:2 imports fednb.widgets.view"):
        test_algorithms_never_import_the_ui()
