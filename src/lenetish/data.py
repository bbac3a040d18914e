"""MNIST-family data: find (or download) the idx files, verify them, and batch them fast.

Where the files come from (a folder, ``$LENETISH_DATA``, the user cache, or the MNIST copy
bundled with the package) is decided in :mod:`lenetish.sources` and logged once per call.
The default path reads a split once into one tensor, normalises it once (on the training
device when one is given) and yields batches by indexing: no per-sample Python and no PIL. A
user's own torchvision ``transform`` switches to a standard :class:`~torch.utils.data.DataLoader`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from lenetish._checks import check_positive_int
from lenetish._device import DeviceLike, resolve_device
from lenetish.errors import DatasetCorruptError, InvalidArgumentError
from lenetish.idx import read_idx_images, read_idx_labels
from lenetish.loaders import IdxDataset, TensorLoader
from lenetish.sources import DataSource, default_root, locate_split, resolve_source

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
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetInfo:
    """What lenetish knows about one member of the MNIST family.

    Attributes:
        name: the name ``make_loaders`` accepts (``"mnist"``, ``"fashion-mnist"``, ``"kmnist"``).
        torchvision_name: torchvision's class, which is also its folder under ``root``.
        mean: mean pixel value of the training images, scaled to ``[0, 1]``.
        std: standard deviation of the training pixels, scaled to ``[0, 1]``.
        classes: the class names, index = label.
    """

    name: str
    torchvision_name: str
    mean: float
    std: float
    classes: tuple[str, ...]


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("mnist", "MNIST", 0.1307, 0.3081, tuple(str(d) for d in range(10))),
        DatasetInfo(
            "fashion-mnist",
            "FashionMNIST",
            0.2860,
            0.3530,
            (
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ),
        ),
        DatasetInfo(
            "kmnist",
            "KMNIST",
            0.1918,
            0.3483,
            ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
        ),
    )
}


def dataset_info(dataset: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``dataset``, or InvalidArgumentError listing the choices."""
    if dataset not in DATASETS:
        raise InvalidArgumentError(
            f"dataset={dataset!r} is not supported; use one of {', '.join(sorted(DATASETS))}"
        )
    return DATASETS[dataset]


def _source(root: str | os.PathLike[str] | None, info: DatasetInfo) -> DataSource:
    """Resolve where ``info``'s files come from and log it (once per call of the public API)."""
    source = resolve_source(root, info)
    logger.info("%s data: %s", info.name, source)
    return source


def _read_split(
    source: DataSource, info: DatasetInfo, train: bool, download: bool
) -> tuple[Tensor, Tensor]:
    """Locate (downloading if allowed), read and cross-check one split from ``source``."""
    images_path, labels_path = locate_split(source, info, train, download_missing=download)
    images = read_idx_images(images_path)
    labels = read_idx_labels(labels_path, num_classes=len(info.classes))
    if len(images) != len(labels):
        raise DatasetCorruptError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
            "labels; the two files must come from the same split"
        )
    return images, labels.long()


def load_split(
    root: str | os.PathLike[str] | None = None,
    *,
    dataset: str = "mnist",
    train: bool = True,
    download: bool = True,
) -> tuple[Tensor, Tensor]:
    """Find, optionally download, read and verify one split of an MNIST-family dataset.

    Args:
        root: the data folder. The files may sit in torchvision's layout
            (``root/MNIST/raw/``), in ``root/<dataset>/`` or directly in ``root``, raw or
            gzip-compressed. ``None``: for MNIST, ``$LENETISH_DATA`` or the user cache folder
            if it holds the files, else the copy bundled with lenetish; for the other datasets,
            :func:`default_root`.
        dataset: ``"mnist"``, ``"fashion-mnist"`` or ``"kmnist"``.
        train: the training split (60,000 images) or the test split (10,000).
        download: let torchvision download the files when they are not found (MNIST is only
            downloaded into a folder given as ``root``).

    Returns:
        ``(images, labels)``: uint8 ``(N, 28, 28)`` and int64 ``(N,)``.

    Raises:
        InvalidArgumentError: ``dataset`` is unknown.
        DatasetNotFoundError: the files are absent and could not be downloaded.
        DatasetCorruptError: a file is not a valid idx file, the counts disagree, or a bundled
            file's SHA-256 differs from the recorded one.

    Example:
        >>> images, labels = load_split(train=False)  # the bundled MNIST test split
        >>> tuple(images.shape), labels[:5].tolist()
        ((10000, 28, 28), [7, 2, 1, 0, 4])
    """
    info = dataset_info(dataset)
    return _read_split(_source(root, info), info, train, download)


@dataclass
class Loaders:
    """The loaders :func:`make_loaders` returns.

    Attributes:
        train: shuffled training batches (without the validation samples).
        val: validation batches carved from the training split, or ``None``.
        test: test batches, never shuffled.
        info: the dataset's name, normalisation constants and class names.
        source: where the files were read from (e.g. the copy bundled with lenetish).
    """

    train: TensorLoader | DataLoader[Any]
    val: TensorLoader | DataLoader[Any] | None
    test: TensorLoader | DataLoader[Any]
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


def make_loaders(
    root: str | os.PathLike[str] | None = None,
    *,
    dataset: str = "mnist",
    batch_size: int = 200,
    val_size: float = 0,
    device: DeviceLike | None = None,
    download: bool = True,
    seed: int = 0,
    eval_batch_size: int | None = None,
    drop_last: bool = False,
    transform: Callable[[Any], Any] | None = None,
    target_transform: Callable[[Any], Any] | None = None,
    num_workers: int = 0,
    subset: int | None = None,
) -> Loaders:
    """Build train, validation and test loaders for an MNIST-family dataset.

    Args:
        root: data folder; ``None``: for MNIST, ``$LENETISH_DATA`` or the user cache folder if
            it holds the files, else the copy bundled with lenetish (see :func:`load_split`
            for the layouts it understands). The choice is logged and kept in
            :attr:`Loaders.source`.
        dataset: ``"mnist"``, ``"fashion-mnist"`` or ``"kmnist"``.
        batch_size: training batch size (the seed used 200).
        val_size: samples carved from the training split for validation: a count, or a
            fraction in ``[0, 1)``; 0 means no validation loader. The split is fixed by ``seed``.
        device: where the tensors live (``None``: the CPU; ``"auto"``: the best device).
        download: let torchvision download missing files (MNIST only into ``root``).
        seed: seed of the validation split and of the training order.
        eval_batch_size: batch size of the validation and test loaders (default: ``batch_size``).
        drop_last: drop a last, smaller training batch.
        transform: a torchvision transform applied to each PIL image; switches to a standard
            ``DataLoader`` (no normalisation is added: put it in the transform).
        target_transform: applied to each integer label (``DataLoader`` path only).
        num_workers: worker processes of the ``DataLoader`` path.
        subset: keep only the first ``subset`` training samples (before the validation
            split), for quick trial runs; ``None`` keeps them all.

    Returns:
        The :class:`Loaders`.

    Raises:
        InvalidArgumentError: an argument is out of range or the dataset is unknown.
        DatasetNotFoundError: the files are absent and could not be downloaded.
        DatasetCorruptError: a file is damaged.
        DeviceUnavailableError: ``device`` is not present on this machine.

    Example:
        >>> loaders = make_loaders(val_size=10_000)  # doctest: +SKIP
        >>> loaders.train.num_samples, loaders.val.num_samples  # doctest: +SKIP
        (50000, 10000)
        >>> loaders.source.kind  # doctest: +SKIP
        'bundled'
    """
    info = dataset_info(dataset)
    check_positive_int("batch_size", batch_size)
    eval_batch_size = batch_size if eval_batch_size is None else eval_batch_size
    check_positive_int("eval_batch_size", eval_batch_size)
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise InvalidArgumentError(f"num_workers must be an integer >= 0, got {num_workers!r}")
    target = torch.device("cpu") if device is None else resolve_device(device)
    source = _source(root, info)
    train_images, train_labels = _read_split(source, info, True, download)
    if subset is not None:
        check_positive_int("subset", subset)
        train_images, train_labels = train_images[:subset], train_labels[:subset]
    test_images, test_labels = _read_split(source, info, False, download)
    train_index, val_index = split_indices(
        len(train_labels), _val_count(val_size, len(train_labels)), seed
    )

    if transform is not None or target_transform is not None:
        full = IdxDataset(train_images, train_labels, transform, target_transform)
        test_set = IdxDataset(test_images, test_labels, transform, target_transform)
        shuffler = torch.Generator().manual_seed(seed)
        return Loaders(
            train=DataLoader(
                Subset(full, train_index.tolist()),
                batch_size=batch_size,
                shuffle=True,
                generator=shuffler,
                drop_last=drop_last,
                num_workers=num_workers,
            ),
            val=DataLoader(
                Subset(full, val_index.tolist()),
                batch_size=eval_batch_size,
                num_workers=num_workers,
            )
            if len(val_index)
            else None,
            test=DataLoader(test_set, batch_size=eval_batch_size, num_workers=num_workers),
            info=info,
            source=source,
        )

    train_all = _normalise(train_images, info, target)
    train_targets = train_labels.to(target)
    if len(val_index):
        on_device = train_index.to(target), val_index.to(target)
        train_x, train_y = train_all[on_device[0]], train_targets[on_device[0]]
        val: TensorLoader | None = TensorLoader(
            train_all[on_device[1]], train_targets[on_device[1]], batch_size=eval_batch_size
        )
    else:
        train_x, train_y, val = train_all, train_targets, None
    return Loaders(
        train=TensorLoader(
            train_x, train_y, batch_size=batch_size, shuffle=True, seed=seed, drop_last=drop_last
        ),
        val=val,
        test=_tensor_loader(test_images, test_labels, info, target, eval_batch_size),
        info=info,
        source=source,
    )


def _tensor_loader(
    images: Tensor, labels: Tensor, info: DatasetInfo, device: torch.device, batch_size: int
) -> TensorLoader:
    """An unshuffled loader over a whole split, normalised on ``device``."""
    return TensorLoader(_normalise(images, info, device), labels.to(device), batch_size=batch_size)


def make_test_loader(
    root: str | os.PathLike[str] | None = None,
    *,
    dataset: str = "mnist",
    batch_size: int = 1000,
    device: DeviceLike | None = None,
    download: bool = True,
) -> TensorLoader:
    """The test split alone, as :func:`make_loaders` gives it, without reading the training split.

    Args:
        root: the data folder (see :func:`load_split`).
        dataset: ``"mnist"``, ``"fashion-mnist"`` or ``"kmnist"``.
        batch_size: images per batch.
        device: where the tensors live (``None``: the CPU).
        download: let torchvision download missing files.

    Returns:
        An unshuffled :class:`TensorLoader` over the 10,000 normalised test images.

    Raises:
        InvalidArgumentError: an argument is out of range or the dataset is unknown.
        DatasetNotFoundError: the files are absent and could not be downloaded.
        DatasetCorruptError: a file is damaged.
    """
    info = dataset_info(dataset)
    check_positive_int("batch_size", batch_size)
    target = torch.device("cpu") if device is None else resolve_device(device)
    images, labels = load_split(root, dataset=dataset, train=False, download=download)
    return _tensor_loader(images, labels, info, target, batch_size)
