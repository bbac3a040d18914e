"""The exception types lenetish raises for mistakes a user can make.

Every error derives from :class:`LenetishError`, so ``except LenetishError`` catches all of
them, and also from the closest built-in type (``ValueError``, ``FileNotFoundError``, ...), so
code written against plain Python exceptions keeps working.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "DatasetCorruptError",
    "DatasetMismatchError",
    "DatasetNotFoundError",
    "DeviceUnavailableError",
    "DistributedError",
    "InputShapeError",
    "InvalidArgumentError",
    "InvalidImageError",
    "InvalidInputError",
    "LenetishError",
    "MissingDependencyError",
    "NotFittedError",
]


class LenetishError(Exception):
    """Base class of every exception raised on purpose by lenetish."""


class InvalidArgumentError(LenetishError, ValueError):
    """An argument has a value the function cannot use (the message names it and what fits)."""


class InputShapeError(LenetishError, ValueError):
    """A tensor has the wrong shape (the message gives the expected and the received shape)."""


class InvalidInputError(LenetishError, ValueError):
    """Inputs to ``predict`` cannot be used: empty, NaN/Inf, a wrong dtype or a blank image."""


class InvalidImageError(LenetishError, ValueError):
    """An image file is missing, unreadable, not an image, or too large to open safely."""


class DeviceUnavailableError(LenetishError, RuntimeError):
    """A device was asked for that this machine does not have (e.g. ``cuda`` without a GPU)."""


class DatasetNotFoundError(LenetishError, FileNotFoundError):
    """The dataset files are not where lenetish looked and could not be downloaded.

    The message lists the folders that were searched and the files that are needed.
    """


class DatasetCorruptError(LenetishError, ValueError):
    """A dataset file exists but its contents are not a valid idx file of the expected kind.

    The message names the file and what is wrong with it.
    """


class DatasetMismatchError(LenetishError, ValueError):
    """The data, a model's record and the ``dataset=`` asked for name different datasets.

    Raised when files recognised by content (e.g. Fashion-MNIST) are loaded as another dataset
    (``dataset="mnist"``), or a model trained on one dataset is used with another's settings.
    The message names what the files (or the model) are and what to pass instead.
    """


class CheckpointError(LenetishError, ValueError):
    """A checkpoint or weights file cannot be written, read, trusted or applied to the model."""


class MissingDependencyError(LenetishError, ImportError):
    """An optional feature needs a package that is not installed (the message names the extra)."""


class DistributedError(LenetishError, RuntimeError):
    """A multi-process (torchrun) run is launched wrongly or its processes cannot connect."""


class NotFittedError(LenetishError, AttributeError):
    """Something that exists only during or after ``Trainer.fit`` was asked for before it."""
