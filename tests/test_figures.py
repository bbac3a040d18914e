"""Tests of docs/make_figures.py: it draws each figure, keeps them without data, pages show them."""

from __future__ import annotations

import importlib.util
import shlex
from pathlib import Path
from types import ModuleType

import pytest

DOCS = Path(__file__).parents[1] / "docs"
FIGURES = DOCS / "_static" / "figures"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def load_script() -> ModuleType:
    """Import docs/make_figures.py as a module (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location("make_figures", DOCS / "make_figures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_writes_every_figure_from_fake_data(fake_mnist: Path, tmp_path: Path) -> None:
    """On tiny synthetic idx files the script writes each of its PNGs into --out."""
    script = load_script()
    out = tmp_path / "figures"
    assert script.main(["--data", str(fake_mnist), "--out", str(out)]) == 0
    written = sorted(path.name for path in out.iterdir())
    assert written == sorted(script.OUTPUTS)
    for name in script.OUTPUTS:
        assert (out / name).read_bytes().startswith(PNG_SIGNATURE), name


def test_leaves_figures_alone_without_data(tmp_path: Path) -> None:
    """With a data folder that holds no MNIST files it exits 0 and touches nothing in --out."""
    script = load_script()
    out = tmp_path / "figures"
    out.mkdir()
    (out / "digits.png").write_bytes(b"committed")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert script.main(["--data", str(empty), "--out", str(out)]) == 0
    assert [path.name for path in out.iterdir()] == ["digits.png"]
    assert (out / "digits.png").read_bytes() == b"committed"


def test_quickstart_shows_the_commands_that_draw_its_figures() -> None:
    """Each figure drawn by the lenetish command appears in the quickstart with its command."""
    quickstart = (DOCS / "quickstart.rst").read_text()
    for name, arguments in load_script().COMMANDS.items():
        assert f"lenetish {shlex.join(arguments)}" in quickstart, name
        assert f"_static/figures/{name}" in quickstart, name


def test_every_figure_is_committed_and_small() -> None:
    """Every figure the script draws is committed as a PNG under 100 kB."""
    for name in load_script().OUTPUTS:
        data = (FIGURES / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE), name
        assert len(data) < 100_000, f"{name} is {len(data)} bytes"


def test_every_figure_is_shown_on_a_page() -> None:
    """Each figure is referenced by a figure directive on some documentation page."""
    pages = "\n".join(page.read_text() for page in DOCS.glob("*.rst"))
    for name in load_script().OUTPUTS:
        assert f".. figure:: _static/figures/{name}" in pages, name
