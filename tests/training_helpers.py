"""Helpers shared by the training tests: synthetic batches, a quick trainer, a hook recorder."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lenetish import Callback, MNISTConvNet, Trainer, TrainState
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


def quick_trainer(**options: Any) -> Trainer:
    """A CPU trainer of a fresh seeded network without a progress bar."""
    torch.manual_seed(0)
    options.setdefault("epochs", 1)
    return Trainer(MNISTConvNet(), device="cpu", progress=False, **options)
