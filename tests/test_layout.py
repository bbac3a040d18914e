"""Tests of lenetish.layout: channels-last verdicts, kept only while a model's structure is."""

from __future__ import annotations

import types

import pytest
import torch
from torch import Tensor, nn

import lenetish.layout
from lenetish import Trainer, predict
from lenetish.layout import layout_verdict, module_channels_last
from tests.training_helpers import digit_batches


class ViewFlatten(nn.Module):
    """Flattens with ``.view``, which channels-last activations cannot take."""

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C * H * W)."""
        return x.view(len(x), -1)


class SmallNet(nn.Module):
    """A user's network (declaring nothing) whose flatten is a submodule one may replace."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.flatten: nn.Module = nn.Flatten()
        self.fc = nn.Linear(4 * 26 * 26, 10)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, 10)."""
        return self.fc(self.flatten(self.conv(x).relu()))


def _breaks_channels_last(module: nn.Module, args: object, output: Tensor) -> Tensor:
    """A forward hook that reads its output through ``.view`` (fails channels-last)."""
    return output.view(len(output), -1).view(output.shape)


def _sample() -> Tensor:
    return torch.rand(4, 1, 28, 28)


def test_an_unchanged_model_is_checked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two verdicts on one unchanged model run the check once."""
    calls: list[nn.Module] = []
    check = lenetish.layout.channels_last_problem

    def counted(model: nn.Module, sample: Tensor, convert: lenetish.layout.Convert) -> str | None:
        calls.append(model)
        return check(model, sample, convert)

    monkeypatch.setattr(lenetish.layout, "channels_last_problem", counted)
    model = SmallNet()
    assert layout_verdict(model, _sample()) is None
    assert layout_verdict(model, _sample()) is None
    assert len(calls) == 1


def test_replacing_a_submodule_after_a_verdict_checks_again() -> None:
    """A .view flatten put in after a first check makes the verdict say channels-last fails."""
    model = SmallNet()
    assert layout_verdict(model, _sample(), module_channels_last) is None
    model.flatten = ViewFlatten()
    problem = layout_verdict(model, _sample(), module_channels_last)
    assert problem is not None and "view size is not compatible" in problem


def test_a_forward_hook_added_after_a_verdict_checks_again() -> None:
    """A forward hook registered after a first check is part of the next verdict."""
    model = SmallNet()
    assert layout_verdict(model, _sample()) is None
    handle = model.conv.register_forward_hook(_breaks_channels_last)
    assert layout_verdict(model, _sample()) is not None
    handle.remove()
    assert layout_verdict(model, _sample()) is None


def test_another_forward_assigned_after_a_verdict_checks_again() -> None:
    """Assigning the model another forward function is a change of its structure."""
    model = SmallNet()
    assert layout_verdict(model, _sample()) is None

    def viewing(self: SmallNet, x: Tensor) -> Tensor:
        return self.fc(self.conv(x).view(len(x), -1))

    model.forward = types.MethodType(viewing, model)  # type: ignore[method-assign]
    assert layout_verdict(model, _sample()) is not None


def test_predict_after_replacing_a_submodule_runs_the_new_structure() -> None:
    """predict, then a .view flatten swapped in: the next predict keeps the model's layout."""
    model = SmallNet()
    images = torch.rand(8, 28, 28)
    predict(model, images)  # channels-last: checked unchanged
    model.flatten = ViewFlatten()
    expected = predict(model, images, precision="32").probabilities
    assert torch.allclose(predict(model, images).probabilities, expected, atol=1e-4)


def test_a_fit_after_replacing_a_submodule_trains_the_new_structure() -> None:
    """A second fit after a .view flatten is swapped in trains, instead of failing channels-last."""
    model = SmallNet()
    batches = digit_batches(32, 16)
    Trainer(model, epochs=1, device="cpu", progress=False).fit(batches)
    model.flatten = ViewFlatten()
    assert len(Trainer(model, epochs=1, device="cpu", progress=False).fit(batches)) == 1
