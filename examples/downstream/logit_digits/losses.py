"""FocalLoss: cross-entropy that down-weights the samples the model already classifies well."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


class FocalLoss:
    """The focal loss of Lin et al. (2017) on logits: ``mean(-(1 - p_t) ** gamma * log p_t)``.

    An instance is a ``(outputs, targets) -> scalar`` callable, which is what
    ``lenetish.Trainer(loss=...)`` takes; ``gamma=0`` is the cross-entropy.

    Args:
        gamma: how strongly easy samples are down-weighted (>= 0).
    """

    def __init__(self, gamma: float = 2.0) -> None:
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma!r}")
        self.gamma = gamma

    def __call__(self, logits: Tensor, targets: Tensor) -> Tensor:
        """The mean loss of a batch of logits ``(B, classes)`` and labels ``(B,)``."""
        log_p = F.log_softmax(logits.float(), dim=1).gather(1, targets[:, None]).squeeze(1)
        weight = (1 - log_p.exp()) ** self.gamma
        return -(weight * log_p).mean()
