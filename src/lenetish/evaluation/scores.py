"""What an evaluation gives back: :class:`EvalResult`, :class:`Prediction`, and the running tally.

:class:`ScoreTally` counts a pass's loss, correct predictions and confusion on the device;
:func:`lenetish.evaluate` (and a stack's evaluation) turn it into an :class:`EvalResult`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lenetish.errors import InvalidArgumentError
from lenetish.losses import check_targets
from lenetish.metrics import RunningScore

__all__ = ["EvalResult", "Prediction", "ScoreTally"]


@dataclass(frozen=True)
class EvalResult:
    """Scores of a model (or an ensemble) on a dataset.

    Attributes:
        loss: mean negative log-likelihood per sample (of the ensemble's mean probabilities).
        accuracy: fraction of samples classified correctly, in ``[0, 1]``.
        correct: number of samples classified correctly.
        total: number of samples seen.
        per_class_accuracy: accuracy on the samples of each class (NaN for an absent class).
        confusion: ``(classes, classes)`` int64 counts; row = actual, column = predicted.

    Example:
        >>> from lenetish import MNISTConvNet
        >>> images, labels = torch.zeros(6, 1, 28, 28), torch.tensor([0, 0, 1, 1, 2, 2])
        >>> result = evaluate(MNISTConvNet(), [(images, labels)])
        >>> result.total, len(result.per_class_accuracy), int(result.confusion.sum())
        (6, 10, 6)
    """

    loss: float
    accuracy: float
    correct: int
    total: int
    per_class_accuracy: tuple[float, ...]
    confusion: Tensor


@dataclass(frozen=True)
class Prediction:
    """What :func:`predict` returns.

    Attributes:
        labels: int64 ``(N,)`` predicted classes.
        probabilities: float ``(N, classes)``, each row summing to 1 (for an ensemble, the
            mean of its members' probabilities).
        classes: the class names of the dataset the model was trained on (index = label).

    Example:
        >>> prediction = Prediction(torch.tensor([3]), torch.eye(10)[3:4], ("0", "1", "2", "3"))
        >>> prediction.names, prediction.confidence.tolist()
        (['3'], [1.0])
    """

    labels: Tensor
    probabilities: Tensor
    classes: tuple[str, ...] | None = None

    @property
    def names(self) -> list[str]:
        """The class name of each predicted label (the label itself without class names)."""
        names = self.classes
        return [names[i] if names and i < len(names) else str(i) for i in self.labels.tolist()]

    @property
    def confidence(self) -> Tensor:
        """The probability of each predicted label, ``(N,)``."""
        return self.probabilities.max(dim=1).values


class ScoreTally:
    """Running loss, accuracy and confusion counts of log-probabilities against labels.

    What :func:`~lenetish.evaluate` (and its stack form) accumulate batch by batch and report as the
    fields of an :class:`EvalResult`.

    Args:
        device: where the sums are kept.
        num_classes: the number of classes (the size of the confusion matrix); ``None``: the
            number of scores per image of the first batch added.

    Example:
        >>> from lenetish.evaluation import ScoreTally
        >>> tally = ScoreTally(torch.device("cpu"), 3)
        >>> tally.add(torch.log(torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1]])),
        ...           torch.tensor([0, 2]))
        >>> scores = tally.scores()
        >>> scores["accuracy"], scores["confusion"].tolist()
        (0.5, [[1, 0, 0], [0, 0, 0], [0, 1, 0]])
    """

    def __init__(self, device: torch.device, num_classes: int | None) -> None:
        self.num_classes = num_classes
        self.score = RunningScore(device)
        self.device = device
        self.confusion = torch.zeros(
            (num_classes or 0) ** 2, dtype=torch.int64, device=device
        )  # sized by the first batch when num_classes is None

    @property
    def seen(self) -> int:
        """The number of samples added so far."""
        return self.score.seen

    def add(self, log_probs: Tensor, labels: Tensor) -> None:
        """Count one batch: log-probabilities ``(B, classes)``, int64 labels ``(B,)``.

        Raises:
            InvalidArgumentError: the batch has another number of classes than ``num_classes``,
                or labels that are not class indices of the batch (on the CPU).
        """
        if self.num_classes is None:
            self.num_classes = int(log_probs.shape[-1])
            self.confusion = torch.zeros(self.num_classes**2, dtype=torch.int64, device=self.device)
        classes = self.num_classes
        if log_probs.shape[-1] != classes:
            raise InvalidArgumentError(
                f"the model gives {log_probs.shape[-1]} outputs per image but "
                f"num_classes={classes}; pass num_classes={log_probs.shape[-1]}"
            )
        check_targets(log_probs, labels)
        self.score.add(F.nll_loss(log_probs, labels), log_probs, labels)
        pairs = labels * classes + log_probs.argmax(dim=1)
        self.confusion += torch.bincount(pairs, minlength=classes * classes)

    def scores(self) -> dict[str, Any]:
        """The :class:`EvalResult` fields of everything added.

        Raises:
            InvalidArgumentError: nothing was added.
        """
        if self.score.seen == 0:
            raise InvalidArgumentError("the loader yielded no samples; evaluate needs at least one")
        side = self.num_classes or 0
        matrix = self.confusion.reshape(side, side).cpu()
        per_class = matrix.diagonal().double() / matrix.sum(dim=1).double()  # NaN if absent
        metrics = self.score.metrics()
        return {
            "loss": metrics["loss"],
            "accuracy": metrics["accuracy"],
            "correct": self.score.correct,
            "total": self.score.seen,
            "per_class_accuracy": tuple(per_class.tolist()),
            "confusion": matrix,
        }
