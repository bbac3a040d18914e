"""Tests of lenetish.training.trainer: the fit loop, hook order, control flow, seams and resume."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from lenetish import (
    BatchOutput,
    Callback,
    CheckpointError,
    DeviceUnavailableError,
    History,
    InvalidArgumentError,
    MNISTConvNet,
    ModelCheckpoint,
    NotFittedError,
    SkipBatch,
    StopTraining,
    TensorLoader,
    Trainer,
    TrainerBusyError,
    TrainState,
    evaluate,
    make_loaders,
    predict,
)
from lenetish.catalog import DATASETS
from lenetish.layout import compiled_forward
from tests.blog_net import Net as BlogNet
from tests.conftest import synthetic_digits
from tests.training_helpers import (
    Recorder,
    digit_batches,
    quick_trainer,
    rows_without_seconds,
    run_script,
    weights_equal,
)


def test_fit_learns_synthetic_digits() -> None:
    """A few epochs of Adam fit the synthetic band digits; History has one row per epoch."""
    batches = digit_batches()
    trainer = quick_trainer(epochs=4, seed=0)
    history = trainer.fit(batches, batches)
    assert isinstance(history, History) and history is trainer.history
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert history[-1]["loss"] < history[0]["loss"]
    assert evaluate(trainer.model, batches).accuracy > 0.9
    assert set(history[0]) == {
        "epoch",
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "lr",
        "seconds",
    }


def test_defaults_reproduce_the_seed_settings() -> None:
    """By default: Adam with PyTorch's default lr (1e-3), five epochs."""
    trainer = quick_trainer(epochs=5)
    optimizer = trainer.configure_optimizers()
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.param_groups[0]["lr"] == 1e-3
    assert Trainer(MNISTConvNet(), device="cpu").epochs == 5


def test_full_hook_sequence_for_two_epochs_of_three_batches() -> None:
    """The hooks run in the documented order for 2 epochs x 3 batches with validation."""
    recorder = Recorder()
    quick_trainer(epochs=2, callbacks=[recorder]).fit(digit_batches(30, 10), digit_batches(10))
    batch = ["on_batch_start", "on_before_backward", "on_before_optimizer_step", "on_batch_end"]
    epoch = ["on_epoch_start", *batch * 3, "on_validation_end", "on_epoch_end"]
    assert recorder.calls == ["on_fit_start", *epoch * 2, "on_fit_end"]


@settings(max_examples=15, deadline=None)
@given(
    epochs=st.integers(1, 3),
    batches=st.integers(1, 4),
    with_val=st.booleans(),
    stop_at=st.none() | st.integers(0, 12),
)
def test_hook_sequence_is_well_formed(
    epochs: int, batches: int, with_val: bool, stop_at: int | None
) -> None:
    """For any shape of run, with or without a stop request, the hook calls nest properly."""
    recorder = Recorder()

    class StopAfter(Callback):
        def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
            if state.global_step == stop_at:
                trainer.should_stop = True

    data = digit_batches(4 * batches, 4)
    quick_trainer(epochs=epochs, callbacks=[recorder, StopAfter()]).fit(
        data, digit_batches(4, 4) if with_val else None
    )
    calls = recorder.calls
    assert calls[0] == "on_fit_start" and calls[-1] == "on_fit_end"
    assert calls.count("on_fit_start") == calls.count("on_fit_end") == 1
    in_epoch = in_batch = False
    for name in calls[1:-1]:
        if name == "on_epoch_start":
            assert not in_batch
            in_epoch = True
        elif name == "on_batch_start":
            assert in_epoch and not in_batch
            in_batch = True
        elif name in ("on_before_backward", "on_before_optimizer_step"):
            assert in_batch
        elif name == "on_batch_end":
            assert in_batch
            in_batch = False
        elif name in ("on_validation_end", "on_epoch_end"):
            assert in_epoch and not in_batch
            in_epoch = name != "on_epoch_end"
    full_epochs = calls.count("on_epoch_end")
    assert calls.count("on_validation_end") == (full_epochs if with_val else 0)
    assert calls.count("on_batch_end") == (
        epochs * batches if stop_at is None else min(stop_at, epochs * batches) or epochs * batches
    )


def test_should_stop_ends_training_after_the_current_batch() -> None:
    """Setting trainer.should_stop in a batch hook lets that batch finish, then stops."""
    recorder = Recorder(order=10)

    class StopAtSecondBatch(Callback):
        def on_batch_start(self, trainer: Trainer, state: TrainState) -> None:
            if state.global_step == 1:
                trainer.should_stop = True

    trainer = quick_trainer(epochs=3, callbacks=[StopAtSecondBatch(), recorder])
    trainer.fit(digit_batches(40, 10))
    assert trainer.state.global_step == 2
    assert recorder.calls.count("on_batch_end") == 2
    assert "on_epoch_end" not in recorder.calls and recorder.calls[-1] == "on_fit_end"
    assert len(trainer.history) == 0


@pytest.mark.parametrize("hook", ["on_batch_start", "on_before_backward", "on_batch_end"])
def test_stop_training_raised_in_a_batch_hook_finishes_the_batch(hook: str) -> None:
    """Raising StopTraining from a batch hook ends training once that batch's step is done."""
    recorder = Recorder(raise_in=hook, signal=StopTraining())
    trainer = quick_trainer(epochs=2, callbacks=[recorder])
    trainer.fit(digit_batches(40, 10))
    assert trainer.state.global_step == 1
    assert recorder.calls.count("on_batch_end") == 1
    assert recorder.calls[-1] == "on_fit_end"


def test_stop_at_epoch_end_keeps_the_epoch() -> None:
    """A stop requested in on_epoch_end keeps that epoch's row and runs no further epoch."""
    recorder = Recorder(raise_in="on_epoch_end", signal=StopTraining())
    trainer = quick_trainer(epochs=4, callbacks=[recorder])
    history = trainer.fit(digit_batches(20, 10))
    assert len(history) == 1 and recorder.calls.count("on_epoch_start") == 1


def test_several_stop_requests_stop_once() -> None:
    """Two callbacks asking to stop in the same batch end training once, cleanly."""
    first = Recorder(raise_in="on_batch_end", signal=StopTraining())
    second = Recorder(raise_in="on_batch_end", signal=StopTraining())
    trainer = quick_trainer(epochs=2, callbacks=[first, second])
    trainer.fit(digit_batches(40, 10))
    assert second.calls.count("on_batch_end") == 1
    assert first.calls.count("on_fit_end") == second.calls.count("on_fit_end") == 1


@pytest.mark.parametrize(
    "hook", ["on_batch_start", "on_before_backward", "on_before_optimizer_step"]
)
def test_skip_batch_skips_the_optimizer_step(hook: str) -> None:
    """SkipBatch from a hook before the step leaves the weights unchanged and skips the batch."""
    recorder = Recorder(raise_in=hook, signal=SkipBatch())
    trainer = quick_trainer(epochs=1, callbacks=[recorder])
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.fit(digit_batches(30, 10))
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))
    assert trainer.state.global_step == 0
    assert "on_batch_end" not in recorder.calls
    assert recorder.calls[-2:] == ["on_epoch_end", "on_fit_end"]


def test_exception_reaches_every_callback_then_propagates_unchanged() -> None:
    """An error in a hook calls on_exception on every callback and re-raises the same object."""
    error = RuntimeError("boom")
    failing = Recorder(raise_in="on_before_optimizer_step", signal=error)
    bystander = Recorder(order=5)
    trainer = quick_trainer(callbacks=[failing, bystander])
    with pytest.raises(RuntimeError, match="boom") as caught:
        trainer.fit(digit_batches(20, 10))
    assert caught.value is error
    assert failing.calls[-1] == bystander.calls[-1] == "on_exception"
    assert "on_fit_end" not in bystander.calls


def test_a_failing_on_exception_does_not_hide_the_error(caplog: pytest.LogCaptureFixture) -> None:
    """A callback whose on_exception fails is logged; the original error still propagates."""

    class Broken(Callback):
        def on_exception(self, trainer: Trainer, state: TrainState, exc: BaseException) -> None:
            raise ValueError("cleanup failed")

    failing = Recorder(raise_in="on_batch_start", signal=KeyError("original"))
    with pytest.raises(KeyError, match="original"), caplog.at_level(logging.ERROR, "lenetish"):
        quick_trainer(callbacks=[Broken(), failing]).fit(digit_batches(10, 10))
    assert "Broken.on_exception failed" in caplog.text
    assert failing.calls[-1] == "on_exception"


def test_callbacks_run_by_order_and_stably() -> None:
    """Callbacks run sorted by order; equal orders keep the order they were given in."""
    log: list[str] = []

    class Named(Callback):
        def __init__(self, name: str, order: int) -> None:
            self.name, self.order = name, order

        def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
            log.append(self.name)

    callbacks = [Named("c", 5), Named("a", -1), Named("b1", 0), Named("b2", 0)]
    quick_trainer(callbacks=callbacks).fit(digit_batches(10, 10))
    assert log == ["a", "b1", "b2", "c"]


def test_per_fit_state_is_reset_by_a_new_fit() -> None:
    """A second fit without resume starts a fresh History."""
    trainer = quick_trainer(epochs=2)
    trainer.fit(digit_batches(20, 10))
    assert len(trainer.fit(digit_batches(20, 10))) == 2


def test_batch_end_output_is_detached_with_logits_and_targets() -> None:
    """on_batch_end gets the detached loss, the logits (B, 10) and the targets."""
    seen: list[BatchOutput] = []

    class Keep(Callback):
        def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
            seen.append(output)
            assert state.last_loss is output.loss

    quick_trainer(callbacks=[Keep()]).fit(digit_batches(20, 10))
    assert len(seen) == 2 and not seen[0].loss.requires_grad
    assert seen[0].logits.shape == (10, 10) and seen[0].targets.shape == (10,)


def test_state_tracks_steps_epochs_and_lr() -> None:
    """TrainState counts global steps and batches and carries the lr and elapsed time."""
    states: list[tuple[int, int, int, float]] = []

    class Watch(Callback):
        def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
            states.append((state.epoch, state.batch_index, state.global_step, state.lr))
            assert state.elapsed >= 0 and state.steps_per_epoch == 2

    quick_trainer(epochs=2, lr=0.01, callbacks=[Watch()]).fit(digit_batches(20, 10))
    assert states == [(0, 0, 1, 0.01), (0, 1, 2, 0.01), (1, 0, 3, 0.01), (1, 1, 4, 0.01)]


def test_subclass_seams_are_used() -> None:
    """Overridden training_step, validation_step and configure_optimizers are called."""
    calls: list[str] = []

    class Custom(Trainer):
        def configure_optimizers(self) -> torch.optim.Optimizer:
            calls.append("configure")
            return torch.optim.SGD(self.model.parameters(), lr=0.0)

        def training_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
            calls.append("train")
            return super().training_step(images, labels)

        def validation_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
            calls.append("val")
            return super().validation_step(images, labels)

    torch.manual_seed(0)
    trainer = Custom(MNISTConvNet(), device="cpu", epochs=1, progress=False)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.fit(digit_batches(20, 10), digit_batches(10, 10))
    # The first "val" is the sanity check of num_sanity_val_steps before the first epoch.
    assert calls == ["configure", "val", "train", "train", "val"]
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))


def test_optimizer_can_be_a_callable() -> None:
    """A callable optimizer receives the parameters and is used for the steps."""
    trainer = quick_trainer(optimizer=lambda params: torch.optim.RMSprop(params, lr=1e-3))
    trainer.fit(digit_batches(10, 10))
    assert isinstance(trainer.optimizer, torch.optim.RMSprop)


def test_sgd_uses_momentum_and_the_seed_lr() -> None:
    """optimizer='sgd' builds SGD with lr 0.1 and momentum 0.9 by default."""
    optimizer = quick_trainer(optimizer="sgd").configure_optimizers()
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.param_groups[0]["lr"] == 0.1
    assert optimizer.param_groups[0]["momentum"] == 0.9


@pytest.mark.parametrize(
    ("scheduler", "expected_lrs"),
    [
        ("step", [0.01, 0.007]),
        (lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1, 0.5), [0.01, 0.005]),
    ],
)
def test_epoch_schedulers_change_the_lr_each_epoch(
    scheduler: Any, expected_lrs: list[float]
) -> None:
    """'step' multiplies the lr by 0.7 per epoch; a callable scheduler is stepped per epoch."""
    trainer = quick_trainer(epochs=2, lr=0.01, scheduler=scheduler)
    history = trainer.fit(digit_batches(20, 10))
    assert history.column("lr") == pytest.approx(expected_lrs)


def test_onecycle_schedule_is_stepped_every_batch() -> None:
    """'onecycle' rises to lr and falls again within the run, one step per batch."""
    lrs: list[float] = []

    class Watch(Callback):
        def on_batch_start(self, trainer: Trainer, state: TrainState) -> None:
            assert trainer.optimizer is not None
            lrs.append(trainer.optimizer.param_groups[0]["lr"])

    quick_trainer(epochs=2, lr=0.01, scheduler="onecycle", callbacks=[Watch()]).fit(
        digit_batches(100, 10)
    )
    assert len(lrs) == 20 and len(set(lrs)) == 20  # a new lr before every batch
    peak = lrs.index(max(lrs))
    assert lrs[: peak + 1] == sorted(lrs[: peak + 1])  # rising to the peak...
    assert lrs[peak:] == sorted(lrs[peak:], reverse=True)  # ...then falling
    assert max(lrs) == pytest.approx(0.01, rel=0.05) and lrs[0] < 0.001 and lrs[-1] < 0.001


def test_onecycle_needs_a_sized_loader() -> None:
    """'onecycle' with a loader that has no len() raises InvalidArgumentError."""
    batches = digit_batches(10, 10)
    trainer = quick_trainer(scheduler="onecycle")
    with pytest.raises(InvalidArgumentError, match="onecycle' needs the number of batches"):
        trainer.fit(iter_only(batches))


class iter_only:
    """A re-iterable without len()."""

    def __init__(self, batches: list[tuple[Tensor, Tensor]]) -> None:
        self.batches = batches

    def __iter__(self) -> Any:
        return iter(self.batches)


def test_unsized_loader_trains() -> None:
    """A loader without len() still trains; steps_per_epoch is None."""
    history = quick_trainer(epochs=2).fit(iter_only(digit_batches(20, 10)))
    assert len(history) == 2


def test_accepts_a_plain_dataloader() -> None:
    """A torch DataLoader over a TensorDataset trains like a lenetish loader."""
    from torch.utils.data import DataLoader, TensorDataset

    images, labels = synthetic_digits(200)
    dataset = TensorDataset((images.float() / 255).unsqueeze(1), labels.long())
    trainer = quick_trainer(epochs=4, seed=0)
    history = trainer.fit(DataLoader(dataset, batch_size=50, shuffle=True))
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert history[-1]["loss"] < history[0]["loss"]
    assert evaluate(trainer.model, digit_batches()).accuracy > 0.9


def test_bf16_mixed_precision_trains_on_cpu() -> None:
    """precision='bf16-mixed' runs the forward pass under bfloat16 autocast on the CPU."""
    dtypes: list[torch.dtype] = []

    class Watch(Callback):
        def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
            dtypes.append(output.logits.dtype)

    quick_trainer(precision="bf16-mixed", callbacks=[Watch()]).fit(digit_batches(20, 10))
    assert dtypes == [torch.bfloat16, torch.bfloat16]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_fp16_mixed_needs_cuda() -> None:
    """precision='16-mixed' on the CPU raises a clear InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError, match=r"16-mixed' needs a CUDA device.*bf16-mixed"):
        quick_trainer(precision="16-mixed")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_device_without_gpu_is_refused() -> None:
    """device='cuda' on a machine without CUDA raises DeviceUnavailableError."""
    with pytest.raises(DeviceUnavailableError, match="no CUDA GPU"):
        Trainer(MNISTConvNet(), device="cuda")


def test_grad_clip_norm_bounds_the_gradient_norm() -> None:
    """With grad_clip_norm the gradients used by each step have at most that norm."""
    norms: list[float] = []

    class Watch(Callback):
        def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
            grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
            norms.append(
                float(
                    torch.linalg.vector_norm(
                        torch.stack([torch.linalg.vector_norm(g) for g in grads])
                    )
                )
            )

    quick_trainer(grad_clip_norm=0.01, callbacks=[Watch()]).fit(digit_batches(20, 10))
    assert max(norms) <= 0.01 + 1e-6


def test_deterministic_is_on_during_fit_and_restored_after() -> None:
    """deterministic=True turns on deterministic algorithms for the fit only."""
    flags: list[bool] = []

    class Watch(Callback):
        def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
            flags.append(torch.are_deterministic_algorithms_enabled())

    before = torch.are_deterministic_algorithms_enabled()
    quick_trainer(deterministic=True, callbacks=[Watch()]).fit(digit_batches(10, 10))
    assert flags == [True] and torch.are_deterministic_algorithms_enabled() == before


def test_seed_makes_runs_repeat() -> None:
    """Two fits with the same seed (dropout included) end with identical weights."""

    def run() -> list[Tensor]:
        torch.manual_seed(5)
        model = MNISTConvNet(dropout=0.5)
        Trainer(model, epochs=2, device="cpu", seed=9, progress=False).fit(digit_batches())
        return [p.detach().clone() for p in model.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(run(), run(), strict=True))


@pytest.mark.slow
def test_compile_trains_like_eager() -> None:
    """compile=True trains through torch.compile and gives the eager losses."""
    losses = []
    for compiled in (False, True):
        torch.manual_seed(0)
        trainer = Trainer(
            MNISTConvNet(), epochs=2, device="cpu", compile=compiled, seed=1, progress=False
        )
        losses.append(trainer.fit(digit_batches(100, 25)).column("loss"))
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"optimizer": "adagrad"}, "optimizer='adagrad' is not supported; use one of adam, sgd"),
        ({"lr": 0.0}, "lr must be a positive finite number, got 0.0"),
        ({"lr": float("nan")}, "lr must be a positive finite number, got nan"),
        ({"epochs": 0}, "epochs must be a positive integer, got 0"),
        ({"scheduler": "cosine"}, "scheduler='cosine' is not supported"),
        ({"precision": "64"}, "precision='64' is not supported; use one of auto, 32, bf16-mixed"),
        ({"grad_clip_norm": -1.0}, "grad_clip_norm must be a positive finite number"),
        ({"momentum": 1.5}, r"momentum must be in \[0, 1\)"),
        ({"callbacks": [object()]}, "callbacks must be lenetish.Callback instances"),
        ({"optimizer": lambda p: None, "lr": 0.1}, "lr is ignored when optimizer is a callable"),
        ({"device": "gpu"}, "device='gpu' is not a device"),
        ({"label_smoothing": 1.0}, r"label_smoothing must be in \[0, 1\), got 1.0"),
        ({"augment": "flip"}, "augment must be callable, got 'flip'"),
    ],
)
def test_invalid_settings_are_refused(options: dict[str, Any], message: str) -> None:
    """Each bad Trainer setting raises InvalidArgumentError naming the argument."""
    with pytest.raises(InvalidArgumentError, match=message):
        Trainer(MNISTConvNet(), **options)


def test_empty_validation_loader_is_refused() -> None:
    """A validation loader without samples raises InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError, match="validation loader yielded no samples"):
        quick_trainer().fit(digit_batches(10, 10), [])


def test_resume_into_another_architecture_names_the_layers(tmp_path: Path) -> None:
    """Resuming a checkpoint of another architecture raises CheckpointError naming layers."""
    trainer = quick_trainer(callbacks=[ModelCheckpoint(tmp_path)])
    trainer.fit(digit_batches(10, 10))
    other = Trainer(MNISTConvNet(hidden=16), device="cpu", progress=False)
    with pytest.raises(CheckpointError, match=r"does not fit this MNISTConvNet.*fc1.weight"):
        other.fit(digit_batches(10, 10), resume=tmp_path / "last.pt")


def test_resume_with_another_optimizer_is_refused(tmp_path: Path) -> None:
    """Resuming an Adam checkpoint with an SGD trainer raises CheckpointError naming both."""
    quick_trainer(callbacks=[ModelCheckpoint(tmp_path)]).fit(digit_batches(10, 10))
    with pytest.raises(CheckpointError, match="using Adam, but this one uses SGD"):
        quick_trainer(optimizer="sgd").fit(digit_batches(10, 10), resume=tmp_path / "last.pt")


@pytest.mark.slow
def test_resume_in_a_new_process_is_bit_identical(tmp_path: Path) -> None:
    """3 epochs straight equal 1 epoch, a checkpoint, and a new process resuming to 3."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert run_script(straight, "--epochs", "3").returncode == 0
    assert run_script(split, "--epochs", "3", "--stop-after-epoch", "1").returncode == 0
    assert len(History.from_json(split / "history.json")) == 1
    resumed = run_script(split, "--epochs", "3", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert weights_equal(straight / "final.safetensors", split / "final.safetensors")
    assert rows_without_seconds(straight / "history.json") == rows_without_seconds(
        split / "history.json"
    )


@pytest.mark.slow
def test_sigkill_in_epoch_two_then_resume_matches(tmp_path: Path) -> None:
    """A run killed by SIGKILL mid-epoch 2 and resumed ends with the uninterrupted weights."""
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    assert run_script(straight, "--epochs", "3").returncode == 0
    killed = run_script(crashed, "--epochs", "3", "--kill-at-step", "6")  # 4 batches/epoch
    assert killed.returncode == -9
    assert not (crashed / "final.safetensors").exists()
    resumed = run_script(crashed, "--epochs", "3", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert weights_equal(straight / "final.safetensors", crashed / "final.safetensors")


def test_seed_settings_learn_real_mnist_subset(real_mnist: Path) -> None:
    """The seed's settings (Adam, batch 200) pass 85% after one epoch on 6,000 real images."""
    loaders = make_loaders(real_mnist, download=False, subset=6_000, seed=0)
    torch.manual_seed(0)
    model = MNISTConvNet()
    Trainer(model, epochs=1, device="cpu", progress=False).fit(loaders.train)
    assert evaluate(model, loaders.test).accuracy > 0.85


def test_module_is_the_network_outside_a_distributed_fit() -> None:
    """In one process, trainer.module is the model and the trainer is the main process."""
    model = MNISTConvNet()
    trainer = Trainer(model, epochs=1, device="cpu", progress=False)
    trainer.fit(digit_batches(20, 10))
    assert trainer.module is model is trainer.model
    assert (trainer.world_size, trainer.is_main_process) == (1, True)


def test_each_fit_returns_a_new_history() -> None:
    """Two fits give two Histories; the first keeps its rows; trainer.history is the latest."""
    trainer = quick_trainer(epochs=2)
    first = trainer.fit(digit_batches(10, 10))
    second = trainer.fit(digit_batches(10, 10))
    assert first is not second and len(first) == len(second) == 2
    assert trainer.history is second


def test_a_history_passed_in_is_filled_and_returned() -> None:
    """A user's own History is the one every fit fills and returns."""
    mine = History()
    trainer = quick_trainer(callbacks=[mine])
    assert trainer.fit(digit_batches(10, 10)) is mine and len(mine) == 1


def test_the_optimizer_is_there_in_hooks_and_named_before_fit() -> None:
    """trainer.optimizer works inside hooks; before the first fit it raises NotFittedError."""
    trainer = quick_trainer()
    with pytest.raises(NotFittedError, match="exists once fit\\(\\) has started"):
        trainer.optimizer  # noqa: B018
    lrs: list[float] = []

    class HalveLr(Callback):
        def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
            for group in trainer.optimizer.param_groups:
                group["lr"] /= 2
            lrs.append(trainer.optimizer.param_groups[0]["lr"])

    trainer.callbacks.append(HalveLr())
    trainer.epochs = 2
    trainer.fit(digit_batches(10, 10))
    assert lrs == [5e-4, 2.5e-4]


def test_the_deprecated_criterion_warns_and_is_the_loss_the_fit_used() -> None:
    """trainer.criterion gives one FutureWarning naming compute_loss, then the fit's loss."""
    seen: list[object] = []

    class Read(Callback):
        def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
            with pytest.warns(FutureWarning):
                seen.append(trainer.criterion)

    trainer = quick_trainer(callbacks=[Read()])
    trainer.fit(digit_batches(10, 10))
    with pytest.warns(
        FutureWarning, match=r"Trainer.criterion is deprecated .* 0.3: call trainer.compute_loss"
    ) as caught:
        criterion = trainer.criterion
    assert len(caught) == 1 and criterion is seen[0]
    assert criterion.kind == "log_probabilities"  # what the fit detected on its batches
    outputs, targets = torch.log_softmax(torch.randn(4, 10), 1), torch.arange(4)
    assert torch.equal(criterion(outputs, targets), trainer.compute_loss(outputs, targets))


def test_the_deprecated_criterion_before_any_fit_raises_not_fitted() -> None:
    """Before the first fit there is no fit's loss: NotFittedError, after the FutureWarning."""
    trainer = quick_trainer()
    with (
        pytest.warns(FutureWarning, match="Trainer.criterion is deprecated"),
        pytest.raises(NotFittedError, match=r"trainer.criterion exists once fit\(\) has started"),
    ):
        trainer.criterion  # noqa: B018


def test_reduce_lr_on_plateau_through_scheduler_lowers_the_lr() -> None:
    """scheduler=lambda opt: ReduceLROnPlateau(opt, ...) is stepped with val_loss per epoch."""
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    class Plateau(Callback):  # a validation loss that never improves after epoch 1
        def on_validation_end(
            self, trainer: Trainer, state: TrainState, metrics: dict[str, float]
        ) -> None:
            metrics["val_loss"] = 1.0

    trainer = quick_trainer(
        epochs=4,
        scheduler=lambda opt: ReduceLROnPlateau(opt, factor=0.5, patience=1),
        callbacks=[Plateau()],
    )
    history = trainer.fit(digit_batches(10, 10), digit_batches(10))
    assert history.column("lr") == [1e-3, 1e-3, 1e-3, 5e-4]


def test_a_plateau_schedule_without_validation_fails_before_training() -> None:
    """A plateau scheduler watching val_loss in a fit without val= is refused up front."""
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    trainer = quick_trainer(scheduler=lambda opt: ReduceLROnPlateau(opt))
    with pytest.raises(InvalidArgumentError, match="ReduceLROnPlateau schedule watches 'val_loss'"):
        trainer.fit(digit_batches(10, 10))
    assert trainer.state.global_step == 0


def test_an_iterator_as_training_data_is_refused() -> None:
    """A generator would be used up after one epoch: fit refuses it up front."""
    with pytest.raises(InvalidArgumentError, match=r"train is an iterator .*iterated again"):
        quick_trainer(epochs=3).fit(batch for batch in digit_batches(20, 10))


def test_an_empty_training_loader_is_refused() -> None:
    """An epoch without a single batch is an error, not a row of nothing."""
    with pytest.raises(InvalidArgumentError, match="yielded no batches in epoch 1"):
        quick_trainer().fit([])


def test_a_dataloader_over_an_iterable_dataset_trains() -> None:
    """A DataLoader whose dataset has no length trains like any unsized iterable."""
    from torch.utils.data import DataLoader, IterableDataset

    class Stream(IterableDataset[tuple[Tensor, Tensor]]):
        def __iter__(self) -> Any:
            for images, labels in digit_batches(40, 1):
                yield images[0], labels[0]

    history = quick_trainer(epochs=2).fit(DataLoader(Stream(), batch_size=10))
    assert len(history) == 2


@pytest.mark.parametrize("dtype", [torch.int32, torch.uint8, torch.int16])
def test_integer_labels_of_any_width_train(dtype: torch.dtype) -> None:
    """int32/uint8 labels are class indices like int64 ones."""
    batches = [(images, labels.to(dtype)) for images, labels in digit_batches(20, 10)]
    assert len(quick_trainer().fit(batches)) == 1


def test_float_labels_are_refused_with_the_fix() -> None:
    """Float labels are named, with the conversion to make."""
    batches = [(images, labels.float()) for images, labels in digit_batches(20, 10)]
    with pytest.raises(InvalidArgumentError, match=r"labels must be integer class indices.*long"):
        quick_trainer().fit(batches)


class FlattenNet(torch.nn.Module):
    """A user's CNN that declares nothing and flattens with torch.flatten (logits)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 4, 3)
        self.conv2 = torch.nn.Conv2d(4, 8, 3)
        self.fc = torch.nn.Linear(8 * 24 * 24, 10)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, 10)."""
        return self.fc(torch.flatten(self.conv2(self.conv1(x).relu()), 1))


def _strides(model: torch.nn.Module) -> list[tuple[int, ...]]:
    return [tensor.stride() for tensor in [*model.parameters(), *model.buffers()]]


def test_the_blog_network_trains_under_the_defaults(caplog: pytest.LogCaptureFixture) -> None:
    """The blog's class (.view) trains channels-last through its reshape twin, said once."""
    model = BlogNet()
    with caplog.at_level(logging.INFO, logger="lenetish"):
        history = Trainer(model, epochs=2, device="cpu", progress=False).fit(digit_batches(64, 16))
    assert len(history) == 2
    said = [r.message for r in caplog.records if "trains channels-last" in r.message]
    assert len(said) == 1 and ".view run as .reshape" in said[0]


def test_channels_last_true_on_a_view_network_runs_its_reshape_twin() -> None:
    """channels_last=True on a model that flattens with .view trains through the twin."""
    trainer = Trainer(BlogNet(), epochs=1, device="cpu", channels_last=True, progress=False)
    assert len(trainer.fit(digit_batches(32, 16))) == 1


def test_a_user_network_that_passes_the_check_trains_channels_last(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A network declaring nothing runs channels-last once its outputs are checked unchanged."""
    seen: list[bool] = []

    class Layout(Callback):
        def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
            seen.append(
                trainer.module.conv2.weight.is_contiguous(memory_format=torch.channels_last)
            )

    with caplog.at_level(logging.INFO, logger="lenetish"):
        Trainer(FlattenNet(), epochs=1, device="cpu", callbacks=[Layout()], progress=False).fit(
            digit_batches(32, 16)
        )
    assert seen == [True, True]
    assert any("FlattenNet trains channels-last" in r.message for r in caplog.records)


@pytest.mark.parametrize("network", [MNISTConvNet, FlattenNet, BlogNet])
def test_a_fit_leaves_layout_mode_and_compilation_as_found(network: type[torch.nn.Module]) -> None:
    """After fit, every tensor has its old strides, the mode is the user's, compile is undone."""
    model = network().eval()
    strides = _strides(model)
    Trainer(model, epochs=1, device="cpu", compile=True, progress=False).fit(digit_batches(16, 16))
    assert _strides(model) == strides and not model.training
    assert compiled_forward(model) is None
    assert all(tensor.is_contiguous() for tensor in model.state_dict().values())


def test_a_channels_last_setting_that_is_not_a_choice_is_refused() -> None:
    """channels_last must be True, False or 'auto'."""
    with pytest.raises(InvalidArgumentError, match="channels_last must be True, False or 'auto'"):
        Trainer(MNISTConvNet(), channels_last="yes")  # type: ignore[arg-type]


def test_resuming_in_another_layout_trains_the_same_weights(tmp_path: Path) -> None:
    """A channels-last checkpoint resumed with channels_last=False matches a channels-last one."""
    batches = digit_batches(64, 16)
    torch.manual_seed(0)
    first = Trainer(MNISTConvNet(), epochs=1, device="cpu", channels_last=True, progress=False)
    first.fit(batches)
    first.save_checkpoint(tmp_path / "last.pt")
    finals = []
    for layout in (True, False):
        torch.manual_seed(1)
        model = MNISTConvNet()
        trainer = Trainer(model, epochs=2, device="cpu", channels_last=layout, progress=False)
        trainer.fit(batches, resume=tmp_path / "last.pt")
        finals.append(model.state_dict())
    for name, value in finals[0].items():
        assert torch.allclose(value, finals[1][name], atol=1e-5), name


def test_a_fit_on_a_lenetish_loader_leaves_the_model_knowing_its_data() -> None:
    """After fit on a Fashion-MNIST loader, predict uses Fashion's classes without dataset=."""
    fashion = DATASETS["fashion-mnist"]
    images, labels = synthetic_digits(32)
    loader = TensorLoader(images.float().unsqueeze(1) / 255, labels, batch_size=16, info=fashion)
    model = MNISTConvNet()
    trainer = Trainer(model, epochs=1, device="cpu", progress=False)
    trainer.fit(loader)
    assert trainer.data_info is fashion
    assert predict(model, torch.zeros(2, 28, 28)).classes == fashion.classes


def test_onecycle_peaks_at_an_overridden_optimizers_own_lr() -> None:
    """scheduler="onecycle" rises to the lr of the optimizer configure_optimizers returns."""
    seen: list[float] = []

    class SGDTrainer(Trainer):
        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.model.parameters(), lr=0.05)

    class Watch(Callback):
        def on_batch_start(self, trainer: Trainer, state: TrainState) -> None:
            seen.append(float(trainer.optimizer.param_groups[0]["lr"]))

    trainer = SGDTrainer(
        MNISTConvNet(), epochs=2, scheduler="onecycle", device="cpu", callbacks=[Watch()]
    )
    trainer.fit(digit_batches(160, 16))
    assert max(seen) == pytest.approx(0.05, rel=0.05)


def test_a_second_fit_of_a_fitting_trainer_is_refused() -> None:
    """fit() from another thread (or a hook) while a fit runs is TrainerBusyError."""
    started, release = threading.Event(), threading.Event()

    class Hold(Callback):
        def on_epoch_start(self, trainer: Trainer, state: TrainState) -> None:
            started.set()
            release.wait(timeout=30)

    trainer = Trainer(MNISTConvNet(), epochs=1, device="cpu", callbacks=[Hold()], progress=False)
    batches = digit_batches(16, 16)
    worker = threading.Thread(target=trainer.fit, args=(batches,))
    worker.start()
    try:
        assert started.wait(timeout=30)
        with pytest.raises(TrainerBusyError, match="already running a fit"):
            trainer.fit(batches)
    finally:
        release.set()
        worker.join()
    assert len(trainer.fit(batches)) == 1  # free again afterwards


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (torch.full((16,), 10), r"class indices 0\.\.9 .* holds 10"),
        (torch.full((16,), -100), r"class indices 0\.\.9 .* holds -100"),
        (torch.zeros(16, 10, dtype=torch.long), r"labels of shape \(16, 10\) do not fit"),
    ],
)
def test_labels_that_do_not_fit_the_outputs_are_a_named_error(
    labels: Tensor, expected: str
) -> None:
    """Out-of-range, ignore-index (-100) or one-hot labels mid-fit are InvalidArgumentError."""
    images = torch.randn(16, 1, 28, 28)
    good = digit_batches(16, 16)
    trainer = Trainer(MNISTConvNet(), epochs=1, device="cpu", progress=False)
    with pytest.raises(InvalidArgumentError, match=expected):
        trainer.fit([*good, (images, labels)])


class _LyingLoader:
    """Yields ``count`` batches of 4 while its ``__len__`` says ``claimed``."""

    def __init__(self, count: int, claimed: int) -> None:
        self.batches = digit_batches(4 * count, 4)
        self.claimed = claimed

    def __len__(self) -> int:
        return self.claimed

    def __iter__(self) -> Any:
        return iter(self.batches)


def test_a_loader_longer_than_its_len_with_onecycle_is_a_named_error() -> None:
    """A loader yielding more batches than len() says, with onecycle, names the loader's len."""
    trainer = Trainer(MNISTConvNet(), epochs=2, device="cpu", progress=False, scheduler="onecycle")
    with pytest.raises(InvalidArgumentError, match=r"more batches in epoch 1 than its len\(\)"):
        trainer.fit(_LyingLoader(count=5, claimed=2))


class _StopAfterEveryEpoch(Callback):
    """Requests a stop at every epoch's end, as an early stopping that always fires would."""

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        trainer.should_stop = True


@pytest.mark.parametrize(
    ("batches", "min_epochs", "stop_step"), [(3, 2, 6), (5, 2, 10), (3, 3, 9), (5, 1, 5)]
)
def test_min_epochs_min_steps_global_step(
    batches: int, min_epochs: int, stop_step: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Lightning: a stop requested after epoch 1 is held until min_epochs epochs, said once."""
    trainer = quick_trainer(epochs=5, min_epochs=min_epochs, callbacks=[_StopAfterEveryEpoch()])
    with caplog.at_level(logging.INFO, "lenetish"):
        history = trainer.fit(digit_batches(10 * batches, 10))
    assert len(history) == min_epochs and trainer.state.global_step == stop_step
    held = [r for r in caplog.records if "training continues" in r.getMessage()]
    assert len(held) == (min_epochs > 1)


def test_min_epochs_holds_a_stop_made_inside_an_epoch() -> None:
    """A StopTraining in the first batch trains on to the end of epoch min_epochs."""
    stopper = Recorder(raise_in="on_batch_end", signal=StopTraining)
    history = quick_trainer(epochs=4, min_epochs=2, callbacks=[stopper]).fit(digit_batches(30, 10))
    assert len(history) == 2


@pytest.mark.parametrize(("validation_freq", "expected_runs"), [(1, 4), (2, 2), (4, 1), (3, 1)])
def test_validation_freq(validation_freq: int, expected_runs: int) -> None:
    """Keras: with epochs=4, validation runs 4, 2, 1 times for validation_freq 1, 2, 4."""
    recorder = Recorder()
    trainer = quick_trainer(epochs=4, validation_freq=validation_freq, callbacks=[recorder])
    history = trainer.fit(digit_batches(10, 10), digit_batches(10, 10))
    assert recorder.calls.count("on_validation_end") == expected_runs
    assert len(history.column("val_loss")) == expected_runs
    assert [row["epoch"] for row in history if "val_loss" in row] == [
        epoch for epoch in range(1, 5) if epoch % validation_freq == 0
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_epochs": -1}, "min_epochs must be an integer >= 0, got -1"),
        ({"min_epochs": 2.0}, "min_epochs must be an integer >= 0, got 2.0"),
        ({"min_epochs": 6, "epochs": 5}, "min_epochs=6 is more than epochs=5"),
        ({"validation_freq": 0}, "validation_freq must be a positive integer, got 0"),
        ({"validation_freq": True}, "validation_freq must be a positive integer, got True"),
    ],
)
def test_min_epochs_and_validation_freq_are_checked(options: dict[str, Any], message: str) -> None:
    """min_epochs must be an integer in [0, epochs]; validation_freq a positive integer."""
    with pytest.raises(InvalidArgumentError, match=message):
        Trainer(MNISTConvNet(), **options)


def test_a_second_fit_on_other_data_records_that_data() -> None:
    """Fit on MNIST data, then on Fashion-MNIST data: the model carries Fashion's record."""
    images, labels = synthetic_digits(32)
    pixels = images.float().unsqueeze(1) / 255
    model = MNISTConvNet()
    trainer = Trainer(model, epochs=1, device="cpu", progress=False)
    for name in ("mnist", "fashion-mnist"):
        trainer.fit(TensorLoader(pixels, labels, batch_size=16, info=DATASETS[name]))
    assert trainer.data_info is DATASETS["fashion-mnist"]
    assert predict(model, torch.zeros(1, 28, 28)).classes == DATASETS["fashion-mnist"].classes
