"""Watching one metric: which direction is better, the best value so far, fail-fast names.

Shared by :class:`~lenetish.EarlyStopping`, :class:`~lenetish.ModelCheckpoint` and plateau
schedules (:class:`~lenetish.LRSchedule` with ``monitor=``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from lenetish.errors import InvalidArgumentError

if TYPE_CHECKING:
    from lenetish.state import TrainState

__all__ = ["HIGHER_IS_BETTER", "LOWER_IS_BETTER", "MetricWatch", "Mode", "direction"]

Mode = Literal["auto", "min", "max"]

# Words of a metric's name (split at "_", "val_" ignored) that say which way is better.
LOWER_IS_BETTER = frozenset({"loss", "error", "err", "mse", "mae", "rmse", "nll", "perplexity"})
HIGHER_IS_BETTER = frozenset(
    {"accuracy", "acc", "auc", "auroc", "f1", "precision", "recall", "iou", "dice", "top5"}
)


def direction(monitor: str) -> Literal["min", "max"] | None:
    """``"min"`` or ``"max"`` from the words of a metric's name, or ``None`` if unknown.

    Example:
        >>> direction("accumulated_loss"), direction("val_f1"), direction("f1_score")
        ('min', 'max', 'max')
        >>> direction("val_worst") is None
        True
    """
    words = set(monitor.lower().removeprefix("val_").split("_"))
    lower, higher = bool(words & LOWER_IS_BETTER), bool(words & HIGHER_IS_BETTER)
    if lower != higher:
        return "min" if lower else "max"
    return None


@dataclass
class MetricWatch:
    """The best value so far of one metric, and whether a new value improves on it."""

    monitor: str
    mode: Literal["min", "max"]
    min_delta: float = 0.0
    best: float = math.nan
    best_epoch: int = 0

    @classmethod
    def checked(cls, monitor: str, mode: str, min_delta: float = 0.0) -> MetricWatch:
        """Validate the settings; ``mode="auto"`` reads the direction from the name.

        Raises:
            InvalidArgumentError: an empty name, an unknown mode, a negative ``min_delta``,
                or ``mode="auto"`` for a name whose direction is not known.
        """
        if not isinstance(monitor, str) or not monitor:
            raise InvalidArgumentError(f"monitor must be a metric name, got {monitor!r}")
        if mode not in ("auto", "min", "max"):
            raise InvalidArgumentError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        if not min_delta >= 0:
            raise InvalidArgumentError(f"min_delta must be >= 0, got {min_delta!r}")
        resolved = direction(monitor) if mode == "auto" else mode
        if resolved is None:
            raise InvalidArgumentError(
                f"mode='auto' cannot tell whether {monitor!r} is better low or high; pass "
                "mode='min' or mode='max' (auto knows names with loss/error/mse/mae/nll, "
                "lower is better, and accuracy/acc/auc/f1/precision/recall/iou, higher is better)"
            )
        return cls(monitor, resolved, float(min_delta))  # type: ignore[arg-type]

    def check_available(self, state: TrainState, who: str) -> None:
        """Fail before training when a ``val_*`` metric is watched in a fit without ``val``.

        Raises:
            InvalidArgumentError: the monitor needs validation and the fit has none.
        """
        if self.monitor.startswith("val_") and not state.validating:
            raise InvalidArgumentError(
                f"{who} watches {self.monitor!r}, but fit() was given no val= batches, so "
                "there are no val_* metrics; pass val= or watch a training metric"
            )

    def value(self, metrics: dict[str, float]) -> float:
        """Read the monitored metric, or say which metrics there are.

        Raises:
            InvalidArgumentError: the epoch has no metric of that name.
        """
        if self.monitor not in metrics:
            raise InvalidArgumentError(
                f"monitor={self.monitor!r} is not among this epoch's metrics "
                f"({', '.join(sorted(metrics))}); pass val= to fit() for val_* metrics, "
                "metrics= to the Trainer, or log it with trainer.log()"
            )
        return float(metrics[self.monitor])

    def improves(self, value: float, reference: float) -> bool:
        """Whether ``value`` beats ``reference`` by more than ``min_delta`` (NaN never does)."""
        if math.isnan(value):
            return False
        if math.isnan(reference):
            return True
        gain = value - reference if self.mode == "max" else reference - value
        return gain > self.min_delta

    def rank_key(self, value: float) -> tuple[bool, float]:
        """A sort key that puts better values first and NaN last, in either mode.

        Example:
            >>> watch = MetricWatch("val_loss", "min")
            >>> sorted([3.0, float("nan"), 1.0], key=watch.rank_key)
            [1.0, 3.0, nan]
            >>> sorted([3.0, float("nan"), 1.0], key=MetricWatch("acc", "max").rank_key)
            [3.0, 1.0, nan]
        """
        if math.isnan(value):
            return True, 0.0
        return False, -value if self.mode == "max" else value

    def update(self, value: float, epoch: int) -> bool:
        """Record ``value`` if it improves on the best by more than ``min_delta``."""
        if self.improves(value, self.best):
            self.best, self.best_epoch = value, epoch
            return True
        return False

    def forget(self) -> None:
        """Start again with no best value."""
        self.best, self.best_epoch = math.nan, 0

    def state_dict(self) -> dict[str, Any]:
        """The best value and its epoch."""
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
