"""Tests of lenetish.monitors: EarlyStopping and ModelCheckpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from lenetish import (
    Callback,
    EarlyStopping,
    InvalidArgumentError,
    ModelCheckpoint,
    TerminateOnNaN,
    Trainer,
    TrainState,
    load_checkpoint,
)
from tests.training_helpers import digit_batches, quick_trainer


class Scripted(Callback):
    """Replaces the metric 'score' with scripted values, one per epoch, before the monitors."""

    order = -10

    def __init__(self, values: list[float]) -> None:
        self.values = values

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        state.metrics["score"] = self.values[state.epoch]


def test_early_stopping_stops_after_patience() -> None:
    """No improvement for `patience` epochs stops training at that epoch."""
    stopper = EarlyStopping("score", mode="min", patience=2)
    trainer = quick_trainer(epochs=8, callbacks=[Scripted([3, 2, 2.5, 2.1, 1, 0, 0, 0]), stopper])
    history = trainer.fit(digit_batches(10, 10))
    assert len(history) == 4 and stopper.stopped_epoch == 4
    assert (stopper.watch.best, stopper.watch.best_epoch) == (2, 2)


def test_early_stopping_min_delta_ignores_small_gains() -> None:
    """Gains no larger than min_delta do not count as improvements."""
    stopper = EarlyStopping("score", mode="max", patience=1, min_delta=0.5)
    trainer = quick_trainer(epochs=5, callbacks=[Scripted([1, 1.4, 3, 3, 3]), stopper])
    assert len(trainer.fit(digit_batches(10, 10))) == 2


def test_early_stopping_restores_the_best_weights() -> None:
    """With restore_best the model ends with the weights of the best epoch."""
    snapshots: list[dict[str, torch.Tensor]] = []

    class Snapshot(Callback):
        order = -5

        def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
            snapshots.append({k: v.clone() for k, v in trainer.model.state_dict().items()})

    stopper = EarlyStopping("score", mode="min", patience=5, restore_best=True)
    trainer = quick_trainer(epochs=3, callbacks=[Scripted([2, 1, 3]), Snapshot(), stopper])
    trainer.fit(digit_batches(10, 10))
    final = trainer.model.state_dict()
    assert all(torch.equal(final[k], snapshots[1][k]) for k in final)


def test_early_stopping_auto_mode_maximises_accuracy() -> None:
    """mode='auto' maximises metrics named like accuracies and minimises the rest."""
    assert EarlyStopping("val_accuracy").watch.mode == "max"
    assert EarlyStopping("val_loss").watch.mode == "min"


def test_early_stopping_state_round_trip() -> None:
    """EarlyStopping's state_dict restores best, wait and stop epoch."""
    stopper = EarlyStopping("score", mode="min", patience=1)
    quick_trainer(epochs=3, callbacks=[Scripted([1, 2, 3]), stopper]).fit(digit_batches(10, 10))
    fresh = EarlyStopping("score", mode="min", patience=1)
    fresh.load_state_dict(stopper.state_dict())
    assert (fresh.watch.best, fresh.wait, fresh.stopped_epoch) == (1, 1, 2)


def test_missing_monitor_names_the_available_metrics() -> None:
    """Monitoring a metric that does not exist raises InvalidArgumentError listing the others."""
    with pytest.raises(InvalidArgumentError, match=r"monitor='val_loss' is not among.*accuracy"):
        quick_trainer(callbacks=[EarlyStopping()]).fit(digit_batches(10, 10))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"patience": 0}, "patience must be a positive integer"),
        ({"mode": "up"}, "mode must be 'auto', 'min' or 'max'"),
        ({"min_delta": -1.0}, "min_delta must be >= 0"),
        ({"monitor": ""}, "monitor must be a metric name"),
    ],
)
def test_early_stopping_settings_are_checked(arguments: dict[str, Any], message: str) -> None:
    """Bad EarlyStopping settings raise InvalidArgumentError naming the argument."""
    with pytest.raises(InvalidArgumentError, match=message):
        EarlyStopping(**arguments)


def test_model_checkpoint_writes_last_and_best(tmp_path: Path) -> None:
    """last.pt follows the latest epoch; best.pt the best monitored one."""
    saver = ModelCheckpoint(tmp_path, monitor="score", mode="min", save_best=True)
    quick_trainer(epochs=3, callbacks=[Scripted([2, 1, 3]), saver]).fit(digit_batches(10, 10))
    assert load_checkpoint(saver.last_path)["epoch"] == 3
    assert load_checkpoint(saver.best_path)["epoch"] == 2


def test_model_checkpoint_every_n_epochs(tmp_path: Path) -> None:
    """every_n_epochs spaces last.pt writes out, and the final epoch is always saved."""
    written: list[int] = []

    class Spy(Callback):
        order = 2000

        def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
            path = tmp_path / "last.pt"
            if path.exists():
                written.append(load_checkpoint(path)["epoch"])

    saver = ModelCheckpoint(tmp_path, every_n_epochs=2)
    quick_trainer(epochs=5, callbacks=[saver, Spy()]).fit(digit_batches(10, 10))
    assert written == [2, 2, 4, 5]


def test_model_checkpoint_runs_after_other_callbacks(tmp_path: Path) -> None:
    """The checkpoint holds the History row of the epoch it was written at."""
    saver = ModelCheckpoint(tmp_path)
    quick_trainer(epochs=2, callbacks=[saver]).fit(digit_batches(10, 10))
    assert len(load_checkpoint(saver.last_path)["callbacks"]["lenetish.History"]["rows"]) == 2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"every_n_epochs": 0}, "every_n_epochs must be a positive integer"),
        ({"save_last": False}, "save_best and save_last are both False"),
        ({"mode": "sideways"}, "mode must be 'auto', 'min' or 'max'"),
    ],
)
def test_model_checkpoint_settings_are_checked(
    tmp_path: Path, arguments: dict[str, Any], message: str
) -> None:
    """Bad ModelCheckpoint settings raise InvalidArgumentError naming the argument."""
    with pytest.raises(InvalidArgumentError, match=message):
        ModelCheckpoint(tmp_path, **arguments)


def test_model_checkpoint_keeps_the_last_good_file_when_training_diverges(
    tmp_path: Path,
) -> None:
    """A run that diverges in epoch 2 is stopped by TerminateOnNaN; epoch 1's file loads."""
    saver, guard = ModelCheckpoint(tmp_path), TerminateOnNaN()
    explode = lambda opt: torch.optim.lr_scheduler.LambdaLR(  # noqa: E731
        opt, lambda epoch: 1.0 if epoch < 1 else 1e14
    )
    trainer = quick_trainer(
        epochs=3, optimizer="sgd", lr=0.01, scheduler=explode, callbacks=[guard, saver]
    )
    trainer.fit(digit_batches(40, 10))
    assert guard.stopped_at_step is not None and guard.stopped_at_step > 4
    checkpoint = load_checkpoint(saver.last_path)
    assert checkpoint["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in checkpoint["model"].values())


def test_model_checkpoint_skips_a_non_finite_epoch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An epoch whose loss is NaN (stop requested in its last batch) is not saved."""
    saver = ModelCheckpoint(tmp_path)
    with caplog.at_level("WARNING", "lenetish"):
        quick_trainer(epochs=1, optimizer="sgd", lr=1e15, callbacks=[saver]).fit(
            digit_batches(40, 10)
        )
    assert not saver.last_path.exists()
    assert "non-finite loss; not saving" in caplog.text


def test_checkpoint_written_before_a_failing_callback_stays_intact(tmp_path: Path) -> None:
    """A user callback that raises in epoch 2 propagates; epoch 1's checkpoint still loads."""

    class Faulty(Callback):
        def on_batch_end(self, trainer: Trainer, state: TrainState, output: object) -> None:
            if state.epoch == 1:
                raise RuntimeError("user bug")

    saver = ModelCheckpoint(tmp_path)
    with pytest.raises(RuntimeError, match="user bug"):
        quick_trainer(epochs=3, callbacks=[Faulty(), saver]).fit(digit_batches(20, 10))
    assert load_checkpoint(saver.last_path)["epoch"] == 1
