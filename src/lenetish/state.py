"""What hooks receive: ``TrainState`` (where a fit stands) and ``BatchOutput`` (one step)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from torch import Tensor

__all__ = ["BatchOutput", "TrainState"]


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
        validating: whether this fit was given validation batches (``val_*`` metrics).
        started_at: ``time.monotonic()`` when the fit started (see :attr:`elapsed`).

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
    started_at: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        """Seconds since this fit started."""
        return time.monotonic() - self.started_at
