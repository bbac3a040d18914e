"""The ``Callback`` base class, training control, ``History`` and the small built-ins.

Hooks are called in this order (``E`` epochs of ``B`` batches, with validation)::

    on_fit_start
    for each epoch:
        on_epoch_start
        for each batch:
            on_batch_start
            on_before_backward(loss)
            on_before_optimizer_step(optimizer)
            on_batch_end(output)
        on_validation_end(metrics)          # only when fit() was given val=
        on_epoch_end
    on_fit_end
    on_exception(exc)                       # instead of the rest, when anything raises

Within one hook the callbacks run sorted by their integer ``order`` (stable: equal orders keep
the order they were given in); checkpointing runs last. A batch skipped with
:class:`SkipBatch` ends at the hook that raised it. An epoch cut short by a stop request gets
no validation and no ``on_epoch_end`` (so checkpoints only ever hold whole epochs).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from lenetish._checks import check_positive_int, check_positive_number

if TYPE_CHECKING:
    from lenetish.state import BatchOutput, TrainState
    from lenetish.trainer import Trainer

__all__ = [
    "Callback",
    "History",
    "SkipBatch",
    "StopTraining",
    "TerminateOnNaN",
    "Timer",
]

logger = logging.getLogger("lenetish")


class StopTraining(Exception):
    """Raise from any hook to end training once the current batch is done."""


class SkipBatch(Exception):
    """Raise from a batch hook to skip the rest of the batch (its optimizer step included)."""


class Callback:
    """Base class of training callbacks: every hook is a no-op, override what you need.

    Attributes:
        order: callbacks with a smaller order run first in every hook (default 0; the
            built-in :class:`History` runs at -100, checkpointing at 1000).
        rank_zero_only: in a distributed fit, run this callback in rank 0's process only
            (for callbacks that just print or write files, like the progress bar and the
            loggers); the default runs it in every process, which callbacks that change the
            training or decide to stop need, since all processes must agree.

    Example:
        >>> class PrintLoss(Callback):
        ...     def on_epoch_end(self, trainer, state):
        ...         print(f"epoch {state.epoch}: loss {state.metrics['loss']:.3f}")
    """

    order: int = 0
    rank_zero_only: bool = False

    def reset(self) -> None:
        """Forget per-fit state; called before ``on_fit_start`` unless the fit resumes."""

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        """Called once before the first epoch."""

    def on_epoch_start(self, trainer: Trainer, state: TrainState) -> None:
        """Called at the start of every epoch."""

    def on_batch_start(self, trainer: Trainer, state: TrainState) -> None:
        """Called before every training batch's forward pass."""

    def on_before_backward(self, trainer: Trainer, state: TrainState, loss: Tensor) -> None:
        """Called with the batch's loss (unscaled, still attached) before ``backward``."""

    def on_before_optimizer_step(
        self, trainer: Trainer, state: TrainState, optimizer: Optimizer
    ) -> None:
        """Called after ``backward`` (gradients unscaled, not yet clipped), before the step."""

    def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
        """Called after the optimizer step with the batch's detached loss, logits, targets."""

    def on_validation_end(
        self, trainer: Trainer, state: TrainState, metrics: dict[str, float]
    ) -> None:
        """Called after validation with its metrics (``val_loss``, ``val_accuracy``)."""

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        """Called at the end of every whole epoch; ``state.metrics`` holds its metrics."""

    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None:
        """Called once after the last epoch (or after a stop request)."""

    def on_exception(self, trainer: Trainer, state: TrainState, exc: BaseException) -> None:
        """Called on every callback when anything raises during ``fit``; it then propagates."""

    def state_dict(self) -> dict[str, Any]:
        """Return what must be saved in a checkpoint to resume this callback exactly."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


Row = dict[str, float]


class History(Callback):
    """One row of metrics per epoch; always present, and what ``Trainer.fit`` returns.

    A row holds ``epoch`` (1-based), ``loss`` and ``accuracy`` (training), ``val_loss`` and
    ``val_accuracy`` (with validation), ``lr`` and ``seconds``.

    Args:
        rows: rows to start with (e.g. read back from a file); usually none.

    Example:
        >>> history = History([{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25}])
        >>> len(history), history[-1]["loss"], history.column("loss")
        (2, 0.25, [0.5, 0.25])
    """

    order = -100

    def __init__(self, rows: list[Row] | None = None) -> None:
        self.rows: list[Row] = list(rows or [])

    def reset(self) -> None:
        """Drop the rows of an earlier fit."""
        self.rows = []

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        """Append the epoch's metrics."""
        self.rows.append(dict(state.metrics))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> Row:
        return self.rows[index]

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    def __repr__(self) -> str:
        return f"History({len(self.rows)} epochs)"

    def column(self, name: str) -> list[float]:
        """The values of metric ``name`` over the epochs that recorded it."""
        return [row[name] for row in self.rows if name in row]

    def state_dict(self) -> dict[str, Any]:
        """The rows, for checkpoints."""
        return {"rows": [dict(row) for row in self.rows]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the rows from a checkpoint."""
        self.rows = [dict(row) for row in state["rows"]]

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write the rows as a JSON list of objects."""
        Path(path).write_text(json.dumps(self.rows, indent=2) + "\n")

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write the rows as CSV with a header (the union of the rows' keys)."""
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        Path(path).write_text(buffer.getvalue())

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> History:
        """Load a history written by :meth:`to_json`."""
        return cls(json.loads(Path(path).read_text()))

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str]) -> History:
        """Load a history written by :meth:`to_csv` (empty cells are left out)."""
        with open(path, newline="") as handle:
            return cls(
                [
                    {key: _number(value) for key, value in row.items() if value != ""}
                    for row in csv.DictReader(handle)
                ]
            )


def _number(text: str) -> float:
    value = float(text)
    return int(value) if value.is_integer() and "." not in text and "e" not in text else value


class TerminateOnNaN(Callback):
    """Stop training when the loss becomes NaN or infinite, naming the step.

    Checking the loss waits for the device, so ``check_every`` can space the checks out.

    Args:
        check_every: check every this many optimizer steps.

    Raises:
        InvalidArgumentError: ``check_every`` is not a positive integer.
    """

    def __init__(self, *, check_every: int = 1) -> None:
        check_positive_int("check_every", check_every)
        self.check_every = check_every
        self.stopped_at_step: int | None = None

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
    """

    def __init__(self, max_seconds: float) -> None:
        check_positive_number("max_seconds", max_seconds)
        self.max_seconds = float(max_seconds)
        self.timed_out = False

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
