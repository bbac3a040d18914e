"""Tests of lenetish.stack: ModelStack built, run, laid out and unstacked."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from lenetish import InvalidArgumentError, MNISTConvNet, ModelStack, load_weights, save_weights


def batch_norm_net() -> nn.Module:
    """A tiny network with batch norm (buffers that change in training)."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10)
    )


def test_outputs_hold_one_row_block_per_member() -> None:
    """A stack of k maps (N, 1, 28, 28) to (k, N, classes)."""
    assert ModelStack(MNISTConvNet, 3)(torch.zeros(5, 1, 28, 28)).shape == (3, 5, 10)


def test_member_i_is_the_network_built_under_seed_i() -> None:
    """Member i has the weights the factory gives under torch.manual_seed(seeds[i])."""
    stack = ModelStack(MNISTConvNet, 2, seeds=[7, 3])
    for seed, member in zip([7, 3], stack.unstack(), strict=True):
        torch.manual_seed(seed)
        reference = MNISTConvNet()
        for a, b in zip(member.parameters(), reference.parameters(), strict=True):
            assert torch.equal(a, b)


def test_default_seeds_count_from_zero() -> None:
    """seeds=None gives the members the seeds 0..k-1."""
    assert ModelStack(MNISTConvNet, 3).seeds == (0, 1, 2)


def test_building_leaves_the_global_random_state_alone() -> None:
    """Building a stack does not consume or reset the caller's random numbers."""
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    ModelStack(MNISTConvNet, 2)
    assert torch.equal(torch.rand(3), expected)


def test_each_member_runs_as_its_unstacked_network() -> None:
    """Slice i of the stack's output is member i's output run on its own."""
    stack, images = ModelStack(MNISTConvNet, 3), torch.randn(4, 1, 28, 28)
    outputs = stack(images)
    for index, member in enumerate(stack.unstack()):
        assert torch.equal(member(images), outputs[index])


@pytest.mark.parametrize("factory", [MNISTConvNet, batch_norm_net])
def test_vmap_and_loop_execution_give_the_same_outputs(factory: type[nn.Module]) -> None:
    """The vectorised and the member-by-member forward agree (batch norm included)."""
    images = torch.randn(6, 1, 28, 28)
    looped = ModelStack(factory, 3, execution="loop")
    vectorised = ModelStack(factory, 3, execution="vmap")
    torch.testing.assert_close(vectorised(images), looped(images))
    for name, buffer in looped.stacked.named_buffers():
        torch.testing.assert_close(vectorised.stacked.get_buffer(name), buffer)


def test_auto_execution_runs_members_in_turn_on_the_cpu() -> None:
    """On the CPU, execution='auto' runs the members one after another."""
    assert not ModelStack(MNISTConvNet, 2).vectorised


def test_batch_norm_statistics_are_kept_per_member() -> None:
    """Each member updates its own running statistics in training mode."""
    stack = ModelStack(batch_norm_net, 2)
    stack(torch.randn(8, 1, 28, 28))
    means = stack.stacked.get_buffer("1.running_mean")
    assert means.shape == (2, 4)
    assert not torch.equal(means[0], means[1])
    assert stack.stacked.get_buffer("1.num_batches_tracked").tolist() == [1, 1]


def test_channels_last_gives_each_slice_the_plain_networks_strides() -> None:
    """to(memory_format=channels_last) lays out every member's slice as a plain network's."""
    stack = ModelStack(MNISTConvNet, 2).to(memory_format=torch.channels_last)
    plain = MNISTConvNet().to(memory_format=torch.channels_last)
    for name, parameter in plain.named_parameters():
        assert stack.get_parameter(f"stacked.{name}")[1].stride() == parameter.stride()


def test_a_saved_member_loads_into_a_plain_network(tmp_path: Path) -> None:
    """save_weights of an unstacked member loads into a fresh MNISTConvNet."""
    member = ModelStack(MNISTConvNet, 2, seeds=[4, 5]).unstack()[1]
    save_weights(member, tmp_path / "member.safetensors")
    loaded = load_weights(MNISTConvNet(), tmp_path / "member.safetensors")
    for a, b in zip(loaded.parameters(), member.parameters(), strict=True):
        assert torch.equal(a, b)


def test_unstacked_members_are_copies() -> None:
    """Changing an unstacked member leaves the stack unchanged."""
    stack = ModelStack(MNISTConvNet, 2)
    with torch.no_grad():
        next(stack.unstack()[0].parameters()).zero_()
    assert next(stack.parameters())[0].abs().sum() > 0


def test_a_factory_that_is_not_callable_is_refused() -> None:
    """A factory must be callable."""
    with pytest.raises(InvalidArgumentError, match="factory must be a callable"):
        ModelStack(3, 2)  # type: ignore[arg-type]


def test_a_factory_that_builds_no_module_is_refused() -> None:
    """A factory must build an nn.Module."""
    with pytest.raises(InvalidArgumentError, match=r"factory must build a torch\.nn\.Module"):
        ModelStack(lambda: 3, 2)  # type: ignore[arg-type, return-value]


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_k_must_be_a_positive_integer(k: object) -> None:
    """The number of members is a positive integer."""
    with pytest.raises(InvalidArgumentError, match="k must be a positive integer"):
        ModelStack(MNISTConvNet, k)  # type: ignore[arg-type]


@pytest.mark.parametrize("seeds", [[0], [0, 1, 2], [0, "1"]])
def test_seeds_must_hold_one_integer_per_member(seeds: list[object]) -> None:
    """The seeds are exactly k integers."""
    with pytest.raises(InvalidArgumentError, match="seeds must hold k=2 integers"):
        ModelStack(MNISTConvNet, 2, seeds=seeds)  # type: ignore[arg-type]


def test_an_unknown_execution_is_refused() -> None:
    """The execution is 'auto', 'vmap' or 'loop'."""
    with pytest.raises(InvalidArgumentError, match="execution='fused' is not supported"):
        ModelStack(MNISTConvNet, 2, execution="fused")  # type: ignore[arg-type]


def test_members_of_different_shapes_are_refused() -> None:
    """The factory must build the same network every time."""
    widths = iter([10, 20])
    with pytest.raises(InvalidArgumentError, match="member 1 has other parameters"):
        ModelStack(lambda: MNISTConvNet(hidden=next(widths)), 2)


def test_an_unknown_inputs_mode_is_refused() -> None:
    """The inputs mode is 'shared' or 'split'."""
    with pytest.raises(InvalidArgumentError, match="inputs='own' is not supported"):
        ModelStack(MNISTConvNet, 2, inputs="own")  # type: ignore[arg-type]


@pytest.mark.parametrize("execution", ["loop", "vmap"])
def test_a_split_stack_runs_member_i_on_part_i(execution: str) -> None:
    """In training mode with inputs='split', member i sees the i-th part of the batch."""
    stack = ModelStack(MNISTConvNet, 2, inputs="split", execution=execution)  # type: ignore[arg-type]
    images = torch.randn(6, 1, 28, 28)
    outputs = stack(images)
    assert outputs.shape == (2, 3, 10)
    for index, member in enumerate(stack.unstack()):
        torch.testing.assert_close(member(images[3 * index : 3 * (index + 1)]), outputs[index])


def test_a_split_stack_runs_every_member_on_the_whole_batch_in_eval_mode() -> None:
    """In eval mode a split stack scores the whole batch with every member."""
    stack = ModelStack(MNISTConvNet, 2, inputs="split").eval()
    assert stack(torch.randn(6, 1, 28, 28)).shape == (2, 6, 10)
