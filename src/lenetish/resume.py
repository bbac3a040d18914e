"""Putting a checkpoint back into a Trainer: model, optimizer, counters and callbacks."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from lenetish.callbacks import Callback
from lenetish.checkpoint import load_model_state
from lenetish.errors import CheckpointError

if TYPE_CHECKING:
    from lenetish.trainer import Trainer

__all__ = ["keyed_callbacks", "restore_training_state"]

logger = logging.getLogger("lenetish")


def keyed_callbacks(callbacks: Iterable[Callback]) -> Iterator[tuple[str, Callback]]:
    """Name each callback by its class, with ``#2``, ``#3``... for repeats, in order."""
    seen: dict[str, int] = {}
    for callback in callbacks:
        name = type(callback).__name__
        seen[name] = seen.get(name, 0) + 1
        yield (name if seen[name] == 1 else f"{name}#{seen[name]}"), callback


def restore_training_state(trainer: Trainer, checkpoint: dict[str, Any], source: str) -> None:
    """Load ``checkpoint`` into a trainer whose optimizer and fit callbacks are built.

    Raises:
        CheckpointError: the checkpoint does not fit (another network, another optimizer, or a
            one-cycle schedule planned for another number of epochs).
    """
    saved_world_size = checkpoint.get("world_size", 1)
    if saved_world_size != trainer.world_size:
        raise CheckpointError(
            f"{source} was written by a run of {saved_world_size} process(es) and this run has "
            f"{trainer.world_size}; resume with the same number (e.g. torchrun "
            f"--nproc_per_node={saved_world_size}), since each process's share of the batches "
            "and its random stream depend on it"
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
    if trainer.optimizer is not None and checkpoint["optimizer"] is not None:
        trainer.optimizer.load_state_dict(checkpoint["optimizer"])
    if trainer.scaler is not None and checkpoint["scaler"] is not None:
        trainer.scaler.load_state_dict(checkpoint["scaler"])
    trainer.state.epoch = checkpoint["epoch"]
    trainer.state.global_step = checkpoint["global_step"]
    saved = checkpoint["callbacks"]
    for key, callback in keyed_callbacks(trainer._fit_callbacks):
        if key in saved:
            callback.load_state_dict(saved[key])
        else:
            logger.warning("checkpoint has no state for callback %s; it starts fresh", key)
            callback.reset()
