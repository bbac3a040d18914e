"""Tests of lenetish._device: device resolution and seeding."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from lenetish import (
    Callback,
    DeviceUnavailableError,
    InvalidArgumentError,
    Trainer,
    TrainState,
    resolve_device,
    seed_everything,
)
from lenetish._device import deterministic_algorithms
from tests.training_helpers import digit_batches, quick_trainer


def test_auto_picks_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """'auto' prefers CUDA, then MPS, then the CPU."""
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("lenetish._device._mps_available", lambda: True)
    assert resolve_device(None) == torch.device("mps")
    monkeypatch.setattr("lenetish._device._mps_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


def test_explicit_cpu_is_returned() -> None:
    """An explicit 'cpu' or torch.device is passed through."""
    assert resolve_device("cpu") == resolve_device(torch.device("cpu")) == torch.device("cpu")


def test_unknown_device_name_is_refused() -> None:
    """A string torch cannot parse raises InvalidArgumentError listing the choices."""
    with pytest.raises(InvalidArgumentError, match="device='gpu' is not a device; use one of"):
        resolve_device("gpu")


def test_unsupported_device_type_is_refused() -> None:
    """A device type torch knows but lenetish does not support is refused."""
    with pytest.raises(InvalidArgumentError, match="device='meta' is a device type lenetish"):
        resolve_device("meta")


def test_cuda_without_gpu_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA asked for on a machine without it raises DeviceUnavailableError."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceUnavailableError, match="asks for CUDA but torch sees no CUDA GPU"):
        resolve_device("cuda")


def test_cuda_index_beyond_count_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU index the machine does not have is refused with the GPU count."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(DeviceUnavailableError, match="asks for GPU 3 but this machine has 1"):
        resolve_device("cuda:3")


def test_mps_without_apple_gpu_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """MPS asked for where it is unavailable raises DeviceUnavailableError."""
    monkeypatch.setattr("lenetish._device._mps_available", lambda: False)
    with pytest.raises(DeviceUnavailableError, match="Apple MPS, which is not available"):
        resolve_device("mps")


def test_seed_everything_repeats_every_generator() -> None:
    """The same seed replays Python's, NumPy's and torch's random streams."""

    def draw() -> tuple[float, float, list[float]]:
        return random.random(), float(np.random.rand()), torch.rand(3).tolist()

    seed_everything(123)
    first = draw()
    seed_everything(123)
    assert draw() == first


def test_cuda_under_torchrun_means_this_process_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """With LOCAL_RANK set, 'auto' and 'cuda' pick GPU LOCAL_RANK; an explicit index wins."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 2)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    assert resolve_device("cpu") == torch.device("cpu")


def test_local_rank_beyond_the_gpus_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """More processes per machine than GPUs is reported with what to change."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "3")
    with pytest.raises(DeviceUnavailableError, match="LOCAL_RANK=3 asks for GPU 3 but this"):
        resolve_device("cuda")


def test_lightning_deterministic_warn_turns_on_warn_only_for_the_fit() -> None:
    """Trainer(deterministic='warn') is use_deterministic_algorithms(True, warn_only=True)."""
    flags: list[tuple[bool, bool]] = []

    class Watch(Callback):
        def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
            flags.append(
                (
                    torch.are_deterministic_algorithms_enabled(),
                    torch.is_deterministic_algorithms_warn_only_enabled(),
                )
            )

    before = torch.is_deterministic_algorithms_warn_only_enabled()
    quick_trainer(deterministic="warn", callbacks=[Watch()]).fit(digit_batches(10, 10))
    assert flags == [(True, True)]
    assert torch.is_deterministic_algorithms_warn_only_enabled() == before


def test_deterministic_algorithms_restores_a_callers_warn_only() -> None:
    """Leaving deterministic_algorithms(True) puts back warn_only=True set before it."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with deterministic_algorithms(True):
            assert not torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(previous)


def test_a_deterministic_setting_other_than_true_false_or_warn_is_refused() -> None:
    """Trainer(deterministic='strict') names the three settings instead of meaning True."""
    with pytest.raises(
        InvalidArgumentError, match="deterministic must be True, False or 'warn', got 'strict'"
    ):
        quick_trainer(deterministic="strict")
