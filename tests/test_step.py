"""Tests of step: when the CUDA-graph step is used, its fallback, and eager parity."""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest
import torch
from torch import Tensor

import lenetish.training.cuda_graph
from lenetish import (
    BatchOutput,
    Callback,
    LRSchedule,
    MNISTConvNet,
    RandomAffine,
    Trainer,
    TrainState,
)
from lenetish.callbacks.schedules import builtin_schedule
from lenetish.training.cuda_graph import CaptureRequest, capture_blockers
from lenetish.training.step import StepSettings
from tests.training_helpers import digit_batches, quick_trainer

gpu = pytest.mark.gpu


def test_default_adam_trainer_on_cuda_would_capture() -> None:
    """With Adam, the built-in schedule and plain callbacks, nothing on CUDA blocks capture."""
    model = MNISTConvNet()
    schedule = builtin_schedule("onecycle", epochs=1, steps_per_epoch=10)
    assert schedule is not None
    request = CaptureRequest(
        cuda_graphs=True,
        settings=StepSettings(torch.device("cuda"), "bf16-mixed"),
        optimizer=torch.optim.Adam(model.parameters(), fused=True),
        callbacks=[*quick_trainer().callbacks, schedule],
    )
    assert capture_blockers(request) == []


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


class TwoProcessTrainer(Trainer):
    """A trainer as it is during a 2-process fit (its world_size)."""

    @property
    def world_size(self) -> int:
        """Two processes."""
        return 2


def _distributed_trainer() -> Trainer:
    """A trainer as it is during a 2-process fit."""
    return TwoProcessTrainer(MNISTConvNet(), device="cpu", cuda_graphs=True, progress=False)


def _blockers(trainer: Trainer) -> list[str]:
    """The blockers of a fit by ``trainer`` as they would be on a CUDA device."""
    optimizer = trainer.configure_optimizers()
    callbacks = list(trainer.callbacks)
    schedule = builtin_schedule(trainer.scheduler_spec, epochs=1, steps_per_epoch=1)
    request = CaptureRequest(
        cuda_graphs=trainer.cuda_graphs,
        settings=StepSettings(torch.device("cuda"), trainer.precision, trainer.grad_clip_norm),
        optimizer=optimizer,
        callbacks=[*callbacks, *([schedule] if schedule else [])],
        custom_training_step=type(trainer).training_step is not Trainer.training_step,
        deterministic=trainer.deterministic,
        compiled=trainer.compile,
        world_size=trainer.world_size,
    )
    return capture_blockers(request)


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: quick_trainer(cuda_graphs=False), "cuda_graphs=False"),
        (lambda: OwnStep(MNISTConvNet(), device="cpu"), "a subclass overrides training_step"),
        (lambda: quick_trainer(optimizer="sgd"), "the optimizer is SGD"),
        (
            lambda: quick_trainer(optimizer=lambda p: torch.optim.RMSprop(p)),
            "the optimizer is RMSprop",
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
        (
            lambda: quick_trainer(scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, 1)),
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
    assert any(reason in blocker for blocker in _blockers(build()))


def test_a_user_adam_needs_no_fallback() -> None:
    """A user's own Adam (from a callable or a subclass's seam) can be captured too."""
    trainer = quick_trainer(cuda_graphs=True, optimizer=lambda p: torch.optim.AdamW(p))
    assert _blockers(trainer) == []


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"cuda_graphs": True}, "the device is cpu, not CUDA"),
        (
            {"callbacks": [BackwardWatcher()], "cuda_graphs": True},
            "BackwardWatcher overrides on_before_backward",
        ),
        ({"optimizer": "sgd", "cuda_graphs": True}, "the optimizer is SGD"),
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
    assert len(lines) == 1 and "training step eager (" in lines[0]
    assert reason in lines[0]
    assert history[-1]["loss"] < history[0]["loss"]


def test_a_failed_capture_continues_eagerly_from_the_same_state(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """If capturing raises, the fit logs it once and ends as an eager fit would, bit for bit."""
    batches = digit_batches(150, 25)
    eager = quick_trainer(epochs=2, seed=3)
    eager_history = eager.fit(batches)

    def failing_capture(step: Any, device: torch.device) -> Any:
        raise RuntimeError("injected capture failure")

    monkeypatch.setattr(lenetish.training.cuda_graph, "capture_blockers", lambda request: [])
    monkeypatch.setattr(lenetish.training.cuda_graph, "capture_cuda_graph", failing_capture)
    captured = quick_trainer(epochs=2, seed=3, cuda_graphs=True)
    with caplog.at_level(logging.INFO, "lenetish"):
        history = captured.fit(batches)
    assert "training step captured as a CUDA graph" in caplog.text
    failures = [r for r in caplog.records if "injected capture failure" in r.getMessage()]
    assert len(failures) == 1 and "continuing eagerly" in failures[0].getMessage()
    assert len(history) == len(eager_history) == 2
    for ours, theirs in zip(captured.model.parameters(), eager.model.parameters(), strict=True):
        assert torch.equal(ours, theirs)


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
        Trainer(MNISTConvNet(), epochs=1, device="cuda", cuda_graphs=True, progress=False).fit(
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
            MNISTConvNet(),
            epochs=1,
            device="cuda",
            augment=augment,
            cuda_graphs=True,
            progress=False,
        ).fit([(x.cuda(), y.cuda()) for x, y in digit_batches(200, 25)])
    assert "training step captured as a CUDA graph" in caplog.text
    assert math.isfinite(history[-1]["loss"])


@gpu
def test_an_lr_assigned_by_a_callback_reaches_the_captured_step() -> None:
    """group['lr'] = 0.0 in a callback stops a captured step from changing the weights."""
    snapshots: list[list[Tensor]] = []

    class FreezeAfterEachEpoch(Callback):
        def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
            snapshots.append([p.detach().clone() for p in trainer.module.parameters()])
            for group in trainer.optimizer.param_groups:
                group["lr"] = 0.0

    batches = [(x.cuda(), y.cuda()) for x, y in digit_batches(200, 25)]
    Trainer(
        MNISTConvNet(),
        epochs=2,
        device="cuda",
        cuda_graphs=True,
        progress=False,
        callbacks=[FreezeAfterEachEpoch()],
    ).fit(batches)
    assert all(torch.equal(a, b) for a, b in zip(snapshots[0], snapshots[1], strict=True))
