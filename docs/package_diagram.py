"""Draws docs/_static/figures/packages.png: lenetish's packages in layers, from its real imports.

Run from the repository root (CI does, before the docs build): the arrows are the run-time
imports found in ``src/lenetish`` by ``tests/import_graph.py``, so the picture cannot drift
from the code. Each package sits one row above everything it imports; only the arrows that are
not implied by others are drawn. Private modules (``_device``...), ``errors`` (which everything
imports) and the top-level namespace are left out.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.import_graph import package_graph, runtime_graph  # noqa: E402

OUT = ROOT / "docs" / "_static" / "figures" / "packages.png"
LEFT_OUT = {"errors", "lenetish", "__main__"}


def shown_graph() -> dict[str, set[str]]:
    """The package graph without private modules and the groups everything depends on."""
    graph = package_graph(runtime_graph(ROOT / "src" / "lenetish"))
    keep = {name for name in graph if not name.startswith("_") and name not in LEFT_OUT}
    return {name: graph[name] & keep for name in keep}


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Everything ``start`` imports, directly or through others."""
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph[name])
    return seen


def reduced(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Only the imports no chain of other imports implies (the transitive reduction)."""
    return {
        name: {d for d in deps if not any(d in reachable(graph, o) for o in deps - {d})}
        for name, deps in graph.items()
    }


def layers(graph: dict[str, set[str]]) -> dict[str, int]:
    """Row of each package: 0 for those that import none of the others, else one above."""
    row: dict[str, int] = {}

    def height(name: str) -> int:
        if name not in row:
            row[name] = 1 + max((height(d) for d in graph[name]), default=-1)
        return row[name]

    for name in graph:
        height(name)
    return row


def draw(path: Path = OUT) -> Path:
    """Draw the diagram to ``path`` and return it."""
    graph = shown_graph()
    row = layers(graph)
    rows: dict[int, list[str]] = {}
    for name in sorted(graph):
        rows.setdefault(row[name], []).append(name)
    width = max(len(names) for names in rows.values())
    place = {
        name: ((i + 0.5) * width / len(names), level)
        for level, names in rows.items()
        for i, name in enumerate(names)
    }
    figure, axes = plt.subplots(figsize=(1.3 * width + 1, 1.0 * len(rows) + 0.6))
    for name, deps in reduced(graph).items():
        for dep in deps:
            (x0, y0), (x1, y1) = place[name], place[dep]
            axes.annotate(
                "", xy=(x1, y1 + 0.18), xytext=(x0, y0 - 0.18),
                arrowprops={"arrowstyle": "->", "color": "#888888", "lw": 0.8},
            )  # fmt: skip
    for name, (x, y) in place.items():
        packaged = (ROOT / "src" / "lenetish" / name).is_dir()
        axes.text(
            x, y, name + ("/" if packaged else ""), ha="center", va="center", fontsize=9,
            bbox={"boxstyle": "round", "fc": "#e8f0fb" if packaged else "#f4f4f4", "ec": "#4a6fa5"},
        )  # fmt: skip
    axes.set_xlim(0, width)
    axes.set_ylim(-0.6, len(rows) - 0.4)
    axes.axis("off")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


if __name__ == "__main__":
    print(draw())
