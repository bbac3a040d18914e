"""Tests of lenetish.loaders: the device-resident TensorLoader and the transform dataset."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lenetish import InvalidArgumentError, TensorLoader
from lenetish.loaders import IdxDataset
from tests.strategies import batch_sizes, seeds


def _loader(count: int, **options: object) -> TensorLoader:
    images = torch.arange(count, dtype=torch.float32).reshape(count, 1, 1, 1).expand(-1, 1, 28, 28)
    return TensorLoader(images, torch.arange(count), **options)  # type: ignore[arg-type]


@settings(max_examples=50, deadline=None)
@given(count=st.integers(1, 700), batch_size=batch_sizes, seed=seeds, shuffle=st.booleans())
def test_every_sample_is_visited_once_per_epoch(
    count: int, batch_size: int, seed: int, shuffle: bool
) -> None:
    """For any size, batch size and seed, an epoch visits every sample exactly once."""
    loader = _loader(count, batch_size=batch_size, seed=seed, shuffle=shuffle)
    for _ in range(2):
        batches = list(loader)
        assert len(batches) == len(loader)
        labels = torch.cat([labels for _, labels in batches])
        assert sorted(labels.tolist()) == list(range(count))
        for images, batch_labels in batches:
            assert torch.equal(images[:, 0, 0, 0].long(), batch_labels)


def test_drop_last_skips_the_short_batch() -> None:
    """With drop_last the last, smaller batch is not yielded."""
    loader = _loader(10, batch_size=4, shuffle=True, drop_last=True)
    assert len(loader) == 2
    assert [len(labels) for _, labels in loader] == [4, 4]


def test_unshuffled_batches_are_views() -> None:
    """Without shuffling, batches are slices of the stored tensor (no copy)."""
    loader = _loader(10, batch_size=4)
    images, _ = next(iter(loader))
    assert images.data_ptr() == loader.images.data_ptr()


def test_order_is_the_same_for_the_same_seed_and_epoch() -> None:
    """order(epoch) depends only on the seed and the epoch."""
    assert torch.equal(
        _loader(50, batch_size=5, shuffle=True, seed=9).order(3),
        _loader(50, batch_size=5, shuffle=True, seed=9).order(3),
    )
    assert not torch.equal(
        _loader(50, batch_size=5, shuffle=True, seed=9).order(3),
        _loader(50, batch_size=5, shuffle=True, seed=9).order(4),
    )


def test_mismatched_tensors_are_refused() -> None:
    """Images and labels of different lengths raise InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError, match="must have the same length and device"):
        TensorLoader(torch.zeros(3, 1, 28, 28), torch.zeros(2), batch_size=1)


def test_non_positive_batch_size_is_refused() -> None:
    """batch_size must be a positive integer."""
    with pytest.raises(InvalidArgumentError, match="batch_size must be a positive integer, got 0"):
        _loader(3, batch_size=0)


def test_idx_dataset_gives_pil_images_to_the_transform() -> None:
    """Without a transform IdxDataset yields PIL greyscale images and integer labels."""
    dataset = IdxDataset(torch.full((2, 28, 28), 7, dtype=torch.uint8), torch.tensor([3, 4]))
    image, label = dataset[1]
    assert (image.mode, image.size, image.getpixel((0, 0)), label) == ("L", (28, 28), 7, 4)
