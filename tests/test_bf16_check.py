"""Tests of lenetish._bf16_check: bfloat16 under precision="auto" only where it is harmless."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import Tensor, nn

from lenetish import BatchOutput, Callback, MNISTConvNet, Trainer, TrainState
from lenetish._bf16_check import bf16_problem


class Fragile(nn.Module):
    """Logits made of a large multiple of a small difference: bfloat16 rounding moves them."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(784, 10)
        self.second = nn.Linear(784, 10)
        with torch.no_grad():
            self.second.weight.copy_(self.first.weight * (1 + 1e-3))
            self.second.bias.copy_(self.first.bias)

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(1)
        return 3000.0 * (self.second(flat) - self.first(flat))


def _plain() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))


def _batches() -> list[tuple[Tensor, Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(16, 1, 28, 28, generator=generator), torch.randint(0, 10, (16,)))] * 2


class OutputDtypes(Callback):
    """Records the dtype of each training batch's outputs."""

    def __init__(self) -> None:
        self.dtypes: list[torch.dtype] = []

    def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
        self.dtypes.append(output.logits.dtype)


@pytest.fixture
def native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make precision='auto' resolve to bfloat16 on this CPU, as on one with AMX."""
    monkeypatch.setattr("lenetish._device.supports_bf16", lambda device: True)


def test_a_plain_float32_network_passes_the_check() -> None:
    """Linear layers and a ReLU: bfloat16 leaves the probabilities within the tolerance."""
    assert bf16_problem(_plain(), torch.randn(8, 1, 28, 28)) is None


def test_a_float64_network_is_kept_in_float32() -> None:
    """Parameters in float64 would be changed by autocast: refused, with the reason."""
    problem = bf16_problem(_plain().double(), torch.randn(8, 1, 28, 28).double())
    assert problem is not None and "torch.float64" in problem


def test_outputs_bfloat16_moves_are_refused() -> None:
    """A network whose outputs bfloat16 rounding changes fails the check, naming how much."""
    torch.manual_seed(0)
    problem = bf16_problem(Fragile(), torch.randn(16, 1, 28, 28))
    assert problem is not None and "probabilities moved by up to" in problem


def test_auto_trains_a_fragile_user_network_in_float32_and_says_so(
    native_bf16: None, caplog: pytest.LogCaptureFixture
) -> None:
    """precision='auto' on a bf16 device: the failed check means float32, one log line."""
    torch.manual_seed(0)
    dtypes = OutputDtypes()
    trainer = Trainer(Fragile(), epochs=1, device="cpu", precision="auto", progress=False,
                      callbacks=[dtypes])  # fmt: skip
    with caplog.at_level(logging.INFO, logger="lenetish"):
        trainer.fit(_batches())
    assert trainer.precision == "32" and dtypes.dtypes == [torch.float32] * 2
    lines = [r.getMessage() for r in caplog.records if "not bfloat16" in r.getMessage()]
    assert len(lines) == 1 and "Fragile trains in float32" in lines[0]


def test_auto_trains_a_safe_user_network_under_bfloat16(native_bf16: None) -> None:
    """A network that passes the check trains under bfloat16 autocast."""
    dtypes = OutputDtypes()
    trainer = Trainer(_plain(), epochs=1, device="cpu", precision="auto", progress=False,
                      callbacks=[dtypes])  # fmt: skip
    trainer.fit(_batches())
    assert trainer.precision == "bf16-mixed" and dtypes.dtypes == [torch.bfloat16] * 2


def test_lenetish_networks_and_an_explicit_bf16_are_not_checked(native_bf16: None) -> None:
    """MNISTConvNet declares its fast path; precision='bf16-mixed' is the user's own choice."""
    torch.manual_seed(0)
    declared = Trainer(MNISTConvNet(), epochs=1, device="cpu", precision="auto", progress=False)
    declared.fit(_batches())
    asked = Trainer(Fragile(), epochs=1, device="cpu", precision="bf16-mixed", progress=False)
    asked.fit(_batches())
    assert (declared.precision, asked.precision) == ("bf16-mixed", "bf16-mixed")


def test_the_check_changes_nothing_the_fit_computes(native_bf16: None) -> None:
    """A fit after the check is bit-identical to a fit asked for bfloat16 directly."""
    models = []
    for precision in ("auto", "bf16-mixed"):
        torch.manual_seed(0)
        model = _plain()
        Trainer(model, epochs=1, device="cpu", precision=precision, progress=False,
                seed=0).fit(_batches())  # fmt: skip
        models.append(model)
    assert all(
        torch.equal(a, b)
        for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True)
    )
