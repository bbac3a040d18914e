"""Tests of lenetish.callbacks.lr_monitor: LearningRateMonitor (Lightning's, translated)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from lenetish import (
    Callback,
    InvalidArgumentError,
    LearningRateMonitor,
    ModelCheckpoint,
    Trainer,
    TrainState,
)
from tests.training_helpers import digit_batches, quick_trainer


def two_groups(names: tuple[str | None, str | None] = (None, None)) -> Any:
    """An optimizer factory putting the first two parameters (conv1) in a group of their own."""

    def build(parameters: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        params = list(parameters)
        groups: list[dict[str, Any]] = [
            {"params": params[:2], "lr": 1e-4},
            {"params": params[2:], "lr": 1e-3},
        ]
        for group, name in zip(groups, names, strict=True):
            if name is not None:
                group["name"] = name
        return torch.optim.Adam(groups)

    return build


def test_lr_monitor_single_lr() -> None:
    """One optimizer, one group, a scheduler: lr-SGD per epoch; no momentum unless asked."""
    monitor = LearningRateMonitor()
    trainer = quick_trainer(
        epochs=2, optimizer="sgd", lr=0.1, scheduler="step", callbacks=[monitor]
    )
    history = trainer.fit(digit_batches(20, 10))
    assert list(monitor.lrs) == ["lr-SGD"]
    assert monitor.lrs["lr-SGD"] == pytest.approx([0.1, 0.07])
    assert history.column("lr-SGD") == pytest.approx([0.1, 0.07])
    assert all(value is None for value in monitor.last_momentum_values.values())
    assert all(value is None for value in monitor.last_weight_decay_values.values())


@pytest.mark.parametrize(("optimizer", "momentum"), [("SGD", 0.9), ("Adam", 0.85)])
def test_lr_monitor_single_lr_with_momentum(optimizer: str, momentum: float) -> None:
    """Momentum is SGD's momentum or Adam's first beta, under lr-<Optimizer>-momentum."""
    options = {"momentum": momentum} if optimizer == "SGD" else {"betas": (momentum, 0.999)}

    def build(parameters: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        return getattr(torch.optim, optimizer)(parameters, lr=1e-2, **options)  # type: ignore[no-any-return]

    monitor = LearningRateMonitor(log_momentum=True)
    history = quick_trainer(epochs=2, optimizer=build, callbacks=[monitor]).fit(
        digit_batches(10, 10)
    )
    assert monitor.last_momentum_values == {f"lr-{optimizer}-momentum": momentum}
    assert history.column(f"lr-{optimizer}-momentum") == [momentum, momentum]


def test_log_momentum_no_momentum_optimizer() -> None:
    """An optimizer without momentum gets a RuntimeWarning and a momentum of 0."""
    monitor = LearningRateMonitor(log_momentum=True)
    trainer = quick_trainer(
        optimizer=lambda parameters: torch.optim.ASGD(parameters, lr=1e-2), callbacks=[monitor]
    )
    with pytest.warns(RuntimeWarning, match="ASGD has no momentum"):
        trainer.fit(digit_batches(10, 10))
    assert monitor.last_momentum_values == {"lr-ASGD-momentum": 0.0}


def test_lr_monitor_no_lr_scheduler_single_lr() -> None:
    """Without a scheduler the optimizer's lr is recorded all the same."""
    monitor = LearningRateMonitor()
    quick_trainer(epochs=2, optimizer="sgd", lr=0.1, callbacks=[monitor]).fit(digit_batches(10, 10))
    assert monitor.lrs == {"lr-SGD": [0.1, 0.1]}


@pytest.mark.parametrize("logging_interval", ["step", "epoch"])
def test_lr_monitor_multi_lrs(logging_interval: Any) -> None:
    """One value per optimizer step, or per epoch, for every group."""
    monitor = LearningRateMonitor(logging_interval=logging_interval)
    trainer = quick_trainer(epochs=2, optimizer=two_groups(), callbacks=[monitor])
    trainer.fit(digit_batches(30, 10))
    expected = trainer.state.global_step if logging_interval == "step" else 2
    assert all(len(values) == expected for values in monitor.lrs.values())
    assert monitor.lrs["lr-Adam/pg1"][0] == 1e-4 and monitor.lrs["lr-Adam/pg2"][0] == 1e-3


def test_lr_monitor_param_groups() -> None:
    """Several parameter groups are named lr-Adam/pg1, lr-Adam/pg2."""
    monitor = LearningRateMonitor()
    history = quick_trainer(optimizer=two_groups(), callbacks=[monitor]).fit(digit_batches(10, 10))
    assert list(monitor.lrs) == ["lr-Adam/pg1", "lr-Adam/pg2"]
    assert history[0]["lr-Adam/pg1"] == 1e-4


def test_lr_monitor_custom_pg_name() -> None:
    """A group's 'name' replaces its pgN."""
    monitor = LearningRateMonitor()
    trainer = quick_trainer(optimizer=two_groups(("conv1", None)), callbacks=[monitor])
    trainer.fit(digit_batches(10, 10))
    assert list(monitor.lrs) == ["lr-Adam/conv1", "lr-Adam/pg2"]


def test_lr_monitor_duplicate_custom_pg_names() -> None:
    """Two groups with one name are refused before training."""
    trainer = quick_trainer(
        optimizer=two_groups(("same", "same")), callbacks=[LearningRateMonitor()]
    )
    with pytest.raises(
        InvalidArgumentError, match=r"parameter groups with the same 'name' \(same\)"
    ):
        trainer.fit(digit_batches(10, 10))


def test_lr_monitor_logging_interval_is_checked() -> None:
    """logging_interval is 'step', 'epoch' or None."""
    with pytest.raises(InvalidArgumentError, match="logging_interval must be 'step', 'epoch'"):
        LearningRateMonitor(logging_interval="batch")  # type: ignore[arg-type]


def test_lr_monitor_follows_a_one_cycle_schedule_per_step_with_momentum() -> None:
    """logging_interval=None logs every step under scheduler='onecycle', momentum included."""
    monitor = LearningRateMonitor(log_momentum=True, log_weight_decay=True)
    trainer = quick_trainer(epochs=2, scheduler="onecycle", weight_decay=1e-4, callbacks=[monitor])
    trainer.fit(digit_batches(50, 10))
    lrs = monitor.lrs["lr-Adam"]
    assert monitor.interval == "step" and len(lrs) == trainer.state.global_step == 10
    peak = lrs.index(max(lrs))
    assert 0 < peak < 9 and lrs[0] < lrs[peak] > lrs[-1]
    assert monitor.last_momentum_values == {"lr-Adam-momentum": 0.9}
    assert monitor.last_weight_decay_values == {"lr-Adam-weight_decay": 1e-4}
    assert "lr-Adam" not in trainer.history[0]  # a History row is an epoch


class _StopAfterEpochTwo(Callback):
    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        if state.epoch == 1:
            trainer.should_stop = True


def test_lr_monitor_continues_after_a_resume(tmp_path: Path) -> None:
    """The recorded values are saved: a resumed fit's lists equal an uninterrupted fit's."""
    batches = digit_batches(20, 10)
    whole = LearningRateMonitor("step")
    quick_trainer(epochs=3, scheduler="onecycle", callbacks=[whole]).fit(batches)
    stopped = [LearningRateMonitor("step"), ModelCheckpoint(tmp_path), _StopAfterEpochTwo()]
    quick_trainer(epochs=3, scheduler="onecycle", callbacks=stopped).fit(batches)
    resumed = LearningRateMonitor("step")
    trainer = quick_trainer(
        epochs=3, scheduler="onecycle", callbacks=[resumed, ModelCheckpoint(tmp_path)]
    )
    trainer.fit(batches, resume=tmp_path / "last.pt")
    assert len(resumed.lrs["lr-Adam"]) == 6
    assert resumed.lrs == whole.lrs


def test_lr_monitor_names_a_group_added_during_the_fit_like_lightning() -> None:
    """A group added at epoch 2 gets its column; the first group's values keep theirs."""

    class Unfreeze(Callback):
        def on_epoch_start(self, trainer: Trainer, state: TrainState) -> None:
            if state.epoch == 1:
                head = trainer.module.fc2  # type: ignore[union-attr]
                trainer.optimizer.add_param_group({"params": head.parameters(), "lr": 5e-4})

    class FrozenHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body, self.fc2 = nn.Sequential(nn.Flatten(), nn.Linear(784, 16)), nn.Linear(16, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(torch.relu(self.body(x)))

    model = FrozenHead()
    monitor = LearningRateMonitor(logging_interval="epoch")
    trainer = Trainer(
        model, epochs=3, device="cpu", progress=False, callbacks=[Unfreeze(), monitor],
        optimizer=lambda params: torch.optim.Adam(model.body.parameters(), lr=1e-3),
        lr=None,
    )  # fmt: skip
    trainer.fit(digit_batches(20, 10))
    assert monitor.lrs == {"lr-Adam/pg1": [1e-3, 1e-3, 1e-3], "lr-Adam/pg2": [5e-4, 5e-4]}
