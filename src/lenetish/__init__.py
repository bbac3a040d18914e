"""lenetish: train, evaluate and use LeNet-like CNNs on MNIST and its family with PyTorch."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from lenetish._device import resolve_device, seed_everything
from lenetish.data import DATASETS, DatasetInfo, Loaders, default_root, load_split, make_loaders
from lenetish.errors import (
    DatasetCorruptError,
    DatasetNotFoundError,
    DeviceUnavailableError,
    InputShapeError,
    InvalidArgumentError,
    LenetishError,
)
from lenetish.evaluation import EvalResult, evaluate
from lenetish.idx import read_idx, write_idx
from lenetish.loaders import TensorLoader
from lenetish.models import MNISTConvNet
from lenetish.trainer import Trainer

try:
    __version__ = version("lenetish")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "DATASETS",
    "DatasetCorruptError",
    "DatasetInfo",
    "DatasetNotFoundError",
    "DeviceUnavailableError",
    "EvalResult",
    "InputShapeError",
    "InvalidArgumentError",
    "LenetishError",
    "Loaders",
    "MNISTConvNet",
    "TensorLoader",
    "Trainer",
    "__version__",
    "default_root",
    "evaluate",
    "load_split",
    "make_loaders",
    "read_idx",
    "resolve_device",
    "seed_everything",
    "write_idx",
]
