"""The captured training step: one whole step recorded as a CUDA graph and replayed.

:class:`CudaGraphStep` wraps an :class:`~lenetish.training.step.EagerStep`: it runs a few
warm-up steps eagerly on a side stream (as PyTorch's capture recipe asks), captures one whole
step (forward, loss, backward, optimizer update, with the learning rate read from device
memory so schedules still apply), and replays it for every later batch of that shape; batches
of another shape (a last partial batch) run eagerly. If capturing fails, the fit logs why once
and continues eagerly from the same state. :func:`capture_blockers` says why a fit cannot use
it; :func:`make_step` picks the step of a fit.

The captured step is experimental: it has not yet passed its ``gpu`` tests on a real GPU, so
``Trainer(cuda_graphs=...)`` defaults to ``False``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.optim import Optimizer

from lenetish._checks import is_overridden
from lenetish._device import Deterministic
from lenetish.callbacks.base import Callback
from lenetish.callbacks.schedules import LRSchedule, TrainerSchedule
from lenetish.training.state import BatchOutput
from lenetish.training.step import IN_STEP_HOOKS, EagerStep, StepSettings, TrainingStep

__all__ = [
    "CaptureRequest",
    "CapturedStep",
    "CudaGraphStep",
    "capture_blockers",
    "capture_cuda_graph",
    "make_capturable",
    "make_step",
]

logger = logging.getLogger("lenetish")

WARMUP_STEPS = 3


class CapturedStep(Protocol):
    """A captured step: replay it to run it again on the static input buffers.

    A ``torch.cuda.CUDAGraph`` is one; so is any object with a ``replay()`` method, which
    lets a test run :class:`CudaGraphStep` without a GPU.

    Example:
        >>> from lenetish.training.cuda_graph import CapturedStep
        >>> class Rerun:  # stands in for a CUDA graph by running the step again
        ...     def __init__(self, step):
        ...         self.step = step
        ...     def replay(self):
        ...         self.step()
        >>> calls = []
        >>> graph: CapturedStep = Rerun(lambda: calls.append("step"))
        >>> graph.replay()
        >>> graph.replay()
        >>> calls
        ['step', 'step']
    """

    def replay(self) -> None:
        """Run the captured work once more."""
        ...


def capture_cuda_graph(step: Callable[[], None], device: torch.device) -> CapturedStep:
    """Capture ``step`` as a CUDA graph on ``device`` and return the graph.

    Args:
        step: the work to capture; it must read and write only tensors that live as long
            as the graph (static buffers, parameters, optimizer state).
        device: the CUDA device.

    Returns:
        The captured ``torch.cuda.CUDAGraph``.
    """
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph


def make_capturable(optimizer: Optimizer, device: torch.device) -> None:
    """Let a captured step run ``optimizer``: capturable groups, the lr a device tensor.

    A schedule keeps working: PyTorch's schedulers fill a tensor lr in place. Step counters
    restored from a checkpoint onto the CPU are moved to the parameters' device. Off CUDA
    nothing is captured, so nothing changes.
    """
    if device.type != "cuda":
        return
    for group in optimizer.param_groups:
        group["capturable"] = True
        if not isinstance(group["lr"], Tensor):
            group["lr"] = torch.tensor(float(group["lr"]), device=device)
    for state in optimizer.state.values():
        step = state.get("step")
        if isinstance(step, Tensor) and step.device != device:
            state["step"] = step.to(device)


class CudaGraphStep:
    """Runs training steps of one batch shape as replays of a captured CUDA graph.

    Args:
        eager: the eager step it captures, and falls back to.
        capture: captures a step (by default as a ``torch.cuda.CUDAGraph``; replaceable
            for tests).

    Example:
        When capturing fails, the step logs why once and trains on eagerly from the same
        state; here a capture function that always fails stands in for a GPU that cannot
        capture:

        >>> from lenetish import BatchOutput, MNISTConvNet
        >>> from lenetish.training.cuda_graph import CudaGraphStep
        >>> from lenetish.training.step import EagerStep, StepSettings
        >>> model = MNISTConvNet()
        >>> def forward(images, labels):  # what Trainer.training_step does
        ...     outputs = model(images)
        ...     return BatchOutput(torch.nn.functional.nll_loss(outputs, labels), outputs, labels)
        >>> optimizer = torch.optim.Adam(model.parameters())
        >>> settings = StepSettings(torch.device("cpu"), "32")
        >>> eager = EagerStep(model, optimizer, forward, settings, lambda hook, *args: None)
        >>> def no_graph(step, device):
        ...     raise RuntimeError("capture is not supported here")
        >>> graph_step = CudaGraphStep(eager, capture=no_graph)
        >>> images, labels = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
        >>> losses = [graph_step(images, labels).loss for _ in range(5)]  # 3 warm-ups, then capture
        >>> graph_step.failed, graph_step.graph is None, len(losses)
        (True, True, 5)
    """

    def __init__(
        self,
        eager: EagerStep,
        *,
        capture: Callable[[Callable[[], None], torch.device], CapturedStep] | None = None,
    ) -> None:
        self.eager = eager
        self.scaler = eager.scaler
        self.device = eager.settings.device
        self.capture = capture or capture_cuda_graph
        self.steps = 0
        self.failed = False
        self.graph: CapturedStep | None = None
        self.static: tuple[Tensor, Tensor] | None = None
        self.static_output: BatchOutput | None = None
        self.warned_shapes: set[tuple[int, ...]] = set()
        self.lr_tensors: list[Any] = []
        self.side_stream = (
            torch.cuda.Stream(device=self.device)  # type: ignore[no-untyped-call]
            if self.device.type == "cuda"
            else None
        )

    def __call__(
        self, images: Tensor, labels: Tensor, *, scale: float = 1.0, update: bool = True
    ) -> BatchOutput:
        """Run one step: warm-up, capture, replay, or eager for another shape.

        Gradient accumulation (``scale``, ``update``) is a capture blocker, so a captured
        step is only ever called with the defaults.
        """
        if self.failed or not self._fits(images, labels):
            return self.eager(images, labels)
        self.steps += 1
        if self.steps == 1:
            # After any restore and schedule set-up, which may replace the param groups.
            make_capturable(self.eager.optimizer, self.device)
            self.lr_tensors = [group["lr"] for group in self.eager.optimizer.param_groups]
        self._keep_lr_tensors()
        if self.steps <= WARMUP_STEPS:
            output = self._warm_up(images, labels)
            if self.steps == WARMUP_STEPS:
                self.static = (images.clone(), labels.clone())
            return output
        assert self.static is not None
        self.static[0].copy_(images)
        self.static[1].copy_(labels)
        if self.graph is None and not self._capture():
            return self.eager(images, labels)
        assert self.graph is not None and self.static_output is not None
        self.graph.replay()
        return BatchOutput(
            self.static_output.loss.detach().clone(),
            self.static_output.logits.detach().clone(),
            labels,
        )

    def _keep_lr_tensors(self) -> None:
        """Put a learning rate that a callback assigned back into the tensor the graph reads.

        A captured step reads each group's lr from one device tensor; ``group["lr"] = 0.01``
        in a callback would replace that tensor and leave the graph at the old rate.
        """
        groups = self.eager.optimizer.param_groups
        for group, tensor in zip(groups, self.lr_tensors, strict=True):
            if isinstance(tensor, Tensor) and group["lr"] is not tensor:
                value = group["lr"]
                if isinstance(value, Tensor):
                    tensor.copy_(value)
                else:
                    tensor.fill_(float(value))
                group["lr"] = tensor

    def _fits(self, images: Tensor, labels: Tensor) -> bool:
        """Whether this batch has the captured shape (batches of another run eagerly)."""
        if self.static is None or (
            images.shape == self.static[0].shape and labels.shape == self.static[1].shape
        ):
            return True
        shape = tuple(images.shape)
        if shape not in self.warned_shapes:
            self.warned_shapes.add(shape)
            logger.info("CUDA-graph step: a batch of shape %s runs eagerly", shape)
        return False

    def _warm_up(self, images: Tensor, labels: Tensor) -> BatchOutput:
        """A real eager step, on a side stream on CUDA (PyTorch's recipe before capture)."""
        if self.side_stream is None:
            return self.eager(images, labels)
        self.side_stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.side_stream):
            output = self.eager(images, labels)
        torch.cuda.current_stream(self.device).wait_stream(self.side_stream)
        return output

    def _capture(self) -> bool:
        """Capture one step on the static buffers; on failure log once and stay eager."""
        assert self.static is not None
        images, labels = self.static
        optimizer = self.eager.optimizer
        outputs: list[BatchOutput] = []

        def step() -> None:
            output = self.eager.losses(images, labels)
            torch.autograd.backward(output.loss)
            optimizer.step()
            outputs.append(output)

        optimizer.zero_grad(set_to_none=True)  # gradients then live in the graph's memory pool
        try:
            graph = self.capture(step, self.device)
        except Exception as exc:  # any capture failure: the eager step can still train
            self.failed = True
            optimizer.zero_grad(set_to_none=True)
            logger.warning(
                "lenetish: capturing the CUDA-graph step failed (%s: %s); "
                "continuing eagerly from the same state",
                type(exc).__name__,
                exc,
            )
            return False
        self.graph, self.static_output = graph, outputs[-1]
        self.eager.zero_in_place = True  # the graph owns the gradients' memory now
        logger.info("CUDA-graph step: captured a step for batches of %s", tuple(images.shape))
        return True


@dataclass(frozen=True)
class CaptureRequest:
    """What decides whether a fit may capture its step as a CUDA graph.

    Attributes:
        cuda_graphs: the Trainer's ``cuda_graphs`` setting.
        settings: the step settings (device, precision, clipping).
        optimizer: the optimizer the fit uses.
        callbacks: the callbacks of the fit (the Trainer's schedule included).
        custom_training_step: a subclass overrides ``training_step``.
        deterministic: the Trainer's ``deterministic`` (``True``, ``False`` or ``"warn"``).
        compiled: the model is compiled with ``torch.compile``.
        world_size: the number of processes training together.
        accumulate_grad_batches: micro-batches per optimizer step.

    Example:
        >>> from lenetish import MNISTConvNet
        >>> from lenetish.training.cuda_graph import CaptureRequest, capture_blockers
        >>> from lenetish.training.step import StepSettings
        >>> model = MNISTConvNet()
        >>> request = CaptureRequest(
        ...     cuda_graphs=True,
        ...     settings=StepSettings(torch.device("cuda"), "32"),
        ...     optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        ...     callbacks=[],
        ...     deterministic=True,
        ... )
        >>> for reason in capture_blockers(request):
        ...     print(reason)
        the optimizer is SGD (the captured step supports Adam and AdamW)
        deterministic=True
    """

    cuda_graphs: bool
    settings: StepSettings
    optimizer: Optimizer
    callbacks: Sequence[Callback]
    custom_training_step: bool = False
    deterministic: Deterministic = False
    compiled: bool = False
    world_size: int = 1
    accumulate_grad_batches: int = 1


def capture_blockers(request: CaptureRequest) -> list[str]:
    """The reasons the CUDA-graph step cannot be used for this fit (empty: it can).

    Args:
        request: the fit's settings, optimizer and callbacks.

    Returns:
        One short reason per obstacle, in a stable order.

    Example:
        >>> from lenetish import MNISTConvNet
        >>> from lenetish.training.cuda_graph import CaptureRequest, capture_blockers
        >>> from lenetish.training.step import StepSettings
        >>> model = MNISTConvNet()
        >>> request = CaptureRequest(
        ...     cuda_graphs=True,
        ...     settings=StepSettings(torch.device("cpu"), "32"),
        ...     optimizer=torch.optim.Adam(model.parameters()),
        ...     callbacks=[],
        ... )
        >>> capture_blockers(request)
        ['the device is cpu, not CUDA']
    """
    settings = request.settings
    reasons = []
    if not request.cuda_graphs:
        reasons.append("cuda_graphs=False")
    if settings.device.type != "cuda":
        reasons.append(f"the device is {settings.device.type}, not CUDA")
    if request.custom_training_step:
        reasons.append("a subclass overrides training_step")
    if type(request.optimizer) not in (torch.optim.Adam, torch.optim.AdamW):
        reasons.append(
            f"the optimizer is {type(request.optimizer).__name__} (the captured step "
            "supports Adam and AdamW)"
        )
    for callback in request.callbacks:
        for hook in IN_STEP_HOOKS:
            if is_overridden(callback, hook):
                reasons.append(f"{type(callback).__name__} overrides {hook}")
        if isinstance(callback, LRSchedule) and not isinstance(callback, TrainerSchedule):
            reasons.append("a custom learning-rate schedule (it may change more than the lr)")
    if settings.precision == "16-mixed":
        reasons.append("precision='16-mixed' needs a gradient scaler")
    if settings.grad_clip_norm is not None:
        reasons.append("grad_clip_norm is set")
    if request.deterministic:
        reasons.append(f"deterministic={request.deterministic!r}")
    if request.compiled:
        reasons.append("compile=True (torch.compile captures graphs its own way)")
    if request.accumulate_grad_batches > 1:
        reasons.append("accumulate_grad_batches > 1 (a step is several micro-batches)")
    if request.world_size > 1:
        reasons.append("distributed training (DDP synchronises gradients outside the graph)")
    return reasons


def make_step(eager: EagerStep, request: CaptureRequest) -> tuple[TrainingStep, str]:
    """The step for a fit: captured when nothing blocks it, else eager; and which, and why.

    Args:
        eager: the eager step of the fit.
        request: what decides whether capture is safe.

    Returns:
        A :class:`CudaGraphStep` wrapping ``eager``, or ``eager`` itself; and the part of
        the fit's plan line that says which (``training step eager (reasons)``).
    """
    blockers = capture_blockers(request)
    if blockers:
        return eager, f"training step eager ({'; '.join(blockers)})"
    return CudaGraphStep(eager), "training step captured as a CUDA graph"
