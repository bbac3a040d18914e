"""A fit's epochs: batches through the step, running scores, validation, the epoch end.

:meth:`Trainer.fit <lenetish.Trainer.fit>` builds the fit's plan and calls :func:`run_fit`,
which runs :func:`run_epoch` once per epoch. What exists only for this fit comes from the
plan (step, parallel strategy, hooks, scores, logged values); the trainer gives its seams
(``validation_step``), its ``state`` and its ``should_stop``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from lenetish._checks import as_class_labels
from lenetish._device import deterministic_algorithms, scoring, seed_everything
from lenetish.callbacks.base import Callback, SkipBatch, StopTraining
from lenetish.callbacks.history import History
from lenetish.data.identity import training_data_record
from lenetish.data.loaders import tell_epoch
from lenetish.distributed.strategies import ParallelStrategy, parallel_strategy
from lenetish.errors import InvalidArgumentError
from lenetish.layout import match_optimizer_layout
from lenetish.losses import remember_output_kind
from lenetish.saving.checkpoint import load_checkpoint, restore_rng_state
from lenetish.training._layout_plan import (
    LayoutDecision,
    ModelAsFound,
    restore_model,
    settle_layout,
)
from lenetish.training._plan import (
    FitPlan,
    batch_count,
    build_plan,
    check_reiterable,
    settle_precision,
)
from lenetish.training._streams import ContinuingLoader, FirstBatches
from lenetish.training.limits import LoopLimits, batches_allowed, check_interval
from lenetish.training.resume import (
    restore_training_state,
    resumed_batches,
    start_epoch_progress,
)
from lenetish.training.state import BatchOutput, EpochProgress, TrainState

if TYPE_CHECKING:
    from lenetish.training.trainer import Trainer

__all__ = ["Batch", "fit_once", "run_epoch", "run_fit", "stop_requested", "validate"]

Batch = tuple[Tensor, Tensor]

logger = logging.getLogger("lenetish")


def fit_once(
    trainer: Trainer,
    train: Iterable[Batch],
    val: Iterable[Batch] | None,
    resume: str | os.PathLike[str] | None,
    *,
    adopt: Callable[[ParallelStrategy, FitPlan | None], None],
) -> History:
    """One ``Trainer.fit``: plan it, run it, and put the model back as it came.

    ``adopt`` gives the trainer this fit's parallel strategy and, once built, its plan (so
    ``trainer.optimizer`` works in every hook); the fit's state, History and dataset record
    are the trainer's public attributes.
    """
    check_reiterable(train=train, val=val)
    checkpoint = None if resume is None else load_checkpoint(resume)
    parallel = parallel_strategy(trainer.device)
    adopt(parallel, None)
    trainer.data_info = training_data_record(trainer.module, train, trainer.data_info)
    train = parallel.shard(train, role="training")
    val = None if val is None else parallel.shard(val, role="validation")
    limits = trainer.limits
    if limits.steps_per_epoch is not None:  # Keras': the loader's iterator goes on
        train = ContinuingLoader(train, limits.steps_per_epoch, trainer)
    steps_per_epoch = epoch_batches(train, limits)
    _check_in_epoch_validation(limits, val, steps_per_epoch)
    trainer.state = TrainState(
        epochs=fit_epochs(trainer, steps_per_epoch),
        steps_per_epoch=steps_per_epoch,
        resumed=checkpoint is not None,
        resumed_from=None if resume is None else str(Path(resume).resolve()),
        validating=val is not None,
        validation_freq=trainer.validation_freq,
        min_epochs=trainer.min_epochs,
    )
    trainer.should_stop = False
    as_found = ModelAsFound.of(trainer.module)
    plan = None
    try:
        with deterministic_algorithms(trainer.deterministic):
            if checkpoint is None and trainer.seed is not None:
                seed_everything(trainer.seed)
            if limits.overfit_batches:
                train = _overfit_batches(train, steps_per_epoch, resumed=checkpoint is not None)
            plan = build_plan(trainer, parallel, steps_per_epoch)
            plan.stream = train if isinstance(train, ContinuingLoader) else None
            adopt(parallel, plan)
            run_fit(trainer, plan, train, val, checkpoint, source=str(resume))
    except BaseException as exc:
        if plan is None:  # the plan failed (configure_optimizers...): run_fit never ran
            _tell_callbacks(trainer, trainer.callbacks, exc)
        raise
    finally:  # layout, compilation and mode as they came
        restore_model(trainer.module, as_found, None if plan is None else plan.optimizer)
    return trainer.history


def _tell_callbacks(trainer: Trainer, callbacks: Iterable[Callback], exc: BaseException) -> None:
    """Hand a fit's exception to every callback's ``on_exception`` (their own errors logged)."""
    for callback in callbacks:
        try:
            callback.on_exception(trainer, trainer.state, exc)
        except Exception:
            logger.exception("%s.on_exception failed", type(callback).__name__)


def epoch_batches(train: Iterable[Batch], limits: LoopLimits) -> int | None:
    """The batches an epoch trains on: ``len(train)``, cut by ``limit_train_batches``."""
    length = batch_count(train)
    allowed = batches_allowed(limits.train_batches, length, name="limit_train_batches")
    if allowed is None:
        return length
    return allowed if length is None else min(allowed, length)


def _check_in_epoch_validation(
    limits: LoopLimits, val: Iterable[Batch] | None, batches: int | None
) -> None:
    """Refuse ``val_check_interval`` without validation batches, or longer than an epoch."""
    interval = limits.val_check_interval
    if interval is None:
        return
    if val is None:
        raise InvalidArgumentError(
            f"val_check_interval={interval} validates inside each epoch, but fit() was given "
            "no val batches; pass val=, or leave val_check_interval unset"
        )
    if isinstance(interval, int):
        check_interval(interval, batches)
    else:
        batches_allowed(interval, batches, name="val_check_interval")  # needs len(train)


def _overfit_batches(train: Iterable[Batch], batches: int | None, *, resumed: bool) -> FirstBatches:
    """The fixed training batches of ``overfit_batches`` (taken once, logged once)."""
    fixed = FirstBatches(train, batches if batches is not None else 1)
    logger.info(
        "lenetish: overfit_batches: training on the first %d batch(es) of the training loader, "
        "the same ones every epoch (shuffling off), and validating on as many%s",
        len(fixed),
        "; a resumed fit takes them afresh from the loader" if resumed else "",
    )
    return fixed


def in_epoch_checks(trainer: Trainer, batches: int | None) -> int | None:
    """Every how many training batches an epoch validates (``None``: at its end only)."""
    interval = trainer.limits.val_check_interval
    if interval is None:
        return None
    every = batches_allowed(interval, batches, name="val_check_interval")
    return None if every is None or (batches is not None and every >= batches) else every


def fit_epochs(trainer: Trainer, batches: int | None) -> int:
    """The epochs a fit runs to: ``epochs``, or with ``epochs=None`` what ``max_steps`` needs."""
    limits = trainer.limits
    if limits.quick_run:
        return 1
    if trainer.epochs is not None:
        return trainer.epochs
    assert limits.max_steps is not None  # the Trainer refuses epochs=None without it
    if not batches:  # no len(): epochs end when max_steps is reached
        return limits.max_steps
    return math.ceil(limits.max_steps / limits.optimizer_steps(batches))


def run_fit(
    trainer: Trainer,
    plan: FitPlan,
    train: Iterable[Batch],
    val: Iterable[Batch] | None,
    checkpoint: dict[str, Any] | None,
    *,
    source: str,
) -> None:
    """Run a planned fit: resume, ``on_fit_start``, the epochs, ``on_fit_end``.

    Any exception is handed to every callback's ``on_exception`` and raised again; the
    model is unwrapped from its data-parallel wrapper however the fit ends.
    """
    state, parallel = trainer.state, plan.parallel
    try:
        if checkpoint is not None:
            restore_training_state(trainer, plan, checkpoint, source=source)
            match_optimizer_layout(plan.optimizer)  # the saved moments' layout may differ
        plan.first_step = state.global_step
        parallel.agree_on_seed(
            checkpoint.get("rank_seed", 0) if checkpoint is not None else trainer.seed
        )
        trainer.model = parallel.wrap(trainer.model)
        plan.hooks("on_fit_start")
        if checkpoint is not None:
            restore_rng_state(checkpoint["rng"])
        if val is not None:
            sanity_check(trainer, plan, val)
        for epoch in range(state.epoch, state.epochs):
            stop = parallel.agree_to_stop(stop_requested(trainer, epoch), epoch_end=True)
            if stop or not run_epoch(trainer, plan, epoch, train, val):
                break
        parallel.agree_to_stop(trainer.should_stop, epoch_end=True)  # no check left open
        plan.hooks("on_fit_end")
        remember_output_kind(trainer.module, plan.criterion.kind)  # for predict, export
    except BaseException as exc:
        parallel.note_failure()
        _tell_callbacks(trainer, plan.callbacks, exc)
        raise
    finally:
        trainer.model = trainer.module  # drop the DDP wrapper


def run_epoch(
    trainer: Trainer,
    plan: FitPlan,
    epoch: int,
    train: Iterable[Batch],
    val: Iterable[Batch] | None,
) -> bool:
    """Train one epoch, validate, and run the epoch-end hooks in their two passes.

    Returns:
        False if a stop request cut the epoch short (it then gets no validation and no
        ``on_epoch_end``), else True. An epoch cut by ``max_steps`` or
        ``limit_train_batches`` is validated and recorded like a whole one; ``max_steps``
        then ends the fit.
    """
    state, parallel, hooks = trainer.state, plan.parallel, plan.hooks
    state.epoch, state.batch_index = epoch, 0
    tell_epoch(train, epoch)
    parallel.seed_epoch(epoch)
    # From here to the end of the last batch a checkpoint resumes inside this epoch.
    state.progress = progress = start_epoch_progress(trainer, plan)
    score, metric_set = progress.score, progress.metric_set
    started = time.monotonic()
    if not trainer.model.training:  # a model given in eval mode; frozen submodules stay so
        trainer.model.train()
    plan.logged, plan.logged_weights, plan.logging_open = {}, {}, True
    hooks("on_epoch_start")
    batch_index = -1
    batches: Iterator[tuple[int, Any]] = enumerate(train)
    if state.steps_per_epoch is not None and trainer.limits.train_batches is not None:
        batches = itertools.islice(batches, state.steps_per_epoch)  # limit_train_batches
    check_every = in_epoch_checks(trainer, state.steps_per_epoch) if val is not None else None
    if not state.validates(epoch):
        check_every = None
    for batch_index, batch in resumed_batches(trainer, plan, batches):
        if parallel.agree_to_stop(stop_requested(trainer, epoch)):
            plan.logging_open = False
            return False
        if check_every is not None and _check_due(state, progress, check_every):
            assert val is not None
            validate_in_epoch(trainer, plan, val)
            if parallel.agree_to_stop(stop_requested(trainer, epoch)):  # a monitor stopped
                plan.logging_open = False
                return False
        state.batch_index = batch_index
        _check_planned_length(trainer, batch_index)
        try:
            output = _train_batch(trainer, plan, *_on_device(trainer, plan, *unpack(batch)))
        except SkipBatch:
            progress.pending, progress.batches_done = None, batch_index + 1
            continue
        except StopTraining:
            trainer.should_stop = True
            continue
        finally:
            plan.criterion.batch_weights = None
        score.add(output.loss, output.logits, output.targets)
        metric_set.update(output.logits, output.targets)
        progress.pending, progress.batches_done = None, batch_index + 1
        if _out_of_steps(trainer):
            trainer.should_stop = True  # this epoch is recorded, then the fit ends
            break
    if plan.eager is not None and plan.eager.accumulated:  # a last group of no known size
        plan.eager.update()
        state.global_step += 1
        state.accumulating = False
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
        val_metrics = validate(trainer, plan, val)
        hooks("on_validation_end", val_metrics, reading=False)
        hooks("on_validation_end", val_metrics, reading=True)
        metrics.update(val_metrics)  # with what the hooks wrote into it
    state.lr = float(plan.optimizer.param_groups[0]["lr"])
    metrics.update(lr=state.lr, seconds=time.monotonic() - started)
    # Callbacks that log run first; those that read the epoch's metrics (History, monitors,
    # loggers: reads_metrics=True) run after them and see every logged value.
    hooks("on_epoch_end", reading=False)
    metrics.update({name: float(value) for name, value in plan.logged.items()})
    plan.logging_open = False
    hooks("on_epoch_end", reading=True)
    return True


def _check_due(state: TrainState, progress: EpochProgress, every: int) -> bool:
    """Whether an in-epoch validation is due before the next batch (never mid-group)."""
    done = progress.batches_done
    return done // every > progress.validated_at // every and not state.accumulating


def validate_in_epoch(trainer: Trainer, plan: FitPlan, val: Iterable[Batch]) -> None:
    """Validate between two training batches (``val_check_interval``), then the hooks.

    ``on_validation_end`` sees the metrics with ``state.in_epoch_validation`` set, readers
    last. Values ``validation_step`` logs go into these metrics, not the epoch's row.
    """
    state, progress = trainer.state, trainer.state.progress
    assert progress is not None
    progress.validated_at = progress.batches_done  # (a checkpoint written now holds it)
    with _own_logs(plan) as logged:
        metrics = validate(trainer, plan, val)
    metrics.update({name: float(value) for name, value in logged.items()})
    state.in_epoch_validation = True
    try:
        plan.hooks("on_validation_end", metrics, reading=False)
        plan.hooks("on_validation_end", metrics, reading=True)
    finally:
        state.in_epoch_validation = False


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


def _out_of_steps(trainer: Trainer) -> bool:
    """Whether ``max_steps`` optimizer steps are done (never between micro-batches)."""
    limit, state = trainer.limits.max_steps, trainer.state
    return limit is not None and state.global_step >= limit and not state.accumulating


def unpack(batch: object, *, weights: bool = True) -> tuple[Tensor, Tensor, Tensor | None]:
    """``(images, labels)`` or ``(images, labels, sample_weights)`` from a loader's batch.

    Raises:
        InvalidArgumentError: the batch is of another form (a dict, a single tensor, a
            tuple of another length), or holds weights where none are taken (validation).
    """
    if isinstance(batch, (tuple, list)) and len(batch) in (2, 3):
        if len(batch) == 3 and not weights:
            raise InvalidArgumentError(
                "a validation batch holds (images, labels, weights), but validation losses "
                "are not weighted; yield (images, labels) from the validation loader"
            )
        parts = tuple(batch)
        if all(isinstance(part, Tensor) for part in parts):
            return parts[0], parts[1], parts[2] if len(parts) == 3 else None
    kind = (
        f"a dict with keys {sorted(map(str, batch))}"
        if isinstance(batch, dict)
        else f"a {type(batch).__name__} of {len(batch)}"
        if isinstance(batch, (tuple, list))
        else f"a {type(batch).__name__}"
    )
    raise InvalidArgumentError(
        f"a batch is {kind}; the Trainer takes (images, labels) tuples of tensors, or "
        "(images, labels, sample_weights) for training; convert the batches (e.g. a "
        "collate_fn), or override training_step and validation_step for your own form"
    )


def _on_device(
    trainer: Trainer,
    plan: FitPlan,
    images: Tensor,
    labels: Tensor,
    weights: Tensor | None,
    *,
    settle: bool = True,
) -> Batch:
    if weights is not None:
        if tuple(weights.shape) != (len(labels),):
            raise InvalidArgumentError(
                f"sample weights of shape {tuple(weights.shape)} do not fit {len(labels)} "
                "labels; give one weight per sample, (B,)"
            )
        plan.criterion.batch_weights = weights.to(trainer.device, non_blocking=True)
    plan.batch_size = len(labels)  # the weight of a value logged with reduce="mean"
    images = images.to(trainer.device, non_blocking=True)
    if plan.precision_pending and settle:  # (before the layout check: in its own layout)
        settle_precision(plan, trainer.module, images)
        trainer.precision = plan.precision
    layout = plan.layout
    if layout.pending and settle:  # decided (or verified) on the first training batch
        settle_layout(layout, trainer.module, plan.optimizer, images)
    if layout.channels_last and images.dim() == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, as_class_labels(labels.to(trainer.device, non_blocking=True))


def _group(trainer: Trainer, batch_index: int) -> tuple[float, bool]:
    """The loss scale of a micro-batch and whether an optimizer step follows it.

    Groups of ``accumulate_grad_batches`` batches from the epoch's start; the last group of
    an epoch of known length may be shorter and is scaled by its own size.
    """
    size, batches = trainer.limits.accumulate_grad_batches, trainer.state.steps_per_epoch
    if size == 1:
        return 1.0, True
    start = batch_index - batch_index % size
    members = size if batches is None else min(size, batches - start)
    return 1.0 / members, batch_index - start == members - 1


def _train_batch(trainer: Trainer, plan: FitPlan, images: Tensor, labels: Tensor) -> BatchOutput:
    state = trainer.state
    plan.hooks("on_batch_start")
    scale, update = _group(trainer, state.batch_index)
    output = plan.step(images, labels, scale=scale, update=update)
    if state.global_step == plan.first_step:
        plan.criterion.warn_if_smoothing_dropped()
    state.accumulating = not update
    state.global_step += int(update)
    detached = BatchOutput(output.loss.detach(), output.logits.detach(), output.targets)
    state.last_loss = detached.loss
    if state.progress is not None:  # trained, counted after on_batch_end (see resume.py)
        state.progress.pending = detached
    lr = plan.optimizer.param_groups[0]["lr"]
    if not isinstance(lr, Tensor):  # a tensor lr is read once per epoch (no sync here)
        state.lr = float(lr)
    plan.hooks("on_batch_end", detached)
    return detached


def sanity_check(trainer: Trainer, plan: FitPlan, val: Iterable[Batch]) -> None:
    """Run the first ``num_sanity_val_steps`` validation batches before the first epoch.

    Their scores are discarded and no hook sees them; the random state is put back, so the
    fit goes on exactly as without the check.
    """
    count = trainer.limits.sanity_batches
    # A layout laid out before the first batch could verify it (channels_last=True in a
    # multi-process fit) is checked by that batch first, with its named error.
    if not count or trainer.state.resumed or plan.layout.unchecked:
        return
    cuda = [trainer.device] if trainer.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), _own_logs(plan):  # its trainer.log discarded
        validate(trainer, plan, val, batches=count)


@contextlib.contextmanager
def _own_logs(plan: FitPlan) -> Iterator[dict[str, float | Tensor]]:
    """``trainer.log`` records into a fresh dict for the block (yielded), then as before."""
    saved = plan.logged, plan.logged_weights, plan.logging_open
    plan.logged, plan.logged_weights, plan.logging_open = {}, {}, True
    try:
        yield plan.logged
    finally:
        plan.logged, plan.logged_weights, plan.logging_open = saved


def validate(
    trainer: Trainer, plan: FitPlan, val: Iterable[Batch], *, batches: int | None = None
) -> dict[str, float]:
    """Score ``val`` with ``trainer.validation_step`` in eval and inference mode.

    ``batches`` (or ``limit_val_batches``) cuts it short.

    Returns:
        ``val_loss``, ``val_accuracy`` and ``val_<name>`` for each of the trainer's metrics.

    Raises:
        InvalidArgumentError: the validation loader yielded no samples.
    """
    score, metric_set = plan.running_score(trainer.device, smoothing=False), plan.metric_sets[1]
    metric_set.reset()
    limit = trainer.limits.val_batches
    allowed = batches_allowed(limit, batch_count(val), name="limit_val_batches")
    if batches is not None:
        allowed = batches if allowed is None else min(allowed, batches)
    shown = val if allowed is None else itertools.islice(val, allowed)
    plan.validating = True  # trainer.log averages over the batches by default now
    try:
        with scoring([trainer.model], trainer.device, plan.precision):
            for batch in shown:
                images, labels, _ = unpack(batch, weights=False)
                # Not settle the layout: a sanity check runs before the first training
                # batch, under inference mode, where laying out the weights would spoil them.
                on_device = _on_device(trainer, plan, images, labels, None, settle=False)
                output = trainer.validation_step(*on_device)
                score.add(output.loss, output.logits, output.targets)
                metric_set.update(output.logits, output.targets)
    finally:
        plan.validating = False
    plan.parallel.reduce(score)
    plan.parallel.reduce(metric_set)
    if not score.seen:
        raise InvalidArgumentError("the validation loader yielded no samples")
    return {**score.metrics(prefix="val_"), **metric_set.compute(prefix="val_")}


def validate_alone(trainer: Trainer, plan: FitPlan, val: Iterable[Batch]) -> dict[str, float]:
    """:func:`validate` outside a fit (``Trainer.validate``): the model in its own layout."""
    check_reiterable(val=val)
    fits_layout = plan.layout
    plan.layout = LayoutDecision(False, False, reason="own layout")
    try:
        with _own_logs(plan) as logged:
            metrics = validate(trainer, plan, val)
    finally:
        plan.layout = fits_layout
    return {**metrics, **{name: float(value) for name, value in logged.items()}}


def predict_batches(trainer: Trainer, batches: Iterable[Any]) -> Tensor:
    """``trainer.predict_step`` of every batch (images, or a tuple led by them), concatenated.

    Raises:
        InvalidArgumentError: a batch is not images or a tuple led by them, or none came.
    """
    outputs = []
    with scoring([trainer.model], trainer.device, trainer.precision):
        for batch in batches:
            images = batch[0] if isinstance(batch, (tuple, list)) and batch else batch
            if not isinstance(images, Tensor):
                raise InvalidArgumentError(
                    f"a batch for predict is a {type(batch).__name__}; give image tensors, "
                    "or (images, ...) tuples"
                )
            outputs.append(trainer.predict_step(images.to(trainer.device)).float())
    if not outputs:
        raise InvalidArgumentError("predict was given no batches")
    return torch.cat(outputs)
