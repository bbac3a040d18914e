"""MacroF1: the unweighted mean of the per-class F1 scores, as an update/compute/reset object."""

from __future__ import annotations

import torch
from torch import Tensor


class MacroF1:
    """Macro-averaged F1 over every batch since the last ``reset()``.

    F1 is not a mean over samples, so it cannot be a plain metric function (lenetish averages
    those per sample); it counts a confusion matrix instead. It follows the protocol that
    ``lenetish.Trainer(metrics=...)`` accepts (and torchmetrics' ``Metric`` follows):
    ``update``, ``compute``, ``reset``, and ``to(device)`` returning the metric. Its
    ``higher_is_better`` (torchmetrics' attribute) tells ``EarlyStopping`` and
    ``ModelCheckpoint`` with ``mode="auto"`` which way is better.

    Args:
        classes: the number of classes.
    """

    higher_is_better = True

    def __init__(self, classes: int = 10) -> None:
        self.classes = classes
        self.confusion = torch.zeros(classes, classes, dtype=torch.int64)

    def to(self, device: torch.device) -> MacroF1:
        """Keep the counts on ``device`` (the training device); returns the metric."""
        self.confusion = self.confusion.to(device)
        return self

    def reset(self) -> None:
        """Forget every batch."""
        self.confusion.zero_()

    def update(self, outputs: Tensor, targets: Tensor) -> None:
        """Count a batch of outputs ``(B, classes)`` (any kind: argmax) and labels ``(B,)``."""
        pairs = targets * self.classes + outputs.argmax(dim=1)
        counts = torch.bincount(pairs, minlength=self.classes * self.classes)
        self.confusion += counts.reshape(self.classes, self.classes)

    def compute(self) -> Tensor:
        """The macro F1 (0-d tensor) over the classes that occur in labels or predictions."""
        matrix = self.confusion.double()
        true_positives = matrix.diagonal()
        predicted, actual = matrix.sum(dim=0), matrix.sum(dim=1)
        present = (predicted + actual) > 0
        f1 = 2 * true_positives / (predicted + actual).clamp_min(1)
        return f1[present].mean()
