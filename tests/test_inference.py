"""Tests of inference: how evaluate and predict run models, and what they restore."""

from __future__ import annotations

import copy
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch import Tensor, nn

from lenetish import InvalidArgumentError, MNISTConvNet, predict
from lenetish._device import resolve_precision
from lenetish.evaluation.inference import as_model_list, inference, plan_inference, tta_views
from lenetish.layout import compiled_forward
from tests.blog_net import MemoryOrderNet, Net

CPU = torch.device("cpu")


class FlattenNet(nn.Module):
    """A user's network (not declaring lenetish_fast_path) that flattens with torch.flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.conv2 = nn.Conv2d(4, 8, 3)
        self.fc = nn.Linear(8 * 24 * 24, 10)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, 10)."""
        return self.fc(torch.flatten(self.conv2(self.conv1(x).relu()), 1))


def test_auto_on_the_cpu_uses_channels_last_and_cache_sized_batches() -> None:
    """precision="auto" on the CPU plans channels-last weights and batches of 512."""
    plan = plan_inference(CPU, "auto")
    assert plan.channels_last and plan.batch_size == 512
    assert plan.precision in ("32", "bf16-mixed")


def test_precision_32_is_the_plain_path() -> None:
    """precision="32" keeps the NCHW fp32 path of earlier versions."""
    plan = plan_inference(CPU, "32")
    assert (plan.precision, plan.channels_last) == ("32", False)


def test_a_given_batch_size_is_kept() -> None:
    """An explicit batch size wins over the device's default."""
    assert plan_inference(CPU, "auto", 100).batch_size == 100


def test_half_precision_off_cuda_is_refused() -> None:
    """16-mixed needs CUDA, as in the Trainer."""
    with pytest.raises(InvalidArgumentError, match="16-mixed' needs a CUDA device"):
        plan_inference(CPU, "16-mixed")


def test_the_models_run_as_private_copies_and_stay_untouched() -> None:
    """Inside, eval-mode channels-last copies run; the caller's model never changes."""
    model = MNISTConvNet().train()
    before = [(parameter.data_ptr(), parameter.stride()) for parameter in model.parameters()]
    with inference([model], plan_inference(CPU, "bf16-mixed")) as (runner,):
        conv = next(p for p in runner.parameters() if p.dim() == 4)
        assert conv.is_contiguous(memory_format=torch.channels_last)
        assert runner is not model and not runner.training
        assert [(p.data_ptr(), p.stride()) for p in model.parameters()] == before
        assert model.training
    assert [(p.data_ptr(), p.stride()) for p in model.parameters()] == before


def test_a_one_channel_first_convolution_gives_channels_last_output() -> None:
    """Inside, even conv1 (one input channel, ambiguous strides) yields channels-last output."""
    with inference([MNISTConvNet()], plan_inference(CPU, "auto")) as (runner,):
        output = runner.conv1(torch.zeros(2, 1, 28, 28))  # type: ignore[operator]
    assert output.stride()[1] == 1  # channels are the innermost dimension


def test_the_callers_model_is_untouched_when_the_block_raises() -> None:
    """An error inside the block leaves the caller's model in its layout and mode."""
    model = MNISTConvNet().train()
    with pytest.raises(RuntimeError, match="boom"), inference([model], plan_inference(CPU, "auto")):
        raise RuntimeError("boom")
    assert all(p.is_contiguous() for p in model.parameters()) and model.training


def test_a_view_model_runs_channels_last_through_its_reshape_twin(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A .view network's private copy runs channels-last via its twin, said once; same outputs."""
    model = Net().eval()
    sample = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        expected = model(sample)
    with caplog.at_level(logging.INFO, logger="lenetish"):
        for _ in range(2):
            plan = plan_inference(CPU, "auto", models=[model])  # float32: undeclared
            with inference([model], plan, sample) as (runner,):
                conv = next(p for p in runner.parameters() if p.dim() == 4 and p.shape[1] > 1)
                assert conv.is_contiguous(memory_format=torch.channels_last)
                assert torch.allclose(runner(sample), expected, atol=1e-4)
    said = [r.message for r in caplog.records if ".view run as .reshape" in r.message]
    assert len(said) == 1 and all(p.is_contiguous() for p in model.parameters())


def test_a_model_without_a_twin_keeps_its_own_layout_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A network reading memory order (no twin helps) runs contiguous, said once, with why."""
    model = MemoryOrderNet()
    sample = torch.rand(4, 1, 28, 28)
    with (
        caplog.at_level(logging.INFO, logger="lenetish"),
        inference([model], plan_inference(CPU, "auto"), sample) as (runner,),
    ):
        assert all(p.is_contiguous() for p in runner.parameters())
        runner(sample)
    reasons = [r.message for r in caplog.records if "keeps its own layout" in r.message]
    assert len(reasons) == 1 and "its outputs change channels-last" in reasons[0]


def test_a_checked_user_model_gets_channels_last() -> None:
    """A user's network with torch.flatten passes the check and runs channels-last."""
    model = FlattenNet()
    with inference([model], plan_inference(CPU, "auto"), torch.rand(4, 1, 28, 28)) as (runner,):
        conv = next(p for p in runner.parameters() if p.dim() == 4 and p.shape[1] > 1)
        assert conv.is_contiguous(memory_format=torch.channels_last)


def test_auto_runs_an_undeclared_model_in_float32(caplog: pytest.LogCaptureFixture) -> None:
    """precision="auto" uses bf16 only for declared networks; others get fp32 and a log line."""
    with caplog.at_level(logging.INFO, logger="lenetish"):
        plan = plan_inference(CPU, "auto", models=[FlattenNet()])
    assert plan.precision == "32"
    if resolve_precision("auto", CPU) == "bf16-mixed":
        assert any("runs in float32" in record.message for record in caplog.records)
    assert plan_inference(CPU, "bf16-mixed", models=[FlattenNet()]).precision == "bf16-mixed"


def test_a_compiled_models_copy_runs_its_own_weights() -> None:
    """Module.compile() points at the original module: the copy drops it and runs eagerly."""
    model = FlattenNet()
    model.compile()
    with inference([model], plan_inference(CPU, "32")) as (runner,):
        assert compiled_forward(runner) is None
        with torch.no_grad():
            for parameter in runner.parameters():
                parameter.zero_()
        assert torch.equal(runner(torch.rand(2, 1, 28, 28)), torch.zeros(2, 10))
    assert compiled_forward(model) is not None


def test_eight_threads_predicting_with_one_model_get_the_single_threaded_result() -> None:
    """Predict from 8 threads on a train-mode dropout model: eval results, model left training."""
    torch.manual_seed(0)
    model = MNISTConvNet(dropout=0.5).train()
    images = torch.rand(64, 28, 28)
    expected = predict(copy.deepcopy(model).eval(), images, precision="32").probabilities
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: predict(model, images, precision="32"), range(16)))
    assert all(torch.equal(result.probabilities, expected) for result in results)
    assert model.training


def test_tta_gives_the_batch_and_four_one_pixel_shifts() -> None:
    """tta_views: the batch alone, or it and four shifted copies, each of the same shape."""
    images = torch.arange(2 * 28 * 28, dtype=torch.float32).reshape(2, 1, 28, 28)
    assert len(tta_views(images, False)) == 1
    views = tta_views(images, True)
    assert len(views) == 5 and all(view.shape == images.shape for view in views)
    assert torch.equal(views[1][:, :, 0], images[:, :, 1])  # rolled up by one row


def test_something_that_is_not_a_model_is_refused() -> None:
    """A list holding a non-module is a named error."""
    with pytest.raises(InvalidArgumentError, match=r"pass a torch\.nn\.Module"):
        as_model_list([MNISTConvNet(), "model.pt"])  # type: ignore[list-item]
