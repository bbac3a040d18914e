"""Tests of the documentation: every public name is on the API page and fully documented."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import lenetish

API_PAGE = (Path(__file__).parents[1] / "docs" / "api.rst").read_text()
PUBLIC = sorted(name for name in lenetish.__all__ if name != "__version__")


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_is_on_the_api_page(name: str) -> None:
    """docs/api.rst documents every name in lenetish.__all__."""
    if isinstance(getattr(lenetish, name), type) and issubclass(
        getattr(lenetish, name), lenetish.LenetishError
    ):
        assert ".. automodule:: lenetish.errors" in API_PAGE
    else:
        assert f"lenetish.{name}\n" in API_PAGE or f"lenetish.{name}\r\n" in API_PAGE


def _parameters(function: object) -> list[str]:
    signature = inspect.signature(function)  # type: ignore[arg-type]
    return [p for p in signature.parameters if p not in ("self", "cls")]


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_documents_arguments_and_returns(name: str) -> None:
    """Public callables have a docstring with Args (if they take any) and Returns sections."""
    obj = getattr(lenetish, name)
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
