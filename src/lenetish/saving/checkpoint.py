"""Checkpoints: full training state and model-only weights, written atomically, loaded safely.

A full checkpoint is a dict of plain containers and tensors (see
:meth:`lenetish.Trainer.checkpoint_state`) saved with :func:`torch.save` and loaded with
``torch.load(weights_only=True)``, so loading one never runs code from the file. Model-only
weights are also written as safetensors. Every write goes through :func:`atomic_write` (in
``lenetish._atomic``, the one writer of every file lenetish makes): a locked temporary file in
the same folder, flushed to disk, then renamed over the target, so a crash leaves the old file
or the new one, never half of one; a symbolic link, a device, a FIFO or a folder at the target
is refused. Reading weights from any accepted file (safetensors, checkpoints, plain
state dicts) is :mod:`lenetish.saving.weightfiles`.
"""

from __future__ import annotations

import json
import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lenetish._atomic import atomic_write as atomic_write  # the one writer, re-exported
from lenetish._atomic import remove_stale_temporaries as remove_stale_temporaries
from lenetish._pickle_scan import is_raw_pickle, refused_callbacks_message
from lenetish.data.identity import DatasetInfo, dataset_info, recorded_dataset
from lenetish.errors import CheckpointError

__all__ = [
    "CHECKPOINT_FORMAT_VERSION",
    "capture_rng_state",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
    "save_weights",
]

CHECKPOINT_FORMAT_VERSION = 1
_REQUIRED_KEYS = ("format_version", "model", "optimizer", "epoch", "global_step", "callbacks")


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Atomically save a full training state (from :meth:`lenetish.Trainer.checkpoint_state`).

    Raises:
        CheckpointError: the file could not be written (e.g. the disk is full) or ``state``
            holds an object that cannot be serialised; no file is left half-written.
    """
    atomic_write(path, lambda handle: torch.save(state, handle))


def safe_load(source: Path, what: str = "checkpoint") -> Any:
    """``torch.load(source, weights_only=True)`` onto the CPU, its failures as CheckpointError.

    Raises:
        CheckpointError: the file is damaged, or holds objects other than tensors and plain
            containers (refused, never run; the message names the callbacks whose state
            holds them, when it is a checkpoint's callback state).
    """
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # damaged files make torch.load raise many different types
        refused = isinstance(exc, pickle.UnpicklingError) and "global" in str(exc).lower()
        named = refused_callbacks_message(what, source) if refused else None
        if named is not None:  # a callback's state: say which, and what resumes it
            raise CheckpointError(named) from exc
        if refused or is_raw_pickle(source):  # torch's own text advises unsafe loading
            raise CheckpointError(
                f"{what} {source} was refused: it holds objects other than tensors and "
                "plain containers (or is a raw pickle), which could run code when loaded, so "
                "lenetish does not open it. lenetish loads the checkpoints it writes "
                "(save_checkpoint, ModelCheckpoint, lenetish train), model weights as "
                ".safetensors, and plain state dicts (torch.save(model.state_dict(), path)); "
                "where the file was made, save the weights with "
                "safetensors.torch.save_file(model.state_dict(), 'model.safetensors')"
            ) from exc
        detail = "" if "weights_only" in str(exc) else f" ({type(exc).__name__}: {exc})"
        raise CheckpointError(
            f"{what} {source} is damaged or truncated and cannot be read{detail}".replace("\n", " ")
        ) from exc


def is_training_checkpoint(content: object) -> bool:
    """Whether ``content`` (a loaded file) has the keys of a lenetish training checkpoint."""
    return (
        isinstance(content, dict)
        and all(k in content for k in _REQUIRED_KEYS)
        and isinstance(content["format_version"], int)
    )


def check_checkpoint(content: object, source: Path) -> dict[str, Any]:
    """``content`` as a training checkpoint, or CheckpointError saying why it is not one."""
    if not is_training_checkpoint(content):
        raise CheckpointError(
            f"{source} is not a lenetish training checkpoint (it lacks the keys "
            f"{', '.join(_REQUIRED_KEYS)}); for model weights use load_weights"
        )
    assert isinstance(content, dict)
    if content["format_version"] > CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {source} has format version {content['format_version']}, newer "
            f"than this lenetish reads ({CHECKPOINT_FORMAT_VERSION}); upgrade lenetish"
        )
    return content


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a full checkpoint safely (tensors and plain containers only, onto the CPU).

    Args:
        path: a file written by :meth:`Trainer.save_checkpoint
            <lenetish.Trainer.save_checkpoint>` or :class:`~lenetish.ModelCheckpoint`.

    Returns:
        The checkpoint's dict.

    Raises:
        CheckpointError: the file is missing, damaged, not a lenetish checkpoint, from a newer
            format version, or holds objects other than tensors and plain containers (which
            could run code when unpickled; they are refused, not run).

    Example:
        >>> import tempfile
        >>> from lenetish import MNISTConvNet, Trainer
        >>> trainer = Trainer(MNISTConvNet(), epochs=2, device="cpu")
        >>> _ = trainer.fit([(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))])
        >>> path = f"{tempfile.mkdtemp()}/last.pt"
        >>> trainer.save_checkpoint(path)
        >>> checkpoint = load_checkpoint(path)
        >>> checkpoint["epoch"], checkpoint["model_class"], "optimizer" in checkpoint
        (2, 'MNISTConvNet', True)
    """
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"checkpoint {source} does not exist (or is not a file)")
    return check_checkpoint(safe_load(source), source)


def save_weights(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    dataset: DatasetInfo | str | None = None,
) -> None:
    """Atomically save a model's weights (its ``state_dict``) as a safetensors file.

    The file also records the network's class and, when known, the dataset it was trained on
    (name, normalisation, class names), which :func:`~lenetish.load_model`,
    :func:`~lenetish.predict` and the command line use.

    Args:
        model: the network whose weights to save.
        path: the file to write (``.safetensors`` by convention).
        dataset: the dataset the model was trained on, e.g. ``loaders.info`` or
            ``"fashion-mnist"`` (default: what the model carries from the file it was loaded
            from, if anything; else nothing is recorded).

    Raises:
        CheckpointError: the file could not be written.
        InvalidArgumentError: ``dataset`` is an unknown name.

    Example:
        >>> import tempfile
        >>> from lenetish import MNISTConvNet
        >>> path = f"{tempfile.mkdtemp()}/model.safetensors"
        >>> save_weights(MNISTConvNet(), path, dataset="fashion-mnist")
        >>> load_model(path).lenetish_dataset.name
        'fashion-mnist'
    """
    from safetensors.torch import save

    info = dataset_info(dataset) if isinstance(dataset, str) else dataset
    info = recorded_dataset(model) if info is None else info
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    metadata = {"format": "pt", "producer": "lenetish", "model": type(model).__name__}
    if info is not None:
        metadata["dataset"] = json.dumps(info.record())
    payload = save(tensors, metadata=metadata)
    atomic_write(path, lambda handle: handle.write(payload))


def load_model_state(model: nn.Module, weights: dict[str, torch.Tensor], *, source: str) -> None:
    """``model.load_state_dict(weights)`` with a message naming every mismatched layer."""
    problems = state_problems(model, weights)
    if problems:
        raise CheckpointError(
            f"{source} does not fit this {type(model).__name__} ({'; '.join(problems)}); "
            "build the model with the options it was trained with"
        )
    model.load_state_dict(weights)


def state_problems(model: nn.Module, weights: dict[str, torch.Tensor]) -> list[str]:
    """The layers of ``weights`` that do not fit ``model``: missing, unexpected, resized."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    resized = sorted(
        f"{name} {tuple(weights[name].shape)} vs {tuple(expected[name].shape)}"
        for name in set(expected) & set(weights)
        if weights[name].shape != expected[name].shape
    )
    return [
        f"{label}: {', '.join(names)}"
        for label, names in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("different shape (file vs model)", resized),
        )
        if names
    ]


def capture_rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's (CPU and CUDA) generators, as tensors."""
    numpy_state = np.random.get_state(legacy=True)
    assert isinstance(numpy_state, tuple)
    return {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "position": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back the generator states :func:`capture_rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
