"""ImprovementTracker: logs the best value of a metric so far and the epochs since it improved."""

from __future__ import annotations

import math
from typing import Any

from lenetish import Callback, Trainer, TrainState


class ImprovementTracker(Callback):
    """Log ``best_<metric>`` and ``epochs_since_best`` every epoch, continuing across resumes.

    Its state is created in ``reset()`` (called before every fit, and before
    ``load_state_dict`` when a fit resumes), saved in checkpoints by ``state_dict`` and
    matched on resume by a fixed ``state_key``, so renaming the class keeps old checkpoints
    resumable.

    Args:
        metric: a metric of the epoch's row that is better high (e.g. ``"val_macro_f1"``).
    """

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.state_key = f"logit_digits.ImprovementTracker[{metric}]"
        self.reset()

    def reset(self) -> None:
        """Start a fit with no best value."""
        self.best = -math.inf
        self.best_epoch = 0

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        """Update the best value and log both numbers for this epoch's row."""
        epoch = state.epoch + 1
        value = state.metrics[self.metric]
        if value > self.best:
            self.best, self.best_epoch = value, epoch
        trainer.log(f"best_{self.metric}", self.best)
        trainer.log("epochs_since_best", epoch - self.best_epoch)

    def state_dict(self) -> dict[str, Any]:
        """The best value and its epoch."""
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
