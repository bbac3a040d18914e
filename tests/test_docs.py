"""Tests of the API reference: every public name documented once, typed, and with an example."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

import lenetish

DOCS = Path(__file__).parents[1] / "docs"
API_PAGES = [DOCS / "api.rst", *sorted((DOCS / "api").glob("*.rst"))]
AUTODOC = re.compile(r"^\.\. auto(?:class|function|exception):: (\S+)$")
DATA = re.compile(r"^\.\. py:data:: (\S+)$")
MODULE = re.compile(r"^\.\. py:module:: (\S+)$")
MODULE_OPTION = re.compile(r"^\s+:module: (\S+)$")


def _documented() -> list[tuple[str, str, Path]]:
    """(full name, kind, page) of every object the API pages document; kind: auto or data."""
    entries = []
    for page in API_PAGES:
        lines = page.read_text().splitlines()
        module = ""
        for index, line in enumerate(lines):
            if match := MODULE.match(line):
                module = match[1]
            elif match := AUTODOC.match(line):
                entries.append((match[1], "auto", page))
            elif match := DATA.match(line):
                owner = module
                for option in lines[index + 1 :]:
                    if not option.strip().startswith(":"):
                        break
                    if given := MODULE_OPTION.match(option):
                        owner = given[1]
                entries.append((f"{owner}.{match[1]}", "data", page))
    return entries


DOCUMENTED = _documented()
DOCUMENTED_NAMES = [name for name, _, _ in DOCUMENTED]
PUBLIC = sorted(f"lenetish.{name}" for name in lenetish.__all__)


def _resolve(full_name: str) -> object:
    """The object a dotted name such as ``lenetish.distributed.rank`` stands for."""
    module_name, attribute = full_name.rsplit(".", 1)
    return getattr(importlib.import_module(module_name), attribute)


def _data_block(full_name: str) -> str:
    """The indented text of the ``py:data`` entry documenting ``full_name``."""
    page = next(page for name, kind, page in DOCUMENTED if name == full_name and kind == "data")
    lines = page.read_text().splitlines()
    start = lines.index(f".. py:data:: {full_name.rsplit('.', 1)[1]}")
    block = []
    for line in lines[start + 1 :]:
        if line and not line.startswith(" "):
            break
        block.append(line)
    return "\n".join(block)


def _has_example(text: str) -> bool:
    """Whether ``text`` has an Example(s) section holding at least one doctest line."""
    match = re.search(r"^\s*(?:Examples?:|\.\. rubric:: Examples?)\s*$", text, re.MULTILINE)
    return match is not None and ">>> " in text[match.end() :]


def _example_text(full_name: str) -> str:
    """The docstring of ``full_name`` (its own, not a base class's), or its py:data entry."""
    kind = next(kind for name, kind, _ in DOCUMENTED if name == full_name)
    if kind == "data":
        return _data_block(full_name)
    return inspect.cleandoc(getattr(_resolve(full_name), "__doc__", None) or "")


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_is_documented_once(name: str) -> None:
    """Every name in lenetish.__all__ has exactly one entry in the API pages."""
    assert DOCUMENTED_NAMES.count(name) == 1, f"{name}: {DOCUMENTED_NAMES.count(name)} entries"


def test_no_object_is_documented_twice() -> None:
    """No dotted name has two entries across the API pages (submodule names included)."""
    twice = sorted({name for name in DOCUMENTED_NAMES if DOCUMENTED_NAMES.count(name) > 1})
    assert twice == []


@pytest.mark.parametrize("name", DOCUMENTED_NAMES)
def test_documented_name_exists(name: str) -> None:
    """Every entry of the API pages names an object the package has."""
    if name != "lenetish.__version__":
        _resolve(name)
    else:
        assert isinstance(lenetish.__version__, str)


@pytest.mark.parametrize("name", DOCUMENTED_NAMES)
def test_documented_name_has_an_example(name: str) -> None:
    """Every documented name has an Example(s) section with a doctest in its docstring."""
    assert _has_example(_example_text(name)), f"{name} has no Example section with >>> lines"


def test_example_check_sees_a_missing_example() -> None:
    """The example check fails a docstring without an Example section, or one without >>>."""
    assert not _has_example("Do a thing.\n\nArgs:\n    x: a value.")
    assert not _has_example("Do a thing.\n\nExample:\n    Call it with a value.")
    assert _has_example("Do a thing.\n\nExample:\n    >>> 1 + 1\n    2")


def _parameters(function: object) -> list[str]:
    signature = inspect.signature(function)  # type: ignore[arg-type]
    return [p for p in signature.parameters if p not in ("self", "cls")]


@pytest.mark.parametrize("name", sorted(lenetish.__all__))
def test_public_name_documents_arguments_and_returns(name: str) -> None:
    """Public callables have a docstring with Args (if they take any) and Returns sections."""
    obj = getattr(lenetish, name)
    if name == "__version__":
        return
    doc = inspect.getdoc(obj) or ""
    assert doc, f"{name} has no docstring"
    if inspect.isclass(obj):
        if issubclass(obj, BaseException) or not _parameters(obj):
            return
        fields = getattr(obj, "__dataclass_fields__", None)
        assert "Args:" in doc or (fields and "Attributes:" in doc), f"{name}: no Args section"
        for method_name, method in vars(obj).items():
            if inspect.isfunction(method) and not method_name.startswith("_"):
                assert inspect.getdoc(method), f"{name}.{method_name} has no docstring"
    elif callable(obj):
        if _parameters(obj):
            assert "Args:" in doc, f"{name}: no Args section"
        returns = inspect.signature(obj).return_annotation
        if returns not in ("None", None, inspect.Signature.empty):
            assert "Returns:" in doc or doc.startswith("Return"), f"{name}: no Returns section"
