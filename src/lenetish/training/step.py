"""How one training step runs eagerly: ``EagerStep`` and the settings that shape it.

A fit gets its step once (:func:`lenetish.training.cuda_graph.make_step`) and then only calls
it with each batch. :class:`EagerStep` owns everything a step does besides the user's
``training_step``: augmentation, autocast (the one place that picks the dtype), the gradient
scaler, zeroing, the in-step hooks and gradient clipping. The captured CUDA-graph step wraps
it (:mod:`lenetish.training.cuda_graph`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from lenetish._device import ResolvedPrecision, autocast
from lenetish.errors import InvalidArgumentError
from lenetish.training.state import BatchOutput

__all__ = [
    "IN_STEP_HOOKS",
    "EagerStep",
    "StepSettings",
    "TrainingStep",
]

logger = logging.getLogger("lenetish")

IN_STEP_HOOKS = ("on_before_backward", "on_before_optimizer_step")

Forward = Callable[[Tensor, Tensor], BatchOutput]
HookCaller = Callable[..., None]


class TrainingStep(Protocol):
    """A callable that trains on one batch and returns what it produced."""

    scaler: torch.amp.GradScaler | None

    def __call__(
        self, images: Tensor, labels: Tensor, *, scale: float = 1.0, update: bool = True
    ) -> BatchOutput:
        """Run one optimizer step on ``(images, labels)`` (see :meth:`EagerStep.__call__`)."""
        ...


@dataclass(frozen=True)
class StepSettings:
    """The parts of a Trainer's configuration that shape a step.

    Attributes:
        device: where the step runs.
        precision: the resolved precision (``"32"``, ``"bf16-mixed"``, ``"16-mixed"``).
        grad_clip_norm: clip the global gradient norm to this value, or ``None``.
        augment: applied to every training batch before the forward pass, or ``None``.

    Example:
        >>> from lenetish.training.step import StepSettings
        >>> settings = StepSettings(torch.device("cpu"), "bf16-mixed")
        >>> with settings.autocast():
        ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
        torch.bfloat16
    """

    device: torch.device
    precision: ResolvedPrecision
    grad_clip_norm: float | None = None
    augment: Callable[[Tensor], Tensor] | None = None

    def autocast(self, *, cache_enabled: bool = True) -> contextlib.AbstractContextManager[Any]:
        """Autocast to the precision's dtype on the step's device (a no-op in fp32)."""
        return autocast(self.device, self.precision, cache_enabled=cache_enabled)


class EagerStep:
    """One optimizer step run op by op: forward, in-step hooks, backward, clip, update.

    Args:
        model: the network being trained (its parameters are clipped).
        optimizer: the optimizer to step.
        forward: the Trainer's ``training_step``.
        settings: precision, clipping and augmentation.
        call_hook: runs a callback hook by name on every callback of the fit.

    Attributes:
        scaler: the gradient scaler of ``"16-mixed"`` precision, else ``None``.
        zero_in_place: zero gradients in place instead of dropping them (set once a CUDA
            graph owns the gradients' memory).
        accumulated: the parameters' gradients hold micro-batches not yet stepped on
            (gradient accumulation; a mid-group checkpoint saves them).

    Example:
        >>> from lenetish import BatchOutput, MNISTConvNet
        >>> from lenetish.training.step import EagerStep, StepSettings
        >>> model = MNISTConvNet()
        >>> def forward(images, labels):  # what Trainer.training_step does
        ...     outputs = model(images)
        ...     return BatchOutput(torch.nn.functional.nll_loss(outputs, labels), outputs, labels)
        >>> optimizer = torch.optim.Adam(model.parameters())
        >>> settings = StepSettings(torch.device("cpu"), "32")
        >>> hooks = []
        >>> step = EagerStep(model, optimizer, forward, settings, lambda h, *a: hooks.append(h))
        >>> output = step(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))
        >>> output.logits.shape, hooks
        (torch.Size([8, 10]), ['on_before_backward', 'on_before_optimizer_step'])
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Optimizer,
        forward: Forward,
        settings: StepSettings,
        call_hook: HookCaller,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.forward = forward
        self.settings = settings
        self.call_hook = call_hook
        self.scaler = torch.amp.GradScaler("cuda") if settings.precision == "16-mixed" else None
        self.zero_in_place = False
        self.accumulated = False  # gradients added since the last optimizer step

    def losses(self, images: Tensor, labels: Tensor) -> BatchOutput:
        """Augment and run ``training_step`` under autocast (cache off, as capture needs)."""
        if self.settings.augment is not None:
            images = self.settings.augment(images)
        with self.settings.autocast(cache_enabled=False):
            output = self.forward(images, labels)
        if not isinstance(output, BatchOutput):
            raise InvalidArgumentError(
                f"training_step returned {type(output).__name__}, not a BatchOutput(loss, "
                "outputs, labels); return one (raise SkipBatch to skip a batch)"
            )
        return output

    def __call__(
        self, images: Tensor, labels: Tensor, *, scale: float = 1.0, update: bool = True
    ) -> BatchOutput:
        """Run one whole step and return the batch's (attached) output.

        With gradient accumulation the loop calls it once per micro-batch: ``scale`` (1/N)
        multiplies the loss before backward, the gradients start from zero only after an
        optimizer step, and ``update=False`` adds this batch's gradients without stepping.
        The returned loss is the batch's own, unscaled.
        """
        output = self.losses(images, labels)
        self.call_hook("on_before_backward", output.loss)
        if not self.accumulated:  # the first micro-batch since the last optimizer step
            self.optimizer.zero_grad(set_to_none=not self.zero_in_place)
        loss = output.loss if scale == 1.0 else output.loss * scale
        if self.scaler is not None:
            torch.autograd.backward(self.scaler.scale(loss))
        else:
            torch.autograd.backward(loss)
        # A hook that raises in update() (SkipBatch) drops the group: the next batch zeroes.
        self.accumulated = not update
        if update:
            self.update()
        return output

    def update(self) -> None:
        """The optimizer step on the gradients added so far: unscale, hook, clip, step."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        self.call_hook("on_before_optimizer_step", self.optimizer)
        if self.settings.grad_clip_norm is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.accumulated = False
