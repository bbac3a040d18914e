"""Learning-rate schedules: the ``LRSchedule`` callback and the Trainer's built-in ones."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from lenetish.callbacks.base import Callback
from lenetish.callbacks.watch import MetricWatch, direction
from lenetish.errors import InvalidArgumentError

if TYPE_CHECKING:
    from lenetish.training.state import BatchOutput, TrainState
    from lenetish.training.trainer import Trainer

__all__ = [
    "Interval",
    "LRSchedule",
    "SchedulerFactory",
    "TrainerSchedule",
    "builtin_schedule",
    "check_schedule_state",
]

SchedulerFactory = Callable[[Optimizer], LRScheduler]
Interval = Literal["step", "epoch"]


class LRSchedule(Callback):
    """Step a learning-rate scheduler after every batch or every epoch; resumable.

    Args:
        factory: builds the scheduler from the trainer's optimizer, e.g.
            ``lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)``.
        interval: ``"step"`` (after every optimizer step) or ``"epoch"``.
        monitor: for a :class:`~torch.optim.lr_scheduler.ReduceLROnPlateau`, the metric
            passed to its ``step`` once per epoch, after every callback has logged (e.g.
            ``"val_loss"``); required for it, refused for other schedulers. The scheduler's own
            ``mode`` decides the direction (logged once at fit start); one that contradicts a
            metric whose direction is known (``loss``, ``accuracy`` and their ``val_`` forms,
            or a ``metrics=`` entry declaring ``higher_is_better``) is refused. Note that torch
            counts a plateau one epoch later than Keras: with ``patience=2`` it lowers the lr
            after the third epoch without improvement (Keras after the second), and its
            ``cooldown`` lasts one epoch longer (torch's ``cooldown=1`` is Keras'
            ``cooldown=2``). With the Trainer's ``validation_freq=N``, epochs without
            validation do not step a ``val_*``-monitored scheduler.
        strict: with a ``monitor``, what an epoch whose metrics lack it does: ``True``
            raises :class:`~lenetish.InvalidArgumentError`; ``False`` skips that epoch's step
            with a ``UserWarning`` (Lightning's scheduler-dict ``"strict": False``), for a
            metric logged on some epochs only. Either way a ``val_*`` monitor in a fit
            without ``val`` is refused at fit start (it would never step).
        builtin: deprecated and ignored (it will be removed in 0.3): the Trainer's own
            schedules are recognised by their type, ``TrainerSchedule``.

    Attributes:
        default_monitor: the ``monitor`` a plateau scheduler gets when none is given
            (``"val_loss"`` for the Trainer's ``scheduler=`` callable; ``None`` here).

    Raises:
        InvalidArgumentError: ``interval`` is neither ``"step"`` nor ``"epoch"``, a
            ``monitor`` with ``interval="step"``, or ``strict`` not a bool. At fit start: a
            scheduler built on another optimizer than the fit's, a plateau scheduler without
            a monitor, a monitor for another scheduler, a ``val_*`` monitor without ``val``,
            or a scheduler ``mode`` that contradicts the monitor's known direction.

    Example:
        >>> from torch.optim.lr_scheduler import ReduceLROnPlateau
        >>> plateau = LRSchedule(lambda opt: ReduceLROnPlateau(opt, patience=2), monitor="val_loss")
        >>> plateau.watch.monitor
        'val_loss'
    """

    order = -50
    reads_metrics = True

    def __init__(
        self,
        factory: Callable[[Optimizer], LRScheduler],
        *,
        interval: Interval = "epoch",
        monitor: str | None = None,
        strict: bool = True,
        builtin: bool | None = None,
    ) -> None:
        if builtin is not None:
            warnings.warn(
                "LRSchedule(builtin=...) is deprecated and has no effect; remove the argument",
                DeprecationWarning,
                stacklevel=2,
            )
        if interval not in ("step", "epoch"):
            raise InvalidArgumentError(f"interval must be 'step' or 'epoch', got {interval!r}")
        if not callable(factory):
            raise InvalidArgumentError(f"factory must be callable, got {factory!r}")
        if not isinstance(strict, bool):
            raise InvalidArgumentError(
                f"strict must be True (a missing monitored metric raises) or False (its "
                f"epoch's step is skipped with a warning), got {strict!r}"
            )
        if monitor is not None and interval != "epoch":
            raise InvalidArgumentError(
                "a monitored schedule steps once per epoch: use interval='epoch'"
            )
        self.factory = factory
        self.interval = interval
        self.strict = strict
        self.default_monitor: str | None = None
        # ReduceLROnPlateau has its own mode; the watch only reads the value.
        self.watch = None if monitor is None else MetricWatch.checked(monitor, "min")
        self.state_key = f"lenetish.LRSchedule[interval={interval}]"
        self.scheduler: LRScheduler | None = None
        self._pending: dict[str, Any] | None = None

    def reset(self) -> None:
        """Forget the scheduler of an earlier fit."""
        self.scheduler, self._pending = None, None

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        """Build the scheduler; when resuming, restore its state and the checkpoint's lr."""
        assert trainer.optimizer is not None
        # Building a scheduler rewrites lr (and momentum, for one-cycle) in the param groups;
        # a resumed optimizer's values are the right ones, so put them back afterwards.
        restored = [
            {
                key: value.clone() if isinstance(value, Tensor) else value
                for key, value in group.items()
                if key != "params"
            }
            for group in trainer.optimizer.param_groups
        ]
        self.scheduler = self.factory(trainer.optimizer)
        owner = getattr(self.scheduler, "optimizer", trainer.optimizer)
        if owner is not trainer.optimizer:  # it would change another optimizer's lr
            raise InvalidArgumentError(
                f"the schedule's factory built a {type(self.scheduler).__name__} on another "
                f"optimizer ({type(owner).__name__}) than the fit's "
                f"{type(trainer.optimizer).__name__}, which it was given, so it would never "
                "change the fit's learning rate; build the scheduler from the optimizer the "
                "factory receives, e.g. lambda optimizer: StepLR(optimizer, 1)"
            )
        self._check_monitor(trainer, state)
        if self._pending is not None:
            self.scheduler.load_state_dict(self._pending)
            for group, values in zip(trainer.optimizer.param_groups, restored, strict=True):
                for key, value in values.items():
                    if isinstance(group[key], Tensor) and isinstance(value, Tensor):
                        group[key].copy_(value)  # keep the tensor a captured step reads
                    else:
                        group[key] = value
            self._pending = None
        state.lr = float(trainer.optimizer.param_groups[0]["lr"])

    def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
        """Step per optimizer step when ``interval="step"`` (not after a micro-batch)."""
        if self.interval == "step" and self.scheduler is not None and not state.accumulating:
            self.scheduler.step()

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        """Step per epoch when ``interval="epoch"`` (with the monitored value, if any)."""
        if self.interval != "epoch" or self.scheduler is None:
            return
        if self.watch is not None:
            if self.watch.skips(state):  # validation_freq: no val_* value this epoch
                return
            if not self.strict and self.watch.monitor not in state.metrics:
                warnings.warn(
                    f"LRSchedule: monitor={self.watch.monitor!r} is not among epoch "
                    f"{state.epoch + 1}'s metrics ({', '.join(sorted(state.metrics))}), so its "
                    f"{type(self.scheduler).__name__} step is skipped (strict=False)",
                    UserWarning,
                    stacklevel=2,
                )
                return
            self.scheduler.step(self.watch.value(state.metrics))  # type: ignore[arg-type]
        else:
            self.scheduler.step()

    def _check_monitor(self, trainer: Trainer, state: TrainState) -> None:
        """Give a plateau scheduler its metric; refuse a metric to any other scheduler."""
        plateau = isinstance(self.scheduler, ReduceLROnPlateau)
        if plateau and self.watch is None and self.default_monitor is not None:
            self.watch = MetricWatch.checked(self.default_monitor, "min")
        if plateau and self.watch is None:
            raise InvalidArgumentError(
                "ReduceLROnPlateau needs a metric each epoch: use LRSchedule(factory, "
                "monitor='val_loss') (or another metric name)"
            )
        if not plateau and self.watch is not None:
            raise InvalidArgumentError(
                f"monitor={self.watch.monitor!r} is for ReduceLROnPlateau; "
                f"{type(self.scheduler).__name__} steps without a metric, so drop monitor="
            )
        if self.watch is not None:
            self.watch.check_available(state, "the ReduceLROnPlateau schedule")
            better = direction(self.watch.monitor, trainer.metrics)
            mode = getattr(self.scheduler, "mode", better)
            if better is not None and mode != better:
                raise InvalidArgumentError(
                    f"ReduceLROnPlateau(mode={mode!r}) watches {self.watch.monitor!r}, which is "
                    f"better {'high' if better == 'max' else 'low'}: the lr would drop while it "
                    f"improves; build it with mode={better!r}"
                )
            if mode in ("min", "max"):
                self.watch.mode = mode  # the watch only reads values; this is for the log
                self.watch.announce("ReduceLROnPlateau", "the scheduler's own mode")

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state."""
        if self.scheduler is None:
            return {} if self._pending is None else self._pending
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Keep the state until ``on_fit_start`` builds the scheduler.

        Raises:
            ValueError: a learning rate in it is negative or not finite (a zero peak, or a
                plateau scheduler's best value that nothing can beat, too): no schedule
                produces one, and it would train with negative or stuck rates.
        """
        check_schedule_state(state)
        self._pending = state or None


#: Learning-rate entries of torch's schedulers' states: base_lrs, _last_lr, min_lrs (plateau),
#: max_lrs (cyclic), default_min_lr, eta_min (cosine). Keys naming the peak must be positive.
_RATE_KEY = re.compile(r"(?:lrs?|eta_min)$")
_PEAK_KEY = re.compile(r"^max_lrs?$")


def check_schedule_state(state: object, where: str = "state") -> None:
    """Refuse learning rates no schedule produces in a scheduler's ``state_dict``.

    Every number under a learning-rate key (see ``_RATE_KEY``; nested states of
    ``SequentialLR`` and ``ChainedScheduler`` too) must be finite and >= 0 (a cosine schedule
    reaches 0), a peak (``max_lrs``) > 0; a ``ReduceLROnPlateau`` best must be finite or its
    starting value (inf in mode min, -inf in mode max), else no value would ever improve.

    Raises:
        ValueError: naming the entry and its value.

    Example:
        >>> check_schedule_state({"base_lrs": [0.1], "_last_lr": [-0.05]})
        Traceback (most recent call last):
        ...
        ValueError: state['_last_lr'] holds -0.05; a learning rate must be a finite number >= 0
    """
    if not isinstance(state, (dict, list, tuple)):
        return
    items = state.items() if isinstance(state, dict) else enumerate(state)
    for key, value in items:
        place = f"{where}[{key!r}]"
        if isinstance(value, (dict, list, tuple)) and not _numbers(value):
            check_schedule_state(value, place)
        elif isinstance(key, str) and _RATE_KEY.search(key):
            peak = bool(_PEAK_KEY.match(key))
            for rate in _numbers(value) or []:
                if not math.isfinite(rate) or rate < 0 or (peak and rate == 0):
                    bound = "> 0 (the peak of its schedule)" if peak else ">= 0"
                    raise ValueError(
                        f"{place} holds {rate:g}; a learning rate must be a finite number {bound}"
                    )
    if isinstance(state, dict) and state.get("mode") in ("min", "max") and "best" in state:
        best = _numbers(state["best"])
        start = math.inf if state["mode"] == "min" else -math.inf
        if best is None or len(best) != 1 or not (math.isfinite(best[0]) or best[0] == start):
            raise ValueError(
                f"{where}['best'] is {state['best']!r}; a plateau scheduler's best must be a "
                f"finite number or {start} (mode {state['mode']!r}, no value yet), else no "
                "value would ever count as an improvement"
            )


def _numbers(value: object) -> list[float] | None:
    """``value`` as a list of numbers (one, or a list or tuple of them), else ``None``."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if not values:
        return None
    numbers: list[float] = []
    for item in values:
        if isinstance(item, Tensor) and item.numel() == 1 and not item.is_complex():
            numbers.append(float(item.item()))
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            numbers.append(float(item))
        elif item is not None:
            return None
    return numbers


class TrainerSchedule(LRSchedule):
    """A schedule the Trainer builds from its ``scheduler=`` setting, changing only the lr.

    Being of this type tells the CUDA-graph step that the schedule changes nothing but the
    learning rate, which a captured step reads from device memory. Its checkpoint key is
    ``"lenetish.Trainer.scheduler"``.
    """

    def __init__(self, factory: SchedulerFactory, *, interval: Interval) -> None:
        super().__init__(factory, interval=interval)
        self.state_key = "lenetish.Trainer.scheduler"


def builtin_schedule(
    spec: str | SchedulerFactory | None,
    *,
    epochs: int,
    steps_per_epoch: int | None,
) -> LRSchedule | None:
    """The :class:`LRSchedule` for the Trainer's ``scheduler=`` setting (``None`` for none).

    ``"onecycle"`` rises to the lr the optimizer was built with (each parameter group's own:
    ``lr=``, a callable optimizer's or an overridden ``configure_optimizers``') and anneals
    over all steps; ``"step"`` multiplies the lr by
    0.7 after every epoch; a callable is stepped after every epoch.

    Raises:
        InvalidArgumentError: ``"onecycle"`` with a loader that has no length.
    """
    if spec is None:
        return None
    if spec == "onecycle":
        if steps_per_epoch is None:
            raise InvalidArgumentError(
                "scheduler='onecycle' needs the number of batches per epoch, but the "
                "training loader has no len(); pass a list, a DataLoader or a lenetish loader"
            )
        total = epochs * steps_per_epoch

        def one_cycle(opt: Optimizer) -> LRScheduler:
            # Up to each group's own lr, whatever built the optimizer (lr=, a callable, an
            # overridden configure_optimizers); a resumed group keeps the max_lr it recorded.
            # Momentum stays fixed, so the schedule only changes the lr.
            peak = [float(group.get("max_lr", group["lr"])) for group in opt.param_groups]
            return torch.optim.lr_scheduler.OneCycleLR(
                opt, peak, total_steps=total, cycle_momentum=False
            )

        return TrainerSchedule(one_cycle, interval="step")
    if spec == "step":
        return TrainerSchedule(
            lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.7), interval="epoch"
        )
    assert callable(spec)
    schedule = LRSchedule(spec)  # a user's scheduler may change more than the lr
    schedule.state_key = "lenetish.Trainer.scheduler"
    schedule.default_monitor = "val_loss"  # for a ReduceLROnPlateau
    return schedule
