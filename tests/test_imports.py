"""The import graph of ``rtpose``: no cycles, and backends imported only when chosen."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

from rtpose.hw import registry
from rtpose.hw.config import CAMERA_BACKENDS, DAQ_BACKENDS

PACKAGE = Path(__file__).resolve().parent.parent / "rtpose"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """rtpose modules that ``name`` imports anywhere (in functions too), but not under TYPE_CHECKING."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level \
                else node.module or ""
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:  # a submodule: from rtpose.hw import registry
                    found.add(f"{base}.{alias.name}")
                elif base in modules:
                    found.add(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    found.discard(name)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_no_import_cycles_in_rtpose():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert "rtpose.hw.registry" in graph["rtpose.hw.config"]  # the scan sees imports
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_backends_come_from_the_registry_and_load_only_when_made():
    assert CAMERA_BACKENDS == set(registry.CAMERAS) and DAQ_BACKENDS == set(registry.DAQS)
    for table in (registry.CAMERAS, registry.DAQS):
        for name in table:  # every module imports here; vendor SDKs load only on open
            assert isinstance(registry.backend_class(table, name), type)
    code = ("import sys, rtpose.live, rtpose.hw; "
            "print(' '.join(m for m in sys.modules if m.startswith('rtpose.hw.') or m in ('PySpin', 'nidaqmx')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    backends = {spec.split(":")[0] for spec in [*registry.CAMERAS.values(), *registry.DAQS.values()]}
    assert "rtpose.hw.registry" in loaded and not backends & set(loaded) and "PySpin" not in loaded
