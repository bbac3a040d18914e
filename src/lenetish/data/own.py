"""A user's own data as lenetish data: a folder of class sub-folders, arrays, or a Dataset.

:func:`~lenetish.make_loaders` hands anything that is not an MNIST-family folder here. Each
kind is decoded once into uint8 pictures ``(N, 28, 28)`` and int64 labels, with a dataset
record (:class:`~lenetish.DatasetInfo`: the training pixels' mean and standard deviation,
the class names, and how a file is prepared), so the loaders are the fast device-resident
:class:`~lenetish.TensorLoader` and a model trained on them predicts files as they were read.

Layouts of a folder (images are ``.png``, ``.jpg``, ... in any size and mode; sub-folders
and files whose names start with ``.`` are passed over):

* ``root/train/<class>/...`` and ``root/test/<class>/...``: the two splits as given;
* ``root/<class>/...``: one pool, of which a fixed fifth of each class (chosen with seed 0,
  whatever ``seed=`` says, so the test split never changes) is the test split.

Arrays are ``(images, labels)``: uint8 ``(N, 28, 28)`` or ``(N, 1, 28, 28)`` (or floats in
``[0, 1]``, kept to 8 bits), labels ``0..C-1``; a ``{"train": ..., "test": ...}`` mapping
gives both splits, else a fixed fifth is held out as for a folder. A
:class:`~torch.utils.data.Dataset` (e.g. torchvision's ``ImageFolder`` without a transform)
yields ``(PIL image or picture, label)`` items; its ``classes`` attribute names the classes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from typing_extensions import TypeIs

from lenetish._images import IMAGE_SUFFIXES, MAX_PIXELS, decode_bounded, printable_path
from lenetish._images import resized_grey as _resized_grey
from lenetish.data.identity import CUSTOM, DatasetInfo, dataset_info, with_overrides
from lenetish.data.sources import DataSource
from lenetish.errors import InputShapeError, InvalidArgumentError, InvalidInputError

__all__ = [
    "OwnData",
    "OwnSplits",
    "hold_out",
    "image_classes",
    "is_own_data",
    "read_image_folder",
    "read_own_data",
]

logger = logging.getLogger("lenetish.data")

OwnData = tuple[Any, Any] | Mapping[str, Any] | Dataset[Any]
"""Data in memory: ``(images, labels)``, ``{"train": ..., "test": ...}``, or a Dataset."""

TEST_FRACTION = 0.2  # of a pool with no test split of its own, per class
_SPLIT_SEED = 0  # fixed: the test split of a pool must not move with the training seed
_SIDE = 28

Split = tuple[Tensor, Tensor]  # uint8 (N, 28, 28), int64 (N,)


@dataclass(frozen=True)
class _Read:
    """A split read from the user's data: pictures, labels, and its class names if it knows."""

    images: Tensor
    labels: Tensor
    classes: tuple[str, ...] | None


def is_own_data(data: object) -> TypeIs[OwnData]:
    """Whether ``data`` is arrays, a mapping of splits or a Dataset (not a folder or None)."""
    return isinstance(data, (tuple, Mapping, Dataset))


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _image_files(folder: Path) -> list[Path]:
    """Every image file under ``folder`` (any depth), in a fixed order; hidden ones passed over."""
    found: list[Path] = []
    for parent, folders, files in os.walk(folder):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        found.extend(
            Path(parent) / name
            for name in sorted(files)
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES
        )
    return found


def image_classes(folder: Path) -> dict[str, list[Path]]:
    """``folder``'s class sub-folders holding images, by name (sorted), with their files.

    Sub-folders without an image file are passed over; an empty result means ``folder`` is
    no image folder (a missing folder, a file, or a folder of idx files).
    """
    if not folder.is_dir():
        return {}
    classes = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p)):
        files = _image_files(sub)
        if files:
            classes[sub.name] = files
    return classes


def _tree_splits(root: Path) -> tuple[dict[str, list[Path]], dict[str, list[Path]] | None]:
    """The training classes and, where ``root`` has ``train/`` and ``test/``, the test ones."""
    train, test = image_classes(root / "train"), image_classes(root / "test")
    if train and test:
        unknown = sorted(set(test) - set(train))
        if unknown:
            raise InvalidArgumentError(
                f"{printable_path(root / 'test')} holds classes the training folder lacks "
                f"({', '.join(unknown[:5])}); give train/ and test/ the same class sub-folders"
            )
        return train, test
    return image_classes(root), None


def _decode(path: Path) -> np.ndarray:
    """One image file as a uint8 ``(28, 28)`` picture (greyscale, resized)."""
    image = decode_bounded(path, printable_path(path), max_pixels=MAX_PIXELS)
    return _resized_grey(image, _SIDE)


def _read_classes(classes: Mapping[str, list[Path]], names: Sequence[str]) -> _Read:
    """Decode every file of ``classes``; a class's label is its index in ``names``."""
    pictures, labels = [], []
    for name, files in classes.items():
        label = names.index(name)
        for path in files:
            pictures.append(_decode(path))
            labels.append(label)
    return _Read(
        torch.from_numpy(np.stack(pictures)), torch.tensor(labels, dtype=torch.int64), tuple(names)
    )


def hold_out(labels: Tensor, fraction: float = TEST_FRACTION) -> tuple[Tensor, Tensor]:
    """Indices ``(kept, held)``: a fixed ``fraction`` of each class held out (seed 0).

    A class of one sample keeps it. Both index lists are sorted.

    Example:
        >>> from lenetish.data.own import hold_out
        >>> kept, held = hold_out(torch.tensor([0] * 10 + [1] * 5))
        >>> len(kept), len(held), sorted(set(torch.tensor([0] * 10 + [1] * 5)[held].tolist()))
        (12, 3, [0, 1])
    """
    generator = torch.Generator().manual_seed(_SPLIT_SEED)
    held = []
    for value in torch.unique(labels).tolist():
        members = (labels == value).nonzero().flatten()
        count = round(len(members) * fraction) if len(members) > 1 else 0
        held.append(members[torch.randperm(len(members), generator=generator)[:count]])
    held_index = torch.cat(held).sort().values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[held_index] = False
    return mask.nonzero().flatten(), held_index


def _pictures(values: Any, where: str) -> Tensor:
    """Arrays or tensors ``(N, 28, 28)`` / ``(N, 1, 28, 28)`` as uint8 pictures."""
    images = torch.as_tensor(np.asarray(values) if not isinstance(values, Tensor) else values)
    if images.dim() == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.dim() != 3 or tuple(images.shape[1:]) != (_SIDE, _SIDE):
        raise InputShapeError(
            f"{where} are {tuple(images.shape)}; give grey pictures (N, 28, 28) or "
            "(N, 1, 28, 28): resize them to 28x28 and convert colour to grey first (or pass "
            "PIL images through a Dataset, which lenetish resizes)"
        )
    if images.dtype == torch.uint8:
        return images.cpu().clone()
    if not images.is_floating_point():
        raise InvalidInputError(
            f"{where} are {images.dtype}; give uint8 pixels 0-255 or floats in [0, 1]"
        )
    floats = images.detach().cpu().float()
    if not bool(torch.isfinite(floats).all()) or floats.min() < 0 or floats.max() > 1:
        raise InvalidInputError(
            f"{where} hold float values outside [0, 1] (or NaN); give raw pixels, uint8 0-255 "
            "or floats in [0, 1], not normalised ones"
        )
    return (floats * 255).round().to(torch.uint8)


def _labels(values: Any, count: int, where: str) -> Tensor:
    labels = torch.as_tensor(np.asarray(values) if not isinstance(values, Tensor) else values)
    if labels.dim() != 1 or len(labels) != count:
        raise InputShapeError(
            f"{where} are {tuple(labels.shape)}; give one class index per picture ({count},)"
        )
    if labels.is_floating_point() or labels.dtype == torch.bool or labels.is_complex():
        raise InvalidInputError(f"{where} are {labels.dtype}; give integer class indices")
    labels = labels.cpu().long()
    if count and labels.min() < 0:
        raise InvalidInputError(f"{where} hold {int(labels.min())}; class indices start at 0")
    return labels


def _dataset_item(item: Any, index: int) -> tuple[np.ndarray, int]:
    """One ``(image, label)`` item of a Dataset as a uint8 ``(28, 28)`` picture and a label."""
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise InvalidInputError(
            f"item {index} of the dataset is a {type(item).__name__}, not an (image, label) pair"
        )
    image, label = item
    if hasattr(image, "getbands"):  # a PIL image, e.g. from ImageFolder without a transform
        picture = _resized_grey(image, _SIDE)
    else:
        values = torch.as_tensor(np.asarray(image))[None]
        picture = _pictures(values, f"item {index}'s image")[0].numpy()
    if isinstance(label, Tensor):
        label = label.item()
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
        raise InvalidInputError(
            f"item {index} of the dataset has the label {label!r}; give an integer class index"
        )
    return picture, int(label)


def _read_dataset(dataset: Dataset[Any]) -> _Read:
    """Every item of a map-style Dataset, decoded once."""
    if not hasattr(dataset, "__len__"):
        raise InvalidArgumentError(
            f"the {type(dataset).__name__} has no length; give a map-style Dataset (with "
            "__len__ and __getitem__), or (images, labels) arrays"
        )
    items = [_dataset_item(dataset[index], index) for index in range(len(dataset))]
    if not items:
        raise InvalidInputError(f"the {type(dataset).__name__} holds no items")
    names = getattr(dataset, "classes", None)
    known = isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names)
    return _Read(
        torch.from_numpy(np.stack([picture for picture, _ in items])),
        torch.tensor([label for _, label in items], dtype=torch.int64),
        tuple(names) if known and names else None,
    )


def _read_part(part: Any, where: str) -> _Read:
    if isinstance(part, Dataset):
        return _read_dataset(part)
    if isinstance(part, (tuple, list)) and len(part) == 2:
        images = _pictures(part[0], f"the {where} images")
        return _Read(images, _labels(part[1], len(images), f"the {where} labels"), None)
    raise InvalidArgumentError(
        f"the {where} data is a {type(part).__name__}; give (images, labels) arrays or a "
        "Dataset of (image, label) items"
    )


def _read_data(data: OwnData) -> tuple[_Read, _Read | None, str]:
    """The training and test splits of arrays, a mapping or a Dataset, and what they are."""
    if isinstance(data, Mapping):
        if set(data) != {"train", "test"}:
            raise InvalidArgumentError(
                f"a mapping of splits must have exactly the keys 'train' and 'test', got "
                f"{sorted(map(str, data))}; the validation split is carved with val_size="
            )
        return _read_part(data["train"], "training"), _read_part(data["test"], "test"), "arrays"
    kind = "dataset" if isinstance(data, Dataset) else "arrays"
    return _read_part(data, "training"), None, kind


def _read_folder(root: Path) -> tuple[_Read, _Read | None]:
    train, test = _tree_splits(root)
    names = list(train)
    if len(names) < 2:
        raise InvalidArgumentError(
            f"{printable_path(root)} holds images for {len(names)} class (sub-folder "
            f"{', '.join(names)}); a folder of training images needs a sub-folder per class"
        )
    logger.info("reading the images of %d classes under %s", len(names), printable_path(root))
    return _read_classes(train, names), None if test is None else _read_classes(test, names)


def _class_names(read: _Read, labels: Tensor, classes: Sequence[str] | None) -> tuple[str, ...]:
    """The class names: given, else the data's own, else the label values as text."""
    count = int(labels.max()) + 1
    names = tuple(classes) if classes is not None else read.classes
    if names is None:
        names = tuple(str(value) for value in range(max(count, 2)))
    if count > len(names):
        raise InvalidInputError(
            f"the labels go up to {count - 1}, but there are {len(names)} class names; give "
            f"classes= with {count} names (index = label)"
        )
    return names


def _record(
    train: Tensor,
    dataset: str,
    names: tuple[str, ...],
    mean: float | None,
    std: float | None,
    classes: Sequence[str] | None,
) -> DatasetInfo:
    """The dataset record of the user's data: its own statistics unless a dataset is named."""
    if dataset != "auto":
        base = dataset_info(dataset)
        return with_overrides(
            DatasetInfo(base.name, base.torchvision_name, base.mean, base.std, base.classes,
                        "resize"),
            mean=mean, std=std, classes=classes,
        )  # fmt: skip
    pixels = train.float().div_(255.0)
    own_mean = float(pixels.mean())
    own_std = float(pixels.std()) if pixels.numel() > 1 else 0.0
    if not own_std > 0:
        raise InvalidInputError(
            "the training pictures are all of one value, so they cannot be normalised; "
            "check the data, or pass mean= and std="
        )
    info = DatasetInfo(CUSTOM, "", round(own_mean, 6), round(own_std, 6), names, "resize")
    return with_overrides(info, mean=mean, std=std)


OwnSplits = tuple[Split, Split, DatasetInfo, DataSource]


def read_own_data(
    data: OwnData,
    *,
    dataset: str,
    mean: float | None,
    std: float | None,
    classes: Sequence[str] | None,
) -> OwnSplits:
    """The training and test splits of arrays, a mapping of splits, or a Dataset.

    Raises:
        InvalidArgumentError: a mapping lacks its splits, or the data is of no known kind.
        InputShapeError: arrays of the wrong shape.
        InvalidInputError: pixels or labels of the wrong kind or range.
    """
    train, test, kind = _read_data(data)
    source = DataSource("dataset" if kind == "dataset" else "arrays", Path())
    return _finish(train, test, source, dataset=dataset, mean=mean, std=std, classes=classes)


def read_image_folder(
    root: Path,
    *,
    dataset: str,
    mean: float | None,
    std: float | None,
    classes: Sequence[str] | None,
) -> OwnSplits | None:
    """The splits of a folder of class sub-folders of images, or None when it is no such folder.

    Raises:
        InvalidArgumentError: the folder has one class, or ``test/`` has classes ``train/``
            lacks.
        InvalidImageError: a file is not an image, is damaged or too large.
        InvalidInputError: too few pictures per class to hold out a test split.
    """
    if not image_classes(root) and not image_classes(root / "train"):
        return None
    train, test = _read_folder(root)
    source = DataSource("images", root)
    return _finish(train, test, source, dataset=dataset, mean=mean, std=std, classes=classes)


def _finish(
    train_read: _Read,
    test_read: _Read | None,
    source: DataSource,
    *,
    dataset: str,
    mean: float | None,
    std: float | None,
    classes: Sequence[str] | None,
) -> OwnSplits:
    """Hold out a test split where none was given, and make the dataset record."""
    train, test = (train_read.images, train_read.labels), None
    if test_read is None:
        kept, held = hold_out(train_read.labels)
        train, test = (train[0][kept], train[1][kept]), (train[0][held], train[1][held])
        if not len(held):
            raise InvalidInputError(
                "there are too few pictures per class to hold out a test split; give at "
                "least 3 per class, or the test split yourself (train/ and test/ folders, "
                "or {'train': ..., 'test': ...})"
            )
    else:
        test = (test_read.images, test_read.labels)
    if source.kind == "images":  # files come sorted by class: a fixed mix, so subset= mixes
        order = torch.randperm(len(train[1]), generator=torch.Generator().manual_seed(0))
        train = (train[0][order], train[1][order])
    names = _class_names(train_read, torch.cat([train[1], test[1]]), classes)
    info = _record(train[0], dataset, names, mean, std, classes)
    logger.info(
        "%s data: %s (%d training and %d test pictures, %d classes)",
        info.name, source, len(train[1]), len(test[1]), len(info.classes),
    )  # fmt: skip
    return train, test, info, source
