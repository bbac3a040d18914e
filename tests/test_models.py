"""Tests of lenetish.models: the seed network, its options and its input checks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings

from lenetish import InputShapeError, InvalidArgumentError, MNISTConvNet
from tests.strategies import batch_sizes


def test_default_network_has_the_seed_parameter_count() -> None:
    """The default network has exactly the seed's 252,866 parameters."""
    assert sum(p.numel() for p in MNISTConvNet().parameters()) == 252_866


def test_default_network_has_the_seed_layers() -> None:
    """The layers have the seed's shapes: 1->24->48 3x3 convolutions, 1200->200->10."""
    model = MNISTConvNet()
    assert tuple(model.conv1.weight.shape) == (24, 1, 3, 3)
    assert tuple(model.conv2.weight.shape) == (48, 24, 3, 3)
    assert tuple(model.fc1.weight.shape) == (200, 1200)
    assert tuple(model.fc2.weight.shape) == (10, 200)


def test_output_is_log_probabilities() -> None:
    """Outputs are non-positive and exponentiate to rows that sum to one."""
    output = MNISTConvNet()(torch.randn(3, 1, 28, 28))
    assert (output <= 0).all()
    torch.testing.assert_close(output.exp().sum(dim=1), torch.ones(3))


@settings(max_examples=15, deadline=None)
@given(batch_size=batch_sizes)
def test_output_shape_and_normalisation_for_any_batch_size(batch_size: int) -> None:
    """For any batch size the output is (N, 10), finite, and each row's exp sums to 1."""
    torch.manual_seed(batch_size)
    output = MNISTConvNet().eval()(torch.randn(batch_size, 1, 28, 28))
    assert output.shape == (batch_size, 10)
    assert torch.isfinite(output).all()
    assert torch.allclose(output.exp().sum(dim=1), torch.ones(batch_size), atol=1e-5)


@settings(max_examples=10, deadline=None)
@given(batch_size=batch_sizes)
def test_eval_output_does_not_depend_on_the_batch(batch_size: int) -> None:
    """In eval mode a sample's output is the same alone as inside any batch."""
    torch.manual_seed(0)
    model = MNISTConvNet(dropout=0.5).eval()
    batch = torch.randn(batch_size, 1, 28, 28)
    alone = model(batch[-1:])
    torch.testing.assert_close(model(batch)[-1:], alone, rtol=1e-4, atol=1e-5)


def test_keyword_options_change_the_widths() -> None:
    """Channel widths, hidden size and class count are keyword options."""
    model = MNISTConvNet(conv1_channels=8, conv2_channels=16, hidden=32, num_classes=5)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 5)
    assert tuple(model.fc1.weight.shape) == (32, 16 * 5 * 5)


def test_dropout_adds_no_parameters_and_acts_in_training() -> None:
    """Dropout keeps the parameter count and makes training-mode outputs random."""
    model = MNISTConvNet(dropout=0.5)
    assert sum(p.numel() for p in model.parameters()) == 252_866
    images = torch.randn(4, 1, 28, 28)
    assert not torch.equal(model.train()(images), model(images))


@pytest.mark.parametrize("shape", [(28, 28), (1, 28, 28), (2, 3, 28, 28), (2, 1, 32, 32)])
def test_wrong_input_shape_names_expected_and_received(shape: tuple[int, ...]) -> None:
    """A wrong input shape raises InputShapeError naming both shapes."""
    expected = r"expected a batch of shape \(N, 1, 28, 28\), got " + str(shape).replace(
        "(", r"\("
    ).replace(")", r"\)")
    with pytest.raises(InputShapeError, match=expected):
        MNISTConvNet()(torch.zeros(shape))


@pytest.mark.parametrize("name", ["conv1_channels", "conv2_channels", "hidden", "num_classes"])
def test_non_positive_width_is_refused(name: str) -> None:
    """A width below one raises InvalidArgumentError naming the option."""
    with pytest.raises(InvalidArgumentError, match=f"{name} must be a positive integer, got 0"):
        MNISTConvNet(**{name: 0})


@pytest.mark.parametrize("dropout", [-0.1, 1.0])
def test_dropout_outside_unit_interval_is_refused(dropout: float) -> None:
    """A dropout probability outside [0, 1) raises InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError, match=r"dropout must be in \[0, 1\)"):
        MNISTConvNet(dropout=dropout)
