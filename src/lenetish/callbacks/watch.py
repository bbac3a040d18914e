"""Watching one metric: which direction is better, the best value so far, fail-fast names.

Shared by :class:`~lenetish.EarlyStopping`, :class:`~lenetish.ModelCheckpoint` and plateau
schedules (:class:`~lenetish.LRSchedule` with ``monitor=``).

``mode="auto"`` never guesses from the words of a name. It knows the trainer's own metrics
exactly (:data:`BUILT_IN_DIRECTIONS`: ``loss``, ``accuracy``, their ``val_`` copies and a
stack's per-member ``loss/0``, ``val_accuracy/1``...) and the user's ``metrics=`` that declare
a direction with a boolean ``higher_is_better`` attribute (torchmetrics metrics have one; set
it on your own function or object). Anything else is refused with
:class:`~lenetish.InvalidArgumentError` asking for ``mode="min"`` or ``mode="max"``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from lenetish.errors import CheckpointError, InvalidArgumentError

if TYPE_CHECKING:
    from lenetish.training.state import TrainState

__all__ = [
    "BUILT_IN_DIRECTIONS",
    "DeltaMode",
    "Direction",
    "MetricWatch",
    "Mode",
    "check_finite_or_none",
    "direction",
]

Mode = Literal["auto", "min", "max"]
Direction = Literal["min", "max"]
DeltaMode = Literal["abs", "rel"]

# The trainer's own metrics (each also as val_<name>, and <name>/<i> per member of a stack).
BUILT_IN_DIRECTIONS: dict[str, Direction] = {"loss": "min", "accuracy": "max"}

_MEMBER = re.compile(r"/\d+$")  # a stack member's copy of a metric: "accuracy/0"

logger = logging.getLogger("lenetish")


def _declared(metric: object) -> Direction | None:
    """The direction a metric declares with a boolean ``higher_is_better``, or ``None``."""
    higher = getattr(metric, "higher_is_better", None)
    if isinstance(higher, bool):
        return "max" if higher else "min"
    return None


def _resolve(monitor: str, metrics: Mapping[str, object]) -> tuple[Direction, str] | None:
    """The direction of ``monitor`` and why, from the exact table and ``metrics``."""
    name = monitor.removeprefix("val_")
    for candidate in dict.fromkeys((name, _MEMBER.sub("", name))):
        if candidate in metrics:
            declared = _declared(metrics[candidate])
            if declared is not None:
                return (
                    declared,
                    f"its metric {candidate!r} declares higher_is_better={declared == 'max'}",
                )
            return None
        if candidate in BUILT_IN_DIRECTIONS:
            return BUILT_IN_DIRECTIONS[candidate], f"the trainer's own {candidate!r}"
    return None


def check_finite_or_none(name: str, value: object) -> None:
    """Refuse a threshold or baseline that is neither ``None`` nor a finite number.

    Raises:
        InvalidArgumentError: naming ``name`` and the value.
    """
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    ):
        raise InvalidArgumentError(f"{name} must be a finite number or None, got {value!r}")


def direction(
    monitor: str, metrics: Mapping[str, object] | None = None
) -> Literal["min", "max"] | None:
    """``"min"`` or ``"max"`` for a metric whose direction is known, else ``None``.

    Known are the trainer's own ``loss`` and ``accuracy`` (with a ``val_`` prefix, and a
    stack member's ``/0``, ``/1``... suffix) and the entries of ``metrics`` (the Trainer's
    ``metrics=``) whose ``higher_is_better`` attribute is ``True`` or ``False``. The words of
    a name decide nothing.

    Args:
        monitor: a metric's name as the History has it (``"val_f1"``, ``"accuracy/0"``).
        metrics: the user's metrics by name (``trainer.metrics``).

    Example:
        >>> direction("val_loss"), direction("accuracy/2")
        ('min', 'max')
        >>> direction("accuracy_gap") is None  # a name's words decide nothing
        True
        >>> class F1:
        ...     higher_is_better = True
        >>> direction("val_f1", {"f1": F1()})
        'max'
    """
    found = _resolve(monitor, metrics or {})
    return None if found is None else found[0]


@dataclass
class MetricWatch:
    """The best value so far of one metric, and whether a new value improves on it.

    Attributes:
        monitor: the metric's name.
        mode: ``"min"`` or ``"max"``; ``"auto"`` until :meth:`resolve` decides it at fit start
            (a built-in name is decided at once).
        min_delta: the smallest change that counts as an improvement.
        best: the best value so far (NaN before any).
        best_epoch: the epoch (from 1) of the best value, 0 before any.
        requested: the mode asked for; ``"auto"`` is decided again at every fit start.
        min_delta_mode: ``"abs"``: an improvement must beat the reference by ``min_delta``;
            ``"rel"``: by ``min_delta`` times the reference's size (ignite's
            ``threshold_mode="rel"``: for positive values, below ``best * (1 - min_delta)``
            in mode min, above ``best * (1 + min_delta)`` in mode max).
    """

    monitor: str
    mode: Mode
    min_delta: float = 0.0
    best: float = math.nan
    best_epoch: int = 0
    requested: Mode | None = None
    min_delta_mode: DeltaMode = "abs"
    _announced: tuple[str, str] | None = field(default=None, repr=False, compare=False)
    # A restored best checked once the fit decides mode="auto" (see load_state_dict).
    _best_unchecked: bool = field(default=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.requested is None:
            self.requested = self.mode

    @classmethod
    def checked(
        cls, monitor: str, mode: str, min_delta: float = 0.0, min_delta_mode: str = "abs"
    ) -> MetricWatch:
        """Validate the settings; ``mode="auto"`` decides a built-in name's direction now.

        Any other name is decided by :meth:`resolve` when the fit starts, from the
        trainer's ``metrics=``.

        Raises:
            InvalidArgumentError: an empty name, an unknown mode, a negative or non-finite
                ``min_delta``, or a ``min_delta_mode`` other than ``"abs"`` and ``"rel"``.
        """
        if not isinstance(monitor, str) or not monitor:
            raise InvalidArgumentError(f"monitor must be a metric name, got {monitor!r}")
        if mode not in ("auto", "min", "max"):
            raise InvalidArgumentError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        if (
            isinstance(min_delta, bool)
            or not isinstance(min_delta, (int, float))
            or not 0 <= min_delta < math.inf
        ):
            raise InvalidArgumentError(f"min_delta must be >= 0, got {min_delta!r}")
        if min_delta_mode not in ("abs", "rel"):
            raise InvalidArgumentError(
                f"min_delta_mode must be 'abs' (a change of min_delta) or 'rel' (a change of "
                f"min_delta times the best value), got {min_delta_mode!r}"
            )
        requested: Mode = mode  # type: ignore[assignment]
        known = direction(monitor) if requested == "auto" else None
        return cls(
            monitor,
            known or requested,
            float(min_delta),
            requested=requested,
            min_delta_mode=min_delta_mode,  # type: ignore[arg-type]
        )

    def resolve(self, metrics: Mapping[str, object], who: str) -> None:
        """Decide ``mode="auto"`` for this fit, and log the decision once.

        Args:
            metrics: the user's metrics by name (``trainer.metrics``).
            who: the watching callback, for the log line and the error.

        Raises:
            InvalidArgumentError: ``mode="auto"`` and the direction of the name is not known:
                neither a built-in metric nor one of ``metrics`` declaring
                ``higher_is_better``.
        """
        if self.requested != "auto":
            return
        found = _resolve(self.monitor, metrics)
        if found is None:
            name = self.monitor.removeprefix("val_")
            mine = [n for n in (name, _MEMBER.sub("", name)) if n in metrics]
            hint = (
                f"; the metric {mine[0]!r} of metrics= has no higher_is_better of True or False"
                if mine
                else ""
            )
            raise InvalidArgumentError(
                f"{who}(mode='auto') cannot tell whether {self.monitor!r} is better low or "
                f"high{hint}: pass mode='min' or mode='max'. mode='auto' knows only loss and "
                "accuracy (and their val_ and per-member /i forms) and the metrics= entries "
                "that declare higher_is_better = True or False (as torchmetrics metrics do); "
                "it never guesses from the words of a name"
            )
        self.mode, reason = found
        self.announce(who, reason)
        if self._best_unchecked:
            try:
                self._check_best()
            except ValueError as exc:
                raise CheckpointError(
                    f"{who}: the checkpoint's state is damaged: {exc}; resume from another "
                    "checkpoint, or start a new run"
                ) from None

    def announce(self, who: str, reason: str) -> None:
        """Log (INFO, logger ``"lenetish"``) which way the monitor is better, once per change."""
        if self._announced == (self.mode, reason):
            return
        self._announced = (self.mode, reason)
        logger.info(
            "%s: %s %r (mode=%r: %s)",
            who,
            "maximises" if self.mode == "max" else "minimises",
            self.monitor,
            self.mode,
            reason,
        )

    @property
    def _direction(self) -> Direction:
        if self.mode == "auto":
            raise InvalidArgumentError(
                f"mode='auto' for {self.monitor!r} is decided when the fit starts; compare "
                "values only during a fit, or pass mode='min' or mode='max'"
            )
        return self.mode

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

    def skips(self, state: TrainState) -> bool:
        """Whether this epoch has no value to watch: a ``val_*`` monitor, no validation run.

        With the Trainer's ``validation_freq=N`` only every N-th epoch validates; the
        monitors pass over the others, so their patience counts validations (as Lightning's
        does with ``check_val_every_n_epoch``).
        """
        return self.monitor.startswith("val_") and not state.validates(state.epoch)

    def judges_in_epoch(self, state: TrainState, metrics: dict[str, float]) -> bool:
        """Whether a validation inside an epoch (``val_check_interval``) has this value.

        Monitors judge each such validation of their metric, as Lightning's do, so their
        patience counts validations; the epoch's end is judged as always.
        """
        return state.in_epoch_validation and self.monitor in metrics

    def improves(self, value: float, reference: float, *, ties: bool = False) -> bool:
        """Whether ``value`` beats ``reference`` by more than ``min_delta`` (NaN never does).

        Args:
            value: the new value.
            reference: the value to beat (NaN: anything finite or infinite beats it).
            ties: a gain of exactly the needed size counts too (ignite's
                ``greater_or_equal``).
        """
        if math.isnan(value):
            return False
        if math.isnan(reference):
            return True
        gain = value - reference if self._direction == "max" else reference - value
        needed = self.min_delta
        if self.min_delta_mode == "rel" and math.isfinite(reference):
            needed = self.min_delta * abs(reference)
        return gain > needed or (ties and gain == needed)

    def better(self, value: float, reference: float) -> bool:
        """Whether ``value`` is strictly better than ``reference``, whatever ``min_delta``.

        Example:
            >>> watch = MetricWatch("val_loss", "min", min_delta=0.5)
            >>> watch.better(0.9, 1.0), watch.improves(0.9, 1.0)
            (True, False)
        """
        if math.isnan(value):
            return False
        if math.isnan(reference):
            return True
        return value > reference if self._direction == "max" else value < reference

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
        return False, -value if self._direction == "max" else value

    def update(self, value: float, epoch: int, *, ties: bool = False) -> bool:
        """Record ``value`` if it improves on the best by more than ``min_delta``.

        Args:
            value: the epoch's value.
            epoch: the epoch (from 1).
            ties: a value equal to the best (with ``min_delta`` 0) replaces it too.
        """
        if self.improves(value, self.best, ties=ties):
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
        """Restore :meth:`state_dict`, refusing a best value no fit could have reached.

        A best is NaN (no value yet), the baseline, or a value of the metric: finite, or an
        infinity a later value can still beat (+inf in mode min, -inf in mode max). The
        other infinity would make every epoch look worse, so a monitor would stop an
        improving run or never save its best; with ``mode="auto"`` still undecided it is
        refused when the fit decides the mode (:meth:`resolve`, at fit start).

        Raises:
            ValueError: the best value or its epoch is not a number, or the best value is
                an infinity nothing beats.
        """
        best, epoch = state["best"], state["best_epoch"]
        if isinstance(best, bool) or not isinstance(best, (int, float)):
            raise ValueError(f"the best value of {self.monitor!r} is a {type(best).__name__}")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"the epoch of the best {self.monitor!r} is {epoch!r}, not >= 0")
        self.best, self.best_epoch = float(best), epoch
        self._best_unchecked = self.mode == "auto"
        if not self._best_unchecked:
            self._check_best()

    def _check_best(self) -> None:
        """Raise ValueError for a best value that no later value could improve on."""
        self._best_unchecked = False
        if math.isinf(self.best) and (self.best < 0) == (self._direction == "min"):
            raise ValueError(
                f"the best {self.monitor!r} is {self.best}, which no value beats in mode "
                f"{self.mode!r}: a best must be one a later epoch can improve on (a finite "
                "value, NaN before any value, or the baseline)"
            )
