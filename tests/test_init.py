"""Tests of the lenetish package itself: the pinned public API and the version."""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import lenetish
import lenetish.callbacks
from tests.import_graph import cycles, package_graph, runtime_graph

API_FILE = Path(__file__).with_name("public_api.txt")
SOURCE = Path(lenetish.__file__).parent


def describe_public_api() -> list[str]:
    """One line per public name (and per public method of a public class) with its signature."""
    lines = []
    for name in sorted(lenetish.__all__):
        obj = getattr(lenetish, name)
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            bases = ", ".join(base.__name__ for base in obj.__bases__)
            lines.append(f"exception {name}({bases})")
        elif inspect.isclass(obj):
            lines.append(f"class {name}{inspect.signature(obj)}")
            for attr, member in sorted(vars(obj).items()):
                if attr.startswith("_"):
                    continue
                if inspect.isfunction(member):
                    lines.append(f"  def {name}.{attr}{inspect.signature(member)}")
                elif isinstance(member, property):
                    lines.append(f"  property {name}.{attr}")
        elif callable(obj):
            lines.append(f"def {name}{inspect.signature(obj)}")
        else:
            lines.append(f"{name}: {type(obj).__name__}")
    for name in sorted(lenetish.callbacks.__all__):
        same = getattr(lenetish.callbacks, name) is getattr(lenetish, name, None)
        lines.append(f"lenetish.callbacks.{name}{' is lenetish.' + name if same else ''}")
    return lines


def test_public_api_matches_the_recorded_list() -> None:
    """__all__ and every signature equal tests/public_api.txt (update it with the CHANGELOG)."""
    recorded = API_FILE.read_text().splitlines()
    assert describe_public_api() == recorded, (
        "the public API changed: if on purpose, regenerate tests/public_api.txt with "
        "`python -m tests.test_init` and describe the change in CHANGELOG.md"
    )


def test_every_built_in_callback_imports_from_lenetish_callbacks() -> None:
    """The built-in callbacks import from lenetish.callbacks, as in Keras and Lightning."""
    from lenetish.callbacks import (  # noqa: F401
        EMA,
        CSVLogger,
        EarlyStopping,
        History,
        LRSchedule,
        ModelCheckpoint,
        ProgressBar,
        TerminateOnNaN,
        Timer,
    )

    assert ModelCheckpoint is lenetish.ModelCheckpoint


def _root_name(node: ast.expr) -> str | None:
    """The name an attribute chain starts from (``torch`` in ``torch.a._b``)."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _private_reaches(path: Path) -> list[str]:
    """Uses of a lenetish object's or module's underscore names from outside it."""
    tree = ast.parse(path.read_text())
    foreign = {"self", "cls"}  # own privates, and names from other libraries, are fine
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a for a in node.names if not a.name.startswith("lenetish")]
            foreign |= {(a.asname or a.name).split(".")[0] for a in names}
        elif isinstance(node, ast.ImportFrom) and not (node.module or "").startswith("lenetish"):
            foreign |= {a.asname or a.name for a in node.names}
    found = []
    for node in ast.walk(tree):
        private = isinstance(node, ast.Attribute) and node.attr[:1] == "_" != node.attr[1:2]
        if private and _root_name(node.value) not in foreign:
            found.append(f"{path.name}:{node.lineno} .{node.attr}")
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lenetish"):
            names = [alias.name for alias in node.names if alias.name.startswith("_")]
            found += [f"{path.name}:{node.lineno} import {name}" for name in names]
    return found


def test_no_module_reaches_into_another_ones_underscore_names() -> None:
    """Modules talk through public names only: no `obj._name` outside self/cls, no `import _x`."""
    reaches = [reach for path in SOURCE.rglob("*.py") for reach in _private_reaches(path)]
    assert reaches == []


def test_every_public_name_exists() -> None:
    """Every name in __all__ is importable from lenetish."""
    assert all(hasattr(lenetish, name) for name in lenetish.__all__)


def test_no_public_name_is_shadowed_by_a_submodule() -> None:
    """After every submodule is imported, each public name is still its object, not a module."""
    for module in (path for path in SOURCE.rglob("*.py") if path.name != "__main__.py"):
        dotted = ".".join(("lenetish", *module.relative_to(SOURCE).with_suffix("").parts))
        importlib.import_module(dotted.removesuffix(".__init__"))
    shadowed = [name for name in lenetish.__all__ if inspect.ismodule(getattr(lenetish, name))]
    assert shadowed == []


def test_import_lenetish_does_not_import_torch() -> None:
    """`import lenetish` loads no torch (names load on first use), so the command starts fast."""
    code = "import sys, lenetish, lenetish.cli; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_a_public_name_loads_on_first_use() -> None:
    """`from lenetish import X` gives the object from its home module."""
    from lenetish import Trainer
    from lenetish.training.trainer import Trainer as home

    assert Trainer is home


def test_an_unknown_name_raises_attribute_error() -> None:
    """Asking lenetish for a name it does not have is an AttributeError naming it."""
    with pytest.raises(AttributeError, match="no attribute 'Trainr'"):
        lenetish.Trainr  # noqa: B018


def test_version_comes_from_the_installed_metadata() -> None:
    """__version__ is the installed distribution's version."""
    assert lenetish.__version__ == version("lenetish")


def test_no_module_imports_itself_back_at_run_time() -> None:
    """The package's run-time imports have no cycle (function-level imports count)."""
    assert cycles(runtime_graph(SOURCE)) == []


def test_the_packages_import_each_other_in_one_direction() -> None:
    """Between packages (training, data, stack...) the imports have no cycle either."""
    assert cycles(package_graph(runtime_graph(SOURCE))) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """cycles() reports two modules that import each other (so the tests above can fail)."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_plain_training_and_scoring_do_not_import_the_stack_package() -> None:
    """A fit, evaluate and predict of one network leave lenetish.stack unimported."""
    code = """
import sys, torch
from lenetish import MNISTConvNet, Trainer, evaluate, predict
batches = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))]
model = MNISTConvNet()
Trainer(model, epochs=1, device="cpu", progress=False).fit(batches, batches)
evaluate(model, batches)
predict(model, batches[0][0], normalized=True)
print(sorted(name for name in sys.modules if name.startswith("lenetish.stack")))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip().splitlines()[-1:] == ["[]"], result.stderr


if __name__ == "__main__":
    API_FILE.write_text("\n".join(describe_public_api()) + "\n")
