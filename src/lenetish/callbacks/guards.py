"""Guards that stop a fit: ``TerminateOnNaN`` (a non-finite loss) and ``Timer`` (a time limit)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch

from lenetish._checks import check_positive_int, check_positive_number
from lenetish.callbacks.base import Callback

if TYPE_CHECKING:
    from lenetish.state import BatchOutput, TrainState
    from lenetish.trainer import Trainer

__all__ = ["TerminateOnNaN", "Timer"]

logger = logging.getLogger("lenetish")


class TerminateOnNaN(Callback):
    """Stop training when the loss becomes NaN or infinite, naming the step.

    Checking the loss waits for the device, so ``check_every`` can space the checks out.

    Args:
        check_every: check every this many optimizer steps.

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

    def __init__(self, *, check_every: int = 1) -> None:
        check_positive_int("check_every", check_every)
        self.check_every = check_every
        self.stopped_at_step: int | None = None
        self.state_key = "lenetish.TerminateOnNaN"

    def reset(self) -> None:
        """Forget an earlier stop."""
        self.stopped_at_step = None

    def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
        """Request a stop if this step's loss is not finite."""
        if state.global_step % self.check_every == 0 and not torch.isfinite(output.loss):
            self.stopped_at_step = state.global_step
            logger.warning(
                "TerminateOnNaN: loss is %s at step %d (epoch %d, batch %d); stopping",
                float(output.loss),
                state.global_step,
                state.epoch + 1,
                state.batch_index,
            )
            trainer.should_stop = True


class Timer(Callback):
    """Stop training cleanly once a fit has run for ``max_seconds``.

    The check runs after every batch and costs no device sync.

    Args:
        max_seconds: the time limit of one ``fit`` call.

    Raises:
        InvalidArgumentError: ``max_seconds`` is not a positive number.

    Example:
        >>> from lenetish import MNISTConvNet, Timer, Trainer
        >>> timer = Timer(max_seconds=0.001)  # reached after the first batch
        >>> batches = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))] * 3
        >>> trainer = Trainer(MNISTConvNet(), epochs=3, device="cpu", callbacks=[timer])
        >>> history = trainer.fit(batches)
        >>> timer.timed_out, len(history)  # the epoch cut short is not recorded
        (True, 0)
    """

    def __init__(self, max_seconds: float) -> None:
        check_positive_number("max_seconds", max_seconds)
        self.max_seconds = float(max_seconds)
        self.timed_out = False
        self.state_key = "lenetish.Timer"

    def reset(self) -> None:
        """Forget an earlier time-out."""
        self.timed_out = False

    def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
        """Request a stop once the limit is reached."""
        if not self.timed_out and state.elapsed >= self.max_seconds:
            self.timed_out = True
            logger.info(
                "Timer: %.1f s limit reached at step %d; stopping",
                self.max_seconds,
                state.global_step,
            )
            trainer.should_stop = True
