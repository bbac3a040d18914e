"""Reading one split of a dataset: where its files are, which dataset they are, one tensor.

:func:`load_split` gives a split's images and labels as tensors (what ``make_loaders`` batches
and ``lenetish evaluate`` scores); :func:`read_split` adds the dataset the files turned out
to be. Where the files come from is :mod:`lenetish.data.sources`' job.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from torch import Tensor

from lenetish.data.identity import (
    CUSTOM,
    DATASETS,
    DatasetInfo,
    dataset_info,
    identify_labels,
    unknown_files,
    with_overrides,
)
from lenetish.data.idx import read_idx_images, read_idx_labels
from lenetish.data.own import (
    OwnData,
    OwnSplits,
    is_own_data,
    read_image_folder,
    read_own_data,
)
from lenetish.data.sources import (
    DataSource,
    expand_folder,
    find_split,
    folder_for_auto,
    locate_split,
    resolve_source,
)
from lenetish.errors import DatasetCorruptError, DatasetMismatchError

__all__ = ["load_split", "load_splits", "read_split"]

logger = logging.getLogger("lenetish.data")


def _source(root: str | os.PathLike[str] | None, dataset: str) -> tuple[DataSource, DatasetInfo]:
    """Where the files come from, and whose folder layout to look for them in."""
    if dataset != "auto":
        location = dataset_info(dataset)
    elif root is None:
        location = DATASETS["mnist"]
    else:
        location = folder_for_auto(expand_folder(root), list(DATASETS.values()), DATASETS["mnist"])
    return resolve_source(root, location), location


def _read_split(
    source: DataSource, location: DatasetInfo, train: bool, download: bool, num_classes: int
) -> tuple[Tensor, Tensor, str | None]:
    """Locate, read and cross-check one split; also say which dataset its labels identify."""
    images_path, labels_path = locate_split(source, location, train, download_missing=download)
    images = read_idx_images(images_path)
    labels = read_idx_labels(labels_path, num_classes=num_classes)
    if len(images) != len(labels):
        raise DatasetCorruptError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
            "labels; the two files must come from the same split"
        )
    return images, labels.long(), identify_labels(labels, labels_path, train)


def _settle(
    dataset: str,
    found: str | None,
    source: DataSource,
    *,
    mean: float | None,
    std: float | None,
    classes: Sequence[str] | None,
) -> DatasetInfo:
    """The settings of the files read: what they were recognised as, checked against ``dataset``.

    Raises:
        DatasetMismatchError: the files are a recognised dataset other than ``dataset``.
    """
    if found is not None and dataset not in ("auto", found):
        raise DatasetMismatchError(
            f"the files in {source} are the canonical {found} files (recognised by their "
            f"labels), but dataset={dataset!r} was asked for; pass dataset={found!r}, or "
            f"dataset='auto' (the default, --dataset auto) to take the settings from the files"
        )
    if found is not None:
        info = DATASETS[found]
    elif dataset != "auto":
        info = DATASETS[dataset]
    elif mean is None and std is None and classes is None:
        info = unknown_files(f"the files in {source}")
    else:
        info = replace(DATASETS["mnist"], name=CUSTOM, torchvision_name="", preparation="mnistify")
    info = with_overrides(info, mean=mean, std=std, classes=classes)
    logger.info("%s data: %s", info.name, source)
    return info


def _holds_idx(root: Path) -> bool:
    """Whether ``root`` holds a split's idx files in any dataset's layout."""
    return any(
        find_split(root, info, train) is not None
        for info in DATASETS.values()
        for train in (True, False)
    )


def _chosen(
    own: OwnSplits, splits: tuple[bool, ...]
) -> tuple[list[tuple[Tensor, Tensor]], DatasetInfo, DataSource]:
    """The splits asked for (train flags) of the user's own data."""
    train, test, info, source = own
    return [train if wanted else test for wanted in splits], info, source


def load_splits(
    root: str | os.PathLike[str] | OwnData | None,
    dataset: str,
    splits: tuple[bool, ...],
    download: bool,
    mean: float | None,
    std: float | None,
    classes: Sequence[str] | None,
) -> tuple[list[tuple[Tensor, Tensor]], DatasetInfo, DataSource]:
    """Read ``splits`` (train flags), identify them and settle the dataset's settings.

    ``root`` may also be the user's own data (see :mod:`lenetish.data.own`): arrays, a
    Dataset, or a folder of class sub-folders of images (one that holds no idx files).
    """
    with_overrides(DATASETS["mnist"], mean=mean, std=std, classes=classes)  # checks early
    if dataset != "auto":
        dataset_info(dataset)
    if is_own_data(root):
        own = read_own_data(root, dataset=dataset, mean=mean, std=std, classes=classes)
        return _chosen(own, splits)
    if root is not None and not _holds_idx(expand_folder(root)):
        folder = expand_folder(root)
        images = read_image_folder(folder, dataset=dataset, mean=mean, std=std, classes=classes)
        if images is not None:
            return _chosen(images, splits)
    source, location = _source(root, dataset)
    num_classes = len(classes) if classes is not None else 10
    read = [_read_split(source, location, train, download, num_classes) for train in splits]
    found = {name for _, _, name in read if name is not None}
    if len(found) > 1:
        raise DatasetMismatchError(
            f"the files in {source} mix datasets: the training labels are "
            f"{read[0][2]}'s and the test labels {read[-1][2]}'s; put each dataset's four "
            "files in a folder of its own"
        )
    info = _settle(
        dataset, found.pop() if found else None, source, mean=mean, std=std, classes=classes
    )
    return [(images, labels) for images, labels, _ in read], info, source


def load_split(
    root: str | os.PathLike[str] | None = None,
    *,
    dataset: str = "auto",
    train: bool = True,
    download: bool = True,
) -> tuple[Tensor, Tensor]:
    """Find, optionally download, read and verify one split of an MNIST-family dataset.

    Args:
        root: the data folder. The files may sit in torchvision's layout
            (``root/MNIST/raw/``), in ``root/<dataset>/`` or directly in ``root``, raw or
            gzip-compressed. ``None``: for MNIST (and ``"auto"``), ``$LENETISH_DATA`` or the
            user cache folder if it holds the files, else the copy bundled with lenetish; for
            the other datasets, :func:`default_root`.
        dataset: ``"auto"`` (what the files are, recognised by content; see :doc:`/data`),
            ``"mnist"``, ``"fashion-mnist"`` or ``"kmnist"``.
        train: the training split (60,000 images) or the test split (10,000).
        download: let torchvision download the files when they are not found (MNIST is only
            downloaded into a folder given as ``root``; ``"auto"`` downloads MNIST).

    Returns:
        ``(images, labels)``: uint8 ``(N, 28, 28)`` and int64 ``(N,)``.

    Raises:
        InvalidArgumentError: ``dataset`` is unknown.
        DatasetMismatchError: the files are another recognised dataset than ``dataset``.
        DatasetNotFoundError: the files are absent and could not be downloaded.
        DatasetCorruptError: a file is not a valid idx file, the counts disagree, or a bundled
            file's SHA-256 differs from the recorded one.

    Example:
        >>> images, labels = load_split(train=False)  # the bundled MNIST test split
        >>> tuple(images.shape), labels[:5].tolist()
        ((10000, 28, 28), [7, 2, 1, 0, 4])
    """
    return read_split(root, dataset=dataset, train=train, download=download)[:2]


def read_split(
    root: str | os.PathLike[str] | None = None,
    *,
    dataset: str = "auto",
    train: bool = True,
    download: bool = True,
    mean: float | None = None,
    std: float | None = None,
    classes: Sequence[str] | None = None,
) -> tuple[Tensor, Tensor, DatasetInfo]:
    """:func:`~lenetish.load_split`, also returning the dataset's settings (what the files are).

    Args:
        root: the data folder, as for :func:`~lenetish.load_split`.
        dataset: ``"auto"``, ``"mnist"``, ``"fashion-mnist"`` or ``"kmnist"``.
        train: the training split, or the test split.
        download: let torchvision download the files when they are not found.
        mean: the normalisation mean instead of the dataset's.
        std: the normalisation standard deviation instead of the dataset's.
        classes: the class names instead of the dataset's.

    Returns:
        ``(images, labels, info)``: uint8 ``(N, 28, 28)``, int64 ``(N,)`` and the dataset's
        :class:`~lenetish.DatasetInfo` (with the given overrides).

    Raises:
        InvalidArgumentError: ``dataset`` is unknown or an override is out of range.
        DatasetMismatchError: the files are another recognised dataset than ``dataset``.
        DatasetNotFoundError: the files are absent and could not be downloaded.
        DatasetCorruptError: a file is damaged.

    Example:
        >>> from lenetish.data import read_split
        >>> images, labels, info = read_split(train=False)
        >>> info.name, len(labels)
        ('mnist', 10000)
    """
    (split,), info, _ = load_splits(root, dataset, (train,), download, mean, std, classes)
    return split[0], split[1], info
