"""Sphinx configuration of the lenetish documentation."""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import re
import sys
from collections.abc import Iterator
from importlib.metadata import version as _version
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.domains.python import PythonDomain
from sphinx.util.typing import stringify_annotation

project = "lenetish"
author = "The lenetish developers"
copyright = "2026, The lenetish developers"


def _release() -> str:
    """The version in pyproject.toml (an editable install's metadata can lag behind it)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return _version("lenetish")
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if not pyproject.is_file():
        return _version("lenetish")
    return str(tomllib.loads(pyproject.read_text())["project"]["version"])


release = _release()
version = release

sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
    "myst_parser",
    "sphinx_copybutton",
    "api_index",  # docs/_ext/api_index.py: the table of every public name on the API index
]

# The copy button of a code block copies what can be pasted and run: the prompts of ``>>>``
# (pycon) blocks and ``$`` lines are dropped, and so are the output lines that follow them. The
# prompts stay in the text the button reads (copybutton_exclude leaves out only line numbers),
# so that it can tell the input lines from the output.
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
copybutton_only_copy_prompt_lines = True
copybutton_exclude = ".linenos"

# No typographic dashes: ``--epochs`` in a caption or a table stays two hyphens, not an en dash
# (quotes and ellipses are still typeset).
smartquotes_action = "qe"

# The changelog page includes CHANGELOG.md through MyST; every page itself is reStructuredText.
source_suffix = {".rst": "restructuredtext"}

napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Attributes sections become attribute entries, each a link target (``Loaders.info``).
napoleon_use_ivar = False
# One entry per class: the constructor's parameters appear in the class's own description, with
# their types, and neither ``__init__`` nor ``__new__`` (nor nn.Module's docstring) is shown.
autodoc_member_order = "bysource"
autodoc_class_signature = "mixed"
autoclass_content = "class"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"

# Rendered type hints name classes without their modules (``Tensor``, not ``torch.Tensor``);
# the link still goes to the right entry.
python_use_unqualified_type_names = True

# The doctest build runs the examples in the API reference's docstrings, which may use torch and
# any name of lenetish's top level. The user pages have no doctest directives: their code blocks
# are run as printed, each page in a fresh interpreter, by tests/test_docs_snippets.py.
doctest_global_setup = """
import torch
from lenetish import *
"""

nitpicky = True
# Every cross-reference must resolve (sphinx-build -n -W in .ci/run). The only exceptions are
# the types of Python and PyTorch themselves: their inventories live on the internet, which a
# build here cannot reach, so references to them stay plain text. Nothing of lenetish's own
# may be listed here.
nitpick_ignore_regex = [
    (r"py:.*", r"torch(\..*)?"),  # PyTorch
    (r"py:.*", r"(os|pathlib|collections\.abc|str|datetime)\..*"),  # the standard library
]


@functools.cache
def _lenetish_names() -> dict[str, Any]:
    """Every public global of every lenetish module (the first module, by name, wins)."""
    import torch

    import lenetish

    names: dict[str, Any] = {"torch": torch, "nn": torch.nn, "Tensor": torch.Tensor}
    names["Optimizer"] = torch.optim.Optimizer
    modules = [lenetish.__name__]
    found = pkgutil.walk_packages(lenetish.__path__, "lenetish.")
    modules += [m.name for m in found if not m.name.endswith("__main__")]  # that one runs
    for module_name in sorted(modules):
        for key, value in vars(importlib.import_module(module_name)).items():
            if not key.startswith("_"):
                names.setdefault(key, value)
    return names


def _annotation_namespace(obj: Any) -> dict[str, Any]:
    """The names an annotation of ``obj`` may use: its module's first, then any lenetish module's.

    The second half covers names a module imports only under ``TYPE_CHECKING``.
    """
    namespace = dict(_lenetish_names())
    module = sys.modules.get(getattr(obj, "__module__", None) or "")
    namespace.update(vars(module) if module else {})
    return namespace


def _record_parameter_types(
    app: Sphinx, objtype: str, name: str, obj: Any, options: Any, args: Any, retann: Any
) -> None:
    """Record the types of a callable's parameters one annotation at a time.

    Autodoc evaluates all the (string) annotations of an object at once and keeps every one as
    written when any fails, and for a class it reads the class's attributes rather than its
    constructor's parameters: either way a type alias would appear by its bare name, with no
    page to link to. Here each annotation of the constructor (for a class) or of the callable
    itself is evaluated on its own, so ``OptimizerName`` shows as the ``Literal`` it stands for.
    """
    target = obj.__init__ if objtype in ("class", "exception") else obj
    if not inspect.isfunction(target) and not inspect.ismethod(target):
        return
    namespace = _annotation_namespace(obj)
    recorded = app.env.current_document.autodoc_annotations.setdefault(name, {})
    for parameter, annotation in inspect.get_annotations(target).items():
        if objtype in ("class", "exception") and parameter == "return":
            continue
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, namespace)
            except Exception:
                continue
        recorded[parameter] = _short(stringify_annotation(annotation, "smart"))


def _short(annotation: str) -> str:
    """``annotation`` with ``~module.Name`` written ``Name``.

    Sphinx turns ``~torch.Tensor`` into a short link only where it parses the whole annotation;
    inside ``Literal[...] | Callable[...]`` it would show the ``~`` and the module path as text.
    """
    if "Literal[" not in annotation:
        return annotation
    return re.sub(r"~(?:\w+\.)*(\w+)", r"\1", annotation)


def _class_annotation(cls: type, attribute: str) -> Any:
    """The annotation of ``attribute`` in ``cls`` or the first base class that has one."""
    for klass in cls.__mro__:
        annotations = inspect.get_annotations(klass)
        if attribute in annotations:
            return annotations[attribute], klass
    return None, cls


def _attribute_types(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Give each attribute of a class (from napoleon's Attributes section) its evaluated type.

    Napoleon copies an attribute's annotation as written, so an alias imported only for type
    checking would appear by its bare name; this replaces it by what the alias stands for.
    """
    if what not in ("class", "exception") or not isinstance(obj, type):
        return
    attribute = None
    for index, line in enumerate(lines):
        if match := re.match(r"\s*\.\. attribute:: (\w+)$", line):
            attribute = match[1]
            continue
        match = re.match(r"(\s*):type: (.*)$", line)
        if attribute is None or not match:
            continue
        annotation, owner = _class_annotation(obj, attribute)
        attribute = None
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, _annotation_namespace(owner))
            except Exception:
                continue
        if annotation is not None:
            lines[index] = f"{match[1]}:type: {stringify_annotation(annotation, 'smart')}"


class _SearchRankedPythonDomain(PythonDomain):
    """Sphinx's Python domain, with some modules ranked below the objects a reader looks for.

    The search ranks a module above a class of the same name (a module is an "important"
    entry, a class an ordinary one), so ``Trainer`` found the module
    ``lenetish.training.trainer`` first and the class :class:`~lenetish.Trainer` second.
    A module named like a documented class or function, and every module of the Internals
    page, is an "unimportant" entry instead; it is still found, below the object.
    """

    def get_objects(self) -> Iterator[tuple[str, str, str, str, str, int]]:
        """The domain's entries, those modules with the lowest search priority."""
        entries = list(super().get_objects())
        named = {
            name.rsplit(".", 1)[-1].lower()
            for name, _, kind, _, _, priority in entries
            if kind in ("class", "exception", "function") and priority >= 0
        }
        for name, shown, kind, docname, anchor, priority in entries:
            last = name.rsplit(".", 1)[-1].lower()
            if kind == "module" and (docname == "api/internals" or last in named):
                priority = 2
            yield name, shown, kind, docname, anchor, priority


def setup(app: Sphinx) -> None:
    """Connect the type recorders: after autodoc's own, and after napoleon's docstrings."""
    app.connect("autodoc-process-signature", _record_parameter_types)
    app.connect("autodoc-process-docstring", _attribute_types, priority=600)
    app.add_domain(_SearchRankedPythonDomain, override=True)


html_theme = "furo"
html_title = f"lenetish {release}"
html_static_path = ["_static"]
# Tables wrap their code and stack their cells on narrow screens (docs/_static/lenetish.css).
html_css_files = ["lenetish.css"]
exclude_patterns = ["_build", "_ext"]
