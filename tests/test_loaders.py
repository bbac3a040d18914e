"""Tests of lenetish.data.loaders: the device-resident TensorLoader and the transform dataset."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lenetish import InvalidArgumentError, TensorLoader
from lenetish.data.loaders import IdxDataset
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


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(1, 300),
    batch_size=st.integers(1, 64),
    world_size=st.integers(1, 4),
    seed=seeds,
    shuffle=st.booleans(),
)
def test_shards_split_each_batch_and_visit_every_sample_once(
    count: int, batch_size: int, world_size: int, seed: int, shuffle: bool
) -> None:
    """Shards have equal lengths, and together visit every sample once, batch by batch."""
    loader = _loader(count, batch_size=batch_size, seed=seed, shuffle=shuffle)
    if min(batch_size, count) < world_size:
        return  # refused; see test_shard_refuses_batches_smaller_than_the_world
    shards = [loader.shard(rank, world_size) for rank in range(world_size)]
    per_rank = [[labels for _, labels in shard] for shard in shards]
    assert {len(batches) for batches in per_rank} == {len(shards[0])}
    order = loader.order(0).tolist()
    start = 0
    for batch in zip(*per_rank, strict=True):
        assert all(len(part) > 0 for part in batch)
        merged = torch.cat(batch).tolist()
        assert sorted(merged) == sorted(order[start : start + len(merged)])
        start += len(merged)
    assert start == count


def test_shard_deals_out_the_single_process_batches() -> None:
    """With whole batches, the shards of batch k together are batch k of one process."""
    loader = _loader(24, batch_size=8, shuffle=True, seed=3)
    parts = [[labels.tolist() for _, labels in loader.shard(rank, 2)] for rank in range(2)]
    whole = [sorted(labels.tolist()) for _, labels in loader]
    assert [sorted(a + b) for a, b in zip(*parts, strict=True)] == whole


def test_shard_merges_a_remainder_too_small_to_share() -> None:
    """A last batch with fewer samples than processes joins the batch before it."""
    loader = _loader(9, batch_size=4)
    assert [labels.tolist() for _, labels in loader.shard(0, 2)] == [[0, 2], [4, 6, 8]]
    assert [labels.tolist() for _, labels in loader.shard(1, 2)] == [[1, 3], [5, 7]]
    assert (len(loader), len(loader.shard(0, 3))) == (3, 2)


def test_shard_refuses_batches_smaller_than_the_world() -> None:
    """A batch that cannot give every process a sample is refused, saying what to change."""
    with pytest.raises(InvalidArgumentError, match="cannot be split between 3 processes"):
        _loader(10, batch_size=2).shard(0, 3)


def test_shard_refuses_a_rank_outside_the_world() -> None:
    """The rank must be below the number of processes."""
    with pytest.raises(InvalidArgumentError, match=r"rank=2 is outside 0\.\.1"):
        _loader(10, batch_size=4).shard(2, 2)
