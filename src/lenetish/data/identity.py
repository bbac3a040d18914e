"""Which MNIST-family dataset some idx files hold, told by content, and what a model was trained on.

MNIST, Fashion-MNIST and KMNIST use the same four file names, so a folder's name says nothing.
Their label files differ, though: the SHA-256 of a split's labels (the idx file as it is when
decompressed, rebuilt from the labels just read) identifies the canonical files of each
dataset. KMNIST's raw digests are not recorded here; its files are recognised by the MD5 of the
``.gz`` label files torchvision downloads (the file itself, or a ``.gz`` beside a raw one).

A model carries the :class:`DatasetInfo` it was trained with as the attribute
``lenetish_dataset`` (set by :func:`~lenetish.load_model` from what a weights file or
checkpoint records); :func:`resolve_dataset` checks a ``dataset=`` argument against it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import struct
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor, nn

from lenetish.catalog import CUSTOM, DATASETS, DatasetInfo
from lenetish.errors import DatasetMismatchError, InvalidArgumentError

__all__ = [
    "CUSTOM",
    "DATASETS",
    "DatasetInfo",
    "dataset_info",
    "identify_labels",
    "recorded_dataset",
    "remember_dataset",
    "resolve_dataset",
    "with_overrides",
]

logger = logging.getLogger("lenetish.data")

MODEL_ATTRIBUTE = "lenetish_dataset"


#: SHA-256 of the decompressed label files, (train, test): MNIST's from the copy bundled with
#: lenetish, Fashion-MNIST's from Zalando's release.
LABEL_SHA256: dict[str, tuple[str, str]] = {
    "mnist": (
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
    "fashion-mnist": (
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
}

#: MD5 of the ``.gz`` label files torchvision downloads, (train, test), from its dataset classes.
LABEL_GZ_MD5: dict[str, tuple[str, str]] = {
    "mnist": ("d53e105ee54ea40749a09fcbcd1e9432", "ec29112dd5afa0611ce80d1b7f02629c"),
    "fashion-mnist": ("25c81989df183df01b3e8a0aad5dffbe", "bb300cfdad3c16e7a12a480ee83cd310"),
    "kmnist": ("e144d726b3acfaa3e44228e80efcd344", "7320c461ea6c1c855c0b718fb2a4b134"),
}

_MAX_GZ_BYTES = 1 << 20  # label files are small (MNIST's train labels: 29 KB compressed)


def dataset_info(dataset: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``dataset``, or InvalidArgumentError listing the choices."""
    if dataset not in DATASETS:
        raise InvalidArgumentError(
            f"dataset={dataset!r} is not supported; use 'auto' or one of "
            f"{', '.join(sorted(DATASETS))}"
        )
    return DATASETS[dataset]


def label_digest(labels: Tensor) -> str:
    """SHA-256 of the idx file that holds exactly ``labels`` (uint8 values, ``(N,)``)."""
    payload = labels.to(device="cpu", dtype=torch.uint8).numpy().tobytes()
    return hashlib.sha256(
        b"\x00\x00\x08\x01" + struct.pack(">I", len(payload)) + payload
    ).hexdigest()


def _gz_md5(path: Path) -> str | None:
    """MD5 of ``path`` if it is a small ``.gz`` file, else of a ``.gz`` beside it, else None."""
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.suffix == ".gz" and candidate.is_file():
            if candidate.stat().st_size > _MAX_GZ_BYTES:
                return None
            return hashlib.md5(candidate.read_bytes(), usedforsecurity=False).hexdigest()
    return None


def identify_labels(labels: Tensor, path: Path, train: bool) -> str | None:
    """The dataset whose canonical ``train``/test label file holds ``labels``, or None.

    Args:
        labels: the labels read from ``path``.
        path: the label file (its ``.gz`` is checked for KMNIST).
        train: whether it is the training split's file.

    Returns:
        ``"mnist"``, ``"fashion-mnist"``, ``"kmnist"``, or ``None`` for other files.

    Example:
        >>> from lenetish import read_idx
        >>> from lenetish.data.identity import identify_labels
        >>> from lenetish.data.sources import bundled_mnist
        >>> path = bundled_mnist() / "t10k-labels-idx1-ubyte.gz"
        >>> labels = read_idx(path)
        >>> identify_labels(labels, path, train=False)
        'mnist'
        >>> identify_labels(labels[:100], path, train=False) is None  # a subset is not canonical
        True
    """
    split = 0 if train else 1
    digest = label_digest(labels)
    for name, digests in LABEL_SHA256.items():
        if digests[split] == digest:
            return name
    md5 = _gz_md5(path)
    for name, sums in LABEL_GZ_MD5.items():
        if md5 is not None and sums[split] == md5:
            return name
    return None


def with_overrides(
    info: DatasetInfo,
    *,
    mean: float | None = None,
    std: float | None = None,
    classes: Sequence[str] | None = None,
) -> DatasetInfo:
    """``info`` with the normalisation or class names a user gave instead of its own.

    Raises:
        InvalidArgumentError: ``mean`` or ``std`` is not finite, ``std`` is not positive, or
            ``classes`` is not a sequence of at least two names.
    """
    for label, value in (("mean", mean), ("std", std)):
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise InvalidArgumentError(f"{label} must be a finite number, got {value!r}")
    if std is not None and std <= 0:
        raise InvalidArgumentError(f"std must be above 0, got {std!r}")
    if classes is not None and (
        isinstance(classes, str) or len(classes) < 2 or not all(isinstance(c, str) for c in classes)
    ):
        raise InvalidArgumentError(
            f"classes must be a sequence of at least two names (index = label), got {classes!r}"
        )
    return replace(
        info,
        mean=info.mean if mean is None else float(mean),
        std=info.std if std is None else float(std),
        classes=info.classes if classes is None else tuple(classes),
    )


def unknown_files(where: str) -> DatasetInfo:
    """The settings of files that are none of the recognised datasets (logged at INFO)."""
    logger.info(
        "%s: not the canonical MNIST, Fashion-MNIST or KMNIST files; using MNIST's "
        "normalisation and digit class names (pass dataset=, or mean=/std=/classes=, to change)",
        where,
    )
    return replace(DATASETS["mnist"], name=CUSTOM, torchvision_name="", preparation="mnistify")


def recorded_dataset(model: nn.Module) -> DatasetInfo | None:
    """The dataset a model was trained on, as its weights file recorded it, or None."""
    info = getattr(model, MODEL_ATTRIBUTE, None)
    return info if isinstance(info, DatasetInfo) else None


def remember_dataset(model: nn.Module, info: DatasetInfo | None) -> None:
    """Make ``model`` carry ``info`` (read back by :func:`recorded_dataset`)."""
    if info is not None:
        setattr(model, MODEL_ATTRIBUTE, info)


def training_data_record(
    model: nn.Module, batches: object, known: DatasetInfo | None
) -> DatasetInfo | None:
    """The dataset a fit trains on, attached to ``model`` (``None`` when nobody knows it).

    What a lenetish loader knows (``batches.info``: it describes the data of this fit) wins
    over ``known`` (a trainer's ``data_info``); the model then carries it, so
    :func:`~lenetish.predict` and :func:`~lenetish.evaluate` prepare inputs the way this
    data was made without ``dataset=``.
    """
    from_loader = getattr(batches, "info", None)
    record = from_loader if isinstance(from_loader, DatasetInfo) else known
    if not isinstance(record, DatasetInfo):
        logger.warning(
            "lenetish: the training data records no dataset (a loader of your own), so the "
            "model will not know its normalisation, image preparation or class names: predict, "
            "evaluate, export and serve would assume MNIST's; build the loaders with "
            "make_loaders(your_folder_or_arrays), or set trainer.data_info = DatasetInfo(...) "
            "before fit"
        )
        return None
    remember_dataset(model, record)
    return record


def resolve_dataset(
    requested: str | DatasetInfo, recorded: DatasetInfo | None, *, who: str = "the model"
) -> DatasetInfo:
    """The dataset settings to use: ``requested``, checked against a model's record.

    Args:
        requested: ``"auto"`` (the record, else MNIST, logged), a dataset name, or a
            :class:`DatasetInfo` (e.g. :attr:`Loaders.info <lenetish.Loaders.info>`).
        recorded: what the model's weights file recorded, if anything.
        who: how messages name the model.

    Returns:
        The settings.

    Raises:
        DatasetMismatchError: ``requested`` names another dataset than the record.
        InvalidArgumentError: ``requested`` is an unknown name.
    """
    if isinstance(requested, str) and requested == "auto":
        if recorded is None:
            logger.info("%s records no dataset; using MNIST's normalisation", who)
            return DATASETS["mnist"]
        return recorded
    wanted = requested if isinstance(requested, DatasetInfo) else dataset_info(requested)
    if recorded is not None and CUSTOM not in (recorded.name, wanted.name):
        if recorded.name != wanted.name:
            raise DatasetMismatchError(
                f"{who} was trained on {recorded.name}, but dataset={wanted.name!r} was asked "
                f"for; its normalisation and class names are {recorded.name}'s: pass "
                f"dataset={recorded.name!r} (or 'auto', --dataset auto), or use a model trained "
                f"on {wanted.name}"
            )
        return recorded if isinstance(requested, str) else wanted
    return wanted


def _common_record(models: Sequence[nn.Module]) -> DatasetInfo | None:
    """The dataset the models' files recorded (one for all of them), or None."""
    records = {info.name: info for m in models if (info := recorded_dataset(m)) is not None}
    if len(records) > 1:
        raise DatasetMismatchError(
            f"the models of the ensemble were trained on different datasets "
            f"({', '.join(sorted(records))}); an ensemble's members must share one"
        )
    return next(iter(records.values()), None)


def dataset_for_models(models: Sequence[nn.Module], requested: str | DatasetInfo) -> DatasetInfo:
    """The settings for running ``models`` (one, or an ensemble): their records and ``requested``.

    Raises:
        DatasetMismatchError: the members of an ensemble, or ``requested`` and their record,
            name different datasets.
    """
    return resolve_dataset(requested, _common_record(models), who=f"the {type(models[0]).__name__}")


def check_loader_dataset(models: Sequence[nn.Module], loader: object) -> None:
    """Refuse a loader made for another dataset than the one the models recorded.

    A :class:`~lenetish.TensorLoader` from :func:`~lenetish.make_loaders` knows its dataset
    (``info``); other loaders, and models without a record, are not checked.

    Raises:
        DatasetMismatchError: the loader's data and the models' record name different datasets.
    """
    recorded, data = _common_record(models), getattr(loader, "info", None)
    if (
        recorded is not None
        and isinstance(data, DatasetInfo)
        and CUSTOM not in (data.name, recorded.name)
        and data.name != recorded.name
    ):
        raise DatasetMismatchError(
            f"the loader holds {data.name} data (normalised for {data.name}), but the "
            f"{type(models[0]).__name__} was trained on {recorded.name}; load the test data "
            f"with dataset={recorded.name!r} (or --dataset), or score the model on other data "
            "with a loader of your own"
        )
