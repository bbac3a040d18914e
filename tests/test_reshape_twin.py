"""Tests of lenetish._reshape_twin: a .view network runs channels-last, left as it was."""

from __future__ import annotations

import copy
import logging
import threading

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from lenetish import Trainer, predict
from lenetish._reshape_twin import ReshapeTwin, install_twin
from lenetish.layout import compiled_forward
from tests.blog_net import MemoryOrderNet
from tests.blog_net import Net as BlogNet
from tests.training_helpers import digit_batches


class DropoutByFlag(BlogNet):
    """The blog's network with dropout that reads ``self.training`` inside forward."""

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2, 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2, 2)
        x = F.dropout(x.view(-1, 5 * 5 * 48), 0.5, training=self.training)
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)


def _channels_last(images: Tensor) -> Tensor:
    return images.contiguous(memory_format=torch.channels_last)


def test_the_twin_runs_view_as_reshape_on_channels_last_activations() -> None:
    """The blog's class, laid out channels-last, gives its own layout's outputs via the twin."""
    model = BlogNet().eval()
    images = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        expected = model(images)
        laid_out = copy.deepcopy(model).to(memory_format=torch.channels_last)
        got = ReshapeTwin(laid_out).forward(_channels_last(images))
    assert torch.allclose(got, expected, atol=1e-5)


def test_the_twin_leaves_other_threads_views_alone() -> None:
    """While one thread runs the twin, another thread's .view still raises as it should."""
    inside, release, seen = threading.Event(), threading.Event(), []

    class Waits(BlogNet):
        def forward(self, x: Tensor) -> Tensor:
            inside.set()
            release.wait(10)
            return super().forward(x)

    model = Waits().to(memory_format=torch.channels_last)
    runner = threading.Thread(
        target=lambda: ReshapeTwin(model).forward(_channels_last(torch.rand(2, 1, 28, 28)))
    )
    runner.start()
    inside.wait(10)
    try:
        _channels_last(torch.rand(2, 4, 3, 3)).view(2, -1)
    except RuntimeError as exc:
        seen.append(str(exc))
    release.set()
    runner.join(10)
    assert seen and "view size is not compatible" in seen[0]


def test_a_compiled_network_gets_no_twin() -> None:
    """Module.compile(): the twin would bypass the compiled call, so it is refused."""
    compiled = BlogNet()
    compiled.compile()
    with pytest.raises(RuntimeError, match="it is compiled"):
        install_twin(compiled)


def test_a_view_network_trains_channels_last_and_comes_back_unchanged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A fit through the twin: one log line; the model's class, call, keys, layout, mode."""
    torch.manual_seed(0)
    model = BlogNet().train()
    keys, strides = list(model.state_dict()), [p.stride() for p in model.parameters()]
    with caplog.at_level(logging.INFO, logger="lenetish"):
        Trainer(model, epochs=1, device="cpu", progress=False).fit(digit_batches(64, 16))
    said = [r.message for r in caplog.records if "trains channels-last" in r.message]
    assert len(said) == 1 and ".view run as .reshape" in said[0]
    assert type(model) is BlogNet and compiled_forward(model) is None
    assert list(model.state_dict()) == keys
    assert [p.stride() for p in model.parameters()] == strides and model.training


def test_a_forward_reading_self_training_trains_through_the_twin() -> None:
    """Dropout by self.training runs as written (nothing is traced): it trains channels-last."""
    seen: list[bool] = []
    model = DropoutByFlag()
    model.register_forward_pre_hook(
        lambda module, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    Trainer(model, epochs=1, device="cpu", progress=False).fit(digit_batches(32, 16))
    assert seen[-1] is True  # the hook ran (the twin runs the network's own call)


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


def test_a_network_whose_outputs_change_channels_last_keeps_its_layout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A forward reading memory order fails the check: own layout, said in one line."""
    with caplog.at_level(logging.INFO, logger="lenetish"):
        Trainer(MemoryOrderNet(), epochs=1, device="cpu", progress=False).fit(digit_batches(32, 16))
    said = [r.message for r in caplog.records if "trains in its own layout" in r.message]
    assert len(said) == 1


def test_predict_runs_a_view_network_channels_last_with_its_own_results() -> None:
    """Predict on the blog's class: the twin's labels equal the plain float32 run's."""
    model = BlogNet().eval()
    pixels = torch.randint(0, 256, (64, 28, 28), dtype=torch.uint8)
    plain = predict(model, pixels, precision="32")
    fast = predict(model, pixels)  # "auto": channels-last through the twin, float32
    assert torch.equal(plain.labels, fast.labels)
    assert torch.allclose(plain.probabilities, fast.probabilities, atol=1e-4)
    assert compiled_forward(model) is None
