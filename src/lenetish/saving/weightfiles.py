"""Reading model weights from any file lenetish accepts, told apart by content, not by name.

Three kinds of file hold weights:

* safetensors files (:func:`~lenetish.save_weights`), with the network's class and the dataset
  it was trained on in their metadata;
* lenetish training checkpoints (``last.pt``, ``best.pt``), which record the same;
* plain state dicts, as ``torch.save(model.state_dict(), "mnist_model.pkl")`` writes them
  (any file name; read with ``weights_only=True``, so nothing in them runs). They record
  nothing, so :func:`load_model` matches their parameter names and shapes against lenetish's
  networks.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from torch import Tensor, nn

from lenetish.data.identity import DatasetInfo, remember_dataset
from lenetish.errors import CheckpointError
from lenetish.saving.checkpoint import (
    check_checkpoint,
    is_training_checkpoint,
    load_model_state,
    safe_load,
    state_problems,
)
from lenetish.saving.weight_checks import (
    check_record_fits,
    check_weight_values,
    refuse_unusual_tensors,
)

__all__ = [
    "SavedWeights",
    "load_model",
    "load_weights",
    "read_weights",
    "saved_dataset",
    "saved_model_class",
]

#: The caller's network class: ``load_weights(MNISTConvNet(), path)`` is an MNISTConvNet.
Model = TypeVar("Model", bound=nn.Module)

WeightsKind = Literal["safetensors", "checkpoint", "state_dict"]
_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel's and torch.compile's


@dataclass(frozen=True)
class SavedWeights:
    """What a weights file holds.

    Attributes:
        tensors: the state dict, ``{parameter name: tensor}``, on the CPU.
        kind: ``"safetensors"``, ``"checkpoint"`` (a lenetish training checkpoint) or
            ``"state_dict"`` (a plain ``torch.save(model.state_dict(), path)`` file).
        model_class: the network's class name, when the file records it.
        dataset: the dataset the network was trained on, when the file records it.

    Example:
        >>> import tempfile
        >>> from lenetish import MNISTConvNet, save_weights
        >>> from lenetish.saving.weightfiles import read_weights
        >>> path = f"{tempfile.mkdtemp()}/model.safetensors"
        >>> save_weights(MNISTConvNet(), path, dataset="fashion-mnist")
        >>> saved = read_weights(path)
        >>> saved.kind, saved.model_class, saved.dataset.name, saved.tensors["fc2.bias"].shape
        ('safetensors', 'MNISTConvNet', 'fashion-mnist', torch.Size([10]))
    """

    tensors: dict[str, Tensor]
    kind: WeightsKind
    model_class: str | None
    dataset: DatasetInfo | None


def _is_safetensors(path: Path) -> bool:
    """Whether ``path`` starts like a safetensors file: a length, then a JSON header."""
    with path.open("rb") as stream:
        head = stream.read(9)
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 0 < length <= path.stat().st_size - 8


def _dataset(record: object, source: Path) -> DatasetInfo | None:
    """The dataset a file records (a dict, or its JSON text), or None."""
    if record is None:
        return None
    if isinstance(record, str):
        try:
            record = json.loads(record)
        except ValueError as exc:
            raise CheckpointError(
                f"weights file {source} holds a damaged dataset record ({exc}); pass "
                "dataset= (or --dataset) to say what the model was trained on"
            ) from exc
    if not isinstance(record, Mapping):
        raise CheckpointError(
            f"weights file {source} holds a damaged dataset record (a {type(record).__name__}); "
            "pass dataset= (or --dataset) to say what the model was trained on"
        )
    return DatasetInfo.from_record(record, source=str(source))


def _read_safetensors(source: Path) -> SavedWeights:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        tensors = load_file(source)
        with safe_open(str(source), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as exc:  # SafetensorError, OSError, or a header that is not JSON
        raise CheckpointError(f"weights file {source} is damaged ({exc})") from exc
    dataset = _dataset(metadata.get("dataset"), source)
    return SavedWeights(tensors, "safetensors", metadata.get("model"), dataset)


def _plain_state_dict(content: object) -> dict[str, Tensor] | None:
    """``content`` as a state dict (names to tensors), prefixes of wrappers removed, or None."""
    if not isinstance(content, Mapping) or not content:
        return None
    if not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in content.items()):
        return None
    weights = dict(content)
    for prefix in _PREFIXES:
        if all(name.startswith(prefix) for name in weights):
            weights = {name.removeprefix(prefix): value for name, value in weights.items()}
    return weights


def _load_checked(model: nn.Module, saved: SavedWeights, source: str) -> None:
    """Load ``saved`` into ``model`` once names, shapes, kinds, values and record fit."""
    problems = state_problems(model, saved.tensors)
    if not problems:
        check_weight_values(model, saved.tensors, source=source)
        check_record_fits(model, saved.dataset, source=source)
    load_model_state(model, saved.tensors, source=source)  # names what does not fit
    remember_dataset(model, saved.dataset)


def read_weights(path: str | os.PathLike[str]) -> SavedWeights:
    """Read the weights in ``path``, whatever kind of weights file it is (told by content).

    Args:
        path: a safetensors file, a lenetish training checkpoint, or a plain state dict saved
            with ``torch.save(model.state_dict(), path)``, under any name.

    Returns:
        The :class:`SavedWeights`.

    Raises:
        CheckpointError: the file is missing, damaged, holds objects that could run code,
            holds something other than weights (the message says what was found), or holds
            sparse, quantized or meta tensors.

    Example:
        >>> import tempfile
        >>> from lenetish import MNISTConvNet
        >>> path = f"{tempfile.mkdtemp()}/mnist_model.pkl"
        >>> torch.save(MNISTConvNet().state_dict(), path)
        >>> from lenetish.saving.weightfiles import read_weights
        >>> saved = read_weights(path)
        >>> saved.kind, saved.model_class, len(saved.tensors)
        ('state_dict', None, 8)
    """
    source = Path(path)
    saved = _read_any(source)
    refuse_unusual_tensors(saved.tensors, source)
    return saved


def _read_any(source: Path) -> SavedWeights:
    """The weights of ``source``, whatever kind of file it is (see :func:`read_weights`)."""
    if not source.is_file():
        raise CheckpointError(f"weights file {source} does not exist (or is not a file)")
    if _is_safetensors(source) or source.suffix == ".safetensors":
        return _read_safetensors(source)
    content = safe_load(source, "weights file")
    if is_training_checkpoint(content):
        checkpoint = check_checkpoint(content, source)
        model_class = checkpoint.get("model_class")
        weights = _plain_state_dict(checkpoint["model"])
        if weights is None:
            raise CheckpointError(
                f"checkpoint {source} is damaged: its model is not a dictionary of layer "
                "names to tensors; use another checkpoint (e.g. best.pt or an earlier copy)"
            )
        return SavedWeights(
            weights,
            "checkpoint",
            model_class if isinstance(model_class, str) else None,
            _dataset(checkpoint.get("dataset"), source),
        )
    weights = _plain_state_dict(content)
    if weights is None:
        found = (
            f"a dict with the keys {', '.join(map(str, list(content)[:6]))}"
            if isinstance(content, Mapping) and content
            else f"a {type(content).__name__}"
        )
        raise CheckpointError(
            f"{source} holds {found}, not model weights: lenetish reads safetensors files, its "
            "training checkpoints, and plain state dicts ({parameter name: tensor}, as "
            "torch.save(model.state_dict(), path) writes them)"
        )
    return SavedWeights(weights, "state_dict", None, None)


def load_weights(model: Model, path: str | os.PathLike[str]) -> Model:
    """Load the weights in ``path``, whatever kind of weights file it is, into ``model``.

    :func:`~lenetish.saving.weightfiles.read_weights` tells the kinds apart.

    The model also takes on the dataset the file records, if any (used by
    :func:`~lenetish.predict` and :func:`~lenetish.evaluate`).

    Args:
        model: a network built with the options the weights were trained with.
        path: a ``.safetensors`` file, a training checkpoint such as ``last.pt``, or a plain
            state dict (``.pt``, ``.pth``, ``.pkl``, any name).

    Returns:
        ``model``, for chaining.

    Raises:
        CheckpointError: the file is missing or damaged, its tensors do not fit ``model``
            (the message names the mismatched layers), are not floating point where the
            model's are (they are not cast), hold NaN or infinity, or its dataset record
            names more classes than the model has outputs.

    Example:
        >>> import tempfile
        >>> from lenetish import MNISTConvNet, save_weights
        >>> trained = MNISTConvNet()
        >>> path = f"{tempfile.mkdtemp()}/model.safetensors"
        >>> save_weights(trained, path, dataset="mnist")
        >>> model = load_weights(MNISTConvNet(), path)
        >>> torch.equal(model.fc2.weight, trained.fc2.weight), model.lenetish_dataset.name
        (True, 'mnist')
    """
    saved = read_weights(path)
    _load_checked(model, saved, str(path))
    return model


def saved_model_class(path: str | os.PathLike[str]) -> str:
    """The network class recorded in a weights file or checkpoint (``MNISTConvNet`` if none).

    Raises:
        CheckpointError: the file is missing or damaged.
    """
    return read_weights(path).model_class or "MNISTConvNet"


def saved_dataset(path: str | os.PathLike[str]) -> DatasetInfo | None:
    """The dataset recorded in a weights file or checkpoint, or None (e.g. a plain state dict).

    Raises:
        CheckpointError: the file is missing or damaged.
    """
    return read_weights(path).dataset


def _matching_network(weights: dict[str, Tensor], source: Path) -> nn.Module:
    """The first of lenetish's networks whose parameter names and shapes are ``weights``'."""
    from lenetish.models import MODELS

    candidates = [(name, network()) for name, network in MODELS.items()]
    scored = [(state_problems(model, weights), name, model) for name, model in candidates]
    for problems, _, model in scored:
        if not problems:
            return model
    problems, name, _ = min(scored, key=lambda item: sum(p.count(",") + 1 for p in item[0]))
    raise CheckpointError(
        f"{source} is a plain state dict that fits none of lenetish's networks "
        f"({', '.join(MODELS)}); against {name}: {'; '.join(problems)}. Build your own "
        "network and load it with load_weights(model, path)"
    )


def load_model(path: str | os.PathLike[str]) -> nn.Module:
    """Rebuild the network saved in ``path`` with its weights, in eval mode.

    Safetensors files and checkpoints name their network; a plain state dict is matched
    against lenetish's networks by parameter names and shapes (the blog post's
    ``mnist_model.pkl`` is an :class:`~lenetish.MNISTConvNet`). The network carries the
    dataset the file records (see :mod:`lenetish.data.identity`).

    Args:
        path: a ``.safetensors`` file from :func:`~lenetish.save_weights`, a training
            checkpoint, or a plain state dict under any name.

    Returns:
        The network, on the CPU, in eval mode.

    Raises:
        CheckpointError: the file is missing or damaged, names an unknown network, is a
            state dict that fits none of lenetish's networks (the message names the
            mismatched keys), or holds weights :func:`load_weights` refuses (not floating
            point, not finite, a record of more classes than outputs).

    Example:
        >>> import tempfile
        >>> from lenetish import MNISTConvNet
        >>> path = f"{tempfile.mkdtemp()}/mnist_model.pkl"
        >>> torch.save(MNISTConvNet().state_dict(), path)
        >>> type(load_model(path)).__name__
        'MNISTConvNet'
    """
    from lenetish.models import MODELS

    source = Path(path)
    saved = read_weights(source)
    if saved.kind == "state_dict":
        model = _matching_network(saved.tensors, source)
    else:
        name = saved.model_class or "MNISTConvNet"
        if name not in MODELS:
            raise CheckpointError(
                f"{path} holds a {name}, which lenetish cannot rebuild; load it into your own "
                "network with load_weights"
            )
        model = MODELS[name]()
    _load_checked(model, saved, str(source))
    return model.eval()


def looks_like_weights(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` looks like a weights file by content (not an image, not missing)."""
    source = Path(path)
    try:
        with source.open("rb") as stream:
            head = stream.read(8)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80" or _is_safetensors(source)
