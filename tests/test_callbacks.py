"""Tests of lenetish.callbacks: the Callback base, History, LRSchedule, TerminateOnNaN, Timer."""

from __future__ import annotations

import json
import logging
import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch

import lenetish.callbacks.guards
from lenetish import (
    BatchOutput,
    Callback,
    EarlyStopping,
    History,
    InvalidArgumentError,
    LRSchedule,
    ModelCheckpoint,
    SkipBatch,
    TerminateOnNaN,
    Timer,
    Trainer,
    TrainingDivergedError,
    TrainState,
    load_checkpoint,
)
from lenetish.errors import OutputFileError
from tests.full_disk import fill_disk_after
from tests.training_helpers import digit_batches, quick_trainer


def test_base_callback_hooks_do_nothing() -> None:
    """A plain Callback can be passed to fit and changes nothing; its state is empty."""
    callback = Callback()
    quick_trainer(callbacks=[callback]).fit(digit_batches(10, 10))
    assert callback.state_dict() == {} and callback.order == 0


def test_history_records_one_row_per_epoch() -> None:
    """History rows hold the epoch's metrics; column() reads one metric across rows."""
    history = History()
    quick_trainer(epochs=2, callbacks=[history]).fit(digit_batches(20, 10))
    assert [row["epoch"] for row in history] == [1, 2] and len(history.column("loss")) == 2
    assert repr(history) == "History(2 epochs)"


def test_history_json_round_trip(tmp_path: Path) -> None:
    """to_json then from_json gives the same rows."""
    history = History([{"epoch": 1, "loss": 0.5, "val_loss": 0.25}, {"epoch": 2, "loss": 0.4}])
    history.to_json(tmp_path / "h.json")
    assert History.from_json(tmp_path / "h.json").rows == history.rows


def test_history_csv_round_trip(tmp_path: Path) -> None:
    """to_csv then from_csv gives the same rows, integers staying integers."""
    history = History([{"epoch": 1, "loss": 0.5, "val_loss": 0.25}, {"epoch": 2, "loss": 1e-9}])
    history.to_csv(tmp_path / "h.csv")
    loaded = History.from_csv(tmp_path / "h.csv")
    assert loaded.rows == history.rows
    assert isinstance(loaded[0]["epoch"], int)


def test_history_state_dict_round_trip() -> None:
    """A History restored from its state_dict has the same rows."""
    history = History([{"epoch": 1, "loss": 0.5}])
    restored = History()
    restored.load_state_dict(history.state_dict())
    assert restored.rows == history.rows


def test_lr_schedule_per_step() -> None:
    """LRSchedule with interval='step' steps its scheduler after every optimizer step."""
    schedule = LRSchedule(
        lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1 / (step + 1)),
        interval="step",
    )
    trainer = quick_trainer(lr=0.1, callbacks=[schedule])
    trainer.fit(digit_batches(30, 10))
    assert trainer.optimizer is not None
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 / 4)


def test_lr_schedule_state_survives_a_round_trip() -> None:
    """LRSchedule keeps a loaded state until on_fit_start builds the scheduler."""
    first = LRSchedule(lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1, 0.5))
    quick_trainer(epochs=2, callbacks=[first]).fit(digit_batches(10, 10))
    second = LRSchedule(lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1, 0.5))
    second.load_state_dict(first.state_dict())
    assert second.state_dict()["last_epoch"] == 2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"factory": lambda opt: opt, "interval": "batch"}, "interval must be 'step' or 'epoch'"),
        ({"factory": 3}, "factory must be callable"),
    ],
)
def test_lr_schedule_settings_are_checked(arguments: dict[str, object], message: str) -> None:
    """LRSchedule refuses an unknown interval or a factory that is not callable."""
    with pytest.raises(InvalidArgumentError, match=message):
        LRSchedule(**arguments)  # type: ignore[arg-type]


def test_terminate_on_nan_stops_and_names_the_step(caplog: pytest.LogCaptureFixture) -> None:
    """A diverging run (huge lr) is stopped by TerminateOnNaN, which logs the step."""
    guard = TerminateOnNaN()
    trainer = quick_trainer(epochs=3, optimizer="sgd", lr=1e12, callbacks=[guard])
    with caplog.at_level(logging.WARNING, "lenetish"):
        trainer.fit(digit_batches(200, 10))
    assert guard.stopped_at_step is not None and guard.stopped_at_step < 60
    assert f"at step {guard.stopped_at_step}" in caplog.text
    assert trainer.state.global_step == guard.stopped_at_step


def test_terminate_on_nan_leaves_finite_runs_alone() -> None:
    """A healthy run is not stopped."""
    guard = TerminateOnNaN(check_every=2)
    quick_trainer(epochs=2, callbacks=[guard]).fit(digit_batches(20, 10))
    assert guard.stopped_at_step is None


def test_terminate_on_nan_check_every_is_checked() -> None:
    """check_every must be a positive integer."""
    with pytest.raises(InvalidArgumentError, match="check_every must be a positive integer"):
        TerminateOnNaN(check_every=0)


class FakeClock:
    """Stands in for the time module of lenetish.callbacks.guards: ``now`` is set by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The Timer's clock, under the test's control."""
    fake = FakeClock()
    monkeypatch.setattr(lenetish.callbacks.guards, "time", fake)
    return fake


def test_timer_stops_when_time_runs_out(clock: FakeClock) -> None:
    """Timer requests a stop after the first batch past its limit."""

    class Slow(Callback):
        order = -1

        def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
            clock.now += 1.0  # a second per batch

    timer = Timer(2.5)
    trainer = quick_trainer(epochs=5, callbacks=[Slow(), timer])
    trainer.fit(digit_batches(40, 10))
    assert timer.timed_out and trainer.state.global_step == 3


@pytest.mark.parametrize(
    "value", [-1.0, float("inf"), float("nan"), "10", "1:00", True, {"ages": 1}]
)
def test_timer_limit_is_checked(value: object) -> None:
    """The duration must be seconds >= 0, a DD:HH:MM:SS string, a timedelta or its arguments."""
    with pytest.raises(
        InvalidArgumentError, match="duration must be seconds >= 0, a 'DD:HH:MM:SS'"
    ):
        Timer(value)  # type: ignore[arg-type]


def test_timer_max_seconds_is_deprecated() -> None:
    """Timer(max_seconds=) still sets the limit, with a DeprecationWarning."""
    with pytest.warns(DeprecationWarning, match=r"Timer\(max_seconds=...\) is deprecated"):
        assert Timer(max_seconds=2.5).max_seconds == 2.5


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        (None, None),
        ("00:00:00:22", timedelta(seconds=22)),
        ("12:34:56:65", timedelta(days=12, hours=34, minutes=56, seconds=65)),
        (timedelta(weeks=52, milliseconds=1), timedelta(weeks=52, milliseconds=1)),
        ({"weeks": 52, "days": 1}, timedelta(weeks=52, days=1)),
        (90, timedelta(seconds=90)),
    ],
)
def test_timer_parse_duration(duration: Any, expected: timedelta | None) -> None:
    """Lightning: a duration as 'DD:HH:MM:SS', a timedelta, its arguments (or seconds here)."""
    remaining = Timer(duration).time_remaining()
    assert remaining == (None if expected is None else expected.total_seconds())


def test_timer_interval_choice() -> None:
    """Lightning: interval is 'step' or 'epoch'; anything else is refused."""
    Timer(timedelta(), interval="step")
    Timer(timedelta(), interval="epoch")
    with pytest.raises(InvalidArgumentError, match="interval must be 'step' or 'epoch', got 'inv"):
        Timer(timedelta(), interval="invalid")  # type: ignore[arg-type]


def test_timer_time_remaining(clock: FakeClock) -> None:
    """Lightning: elapsed and remaining time count from the start of training."""
    timer = Timer(timedelta(seconds=10))
    assert (timer.time_remaining(), timer.time_elapsed()) == (10, 0)
    clock.now += 60  # not started yet
    assert (timer.time_remaining(), timer.time_elapsed()) == (10, 0)
    timer.on_fit_start(quick_trainer(), TrainState())
    clock.now += 3
    assert (timer.time_remaining(), timer.time_elapsed()) == (7, 3)


@pytest.mark.parametrize(("interval", "steps", "epochs"), [("step", 1, 0), ("epoch", 4, 1)])
def test_timer_zero_duration_stop(interval: Any, steps: int, epochs: int) -> None:
    """Lightning: a zero duration stops at the first check: a step, or a whole epoch."""
    timer = Timer(timedelta(0), interval=interval)
    trainer = quick_trainer(epochs=3, callbacks=[timer])
    history = trainer.fit(digit_batches(40, 10))
    assert (trainer.state.global_step, len(history)) == (steps, epochs)
    assert timer.timed_out


def test_timer_duration_min_steps_override() -> None:
    """Lightning: min_epochs=2 holds a zero-duration Timer's stop until two whole epochs."""
    timer = Timer(timedelta(0))
    trainer = quick_trainer(epochs=5, min_epochs=2, callbacks=[timer])
    history = trainer.fit(digit_batches(20, 10))
    assert len(history) == 2 and trainer.state.global_step == 4
    assert timer.time_elapsed() > 0


def test_timer_resume_training(tmp_path: Path) -> None:
    """Lightning: the elapsed time is saved; a resumed fit with it used up trains nothing."""
    timer = Timer(0, interval="epoch")
    saver = ModelCheckpoint(tmp_path)
    first = quick_trainer(epochs=10, callbacks=[timer, saver])
    first.fit(digit_batches(20, 10))
    assert len(first.history) == 1 and timer.time_remaining() <= 0  # type: ignore[operator]
    saved = load_checkpoint(saver.last_path)["callbacks"]["lenetish.Timer"]["time_elapsed"]
    assert saved > 0
    depleted = Timer(0, interval="epoch")
    again = quick_trainer(epochs=10, callbacks=[depleted, ModelCheckpoint(tmp_path)])
    history = again.fit(digit_batches(20, 10), resume=saver.last_path)
    assert len(history) == 1 and again.state.global_step == first.state.global_step
    assert depleted.timed_out and depleted.time_elapsed() >= saved
    roomy = Timer(timedelta(hours=1))
    resumed = quick_trainer(epochs=2, callbacks=[roomy, ModelCheckpoint(tmp_path)])
    resumed.fit(digit_batches(20, 10), resume=saver.last_path)
    assert not roomy.timed_out and roomy.time_elapsed() > saved


def test_state_key_defaults_to_the_qualified_class_name() -> None:
    """A user's callback is keyed by module and class; built-ins by what tells them apart."""

    class Mine(Callback):
        pass

    assert Mine().state_key == f"{__name__}.{Mine.__qualname__}"
    assert EarlyStopping("val_accuracy").state_key == "lenetish.EarlyStopping[monitor=val_accuracy]"
    assert History().state_key == "lenetish.History"


def test_state_key_can_be_assigned() -> None:
    """Assigning state_key gives a callback a key of its own."""
    callback = EarlyStopping()
    callback.state_key = "early-a"
    assert callback.state_key == "early-a"


def test_state_key_must_be_a_non_empty_string() -> None:
    """An empty or non-string state_key is refused."""
    with pytest.raises(InvalidArgumentError, match="state_key must be a non-empty string"):
        Callback().state_key = ""


def test_two_callbacks_with_one_key_are_refused() -> None:
    """Two stateful callbacks sharing a key would mix their states: fit says which key."""
    trainer = quick_trainer(callbacks=[EarlyStopping("loss"), EarlyStopping("loss")])
    with pytest.raises(InvalidArgumentError, match=r"share the state_key 'lenetish.EarlyStop"):
        trainer.fit(digit_batches(10, 10))


def test_stateless_callbacks_of_one_class_need_no_keys() -> None:
    """Callbacks without a state (no state_dict of their own) may share a class freely."""
    history = quick_trainer(callbacks=[Callback(), Callback()]).fit(digit_batches(10, 10))
    assert len(history) == 1


def test_lr_schedule_builtin_flag_is_deprecated() -> None:
    """LRSchedule(builtin=...) still works but warns that it has no effect."""
    with pytest.warns(DeprecationWarning, match=r"builtin=\.\.\.\) is deprecated"):
        LRSchedule(lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1), builtin=True)


def test_history_json_writes_non_finite_values_as_null(tmp_path: Path) -> None:
    """A diverged epoch's NaN loss is written as null (valid JSON) and read back as NaN."""
    History([{"epoch": 1, "loss": float("nan"), "lr": float("inf")}]).to_json(tmp_path / "h.json")
    assert json.loads((tmp_path / "h.json").read_text()) == [{"epoch": 1, "loss": None, "lr": None}]
    assert math.isnan(History.from_json(tmp_path / "h.json")[0]["loss"])


def test_lr_schedule_with_a_monitor_steps_a_plateau_scheduler() -> None:
    """LRSchedule(ReduceLROnPlateau, monitor='loss') halves the lr once the loss stalls."""
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    class Stall(Callback):
        def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
            state.metrics["loss"] = 1.0

    schedule = LRSchedule(lambda o: ReduceLROnPlateau(o, factor=0.5, patience=0), monitor="loss")
    history = quick_trainer(epochs=3, callbacks=[Stall(), schedule]).fit(digit_batches(10, 10))
    assert history.column("lr") == [1e-3, 1e-3, 5e-4]


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (
            lambda: LRSchedule(lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o)),
            r"ReduceLROnPlateau needs a metric each epoch: use LRSchedule\(factory, monitor=",
        ),
        (
            lambda: LRSchedule(lambda o: torch.optim.lr_scheduler.StepLR(o, 1), monitor="loss"),
            "monitor='loss' is for ReduceLROnPlateau; StepLR steps without a metric",
        ),
    ],
)
def test_a_monitor_is_required_by_plateau_schedules_and_refused_by_others(
    schedule: Any, message: str
) -> None:
    """A plateau scheduler needs monitor=; any other scheduler refuses one."""
    with pytest.raises(InvalidArgumentError, match=message):
        quick_trainer(callbacks=[schedule()]).fit(digit_batches(10, 10))


def test_a_plateau_scheduler_facing_the_wrong_way_is_refused() -> None:
    """ReduceLROnPlateau's default mode='min' on an accuracy would cut the lr as it improves."""
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    schedule = LRSchedule(lambda o: ReduceLROnPlateau(o), monitor="accuracy")
    with pytest.raises(InvalidArgumentError, match=r"mode='min'\) watches 'accuracy'.*mode='max'"):
        quick_trainer(callbacks=[schedule]).fit(digit_batches(10, 10))


class Score:
    """A metric object (update/compute/reset) that declares it is better high."""

    higher_is_better = True

    def reset(self) -> None:
        self.seen = 0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        self.seen += len(targets)

    def compute(self) -> float:
        return float(self.seen)


def test_a_plateau_scheduler_against_a_declared_direction_is_refused() -> None:
    """mode='min' on a metrics= entry with higher_is_better=True is refused at fit start."""
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    schedule = LRSchedule(lambda o: ReduceLROnPlateau(o), monitor="score")
    trainer = quick_trainer(metrics={"score": Score()}, callbacks=[schedule])
    with pytest.raises(InvalidArgumentError, match=r"mode='min'\) watches 'score'.*mode='max'"):
        trainer.fit(digit_batches(10, 10))


def test_a_plateau_scheduler_on_a_name_of_unknown_direction_keeps_its_mode_and_logs_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """'worst_class_acc' is no longer read as 'acc': the scheduler's mode='min' is used, logged."""
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    class Worst(Callback):
        def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
            state.metrics["worst_class_acc"] = 0.5

    schedule = LRSchedule(lambda o: ReduceLROnPlateau(o), monitor="worst_class_acc")
    with caplog.at_level(logging.INFO, "lenetish"):
        quick_trainer(callbacks=[Worst(), schedule]).fit(digit_batches(10, 10))
    assert "ReduceLROnPlateau: minimises 'worst_class_acc' (mode='min'" in caplog.text


def test_onecycle_with_a_callable_optimizer_peaks_at_its_own_lr() -> None:
    """scheduler='onecycle' with optimizer=callable rises to the lr the optimizer was built with."""
    lrs: list[float] = []

    class Watch(Callback):
        def on_batch_start(self, trainer: Trainer, state: TrainState) -> None:
            lrs.append(trainer.optimizer.param_groups[0]["lr"])

    trainer = quick_trainer(
        epochs=2,
        optimizer=lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
        scheduler="onecycle",
        callbacks=[Watch()],
    )
    trainer.fit(digit_batches(100, 10))
    assert max(lrs) == pytest.approx(0.1, rel=0.05)


def test_skip_batch_outside_a_batch_hook_is_named() -> None:
    """SkipBatch from on_epoch_end has no batch to skip: a named error says where it works."""

    class Misplaced(Callback):
        def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
            raise SkipBatch

    with pytest.raises(InvalidArgumentError, match="raised SkipBatch in on_epoch_end"):
        quick_trainer(callbacks=[Misplaced()]).fit(digit_batches(10, 10))


def test_history_json_refuses_a_symlink_and_keeps_its_target(tmp_path: Path) -> None:
    """History.to_json refuses a symbolic link at the path; the file it names is unchanged."""
    outside = tmp_path / "outside.json"
    outside.write_text("precious")
    link = tmp_path / "history.json"
    link.symlink_to(outside)
    with pytest.raises(OutputFileError, match=r"history\.json: it is a symbolic link"):
        History([{"epoch": 1, "loss": 0.5}]).to_json(link)
    assert outside.read_text() == "precious"


def test_history_json_on_a_full_disk_is_named_and_keeps_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk filling while history.json is written raises OutputFileError; the old file stays."""
    path = tmp_path / "history.json"
    History([{"epoch": 1, "loss": 0.5}]).to_json(path)
    before = path.read_bytes()
    fill_disk_after(monkeypatch, room=8)
    with pytest.raises(OutputFileError, match=r"history\.json: \[Errno 28\].*free some space"):
        History([{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25}]).to_json(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [path.name]


def nan_batches(count: int, *, first_good: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` batches of 4 images, NaN from batch ``first_good`` on."""
    batches = digit_batches(4 * count, 4)
    return [
        (images if index < first_good else torch.full_like(images, math.nan), labels)
        for index, (images, labels) in enumerate(batches)
    ]


def test_terminate_on_nan_raise_error_raises_error() -> None:
    """Keras: TerminateOnNaN(raise_error=True) ends the fit with an error naming the step."""
    guard = TerminateOnNaN(raise_error=True)
    with pytest.raises(
        TrainingDivergedError, match=r"the training loss is nan at step 1 \(epoch 1"
    ):
        quick_trainer(epochs=2, callbacks=[guard]).fit(nan_batches(2))
    assert issubclass(TrainingDivergedError, RuntimeError)  # Keras raises a RuntimeError


def test_raise_error_terminate_does_not_trigger_on_train_end() -> None:
    """Keras: with raise_error=True no on_fit_end runs; lenetish calls on_exception instead."""
    calls: list[str] = []

    class Tracking(Callback):
        def on_fit_end(self, trainer: Trainer, state: TrainState) -> None:
            calls.append("on_fit_end")

        def on_exception(self, trainer: Trainer, state: TrainState, exc: BaseException) -> None:
            calls.append(type(exc).__name__)

    with pytest.raises(TrainingDivergedError):
        quick_trainer(callbacks=[Tracking(), TerminateOnNaN(raise_error=True)]).fit(nan_batches(1))
    assert calls == ["TrainingDivergedError"]


def test_raise_error_terminate_stops_on_later_batch() -> None:
    """Keras: a NaN first seen in the second batch is raised there, naming that batch."""
    with pytest.raises(TrainingDivergedError, match=r"at step 2 \(epoch 1, batch 1\)"):
        quick_trainer(callbacks=[TerminateOnNaN(raise_error=True)]).fit(
            nan_batches(3, first_good=1)
        )


def test_normal_training_does_not_raise() -> None:
    """Keras: finite losses train every epoch, with raise_error or without."""
    for raise_error in (False, True):
        guard = TerminateOnNaN(raise_error=raise_error)
        assert len(quick_trainer(epochs=2, callbacks=[guard]).fit(digit_batches(20, 10))) == 2


def test_raise_error_is_not_held_by_min_epochs() -> None:
    """min_epochs holds TerminateOnNaN's stop, but not its error."""
    held = TerminateOnNaN()
    trainer = quick_trainer(epochs=3, min_epochs=2, callbacks=[held])
    assert len(trainer.fit(nan_batches(2))) == 2 and held.stopped_at_step == 1
    with pytest.raises(TrainingDivergedError):
        quick_trainer(epochs=3, min_epochs=2, callbacks=[TerminateOnNaN(raise_error=True)]).fit(
            nan_batches(2)
        )


def test_terminate_on_nan_records_no_epoch_it_cut_short() -> None:
    """Keras records the cut-short epoch (one NaN row); lenetish's History keeps whole epochs."""
    guard = TerminateOnNaN()
    history = quick_trainer(epochs=20, callbacks=[guard]).fit(nan_batches(3, first_good=1))
    assert guard.stopped_at_step == 2 and len(history) == 0


@pytest.mark.parametrize(("cooldown", "lr"), [(2, 0.01), (1, 0.001)])
def test_cooldown(cooldown: int, lr: float) -> None:
    """Keras' cooldown=2 (patience=1) leaves lr 0.001 after 4 epochs; torch needs cooldown=1."""
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    class Stall(Callback):
        def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
            state.metrics["loss"] = 1.0

    def plateau(optimizer: torch.optim.Optimizer) -> ReduceLROnPlateau:
        # Keras' patience=1 is torch's patience=0 (see LRSchedule); min_delta=100 as threshold
        return ReduceLROnPlateau(
            optimizer, factor=0.1, patience=0, cooldown=cooldown, threshold=100,
            threshold_mode="abs",
        )  # fmt: skip

    schedule = LRSchedule(plateau, monitor="loss")
    trainer = quick_trainer(epochs=4, optimizer="sgd", lr=0.1, callbacks=[Stall(), schedule])
    trainer.fit(digit_batches(10, 10))
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(lr)


def test_a_plateau_schedule_steps_on_validated_epochs_only() -> None:
    """With validation_freq=2 a val_loss plateau schedule counts epochs 2 and 4 only."""
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    seen: list[float] = []

    class Counting(ReduceLROnPlateau):
        def step(self, metrics: Any, epoch: int | None = None) -> None:  # type: ignore[override]
            seen.append(float(metrics))
            super().step(metrics)

    trainer = quick_trainer(
        epochs=4, validation_freq=2, callbacks=[LRSchedule(Counting, monitor="val_loss")]
    )
    trainer.fit(digit_batches(10, 10), digit_batches(10, 10))
    assert len(seen) == 2
