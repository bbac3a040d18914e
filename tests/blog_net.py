"""The blog post's own network class, written out as its script defines it (for plain state dicts).

The script trained it and saved ``torch.save(model.state_dict(), 'mnist_model.pkl')``; its
parameter names and shapes are exactly :class:`lenetish.MNISTConvNet`'s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Net(nn.Module):
    """conv 1->24 3x3, pool, conv 24->48 3x3, pool, fc 1200->200, fc 200->10, log_softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 24, 3, 1)
        self.conv2 = nn.Conv2d(24, 48, 3, 1)
        self.fc1 = nn.Linear(5 * 5 * 48, 200)
        self.fc2 = nn.Linear(200, 10)

    def forward(self, x: Tensor) -> Tensor:
        """Log-probabilities of a normalised batch ``(N, 1, 28, 28)``."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2, 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2, 2)
        x = x.view(-1, 5 * 5 * 48)
        x = F.relu(self.fc1(x))
        return F.log_softmax(self.fc2(x), dim=1)


class MemoryOrderNet(Net):
    """The blog's network reading its activations in memory order: channels-last changes it."""

    def forward(self, x: Tensor) -> Tensor:
        """Log-probabilities, the pooled activations taken as stored, not in logical order."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2, 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2, 2)
        flat = torch.as_strided(x, (x.shape[0], 1200), (1200, 1))
        return F.log_softmax(self.fc2(F.relu(self.fc1(flat.view(-1, 1200)))), dim=1)
