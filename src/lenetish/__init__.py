"""lenetish: train, evaluate and use LeNet-like CNNs on MNIST and its family with PyTorch.

The public names below load on first use (PEP 562), so ``import lenetish`` and the
``lenetish --help`` command do not wait for torch; ``from lenetish import Trainer`` works as
usual.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lenetish._device import resolve_device, seed_everything
    from lenetish.callbacks import (
        EMA,
        Callback,
        CSVLogger,
        EarlyStopping,
        History,
        LearningRateMonitor,
        LRSchedule,
        ModelCheckpoint,
        ProgressBar,
        SkipBatch,
        StopTraining,
        TensorBoardLogger,
        TerminateOnNaN,
        Timer,
    )
    from lenetish.data import DATASETS, DatasetInfo, Loaders, default_root, load_split, make_loaders
    from lenetish.data.augment import RandomAffine
    from lenetish.data.idx import read_idx, write_idx
    from lenetish.data.loaders import TensorLoader
    from lenetish.distributed import is_main_process
    from lenetish.errors import (
        CheckpointError,
        DatasetCorruptError,
        DatasetMismatchError,
        DatasetNotFoundError,
        DeviceUnavailableError,
        DistributedError,
        InputShapeError,
        InvalidArgumentError,
        InvalidImageError,
        InvalidInputError,
        LenetishError,
        MissingDependencyError,
        NotFittedError,
        OutputFileError,
        TrainerBusyError,
        TrainingDivergedError,
        UnsupportedModelError,
    )
    from lenetish.evaluation import EvalResult, Prediction, evaluate, predict
    from lenetish.lr_finder import LRFinderResult, lr_find
    from lenetish.models import MNISTConvNet, MNISTWideNet
    from lenetish.plots import plot_confusion, plot_digits, plot_history, plot_mistakes
    from lenetish.recipe_runs import (
        TrainedModel,
        TrainedStack,
        train_ensemble,
        train_recipe,
        train_stack,
    )
    from lenetish.recipes import RECIPES, Recipe, get_recipe
    from lenetish.saving.checkpoint import load_checkpoint, save_weights
    from lenetish.saving.export import export_model
    from lenetish.saving.weightfiles import load_model, load_weights
    from lenetish.shipped import available_pretrained, pretrained, pretrained_info
    from lenetish.stack import ModelStack
    from lenetish.stack.evaluation import StackEvalResult
    from lenetish.stack.fitting import StackLoader
    from lenetish.training.trainer import BatchOutput, Trainer, TrainState

from lenetish._moved import install as _install_moved_paths

_install_moved_paths()  # old module paths (lenetish.step...) warn once and work until 0.3

try:
    __version__ = version("lenetish")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

#: Where each public name is defined: imported from there on first access.
_HOMES: dict[str, str] = {
    "available_pretrained": "lenetish.shipped",
    "BatchOutput": "lenetish.training.trainer",
    "Callback": "lenetish.callbacks",
    "CheckpointError": "lenetish.errors",
    "CSVLogger": "lenetish.callbacks",
    "DatasetCorruptError": "lenetish.errors",
    "DatasetInfo": "lenetish.data",
    "DatasetMismatchError": "lenetish.errors",
    "DatasetNotFoundError": "lenetish.errors",
    "DATASETS": "lenetish.data",
    "default_root": "lenetish.data",
    "DeviceUnavailableError": "lenetish.errors",
    "DistributedError": "lenetish.errors",
    "EarlyStopping": "lenetish.callbacks",
    "EMA": "lenetish.callbacks",
    "EvalResult": "lenetish.evaluation",
    "evaluate": "lenetish.evaluation",
    "export_model": "lenetish.saving.export",
    "get_recipe": "lenetish.recipes",
    "History": "lenetish.callbacks",
    "InputShapeError": "lenetish.errors",
    "InvalidArgumentError": "lenetish.errors",
    "InvalidImageError": "lenetish.errors",
    "InvalidInputError": "lenetish.errors",
    "is_main_process": "lenetish.distributed",
    "LenetishError": "lenetish.errors",
    "load_checkpoint": "lenetish.saving.checkpoint",
    "load_model": "lenetish.saving.weightfiles",
    "load_split": "lenetish.data",
    "load_weights": "lenetish.saving.weightfiles",
    "Loaders": "lenetish.data",
    "lr_find": "lenetish.lr_finder",
    "LRFinderResult": "lenetish.lr_finder",
    "LRSchedule": "lenetish.callbacks",
    "LearningRateMonitor": "lenetish.callbacks",
    "make_loaders": "lenetish.data",
    "MissingDependencyError": "lenetish.errors",
    "MNISTConvNet": "lenetish.models",
    "MNISTWideNet": "lenetish.models",
    "ModelCheckpoint": "lenetish.callbacks",
    "ModelStack": "lenetish.stack",
    "NotFittedError": "lenetish.errors",
    "TrainerBusyError": "lenetish.errors",
    "TrainingDivergedError": "lenetish.errors",
    "OutputFileError": "lenetish.errors",
    "UnsupportedModelError": "lenetish.errors",
    "plot_confusion": "lenetish.plots",
    "plot_digits": "lenetish.plots",
    "plot_history": "lenetish.plots",
    "plot_mistakes": "lenetish.plots",
    "predict": "lenetish.evaluation",
    "Prediction": "lenetish.evaluation",
    "pretrained": "lenetish.shipped",
    "pretrained_info": "lenetish.shipped",
    "ProgressBar": "lenetish.callbacks",
    "RandomAffine": "lenetish.data.augment",
    "read_idx": "lenetish.data.idx",
    "Recipe": "lenetish.recipes",
    "RECIPES": "lenetish.recipes",
    "resolve_device": "lenetish._device",
    "save_weights": "lenetish.saving.checkpoint",
    "seed_everything": "lenetish._device",
    "SkipBatch": "lenetish.callbacks",
    "StackEvalResult": "lenetish.stack.evaluation",
    "StackLoader": "lenetish.stack.fitting",
    "StopTraining": "lenetish.callbacks",
    "TensorBoardLogger": "lenetish.callbacks",
    "TensorLoader": "lenetish.data.loaders",
    "TerminateOnNaN": "lenetish.callbacks",
    "Timer": "lenetish.callbacks",
    "train_ensemble": "lenetish.recipe_runs",
    "train_recipe": "lenetish.recipe_runs",
    "train_stack": "lenetish.recipe_runs",
    "TrainedModel": "lenetish.recipe_runs",
    "TrainedStack": "lenetish.recipe_runs",
    "Trainer": "lenetish.training.trainer",
    "TrainState": "lenetish.training.trainer",
    "write_idx": "lenetish.data.idx",
}


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first access (then it is a plain attribute)."""
    try:
        home = _HOMES[name]
    except KeyError:
        raise AttributeError(f"module 'lenetish' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])


__all__ = [
    "DATASETS",
    "EMA",
    "RECIPES",
    "BatchOutput",
    "CSVLogger",
    "Callback",
    "CheckpointError",
    "DatasetCorruptError",
    "DatasetInfo",
    "DatasetMismatchError",
    "DatasetNotFoundError",
    "DeviceUnavailableError",
    "DistributedError",
    "EarlyStopping",
    "EvalResult",
    "History",
    "InputShapeError",
    "InvalidArgumentError",
    "InvalidImageError",
    "InvalidInputError",
    "LRFinderResult",
    "LRSchedule",
    "LearningRateMonitor",
    "LenetishError",
    "Loaders",
    "MNISTConvNet",
    "MNISTWideNet",
    "MissingDependencyError",
    "ModelCheckpoint",
    "ModelStack",
    "NotFittedError",
    "OutputFileError",
    "Prediction",
    "ProgressBar",
    "RandomAffine",
    "Recipe",
    "SkipBatch",
    "StackEvalResult",
    "StackLoader",
    "StopTraining",
    "TensorBoardLogger",
    "TensorLoader",
    "TerminateOnNaN",
    "Timer",
    "TrainState",
    "TrainedModel",
    "TrainedStack",
    "Trainer",
    "TrainerBusyError",
    "TrainingDivergedError",
    "UnsupportedModelError",
    "__version__",
    "available_pretrained",
    "default_root",
    "evaluate",
    "export_model",
    "get_recipe",
    "is_main_process",
    "load_checkpoint",
    "load_model",
    "load_split",
    "load_weights",
    "lr_find",
    "make_loaders",
    "plot_confusion",
    "plot_digits",
    "plot_history",
    "plot_mistakes",
    "predict",
    "pretrained",
    "pretrained_info",
    "read_idx",
    "resolve_device",
    "save_weights",
    "seed_everything",
    "train_ensemble",
    "train_recipe",
    "train_stack",
    "write_idx",
]
