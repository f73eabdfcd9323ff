"""The package's import graph has no cycles, counting imports inside functions too.

A cycle hidden by a function-level import still couples two modules both ways: neither can
be understood, tested or moved alone. The test reads the source with ``ast`` (nothing is
imported), so it sees every import statement wherever it sits.
"""

from __future__ import annotations

import ast
from collections.abc import Collection
from pathlib import Path

import pytest

PACKAGE = "napari_pathreview"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / PACKAGE


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    """Absolute name of ``from <level dots><target> import ...`` written in ``module``."""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _imported_names(module: str, path: Path, modules: Collection[str] = ()) -> set[str]:
    """Every module name an import statement anywhere in the file refers to.

    ``from pkg import sub`` names the submodule ``pkg.sub`` when it exists (the statement
    imports it), otherwise ``pkg`` itself (the name is an attribute of ``pkg``).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                source = _resolve_relative(module, is_package, node.level, node.module)
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                names.add(submodule if submodule in modules else source)
    return names


def _internal_target(name: str, modules: dict[str, Path]) -> str | None:
    """The package module ``name`` denotes: itself, or its nearest enclosing module."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    """Edges module → module for imports between this package's own modules."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for module, path in modules.items():
        for name in _imported_names(module, path, modules):
            if not (name == PACKAGE or name.startswith(PACKAGE + ".")):
                continue
            target = _internal_target(name, modules)
            if target and target != module:
                graph[module].add(target)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def _example_path(graph: dict[str, set[str]], component: list[str]) -> str:
    """One concrete loop inside a component, for a readable failure message."""
    members = set(component)
    start = component[0]
    path = [start]
    seen = {start}
    node = start
    while True:
        succ = min(s for s in graph[node] if s in members)
        if succ in seen:
            loop = path[path.index(succ) :] + [succ]
            return " -> ".join(loop)
        path.append(succ)
        seen.add(succ)
        node = succ


def test_graph_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "from . import sibling\n"
        "def f():\n"
        "    from ..other import thing\n"
        "    import napari_pathreview.io.images\n",
        encoding="utf-8",
    )
    modules = {"napari_pathreview.widgets.sibling"}
    names = _imported_names("napari_pathreview.widgets.mod", source, modules)
    assert "napari_pathreview.widgets.sibling" in names
    assert "napari_pathreview.widgets" not in names
    assert "napari_pathreview.other" in names  # `thing` is not a module: an attribute of other
    assert "napari_pathreview.io.images" in names


def test_find_cycles_reports_a_two_module_loop_and_ignores_a_chain() -> None:
    graph = {"a": {"b"}, "b": {"a", "c"}, "c": set(), "d": {"c"}}
    assert find_cycles(graph) == [["a", "b"]]


def test_package_has_no_import_cycles() -> None:
    graph = import_graph()
    assert len(graph) > 50, "the package sources were not found"
    cycles = find_cycles(graph)
    if cycles:
        lines = [
            f"{len(c)} modules: {', '.join(c)}\n    e.g. {_example_path(graph, c)}" for c in cycles
        ]
        pytest.fail("import cycles (module- or function-level):\n" + "\n".join(lines))
