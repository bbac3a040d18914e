"""The CUDA-graph training step: when it is safe, and how the whole step is captured.

On CUDA, launching the small kernels of this network one by one costs more than running them.
Capturing one training step (forward, loss, backward, optimizer) as a CUDA graph and replaying
it per batch removes that cost. The first steps run eagerly on a side stream (as PyTorch's
capture recipe asks), then one step is captured and every later batch of the same shape is
copied into the graph's static input buffers and replayed. Batches of another shape (a last
partial batch) run eagerly. The step computes what the eager step computes; a ``gpu`` test
compares their losses step by step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lenetish.callbacks import Callback
from lenetish.schedules import LRSchedule
from lenetish.state import BatchOutput

if TYPE_CHECKING:
    from lenetish.trainer import Trainer

__all__ = ["IN_STEP_HOOKS", "CudaGraphStep", "graph_blockers"]

logger = logging.getLogger("lenetish")

IN_STEP_HOOKS = ("on_before_backward", "on_before_optimizer_step")
WARMUP_STEPS = 3


def _overrides(callback: Callback, hook: str) -> bool:
    return getattr(type(callback), hook) is not getattr(Callback, hook)


def graph_blockers(trainer: Trainer, callbacks: list[Callback]) -> list[str]:
    """The reasons the CUDA-graph step cannot be used for this fit (empty: it can).

    Args:
        trainer: the trainer about to fit.
        callbacks: the callbacks of this fit (the built-in schedule included).

    Returns:
        One short reason per obstacle, in a stable order.
    """
    from lenetish.trainer import Trainer

    reasons = []
    if not trainer.cuda_graphs:
        reasons.append("cuda_graphs=False")
    if trainer.device.type != "cuda":
        reasons.append(f"the device is {trainer.device.type}, not CUDA")
    if type(trainer).training_step is not Trainer.training_step:
        reasons.append("a subclass overrides training_step")
    if type(trainer).configure_optimizers is not Trainer.configure_optimizers or (
        trainer.optimizer_spec != "adam"
    ):
        reasons.append("the optimizer is not the built-in Adam")
    for callback in callbacks:
        for hook in IN_STEP_HOOKS:
            if _overrides(callback, hook):
                reasons.append(f"{type(callback).__name__} overrides {hook}")
        if isinstance(callback, LRSchedule) and not getattr(callback, "builtin", False):
            reasons.append("a custom learning-rate schedule (it may change more than the lr)")
    if trainer.precision == "16-mixed":
        reasons.append("precision='16-mixed' needs a gradient scaler")
    if trainer.grad_clip_norm is not None:
        reasons.append("grad_clip_norm is set")
    if trainer.deterministic:
        reasons.append("deterministic=True")
    if trainer.compile:
        reasons.append("compile=True (torch.compile captures graphs its own way)")
    if trainer.distributed is not None:
        reasons.append("distributed training (DDP synchronises gradients outside the graph)")
    return reasons


class CudaGraphStep:
    """Runs training steps of one batch shape as replays of a captured CUDA graph.

    Args:
        trainer: the trainer whose model, optimizer and ``training_step`` are captured; its
            optimizer must be capturable with a tensor learning rate.
        forward: runs ``trainer.training_step`` under the trainer's autocast settings.
    """

    def __init__(self, trainer: Trainer, forward: Callable[[Tensor, Tensor], BatchOutput]) -> None:
        self.trainer = trainer
        self.forward = forward
        self.steps = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_images: Tensor | None = None
        self.static_labels: Tensor | None = None
        self.static_output: BatchOutput | None = None
        self.side_stream = torch.cuda.Stream(device=trainer.device)  # type: ignore[no-untyped-call]
        self.warned_shapes: set[tuple[int, ...]] = set()

    def __call__(self, images: Tensor, labels: Tensor) -> BatchOutput | None:
        """Run one step; ``None`` when this batch must run eagerly (another shape)."""
        static = self.static_images, self.static_labels
        if (
            static[0] is not None
            and static[1] is not None
            and (images.shape != static[0].shape or labels.shape != static[1].shape)
        ):
            shape = tuple(images.shape)
            if shape not in self.warned_shapes:
                self.warned_shapes.add(shape)
                logger.info("CUDA-graph step: a batch of shape %s runs eagerly", shape)
            return None
        self.steps += 1
        if self.steps <= WARMUP_STEPS:
            # PyTorch's recipe: warm up on a side stream before capturing.
            self.side_stream.wait_stream(torch.cuda.current_stream(self.trainer.device))
            with torch.cuda.stream(self.side_stream):
                output = self.trainer._eager_step(images, labels)  # a real step
            torch.cuda.current_stream(self.trainer.device).wait_stream(self.side_stream)
            if self.steps == WARMUP_STEPS:
                self.static_images = images.clone()
                self.static_labels = labels.clone()
            return output
        assert self.static_images is not None and self.static_labels is not None
        self.static_images.copy_(images)
        self.static_labels.copy_(labels)
        if self.graph is None:
            self._capture()
        assert self.graph is not None and self.static_output is not None
        self.graph.replay()
        return BatchOutput(
            self.static_output.loss.detach().clone(),
            self.static_output.logits.detach().clone(),
            labels,
        )

    def _capture(self) -> None:
        optimizer = self.trainer.optimizer
        assert optimizer is not None and self.static_images is not None
        assert self.static_labels is not None
        optimizer.zero_grad(set_to_none=True)  # gradients then live in the graph's memory pool
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            output = self.forward(self.static_images, self.static_labels)
            torch.autograd.backward(output.loss)
            optimizer.step()
        self.graph, self.static_output = graph, output
        logger.info(
            "CUDA-graph step: captured a step for batches of %s", tuple(self.static_images.shape)
        )
