"""Tests of docs/examples.rst: every example file is on the page, with its output and code."""

from __future__ import annotations

import re
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


def _sections() -> dict[str, str]:
    """The text of each ``----``-underlined section of the page, by title."""
    parts = re.split(r"\n([^\n]+)\n-{3,}\n", PAGE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.parametrize(
    "path", sorted((ROOT / "examples").glob("*.py")), ids=lambda path: path.name
)
def test_example_script_shows_its_output(path: Path) -> None:
    """The section of each example script shows what the script printed, as a text block."""
    section = next(text for title, text in _sections().items() if f"``{path.name}``" in title)
    assert re.search(r"\.\. code-block:: text\n   :caption: Output", section), path.name


def test_example_code_is_folded_under_the_output() -> None:
    """Every included file sits inside a <details> element, closed after it."""
    for match in re.finditer(r"\.\. literalinclude:: (\S+)\n", PAGE):
        before = PAGE[: match.start()]
        assert before.rfind("<details") > before.rfind("</details>"), match[1]
