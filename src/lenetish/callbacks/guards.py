"""Guards that stop a fit: ``TerminateOnNaN`` (a non-finite loss) and ``Timer`` (a time limit)."""

from __future__ import annotations

import logging
import math
import re
import time
import warnings
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

import torch

from lenetish._checks import check_positive_int
from lenetish.callbacks.base import Callback
from lenetish.errors import InvalidArgumentError, TrainingDivergedError

if TYPE_CHECKING:
    from lenetish.training.state import BatchOutput, TrainState
    from lenetish.training.trainer import Trainer

__all__ = ["Duration", "TerminateOnNaN", "Timer"]

logger = logging.getLogger("lenetish")

#: What :class:`Timer` takes as a duration: seconds, ``"DD:HH:MM:SS"``, a ``timedelta``, or
#: ``timedelta`` keyword arguments such as ``{"hours": 1}``.
Duration = float | str | timedelta | Mapping[str, float]

_CLOCK = re.compile(r"^(\d+):(\d+):(\d+):(\d+(?:\.\d*)?)$")  # DD:HH:MM:SS, as Lightning's


class TerminateOnNaN(Callback):
    """Stop training when the loss becomes NaN or infinite, naming the step.

    Checking the loss waits for the device, so ``check_every`` can space the checks out.

    Args:
        check_every: check every this many optimizer steps.
        raise_error: raise :class:`~lenetish.TrainingDivergedError` instead of stopping
            (Keras' ``raise_error``): the fit ends with the error, other callbacks get
            ``on_exception`` and no ``on_fit_end``. A stop is held by the Trainer's
            ``min_epochs``; the error is not.

    Raises:
        InvalidArgumentError: ``check_every`` is not a positive integer.

    Example:
        >>> from lenetish import MNISTConvNet, TerminateOnNaN, Trainer
        >>> images = torch.full((8, 1, 28, 28), float("nan"))
        >>> broken = [(images, torch.zeros(8, dtype=torch.long))] * 3
        >>> guard = TerminateOnNaN()
        >>> history = Trainer(MNISTConvNet(), epochs=3, device="cpu", callbacks=[guard]).fit(broken)
        >>> guard.stopped_at_step, len(history)  # stopped at the first step, no epoch recorded
        (1, 0)
    """

    def __init__(self, *, check_every: int = 1, raise_error: bool = False) -> None:
        check_positive_int("check_every", check_every)
        self.check_every = check_every
        self.raise_error = raise_error
        self.stopped_at_step: int | None = None
        self.state_key = "lenetish.TerminateOnNaN"

    def reset(self) -> None:
        """Forget an earlier stop."""
        self.stopped_at_step = None

    def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
        """Request a stop (or raise) if this step's loss is not finite."""
        if state.global_step % self.check_every or torch.isfinite(output.loss):
            return
        where = f"step {state.global_step} (epoch {state.epoch + 1}, batch {state.batch_index})"
        if self.raise_error:
            raise TrainingDivergedError(
                f"the training loss is {float(output.loss)} at {where}; TerminateOnNaN("
                "raise_error=True) ends the fit here. Lower the learning rate, clip gradients "
                "(grad_clip_norm=) or check the data for NaN; raise_error=False only stops"
            )
        if self.stopped_at_step is None:  # once: min_epochs may hold the stop for a while
            self.stopped_at_step = state.global_step
            logger.warning("TerminateOnNaN: loss is %s at %s; stopping", float(output.loss), where)
        trainer.should_stop = True


class Timer(Callback):
    """Stop training cleanly once the fit has run for a duration; tell the time taken and left.

    The time counts from the start of training (``on_fit_start``); a resumed fit goes on from
    the time saved in its checkpoint (as Lightning's ``Timer`` does), so the limit covers the
    whole run, and one resumed after the limit stops before training. The check after every
    batch (or epoch) costs no device sync.

    Args:
        duration: the limit: seconds (``0`` stops at the first check), a
            ``"DD:HH:MM:SS"`` string (``"00:12:00:00"``: 12 hours), a
            :class:`~datetime.timedelta`, or a dict of its arguments
            (``{"hours": 12}``); ``None`` only measures.
        interval: check after every optimizer step (``"step"``: the epoch cut short is not
            recorded) or every epoch (``"epoch"``: the last epoch is whole, in the History and
            ``last.pt``).
        max_seconds: deprecated name of ``duration`` (seconds); removed in 0.3.

    Attributes:
        max_seconds: the limit in seconds (``None`` without one).
        timed_out: whether this fit reached the limit.

    Raises:
        InvalidArgumentError: ``duration`` is negative, not finite, or not one of the forms
            above, or ``interval`` is neither ``"step"`` nor ``"epoch"``.

    Example:
        >>> from datetime import timedelta
        >>> from lenetish import MNISTConvNet, Timer, Trainer
        >>> Timer("00:01:30:00").time_remaining(), Timer(timedelta(minutes=2)).max_seconds
        (5400.0, 120.0)
        >>> timer = Timer(0, interval="epoch")  # reached at the first epoch's end
        >>> batches = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))] * 3
        >>> trainer = Trainer(MNISTConvNet(), epochs=3, device="cpu", callbacks=[timer])
        >>> history = trainer.fit(batches)
        >>> timer.timed_out, len(history), timer.time_elapsed() > 0
        (True, 1, True)
    """

    def __init__(
        self,
        duration: Duration | None = None,
        *,
        interval: Literal["step", "epoch"] = "step",
        max_seconds: float | None = None,
    ) -> None:
        if max_seconds is not None:
            warnings.warn(
                "Timer(max_seconds=...) is deprecated; pass the limit as Timer(duration) "
                "(seconds, 'DD:HH:MM:SS' or a timedelta)",
                DeprecationWarning,
                stacklevel=2,
            )
            if duration is None:
                duration = max_seconds
        if interval not in ("step", "epoch"):
            raise InvalidArgumentError(f"interval must be 'step' or 'epoch', got {interval!r}")
        self.max_seconds = None if duration is None else _seconds(duration)
        self.interval = interval
        self.timed_out = False
        self._offset = 0.0  # seconds of earlier fits of this run (from a checkpoint)
        self._start: float | None = None
        self._end: float | None = None
        self.state_key = "lenetish.Timer"

    def reset(self) -> None:
        """Forget an earlier fit's time-out and time (a resumed fit then loads its own)."""
        self.timed_out = False
        self._offset, self._start, self._end = 0.0, None, None

    def time_elapsed(self) -> float:
        """Seconds of training so far in this run (earlier, resumed fits included)."""
        if self._start is None:
            return self._offset
        return self._offset + (self._end or time.monotonic()) - self._start

    def time_remaining(self) -> float | None:
        """Seconds left until the limit (negative once past it), or ``None`` without one."""
        if self.max_seconds is None:
            return None
        return self.max_seconds - self.time_elapsed()

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        """Start the clock; stop a resumed fit at once if its time is already used up."""
        self._start, self._end = time.monotonic(), None
        if state.resumed and self._offset > 0:
            self._check(trainer, state)

    def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
        """With ``interval="step"``, request a stop once the limit is reached."""
        if self.interval == "step":
            self._check(trainer, state)

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        """With ``interval="epoch"``, request a stop once the limit is reached."""
        if self.interval == "epoch":
            self._check(trainer, state)

    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None:
        """Stop the clock."""
        self._end = time.monotonic()

    def on_exception(self, trainer: Trainer, state: TrainState, exc: BaseException) -> None:
        """Stop the clock."""
        self._end = time.monotonic()

    def _check(self, trainer: Trainer, state: TrainState) -> None:
        if self.max_seconds is None or self.time_elapsed() < self.max_seconds:
            return
        if not self.timed_out:
            self.timed_out = True
            logger.info(
                "Timer: %s limit reached after %s at step %d; stopping",
                timedelta(seconds=self.max_seconds),
                timedelta(seconds=round(self.time_elapsed())),
                state.global_step,
            )
        trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        """The seconds of training so far, for a resumed fit to go on from."""
        return {"time_elapsed": self.time_elapsed()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Go on from the saved seconds of training."""
        self._offset = float(state.get("time_elapsed", 0.0))


def _seconds(duration: object) -> float:
    """``duration`` in seconds; see :data:`Duration`.

    Raises:
        InvalidArgumentError: a negative or non-finite value, or an unknown form.
    """
    seconds: float | None = None
    if isinstance(duration, timedelta):
        seconds = duration.total_seconds()
    elif isinstance(duration, (int, float)) and not isinstance(duration, bool):
        seconds = float(duration)
    elif isinstance(duration, str) and (clock := _CLOCK.match(duration.strip())):
        days, hours, minutes, rest = clock.groups()
        seconds = timedelta(
            days=int(days), hours=int(hours), minutes=int(minutes), seconds=float(rest)
        ).total_seconds()
    elif isinstance(duration, Mapping):
        try:
            seconds = timedelta(**duration).total_seconds()
        except (TypeError, ValueError, OverflowError):
            seconds = None
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        raise InvalidArgumentError(
            "duration must be seconds >= 0, a 'DD:HH:MM:SS' string, a datetime.timedelta or "
            f"a dict of timedelta arguments such as {{'hours': 1}}, got {duration!r}"
        )
    return seconds
