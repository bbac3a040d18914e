"""Assembling one fit: its batches checked, its History, callbacks, optimizer, scores and step.

:meth:`Trainer.fit <lenetish.Trainer.fit>` calls these before the first hook; everything
goes through the trainer's public attributes and seams.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sized
from typing import TYPE_CHECKING

from lenetish.callbacks import History
from lenetish.callbacks.schedules import builtin_schedule
from lenetish.errors import InvalidArgumentError
from lenetish.metrics import MetricSet
from lenetish.resume import callbacks_by_key
from lenetish.stack_fit import prepare_stack_fit
from lenetish.step import CaptureRequest, EagerStep, StepSettings, make_step

if TYPE_CHECKING:
    from lenetish.trainer import Trainer

__all__ = ["batch_count", "check_reiterable", "prepare_fit"]


def check_reiterable(**batches: Iterable[object] | None) -> None:
    """Refuse an iterator (a generator, say) as a fit's batches: it is used up after a pass.

    Raises:
        InvalidArgumentError: naming the argument and what to pass instead.
    """
    for name, given in batches.items():
        if isinstance(given, Iterator):
            raise InvalidArgumentError(
                f"{name} is an iterator ({type(given).__name__}), which would be used up "
                "after one pass; pass something that can be iterated again each epoch: a "
                "list of batches, a DataLoader, a lenetish loader"
            )


def batch_count(batches: Iterable[object]) -> int | None:
    """``len(batches)``, or ``None`` for a loader without one (an iterable dataset's)."""
    if not isinstance(batches, Sized):
        return None
    try:
        return len(batches)
    except TypeError:  # a DataLoader over an IterableDataset without __len__
        return None


def prepare_fit(
    trainer: Trainer, steps_per_epoch: int | None, *, custom_training_step: bool
) -> None:
    """Give ``trainer`` this fit's History, callbacks, loss, optimizer, metrics and step.

    Callbacks are sorted by ``order``, reset, and checked for distinct state keys.

    Args:
        trainer: the trainer about to fit.
        steps_per_epoch: batches per epoch (``None`` when the loader has no length).
        custom_training_step: a subclass overrides ``training_step`` (capture is then unsafe).
    """
    if not trainer.history_given:  # each fit returns a History of its own
        fresh = History()
        trainer.callbacks = [fresh if c is trainer.history else c for c in trainer.callbacks]
        trainer.history = fresh
    trainer.criterion.reset()
    schedule = builtin_schedule(
        trainer.scheduler_spec,
        lr=trainer.lr,
        epochs=trainer.epochs,
        steps_per_epoch=steps_per_epoch,
    )
    everyone = [*trainer.callbacks, *([schedule] if schedule else [])]
    trainer.fit_callbacks = sorted(
        (c for c in everyone if trainer.is_main_process or not c.rank_zero_only),
        key=lambda c: c.order,
    )
    callbacks_by_key(everyone)  # refuses two callbacks with one key, on every rank
    for callback in trainer.fit_callbacks:
        callback.reset()
    trainer.fitted_optimizer = optimizer = trainer.configure_optimizers()
    trainer.metric_sets = (
        MetricSet(trainer.metrics, trainer.device),
        MetricSet(trainer.metrics, trainer.device),
    )
    settings = StepSettings(
        trainer.device, trainer.precision, trainer.grad_clip_norm, trainer.augment
    )
    eager = EagerStep(trainer.model, optimizer, trainer.training_step, settings, trainer.call_hook)
    request = CaptureRequest(
        cuda_graphs=trainer.cuda_graphs,
        settings=settings,
        optimizer=optimizer,
        callbacks=trainer.fit_callbacks,
        custom_training_step=custom_training_step,
        deterministic=trainer.deterministic,
        compiled=trainer.compile,
        world_size=trainer.world_size,
    )
    trainer.step = make_step(eager, request)
    trainer.state.lr = float(optimizer.param_groups[0]["lr"])
    prepare_stack_fit(trainer)  # a ModelStack: per-member scores, coupling settings refused
