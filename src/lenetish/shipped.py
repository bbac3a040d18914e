"""Weights trained by lenetish's own recipes, shipped inside the package.

Each ``weights/NAME.safetensors`` sits beside ``weights/NAME.json``, which records the recipe,
the seed, the test accuracy measured when the weights were made, the command, and the file's
SHA-256. :func:`pretrained` checks the hash before loading, so a damaged install is caught.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import Any

from torch import nn

from lenetish.data.identity import DATASETS, recorded_dataset, remember_dataset
from lenetish.errors import CheckpointError, InvalidArgumentError
from lenetish.recipes import RECIPES, get_recipe
from lenetish.saving.weightfiles import load_weights

__all__ = ["available_pretrained", "pretrained", "pretrained_info"]


def _folder() -> Any:
    return resources.files("lenetish") / "weights"


def available_pretrained() -> list[str]:
    """The names of the shipped weights.

    Returns:
        The names, sorted.

    Example:
        >>> from lenetish import available_pretrained
        >>> available_pretrained()
        ['best', 'default']
    """
    return sorted(
        entry.name.removesuffix(".json")
        for entry in _folder().iterdir()
        if entry.name.endswith(".json")
    )


def pretrained_info(name: str = "default") -> dict[str, Any]:
    """What is recorded about the shipped weights ``name``: recipe, seed, accuracy, hash.

    Args:
        name: which weights (see :func:`available_pretrained`).

    Returns:
        The record, with the keys ``recipe``, ``seed``, ``test_accuracy``, ``sha256``,
        ``command`` and more.

    Raises:
        InvalidArgumentError: no weights of that name are shipped.
        CheckpointError: the record is damaged (not JSON, or without its recipe and hash).

    Example:
        >>> from lenetish import pretrained_info
        >>> info = pretrained_info("default")
        >>> info["recipe"], info["test_accuracy"]
        ('default', 0.9959)
    """
    names = available_pretrained()
    if name not in names:
        raise InvalidArgumentError(
            f"no pretrained weights called {name!r}; shipped: {', '.join(names) or 'none'}"
        )
    try:
        info = json.loads((_folder() / f"{name}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
        raise _damaged_record(name, f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(info, dict):
        raise _damaged_record(name, f"a {type(info).__name__}, not a dictionary")
    for key in ("recipe", "sha256"):
        if not isinstance(info.get(key), str):
            raise _damaged_record(name, f"no {key}")
    return info


def _damaged_record(name: str, problem: str) -> CheckpointError:
    return CheckpointError(
        f"the record of the shipped weights {name!r} (weights/{name}.json) is damaged "
        f"({problem}); reinstall lenetish (pip install --force-reinstall of the wheel or "
        "checkout you installed it from)"
    )


def pretrained(name: str = "default") -> nn.Module:
    """A network with the shipped weights ``name`` loaded, in eval mode, on the CPU.

    Args:
        name: which weights (see :func:`available_pretrained`): ``"default"`` is the seed's
            MNISTConvNet trained with the ``default`` recipe (about 1 MB), ``"best"`` the
            MNISTWideNet trained with the ``best`` recipe (about 2.3 MB).

    Returns:
        The network, ready for :func:`~lenetish.predict`.

    Raises:
        InvalidArgumentError: no weights of that name are shipped.
        CheckpointError: the file's SHA-256 differs from the recorded one, its record is
            damaged, or it names a recipe lenetish does not have.

    Example:
        >>> from lenetish import load_split, predict, pretrained
        >>> model = pretrained("default")
        >>> images, labels = load_split(train=False)
        >>> predict(model, images[:8]).labels.tolist()  # raw 0-255 pixels, as in the files
        [7, 2, 1, 0, 4, 1, 4, 9]
        >>> labels[:8].tolist()
        [7, 2, 1, 0, 4, 1, 4, 9]
    """
    info = pretrained_info(name)
    payload = (_folder() / f"{name}.safetensors").read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    if digest != info["sha256"]:
        raise CheckpointError(
            f"the shipped weights {name!r} have SHA-256 {digest}, not the recorded "
            f"{info['sha256']}; reinstall lenetish"
        )
    if info["recipe"] not in RECIPES:
        raise _damaged_record(name, f"an unknown recipe {info['recipe']!r}")
    model = get_recipe(info["recipe"]).build_model()
    with resources.as_file(_folder() / f"{name}.safetensors") as path:
        load_weights(model, path)
    if recorded_dataset(model) is None:  # every shipped set was trained on MNIST
        remember_dataset(model, DATASETS["mnist"])
    return model.eval()
