"""Fitting a :class:`~lenetish.ModelStack` with the Trainer: refusals and per-member scores.

The Trainer calls :func:`prepare_stack_fit` once per fit and the epoch loop asks
:func:`fit_score` for its running scores; for a plain network both change nothing. For a
stack, the loss is the sum of the members' losses (:class:`~lenetish.losses.Criterion` with
``members`` set), History gets the members' mean (``loss``, ``accuracy``, each metric) and
each member's value (``loss/0``, ``accuracy/0``...), and settings that would couple the
members are refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import Tensor
from torch.optim.lr_scheduler import ReduceLROnPlateau

from lenetish.callbacks.base import Callback
from lenetish.callbacks.schedules import LRSchedule
from lenetish.errors import InvalidArgumentError
from lenetish.losses import Criterion
from lenetish.metrics import MetricLike, MetricSet, RunningScore
from lenetish.stack import ModelStack
from lenetish.state import TrainState

if TYPE_CHECKING:
    from lenetish.trainer import Trainer

__all__ = ["StackMetricSet", "StackScore", "fit_score", "prepare_stack_fit"]


def prepare_stack_fit(trainer: Trainer) -> None:
    """Set the fit up for a stack (nothing for a plain network).

    Raises:
        InvalidArgumentError: ``grad_clip_norm`` is set (one global norm would couple the
            members).
    """
    stack = trainer.module
    if not isinstance(stack, ModelStack):
        trainer.criterion.members = None
        return
    if trainer.grad_clip_norm is not None:
        raise InvalidArgumentError(
            "grad_clip_norm clips the global gradient norm, which would couple the members "
            "of a ModelStack; leave grad_clip_norm=None to train a stack"
        )
    trainer.criterion.members = stack.k
    trainer.metric_sets = (
        StackMetricSet(trainer.metrics, trainer.device, stack.k),
        StackMetricSet(trainer.metrics, trainer.device, stack.k),
    )
    trainer.fit_callbacks = sorted([*trainer.fit_callbacks, _PlateauGuard()], key=lambda c: c.order)


class _PlateauGuard(Callback):
    """Refuses a plateau schedule (built in LRSchedule.on_fit_start, order -50) for a stack."""

    order = -49

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        """Raise if a ReduceLROnPlateau would set every member's lr from one metric."""
        for callback in trainer.fit_callbacks:
            if isinstance(callback, LRSchedule) and isinstance(
                callback.scheduler, ReduceLROnPlateau
            ):
                raise InvalidArgumentError(
                    "ReduceLROnPlateau reads one metric and sets the lr of every member of a "
                    "ModelStack from it, coupling them; use a schedule that reads no metric "
                    "(scheduler='step', 'onecycle', or an LRSchedule without monitor)"
                )


def fit_score(trainer: Trainer, *, smoothing: bool) -> RunningScore:
    """A running score for one epoch of training (``smoothing``) or validation batches."""
    stack = trainer.module
    if isinstance(stack, ModelStack):
        return StackScore(trainer.device, stack.k, trainer.criterion, smoothing=smoothing)
    return RunningScore(trainer.device)


class StackScore(RunningScore):
    """Each member's loss and correct predictions, kept on the device: one sync when read.

    Args:
        device: where the sums live.
        members: the number of members.
        criterion: the trainer's loss, which gives each member's loss.
        smoothing: whether the losses include label smoothing (training, not validation).

    Example:
        >>> from lenetish.losses import Criterion
        >>> score = StackScore(torch.device("cpu"), 2, Criterion("nll"), smoothing=False)
        >>> outputs = torch.tensor([[[0.0, -9.0]], [[-9.0, 0.0]]])  # member 0 right, 1 wrong
        >>> score.add(torch.tensor(9.0), outputs, torch.tensor([0]))
        >>> score.metrics()["accuracy"], score.metrics()["accuracy/0"], score.metrics()["loss/1"]
        (0.5, 1.0, 9.0)
    """

    def __init__(
        self, device: torch.device, members: int, criterion: Criterion, *, smoothing: bool
    ) -> None:
        super().__init__(device)
        self.criterion, self.smoothing = criterion, smoothing
        self._loss_sums = torch.zeros(members, dtype=torch.float64, device=device)
        self._correct = torch.zeros(members, dtype=torch.int64, device=device)
        self._seen = 0

    @property
    def correct(self) -> int:
        """The members' total of correct predictions so far (waits for the device)."""
        return int(self._correct.sum())

    def add(self, summed_loss: Tensor, outputs: Tensor, targets: Tensor) -> None:
        """Count one batch: outputs ``(members, B, C)``, labels ``(B,)`` or ``(members, B)``."""
        del summed_loss  # the sum over members; each member's loss is computed again here
        count = int(targets.shape[-1])
        with torch.no_grad():
            losses = self.criterion.member_losses(outputs, targets, smoothing=self.smoothing)
            self._loss_sums += losses.double() * count
            self._correct += (outputs.argmax(dim=-1) == targets).sum(dim=-1)
        self._seen += count

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """The members' mean ``{prefix}loss``/``accuracy``, then ``{prefix}loss/0``..."""
        if not self._seen:
            return {}
        losses = (self._loss_sums / self._seen).tolist()
        accuracies = (self._correct.double() / self._seen).tolist()
        return {
            f"{prefix}loss": sum(losses) / len(losses),
            f"{prefix}accuracy": sum(accuracies) / len(accuracies),
            **{f"{prefix}loss/{i}": value for i, value in enumerate(losses)},
            **{f"{prefix}accuracy/{i}": value for i, value in enumerate(accuracies)},
        }

    def all_reduce(self) -> None:
        """Sum every process's counts (a collective: call it on every rank)."""
        seen = torch.tensor([float(self._seen)], dtype=torch.float64, device=self._loss_sums.device)
        totals = torch.cat([self._loss_sums, self._correct.double(), seen])
        dist.all_reduce(totals)
        members = self._loss_sums.shape[0]
        self._loss_sums = totals[:members]
        self._correct = totals[members : 2 * members].round().long()
        self._seen = int(totals[-1].item())


class StackMetricSet(MetricSet):
    """The user's metrics for each member of a stack, reported as their mean and per member.

    Args:
        metrics: ``{name: function or object}``, as for :class:`~lenetish.metrics.MetricSet`.
        device: where the running sums live.
        members: the number of members (each gets its own copy of every metric object).
    """

    def __init__(
        self, metrics: Mapping[str, MetricLike], device: torch.device, members: int
    ) -> None:
        self.sets = [MetricSet(metrics, device) for _ in range(members)]
        super().__init__({}, device)

    def reset(self) -> None:
        """Start a new epoch."""
        for metric_set in self.sets:
            metric_set.reset()

    def update(self, outputs: Tensor, targets: Tensor) -> None:
        """Add one batch of stacked outputs ``(members, B, C)``."""
        per_member = targets.expand(outputs.shape[0], -1) if targets.dim() == 1 else targets
        for metric_set, member_outputs, member_targets in zip(
            self.sets, outputs, per_member, strict=True
        ):
            metric_set.update(member_outputs, member_targets)

    def compute(self, prefix: str = "") -> dict[str, float]:
        """``{prefix + name: mean over members}`` and ``{prefix + name/i: member i's}``."""
        values = [metric_set.compute(prefix) for metric_set in self.sets]
        result = {name: math.fsum(v[name] for v in values) / len(values) for name in values[0]}
        for index, member_values in enumerate(values):
            result.update({f"{name}/{index}": value for name, value in member_values.items()})
        return result

    def all_reduce(self) -> None:
        """Sum the functions' totals over every process."""
        for metric_set in self.sets:
            metric_set.all_reduce()
