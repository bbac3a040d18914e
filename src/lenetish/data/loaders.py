"""Loaders over tensors: the device-resident ``TensorLoader`` and the PIL/transform dataset."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from lenetish._checks import check_positive_int
from lenetish.errors import InvalidArgumentError

if TYPE_CHECKING:
    from lenetish.data.identity import DatasetInfo

__all__ = ["Batch", "IdxDataset", "NormalisedTensor", "TensorLoader", "tell_epoch"]

Batch = tuple[Tensor, Tensor]


class TensorLoader:
    """Batches of a whole split held as one tensor, yielded by indexing.

    Each iteration is one epoch. With ``shuffle=True`` the order of epoch ``e`` is a
    permutation drawn from a CPU generator seeded with ``(seed, e)``, so it is the same on
    every device and can be replayed with :meth:`set_epoch` when resuming.

    In a run of several processes each process iterates its own :meth:`shard`: every batch
    of ``batch_size`` samples is split between the processes, so the global batch, the number
    of batches and the order are those of a single-process run.

    Args:
        images: float tensor ``(N, 1, 28, 28)``, already normalised.
        labels: int64 tensor ``(N,)`` on the same device.
        batch_size: samples per batch (the last batch may be smaller unless ``drop_last``).
        shuffle: draw a new order every epoch.
        seed: seed of the shuffling.
        drop_last: skip a last batch smaller than ``batch_size``.
        info: the dataset the images come from and were normalised for (kept as
            ``loader.info``; :func:`~lenetish.evaluate` checks it against a model's record).

    Raises:
        InvalidArgumentError: ``batch_size`` is not positive, or the tensors disagree.

    Example:
        >>> loader = TensorLoader(torch.zeros(5, 1, 28, 28), torch.arange(5), batch_size=2)
        >>> len(loader), loader.num_samples
        (3, 5)
        >>> [labels.tolist() for _, labels in loader]
        [[0, 1], [2, 3], [4]]
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        info: DatasetInfo | None = None,
    ) -> None:
        check_positive_int("batch_size", batch_size)
        if images.shape[0] != labels.shape[0] or images.device != labels.device:
            raise InvalidArgumentError(
                f"images {tuple(images.shape)} on {images.device} and labels "
                f"{tuple(labels.shape)} on {labels.device} must have the same length and device"
            )
        self.images = images
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.info = info
        self.rank = 0
        self.world_size = 1
        self._epoch = 0

    @property
    def num_samples(self) -> int:
        """The number of samples in the split."""
        return int(self.labels.shape[0])

    @property
    def device(self) -> torch.device:
        """The device the batches live on."""
        return self.images.device

    @property
    def epoch(self) -> int:
        """The epoch the next iteration will yield."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration yield epoch ``epoch`` (for resuming a run exactly)."""
        self._epoch = epoch

    def order(self, epoch: int) -> Tensor:
        """The sample indices of ``epoch`` in the order they are visited (on the CPU)."""
        if not self.shuffle:
            return torch.arange(self.num_samples)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_samples, generator=generator)

    def shard(self, rank: int, world_size: int) -> TensorLoader:
        """This process's part of every batch, for a run of ``world_size`` processes.

        Each batch of the single-process order is dealt out round-robin: process ``r`` gets
        its samples ``r, r + world_size, ...``. Every process yields the same number of
        batches and each sample is seen once per epoch by exactly one process. A last batch
        too small to give every process a sample is merged into the one before it.

        Args:
            rank: this process's index, ``0 .. world_size - 1``.
            world_size: the number of processes.

        Returns:
            A loader sharing this one's tensors, seed and epoch counter value.

        Raises:
            InvalidArgumentError: a batch or the split is too small to give every process
                a sample, or ``rank`` is out of range.

        Example:
            >>> loader = TensorLoader(torch.zeros(6, 1, 28, 28), torch.arange(6), batch_size=4)
            >>> [labels.tolist() for _, labels in loader.shard(1, 2)]
            [[1, 3], [5]]
        """
        check_positive_int("world_size", world_size)
        if not 0 <= rank < world_size:
            raise InvalidArgumentError(f"rank={rank} is outside 0..{world_size - 1}")
        if min(self.batch_size, self.num_samples) < world_size:
            raise InvalidArgumentError(
                f"batches of {min(self.batch_size, self.num_samples)} samples cannot be split "
                f"between {world_size} processes; use a batch_size (and a split) of at least "
                f"{world_size}, or fewer processes"
            )
        shard = copy.copy(self)
        shard.rank, shard.world_size = rank, world_size
        return shard

    def __len__(self) -> int:
        full, rest = divmod(self.num_samples, self.batch_size)
        if self.drop_last or (full and rest < self.world_size):
            return full  # a remainder too small to share is merged into the last batch
        return full + (1 if rest else 0)

    def _bounds(self, batch: int) -> tuple[int, int]:
        """Where batch ``batch`` starts and ends in the epoch's order (all processes)."""
        start = batch * self.batch_size
        last = batch == len(self) - 1 and not self.drop_last
        return start, self.num_samples if last else start + self.batch_size

    def __iter__(self) -> Iterator[Batch]:
        epoch, self._epoch = self._epoch, self._epoch + 1
        if self.shuffle:
            return self._gathered(self.order(epoch).to(self.device))
        return self._sliced()

    def _sliced(self) -> Iterator[Batch]:
        for batch in range(len(self)):
            start, end = self._bounds(batch)
            # Strided views: no copy, also when the batch is dealt out to several processes.
            part = slice(start + self.rank, end, self.world_size)
            yield self.images[part], self.labels[part]

    def _gathered(self, order: Tensor) -> Iterator[Batch]:
        for batch in range(len(self)):
            start, end = self._bounds(batch)
            index = order[start + self.rank : end : self.world_size]
            yield self.images[index], self.labels[index]


class IdxDataset(Dataset[tuple[Any, Any]]):
    """Map-style dataset over uint8 images, giving each to a torchvision transform as PIL."""

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        transform: Callable[[Any], Any] | None = None,
        target_transform: Callable[[Any], Any] | None = None,
    ) -> None:
        self.images = images
        self.labels = labels
        self.transform = transform
        self.target_transform = target_transform

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        from PIL import Image

        image: Any = Image.fromarray(self.images[index].numpy(), mode="L")
        target: Any = int(self.labels[index])
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target


class NormalisedTensor:
    """The conversion the tensor path applies, for one PIL image: float ``(1, 28, 28)``.

    Pixels are scaled to ``[0, 1]``, then normalised with ``mean`` and ``std``; deterministic,
    so it is the default ``eval_transform`` of :func:`~lenetish.make_loaders`.

    Args:
        mean: subtracted from the scaled pixels.
        std: what the difference is divided by.

    Example:
        >>> from PIL import Image
        >>> from lenetish.data.loaders import NormalisedTensor
        >>> convert = NormalisedTensor(0.5, 0.5)
        >>> convert(Image.new("L", (28, 28), 255)).shape
        torch.Size([1, 28, 28])
        >>> float(convert(Image.new("L", (2, 2)))[0, 0, 0])
        -1.0
    """

    def __init__(self, mean: float, std: float) -> None:
        self.mean = mean
        self.std = std

    def __call__(self, image: Any) -> Tensor:
        """Convert and normalise one PIL image (or uint8 array)."""
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8))
        return ((pixels.float() / 255.0 - self.mean) / self.std).unsqueeze(0)

    def __repr__(self) -> str:
        return f"NormalisedTensor(mean={self.mean}, std={self.std})"


def tell_epoch(loader: object, epoch: int) -> None:
    """Tell ``loader`` which epoch starts, so its shuffle is reproducible.

    A lenetish loader has ``set_epoch``, and so does a ``DataLoader``'s
    ``DistributedSampler``; other loaders are left alone.
    """
    sampler = getattr(loader, "sampler", None)
    set_epoch = getattr(loader, "set_epoch", getattr(sampler, "set_epoch", None))
    if callable(set_epoch):
        set_epoch(epoch)
