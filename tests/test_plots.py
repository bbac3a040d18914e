"""Tests of lenetish.plots: every figure is written as a PNG, and errors are clear."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
import torch

from lenetish import (
    History,
    InvalidArgumentError,
    MissingDependencyError,
    plot_confusion,
    plot_digits,
    plot_history,
    plot_mistakes,
)
from lenetish.errors import OutputFileError
from tests.full_disk import fill_disk_after

pytest.importorskip("matplotlib")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG_SIGNATURE


def test_digit_grid_with_labels(tmp_path: Path) -> None:
    """A grid of training digits with their labels is written as a PNG."""
    path = plot_digits(torch.rand(10, 1, 28, 28), tmp_path / "grid.png", labels=list(range(10)))
    assert path == tmp_path / "grid.png" and _is_png(path)


def test_prediction_grid_marks_wrong_ones(tmp_path: Path) -> None:
    """A grid with actual and predicted labels is written (wrong captions in red)."""
    labels, predicted = torch.tensor([1, 2, 3]), torch.tensor([1, 7, 3])
    path = plot_digits(
        torch.rand(3, 28, 28),
        tmp_path / "p.png",
        labels=labels,
        predicted=predicted,
        title="actual / predicted",
    )
    assert _is_png(path)


def test_confusion_matrix(tmp_path: Path) -> None:
    """A 10x10 confusion matrix is drawn with class names."""
    confusion = torch.randint(0, 50, (10, 10))
    assert _is_png(plot_confusion(confusion, tmp_path / "c.png", classes=list("abcdefghij")))


def test_training_curves(tmp_path: Path) -> None:
    """Loss and accuracy curves are drawn from a History."""
    history = History(
        [
            {"epoch": 1, "loss": 0.5, "accuracy": 0.8, "val_loss": 0.4, "val_accuracy": 0.85},
            {"epoch": 2, "loss": 0.3, "accuracy": 0.9},
        ]
    )
    assert _is_png(plot_history(history, tmp_path / "curves.png"))


def test_most_confident_mistakes(tmp_path: Path) -> None:
    """The misclassified images with the highest confidence are drawn."""
    probabilities = torch.softmax(torch.randn(20, 10), dim=1)
    labels = (probabilities.argmax(dim=1) + torch.tensor([0, 1] * 10)) % 10
    assert _is_png(
        plot_mistakes(torch.rand(20, 28, 28), labels, probabilities, tmp_path / "m.png", count=4)
    )


def test_no_mistakes_is_refused(tmp_path: Path) -> None:
    """plot_mistakes with a perfect prediction raises InvalidArgumentError."""
    probabilities = torch.eye(10)
    with pytest.raises(InvalidArgumentError, match="no misclassified images"):
        plot_mistakes(torch.rand(10, 28, 28), torch.arange(10), probabilities, tmp_path / "m.png")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: plot_digits(torch.rand(0, 28, 28), p), r"non-empty batch.*\(0, 28, 28\)"),
        (lambda p: plot_confusion(torch.zeros(3, 4), p), r"confusion must be square"),
        (lambda p: plot_history(History(), p), "the history is empty"),
    ],
)
def test_bad_inputs_are_refused(tmp_path: Path, call: object, message: str) -> None:
    """Empty batches, non-square matrices and empty histories raise InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError, match=message):
        call(tmp_path / "x.png")  # type: ignore[operator]


def test_missing_matplotlib_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without matplotlib, plotting raises MissingDependencyError naming the plot extra."""
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'lenetish\[plot\]'"):
        plot_digits(torch.rand(1, 28, 28), tmp_path / "x.png")


def test_symlinked_path_is_refused_and_its_target_kept(tmp_path: Path) -> None:
    """A symbolic link at the PNG's path is refused; the file it points to is unchanged."""
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    link = tmp_path / "grid.png"
    link.symlink_to(outside)
    with pytest.raises(OutputFileError, match=r"grid\.png: it is a symbolic link \(to "):
        plot_digits(torch.rand(4, 28, 28), link)
    assert outside.read_text() == "precious" and link.is_symlink()


def test_fifo_at_the_path_is_refused(tmp_path: Path) -> None:
    """A FIFO at the PNG's path is refused without opening it (which would block)."""
    fifo = tmp_path / "grid.png"
    os.mkfifo(fifo)
    with pytest.raises(OutputFileError, match=r"it is a FIFO \(named pipe\)"):
        plot_digits(torch.rand(4, 28, 28), fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_folder_at_the_path_is_refused(tmp_path: Path) -> None:
    """A folder at the PNG's path is refused by name."""
    (tmp_path / "grid.png").mkdir()
    with pytest.raises(OutputFileError, match=r"grid\.png: it is a folder; lenetish replaces"):
        plot_digits(torch.rand(4, 28, 28), tmp_path / "grid.png")


def test_full_disk_keeps_the_earlier_picture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills while drawing raises OutputFileError; the old PNG stays whole."""
    path = plot_digits(torch.rand(4, 28, 28), tmp_path / "grid.png")
    before = path.read_bytes()
    fill_disk_after(monkeypatch, room=100)
    with pytest.raises(OutputFileError, match=r"No space left on device.*free some space"):
        plot_digits(torch.rand(9, 28, 28), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]
