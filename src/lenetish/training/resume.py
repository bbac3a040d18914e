"""A Trainer's full state as a checkpoint, and its inverse: putting a checkpoint back.

:func:`checkpoint_state` (what :meth:`Trainer.checkpoint_state
<lenetish.Trainer.checkpoint_state>` returns) and :func:`restore_training_state` (what
``Trainer.fit(resume=...)`` does) live side by side so that each field written by one is
read by the other. Callback states are handled by :mod:`lenetish.training.callback_states`.

A checkpoint written while an epoch's training batches run (from ``on_epoch_start`` to the
last batch's ``on_batch_end``) holds that epoch as unfinished: ``epoch`` counts the finished
epochs, ``rng`` is the random state at the start of the unfinished one, and ``mid_epoch``
holds how many of its batches were done, the random state when it was written, and the
epoch's running training score and logged values. A fit resumed from it starts that epoch
again, draws its batches in the same order, skips those already trained
(:func:`resumed_batches`), then puts the random state of the save back, so it goes on exactly
as the interrupted fit did (a checkpoint written at a validation inside the epoch, with
``val_check_interval``, also records that the validation was done). Under
``steps_per_epoch`` ``stream`` holds where the loader's pass stands, and the resumed fit
rebuilds that pass and draws on from there (:mod:`lenetish.training._streams`).
``loader_rng`` holds the states of the generators the training
loader shuffles with when they are not torch's global one (a ``DataLoader``'s ``generator=``,
its sampler's, also inside a ``BatchSampler``), as of the start of the epoch the checkpoint
resumes, and a resumed fit puts them back before that epoch's iterator draws from them.

Exactness has limits, logged when resuming: a checkpoint written from ``on_batch_end``
resumes exactly when the callback writing it runs after the others with state (a higher
``order``; the built-in schedules and :class:`~lenetish.EMA` run early), or from
``on_epoch_start``; written from inside a step, the batch is trained again. Metric objects
(``update``/``compute``/``reset``) save no state, and a run of several processes resumes from
rank 0's random state. A sampler lenetish does not know, without a ``generator``
attribute, may shuffle with a generator no checkpoint can capture: writing one warns, once
per fit, naming the loader; a ``DataLoader`` with ``persistent_workers=True`` draws its
workers' seed in its first epoch only, so a fit resumed after it draws once more.

An optimizer state with more parameter groups than the resumed fit's fresh optimizer (a
fine-tuning callback added some with ``optimizer.add_param_group`` in ``on_fit_start`` or
``on_epoch_start``) waits until those hooks have run, so the callback adds its groups again,
and is checked and loaded just before the first batch; until then the optimizer holds its
fresh values, and a checkpoint written meanwhile holds the resumed state.
"""

from __future__ import annotations

import copy
import logging
import math
import weakref
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from torch import Tensor
from torch.optim import Optimizer

from lenetish._checks import is_overridden
from lenetish.errors import CheckpointError
from lenetish.layout import match_optimizer_layout
from lenetish.saving.checkpoint import (
    CHECKPOINT_FORMAT_VERSION,
    capture_rng_state,
    load_model_state,
    restore_rng_state,
)
from lenetish.saving.checkpoint_checks import (
    check_optimizer_state,
    check_training_checkpoint,
    extra_param_groups,
)
from lenetish.training._loader_rng import (
    capture_loader_rng,
    check_loader_rng,
    restore_loader_rng,
    warn_unseen_randomness,
)
from lenetish.training.callback_states import callbacks_by_key, loadable_state, restore_callbacks
from lenetish.training.state import EpochProgress

if TYPE_CHECKING:
    from lenetish.training._plan import FitPlan
    from lenetish.training.trainer import Trainer

__all__ = [
    "checkpoint_state",
    "restore_training_state",
    "resumed_batches",
    "start_epoch_progress",
]

T = TypeVar("T")
_END = object()  # what next() returns at the end of the loader

logger = logging.getLogger("lenetish")

# Per trainer, the (state_key, path) of the arrays already logged as saved as tensors.
_ARRAYS_TOLD: weakref.WeakKeyDictionary[Trainer, set[tuple[str, str]]] = weakref.WeakKeyDictionary()


def checkpoint_state(trainer: Trainer, plan: FitPlan | None) -> dict[str, Any]:
    """Everything needed to resume ``trainer``'s fit exactly, as plain containers and tensors.

    Inside an epoch's training batches the epoch is recorded as unfinished, with a
    ``mid_epoch`` part (see the module's docstring).
    """
    scaler = None if plan is None else plan.step.scaler
    optimizer = None if plan is None else plan.optimizer
    callbacks = trainer.callbacks if plan is None else plan.callbacks
    progress = trainer.state.progress
    mid_epoch = None
    if progress is not None and plan is not None:
        mid_epoch = _mid_epoch_state(plan, progress)
    told = _ARRAYS_TOLD.setdefault(trainer, set())
    if plan is not None:
        warn_unseen_randomness(trainer)
    return {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "model": trainer.module.state_dict(),
        "model_class": type(trainer.module).__name__,
        "optimizer": _optimizer_state(trainer, plan),
        "optimizer_class": type(optimizer).__name__,
        "scaler": None if scaler is None else scaler.state_dict(),
        # finished epochs; an unfinished one is resumed from its start (see mid_epoch)
        "epoch": trainer.state.epoch + (1 if progress is None else 0),
        "epochs_planned": trainer.state.epochs,
        "global_step": trainer.state.global_step,
        "callbacks": {
            key: loadable_state(callback, callback.state_dict(), told=told)
            for key, callback in callbacks_by_key(callbacks).items()
        },
        "rng": capture_rng_state() if progress is None else progress.rng,
        # the loader's own generators, as of the start of the epoch a resume starts with
        "loader_rng": capture_loader_rng(trainer) if progress is None else progress.loader_rng,
        **({} if mid_epoch is None else {"mid_epoch": mid_epoch}),
        **_stream_state(plan, mid_epoch),
        "world_size": trainer.world_size,
        "rank_seed": 0 if plan is None else plan.parallel.rank_seed,
        # the dataset the data came from, when the caller told the trainer (issue 17)
        **({} if trainer.data_info is None else {"dataset": trainer.data_info.record()}),
    }


def _stream_state(plan: FitPlan | None, mid_epoch: dict[str, Any] | None) -> dict[str, Any]:
    """Under ``steps_per_epoch``, where the loader's stream stands after the batches done."""
    if plan is None or plan.stream is None:
        return {}
    done = 0 if mid_epoch is None else mid_epoch["batches_done"]
    if mid_epoch is None:
        return {"stream": plan.stream.position()}
    return {"stream": plan.stream.position_after(done)}


def _mid_epoch_state(plan: FitPlan, progress: EpochProgress) -> dict[str, Any]:
    """How far the unfinished epoch got: batches done, random state, running score, logs."""
    score, metric_set, done = progress.score, progress.metric_set, progress.batches_done
    pending = progress.pending
    if pending is not None:
        # Written from on_batch_end: count the batch, as the loop does once the hook returns.
        score, metric_set = copy.deepcopy(score), copy.deepcopy(metric_set)
        score.add(pending.loss, pending.logits, pending.targets)
        metric_set.update(pending.logits, pending.targets)
        done += 1
    accumulated = {}
    if plan.eager is not None and plan.eager.accumulated:  # between micro-batches of a step
        accumulated = {"accumulated_grads": _gradients(plan.optimizer)}
    return {
        **accumulated,
        "batches_done": done,
        "validated_at": progress.validated_at,
        "rng": capture_rng_state(),
        "score": score.state_dict(),
        "metrics": metric_set.state_dict(),
        "logged": {
            name: value.detach().clone() if isinstance(value, Tensor) else float(value)
            for name, value in plan.logged.items()
        },
        **({"logged_weights": dict(plan.logged_weights)} if plan.logged_weights else {}),
    }


def _gradients(optimizer: Optimizer) -> list[Tensor | None]:
    """Every optimized parameter's gradient so far (copies), in the optimizer's order."""
    return [
        None if parameter.grad is None else parameter.grad.detach().clone()
        for group in optimizer.param_groups
        for parameter in group["params"]
    ]


def _restore_gradients(plan: FitPlan, saved: object) -> None:
    """Put back the gradients of micro-batches a mid-group checkpoint had added up.

    Raises:
        CheckpointError: they do not fit the optimizer's parameters.
    """
    parameters = [p for group in plan.optimizer.param_groups for p in group["params"]]
    if (
        not isinstance(saved, list)
        or len(saved) != len(parameters)
        or plan.eager is None
        or any(
            g is not None and (not isinstance(g, Tensor) or g.shape != p.shape)
            for g, p in zip(saved, parameters, strict=True)
        )
    ):
        raise CheckpointError(
            "the checkpoint's accumulated gradients do not fit this fit's parameters; resume "
            "with the model, optimizer and accumulate_grad_batches of the run that wrote it"
        )
    for parameter, grad in zip(parameters, saved, strict=True):
        parameter.grad = None if grad is None else grad.to(parameter.device, parameter.dtype)
    plan.eager.accumulated = True


def start_epoch_progress(trainer: Trainer, plan: FitPlan) -> EpochProgress:
    """The record of a starting epoch: random states now, a fresh training score.

    Called by the loop at the start of every epoch, before ``on_epoch_start`` and before the
    training loader's iterator is made (which draws from the loader's generators); a
    checkpoint written from then until the end of the epoch's last batch resumes inside the
    epoch.
    """
    metric_set = plan.metric_sets[0]
    metric_set.reset()
    score = plan.running_score(trainer.device, smoothing=True)
    return EpochProgress(
        capture_rng_state(), score, metric_set, loader_rng=capture_loader_rng(trainer),
        stream=None if plan.stream is None else plan.stream.position(),
    )  # fmt: skip


def resumed_batches(trainer: Trainer, plan: FitPlan, batches: Iterable[T]) -> Iterator[T]:
    """``batches``, less those a mid-epoch checkpoint had already trained.

    First it loads an optimizer state kept back for parameter groups that callbacks add
    (see :func:`restore_training_state`). In the first epoch of a fit resumed from a
    checkpoint written inside that epoch, the running score and the logged values of the
    checkpoint are put back, the batches it had done are drawn and dropped (so the loader's
    order and any random numbers it draws are as before), and then the random state of the
    save is restored. Every other epoch gets ``batches`` unchanged.

    Raises:
        CheckpointError: the loader yields fewer batches than the checkpoint had done, or
            its running score counts more samples than those batches hold; a kept-back
            optimizer state whose groups the callbacks did not add, or that does not fit.
    """
    _load_pending_optimizer(trainer, plan)
    state, progress = trainer.state, trainer.state.progress
    point, state.resume_point = state.resume_point, None
    if point is None or progress is None:
        yield from batches
        return
    progress.score.load_state_dict(point["score"])  # checked by restore_training_state
    progress.metric_set.load_state_dict(point["metrics"])
    plan.logged.update(point["logged"])
    plan.logged_weights.update(_logged_weights(point.get("logged_weights", {}), point["logged"]))
    iterator = iter(batches)
    samples: int | None = 0
    for skipped in range(point["batches_done"]):
        batch = next(iterator, _END)
        if batch is _END:
            raise CheckpointError(
                f"the checkpoint was written after {point['batches_done']} batches of epoch "
                f"{state.epoch + 1}, but the training loader now yields {skipped}; resume "
                "with the training data of the run that wrote it"
            )
        samples = _add_samples(samples, batch)
    _check_samples_counted(trainer, plan, samples, point["batches_done"])
    progress.batches_done = point["batches_done"]
    progress.validated_at = point.get("validated_at", point["batches_done"])
    if "accumulated_grads" in point:
        _restore_gradients(plan, point["accumulated_grads"])
    restore_rng_state(point["rng"])
    yield from iterator


def _logged_weights(saved: object, logged: dict[str, Any]) -> dict[str, float]:
    """The samples behind each mean a mid-epoch checkpoint logged, checked.

    Raises:
        CheckpointError: a weight that is not a positive finite number of a logged name.
    """
    weights = saved if isinstance(saved, dict) else None
    if weights is None or any(
        name not in logged
        or isinstance(weight, bool)
        or not isinstance(weight, (int, float))
        or not math.isfinite(weight)
        or weight <= 0
        for name, weight in weights.items()
    ):
        raise CheckpointError(
            "the checkpoint's logged_weights are damaged (each must be a positive number of "
            "samples of a logged value); resume from a checkpoint written at an epoch's end"
        )
    return {str(name): float(weight) for name, weight in weights.items()}


def _add_samples(total: int | None, batch: object) -> int | None:
    """``total`` plus the labels in ``batch`` (``(index, (images, labels))``), if it has them."""
    pair = batch[1] if isinstance(batch, tuple) and len(batch) == 2 else None
    labels = pair[1] if isinstance(pair, (tuple, list)) and len(pair) == 2 else None
    if total is None or not isinstance(labels, Tensor):
        return None
    return total + labels.numel()


def _check_samples_counted(
    trainer: Trainer, plan: FitPlan, samples: int | None, batches_done: int
) -> None:
    """Refuse a running score that counts more samples than the batches it was trained on.

    The Trainer's own ``training_step`` scores the labels of its batch, so the samples of
    the skipped batches bound the count; an overridden one may score other targets, and in a
    run of several processes each holds its own share, so neither is checked.

    Raises:
        CheckpointError: the count is larger than those batches hold.
    """
    seen = trainer.state.progress.score.seen if trainer.state.progress is not None else 0
    if (
        samples is None
        or seen <= samples
        or plan.parallel.world_size > 1
        or is_overridden(trainer, "training_step")
    ):
        return
    raise CheckpointError(
        f"the checkpoint is damaged: the running score of its unfinished epoch "
        f"{trainer.state.epoch + 1} counts {seen} samples, but the {batches_done} batches it "
        f"had trained hold {samples}; resume from another checkpoint (e.g. one written at an "
        "epoch's end), or start a new run"
    )


def restore_training_state(
    trainer: Trainer, plan: FitPlan, checkpoint: dict[str, Any], *, source: str
) -> None:
    """Load ``checkpoint`` into ``trainer`` and the fit ``plan`` built for it.

    Every callback was reset first; each then gets the state saved under its key. An
    optimizer state with more parameter groups than ``plan.optimizer`` is kept in
    ``trainer.state.pending_optimizer`` for :func:`resumed_batches` to load once callbacks
    have added theirs.

    Raises:
        CheckpointError: the checkpoint does not fit (another network, another optimizer,
            another number of processes, or a one-cycle schedule planned for another number
            of epochs) or holds values training does not produce (see
            :mod:`lenetish.saving.checkpoint_checks`; a damaged running score, loader
            generator state, scheduler state or best value of a monitor).
    """
    saved_world_size = checkpoint.get("world_size", 1)
    world_size = plan.parallel.world_size
    if saved_world_size != world_size:
        raise CheckpointError(
            f"{source} was written by a run of {saved_world_size} process(es) and this run has "
            f"{world_size}; resume with the same number (e.g. torchrun "
            f"--nproc_per_node={saved_world_size}), since each process's share of the batches "
            "and its random stream depend on it"
        )
    # A fine-tuning callback may have added parameter groups (optimizer.add_param_group in
    # on_fit_start or on_epoch_start) that this fresh optimizer has not yet: such a state is
    # checked and loaded once the callbacks have run, before the first batch.
    later = extra_param_groups(checkpoint.get("optimizer"), plan.optimizer) > 0
    check_training_checkpoint(
        checkpoint, model=trainer.module, optimizer=None if later else plan.optimizer,
        source=source,
    )  # fmt: skip
    mid_epoch = checkpoint.get("mid_epoch")
    _check_epochs_left(trainer, checkpoint["epoch"], mid_epoch is not None, source)
    if mid_epoch is not None:
        _check_mid_epoch(trainer, plan, mid_epoch, checkpoint["epoch"], source)
    loader_rng = check_loader_rng(
        trainer, checkpoint.get("loader_rng"), source, epoch=checkpoint["epoch"]
    )
    load_model_state(trainer.module, checkpoint["model"], source=source)
    planned = checkpoint.get("epochs_planned", trainer.state.epochs)
    if planned != trainer.state.epochs and trainer.scheduler_spec == "onecycle":
        raise CheckpointError(
            f"{source} comes from a run planned for {planned} epochs with the one-cycle "
            f"schedule, which cannot stretch to {trainer.state.epochs}; resume it with epochs="
            f"{planned}, or start a new run"
        )
    saved_class = checkpoint.get("optimizer_class")
    if saved_class is not None and saved_class != type(plan.optimizer).__name__:
        raise CheckpointError(
            f"{source} was written by a trainer using {saved_class}, but this one uses "
            f"{type(plan.optimizer).__name__}; resume with the same optimizer settings"
        )
    if later:
        trainer.state.pending_optimizer = (checkpoint["optimizer"], source)
    elif checkpoint["optimizer"] is not None:
        plan.optimizer.load_state_dict(checkpoint["optimizer"])
    scaler = plan.step.scaler
    if scaler is not None and checkpoint["scaler"] is not None:
        scaler.load_state_dict(checkpoint["scaler"])
    trainer.state.epoch = checkpoint["epoch"]
    trainer.state.global_step = checkpoint["global_step"]
    trainer.state.resume_point = mid_epoch
    restore_callbacks(plan.callbacks, checkpoint["callbacks"], source)
    if loader_rng is not None:  # before the first epoch's iterator draws from them
        restore_loader_rng(trainer, loader_rng)
    _restore_stream(plan, checkpoint, source)  # (its own loader states win)


def _restore_stream(plan: FitPlan, checkpoint: dict[str, Any], source: str) -> None:
    """Under ``steps_per_epoch``, put the loader's stream where the checkpoint left it.

    Raises:
        CheckpointError: the saved position is damaged or the loader is now shorter.
    """
    if plan.stream is None:
        return
    position = checkpoint.get("stream")
    if position is None:
        logger.warning(
            "%s holds no steps_per_epoch position (it was written by a fit without "
            "steps_per_epoch), so the resumed fit starts a new pass of the training loader",
            source,
        )
        return
    mid_epoch = checkpoint.get("mid_epoch")
    done = 0 if mid_epoch is None else mid_epoch["batches_done"]
    plan.stream.resume_at(position, source, done=done)


def _check_epochs_left(trainer: Trainer, finished: int, unfinished: bool, source: str) -> None:
    """Refuse a resume that would train nothing of a checkpoint with more epochs than asked.

    Raises:
        CheckpointError: ``epochs`` is below the checkpoint's finished epochs, or, for a
            checkpoint written inside an epoch, does not reach that epoch.
    """
    if finished > trainer.state.epochs or (unfinished and finished >= trainer.state.epochs):
        trained = f"{finished} epoch{'' if finished == 1 else 's'}"
        part = f" and part of epoch {finished + 1}" if unfinished else ""
        raise CheckpointError(
            f"{source} has already trained {trained}{part}, and this trainer has "
            f"epochs={trainer.state.epochs}, so the resumed fit would train nothing; pass epochs > "
            f"{finished} (the total number of epochs, e.g. epochs={finished + 1})"
        )


def _check_mid_epoch(
    trainer: Trainer, plan: FitPlan, mid_epoch: dict[str, Any], epoch: int, source: str
) -> None:
    """Refuse a mid-epoch part that does not fit this fit; log what it cannot make exact.

    Raises:
        CheckpointError: its running score does not load into this fit's or holds values no
            batches add up to (an accuracy outside [0, 1], a NaN loss, samples of no batch),
            or it had done more batches than the training loader has.
    """
    steps = trainer.state.steps_per_epoch
    if steps is not None and mid_epoch["batches_done"] > steps:
        raise CheckpointError(
            f"{source} was written after {mid_epoch['batches_done']} batches of epoch "
            f"{epoch + 1}, but the training loader has {steps}; resume with the training data "
            "of the run that wrote it"
        )
    try:  # the loop loads them for real at the epoch's start
        score = plan.running_score(trainer.device, smoothing=True)
        score.load_state_dict(mid_epoch["score"])
        copy.deepcopy(plan.metric_sets[0]).load_state_dict(mid_epoch["metrics"])
        if score.seen and not mid_epoch["batches_done"]:
            raise ValueError(f"it counts {score.seen} samples of no batch")
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(
            f"{source} is damaged or from another setup: the running score of its unfinished "
            f"epoch {epoch + 1} does not load ({type(exc).__name__}: {exc}); resume with the "
            "same metrics= (and model), or from a checkpoint written at an epoch's end"
        ) from exc
    objects = sorted(getattr(plan.metric_sets[0], "objects", {}))
    if objects:
        logger.warning(
            "resuming inside epoch %d: metric objects %s keep no state in a checkpoint, so "
            "their value for that epoch counts only the batches trained after the resume",
            epoch + 1,
            ", ".join(objects),
        )
    if plan.parallel.world_size > 1:
        logger.warning(
            "resuming inside epoch %d in a run of %d processes: every process continues from "
            "rank 0's random state and running score, so that epoch is not bit-identical to "
            "an uninterrupted run (checkpoints written at an epoch's end are)",
            epoch + 1,
            plan.parallel.world_size,
        )


def _optimizer_state(trainer: Trainer, plan: FitPlan | None) -> dict[str, Any] | None:
    """The optimizer's state, or the resumed one still waiting for its parameter groups."""
    pending = trainer.state.pending_optimizer
    if pending is not None:  # written before the first batch loaded it: the resumed state
        return pending[0]
    return None if plan is None else plan.optimizer.state_dict()


def _load_pending_optimizer(trainer: Trainer, plan: FitPlan) -> None:
    """Load the optimizer state kept back for the groups callbacks add (see restore).

    Called as the first epoch's batches start, after ``on_fit_start`` and ``on_epoch_start``.

    Raises:
        CheckpointError: the optimizer still has another number of parameter groups than
            the state, or the state does not fit them.
    """
    pending, trainer.state.pending_optimizer = trainer.state.pending_optimizer, None
    if pending is None:
        return
    saved, source = pending
    have, want = len(plan.optimizer.param_groups), len(saved["param_groups"])
    if have != want:
        raise CheckpointError(
            f"{source} holds an optimizer state of {want} parameter groups, and this fit's "
            f"{type(plan.optimizer).__name__} has {have} when its first batch starts; a "
            "callback that adds groups (optimizer.add_param_group) must add them again when "
            "a fit resumes, in on_fit_start or on_epoch_start, with the same parameters in "
            "the same order; or resume with the optimizer settings and callbacks of the run "
            "that wrote it"
        )
    check_optimizer_state(saved, plan.optimizer, source=source)
    plan.optimizer.load_state_dict(saved)
    match_optimizer_layout(plan.optimizer)  # the saved moments' layout may differ
