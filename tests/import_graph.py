"""The run-time import graph of the package, read from its source (import tests, docs diagram)."""

from __future__ import annotations

import ast
from pathlib import Path


def module_name(path: Path, source: Path) -> str:
    """``lenetish.training.step`` for ``src/lenetish/training/step.py``."""
    parts = ("lenetish", *path.relative_to(source).with_suffix("").parts)
    return ".".join(parts).removesuffix(".__init__")


def runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """The lenetish modules a file imports when it runs (anywhere but under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:  # `from lenetish.data import idx` imports a module
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in modules else node.module)
    return found & modules


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def runtime_graph(source: Path) -> dict[str, set[str]]:
    """``{module: the lenetish modules it imports at run time}`` for the package at ``source``."""
    paths = {module_name(path, source): path for path in source.rglob("*.py")}
    return {name: runtime_imports(path, set(paths)) - {name} for name, path in paths.items()}


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same imports between top-level groups (``lenetish.training.step`` -> ``training``)."""

    def group(name: str) -> str:
        return name.split(".")[1] if "." in name else "lenetish"

    grouped: dict[str, set[str]] = {group(name): set() for name in graph}
    for name, imported in graph.items():
        grouped[group(name)] |= {group(other) for other in imported} - {group(name)}
    return grouped
