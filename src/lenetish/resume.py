"""A Trainer's full state as a checkpoint, and its inverse: putting a checkpoint back.

:func:`checkpoint_state` (what :meth:`Trainer.checkpoint_state
<lenetish.Trainer.checkpoint_state>` returns) and :func:`restore_training_state` (what
``Trainer.fit(resume=...)`` does) live side by side so that each field written by one is
read by the other. Callback states are keyed by :attr:`Callback.state_key
<lenetish.Callback.state_key>`, so the order of the callbacks may change between runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from lenetish.callbacks import Callback
from lenetish.checkpoint import CHECKPOINT_FORMAT_VERSION, capture_rng_state, load_model_state
from lenetish.checkpoint_checks import check_training_checkpoint
from lenetish.errors import CheckpointError, InvalidArgumentError

if TYPE_CHECKING:
    from lenetish.trainer import Trainer

__all__ = ["callbacks_by_key", "checkpoint_state", "has_state", "restore_training_state"]

logger = logging.getLogger("lenetish")


def has_state(callback: Callback) -> bool:
    """Whether the callback's class saves a state (overrides ``state_dict``)."""
    return type(callback).state_dict is not Callback.state_dict


def callbacks_by_key(callbacks: Iterable[Callback]) -> dict[str, Callback]:
    """Map the ``state_key`` of each callback that saves a state to the callback.

    Raises:
        InvalidArgumentError: two such callbacks share a key (their states would be mixed up).
    """
    keyed: dict[str, Callback] = {}
    for callback in filter(has_state, callbacks):
        key = callback.state_key
        if key in keyed:
            raise InvalidArgumentError(
                f"two callbacks ({type(keyed[key]).__name__} and {type(callback).__name__}) "
                f"share the state_key {key!r}, so a checkpoint could not tell their states "
                "apart; give one of them a distinct key, e.g. callback.state_key = "
                f"{key + '-2'!r}"
            )
        keyed[key] = callback
    return keyed


def _legacy_keys(callbacks: Iterable[Callback]) -> dict[str, Callback]:
    """Keys of checkpoints from lenetish 0.1: the class name, ``#2``, ``#3`` for repeats."""
    seen: dict[str, int] = {}
    keyed: dict[str, Callback] = {}
    for callback in callbacks:  # every callback counted, as 0.1 did
        name = type(callback).__name__
        seen[name] = seen.get(name, 0) + 1
        keyed[name if seen[name] == 1 else f"{name}#{seen[name]}"] = callback
    return keyed


def checkpoint_state(trainer: Trainer) -> dict[str, Any]:
    """Everything needed to resume ``trainer``'s fit exactly, as plain containers and tensors."""
    scaler = None if trainer.step is None else trainer.step.scaler
    optimizer = trainer.fitted_optimizer
    callbacks = trainer.fit_callbacks or trainer.callbacks
    return {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "model": trainer.module.state_dict(),
        "model_class": type(trainer.module).__name__,
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "optimizer_class": type(optimizer).__name__,
        "scaler": None if scaler is None else scaler.state_dict(),
        "epoch": trainer.state.epoch + 1,
        "epochs_planned": trainer.epochs,
        "global_step": trainer.state.global_step,
        "callbacks": {
            key: callback.state_dict() for key, callback in callbacks_by_key(callbacks).items()
        },
        "rng": capture_rng_state(),
        "world_size": trainer.world_size,
        "rank_seed": trainer.parallel.rank_seed,
        # the dataset the data came from, when the caller told the trainer (issue 17)
        **({} if trainer.data_info is None else {"dataset": trainer.data_info.record()}),
    }


def restore_training_state(trainer: Trainer, checkpoint: dict[str, Any], source: str) -> None:
    """Load ``checkpoint`` into a trainer whose optimizer, step and fit callbacks are built.

    Every callback was reset first; each then gets the state saved under its key.

    Raises:
        CheckpointError: the checkpoint does not fit (another network, another optimizer,
            another number of processes, or a one-cycle schedule planned for another number
            of epochs).
    """
    saved_world_size = checkpoint.get("world_size", 1)
    if saved_world_size != trainer.world_size:
        raise CheckpointError(
            f"{source} was written by a run of {saved_world_size} process(es) and this run has "
            f"{trainer.world_size}; resume with the same number (e.g. torchrun "
            f"--nproc_per_node={saved_world_size}), since each process's share of the batches "
            "and its random stream depend on it"
        )
    check_training_checkpoint(
        checkpoint, model=trainer.module, optimizer=trainer.optimizer, source=source
    )
    load_model_state(trainer.module, checkpoint["model"], source=source)
    planned = checkpoint.get("epochs_planned", trainer.epochs)
    if planned != trainer.epochs and trainer.scheduler_spec == "onecycle":
        raise CheckpointError(
            f"{source} comes from a run planned for {planned} epochs with the one-cycle "
            f"schedule, which cannot stretch to {trainer.epochs}; resume it with epochs="
            f"{planned}, or start a new run"
        )
    saved_class = checkpoint.get("optimizer_class")
    if saved_class is not None and saved_class != type(trainer.optimizer).__name__:
        raise CheckpointError(
            f"{source} was written by a trainer using {saved_class}, but this one uses "
            f"{type(trainer.optimizer).__name__}; resume with the same optimizer settings"
        )
    if checkpoint["optimizer"] is not None:
        trainer.optimizer.load_state_dict(checkpoint["optimizer"])
    scaler = None if trainer.step is None else trainer.step.scaler
    if scaler is not None and checkpoint["scaler"] is not None:
        scaler.load_state_dict(checkpoint["scaler"])
    trainer.state.epoch = checkpoint["epoch"]
    trainer.state.global_step = checkpoint["global_step"]
    _restore_callbacks(trainer.fit_callbacks, checkpoint["callbacks"], source)


def _restore_callbacks(callbacks: list[Callback], saved: dict[str, Any], source: str) -> None:
    """Give each callback the state saved under its key (or under its 0.1-style key)."""
    legacy = {id(callback): key for key, callback in _legacy_keys(callbacks).items()}
    for key, callback in callbacks_by_key(callbacks).items():
        found = key if key in saved else legacy[id(callback)]
        if found not in saved:
            logger.warning("checkpoint has no state for callback %s; it starts fresh", key)
            continue
        try:
            callback.load_state_dict(saved[found])
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise CheckpointError(
                f"{source} is damaged: the state of callback {key} does not load "
                f"({type(exc).__name__}: {exc}); resume from another checkpoint, or start a "
                "new run"
            ) from exc
