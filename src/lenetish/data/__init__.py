"""MNIST-family data: find (or download) the idx files, verify them, and batch them fast.

Where the files come from (a folder, ``$LENETISH_DATA``, the user cache, or the MNIST copy
bundled with the package) is decided in :mod:`lenetish.data.sources` and logged once per call.
The default path reads a split once into one tensor, normalises it once (on the training
device when one is given) and yields batches by indexing: no per-sample Python and no PIL. A
user's own torchvision ``transform`` switches to a standard :class:`~torch.utils.data.DataLoader`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, overload

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from typing_extensions import TypeVar

from lenetish._checks import check_positive_int
from lenetish._device import DeviceLike, resolve_device
from lenetish.data.identity import DATASETS, DatasetInfo, dataset_info
from lenetish.data.loaders import IdxDataset, NormalisedTensor, TensorLoader
from lenetish.data.own import OwnData
from lenetish.data.reading import load_split, load_splits, read_split
from lenetish.data.sources import DataSource, default_root
from lenetish.errors import InvalidArgumentError

__all__ = [
    "DATASETS",
    "DataSource",
    "DatasetInfo",
    "Loaders",
    "dataset_info",
    "default_root",
    "load_split",
    "make_loaders",
    "make_test_loader",
    "read_split",
]

#: The loader type of a :class:`Loaders`' splits: :class:`~lenetish.TensorLoader` unless a
#: transform makes a split a ``DataLoader``.
SplitLoader = TypeVar("SplitLoader", default=TensorLoader)

logger = logging.getLogger(__name__)


@dataclass
class Loaders(Generic[SplitLoader]):
    """The loaders :func:`make_loaders` returns.

    Typed ``Loaders[TensorLoader]`` (what a bare ``Loaders`` means) when no transform is given,
    so ``loaders.train.num_samples`` type-checks; with a ``transform``, ``eval_transform`` or
    ``target_transform`` a split may be a :class:`~torch.utils.data.DataLoader`.

    Attributes:
        train: shuffled training batches (without the validation samples).
        val: validation batches carved from the training split, or ``None``.
        test: test batches, never shuffled.
        info: the dataset's name, normalisation constants and class names.
        source: where the files were read from (e.g. the copy bundled with lenetish).

    Example:
        >>> loaders = make_loaders(subset=1000, val_size=200, batch_size=100)
        >>> loaders.train.num_samples, loaders.val.num_samples, loaders.test.num_samples
        (800, 200, 10000)
        >>> images, labels = next(iter(loaders.train))
        >>> images.shape, labels.shape
        (torch.Size([100, 1, 28, 28]), torch.Size([100]))
        >>> loaders.info.name
        'mnist'
    """

    train: SplitLoader
    val: SplitLoader | None
    test: SplitLoader
    info: DatasetInfo
    source: DataSource | None = None


def _val_count(val_size: float, num_train: int) -> int:
    """Turn ``val_size`` (a count, or a fraction in (0, 1)) into a number of samples."""
    if isinstance(val_size, bool) or not isinstance(val_size, (int, float)):
        raise InvalidArgumentError(f"val_size must be a number, got {val_size!r}")
    count = round(val_size * num_train) if isinstance(val_size, float) else val_size
    if isinstance(val_size, float) and not 0.0 <= val_size < 1.0:
        count = -1
    if not 0 <= count < num_train:
        raise InvalidArgumentError(
            f"val_size={val_size!r} must be a count in [0, {num_train}) or a fraction in "
            "[0, 1), so that some training samples remain"
        )
    return count


def split_indices(num_samples: int, val_count: int, seed: int) -> tuple[Tensor, Tensor]:
    """Deterministically split ``range(num_samples)`` into sorted train and val indices."""
    order = torch.randperm(num_samples, generator=torch.Generator().manual_seed(seed))
    return order[val_count:].sort().values, order[:val_count].sort().values


def _normalise(images: Tensor, info: DatasetInfo, device: torch.device) -> Tensor:
    """uint8 ``(N, 28, 28)`` -> float32 ``(N, 1, 28, 28)``, moved first, normalised once."""
    scaled = images.to(device).unsqueeze(1).float().div_(255.0)
    return scaled.sub_(info.mean).div_(info.std)


@overload
def make_loaders(
    root: str | os.PathLike[str] | OwnData | None = None,
    *,
    dataset: str = "auto",
    batch_size: int = 200,
    val_size: float = 0,
    device: DeviceLike | None = None,
    download: bool = True,
    seed: int = 0,
    eval_batch_size: int | None = None,
    drop_last: bool = False,
    transform: None = None,
    eval_transform: None = None,
    target_transform: None = None,
    num_workers: int = 0,
    subset: int | None = None,
    mean: float | None = None,
    std: float | None = None,
    classes: Sequence[str] | None = None,
) -> Loaders[TensorLoader]: ...


@overload
def make_loaders(
    root: str | os.PathLike[str] | OwnData | None = None,
    *,
    dataset: str = "auto",
    batch_size: int = 200,
    val_size: float = 0,
    device: DeviceLike | None = None,
    download: bool = True,
    seed: int = 0,
    eval_batch_size: int | None = None,
    drop_last: bool = False,
    transform: Callable[[Any], Any] | None = None,
    eval_transform: Callable[[Any], Any] | None = None,
    target_transform: Callable[[Any], Any] | None = None,
    num_workers: int = 0,
    subset: int | None = None,
    mean: float | None = None,
    std: float | None = None,
    classes: Sequence[str] | None = None,
) -> Loaders[TensorLoader | DataLoader[Any]]: ...


def make_loaders(
    root: str | os.PathLike[str] | OwnData | None = None,
    *,
    dataset: str = "auto",
    batch_size: int = 200,
    val_size: float = 0,
    device: DeviceLike | None = None,
    download: bool = True,
    seed: int = 0,
    eval_batch_size: int | None = None,
    drop_last: bool = False,
    transform: Callable[[Any], Any] | None = None,
    eval_transform: Callable[[Any], Any] | None = None,
    target_transform: Callable[[Any], Any] | None = None,
    num_workers: int = 0,
    subset: int | None = None,
    mean: float | None = None,
    std: float | None = None,
    classes: Sequence[str] | None = None,
) -> Loaders[Any]:
    """Build train, validation and test loaders for an MNIST-family dataset or your own data.

    Your own data (see :mod:`lenetish.data.own` and the "Your own data" page) goes through
    the same fast path: a folder of class sub-folders of images (any size, colour made grey,
    resized to 28x28), ``(images, labels)`` arrays, a ``{"train": ..., "test": ...}``
    mapping of them, or a map-style :class:`~torch.utils.data.Dataset` of ``(image, label)``
    items. It is decoded once; :attr:`Loaders.info` records the training pixels' mean and
    standard deviation, the class names and the preparation (``"resize"``), and a model
    trained on the loaders carries that record, so :func:`~lenetish.predict` prepares image
    files as these were read and names the classes. Without a test split of its own (a
    ``test/`` folder beside ``train/``, or the mapping's ``"test"``), a fixed fifth of each
    class is held out as the test split.

    Args:
        root: data folder, or your own data (above); ``None``: for MNIST (and ``"auto"``),
            ``$LENETISH_DATA`` or the user cache folder if it holds the files, else the copy
            bundled with lenetish (see :func:`load_split` for the layouts it understands).
            The choice is logged and kept in :attr:`Loaders.source`.
        dataset: ``"auto"`` (the default): the files' own settings, recognised by content
            (canonical MNIST, Fashion-MNIST and KMNIST files; other idx files get MNIST's
            normalisation and digit names, logged; your own data its own statistics).
            ``"mnist"``, ``"fashion-mnist"`` or ``"kmnist"``: that dataset's settings, and an
            error if the files are another one.
        batch_size: training batch size (the seed used 200).
        val_size: samples carved from the training split for validation: a count, or a
            fraction in ``[0, 1)``; 0 means no validation loader. The split is fixed by ``seed``.
        device: where the tensors live (``None``: the CPU; ``"auto"``: the best device).
        download: let torchvision download missing idx files into ``root`` (MNIST only when
            ``root`` is given). A failed download leaves ``root`` as it was; a folder of
            images, or data in memory, is never downloaded to.
        seed: seed of the validation split and of the training order.
        eval_batch_size: batch size of the validation and test loaders (default: ``batch_size``).
        drop_last: drop a last, smaller training batch.
        transform: a torchvision transform applied to each PIL image of the *training* batches
            only; switches training to a standard ``DataLoader``. It must convert and
            normalise too (e.g. end with ``ToTensor()`` and ``Normalize(info.mean,
            info.std)``): nothing is added to it.
        eval_transform: applied to each PIL image of the validation and test batches (default:
            the deterministic conversion and the dataset's normalisation, as without
            ``transform``). Random augmentation belongs in ``transform``, never here.
        target_transform: applied to each integer label, in every split (``DataLoader`` path).
        num_workers: worker processes of the ``DataLoader`` path.
        subset: keep only the first ``subset`` training samples (before the validation
            split), for quick trial runs; ``None`` keeps them all.
        mean: the normalisation mean instead of the dataset's (pixels scaled to ``[0, 1]``).
        std: the normalisation standard deviation instead of the dataset's.
        classes: the class names instead of the dataset's (index = label).

    Returns:
        The :class:`Loaders`; :attr:`Loaders.info` says what the files are.

    Raises:
        InvalidArgumentError: an argument is out of range or the dataset is unknown.
        DatasetMismatchError: the files are another recognised dataset than ``dataset``.
        DatasetNotFoundError: the files are absent and could not be downloaded.
        DatasetCorruptError: a file is damaged.
        DeviceUnavailableError: ``device`` is not present on this machine.
        InputShapeError: your arrays are not grey 28x28 pictures with one label each.
        InvalidInputError: your pixels or labels are of the wrong kind or range.
        InvalidImageError: a file of your image folder is not an image, or too large.

    Example:
        >>> loaders = make_loaders(val_size=10_000)  # MNIST, from the bundled copy if need be
        >>> loaders.train.num_samples, loaders.val.num_samples
        (50000, 10000)
        >>> loaders.info.name, len(loaders.train)  # 250 batches of 200
        ('mnist', 250)
        >>> pictures = torch.randint(0, 256, (50, 28, 28), dtype=torch.uint8)  # your own
        >>> own = make_loaders((pictures, torch.arange(50) % 5), batch_size=10)
        >>> own.train.num_samples, own.test.num_samples, own.info.classes
        (40, 10, ('0', '1', '2', '3', '4'))
    """
    check_positive_int("batch_size", batch_size)
    eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
    check_positive_int("eval_batch_size", eval_batch_size)
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise InvalidArgumentError(f"num_workers must be an integer >= 0, got {num_workers!r}")
    if dataset != "auto":
        dataset_info(dataset)
    target = torch.device("cpu") if device is None else resolve_device(device)
    splits, info, source = load_splits(root, dataset, (True, False), download, mean, std, classes)
    (train_images, train_labels), (test_images, test_labels) = splits
    if subset is not None:
        check_positive_int("subset", subset)
        train_images, train_labels = train_images[:subset], train_labels[:subset]
    train_index, val_index = split_indices(
        len(train_labels), _val_count(val_size, len(train_labels)), seed
    )
    convert = NormalisedTensor(info.mean, info.std)
    eval_items = eval_transform or (convert if target_transform is not None else None)
    shuffler = torch.Generator().manual_seed(seed)

    def loader(
        images: Tensor, labels: Tensor, items: Callable[[Any], Any], batch: int, shuffle: bool
    ) -> DataLoader[Any]:
        return DataLoader(
            IdxDataset(images, labels, items, target_transform),
            batch_size=batch,
            shuffle=shuffle,
            generator=shuffler if shuffle else None,
            drop_last=drop_last and shuffle,
            num_workers=num_workers,
        )

    train_all: Tensor | None = None
    if transform is not None or target_transform is not None:
        train: TensorLoader | DataLoader[Any] = loader(
            train_images[train_index], train_labels[train_index], transform or convert,
            batch_size, True,
        )  # fmt: skip
    else:
        train_all = _normalise(train_images, info, target)
        index = train_index.to(target) if len(val_index) else slice(None)
        train = TensorLoader(
            train_all[index], train_labels.to(target)[index], batch_size=batch_size,
            shuffle=True, seed=seed, drop_last=drop_last, info=info,
        )  # fmt: skip
    val: TensorLoader | DataLoader[Any] | None = None
    if len(val_index) and eval_items is not None:
        val = loader(
            train_images[val_index], train_labels[val_index], eval_items, eval_batch_size, False
        )
    elif len(val_index):
        normalised = _normalise(train_images, info, target) if train_all is None else train_all
        on_device = val_index.to(target)
        val = TensorLoader(
            normalised[on_device], train_labels.to(target)[on_device],
            batch_size=eval_batch_size, info=info,
        )  # fmt: skip
    test: TensorLoader | DataLoader[Any] = (
        loader(test_images, test_labels, eval_items, eval_batch_size, False)
        if eval_items is not None
        else _tensor_loader(test_images, test_labels, info, target, eval_batch_size)
    )
    return Loaders(train=train, val=val, test=test, info=info, source=source)


def _tensor_loader(
    images: Tensor, labels: Tensor, info: DatasetInfo, device: torch.device, batch_size: int
) -> TensorLoader:
    """An unshuffled loader over a whole split, normalised on ``device``."""
    return TensorLoader(
        _normalise(images, info, device), labels.to(device), batch_size=batch_size, info=info
    )


def make_test_loader(
    root: str | os.PathLike[str] | None = None,
    *,
    dataset: str = "auto",
    batch_size: int = 1000,
    device: DeviceLike | None = None,
    download: bool = True,
    mean: float | None = None,
    std: float | None = None,
    classes: Sequence[str] | None = None,
) -> TensorLoader:
    """The test split alone, as :func:`make_loaders` gives it, without reading the training split.

    Args:
        root: the data folder (see :func:`load_split`).
        dataset: ``"auto"``, ``"mnist"``, ``"fashion-mnist"`` or ``"kmnist"`` (see
            :func:`make_loaders`).
        batch_size: images per batch.
        device: where the tensors live (``None``: the CPU).
        download: let torchvision download missing files.
        mean: the normalisation mean instead of the dataset's.
        std: the normalisation standard deviation instead of the dataset's.
        classes: the class names instead of the dataset's.

    Returns:
        An unshuffled :class:`TensorLoader` over the 10,000 normalised test images; its
        ``info`` says what the files are.

    Raises:
        InvalidArgumentError: an argument is out of range or the dataset is unknown.
        DatasetMismatchError: the files are another recognised dataset than ``dataset``.
        DatasetNotFoundError: the files are absent and could not be downloaded.
        DatasetCorruptError: a file is damaged.
    """
    check_positive_int("batch_size", batch_size)
    target = torch.device("cpu") if device is None else resolve_device(device)
    images, labels, info = read_split(
        root, dataset=dataset, train=False, download=download, mean=mean, std=std,
        classes=classes,
    )  # fmt: skip
    return _tensor_loader(images, labels, info, target, batch_size)
