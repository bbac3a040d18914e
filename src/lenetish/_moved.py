"""Old module paths that moved into packages in 0.2: each warns once, then works until 0.3.

One table and one import hook instead of a file per old path: ``import lenetish.step``
finds :mod:`lenetish.training.step` through :class:`MovedModuleFinder`, warns once with a
``FutureWarning`` pointing at the importing line, and gives the module at the new path (the
same objects, so ``lenetish.step.EagerStep is lenetish.training.step.EagerStep``; an old
module whose names now live in two modules gives one module offering both).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

__all__ = ["MOVED", "MovedModuleFinder", "install", "moved_message"]

#: Old path -> new path, for every module path the 0.1 documentation showed (and the
#: internals users may have imported).
MOVED = {
    "lenetish.trainer": "lenetish.training.trainer",
    "lenetish.state": "lenetish.training.state",
    "lenetish.step": "lenetish.training.step",
    "lenetish.resume": "lenetish.training.resume",
    "lenetish.optimizer_config": "lenetish.training.optimizer_config",
    "lenetish.parallel": "lenetish.distributed.strategies",
    "lenetish.checkpoint": "lenetish.saving.checkpoint",
    "lenetish.checkpoint_checks": "lenetish.saving.checkpoint_checks",
    "lenetish.weightfiles": "lenetish.saving.weightfiles",
    "lenetish.export": "lenetish.saving.export",
    "lenetish.identity": "lenetish.data.identity",
    "lenetish.idx": "lenetish.data.idx",
    "lenetish.sources": "lenetish.data.sources",
    "lenetish.loaders": "lenetish.data.loaders",
    "lenetish.augment": "lenetish.data.augment",
    "lenetish.inference": "lenetish.evaluation.inference",
    "lenetish.inputs": "lenetish.evaluation.inputs",
    "lenetish.prepare": "lenetish.evaluation.prepare",
    "lenetish.stack_fit": "lenetish.stack.fitting",
    "lenetish.stack_eval": "lenetish.stack.evaluation",
}

# Names an old module offered that now live elsewhere (lenetish.checkpoint had the weight files',
# lenetish.step the captured step's).
_ALSO = {
    "lenetish.step": (
        "lenetish.training.cuda_graph",
        ("CaptureRequest", "CudaGraphStep", "capture_blockers", "capture_cuda_graph", "make_step"),
    ),
    "lenetish.checkpoint": (
        "lenetish.saving.weightfiles",
        ("load_model", "load_weights", "saved_dataset", "saved_model_class"),
    ),
}


def moved_message(old: str, new: str) -> str:
    """The warning an old module path gives: where it moved and until when it works."""
    return (
        f"{old} moved to {new} in lenetish 0.2; import from {new} (or from lenetish itself); "
        "the old path works until 0.3"
    )


def _importer_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the line that imported the old path.

    ``warnings`` does not count importlib's own frames, so only this module's are skipped.
    """
    level, frame = 1, sys._getframe(1)
    while frame.f_back is not None and (
        frame.f_code.co_filename.startswith("<frozen") or frame.f_code.co_filename == __file__
    ):
        if frame.f_code.co_filename == __file__:
            level += 1
        frame = frame.f_back
    return level


class _MovedLoader(importlib.abc.Loader):
    """Loads an old path as its new module, after the warning."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        """A plain placeholder module (the new module's own attributes stay untouched)."""
        return None

    def exec_module(self, module: ModuleType) -> None:
        """Warn, then make the old path name the new module (or fill the placeholder)."""
        warnings.warn(
            moved_message(self.old, self.new), FutureWarning, stacklevel=_importer_stacklevel()
        )
        new = importlib.import_module(self.new)
        if self.old not in _ALSO:
            sys.modules[self.old] = new  # the import statement then gives the new module
            return
        other, names = _ALSO[self.old]  # names from two modules: one module offering both
        module.__dict__.update({k: v for k, v in vars(new).items() if not k.startswith("__")})
        extra = importlib.import_module(other)
        module.__dict__.update({name: getattr(extra, name) for name in names})
        module.__doc__ = new.__doc__


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds the old paths of :data:`MOVED` (installed by ``import lenetish``)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        """A spec for an old path, ``None`` for anything else."""
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _MovedLoader(fullname, new))


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (``import lenetish`` calls it)."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
