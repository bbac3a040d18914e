"""The ``Trainer``: the fit loop that trains a model on batches of ``(images, labels)``."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lenetish._device import DeviceLike, resolve_device, seed_everything
from lenetish.errors import InvalidArgumentError
from lenetish.evaluation import evaluate

__all__ = ["Trainer"]

_OPTIMIZERS = ("adam", "sgd")


class Trainer:
    """Train a model that returns log-probabilities with NLL loss.

    Args:
        model: the network (e.g. :class:`~lenetish.MNISTConvNet`).
        optimizer: ``"adam"`` (the seed's default) or ``"sgd"`` (momentum 0.9).
        lr: learning rate (default: 1e-3 for Adam, 0.1 for SGD, the seed's values).
        epochs: passes over the training data.
        device: ``"auto"`` picks CUDA, then MPS, then the CPU.
        seed: seeds every generator before the model is trained (``None``: leave them).

    Raises:
        InvalidArgumentError: an argument is out of range.

    Example:
        >>> from lenetish import MNISTConvNet
        >>> batches = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))]
        >>> history = Trainer(MNISTConvNet(), epochs=2, device="cpu").fit(batches)
        >>> len(history)
        2
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        optimizer: str = "adam",
        lr: float | None = None,
        epochs: int = 5,
        device: DeviceLike = "auto",
        seed: int | None = None,
    ) -> None:
        if optimizer not in _OPTIMIZERS:
            raise InvalidArgumentError(
                f"optimizer={optimizer!r} is not supported; use one of {', '.join(_OPTIMIZERS)}"
            )
        if lr is not None and not lr > 0:
            raise InvalidArgumentError(f"lr must be positive, got {lr!r}")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise InvalidArgumentError(f"epochs must be a positive integer, got {epochs!r}")
        self.device = resolve_device(device)
        if seed is not None:
            seed_everything(seed)
        self.model = model.to(self.device)
        self.epochs = epochs
        self.optimizer: torch.optim.Optimizer
        if optimizer == "adam":
            self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-3 if lr is None else lr)
        else:
            self.optimizer = torch.optim.SGD(
                model.parameters(), lr=0.1 if lr is None else lr, momentum=0.9
            )

    def fit(
        self,
        train: Iterable[tuple[Tensor, Tensor]],
        val: Iterable[tuple[Tensor, Tensor]] | None = None,
    ) -> list[dict[str, Any]]:
        """Train for ``epochs`` passes over ``train``; score ``val`` after each one.

        Returns:
            One dict per epoch: ``epoch``, ``loss`` (mean training loss), ``seconds`` and, with
            ``val``, ``val_loss`` and ``val_accuracy``.
        """
        rows: list[dict[str, Any]] = []
        for epoch in range(self.epochs):
            started = time.perf_counter()
            self.model.train()
            loss_sum = torch.zeros((), device=self.device)
            batches = 0
            for images, labels in train:
                images, labels = images.to(self.device), labels.to(self.device)
                loss = F.nll_loss(self.model(images), labels)
                self.optimizer.zero_grad(set_to_none=True)
                torch.autograd.backward(loss)
                self.optimizer.step()
                loss_sum += loss.detach()
                batches += 1
            row: dict[str, Any] = {"epoch": epoch + 1, "loss": float(loss_sum) / max(batches, 1)}
            if val is not None:
                scores = evaluate(self.model, val)
                row.update(val_loss=scores.loss, val_accuracy=scores.accuracy)
            row["seconds"] = time.perf_counter() - started
            rows.append(row)
        return rows
