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
    "OutputFileError",
    "RequestRejectedError",
    "TrainerBusyError",
    "TrainingDivergedError",
    "UnsupportedModelError",
]


class LenetishError(Exception):
    """Base class of every exception raised on purpose by lenetish.

    Example:
        >>> from lenetish import LenetishError, MNISTConvNet, Trainer
        >>> try:
        ...     Trainer(MNISTConvNet(), epochs=0)
        ... except LenetishError as error:
        ...     print(f"{type(error).__name__}: {error}")
        InvalidArgumentError: epochs must be a positive integer, got 0
    """


class InvalidArgumentError(LenetishError, ValueError):
    """An argument has a value the function cannot use (the message names it and what fits).

    Example:
        >>> from lenetish import get_recipe
        >>> get_recipe("fastest")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        lenetish.errors.InvalidArgumentError: recipe='fastest' does not exist; use one of ...
    """


class InputShapeError(LenetishError, ValueError):
    """A tensor has the wrong shape (the message gives the expected and the received shape).

    Example:
        >>> from lenetish import MNISTConvNet
        >>> MNISTConvNet()(torch.zeros(2, 28, 28))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        lenetish.errors.InputShapeError: expected a batch of shape (N, 1, 28, 28), got ...
    """


class InvalidInputError(LenetishError, ValueError):
    """Inputs to ``predict`` cannot be used: empty, NaN/Inf, a wrong dtype or a blank image.

    Example:
        >>> from lenetish import MNISTConvNet, predict
        >>> predict(MNISTConvNet(), torch.full((28, 28), float("nan")))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        lenetish.errors.InvalidInputError: the images contain NaN or infinite values...
    """


class InvalidImageError(LenetishError, ValueError):
    """An image file is missing, unreadable, not an image, or too large to open safely.

    Example:
        >>> from lenetish import MNISTConvNet, predict
        >>> predict(MNISTConvNet(), "missing.png")
        Traceback (most recent call last):
            ...
        lenetish.errors.InvalidImageError: image file missing.png does not exist (or is not a file)
    """


class DeviceUnavailableError(LenetishError, RuntimeError):
    """A device was asked for that this machine does not have (e.g. ``cuda`` without a GPU).

    Example:
        >>> from lenetish import DeviceUnavailableError, resolve_device
        >>> try:
        ...     resolve_device("cuda:99")  # no machine has a hundred GPUs
        ... except DeviceUnavailableError as error:
        ...     print("cuda:99" in str(error), isinstance(error, RuntimeError))
        True True
    """


class DatasetNotFoundError(LenetishError, FileNotFoundError):
    """The dataset files are not where lenetish looked and could not be downloaded.

    The message lists the folders that were searched and the files that are needed.

    Example:
        >>> from lenetish import load_split
        >>> load_split("/nowhere", dataset="fashion-mnist", download=False)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        lenetish.errors.DatasetNotFoundError: fashion-mnist train files not found ...
    """


class DatasetCorruptError(LenetishError, ValueError):
    """A dataset file exists but its contents are not a valid idx file of the expected kind.

    The message names the file and what is wrong with it.

    Example:
        >>> import tempfile
        >>> from lenetish import read_idx
        >>> path = f"{tempfile.mkdtemp()}/train-labels-idx1-ubyte"
        >>> open(path, "wb").close()
        >>> read_idx(path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        lenetish.errors.DatasetCorruptError: .../train-labels-idx1-ubyte is empty: ...
    """


class DatasetMismatchError(LenetishError, ValueError):
    """The data, a model's record and the ``dataset=`` asked for name different datasets.

    Raised when files recognised by content (e.g. Fashion-MNIST) are loaded as another dataset
    (``dataset="mnist"``), or a model trained on one dataset is used with another's settings.
    The message names what the files (or the model) are and what to pass instead.

    Example:
        >>> from lenetish import DATASETS, TensorLoader, evaluate, pretrained
        >>> model = pretrained("default")  # records that it was trained on MNIST
        >>> images, labels = torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)
        >>> kmnist = TensorLoader(images, labels, batch_size=4, info=DATASETS["kmnist"])
        >>> evaluate(model, kmnist)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        lenetish.errors.DatasetMismatchError: the loader holds kmnist data ... trained on mnist; ...
    """


class CheckpointError(LenetishError, ValueError):
    """A checkpoint or weights file cannot be written, read, trusted or applied to the model.

    Example:
        >>> import tempfile
        >>> from lenetish import load_checkpoint
        >>> path = f"{tempfile.mkdtemp()}/last.pt"
        >>> with open(path, "w") as file:
        ...     _ = file.write("not a checkpoint")
        >>> load_checkpoint(path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        lenetish.errors.CheckpointError: checkpoint .../last.pt is damaged or truncated ...
    """


class OutputFileError(LenetishError, OSError):
    """A file lenetish was asked to write (a picture, a history) cannot be written there.

    Either the path is not a place for a regular file (a symbolic link, which lenetish never
    writes through, or a device, a FIFO or a folder, which it never replaces), or the write
    failed (e.g. the disk is full); any earlier file at the path is left as it was. It is an
    ``OSError`` too, so code that catches the operating system's errors keeps working.
    Checkpoints, weights and exports raise :class:`~lenetish.CheckpointError` for the same causes.

    Example:
        >>> import os, tempfile
        >>> from lenetish import History
        >>> folder = tempfile.mkdtemp()
        >>> os.symlink("/etc/hostname", f"{folder}/history.json")
        >>> History().to_json(f"{folder}/history.json")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        lenetish.errors.OutputFileError: refused to write ...history.json: it is a symbolic link...
    """


class MissingDependencyError(LenetishError, ImportError):
    """An optional feature needs a package that is not installed (the message names the extra).

    It is an ``ImportError`` too, so code that already guards optional imports catches it.

    Example:
        >>> from lenetish import MissingDependencyError
        >>> try:
        ...     raise MissingDependencyError("plots need matplotlib: pip install 'lenetish[plot]'")
        ... except ImportError as error:
        ...     print(error)
        plots need matplotlib: pip install 'lenetish[plot]'
    """


class DistributedError(LenetishError, RuntimeError):
    """A multi-process (torchrun) run is launched wrongly or its processes cannot connect.

    Example:
        >>> from lenetish.distributed import distributed_env
        >>> distributed_env({"WORLD_SIZE": "2"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        lenetish.errors.DistributedError: WORLD_SIZE=2 is set but RANK, LOCAL_RANK, ... are not; ...
    """


class NotFittedError(LenetishError, AttributeError):
    """Something that exists only during or after ``Trainer.fit`` was asked for before it.

    Example:
        >>> from lenetish import MNISTConvNet, Trainer
        >>> Trainer(MNISTConvNet(), device="cpu").optimizer  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        lenetish.errors.NotFittedError: trainer.optimizer exists once fit() has started ...
    """


class UnsupportedModelError(LenetishError, TypeError):
    """A model cannot run the way it was asked to, or returns something lenetish cannot score.

    For example ``channels_last=True`` on a network that flattens with ``.view`` (use
    ``torch.flatten`` or ``.reshape``, or leave ``channels_last="auto"``), or a forward pass
    that returns a tuple or a dict where one tensor of class scores is needed.

    Example:
        >>> from torch import nn
        >>> from lenetish import predict
        >>> class Pair(nn.Module):
        ...     def forward(self, x):
        ...         return x.flatten(1)[:, :10], x
        >>> predict(Pair(), torch.zeros(1, 28, 28))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        lenetish.errors.UnsupportedModelError: Pair returned a tuple; ...
    """


class TrainerBusyError(LenetishError, RuntimeError):
    """A :class:`~lenetish.Trainer` was asked to fit while it is already fitting.

    Two fits of one trainer would share its optimizer, state and History (an interleaved
    History, or a ``KeyError`` from the optimizer): give each thread its own Trainer.

    Example:
        >>> from lenetish import Callback, MNISTConvNet, Trainer, TrainerBusyError
        >>> class Again(Callback):
        ...     def on_fit_start(self, trainer, state):
        ...         trainer.fit(batches)
        >>> batches = [(torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,)))]
        >>> Trainer(MNISTConvNet(), callbacks=[Again()], device="cpu").fit(batches)
        Traceback (most recent call last):
            ...
        lenetish.errors.TrainerBusyError: this Trainer is already running a fit ...
    """


class TrainingDivergedError(LenetishError, RuntimeError):
    """The training loss became NaN or infinite and the fit was told to fail, not stop.

    Raised by :class:`~lenetish.TerminateOnNaN` with ``raise_error=True`` (Keras' option of
    that name): the fit ends with this error (``on_exception`` runs, ``on_fit_end`` does
    not), where the default only stops training.

    Example:
        >>> from lenetish import MNISTConvNet, TerminateOnNaN, Trainer
        >>> broken = [(torch.full((4, 1, 28, 28), float("nan")), torch.zeros(4).long())]
        >>> guard = TerminateOnNaN(raise_error=True)
        >>> Trainer(MNISTConvNet(), callbacks=[guard], device="cpu").fit(broken)
        Traceback (most recent call last):
            ...
        lenetish.errors.TrainingDivergedError: the training loss is nan at step 1 ...
    """


class RequestRejectedError(LenetishError, ValueError):
    """``lenetish serve`` refuses a request: too large, of an unknown type, malformed, or busy.

    The server answers with :attr:`status` and the message as a one-line JSON error; it is
    raised inside the server, so a client sees the answer, never the exception.

    Attributes:
        status: the HTTP status of the answer (400, 408, 413, 415 or 503).

    Example:
        >>> from lenetish.errors import RequestRejectedError
        >>> error = RequestRejectedError(413, "the upload is over 5,242,880 bytes")
        >>> error.status, str(error)
        (413, 'the upload is over 5,242,880 bytes')
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
