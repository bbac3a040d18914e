"""Tests of docs/examples.rst: every example file in the repository is shown on the page."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGE = (ROOT / "docs" / "examples.rst").read_text()
EXAMPLE_FILES = sorted(
    [
        *(ROOT / "examples").glob("*.py"),
        *(ROOT / "examples" / "downstream").rglob("*.py"),
        ROOT / "examples" / "downstream" / "pyproject.toml",
    ]
)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda path: str(path.relative_to(ROOT)))
def test_example_file_is_included_whole(path: Path) -> None:
    """The page includes the file with literalinclude, captioned with its path."""
    relative = path.relative_to(ROOT).as_posix()
    assert f".. literalinclude:: ../{relative}\n" in PAGE
    assert f":caption: {relative}\n" in PAGE


@pytest.mark.parametrize(
    "path", sorted((ROOT / "examples").glob("*.py")), ids=lambda path: path.name
)
def test_example_script_has_a_run_command(path: Path) -> None:
    """The page gives a command that runs each example script."""
    assert f"python examples/{path.name}" in PAGE
