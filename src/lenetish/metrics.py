"""Running scores of a fit or an evaluation, kept on the device and summed across processes."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["RunningScore"]


class RunningScore:
    """Sums of loss and correct predictions kept on the device: one sync when read.

    Args:
        device: where the sums live (the device the batches are on).

    Example:
        >>> score = RunningScore(torch.device("cpu"))
        >>> outputs = torch.tensor([[0.0, -9.0], [0.0, -9.0]])  # both predict class 0
        >>> score.add(torch.tensor(0.5), outputs, torch.tensor([0, 1]))
        >>> score.metrics(prefix="val_")
        {'val_loss': 0.5, 'val_accuracy': 0.5}
    """

    def __init__(self, device: torch.device) -> None:
        self._loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self._correct = torch.zeros((), dtype=torch.int64, device=device)
        self._seen = 0

    @property
    def seen(self) -> int:
        """The number of samples counted so far."""
        return self._seen

    @property
    def correct(self) -> int:
        """The number of samples classified correctly so far (waits for the device)."""
        return int(self._correct)

    def add(self, mean_loss: Tensor, outputs: Tensor, targets: Tensor) -> None:
        """Count one batch: its mean loss, its outputs ``(B, C)`` and its labels ``(B,)``."""
        count = int(targets.shape[0])
        self._loss_sum += mean_loss.detach().double() * count
        self._correct += (outputs.argmax(dim=1) == targets).sum()
        self._seen += count

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """``{prefix}loss`` and ``{prefix}accuracy`` so far (empty before any batch)."""
        if not self._seen:
            return {}
        return {
            f"{prefix}loss": float(self._loss_sum) / self._seen,
            f"{prefix}accuracy": int(self._correct) / self._seen,
        }

    def all_reduce(self) -> None:
        """Replace this process's sums by the sums over every process of the group.

        Call it on every rank at the same point (it is a collective operation); the sums
        must live on a device the process group's backend handles.
        """
        totals = torch.stack(
            [
                self._loss_sum,
                self._correct.double(),
                torch.tensor(float(self._seen), dtype=torch.float64, device=self._loss_sum.device),
            ]
        )
        dist.all_reduce(totals)
        loss_sum, correct, seen = totals.unbind()
        self._loss_sum = loss_sum
        self._correct = correct.round().long()
        self._seen = int(seen.item())
