"""For the command line: which file is a model, and which data and settings a model is used with.

``evaluate``, ``predict`` and ``export`` take weights files of any kind (told by content, see
:mod:`lenetish.saving.weightfiles`); ``evaluate`` and ``predict --sample`` read the test data of the
dataset the model recorded unless ``--dataset`` says otherwise, and a ``--dataset`` that
contradicts the record is an error.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from lenetish._text import printable
from lenetish.catalog import CUSTOM, DIGITS, DatasetInfo
from lenetish.data import make_test_loader
from lenetish.data.identity import dataset_for_models, recorded_dataset
from lenetish.data.loaders import TensorLoader
from lenetish.errors import DatasetMismatchError
from lenetish.evaluation.inputs import IMAGE_SUFFIXES
from lenetish.saving.weightfiles import looks_like_weights

__all__ = ["WEIGHT_SUFFIXES", "is_weights_path", "label_text", "model_test_loader"]

WEIGHT_SUFFIXES = (".pt", ".pth", ".pkl", ".bin", ".ckpt", ".safetensors")


def is_weights_path(name: str | os.PathLike[str]) -> bool:
    """Whether ``name`` is a weights file: by its suffix, else (not an image suffix) by content."""
    path = Path(name)
    suffix = path.suffix.lower()
    if suffix in WEIGHT_SUFFIXES:
        return True
    return suffix not in IMAGE_SUFFIXES and path.is_file() and looks_like_weights(path)


def model_test_loader(
    model: nn.Module,
    checkpoint: str,
    *,
    data: str | None,
    dataset: str,
    download: bool,
    device: str | None = None,
) -> tuple[TensorLoader, DatasetInfo]:
    """The test split to score ``model`` on, normalised as it was trained, and its settings.

    Args:
        model: the network (carrying its dataset when the file recorded one).
        checkpoint: the file it came from (for messages).
        data: ``--data``.
        dataset: ``--dataset`` (``"auto"``: the model's record; without one, the files').
        download: whether missing files may be downloaded.
        device: where the tensors live.

    Raises:
        DatasetMismatchError: ``--dataset`` contradicts the model's record, or the files in
            ``--data`` are another recognised dataset than the model's.
    """
    recorded = recorded_dataset(model)
    info = dataset_for_models([model], dataset)  # an explicit contradiction is refused here
    own = recorded if dataset == "auto" and recorded is not None else None
    wanted = dataset if own is None or own.name == CUSTOM else own.name
    custom = own is not None and own.name == CUSTOM  # the model's own files: its settings
    try:
        loader = make_test_loader(
            data,
            dataset=wanted,
            download=download,
            device=device,
            batch_size=2000,
            mean=own.mean if custom and own else None,
            std=own.std if custom and own else None,
            classes=own.classes if custom and own else None,
        )
    except DatasetMismatchError as exc:
        if own is None:
            raise
        raise DatasetMismatchError(
            f"{checkpoint} was trained on {wanted} (its file records it), and the data found "
            f"is another dataset: {exc}. Give --data a folder holding {wanted}'s files"
        ) from exc
    return loader, loader.info or info


def label_text(labels: list[int], classes: tuple[str, ...]) -> str:
    """Labels as the command line prints them: numbers for digits, else class names (escaped)."""
    if classes == DIGITS:
        return str(labels)
    names = (printable(classes[label]) if label < len(classes) else str(label) for label in labels)
    return "[" + ", ".join(f"'{name}'" for name in names) + "]"
