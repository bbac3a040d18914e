"""SmallConvNet: a two-layer CNN for 28x28 digits that returns raw logits (no log_softmax)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SmallConvNet(nn.Module):
    """Conv 1->8 -> ReLU -> pool -> conv 8->16 -> ReLU -> pool -> linear 400->classes.

    No ``log_softmax`` at the end: lenetish's ``loss="auto"`` and :func:`lenetish.predict`
    detect logits, and :class:`~logit_digits.losses.FocalLoss` expects them.

    Args:
        classes: the number of classes.
    """

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3),  # (B, 8, 26, 26)
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 8, 13, 13)
            nn.Conv2d(8, 16, 3),  # (B, 16, 11, 11)
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 16, 5, 5)
        )
        self.head = nn.Linear(16 * 5 * 5, classes)

    def forward(self, images: Tensor) -> Tensor:
        """Logits ``(B, classes)`` of images ``(B, 1, 28, 28)``."""
        features: Tensor = self.features(images)
        logits: Tensor = self.head(torch.flatten(features, 1))
        return logits
