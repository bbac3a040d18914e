"""Tests of lenetish.monitors: EarlyStopping and ModelCheckpoint."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from lenetish import (
    EMA,
    Callback,
    EarlyStopping,
    InvalidArgumentError,
    ModelCheckpoint,
    TerminateOnNaN,
    Trainer,
    TrainState,
    load_checkpoint,
)
from tests.training_helpers import Recorder, digit_batches, quick_trainer


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


def test_model_checkpoint_auto_mode_refuses_an_unknown_name(tmp_path: Path) -> None:
    """ModelCheckpoint(save_best=True) with mode='auto' on an unknown name asks for mode=."""
    saver = ModelCheckpoint(tmp_path, monitor="accuracy_gap", save_best=True)
    with pytest.raises(InvalidArgumentError, match=r"ModelCheckpoint\(mode='auto'\).*mode='max'"):
        quick_trainer(callbacks=[saver]).fit(digit_batches(10, 10))


def test_model_checkpoint_without_best_or_top_k_ignores_the_monitors_direction(
    tmp_path: Path,
) -> None:
    """A ModelCheckpoint writing only last.pt never asks for the direction of its monitor."""
    saver = ModelCheckpoint(tmp_path, monitor="accuracy_gap")
    quick_trainer(callbacks=[saver]).fit(digit_batches(10, 10))
    assert saver.last_path.exists()


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


def test_last_checkpoint_holds_the_final_epoch_after_an_early_stop(tmp_path: Path) -> None:
    """every_n_epochs=3 and a stop after epoch 4: last.pt holds epoch 4, not 3."""
    stopper = EarlyStopping("score", mode="min", patience=3)
    saver = ModelCheckpoint(tmp_path, every_n_epochs=3)
    scripted = Scripted([1, 2, 3, 4, 5, 6])
    history = quick_trainer(epochs=6, callbacks=[scripted, stopper, saver]).fit(
        digit_batches(10, 10)
    )
    assert load_checkpoint(saver.last_path)["epoch"] == len(history) == 4


def test_a_reused_checkpoint_keeps_a_better_best_across_fits(tmp_path: Path) -> None:
    """A second fit whose epochs are all worse does not replace best.pt."""
    saver = ModelCheckpoint(tmp_path, monitor="score", mode="min", save_best=True)
    trainer = quick_trainer(epochs=2, callbacks=[Scripted([2, 1]), saver])
    trainer.fit(digit_batches(10, 10))
    assert load_checkpoint(saver.best_path)["epoch"] == 2
    quick_trainer(epochs=2, callbacks=[Scripted([5, 4]), saver]).fit(digit_batches(10, 10))
    assert saver.watch.best == 1
    assert (
        load_checkpoint(saver.best_path)["callbacks"]["lenetish.History"]["rows"][-1]["score"] == 1
    )


def test_reset_best_starts_every_fit_afresh(tmp_path: Path) -> None:
    """With reset_best=True a second fit's best replaces the first fit's."""
    saver = ModelCheckpoint(tmp_path, monitor="score", mode="min", save_best=True, reset_best=True)
    quick_trainer(epochs=1, callbacks=[Scripted([1]), saver]).fit(digit_batches(10, 10))
    quick_trainer(epochs=1, callbacks=[Scripted([5]), saver]).fit(digit_batches(10, 10))
    assert saver.watch.best == 5


def test_save_top_k_keeps_the_k_best_files_named_by_the_template(tmp_path: Path) -> None:
    """save_top_k=2 keeps the two best epochs' files, named from the template."""
    saver = ModelCheckpoint(
        tmp_path, monitor="score", mode="min", save_top_k=2, filename="{epoch:02d}-{score:.1f}.pt"
    )
    quick_trainer(epochs=4, callbacks=[Scripted([3, 1, 2, 4]), saver]).fit(digit_batches(10, 10))
    kept = sorted(path.name for path in tmp_path.glob("0*.pt"))
    assert kept == ["02-1.0.pt", "03-2.0.pt"]
    assert load_checkpoint(tmp_path / "02-1.0.pt")["epoch"] == 2


def test_a_filename_naming_an_unknown_metric_is_refused(tmp_path: Path) -> None:
    """A top-k template that names a metric the epoch lacks says which metrics there are."""
    saver = ModelCheckpoint(tmp_path, monitor="loss", save_top_k=1, filename="{val_f1}.pt")
    with pytest.raises(InvalidArgumentError, match=r"filename='\{val_f1\}.pt' does not fit"):
        quick_trainer(callbacks=[saver]).fit(digit_batches(10, 10))


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
        reads_metrics = True

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


def test_a_top_k_filename_without_the_epoch_that_collides_is_refused(tmp_path: Path) -> None:
    """Two kept epochs mapping to one file would make the files disagree with the list."""
    saver = ModelCheckpoint(
        tmp_path, monitor="score", mode="min", save_top_k=2, filename="best-{score:.0f}.pt"
    )
    with pytest.raises(InvalidArgumentError, match=r"gives 'best-3.pt' for epoch 2 too"):
        quick_trainer(epochs=3, callbacks=[Scripted([3.1, 2.9, 1.0]), saver]).fit(
            digit_batches(10, 10)
        )


def test_restore_best_with_an_ema_applied_at_the_end_warns() -> None:
    """Both would set the final weights; the warning says which wins."""
    stopper = EarlyStopping("loss", restore_best=True)
    with pytest.warns(UserWarning, match="EarlyStopping's best epoch wins"):
        quick_trainer(callbacks=[EMA(), stopper]).fit(digit_batches(10, 10))


@pytest.mark.parametrize(
    ("values", "mode", "k", "kept"),
    [
        ([math.nan, 8, 7, 5], "min", 1, ["04.pt"]),
        ([math.nan, 5, 7, 8], "max", 1, ["04.pt"]),
        ([8, math.nan, 7, 5], "min", 2, ["03.pt", "04.pt"]),
        ([5, math.nan, 7, 8], "max", 2, ["03.pt", "04.pt"]),
    ],
)
def test_a_nan_value_ranks_worst_in_the_top_k_and_its_file_is_pruned(
    tmp_path: Path, values: list[float], mode: Any, k: int, kept: list[str]
) -> None:
    """NaN is the worst value in either mode: better epochs displace it and delete its file."""
    saver = ModelCheckpoint(
        tmp_path,
        monitor="score",
        mode=mode,
        save_top_k=k,
        save_last=False,
        filename="{epoch:02d}.pt",
    )
    quick_trainer(epochs=4, callbacks=[Scripted(values), saver]).fit(digit_batches(10, 10))
    assert sorted(path.name for path in tmp_path.glob("*.pt")) == kept
    assert sorted(name for _, name in saver.top) == kept
    assert not any(math.isnan(value) for value, _ in saver.top)


def test_a_top_k_file_holds_its_own_epoch_in_the_saved_state(tmp_path: Path) -> None:
    """The checkpoint's ModelCheckpoint state already counts the epoch it was written for."""
    saver = ModelCheckpoint(
        tmp_path, monitor="score", mode="min", save_best=True, save_top_k=2, filename="{epoch}.pt"
    )
    quick_trainer(epochs=2, callbacks=[Scripted([5, 3]), saver]).fit(digit_batches(10, 10))
    state = load_checkpoint(tmp_path / "2.pt")["callbacks"][saver.state_key]
    assert (state["best"], state["best_epoch"]) == (3, 2)
    assert [name for _, name in state["top"]] == ["2.pt", "1.pt"]


def test_resuming_from_a_top_k_file_keeps_a_better_best(tmp_path: Path) -> None:
    """A fit resumed from epoch 2's top-k file does not replace best.pt with a worse epoch 3."""

    def saver() -> ModelCheckpoint:
        return ModelCheckpoint(
            tmp_path,
            monitor="score",
            mode="min",
            save_best=True,
            save_top_k=2,
            filename="{epoch}.pt",
        )

    quick_trainer(epochs=2, callbacks=[Scripted([5, 3]), saver()]).fit(digit_batches(10, 10))
    resumed = saver()
    quick_trainer(epochs=3, callbacks=[Scripted([5, 3, 4]), resumed]).fit(
        digit_batches(10, 10), resume=tmp_path / "2.pt"
    )
    assert load_checkpoint(resumed.best_path)["epoch"] == 2
    assert (resumed.watch.best, resumed.watch.best_epoch) == (3, 2)
    assert [name for _, name in resumed.top] == ["2.pt", "3.pt"]
    assert not (tmp_path / "1.pt").exists()
