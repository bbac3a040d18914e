"""What hooks receive: ``TrainState`` (where a fit stands) and ``BatchOutput`` (one step)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import Tensor

if TYPE_CHECKING:
    from lenetish.metrics import MetricSet, RunningScore

__all__ = ["BatchOutput", "EpochProgress", "TrainState"]


@dataclass
class BatchOutput:
    """What a training or validation step produced for one batch.

    Attributes:
        loss: the mean loss of the batch, a scalar tensor (unscaled; detached in hooks).
        logits: the model's outputs ``(B, classes)`` as ``training_step`` returned them:
            log-probabilities for the lenetish networks, raw logits or probabilities for
            others (the Trainer's ``loss="auto"`` detects which; see
            :mod:`lenetish.losses`).
        targets: the labels ``(B,)``.

    Example:
        A trainer whose step adds an L2 penalty to the loss returns one of these:

        >>> from lenetish import BatchOutput, MNISTConvNet, Trainer
        >>> class PenalisedTrainer(Trainer):
        ...     def training_step(self, images, labels):
        ...         outputs = self.model(images)
        ...         penalty = sum(p.pow(2).sum() for p in self.model.parameters())
        ...         loss = self.compute_loss(outputs, labels) + 1e-4 * penalty
        ...         return BatchOutput(loss=loss, logits=outputs, targets=labels)
        >>> batches = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))]
        >>> history = PenalisedTrainer(MNISTConvNet(), epochs=1, device="cpu").fit(batches)
        >>> len(history)
        1
    """

    loss: Tensor
    logits: Tensor
    targets: Tensor


@dataclass
class TrainState:
    """Where a fit stands, passed to every hook.

    Attributes:
        epoch: index of the current epoch, from 0 (``History`` rows count from 1).
        epochs: the number of epochs the fit runs to.
        global_step: optimizer steps taken since the first fit of this run (resumes continue).
        batch_index: index of the current batch within the epoch.
        steps_per_epoch: ``len(train)``, or ``None`` when the loader has no length.
        lr: learning rate of the first parameter group, as of the last step.
        last_loss: the last batch's loss as a device tensor; ``float(state.last_loss)``
            waits for the device, so read it only when you need it.
        metrics: the latest epoch's metrics (``loss``, ``accuracy``, ``val_loss``, ...).
        resumed: whether this fit continues from a checkpoint.
        resumed_from: the absolute path of the checkpoint this fit resumed from, else
            ``None`` (:class:`~lenetish.ModelCheckpoint` never deletes that file).
        validating: whether this fit was given validation batches (``val_*`` metrics).
        validation_freq: validate every this many epochs (the Trainer's setting); see
            ``validates(epoch)``.
        min_epochs: whole epochs a stop request cannot cut short (the Trainer's setting).
        started_at: ``time.monotonic()`` when the fit started (see :attr:`elapsed`).
        progress: the current epoch's training so far while its batches run (``None``
            before the first epoch and from the end of an epoch's last batch on); a
            checkpoint written while it is set resumes inside the epoch (see
            :meth:`Trainer.save_checkpoint <lenetish.Trainer.save_checkpoint>`). Set by the
            loop, not a constructor argument.
        resume_point: the ``mid_epoch`` part of the checkpoint this fit resumed from, until
            the first epoch has skipped the batches it had already trained. Set by
            :mod:`lenetish.training.resume` when a fit resumes, not a constructor argument.
        pending_optimizer: the checkpoint's optimizer state and file name, when it holds
            more parameter groups than the fresh optimizer: kept until callbacks have added
            theirs (``on_fit_start``, ``on_epoch_start``) and loaded before the first batch.
            Set by :mod:`lenetish.training.resume`, not a constructor argument.
        stop_held: a stop request was held back by ``min_epochs`` (said once per fit). Set
            by the loop, not a constructor argument.
        accumulating: the batch just trained added its gradients without an optimizer step
            (``accumulate_grad_batches``); per-step callbacks wait for the step. Set by the
            loop, not a constructor argument.
        in_epoch_validation: the ``on_validation_end`` hooks running are those of a
            validation inside the epoch (``val_check_interval``), not at its end;
            ``batch_index`` and ``global_step`` say where. Set by the loop, not a
            constructor argument.

    Example:
        >>> from lenetish import Callback, MNISTConvNet, Trainer
        >>> class Where(Callback):
        ...     def on_epoch_end(self, trainer, state):
        ...         print(state.epoch, state.epochs, state.global_step, state.steps_per_epoch)
        >>> batches = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))] * 3
        >>> _ = Trainer(MNISTConvNet(), epochs=2, device="cpu", callbacks=[Where()]).fit(batches)
        0 2 3 3
        1 2 6 3
    """

    epoch: int = 0
    epochs: int = 0
    global_step: int = 0
    batch_index: int = 0
    steps_per_epoch: int | None = None
    lr: float = 0.0
    last_loss: Tensor | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    resumed: bool = False
    validating: bool = False
    validation_freq: int = 1
    min_epochs: int = 0
    resumed_from: str | None = None
    started_at: float = field(default_factory=time.monotonic)
    progress: EpochProgress | None = field(default=None, init=False, repr=False)
    resume_point: dict[str, Any] | None = field(default=None, init=False, repr=False)
    pending_optimizer: tuple[dict[str, Any], str] | None = field(
        default=None, init=False, repr=False
    )
    stop_held: bool = field(default=False, init=False, repr=False)
    accumulating: bool = field(default=False, init=False, repr=False)
    in_epoch_validation: bool = field(default=False, init=False, repr=False)

    @property
    def elapsed(self) -> float:
        """Seconds since this fit started."""
        return time.monotonic() - self.started_at

    def validates(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (from 0) runs validation.

        It does when the fit was given ``val=`` and ``epoch + 1`` is a multiple of
        ``validation_freq`` (Keras' ``validation_freq``, Lightning's
        ``check_val_every_n_epoch``); the last epoch gets no extra run.
        """
        return self.validating and (epoch + 1) % self.validation_freq == 0


@dataclass
class EpochProgress:
    """How far the current epoch's training batches have got: what a mid-epoch checkpoint holds.

    Attributes:
        rng: the random generators' states at the start of the epoch (before
            ``on_epoch_start`` and the loader's first batch), from which a resumed fit replays
            the epoch's batch order.
        score: the running training loss and accuracy of the batches counted so far.
        metric_set: the user's training metrics of those batches.
        batches_done: the epoch's batches finished so far (trained and counted, or skipped).
        pending: the batch whose ``on_batch_end`` hooks are running: trained, not yet counted.
        loader_rng: the states of the generators the training loader shuffles with (its
            own ``generator=``, its sampler's), by place, before the epoch's iterator was
            made and drew from them.
        validated_at: ``batches_done`` at the epoch's latest in-epoch validation (0: none).
        stream: under ``steps_per_epoch``, where the loader's stream stood at the epoch's
            start (see ``lenetish.training._streams``).

    Example:
        A callback can read it during an epoch (it is ``None`` between epochs):

        >>> from lenetish import Callback, MNISTConvNet, Trainer
        >>> done = []
        >>> class Watch(Callback):
        ...     def on_batch_end(self, trainer, state, output):
        ...         done.append(state.progress.batches_done)
        >>> batches = [(torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,)))] * 3
        >>> _ = Trainer(MNISTConvNet(), epochs=1, device="cpu", callbacks=[Watch()]).fit(batches)
        >>> done
        [0, 1, 2]
    """

    rng: dict[str, Any]
    score: RunningScore
    metric_set: MetricSet
    batches_done: int = 0
    pending: BatchOutput | None = None
    loader_rng: dict[str, Tensor] = field(default_factory=dict)
    validated_at: int = 0
    stream: dict[str, Any] | None = None
