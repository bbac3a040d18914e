"""Tests of lenetish.inference: how evaluate and predict run models, and what they restore."""

from __future__ import annotations

import pytest
import torch

from lenetish import InvalidArgumentError, MNISTConvNet
from lenetish.inference import as_model_list, inference, plan_inference, tta_views

CPU = torch.device("cpu")


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


def test_weights_are_channels_last_inside_and_restored_after() -> None:
    """Inside, conv weights are channels-last; after, the very same storage and strides."""
    model = MNISTConvNet().train()
    before = [(parameter.data_ptr(), parameter.stride()) for parameter in model.parameters()]
    with inference([model], plan_inference(CPU, "bf16-mixed")):
        conv = next(p for p in model.parameters() if p.dim() == 4)
        assert conv.is_contiguous(memory_format=torch.channels_last)
        assert not model.training
    assert [(p.data_ptr(), p.stride()) for p in model.parameters()] == before
    assert model.training


def test_a_one_channel_first_convolution_gives_channels_last_output() -> None:
    """Inside, even conv1 (one input channel, ambiguous strides) yields channels-last output."""
    model = MNISTConvNet()
    with inference([model], plan_inference(CPU, "auto")):
        output = model.conv1(torch.zeros(2, 1, 28, 28))
    assert output.stride()[1] == 1  # channels are the innermost dimension


def test_weights_are_restored_when_the_block_raises() -> None:
    """An error inside the block still restores the layout and the mode."""
    model = MNISTConvNet().train()
    with pytest.raises(RuntimeError, match="boom"), inference([model], plan_inference(CPU, "auto")):
        raise RuntimeError("boom")
    assert all(p.is_contiguous() for p in model.parameters()) and model.training


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
