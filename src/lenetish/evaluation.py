"""Measuring a trained model: ``evaluate`` (loss and accuracy over a loader)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lenetish._device import DeviceLike, resolve_device
from lenetish.errors import InvalidArgumentError

__all__ = ["EvalResult", "RunningScore", "evaluate"]


@dataclass(frozen=True)
class EvalResult:
    """Scores of a model on a dataset.

    Attributes:
        loss: mean negative log-likelihood per sample.
        accuracy: fraction of samples classified correctly, in ``[0, 1]``.
        correct: number of samples classified correctly.
        total: number of samples seen.
    """

    loss: float
    accuracy: float
    correct: int
    total: int


class RunningScore:
    """Sums of loss and correct predictions kept on the device: one sync when read."""

    def __init__(self, device: torch.device) -> None:
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.seen = 0

    def add(self, mean_loss: Tensor, log_probs: Tensor, targets: Tensor) -> None:
        """Count one batch: its mean loss, its outputs ``(B, C)`` and its labels ``(B,)``."""
        count = int(targets.shape[0])
        self.loss_sum += mean_loss.detach().double() * count
        self.correct += (log_probs.argmax(dim=1) == targets).sum()
        self.seen += count

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """``{prefix}loss`` and ``{prefix}accuracy`` so far (empty before any batch)."""
        if not self.seen:
            return {}
        return {
            f"{prefix}loss": float(self.loss_sum) / self.seen,
            f"{prefix}accuracy": int(self.correct) / self.seen,
        }


def _model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def evaluate(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    *,
    device: DeviceLike | None = None,
) -> EvalResult:
    """Compute the mean loss and the accuracy of ``model`` over every batch of ``loader``.

    The model must return log-probabilities (as :class:`~lenetish.MNISTConvNet` does). It runs
    in eval mode under :func:`torch.inference_mode`; its train/eval mode is restored after.

    Args:
        model: the network to score.
        loader: any iterable of ``(images, labels)`` batches.
        device: where to run (``None``: where the model's parameters are).

    Returns:
        The :class:`EvalResult`.

    Raises:
        InvalidArgumentError: ``loader`` yielded no samples.

    Example:
        >>> from lenetish import MNISTConvNet
        >>> batch = (torch.zeros(4, 1, 28, 28), torch.tensor([0, 1, 2, 3]))
        >>> evaluate(MNISTConvNet(), [batch]).total
        4
    """
    target = _model_device(model) if device is None else resolve_device(device)
    was_training = model.training
    model.to(target).eval()
    score = RunningScore(target)
    try:
        with torch.inference_mode():
            for images, labels in loader:
                images = images.to(target, non_blocking=True)
                labels = labels.to(target, non_blocking=True)
                log_probs = model(images)
                score.add(F.nll_loss(log_probs, labels), log_probs, labels)
    finally:
        model.train(was_training)
    if score.seen == 0:
        raise InvalidArgumentError("the loader yielded no samples; evaluate needs at least one")
    metrics = score.metrics()
    return EvalResult(
        loss=metrics["loss"],
        accuracy=metrics["accuracy"],
        correct=int(score.correct),
        total=score.seen,
    )
