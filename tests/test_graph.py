"""Tests of lenetish.graph: when the CUDA-graph step is used, and that it matches eager."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest
import torch
from torch import Tensor

from lenetish import (
    BatchOutput,
    Callback,
    LRSchedule,
    MNISTConvNet,
    RandomAffine,
    Trainer,
    TrainState,
)
from lenetish.distributed import DistributedEnv
from lenetish.graph import graph_blockers
from lenetish.schedules import builtin_schedule
from tests.training_helpers import digit_batches, quick_trainer

gpu = pytest.mark.gpu


def _blockers_on_cuda(trainer: Trainer, callbacks: list[Callback] | None = None) -> list[str]:
    """The blockers as they would be on a CUDA device (the decision only reads settings)."""
    trainer.device = torch.device("cuda")
    return graph_blockers(trainer, callbacks if callbacks is not None else trainer.callbacks)


def test_default_adam_trainer_on_cuda_would_capture() -> None:
    """With the defaults, a built-in schedule and plain callbacks, nothing blocks capture."""
    trainer = quick_trainer(scheduler="onecycle")
    schedule = builtin_schedule("onecycle", lr=1e-3, epochs=1, steps_per_epoch=10)
    assert schedule is not None
    assert _blockers_on_cuda(trainer, [*trainer.callbacks, schedule]) == []


class BackwardWatcher(Callback):
    """Looks at the loss inside the step."""

    def on_before_backward(self, trainer: Trainer, state: TrainState, loss: Tensor) -> None:
        pass


class StepWatcher(Callback):
    """Looks at the gradients inside the step."""

    def on_before_optimizer_step(self, trainer: Trainer, state: TrainState, optimizer: Any) -> None:
        pass


class OwnStep(Trainer):
    """A Trainer with its own training_step."""

    def training_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
        return super().training_step(images, labels)


def _distributed_trainer() -> Trainer:
    """A trainer as it is during a 2-process fit."""
    trainer = quick_trainer()
    trainer.distributed = DistributedEnv(rank=0, local_rank=0, world_size=2)
    return trainer


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: quick_trainer(cuda_graphs=False), "cuda_graphs=False"),
        (lambda: OwnStep(MNISTConvNet(), device="cpu"), "a subclass overrides training_step"),
        (lambda: quick_trainer(optimizer="sgd"), "the optimizer is not the built-in Adam"),
        (
            lambda: quick_trainer(optimizer=lambda p: torch.optim.Adam(p)),
            "the optimizer is not the built-in Adam",
        ),
        (
            lambda: quick_trainer(callbacks=[BackwardWatcher()]),
            "BackwardWatcher overrides on_before_backward",
        ),
        (
            lambda: quick_trainer(callbacks=[StepWatcher()]),
            "StepWatcher overrides on_before_optimizer_step",
        ),
        (
            lambda: quick_trainer(
                callbacks=[LRSchedule(lambda o: torch.optim.lr_scheduler.StepLR(o, 1))]
            ),
            "a custom learning-rate schedule",
        ),
        (lambda: quick_trainer(grad_clip_norm=1.0), "grad_clip_norm is set"),
        (lambda: quick_trainer(deterministic=True), "deterministic=True"),
        (lambda: quick_trainer(compile=True), "compile=True"),
        (_distributed_trainer, "distributed training (DDP"),
    ],
)
def test_each_blocker_is_named(build: Any, reason: str) -> None:
    """Every unsafe setting blocks the CUDA-graph step with its own reason."""
    assert any(reason in blocker for blocker in _blockers_on_cuda(build()))


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({}, "the device is cpu, not CUDA"),
        ({"callbacks": [BackwardWatcher()]}, "BackwardWatcher overrides on_before_backward"),
        ({"optimizer": "sgd"}, "the optimizer is not the built-in Adam"),
        ({"cuda_graphs": False}, "cuda_graphs=False"),
    ],
)
def test_fallback_logs_why_and_still_trains(
    options: dict[str, Any], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A fit that cannot capture logs one line with the reason and trains eagerly."""
    batches = digit_batches(100, 25)
    trainer = quick_trainer(epochs=3, **options)
    with caplog.at_level(logging.INFO, "lenetish"):
        history = trainer.fit(batches)
    lines = [r.getMessage() for r in caplog.records if "training step" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("lenetish: training step eager (")
    assert reason in lines[0]
    assert history[-1]["loss"] < history[0]["loss"]


def _losses(cuda_graphs: bool, batches: list[tuple[Tensor, Tensor]], **options: Any) -> list[float]:
    losses: list[Tensor] = []

    class Keep(Callback):
        def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
            losses.append(output.loss)

    torch.manual_seed(0)
    trainer = Trainer(
        MNISTConvNet(dropout=0.2),
        epochs=2,
        device="cuda",
        cuda_graphs=cuda_graphs,
        seed=1,
        progress=False,
        callbacks=[Keep()],
        **options,
    )
    trainer.fit(batches)
    return [float(loss) for loss in losses]


@gpu
@pytest.mark.parametrize(
    "options", [{}, {"scheduler": "onecycle", "lr": 3e-3}, {"precision": "bf16-mixed"}]
)
def test_graph_and_eager_losses_agree_step_by_step(options: dict[str, Any]) -> None:
    """On CUDA the captured step gives the eager step's losses, batch by batch."""
    batches = [(x.cuda(), y.cuda()) for x, y in digit_batches(230, 25)]  # last batch: 5 images
    eager = _losses(False, batches, **options)
    graphed = _losses(True, batches, **options)
    assert len(eager) == len(graphed) == 20
    tolerance = 5e-2 if options.get("precision") else 1e-3
    torch.testing.assert_close(
        torch.tensor(graphed), torch.tensor(eager), rtol=tolerance, atol=tolerance
    )


@gpu
def test_graph_step_is_used_on_cuda(caplog: pytest.LogCaptureFixture) -> None:
    """On CUDA with the defaults, the fit says it captured the step."""
    with caplog.at_level(logging.INFO, "lenetish"):
        Trainer(MNISTConvNet(), epochs=1, device="cuda", progress=False).fit(
            [(x.cuda(), y.cuda()) for x, y in digit_batches(200, 25)]
        )
    assert "training step captured as a CUDA graph" in caplog.text
    assert "captured a step for batches of (25, 1, 28, 28)" in caplog.text


@gpu
def test_elastic_augmentation_is_captured_in_the_cuda_graph(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """On CUDA, a step with elastic distortion is captured as a graph and trains."""
    augment = RandomAffine(elastic_alpha=34.0)
    with caplog.at_level(logging.INFO, "lenetish"):
        history = Trainer(
            MNISTConvNet(), epochs=1, device="cuda", augment=augment, progress=False
        ).fit([(x.cuda(), y.cuda()) for x, y in digit_batches(200, 25)])
    assert "training step captured as a CUDA graph" in caplog.text
    assert math.isfinite(history[-1]["loss"])
