"""The tables the command line lists before torch is imported: datasets, options, formats.

Nothing here imports torch, so ``lenetish --help`` and argument checking stay fast; the
modules that do the work (:mod:`lenetish.data.identity`, :mod:`lenetish.saving.export`) use
these tables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from lenetish.errors import CheckpointError

__all__ = [
    "CUSTOM",
    "DATASETS",
    "DIGITS",
    "EXPORT_FORMATS",
    "OPTIMIZERS",
    "PRECISIONS",
    "PREPARATIONS",
    "SCHEDULERS",
    "DatasetInfo",
    "OptimizerName",
    "Precision",
    "SchedulerName",
]

# The names the Trainer, the recipes and the command line accept, spelled once.
OptimizerName = Literal["adam", "sgd"]
SchedulerName = Literal["onecycle", "step"]
Precision = Literal["auto", "32", "bf16-mixed", "16-mixed"]
OPTIMIZERS: tuple[OptimizerName, ...] = get_args(OptimizerName)
SCHEDULERS: tuple[SchedulerName, ...] = get_args(SchedulerName)
PRECISIONS: tuple[Precision, ...] = get_args(Precision)

CUSTOM = "custom"
"""The name of a :class:`DatasetInfo` for files that are none of the recognised datasets."""

PREPARATIONS: tuple[str, ...] = ("mnistify", "fashionify", "resize")
"""How an image file becomes a picture for a model, by name (see
:mod:`lenetish.evaluation.prepare`): MNIST's digit preparation, Fashion-MNIST's, or a plain
greyscale resize to 28x28 (what :func:`~lenetish.make_loaders` does to a folder of images)."""

MAX_CLASSES = 1000
"""The most class names a dataset record may hold (idx labels are bytes: at most 256 classes)."""
MAX_CLASS_NAME = 200
"""The longest class name a dataset record may hold, in characters."""


@dataclass(frozen=True)
class DatasetInfo:
    """What lenetish knows about one member of the MNIST family (or a user's own files).

    Attributes:
        name: the name ``make_loaders`` accepts (``"mnist"``, ``"fashion-mnist"``,
            ``"kmnist"``), or ``"custom"`` for files that are none of them.
        torchvision_name: torchvision's class, which is also its folder under ``root``
            (empty for ``"custom"``).
        mean: mean pixel value of the training images, scaled to ``[0, 1]``.
        std: standard deviation of the training pixels, scaled to ``[0, 1]``.
        classes: the class names, index = label.
        preparation: how an image file is made into one of this dataset's pictures: one of
            :data:`~lenetish.catalog.PREPARATIONS`, or ``None`` for the dataset's own (see
            :attr:`~lenetish.DatasetInfo.image_preparation`). A folder of images read by
            :func:`~lenetish.make_loaders` records ``"resize"``, so that
            :func:`~lenetish.predict` prepares files as the training images were.

    Example:
        >>> info = DATASETS["fashion-mnist"]
        >>> info.classes[0], info.record()["mean"]
        ('T-shirt/top', 0.286)
        >>> DatasetInfo.from_record(info.record()) == info
        True
    """

    name: str
    torchvision_name: str
    mean: float
    std: float
    classes: tuple[str, ...]
    preparation: str | None = None

    @property
    def image_preparation(self) -> str:
        """The name of how an image file becomes a picture of this dataset.

        :attr:`preparation` when recorded; else ``"fashionify"`` for Fashion-MNIST,
        ``"mnistify"`` for MNIST and KMNIST, and ``"resize"`` for a record of one's own data
        (``"custom"``): the plain greyscale resize that an export's input contract describes
        and a torchvision pipeline (``Grayscale``, ``Resize``) does. Idx files of one's own
        record ``"mnistify"`` (they are MNIST-style digits).
        """
        if self.preparation is not None:
            return self.preparation
        if self.name == CUSTOM:
            return "resize"
        return "fashionify" if self.name == "fashion-mnist" else "mnistify"

    def record(self) -> dict[str, Any]:
        """The dataset as plain values, as weights files and checkpoints store it."""
        record: dict[str, Any] = {
            "name": self.name,
            "mean": self.mean,
            "std": self.std,
            "classes": list(self.classes),
        }
        if self.preparation is not None:  # older records have none: the name decides
            record["preparation"] = self.preparation
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any], *, source: str = "the record") -> DatasetInfo:
        """Rebuild a :class:`DatasetInfo` from :meth:`record`'s values.

        Raises:
            CheckpointError: the record is damaged (a value missing or of the wrong kind).
        """
        names = record.get("classes")
        if isinstance(names, (list, tuple)) and (
            len(names) > MAX_CLASSES or any(len(str(c)) > MAX_CLASS_NAME for c in names)
        ):
            raise CheckpointError(
                f"{source} holds a dataset record of {len(names):,} class names (or a name "
                f"longer than {MAX_CLASS_NAME} characters), more than the {MAX_CLASSES:,} "
                "lenetish accepts: it is damaged, not a dataset; pass dataset= (or --dataset) "
                "to say what the model was trained on"
            )
        try:
            name, mean, std = str(record["name"]), float(record["mean"]), float(record["std"])
            if names is None:
                raise KeyError("classes")
            if not isinstance(names, (list, tuple)):
                raise TypeError(f"classes is a {type(names).__name__}, not a list of names")
            classes = tuple(str(c) for c in names)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{source} holds a damaged dataset record ({type(exc).__name__}: {exc}); "
                "pass dataset= (or --dataset) to say what the model was trained on"
            ) from exc
        if not (math.isfinite(mean) and math.isfinite(std) and std > 0 and len(classes) >= 2):
            raise CheckpointError(
                f"{source} holds a damaged dataset record (mean {mean}, std {std}, "
                f"{len(classes)} classes); pass dataset= (or --dataset) to say what the model "
                "was trained on"
            )
        preparation = record.get("preparation")
        if preparation is not None and preparation not in PREPARATIONS:
            raise CheckpointError(
                f"{source} holds a dataset record with preparation {str(preparation)[:40]!r}, "
                f"which is none of {', '.join(PREPARATIONS)}: it is damaged; pass dataset= "
                "(or --dataset) to say what the model was trained on"
            )
        known = DATASETS.get(name)
        return cls(name, known.torchvision_name if known else "", mean, std, classes, preparation)


DIGITS = tuple(str(d) for d in range(10))

DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("mnist", "MNIST", 0.1307, 0.3081, DIGITS),
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

#: The formats :func:`~lenetish.export_model` writes, with the file suffix each one gets.
EXPORT_FORMATS = {
    "safetensors": ".safetensors",
    "pt2": ".pt2",
    "torchscript": ".torchscript.pt",
    "onnx": ".onnx",
    "state_dict": ".state_dict.pt",
}
