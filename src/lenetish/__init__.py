"""lenetish: train, evaluate and use LeNet-like CNNs on MNIST and its family with PyTorch."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from lenetish._device import resolve_device, seed_everything
from lenetish.augment import RandomAffine
from lenetish.callbacks import (
    EMA,
    Callback,
    CSVLogger,
    EarlyStopping,
    History,
    LRSchedule,
    ModelCheckpoint,
    ProgressBar,
    SkipBatch,
    StopTraining,
    TensorBoardLogger,
    TerminateOnNaN,
    Timer,
)
from lenetish.checkpoint import load_checkpoint, save_weights
from lenetish.data import DATASETS, DatasetInfo, Loaders, default_root, load_split, make_loaders
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
)
from lenetish.evaluation import EvalResult, Prediction, evaluate, predict
from lenetish.export import export_model
from lenetish.idx import read_idx, write_idx
from lenetish.loaders import TensorLoader
from lenetish.models import MNISTConvNet, MNISTWideNet
from lenetish.plots import plot_confusion, plot_digits, plot_history, plot_mistakes
from lenetish.pretrained import available_pretrained, pretrained, pretrained_info
from lenetish.recipes import (
    RECIPES,
    Recipe,
    TrainedModel,
    get_recipe,
    train_ensemble,
    train_recipe,
)
from lenetish.stack import ModelStack
from lenetish.stack_eval import StackEvalResult
from lenetish.stack_fit import StackLoader
from lenetish.trainer import BatchOutput, Trainer, TrainState
from lenetish.weightfiles import load_model, load_weights

try:
    __version__ = version("lenetish")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

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
    "LRSchedule",
    "LenetishError",
    "Loaders",
    "MNISTConvNet",
    "MNISTWideNet",
    "MissingDependencyError",
    "ModelCheckpoint",
    "ModelStack",
    "NotFittedError",
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
    "Trainer",
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
    "write_idx",
]
