"""Measuring a trained model: ``evaluate`` (loss and accuracy over a loader)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lenetish._device import DeviceLike, resolve_device
from lenetish.errors import InvalidArgumentError

__all__ = ["EvalResult", "evaluate"]


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
    loss_sum = torch.zeros((), dtype=torch.float64, device=target)
    correct = torch.zeros((), dtype=torch.int64, device=target)
    total = 0
    try:
        with torch.inference_mode():
            for images, labels in loader:
                images = images.to(target, non_blocking=True)
                labels = labels.to(target, non_blocking=True)
                log_probs = model(images)
                loss_sum += F.nll_loss(log_probs, labels, reduction="sum").double()
                correct += (log_probs.argmax(dim=1) == labels).sum()
                total += int(labels.shape[0])
    finally:
        model.train(was_training)
    if total == 0:
        raise InvalidArgumentError("the loader yielded no samples; evaluate needs at least one")
    return EvalResult(
        loss=float(loss_sum) / total,
        accuracy=int(correct) / total,
        correct=int(correct),
        total=total,
    )
