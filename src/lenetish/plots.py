"""Headless PNG figures: digits, predictions, confusion matrix, training curves, mistakes, lr_find.

Needs the ``plot`` extra (matplotlib). Figures are drawn on matplotlib's Agg canvas directly,
so nothing here changes the user's pyplot backend or opens a window. Each PNG is written
atomically (a failure, e.g. a full disk, leaves the earlier picture as it was), and a symbolic
link, a device, a FIFO or a folder at the path is refused with
:class:`~lenetish.OutputFileError`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from lenetish._atomic import atomic_write
from lenetish.callbacks import History
from lenetish.errors import InvalidArgumentError, MissingDependencyError, OutputFileError

if TYPE_CHECKING:
    from lenetish.lr_finder import LRFinderResult

__all__ = ["plot_confusion", "plot_digits", "plot_history", "plot_lr_find", "plot_mistakes"]


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependencyError(
            "plotting needs matplotlib; install it with pip install 'lenetish[plot]' (in a "
            "lenetish checkout: pip install '.[plot]')"
        ) from exc
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``figure`` as a PNG through the atomic writer: a failure keeps the old picture."""
    target = Path(path)
    atomic_write(target, lambda handle: figure.savefig(handle, format="png"), error=OutputFileError)
    return target


def _as_images(images: Tensor) -> Tensor:
    """``(N, 28, 28)`` float on the CPU from ``(N, 1, 28, 28)`` or ``(N, 28, 28)``."""
    pictures = images.detach().cpu().float()
    if pictures.dim() == 4 and pictures.shape[1] == 1:
        pictures = pictures[:, 0]
    if pictures.dim() != 3 or pictures.shape[0] == 0:
        raise InvalidArgumentError(
            f"expected a non-empty batch of shape (N, 1, H, W) or (N, H, W), got "
            f"{tuple(images.shape)}"
        )
    return pictures


def plot_digits(
    images: Tensor,
    path: str | os.PathLike[str],
    *,
    labels: Sequence[int] | Tensor | None = None,
    predicted: Sequence[int] | Tensor | None = None,
    notes: Sequence[str] | None = None,
    columns: int = 8,
    title: str | None = None,
    classes: Sequence[str] | None = None,
) -> Path:
    """Draw a grid of images, captioned with labels and, if given, predictions.

    With ``predicted``, each caption reads ``actual / predicted`` and wrong ones are red.
    With ``classes`` (e.g. ``loaders.info.classes``), captions give class names, not numbers.

    Args:
        images: ``(N, 1, 28, 28)`` or ``(N, 28, 28)``, any value range.
        path: the PNG to write.
        labels: the true labels.
        predicted: predicted labels.
        notes: an extra caption line per image (e.g. a probability).
        columns: images per row.
        title: a title over the grid.
        classes: the class names, index = label.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        MissingDependencyError: matplotlib is not installed.
        OutputFileError: the PNG cannot be written (the disk is full, or ``path`` is a link,
            a device, a FIFO or a folder); an earlier file there is left as it was.
        InvalidArgumentError: ``images`` is empty or of the wrong shape.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> from lenetish import load_split, plot_digits
        >>> images, labels = load_split(train=False)
        >>> path = plot_digits(images[:16], f"{tempfile.mkdtemp()}/digits.png", labels=labels[:16])
        >>> path.name, Image.open(path).format
        ('digits.png', 'PNG')
    """
    pictures = _as_images(images)

    def name(label: int) -> str:
        return classes[label] if classes is not None and 0 <= label < len(classes) else str(label)

    count = pictures.shape[0]
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)
    row_height = 1.5 if notes is None else 1.8  # two caption lines need the room
    figure = _figure(1.3 * columns, row_height * rows + (0.4 if title else 0))
    for index in range(count):
        axes = figure.add_subplot(rows, columns, index + 1)
        axes.imshow(pictures[index].numpy(), cmap="gray")
        axes.set_xticks([])
        axes.set_yticks([])
        caption, colour = [], "black"
        if labels is not None:
            caption.append(name(int(labels[index])))
        if predicted is not None:
            guess = int(predicted[index])
            caption.append(f"pred {name(guess)}")
            if labels is not None and guess != int(labels[index]):
                colour = "red"
        if notes is not None:
            caption.append(notes[index])
        axes.set_title(
            " / ".join(caption[:2]) + ("\n" + caption[2] if len(caption) > 2 else ""),
            fontsize=8,
            color=colour,
        )
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return _save(figure, path)


def plot_mistakes(
    images: Tensor,
    labels: Tensor,
    probabilities: Tensor,
    path: str | os.PathLike[str],
    *,
    count: int = 16,
    classes: Sequence[str] | None = None,
) -> Path:
    """Draw the ``count`` most confidently misclassified images, with their confidence.

    Args:
        images: ``(N, 1, 28, 28)`` or ``(N, 28, 28)``.
        labels: true labels ``(N,)``.
        probabilities: predicted probabilities ``(N, classes)`` (e.g. from ``predict``).
        path: the PNG to write.
        count: how many mistakes to show at most.
        classes: the class names, index = label (captions give names, not numbers).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        InvalidArgumentError: there are no mistakes to show.
        MissingDependencyError: matplotlib is not installed.
        OutputFileError: the PNG cannot be written (the disk is full, or ``path`` is a link,
            a device, a FIFO or a folder); an earlier file there is left as it was.

    Example:
        The shipped weights get a few of the first 1,000 test digits wrong:

        >>> import tempfile
        >>> from PIL import Image
        >>> from lenetish import load_split, plot_mistakes, predict, pretrained
        >>> images, labels = load_split(train=False)
        >>> prediction = predict(pretrained(), images[:1000])
        >>> bool((prediction.labels != labels[:1000]).any())
        True
        >>> path = f"{tempfile.mkdtemp()}/mistakes.png"
        >>> probabilities = prediction.probabilities
        >>> Image.open(plot_mistakes(images[:1000], labels[:1000], probabilities, path)).format
        'PNG'
    """
    confidence, predicted = probabilities.cpu().max(dim=1)
    wrong = (predicted != labels.cpu()).nonzero().flatten()
    if wrong.numel() == 0:
        raise InvalidArgumentError("there are no misclassified images to plot")
    chosen = wrong[confidence[wrong].argsort(descending=True)[:count]]
    return plot_digits(
        images[chosen.to(images.device)],
        path,
        labels=labels.cpu()[chosen],
        predicted=predicted[chosen],
        notes=[f"p={float(confidence[i]):.3f}" for i in chosen],
        title="most confident mistakes (actual / predicted)",
        classes=classes,
    )


def plot_confusion(
    confusion: Tensor, path: str | os.PathLike[str], *, classes: Sequence[str] | None = None
) -> Path:
    """Draw a confusion matrix (rows: actual, columns: predicted) with its counts.

    Args:
        confusion: ``(C, C)`` counts, e.g. :attr:`EvalResult.confusion
            <lenetish.EvalResult>`.
        path: the PNG to write.
        classes: the class names for the axes (default: ``0`` to ``C-1``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        InvalidArgumentError: ``confusion`` is not a square matrix.
        MissingDependencyError: matplotlib is not installed.
        OutputFileError: the PNG cannot be written (the disk is full, or ``path`` is a link,
            a device, a FIFO or a folder); an earlier file there is left as it was.

    Example:
        :func:`~lenetish.evaluate` counts the matrix of a whole test set; here it is counted
        from the predictions for the first 1,000 test digits:

        >>> import tempfile
        >>> from lenetish import DATASETS, load_split, plot_confusion, predict, pretrained
        >>> images, labels = load_split(train=False)
        >>> predicted = predict(pretrained(), images[:1000]).labels
        >>> confusion = torch.bincount(labels[:1000] * 10 + predicted, minlength=100).view(10, 10)
        >>> int(confusion.sum()), bool(confusion.trace() > 980)  # the diagonal: right answers
        (1000, True)
        >>> path = f"{tempfile.mkdtemp()}/confusion.png"
        >>> plot_confusion(confusion, path, classes=DATASETS["mnist"].classes).name
        'confusion.png'
    """
    matrix = confusion.detach().cpu()
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        raise InvalidArgumentError(f"confusion must be square, got {tuple(matrix.shape)}")
    size = matrix.shape[0]
    names = list(classes) if classes is not None else [str(i) for i in range(size)]
    figure = _figure(7, 6)
    axes = figure.add_subplot(1, 1, 1)
    shown = torch.log1p(matrix.double()).numpy()  # the diagonal would hide everything else
    axes.imshow(shown, cmap="Blues")
    for row in range(size):
        for column in range(size):
            value = int(matrix[row, column])
            if value:
                axes.text(
                    column,
                    row,
                    str(value),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if row == column else "black",
                )
    axes.set_xticks(range(size), names, rotation=45, ha="right")
    axes.set_yticks(range(size), names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    correct = int(matrix.trace())
    axes.set_title(f"accuracy {correct / max(int(matrix.sum()), 1):.2%}")
    figure.tight_layout()
    return _save(figure, path)


def plot_history(history: History, path: str | os.PathLike[str]) -> Path:
    """Draw loss and accuracy per epoch (training and, when present, validation).

    Args:
        history: what :meth:`Trainer.fit <lenetish.Trainer.fit>` returned.
        path: the PNG to write.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        InvalidArgumentError: the history has no rows.
        MissingDependencyError: matplotlib is not installed.
        OutputFileError: the PNG cannot be written (the disk is full, or ``path`` is a link,
            a device, a FIFO or a folder); an earlier file there is left as it was.

    Example:
        >>> import tempfile
        >>> from lenetish import MNISTConvNet, Trainer, plot_history
        >>> batches = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))]
        >>> history = Trainer(MNISTConvNet(), epochs=3, device="cpu").fit(batches, val=batches)
        >>> plot_history(history, f"{tempfile.mkdtemp()}/history.png").name
        'history.png'
    """
    if not len(history):
        raise InvalidArgumentError("the history is empty: train for an epoch first")
    figure = _figure(10, 4)
    epochs = history.column("epoch")
    for position, metric in enumerate(("loss", "accuracy"), start=1):
        axes = figure.add_subplot(1, 2, position)
        for prefix in ("", "val_"):
            values = history.column(prefix + metric)
            if values:
                axes.plot(
                    # the epochs that recorded it (validation_freq > 1 skips some)
                    [row["epoch"] for row in history if prefix + metric in row],
                    values,
                    marker="o",
                    label="validation" if prefix else "training",
                )
        axes.set_xticks(epochs if len(epochs) <= 12 else epochs[:: math.ceil(len(epochs) / 12)])
        axes.set_xlabel("epoch")
        axes.set_ylabel(metric)
        axes.legend()
        axes.grid(alpha=0.3)
    figure.tight_layout()
    return _save(figure, path)


def plot_lr_find(result: LRFinderResult, path: str | os.PathLike[str]) -> Path:
    """Draw :func:`~lenetish.lr_find`'s losses against the learning rate on a log axis.

    The raw losses are drawn faintly, the smoothed ones solidly, and the suggestion (when
    there is one) as a red point and a dashed line. The loss axis stops a little above the
    highest smoothed loss before any divergence, so the climb at the end does not flatten the
    rest. :meth:`LRFinderResult.plot <lenetish.LRFinderResult.plot>` calls it.

    Args:
        result: what :func:`~lenetish.lr_find` returned.
        path: the PNG to write.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        InvalidArgumentError: the result holds no steps.
        MissingDependencyError: matplotlib is not installed.
        OutputFileError: the PNG cannot be written (see :func:`~lenetish.plot_history`).

    Example:
        >>> import tempfile
        >>> from lenetish import LRFinderResult
        >>> from lenetish.plots import plot_lr_find
        >>> result = LRFinderResult((1e-4, 1e-3, 1e-2, 1e-1), (2.3, 2.0, 1.2, 1.5),
        ...                         (2.3, 2.1, 1.8, 1.7), 1e-2, False)
        >>> plot_lr_find(result, f"{tempfile.mkdtemp()}/lr_find.png").name
        'lr_find.png'
    """
    if not result.lrs:
        raise InvalidArgumentError("the lr_find result holds no steps: run lr_find first")
    figure = _figure(7, 4.5)
    axes = figure.add_subplot(1, 1, 1)
    axes.plot(result.lrs, result.losses, color="0.6", linewidth=0.8, label="loss")
    axes.plot(result.lrs, result.smoothed_losses, color="C0", label="smoothed loss")
    if result.suggestion is not None:
        at = result.lrs.index(result.suggestion)
        axes.axvline(result.suggestion, color="C3", linestyle="--", linewidth=0.8)
        axes.plot(
            [result.suggestion],
            [result.smoothed_losses[at]],
            "o",
            color="C3",
            label=f"suggestion {result.suggestion:.2g}",
        )
    before = result.smoothed_losses[:-1] if result.diverged else result.smoothed_losses
    shown = [x for x in (*before, *result.losses[: len(before)]) if math.isfinite(x)]
    highest = max((x for x in before if math.isfinite(x)), default=None)
    if shown and highest is not None:  # keep the climb at the end from flattening the rest
        lowest = min(shown)
        margin = 0.1 * (highest - lowest) or 0.1 * abs(highest) or 0.1
        axes.set_ylim(lowest - margin, highest + margin)
    axes.set_xscale("log")
    axes.set_xlabel("learning rate")
    axes.set_ylabel("training loss")
    axes.set_title("learning-rate finder")
    axes.legend()
    axes.grid(alpha=0.3, which="both")
    figure.tight_layout()
    return _save(figure, path)
