"""Tests of lenetish.callbacks.monitors: EarlyStopping."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from lenetish import (
    EMA,
    BatchOutput,
    Callback,
    CheckpointError,
    EarlyStopping,
    InvalidArgumentError,
    MNISTConvNet,
    Trainer,
    TrainState,
)
from tests.training_helpers import Recorder, Scripted, digit_batches, quick_trainer


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
    """mode='auto' maximises the trainer's accuracy and minimises its loss."""
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
    stopper = EarlyStopping("missing_loss", mode="min")
    with pytest.raises(InvalidArgumentError, match=r"monitor='missing_loss' is not among.*accur"):
        quick_trainer(callbacks=[stopper]).fit(digit_batches(10, 10))


def test_a_val_monitor_without_validation_fails_before_training() -> None:
    """EarlyStopping('val_loss') in a fit without val= is refused before the first step."""
    recorder = Recorder()
    with pytest.raises(InvalidArgumentError, match="given no val= batches"):
        quick_trainer(callbacks=[EarlyStopping(), recorder]).fit(digit_batches(10, 10))
    assert "on_batch_start" not in recorder.calls


class Declared:
    """A torchmetrics-style metric (update/compute/reset) that declares its direction."""

    def __init__(self, higher_is_better: bool | None) -> None:
        self.higher_is_better = higher_is_better
        self.total = 0.0

    def reset(self) -> None:
        self.total = 0.0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.total += float(targets.numel())

    def compute(self) -> float:
        return self.total


@pytest.mark.parametrize(
    ("monitor", "mode"),
    [
        ("loss", "min"),
        ("val_loss", "min"),
        ("accuracy", "max"),
        ("val_accuracy", "max"),
        ("accuracy/0", "max"),
        ("val_loss/3", "min"),
    ],
)
def test_auto_mode_knows_the_trainers_own_metrics_by_exact_name(monitor: str, mode: str) -> None:
    """loss, accuracy, their val_ copies and a stack member's /i forms are decided at once."""
    assert EarlyStopping(monitor).watch.mode == mode


@pytest.mark.parametrize(
    "monitor",
    [
        "accuracy_gap",
        "acc_gap",
        "f1_drop",
        "val_acc_std",
        "loss_improvement",
        "error_reduction",
        "val_worst",
    ],
)
def test_auto_mode_refuses_a_name_whose_words_it_once_guessed(monitor: str) -> None:
    """A name outside the exact table is refused at fit start, asking for mode=."""
    recorder = Recorder()
    with pytest.raises(
        InvalidArgumentError,
        match=rf"EarlyStopping\(mode='auto'\) cannot tell whether '{monitor}'.*"
        r"pass mode='min' or mode='max'",
    ):
        quick_trainer(callbacks=[EarlyStopping(monitor), recorder]).fit(digit_batches(10, 10))
    assert "on_batch_start" not in recorder.calls


def test_a_metric_declaring_higher_is_better_false_is_minimised() -> None:
    """A metrics= object with higher_is_better=False (torchmetrics' attribute) gives min."""
    stopper = EarlyStopping("val_f1_drop", patience=5)  # "f1" once made it "max"
    trainer = quick_trainer(metrics={"f1_drop": Declared(False)}, callbacks=[stopper])
    trainer.fit(digit_batches(10, 10), digit_batches(10, 10))
    assert stopper.watch.mode == "min"


def test_a_metric_function_declaring_higher_is_better_true_is_maximised() -> None:
    """A metric function given a higher_is_better=True attribute gives max."""

    def hits(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (outputs.argmax(1) == targets).float().mean()

    hits.higher_is_better = True  # type: ignore[attr-defined]
    stopper = EarlyStopping("hits", patience=5)
    quick_trainer(metrics={"hits": hits}, callbacks=[stopper]).fit(digit_batches(10, 10))
    assert stopper.watch.mode == "max"


def test_a_metric_without_a_declared_direction_is_refused_by_name() -> None:
    """A metrics= entry whose higher_is_better is None makes mode='auto' name it and refuse."""
    stopper = EarlyStopping("val_gap")
    trainer = quick_trainer(metrics={"gap": Declared(None)}, callbacks=[stopper])
    with pytest.raises(
        InvalidArgumentError, match=r"the metric 'gap' of metrics= has no higher_is_better"
    ):
        trainer.fit(digit_batches(10, 10), digit_batches(10, 10))


def test_an_undecided_auto_mode_cannot_compare_values_before_a_fit() -> None:
    """Before fit start, a watch whose auto mode is undecided refuses to rank values."""
    watch = EarlyStopping("val_f1").watch
    with pytest.raises(InvalidArgumentError, match=r"mode='auto' for 'val_f1' is decided when"):
        watch.improves(1.0, 2.0)


def test_the_resolved_mode_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """mode='auto' logs its decision at INFO once, not again at the next fit."""
    stopper = EarlyStopping("loss", patience=5)
    with caplog.at_level(logging.INFO, "lenetish"):
        quick_trainer(callbacks=[stopper]).fit(digit_batches(10, 10))
        quick_trainer(callbacks=[stopper]).fit(digit_batches(10, 10))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("EarlyStopping:")]
    assert lines == ["EarlyStopping: minimises 'loss' (mode='min': the trainer's own 'loss')"]


def test_an_infinite_monitored_value_stops_the_run() -> None:
    """check_finite (on by default) stops at the first inf/NaN value of the monitor."""
    stopper = EarlyStopping("score", mode="min", patience=10)
    history = quick_trainer(epochs=5, callbacks=[Scripted([3, 2, math.inf, 1, 1]), stopper]).fit(
        digit_batches(10, 10)
    )
    assert len(history) == 3 and stopper.stopped_epoch == 3


def test_a_baseline_must_be_beaten() -> None:
    """With baseline=1, values above it never count as improvements (mode min)."""
    stopper = EarlyStopping("score", mode="min", patience=2, baseline=1.0)
    history = quick_trainer(epochs=5, callbacks=[Scripted([3, 2, 2, 2, 2]), stopper]).fit(
        digit_batches(10, 10)
    )
    assert len(history) == 2


def test_start_from_epoch_ignores_the_first_epochs() -> None:
    """Epochs up to start_from_epoch neither improve nor use patience."""
    stopper = EarlyStopping("score", mode="min", patience=1, start_from_epoch=2)
    history = quick_trainer(epochs=5, callbacks=[Scripted([1, 1, 5, 6, 7]), stopper]).fit(
        digit_batches(10, 10)
    )
    assert len(history) == 4 and stopper.watch.best_epoch == 3


def test_restore_best_with_an_all_nan_metric_restores_nothing_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """restore_best when no epoch improved keeps the last weights and logs a warning."""
    stopper = EarlyStopping("score", mode="min", patience=9, restore_best=True, check_finite=False)
    trainer = quick_trainer(epochs=2, callbacks=[Scripted([math.nan, math.nan]), stopper])
    with caplog.at_level(logging.WARNING, "lenetish"):
        trainer.fit(digit_batches(10, 10))
    assert "restore_best has nothing to restore" in caplog.text


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"patience": -1}, "patience must be an integer >= 0, got -1"),
        ({"patience": 1.5}, "patience must be an integer >= 0, got 1.5"),
        ({"mode": "up"}, "mode must be 'auto', 'min' or 'max'"),
        ({"min_delta": -1.0}, "min_delta must be >= 0"),
        ({"min_delta": math.inf}, "min_delta must be >= 0, got inf"),
        ({"monitor": ""}, "monitor must be a metric name"),
        ({"min_delta_mode": "percent"}, "min_delta_mode must be 'abs' .* or 'rel'"),
        ({"stopping_threshold": math.nan}, "stopping_threshold must be a finite number or None"),
        ({"divergence_threshold": "10"}, "divergence_threshold must be a finite number or None"),
        ({"baseline": math.inf}, "baseline must be a finite number or None"),
        ({"start_from_epoch": -2}, "start_from_epoch must be an integer >= 0"),
    ],
)
def test_early_stopping_settings_are_checked(arguments: dict[str, Any], message: str) -> None:
    """Bad EarlyStopping settings raise InvalidArgumentError naming the argument."""
    with pytest.raises(InvalidArgumentError, match=message):
        EarlyStopping(**arguments)


def test_restore_best_with_an_ema_applied_at_the_end_warns() -> None:
    """Both would set the final weights; the warning says which wins."""
    stopper = EarlyStopping("loss", restore_best=True)
    with pytest.warns(UserWarning, match="EarlyStopping's best epoch wins"):
        quick_trainer(callbacks=[EMA(), stopper]).fit(digit_batches(10, 10))


# ---- options from Keras, ignite and Lightning (issue 34) ------------------------------------


def fit_scripted(values: list[float], *callbacks: Callback, epochs: int | None = None) -> Trainer:
    """A trainer fitted on one batch per epoch, 'score' scripted to ``values``."""
    trainer = quick_trainer(epochs=epochs or len(values), callbacks=[Scripted(values), *callbacks])
    trainer.fit(digit_batches(10, 10))
    return trainer


@pytest.mark.parametrize("patience", [0, 1, 2, 3])
def test_early_stopping_patience(patience: int) -> None:
    """Keras: patience=0 stops at the first epoch without improvement, as patience=1 does."""
    stopper = EarlyStopping("score", mode="min", patience=patience)
    fit_scripted([10.0, 9.0, 8.0, 9.0, 8.9, 8.8, 8.7, 8.6, 8.5], stopper)
    assert stopper.stopped_epoch == max(patience, 1) + 3  # Keras' 0-based max(patience, 1) + 2


@pytest.mark.parametrize(
    ("stopping_threshold", "divergence_threshold", "losses", "expected_epoch"),
    [
        (None, None, [8, 4, 2, 3, 4, 5, 8, 10], 5),
        (2.9, None, [9, 8, 7, 6, 5, 6, 4, 3, 2, 1], 8),
        (None, 15.9, [9, 4, 2, 16, 32, 64], 3),
    ],
)
def test_early_stopping_thresholds(
    stopping_threshold: float | None,
    divergence_threshold: float | None,
    losses: list[float],
    expected_epoch: int,
) -> None:
    """Lightning: stop once the metric beats stopping_threshold or is worse than divergence."""
    stopper = EarlyStopping(
        "score",
        mode="min",
        stopping_threshold=stopping_threshold,
        divergence_threshold=divergence_threshold,
    )
    trainer = fit_scripted(losses, stopper)
    assert len(trainer.history) - 1 == expected_epoch  # Lightning counts epochs from 0


@pytest.mark.parametrize(
    ("values", "options", "reason", "message"),
    [
        ([10.0] * 10, {"patience": 2}, "patience_exhausted", "did not improve for 2 epochs"),
        ([5.0, 3.0, 1.0, 0.5, 0.1], {"stopping_threshold": 0.6}, "stopping_threshold",
         "stopping threshold reached: score = 0.5 < 0.6"),
        ([1.0, 2.0, 5.0, 10.0, 15.0], {"divergence_threshold": 8.0}, "divergence_threshold",
         "divergence threshold reached: score = 10 > 8"),
        ([1.0, 0.5, math.nan, 0.1], {}, "non_finite_metric", "score is nan, not finite"),
        ([5.0, 4.0, 3.0], {"patience": 3}, "not_stopped", None),
    ],
)  # fmt: skip
def test_early_stopping_reasons(
    values: list[float], options: dict[str, Any], reason: str, message: str | None
) -> None:
    """Lightning: stopping_reason and its message say why the fit stopped (or that it did not)."""
    stopper = EarlyStopping("score", mode="min", **options)
    fit_scripted(values, stopper)
    assert stopper.stopping_reason == reason
    if message is None:
        assert stopper.stopping_reason_message is None and stopper.stopped_epoch is None
    else:
        assert message in (stopper.stopping_reason_message or "")
        assert stopper.stopped_epoch is not None


def test_early_stopping_reasons_survive_the_state_dict_and_old_states_load() -> None:
    """Lightning: the reason is saved and restored; a state saved without one reads not_stopped."""
    stopper = EarlyStopping("score", mode="min", patience=3)
    stopper.stopping_reason, stopper.stopping_reason_message = "patience_exhausted", "Test"
    fresh = EarlyStopping("score", mode="min", patience=3)
    fresh.load_state_dict(stopper.state_dict())
    assert (fresh.stopping_reason, fresh.stopping_reason_message) == ("patience_exhausted", "Test")
    old = {"best": 0.5, "best_epoch": 2, "wait": 2, "stopped_epoch": 5, "best_weights": None}
    fresh.load_state_dict(old)
    assert (fresh.stopping_reason, fresh.stopping_reason_message) == ("not_stopped", None)
    assert (fresh.wait, fresh.stopped_epoch) == (2, 5)


@pytest.mark.parametrize(
    ("mode", "scores", "stopped_after"),
    [
        ("max", [1.0, 2.0, 2.1, 3.0, 3.2, 3.25], 6),  # ignite test_early_stopping_on_rel_delta
        ("min", [1.0, 0.8, 0.79, 0.78], 4),  # ignite test_early_stopping_min_mode_rel_delta
    ],
)
def test_early_stopping_on_rel_delta(mode: Any, scores: list[float], stopped_after: int) -> None:
    """As ignite: with min_delta_mode='rel' an improvement must beat best * (1 +- min_delta)."""
    stopper = EarlyStopping("score", mode=mode, patience=2, min_delta=0.1, min_delta_mode="rel")
    fit_scripted(scores, stopper)
    assert stopper.stopped_epoch == stopped_after


@pytest.mark.parametrize(("cumulative_delta", "stopped_epoch"), [(False, 3), (True, None)])
def test_early_stopping_on_cumulative(cumulative_delta: bool, stopped_epoch: int | None) -> None:
    """As ignite: cumulative_delta=False measures min_delta from the last better value."""
    stopper = EarlyStopping(
        "score", mode="max", patience=2, min_delta=0.4, cumulative_delta=cumulative_delta
    )
    fit_scripted([0.0, 0.3, 0.6], stopper)  # +0.3 twice: 0.6 beats 0.0 by 0.6, 0.3 by 0.3
    assert stopper.stopped_epoch == stopped_epoch


def test_check_on_train_epoch_end_smart_handling() -> None:
    """Lightning: with validation every 2 epochs the monitor judges epochs 2 and 4 only."""
    stopper = EarlyStopping("val_score", mode="min", patience=1)

    class ValScore(Callback):
        order = -10

        def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
            if "val_loss" in state.metrics:
                state.metrics["val_score"] = 1.0

    trainer = quick_trainer(epochs=5, validation_freq=2, callbacks=[ValScore(), stopper])
    history = trainer.fit(digit_batches(10, 10), digit_batches(10, 10))
    assert len(history) == 4 and stopper.stopped_epoch == 4
    assert ["val_loss" in row for row in history] == [False, True, False, True]


def test_restore_best_follows_the_best_value_without_cumulative_delta() -> None:
    """With cumulative_delta=False, restore_best restores the last better value's epoch."""
    stopper = EarlyStopping(
        "score", mode="max", patience=2, min_delta=0.4, cumulative_delta=False, restore_best=True
    )
    fit_scripted([0.0, 0.3, 0.6], stopper)
    assert (stopper.watch.best, stopper.watch.best_epoch) == (0.6, 3)


def test_damaged_restored_best_weights_are_refused_before_training(tmp_path: Path) -> None:
    """Restored EarlyStopping best_weights that do not fit the model stop the resume early."""
    stopper = EarlyStopping("loss", patience=5, restore_best=True)
    trainer = Trainer(MNISTConvNet(), epochs=1, device="cpu", callbacks=[stopper], progress=False)
    trainer.fit(digit_batches(16, 16))
    trainer.save_checkpoint(tmp_path / "last.pt")
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=True)
    state = next(v for k, v in checkpoint["callbacks"].items() if k.startswith("lenetish.Early"))
    del state["best_weights"]["fc2.bias"]
    torch.save(checkpoint, tmp_path / "damaged.pt")
    trained: list[int] = []

    class Count(Callback):
        def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
            trained.append(state.global_step)

    again = EarlyStopping("loss", patience=5, restore_best=True)
    resumed = Trainer(
        MNISTConvNet(), epochs=3, device="cpu", callbacks=[again, Count()], progress=False
    )
    with pytest.raises(CheckpointError, match=r"best weights do not fit the model \(missing fc2"):
        resumed.fit(digit_batches(16, 16), resume=tmp_path / "damaged.pt")
    assert trained == []
