"""Helpers shared by the training tests: synthetic batches, a quick trainer, a hook recorder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lenetish import Callback, History, MNISTConvNet, Trainer, TrainState, load_weights
from tests.conftest import synthetic_digits

HOOKS = [
    "on_fit_start",
    "on_epoch_start",
    "on_batch_start",
    "on_before_backward",
    "on_before_optimizer_step",
    "on_batch_end",
    "on_validation_end",
    "on_epoch_end",
    "on_fit_end",
    "on_exception",
]


def digit_batches(count: int = 200, batch_size: int = 50) -> list[tuple[Tensor, Tensor]]:
    """Synthetic band digits, normalised, as a list of batches."""
    images, labels = synthetic_digits(count)
    normalised = (images.float() / 255).unsqueeze(1)
    return [
        (normalised[i : i + batch_size], labels[i : i + batch_size].long())
        for i in range(0, count, batch_size)
    ]


class Recorder(Callback):
    """Records every hook call by name; optionally raises a signal from one hook."""

    def __init__(self, order: int = 0, *, raise_in: str | None = None, signal: Any = None) -> None:
        self.order = order
        self.calls: list[str] = []
        self.raise_in, self.signal = raise_in, signal
        for hook in HOOKS:
            setattr(self, hook, self._recorder(hook))

    def _recorder(self, hook: str) -> Any:
        def record(trainer: Trainer, state: TrainState, *args: Any) -> None:
            self.calls.append(hook)
            if hook == self.raise_in and self.signal is not None:
                raise self.signal

        return record


class Scripted(Callback):
    """Replaces the metric 'score' with scripted values, one per epoch, before the monitors."""

    order = -10

    def __init__(self, values: list[float]) -> None:
        self.values = values

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        state.metrics["score"] = self.values[state.epoch]


def quick_trainer(**options: Any) -> Trainer:
    """A CPU trainer of a fresh seeded network without a progress bar."""
    torch.manual_seed(0)
    options.setdefault("epochs", 1)
    return Trainer(MNISTConvNet(), device="cpu", progress=False, **options)


def weights_equal(first: Path, second: Path) -> bool:
    """Whether two weights files hold bit-identical tensors."""
    a, b = load_weights(MNISTConvNet(), first), load_weights(MNISTConvNet(), second)
    return all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def run_script(out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """Run tests/resume_script.py in a new process, writing into ``out``."""
    return subprocess.run(
        [sys.executable, "-m", "tests.resume_script", str(out), *options],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
        timeout=300,
    )


def rows_without_seconds(path: Path) -> list[dict[str, float]]:
    """The rows of a History JSON file without their timings."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in History.from_json(path)]
