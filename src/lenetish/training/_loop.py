"""One epoch of a fit: batches through the step, running scores, validation, the epoch end.

:meth:`Trainer.fit <lenetish.Trainer.fit>` prepares a fit and calls :func:`run_epoch` once
per epoch. Everything here goes through the trainer's public attributes and seams
(``step``, ``parallel``, ``state``, ``validation_step``, ``call_hook``...).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lenetish._checks import as_class_labels
from lenetish.callbacks import SkipBatch, StopTraining
from lenetish.data.loaders import tell_epoch
from lenetish.errors import InvalidArgumentError
from lenetish.stack.fitting import fit_score
from lenetish.training._plan import settle_layout
from lenetish.training.resume import resumed_batches, start_epoch_progress
from lenetish.training.state import BatchOutput
from lenetish.training.step import StepSettings, evaluation_mode

if TYPE_CHECKING:
    from lenetish.training.trainer import Trainer

__all__ = ["Batch", "run_epoch", "stop_requested", "validate"]

Batch = tuple[Tensor, Tensor]

logger = logging.getLogger("lenetish")


def run_epoch(
    trainer: Trainer, epoch: int, train: Iterable[Batch], val: Iterable[Batch] | None
) -> bool:
    """Train one epoch, validate, and run the epoch-end hooks in their two passes.

    Returns:
        False if a stop request cut the epoch short (it then gets no validation and no
        ``on_epoch_end``), else True.
    """
    state, parallel = trainer.state, trainer.parallel
    state.epoch, state.batch_index = epoch, 0
    tell_epoch(train, epoch)
    parallel.seed_epoch(epoch)
    # From here to the end of the last batch a checkpoint resumes inside this epoch.
    state.progress = progress = start_epoch_progress(trainer)
    score, metric_set = progress.score, progress.metric_set
    started = time.monotonic()
    trainer.model.train()
    trainer.logged, trainer.logging_open = {}, True
    trainer.call_hook("on_epoch_start")
    batch_index = -1
    for batch_index, (images, labels) in resumed_batches(trainer, enumerate(train)):
        if parallel.agree_to_stop(stop_requested(trainer, epoch)):
            trainer.logging_open = False
            return False
        state.batch_index = batch_index
        _check_planned_length(trainer, batch_index)
        try:
            output = _train_batch(trainer, *_on_device(trainer, images, labels))
        except SkipBatch:
            progress.pending, progress.batches_done = None, batch_index + 1
            continue
        except StopTraining:
            trainer.should_stop = True
            continue
        score.add(output.loss, output.logits, output.targets)
        metric_set.update(output.logits, output.targets)
        progress.pending, progress.batches_done = None, batch_index + 1
    state.progress = None  # every batch done: a checkpoint now holds the epoch as finished
    if batch_index < 0 and not progress.batches_done:  # (a resume may have skipped them all)
        raise InvalidArgumentError(
            f"the training loader yielded no batches in epoch {epoch + 1}; give fit() "
            "batches it can iterate every epoch"
        )
    parallel.reduce(score)
    parallel.reduce(metric_set)
    state.metrics = metrics = {"epoch": epoch + 1, **score.metrics(), **metric_set.compute()}
    if val is not None and state.validates(epoch):  # every validation_freq-th epoch
        val_metrics = validate(trainer, val)
        trainer.call_hook("on_validation_end", val_metrics)
        metrics.update(val_metrics)  # with what the hooks wrote into it
    state.lr = float(trainer.optimizer.param_groups[0]["lr"])
    metrics.update(lr=state.lr, seconds=time.monotonic() - started)
    # Callbacks that log run first; those that read the epoch's metrics (History, monitors,
    # loggers: reads_metrics=True) run after them and see every logged value.
    trainer.call_hook("on_epoch_end", reading=False)
    metrics.update({name: float(value) for name, value in trainer.logged.items()})
    trainer.logging_open = False
    trainer.call_hook("on_epoch_end", reading=True)
    return True


def stop_requested(trainer: Trainer, epochs_done: int) -> bool:
    """Whether a stop request ends the fit now: not before ``min_epochs`` whole epochs.

    As in Lightning, a request made earlier (by :class:`~lenetish.EarlyStopping`, a
    :class:`~lenetish.Timer`, ``StopTraining``...) is held, said once in the log, and
    honoured as soon as ``min_epochs`` epochs are done.
    """
    state = trainer.state
    if not trainer.should_stop or epochs_done >= state.min_epochs:
        return trainer.should_stop
    if not state.stop_held:
        state.stop_held = True
        logger.info(
            "lenetish: a stop was requested after %d whole epochs, but min_epochs=%d; "
            "training continues and stops after epoch %d",
            epochs_done,
            state.min_epochs,
            state.min_epochs,
        )
    return False


def _check_planned_length(trainer: Trainer, batch_index: int) -> None:
    """Refuse a batch past ``len(train)`` when the one-cycle schedule was planned from it.

    OneCycleLR is built for ``epochs * len(train)`` steps; a loader whose ``__len__`` says
    fewer batches than it yields would make it raise "Tried to step ... times".
    """
    planned = trainer.state.steps_per_epoch
    if planned is not None and batch_index >= planned and trainer.scheduler_spec == "onecycle":
        raise InvalidArgumentError(
            f"the training loader yielded more batches in epoch {trainer.state.epoch + 1} "
            f"than its len() said ({planned}); scheduler='onecycle' plans its steps from "
            "len(train): make the loader's __len__ return the number of batches it yields, "
            "or use another scheduler"
        )


def _on_device(trainer: Trainer, images: Tensor, labels: Tensor) -> Batch:
    images = images.to(trainer.device, non_blocking=True)
    if trainer.fit_channels_last is None or trainer.layout_unchecked:  # decided on batch 1
        settle_layout(trainer, images)
    if trainer.fit_channels_last and images.dim() == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, as_class_labels(labels.to(trainer.device, non_blocking=True))


def _train_batch(trainer: Trainer, images: Tensor, labels: Tensor) -> BatchOutput:
    assert trainer.step is not None
    state = trainer.state
    trainer.call_hook("on_batch_start")
    output = trainer.step(images, labels)
    if state.global_step == trainer.first_step:
        trainer.criterion.warn_if_smoothing_dropped()
    state.global_step += 1
    detached = BatchOutput(output.loss.detach(), output.logits.detach(), output.targets)
    state.last_loss = detached.loss
    if state.progress is not None:  # trained, counted after on_batch_end (see resume.py)
        state.progress.pending = detached
    lr = trainer.optimizer.param_groups[0]["lr"]
    if not isinstance(lr, Tensor):  # a tensor lr is read once per epoch (no sync here)
        state.lr = float(lr)
    trainer.call_hook("on_batch_end", detached)
    return detached


def validate(trainer: Trainer, val: Iterable[Batch]) -> dict[str, float]:
    """Score ``val`` with ``trainer.validation_step`` in eval and inference mode.

    Returns:
        ``val_loss``, ``val_accuracy`` and ``val_<name>`` for each of the trainer's metrics.

    Raises:
        InvalidArgumentError: the validation loader yielded no samples.
    """
    score, metric_set = fit_score(trainer, smoothing=False), trainer.metric_sets[1]
    metric_set.reset()
    with evaluation_mode(trainer.model, StepSettings(trainer.device, trainer.precision)):
        for images, labels in val:
            output = trainer.validation_step(*_on_device(trainer, images, labels))
            score.add(output.loss, output.logits, output.targets)
            metric_set.update(output.logits, output.targets)
    trainer.parallel.reduce(score)
    trainer.parallel.reduce(metric_set)
    if not score.seen:
        raise InvalidArgumentError("the validation loader yielded no samples")
    return {**score.metrics(prefix="val_"), **metric_set.compute(prefix="val_")}
