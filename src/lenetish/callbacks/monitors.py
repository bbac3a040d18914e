"""Callbacks that watch a metric: ``EarlyStopping`` and ``ModelCheckpoint``."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lenetish._checks import check_positive_int
from lenetish.callbacks.base import Callback
from lenetish.errors import InvalidArgumentError

if TYPE_CHECKING:
    from lenetish.state import TrainState
    from lenetish.trainer import Trainer

__all__ = ["EarlyStopping", "ModelCheckpoint"]

logger = logging.getLogger("lenetish")


@dataclass
class MetricWatch:
    """The best value so far of one metric, and whether a new value improves on it."""

    monitor: str
    mode: str
    min_delta: float = 0.0
    best: float = math.nan
    best_epoch: int = 0

    @classmethod
    def checked(cls, monitor: str, mode: str, min_delta: float = 0.0) -> MetricWatch:
        """Validate the settings (``mode="auto"``: max for accuracies, else min)."""
        if not isinstance(monitor, str) or not monitor:
            raise InvalidArgumentError(f"monitor must be a metric name, got {monitor!r}")
        if mode not in ("auto", "min", "max"):
            raise InvalidArgumentError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        if not min_delta >= 0:
            raise InvalidArgumentError(f"min_delta must be >= 0, got {min_delta!r}")
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        return cls(monitor, mode, float(min_delta))

    def value(self, metrics: dict[str, float]) -> float:
        """Read the monitored metric, or say which metrics there are."""
        if self.monitor not in metrics:
            raise InvalidArgumentError(
                f"monitor={self.monitor!r} is not among this epoch's metrics "
                f"({', '.join(sorted(metrics))}); pass val= to fit() for val_* metrics"
            )
        return float(metrics[self.monitor])

    def update(self, value: float, epoch: int) -> bool:
        """Record ``value`` if it improves on the best by more than ``min_delta``."""
        if math.isnan(value):
            return False
        gain = value - self.best if self.mode == "max" else self.best - value
        if math.isnan(self.best) or gain > self.min_delta:
            self.best, self.best_epoch = value, epoch
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        """The best value and its epoch."""
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])


class EarlyStopping(Callback):
    """Stop when a metric has not improved for ``patience`` epochs.

    Args:
        monitor: the metric to watch (``"val_loss"``, ``"val_accuracy"``, ``"loss"``...).
        mode: ``"min"``, ``"max"``, or ``"auto"`` (max for accuracies, else min).
        patience: epochs without improvement before stopping.
        min_delta: the smallest change that counts as an improvement.
        restore_best: load the best epoch's weights back into the model when training ends.

    Raises:
        InvalidArgumentError: a setting is out of range.

    Example:
        >>> EarlyStopping("val_accuracy", patience=2).watch.mode
        'max'
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        mode: str = "auto",
        patience: int = 3,
        min_delta: float = 0.0,
        restore_best: bool = False,
    ) -> None:
        check_positive_int("patience", patience)
        self.watch = MetricWatch.checked(monitor, mode, min_delta)
        self.patience = patience
        self.restore_best = restore_best
        self.state_key = f"lenetish.EarlyStopping[monitor={self.watch.monitor}]"
        self.reset()

    def reset(self) -> None:
        """Forget the best value, the waiting count and the saved weights."""
        self.watch.best, self.watch.best_epoch = math.nan, 0
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.best_weights: dict[str, torch.Tensor] | None = None

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        """Compare the epoch's metric with the best; request a stop when patience runs out."""
        if self.watch.update(self.watch.value(state.metrics), state.epoch + 1):
            self.wait = 0
            if self.restore_best:
                self.best_weights = {
                    k: v.detach().clone() for k, v in trainer.module.state_dict().items()
                }
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = state.epoch + 1
            logger.info(
                "EarlyStopping: %s has not improved for %d epochs (best %.5g at epoch %d)",
                self.watch.monitor,
                self.wait,
                self.watch.best,
                self.watch.best_epoch,
            )
            trainer.should_stop = True

    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None:
        """Put the best weights back when ``restore_best`` is set."""
        if self.restore_best and self.best_weights is not None:
            trainer.module.load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        """Best value, waiting count, stop epoch and (with ``restore_best``) best weights."""
        return {
            **self.watch.state_dict(),
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
            "best_weights": self.best_weights,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.watch.load_state_dict(state)
        self.wait = int(state["wait"])
        self.stopped_epoch = state["stopped_epoch"]
        self.best_weights = state["best_weights"]


class ModelCheckpoint(Callback):
    """Save full, resumable checkpoints (``last.pt``, ``best.pt``) at the end of epochs.

    It runs after every other callback, so a checkpoint holds their state for that epoch.
    Files are written atomically; resume with ``trainer.fit(..., resume=folder / "last.pt")``.
    An epoch whose training loss is NaN or infinite is not saved, so a diverged run never
    replaces the last good checkpoint.

    Args:
        folder: where the files go (created if needed).
        monitor: the metric that decides ``best.pt``.
        mode: ``"min"``, ``"max"``, or ``"auto"`` (max for accuracies, else min).
        save_best: keep ``best.pt``, the epoch with the best ``monitor`` value.
        save_last: keep ``last.pt``, the latest epoch.
        every_n_epochs: write ``last.pt`` every this many epochs (and after the final one).

    Raises:
        InvalidArgumentError: a setting is out of range or both saves are off.
    """

    order = 1000

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        monitor: str = "val_loss",
        mode: str = "auto",
        save_best: bool = False,
        save_last: bool = True,
        every_n_epochs: int = 1,
    ) -> None:
        check_positive_int("every_n_epochs", every_n_epochs)
        if not (save_best or save_last):
            raise InvalidArgumentError("save_best and save_last are both False: nothing to save")
        self.folder = Path(folder)
        self.watch = MetricWatch.checked(monitor, mode)
        self.save_best = save_best
        self.save_last = save_last
        self.every_n_epochs = every_n_epochs
        self.state_key = f"lenetish.ModelCheckpoint[folder={self.folder}]"

    @property
    def last_path(self) -> Path:
        """Where the latest checkpoint is written."""
        return self.folder / "last.pt"

    @property
    def best_path(self) -> Path:
        """Where the best checkpoint is written."""
        return self.folder / "best.pt"

    def reset(self) -> None:
        """Forget the best value of an earlier fit."""
        self.watch.best, self.watch.best_epoch = math.nan, 0

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        """Write ``best.pt`` on improvement and ``last.pt`` on schedule."""
        epoch = state.epoch + 1
        if not math.isfinite(state.metrics.get("loss", 0.0)):
            # A diverged epoch would overwrite the last good checkpoint with NaN weights.
            logger.warning("ModelCheckpoint: epoch %d has a non-finite loss; not saving", epoch)
            return
        if self.save_best and self.watch.update(self.watch.value(state.metrics), epoch):
            trainer.save_checkpoint(self.best_path)
        if self.save_last and (epoch % self.every_n_epochs == 0 or epoch == state.epochs):
            trainer.save_checkpoint(self.last_path)

    def state_dict(self) -> dict[str, Any]:
        """The best value and its epoch."""
        return self.watch.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.watch.load_state_dict(state)
