"""Tests of lenetish.data.augment: RandomAffine on whole batches."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lenetish import (
    BatchOutput,
    Callback,
    InvalidArgumentError,
    RandomAffine,
    Trainer,
    TrainState,
)
from tests.strategies import seeds
from tests.training_helpers import digit_batches, quick_trainer


@settings(max_examples=20, deadline=None)
@given(count=st.integers(1, 16), seed=seeds)
def test_identity_parameters_leave_images_unchanged(count: int, seed: int) -> None:
    """No rotation, no zoom and no shift give back the same images."""
    images = torch.rand(count, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    augment = RandomAffine(degrees=0, scale=(1.0, 1.0), translate=0.0)
    torch.testing.assert_close(augment(images), images, atol=1e-5, rtol=0)


@settings(max_examples=20, deadline=None)
@given(count=st.integers(1, 16), dtype=st.sampled_from([torch.float32, torch.bfloat16]))
def test_shape_and_dtype_are_kept(count: int, dtype: torch.dtype) -> None:
    """The output has the input's shape, dtype and memory format."""
    images = torch.rand(count, 1, 28, 28).to(dtype).contiguous(memory_format=torch.channels_last)
    moved = RandomAffine()(images)
    assert moved.shape == images.shape and moved.dtype == dtype
    assert moved.is_contiguous(memory_format=torch.channels_last)


@settings(max_examples=10, deadline=None)
@given(seed=seeds)
def test_same_seed_same_output(seed: int) -> None:
    """Two augmenters with equally seeded generators transform a batch identically."""
    images = torch.rand(8, 1, 28, 28)
    first = RandomAffine(generator=torch.Generator().manual_seed(seed))(images)
    second = RandomAffine(generator=torch.Generator().manual_seed(seed))(images)
    assert torch.equal(first, second)
    assert not torch.equal(first, images)


@settings(max_examples=10, deadline=None)
@given(seed=seeds)
def test_elastic_distortion_is_seeded(seed: int) -> None:
    """With elastic distortion on, equal seeds still give equal outputs."""
    images = torch.rand(8, 1, 28, 28)
    options = {"degrees": 0.0, "scale": (1.0, 1.0), "translate": 0.0, "elastic_alpha": 34.0}
    first = RandomAffine(**options, generator=torch.Generator().manual_seed(seed))(images)
    second = RandomAffine(**options, generator=torch.Generator().manual_seed(seed))(images)
    assert torch.equal(first, second)
    assert not torch.equal(first, images)


@settings(max_examples=10, deadline=None)
@given(seed=seeds, alpha=st.floats(0.5, 50.0))
def test_elastic_displacements_scale_with_alpha(seed: int, alpha: float) -> None:
    """The displacement field is proportional to elastic_alpha for the same random draw."""
    images = torch.zeros(4, 1, 28, 28)
    unit = RandomAffine(elastic_alpha=1.0, generator=torch.Generator().manual_seed(seed))
    scaled = RandomAffine(elastic_alpha=alpha, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(
        scaled.displacements(images), alpha * unit.displacements(images), rtol=1e-5, atol=1e-7
    )


@settings(max_examples=10, deadline=None)
@given(seed=seeds, sigma=st.floats(1.0, 8.0))
def test_elastic_displacements_are_smooth(seed: int, sigma: float) -> None:
    """Neighbouring pixels move alike: the field varies far less than raw per-pixel noise."""
    images = torch.zeros(2, 1, 28, 28)
    augment = RandomAffine(
        elastic_alpha=1.0, elastic_sigma=sigma, generator=torch.Generator().manual_seed(seed)
    )
    field = augment.displacements(images)  # (N, H, W, 2), in units of half the image
    steps = (field[:, 1:] - field[:, :-1]).abs().mean()
    raw_noise_steps = (2 / 3) * (2 / 28)  # mean |u - v| for u, v uniform in [-1, 1], in units
    assert field.shape == (2, 28, 28, 2)
    assert steps < raw_noise_steps / 4


@settings(max_examples=15, deadline=None)
@given(seed=seeds, sigma=st.floats(0.3, 7.0), height=st.integers(5, 32), width=st.integers(5, 32))
def test_elastic_field_is_gaussian_smoothed_noise(
    seed: int, sigma: float, height: int, width: int
) -> None:
    """The field is the seeded uniform noise blurred by a zero-padded Gaussian, in grid units."""
    images = torch.zeros(3, 1, height, width)
    augment = RandomAffine(
        elastic_alpha=2.0, elastic_sigma=sigma, generator=torch.Generator().manual_seed(seed)
    )
    field = augment.displacements(images)
    noise = 2 * torch.rand(3, 2, height, width, generator=torch.Generator().manual_seed(seed)) - 1
    radius = max(1, math.ceil(3 * sigma))
    kernel = torch.exp(-0.5 * (torch.arange(-radius, radius + 1.0) / sigma) ** 2)
    kernel = kernel / kernel.sum()
    rows = F.conv2d(
        noise, kernel.view(1, 1, 1, -1).repeat(2, 1, 1, 1), padding=(0, radius), groups=2
    )
    both = F.conv2d(
        rows, kernel.view(1, 1, -1, 1).repeat(2, 1, 1, 1), padding=(radius, 0), groups=2
    )
    expected = 2.0 * torch.stack([both[:, 0] * (2 / width), both[:, 1] * (2 / height)], dim=-1)
    torch.testing.assert_close(field, expected, rtol=1e-4, atol=1e-6)


def test_labels_are_untouched_in_training() -> None:
    """Training with augmentation sees the same labels; only the images change."""
    seen: list[torch.Tensor] = []

    class Keep(Callback):
        def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
            seen.append(output.targets)

    batches = digit_batches(30, 10)
    quick_trainer(augment=RandomAffine(), callbacks=[Keep()]).fit(batches)
    assert all(torch.equal(a, b[1]) for a, b in zip(seen, batches, strict=True))


def test_pixels_from_outside_are_the_fill_value() -> None:
    """A large shift brings in the fill value (black after normalisation)."""
    augment = RandomAffine(
        degrees=0,
        scale=(1.0, 1.0),
        translate=0.5,
        fill=-0.5,
        generator=torch.Generator().manual_seed(0),
    )
    moved = augment(torch.ones(4, 1, 28, 28))
    assert torch.isclose(moved, torch.tensor(-0.5)).any()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"degrees": -1.0}, "degrees and translate must be >= 0"),
        ({"scale": (1.2, 1.1)}, r"scale must be \(low, high\)"),
        ({"elastic_alpha": -1.0}, "elastic_alpha must be >= 0"),
        ({"elastic_sigma": 0.0}, "elastic_sigma > 0"),
    ],
)
def test_bad_ranges_are_refused(options: dict[str, object], message: str) -> None:
    """Negative ranges and empty scale ranges raise InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError, match=message):
        RandomAffine(**options)  # type: ignore[arg-type]
