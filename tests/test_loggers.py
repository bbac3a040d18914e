"""Tests of lenetish.loggers: ProgressBar, CSVLogger and TensorBoardLogger."""

from __future__ import annotations

import csv
import io
import os
import stat
import sys
from pathlib import Path

import pytest

import lenetish.callbacks.loggers
from lenetish import (
    BatchOutput,
    Callback,
    CSVLogger,
    History,
    InvalidArgumentError,
    MissingDependencyError,
    ProgressBar,
    StopTraining,
    TensorBoardLogger,
    Trainer,
    TrainState,
)
from lenetish.errors import OutputFileError
from tests.full_disk import fill_disk_after
from tests.training_helpers import Recorder, digit_batches, quick_trainer


def test_progress_bar_draws_one_bar_per_epoch_in_place() -> None:
    """An enabled bar writes one line per epoch, redrawn with carriage returns."""
    stream = io.StringIO()
    bar = ProgressBar(enabled=True, refresh_every=1, stream=stream)
    quick_trainer(epochs=2, callbacks=[bar]).fit(digit_batches(30, 10))
    text = stream.getvalue()
    assert "epoch 1/2" in text and "epoch 2/2" in text
    assert text.count("\n") == 2 and "\r" in text
    assert "loss=" in text and "accuracy=" in text


def test_progress_bar_is_off_when_not_a_terminal() -> None:
    """With enabled=None the bar stays silent on a stream that is not a terminal."""
    stream = io.StringIO()
    quick_trainer(callbacks=[ProgressBar(stream=stream)]).fit(digit_batches(10, 10))
    assert stream.getvalue() == ""


def test_progress_bar_closes_after_a_stop_mid_epoch() -> None:
    """A bar left open by a stop request is closed at the end of the fit."""
    bar = ProgressBar(enabled=True, stream=io.StringIO())
    stop = Recorder(raise_in="on_batch_end", signal=StopTraining())
    quick_trainer(epochs=2, callbacks=[bar, stop]).fit(digit_batches(30, 10))
    assert stop.calls[-1] == "on_fit_end" and "on_epoch_end" not in stop.calls
    assert bar.bar is None


def test_progress_bar_refresh_every_is_checked() -> None:
    """refresh_every must be a positive integer."""
    with pytest.raises(InvalidArgumentError, match="refresh_every must be a positive integer"):
        ProgressBar(refresh_every=0)


def test_csv_logger_writes_the_history(tmp_path: Path) -> None:
    """CSVLogger leaves a CSV that History.from_csv reads back to the same rows."""
    path = tmp_path / "logs" / "history.csv"
    trainer = quick_trainer(epochs=2, callbacks=[CSVLogger(path)])
    history = trainer.fit(digit_batches(20, 10))
    assert History.from_csv(path).rows == history.rows


def test_tensorboard_logger_writes_event_files(tmp_path: Path) -> None:
    """TensorBoardLogger writes an event file with the epoch metrics."""
    pytest.importorskip("tensorboard")
    logger = TensorBoardLogger(tmp_path / "tb")
    quick_trainer(epochs=2, callbacks=[logger]).fit(digit_batches(10, 10))
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert logger.writer is None


def test_tensorboard_logger_without_tensorboard_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without tensorboard installed, a MissingDependencyError names the extra to install."""
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'lenetish\[tensorboard\]'"):
        TensorBoardLogger(tmp_path)


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_progress_bar_is_off_under_ci_even_in_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI=true silences the automatic bar."""
    monkeypatch.setenv("CI", "true")
    stream = Terminal()
    quick_trainer(callbacks=[ProgressBar(stream=stream)]).fit(digit_batches(10, 10))
    assert stream.getvalue() == ""


def test_progress_bar_shows_in_a_jupyter_notebook(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a Jupyter kernel with ipywidgets the automatic bar is on, through tqdm.auto."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(lenetish.callbacks.loggers, "in_notebook", lambda: True)
    monkeypatch.setattr(lenetish.callbacks.loggers, "_have_widgets", lambda: True)
    drawn: list[object] = []
    monkeypatch.setattr("tqdm.auto.tqdm", lambda **options: drawn.append(options) or _NoBar())
    quick_trainer(callbacks=[ProgressBar(stream=io.StringIO())]).fit(digit_batches(10, 10))
    assert len(drawn) == 1


class _NoBar:
    """Stands in for a notebook widget."""

    def update(self, count: int) -> None:
        pass

    def set_postfix(self, *args: object, **kwargs: object) -> None:
        pass

    def close(self) -> None:
        pass


def test_csv_logger_append_keeps_earlier_fits_rows(tmp_path: Path) -> None:
    """With append=True a second fit's rows follow the first fit's in the file."""
    path = tmp_path / "h.csv"
    trainer = quick_trainer(epochs=2, callbacks=[CSVLogger(path, append=True)])
    trainer.fit(digit_batches(10, 10))
    trainer.fit(digit_batches(10, 10))
    assert History.from_csv(path).column("epoch") == [1, 2, 1, 2]


def test_csv_logger_without_append_starts_afresh_each_fit(tmp_path: Path) -> None:
    """By default each fit rewrites the file from its own History."""
    path = tmp_path / "h.csv"
    trainer = quick_trainer(epochs=2, callbacks=[CSVLogger(path)])
    trainer.fit(digit_batches(10, 10))
    trainer.fit(digit_batches(10, 10))
    assert History.from_csv(path).column("epoch") == [1, 2]


def test_csv_logger_refuses_a_symlinked_path_and_keeps_its_target(tmp_path: Path) -> None:
    """A symbolic link at CSVLogger's path is refused; the file it points to is unchanged."""
    outside = tmp_path / "outside.csv"
    outside.write_text("precious\n")
    link = tmp_path / "history.csv"
    link.symlink_to(outside)
    with pytest.raises(OutputFileError, match=r"history\.csv: it is a symbolic link \(to "):
        quick_trainer(callbacks=[CSVLogger(link)]).fit(digit_batches(10, 10))
    assert outside.read_text() == "precious\n" and link.is_symlink()


def test_csv_logger_refuses_a_fifo_without_reading_it(tmp_path: Path) -> None:
    """With append=True a FIFO at the path is refused, never opened (reading it would block)."""
    fifo = tmp_path / "history.csv"
    os.mkfifo(fifo)
    with pytest.raises(OutputFileError, match=r"it is a FIFO \(named pipe\)"):
        quick_trainer(callbacks=[CSVLogger(fifo, append=True)]).fit(digit_batches(10, 10))
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_csv_logger_on_a_full_disk_keeps_the_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills while the CSV is rewritten raises OutputFileError; no torn row is left."""
    path = tmp_path / "history.csv"
    trainer = quick_trainer(epochs=2, callbacks=[CSVLogger(path, append=True)])
    trainer.fit(digit_batches(10, 10))
    before = path.read_bytes()
    fill_disk_after(monkeypatch, room=len(before) + 5)
    with pytest.raises(OutputFileError, match=r"history\.csv: \[Errno 28\] No space left"):
        trainer.fit(digit_batches(10, 10))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["history.csv"]


def test_CSVLogger(tmp_path: Path) -> None:
    """Keras: a tab separator throughout; appending two fits keeps one header, same columns."""
    path = tmp_path / "history.tsv"
    logger = CSVLogger(path, separator="\t", append=True)
    for _ in range(2):
        quick_trainer(epochs=2, callbacks=[logger]).fit(digit_batches(10, 10))
    text = path.read_text()
    assert csv.Sniffer().sniff(text).delimiter == "\t"
    lines = text.splitlines()
    assert len(lines) == 5 and all(line.count("\t") == 4 for line in lines)
    assert text.count("epoch") == 1
    assert History.from_csv(path, separator="\t").column("epoch") == [1, 2, 1, 2]


@pytest.mark.parametrize("separator", ["", ";;", '"', "\n", 9])
def test_csv_logger_separator_is_checked(separator: object) -> None:
    """A separator must be one character other than a quote or a line break."""
    with pytest.raises(InvalidArgumentError, match="separator must be one character other than"):
        CSVLogger("h.csv", separator=separator)  # type: ignore[arg-type]


def test_a_missing_value_is_an_empty_cell_not_na(tmp_path: Path) -> None:
    """An epoch without validation has empty val_* cells (Keras writes NA); they read as absent."""
    path = tmp_path / "history.csv"
    trainer = quick_trainer(epochs=2, validation_freq=2, callbacks=[CSVLogger(path)])
    trainer.fit(digit_batches(10, 10), digit_batches(10, 10))
    rows = list(csv.DictReader(path.open()))
    assert rows[0]["val_loss"] == "" and rows[1]["val_loss"] not in ("", "NA")
    assert ["val_loss" in row for row in History.from_csv(path)] == [False, True]


def test_an_epoch_cut_short_by_a_stop_is_not_a_row(tmp_path: Path) -> None:
    """A stop in epoch 2's first batch leaves one row (Keras would write the partial epoch)."""
    path = tmp_path / "history.csv"

    class StopInEpochTwo(Callback):
        def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
            if state.epoch == 1:
                raise StopTraining

    trainer = quick_trainer(epochs=3, callbacks=[CSVLogger(path), StopInEpochTwo()])
    trainer.fit(digit_batches(20, 10))
    assert trainer.state.global_step == 3
    assert History.from_csv(path).column("epoch") == [1]


def test_off_a_terminal_the_bar_becomes_plain_lines_every_few_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not a terminal (a StringIO): one flushed line per line_every seconds, no tqdm bar."""
    monkeypatch.delenv("CI", raising=False)
    screen = io.StringIO()
    bar = ProgressBar(stream=screen, line_every=0)
    quick_trainer(callbacks=[bar]).fit(digit_batches(30, 10))
    lines = screen.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "epoch 1/1: 1/3 batches",
        "epoch 1/1: 2/3 batches",
        "epoch 1/1: 3/3 batches",
    ]


def test_a_long_line_interval_prints_nothing_in_a_short_epoch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the default 30 s, a short epoch off a terminal prints no line."""
    monkeypatch.delenv("CI", raising=False)
    screen = io.StringIO()
    quick_trainer(callbacks=[ProgressBar(stream=screen, line_every=30)]).fit(digit_batches(30, 10))
    assert screen.getvalue() == ""


def test_a_negative_line_interval_is_refused() -> None:
    """line_every must be a number of seconds >= 0."""
    with pytest.raises(InvalidArgumentError, match="line_every must be a number of seconds >= 0"):
        ProgressBar(line_every=-1)
