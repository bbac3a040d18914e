"""Tests of lenetish.resume: checkpoint state keyed by callback, and putting it back."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from lenetish import Callback, EarlyStopping, ModelCheckpoint, Trainer, TrainState
from lenetish.checkpoint import load_checkpoint, save_checkpoint
from tests.training_helpers import digit_batches, quick_trainer


class Tally(Callback):
    """Adds ``amount`` to a running total after every epoch; the total is its state."""

    def __init__(self, key: str, amount: int) -> None:
        self.state_key = key
        self.amount = amount
        self.total = 0

    def reset(self) -> None:
        self.total = 0

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        self.total += self.amount

    def state_dict(self) -> dict[str, Any]:
        return {"total": self.total}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.total = state["total"]


def _two_epochs(folder: Path, callbacks: list[Callback]) -> Path:
    """Fit 2 of 3 epochs with ``callbacks`` and a checkpoint; return the checkpoint."""
    trainer = quick_trainer(epochs=2, callbacks=[*callbacks, ModelCheckpoint(folder)])
    trainer.fit(digit_batches(20, 10))
    return folder / "last.pt"


def test_callbacks_resume_by_key_when_their_order_changes(tmp_path: Path) -> None:
    """Two callbacks of one class get their own states back though the list is reversed."""
    checkpoint = _two_epochs(tmp_path, [Tally("a", 1), Tally("b", 10)])
    a, b = Tally("a", 1), Tally("b", 10)
    quick_trainer(epochs=3, callbacks=[b, a]).fit(digit_batches(20, 10), resume=checkpoint)
    assert (a.total, b.total) == (3, 30)


def test_built_in_monitors_resume_by_their_settings(tmp_path: Path) -> None:
    """Two EarlyStopping watching different metrics resume into the right objects."""
    checkpoint = _two_epochs(tmp_path, [EarlyStopping("loss"), EarlyStopping("accuracy")])
    saved = load_checkpoint(checkpoint)["callbacks"]
    by_loss, by_accuracy = EarlyStopping("loss"), EarlyStopping("accuracy")
    trainer = quick_trainer(epochs=2, callbacks=[by_accuracy, by_loss])
    trainer.fit(digit_batches(20, 10), resume=checkpoint)  # nothing left to train
    assert by_loss.watch.best == saved["lenetish.EarlyStopping[monitor=loss]"]["best"]
    assert by_accuracy.watch.best == saved["lenetish.EarlyStopping[monitor=accuracy]"]["best"]
    assert by_loss.watch.best != by_accuracy.watch.best


def test_checkpoints_of_lenetish_0_1_resume_their_callbacks(tmp_path: Path) -> None:
    """States saved under 0.1's keys (class name, '#2' for repeats) are still found."""
    checkpoint = _two_epochs(tmp_path, [Tally("a", 1), Tally("b", 10)])
    state = load_checkpoint(checkpoint)
    callbacks = state["callbacks"]
    state["callbacks"] = {"Tally": callbacks["a"], "Tally#2": callbacks["b"]}
    save_checkpoint(tmp_path / "old.pt", state)
    a, b = Tally("a", 1), Tally("b", 10)
    quick_trainer(epochs=3, callbacks=[a, b]).fit(digit_batches(20, 10), resume=tmp_path / "old.pt")
    assert (a.total, b.total) == (3, 30)


def test_reset_runs_before_a_resumed_state_is_loaded(tmp_path: Path) -> None:
    """A callback that sets up per-fit state in reset() can load a saved state into it."""

    class SetUpInReset(Callback):
        def reset(self) -> None:
            self.seen: list[int] = []

        def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
            self.seen.append(state.epoch + 1)

        def state_dict(self) -> dict[str, Any]:
            return {"seen": list(self.seen)}

        def load_state_dict(self, state: dict[str, Any]) -> None:
            self.seen.extend(state["seen"])

    checkpoint = _two_epochs(tmp_path, [SetUpInReset()])
    callback = SetUpInReset()
    quick_trainer(epochs=3, callbacks=[callback]).fit(digit_batches(20, 10), resume=checkpoint)
    assert callback.seen == [1, 2, 3]


def test_a_callback_missing_from_the_checkpoint_starts_fresh_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stateful callback the checkpoint does not know is reset and named in a warning."""
    checkpoint = _two_epochs(tmp_path, [])
    late = Tally("late", 5)
    with caplog.at_level(logging.WARNING, "lenetish"):
        quick_trainer(epochs=3, callbacks=[late]).fit(digit_batches(20, 10), resume=checkpoint)
    assert "no state for callback late" in caplog.text
    assert late.total == 5
