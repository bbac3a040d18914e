"""Tests of lenetish._reshape_twin: a .view network trains channels-last, left as it was."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lenetish import Trainer
from lenetish._reshape_twin import reshape_twin
from lenetish.errors import UnsupportedModelError
from lenetish.layout import compiled_forward
from tests.blog_net import Net as BlogNet
from tests.training_helpers import digit_batches


class DropoutByFlag(BlogNet):
    """The blog's network with dropout that reads ``self.training`` inside forward."""

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2, 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2, 2)
        x = F.dropout(x.view(-1, 5 * 5 * 48), 0.5, training=self.training)
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)


class Branching(BlogNet):
    """A forward whose Python branches on the data, which tracing cannot follow."""

    def forward(self, x: Tensor) -> Tensor:
        if x.sum() > 0:
            x = -x
        return super().forward(x)


def test_the_twin_gives_the_networks_outputs_and_shares_its_layers() -> None:
    """The blog's class: one view becomes reshape; same outputs; the same conv1 object."""
    model = BlogNet()
    twin, reason = reshape_twin(model)
    assert twin is not None and reason == "" and twin.views == 1
    images = torch.rand(4, 1, 28, 28)
    assert torch.equal(twin(images), model(images))
    assert twin.graph_module.conv1 is model.conv1


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (DropoutByFlag(), "differs between training and eval mode"),
        (Branching(), "torch.fx cannot trace it"),
        (nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), "no tensor .view call"),
    ],
)
def test_a_network_the_twin_cannot_copy_faithfully_gets_none(model: nn.Module, reason: str) -> None:
    """Mode-dependent or untraceable forwards, and ones without .view, get no twin."""
    twin, why = reshape_twin(model)
    assert twin is None and reason in why


def test_forward_hooks_or_compilation_mean_no_twin() -> None:
    """A hook on the network itself or Module.compile(): the twin would skip them."""
    hooked = BlogNet()
    hooked.register_forward_hook(lambda module, args, output: None)
    assert reshape_twin(hooked) == (None, "it has forward hooks of its own")
    compiled = BlogNet()
    compiled.compile()
    assert reshape_twin(compiled) == (None, "it is compiled")


def test_a_view_network_trains_channels_last_and_comes_back_unchanged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A fit through the twin: one log line; the model's class, forward, keys, layout, mode."""
    torch.manual_seed(0)
    model = BlogNet().train()
    keys, strides = list(model.state_dict()), [p.stride() for p in model.parameters()]
    with caplog.at_level(logging.INFO, logger="lenetish"):
        Trainer(model, epochs=1, device="cpu", progress=False).fit(digit_batches(64, 16))
    said = [r.message for r in caplog.records if "traced copy of its forward" in r.message]
    assert len(said) == 1 and ".view call run as .reshape" in said[0]
    assert type(model) is BlogNet and compiled_forward(model) is None
    assert list(model.state_dict()) == keys
    assert [p.stride() for p in model.parameters()] == strides and model.training


def test_training_through_the_twin_matches_the_networks_own_layout() -> None:
    """The same weights, within float rounding, as a fit in the model's own layout."""
    torch.manual_seed(0)
    twin_fit = BlogNet()
    own_fit = copy.deepcopy(twin_fit)
    batches = digit_batches(128, 32)
    Trainer(twin_fit, epochs=2, device="cpu", progress=False).fit(batches)
    Trainer(own_fit, epochs=2, device="cpu", progress=False, channels_last=False).fit(batches)
    for ours, theirs in zip(twin_fit.parameters(), own_fit.parameters(), strict=True):
        assert torch.allclose(ours, theirs, atol=1e-4)


def test_channels_last_true_on_a_network_without_a_twin_is_a_named_error() -> None:
    """channels_last=True on a .view network the twin cannot copy says to use torch.flatten."""
    trainer = Trainer(DropoutByFlag(), epochs=1, device="cpu", channels_last=True, progress=False)
    with pytest.raises(UnsupportedModelError, match=r"cannot run channels-last.*torch\.flatten"):
        trainer.fit(digit_batches(32, 16))
