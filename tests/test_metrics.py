"""Tests of lenetish.metrics: running scores, user metrics, and values logged by callbacks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from lenetish import (
    BatchOutput,
    Callback,
    CSVLogger,
    EarlyStopping,
    History,
    InvalidArgumentError,
    Trainer,
    TrainState,
)
from lenetish.metrics import MetricSet
from tests.training_helpers import digit_batches, quick_trainer


def error_rate(outputs: Tensor, targets: Tensor) -> Tensor:
    """The fraction of wrong predictions in a batch."""
    return (outputs.argmax(dim=1) != targets).float().mean()


class CountingMetric:
    """An update/compute/reset metric (the torchmetrics protocol): samples seen."""

    def __init__(self) -> None:
        self.total = 0

    def reset(self) -> None:
        self.total = 0

    def update(self, outputs: Tensor, targets: Tensor) -> None:
        self.total += int(targets.shape[0])

    def compute(self) -> Tensor:
        return torch.tensor(float(self.total))


def test_function_metrics_are_weighted_by_batch_size() -> None:
    """A function's batch values are averaged over samples, not over batches."""
    metrics = MetricSet({"error": error_rate}, torch.device("cpu"))
    metrics.update(torch.tensor([[1.0, 0.0]]), torch.tensor([1]))  # 1 sample, wrong
    metrics.update(torch.tensor([[1.0, 0.0]] * 3), torch.tensor([0, 0, 0]))  # 3 right
    assert metrics.compute() == {"error": 0.25}


def test_user_metrics_become_history_columns_for_training_and_validation() -> None:
    """metrics={'error': fn, 'count': obj} give error, val_error, count, val_count."""
    trainer = quick_trainer(epochs=2, metrics={"error": error_rate, "count": CountingMetric()})
    history = trainer.fit(digit_batches(60, 20), digit_batches(40, 20))
    row = history[-1]
    assert row["count"] == 60 and row["val_count"] == 40
    assert row["error"] == pytest.approx(1 - row["accuracy"])
    assert row["val_error"] == pytest.approx(1 - row["val_accuracy"])


def test_something_that_is_not_a_metric_is_refused() -> None:
    """A metric that is neither callable nor update/compute/reset is named in the error."""
    with pytest.raises(InvalidArgumentError, match="metric 'bad' must be a function"):
        quick_trainer(metrics={"bad": 3})


class LogWorst(Callback):
    """Logs a made-up 'worst' metric from on_epoch_end, at an order after the monitors'."""

    order = 5000

    def __init__(self, values: list[float]) -> None:
        self.values = values

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        trainer.log("worst", self.values[state.epoch])


def test_a_logged_value_reaches_history_csv_and_early_stopping(tmp_path: Path) -> None:
    """trainer.log('worst', v) is in History, the CSV and EarlyStopping, whatever the order."""
    stopper = EarlyStopping("worst", mode="min", patience=1)
    logger = CSVLogger(tmp_path / "h.csv")
    callbacks = [stopper, logger, LogWorst([3.0, 2.0, 2.5, 1.0])]
    history = quick_trainer(epochs=4, callbacks=callbacks).fit(digit_batches(10, 10))
    assert history.column("worst") == [3.0, 2.0, 2.5]  # stopped: 2.5 did not improve on 2.0
    assert History.from_csv(tmp_path / "h.csv").column("worst") == [3.0, 2.0, 2.5]
    assert stopper.watch.best == 2.0


def test_a_value_logged_in_training_step_lands_in_the_epoch_row() -> None:
    """trainer.log from training_step: the epoch's row holds the last value logged."""

    class Logs(Trainer):
        def training_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
            output = super().training_step(images, labels)
            self.log("batch_size_seen", float(images.shape[0]))
            return output

    trainer = Logs(quick_trainer().model, device="cpu", progress=False, epochs=2)
    history = trainer.fit(digit_batches(25, 10))
    assert history.column("batch_size_seen") == [5.0, 5.0]


def test_values_written_into_the_validation_metrics_are_kept() -> None:
    """A callback adding to on_validation_end's dict or to state.metrics is not lost."""

    class Writes(Callback):
        def on_validation_end(
            self, trainer: Trainer, state: TrainState, metrics: dict[str, float]
        ) -> None:
            metrics["val_extra"] = 1.5

        def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
            state.metrics["extra"] = 2.5

    history = quick_trainer(callbacks=[Writes()]).fit(digit_batches(10, 10), digit_batches(10))
    assert history[0]["val_extra"] == 1.5 and history[0]["extra"] == 2.5


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("loss", 1.0, "'loss' is a metric the trainer computes itself"),
        ("val_error", 1.0, "'val_error' is a metric the trainer computes itself"),
        ("worst", "high", r"trainer.log\('worst', ...\) needs a number"),
    ],
)
def test_log_refuses_built_in_names_and_non_numbers(name: str, value: Any, message: str) -> None:
    """Logging over a computed metric, or a value that is not a number, is refused."""
    trainer = quick_trainer(metrics={"error": error_rate})
    with pytest.raises(InvalidArgumentError, match=message):
        trainer.log(name, value)


class LogOnce(Callback):
    """Logs one given value under 'custom' from on_epoch_start."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def on_epoch_start(self, trainer: Trainer, state: TrainState) -> None:
        trainer.log("custom", self.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (torch.ones(3), r"needs one number, got a tensor of shape \(3,\); log a scalar"),
        (np.ones((2, 2)), r"needs one number, got a NumPy array of shape \(2, 2\)"),
        (torch.tensor(True), "needs a real number, got a tensor of dtype torch.bool"),
        (torch.tensor(1 + 2j), "needs a real number, got a tensor of dtype torch.complex64"),
        (True, r"needs a number, got True \(bool\); log float\(flag\)"),
        (np.bool_(True), r"needs a number, got .*\(bool\); log float\(flag\)"),
        (1 + 2j, r"needs a number, got \(1\+2j\) \(complex\)"),
        (10**400, r"got a number too large for a float \(int\)"),
    ],
    ids=[
        "tensor",
        "array",
        "bool-tensor",
        "complex-tensor",
        "bool",
        "numpy-bool",
        "complex",
        "huge",
    ],
)
def test_lightning_log_refuses_a_value_that_is_not_one_number(value: Any, message: str) -> None:
    """Lightning's self.log refuses a multi-element tensor at the call, naming the metric."""
    trainer = quick_trainer()
    with pytest.raises(InvalidArgumentError, match=r"trainer.log\('custom', ...\) " + message):
        trainer.log("custom", value)


@pytest.mark.parametrize(
    "value",
    [np.float32(0.25), np.int64(3), np.array(0.5), np.array([0.75]), torch.tensor([[2.5]])],
    ids=["float32", "int64", "0-d-array", "1-element-array", "1-element-tensor"],
)
def test_lightning_log_accepts_numpy_scalars_and_one_element_tensors(value: Any) -> None:
    """np.float32, 0-d and one-element arrays and tensors land in the row as floats."""
    history = quick_trainer(callbacks=[LogOnce(value)]).fit(digit_batches(10, 10))
    logged = history[0]["custom"]
    assert isinstance(logged, float) and logged == float(np.asarray(value).item())


def test_lightning_log_keeps_a_nan_value() -> None:
    """A NaN logged value is kept in the row, as Lightning keeps it."""
    history = quick_trainer(callbacks=[LogOnce(float("nan"))]).fit(digit_batches(10, 10))
    assert math.isnan(history[0]["custom"])


def test_a_tensor_value_is_read_once_at_the_epoch_end() -> None:
    """A logged 0-d tensor becomes a float in the row."""

    class LogTensor(Callback):
        def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
            trainer.log("last_loss", output.loss)

    history = quick_trainer(callbacks=[LogTensor()]).fit(digit_batches(20, 10))
    assert isinstance(history[0]["last_loss"], float) and math.isfinite(history[0]["last_loss"])


@pytest.mark.parametrize("name", ["loss", "epoch", "accuracy", "lr", "seconds", "val_error"])
def test_a_metric_named_like_a_built_in_column_is_refused(name: str) -> None:
    """metrics={'loss': ...} or {'val_x': ...} would overwrite or shadow a column."""
    with pytest.raises(InvalidArgumentError, match=f"metric name '{name}' clashes with a column"):
        quick_trainer(metrics={name: error_rate})


def test_a_metric_object_whose_to_works_in_place_is_kept() -> None:
    """An object whose to() returns None (moves in place) is still used."""

    class InPlace(CountingMetric):
        def to(self, device: torch.device) -> None:
            pass

    history = quick_trainer(metrics={"count": InPlace()}).fit(digit_batches(20, 10))
    assert history[0]["count"] == 20


def test_a_value_logged_outside_an_epoch_is_dropped_with_a_warning() -> None:
    """trainer.log in on_fit_start lands in no row, so it warns instead of vanishing."""

    class TooEarly(Callback):
        def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
            trainer.log("early", 1.0)

    with pytest.warns(UserWarning, match=r"trainer.log\('early', ...\) outside an epoch"):
        history = quick_trainer(callbacks=[TooEarly()]).fit(digit_batches(10, 10))
    assert "early" not in history[0]


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        (
            lambda o, t: torch.bincount(o.argmax(1), minlength=10).float(),
            r"returned a tensor of shape \(10,\)",
        ),
        (lambda o, t: None, "returned NoneType, not a number"),
    ],
)
def test_a_metric_that_is_not_one_number_is_named(metric: Any, message: str) -> None:
    """A per-class vector or None from a metric is an InvalidArgumentError naming it."""
    with pytest.raises(InvalidArgumentError, match=f"metric 'bad' {message}"):
        quick_trainer(metrics={"bad": metric}).fit(digit_batches(10, 10))
