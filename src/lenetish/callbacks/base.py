"""The ``Callback`` base class and the exceptions that control a fit from a hook.

Hooks are called in this order (``E`` epochs of ``B`` batches, with validation)::

    on_fit_start
    for each epoch:
        on_epoch_start
        for each batch:
            on_batch_start
            on_before_backward(loss)
            on_before_optimizer_step(optimizer)
            on_batch_end(output)
            on_validation_end(metrics)      # every val_check_interval batches, if set
        on_validation_end(metrics)          # only when fit() was given val=
        on_epoch_end
    on_fit_end
    on_exception(exc)                       # instead of the rest, when anything raises

Before the first hook every callback's ``reset()`` is called; a resumed fit then calls
``load_state_dict`` with the state saved under the callback's :attr:`Callback.state_key`.

Within one hook the callbacks run sorted by their integer ``order`` (stable: equal orders keep
the order they were given in); checkpointing runs last. A batch skipped with
:class:`SkipBatch` ends at the hook that raised it. An epoch cut short by a stop request gets
no validation and no ``on_epoch_end``: the History, and the checkpoints that
:class:`~lenetish.ModelCheckpoint` writes at epochs' ends, hold whole epochs only. A checkpoint
written with :meth:`Trainer.save_checkpoint <lenetish.Trainer.save_checkpoint>` during an
epoch's batches records that epoch as unfinished, and a fit resumed from it continues inside it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from torch import Tensor
from torch.optim import Optimizer

from lenetish.errors import InvalidArgumentError

if TYPE_CHECKING:
    from lenetish.training.state import BatchOutput, TrainState
    from lenetish.training.trainer import Trainer

__all__ = ["Callback", "SkipBatch", "StopTraining", "check_callbacks"]


class StopTraining(Exception):
    """Raise from any hook to end training once the current batch is done.

    Example:
        >>> from lenetish import Callback, MNISTConvNet, StopTraining, Trainer
        >>> class OneEpochOnly(Callback):
        ...     def on_epoch_end(self, trainer, state):
        ...         raise StopTraining
        >>> batches = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))]
        >>> trainer = Trainer(MNISTConvNet(), epochs=5, device="cpu", callbacks=[OneEpochOnly()])
        >>> len(trainer.fit(batches))  # History rows: the fit ended after the first epoch
        1
    """


class SkipBatch(Exception):
    """Raise from a batch hook to skip the rest of the batch (its optimizer step included).

    Example:
        >>> from lenetish import Callback, MNISTConvNet, SkipBatch, Trainer
        >>> class SkipFirstBatch(Callback):
        ...     def on_batch_start(self, trainer, state):
        ...         if state.batch_index == 0:
        ...             raise SkipBatch
        >>> batches = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))] * 3
        >>> trainer = Trainer(MNISTConvNet(), epochs=1, device="cpu", callbacks=[SkipFirstBatch()])
        >>> _ = trainer.fit(batches)
        >>> trainer.state.global_step  # three batches, two optimizer steps
        2
    """


class Callback:
    """Base class of training callbacks: every hook is a no-op, override what you need.

    Attributes:
        order: callbacks with a smaller order run first in every hook (default 0; the
            built-in :class:`History` runs at -100, checkpointing at 1000).
        reads_metrics: the callback reads an epoch's final metrics in ``on_epoch_end`` (a
            monitor, a logger, History): it runs after every callback that does not, so
            it sees what they logged with ``trainer.log`` whatever the orders.
        rank_zero_only: in a distributed fit, run this callback in rank 0's process only
            (for callbacks that just print or write files, like the progress bar and the
            loggers); the default runs it in every process, which callbacks that change the
            training or decide to stop need, since all processes must agree.
        writes_files: the callback writes files (checkpoints, logs): a ``fast_dev_run``
            leaves it out, as Lightning does.

    Example:
        >>> class PrintLoss(Callback):
        ...     def on_epoch_end(self, trainer, state):
        ...         print(f"epoch {state.epoch}: loss {state.metrics['loss']:.3f}")
        >>> PrintLoss().state_key.endswith("PrintLoss")
        True
    """

    order: int = 0
    reads_metrics: bool = False
    rank_zero_only: bool = False
    writes_files: bool = False

    @property
    def state_key(self) -> str:
        """The name this callback's state is saved under in a checkpoint.

        The default is the qualified class name; built-ins that may appear twice in one fit
        add what tells them apart (``"lenetish.EarlyStopping[monitor=val_loss]"``). Assign a
        string to give a callback a key of your own, e.g. when two callbacks of one class
        would otherwise share a key (the trainer refuses that). Resuming matches states to
        callbacks by key, so the order of the callbacks list may change between runs.
        """
        custom = self.__dict__.get("_state_key")
        if custom is not None:
            return str(custom)
        cls = type(self)
        return f"{cls.__module__}.{cls.__qualname__}"

    @state_key.setter
    def state_key(self, key: str) -> None:
        if not isinstance(key, str) or not key:
            raise InvalidArgumentError(f"state_key must be a non-empty string, got {key!r}")
        self.__dict__["_state_key"] = key

    def reset(self) -> None:
        """Forget per-fit state; called before every fit (before ``load_state_dict`` on resume)."""

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
        """Called after validation with its metrics (``val_loss``, ``val_accuracy``).

        Also after each validation inside an epoch (the Trainer's ``val_check_interval``),
        with ``state.in_epoch_validation`` set. Callbacks that read metrics
        (``reads_metrics``) run after the others, as in ``on_epoch_end``.
        """

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        """Called at the end of every whole epoch; ``state.metrics`` holds its metrics."""

    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None:
        """Called once after the last epoch (or after a stop request)."""

    def on_exception(self, trainer: Trainer, state: TrainState, exc: BaseException) -> None:
        """Called on every callback when anything raises during ``fit``; it then propagates."""

    def state_dict(self) -> dict[str, Any]:
        """Return what must be saved in a checkpoint to resume this callback exactly.

        Checkpoints load with ``torch.load(weights_only=True)``, so the state may hold only
        tensors, ``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``, ``bytes``,
        ``torch.dtype``, ``torch.device``, ``torch.Size``, and lists, tuples, sets and dicts of
        them. When it is saved, NumPy scalars become Python numbers and NumPy arrays tensors;
        anything else (a ``collections.deque``, an object of your own) is refused with
        :class:`~lenetish.CheckpointError` naming this callback and where the object sits.
        """
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


def check_callbacks(callbacks: Iterable[object]) -> None:
    """Refuse anything that is not a :class:`Callback` in a Trainer's ``callbacks``.

    Raises:
        InvalidArgumentError: naming the object.
    """
    for callback in callbacks:
        if not isinstance(callback, Callback):
            raise InvalidArgumentError(
                f"callbacks must be lenetish.Callback instances, got {callback!r}"
            )
