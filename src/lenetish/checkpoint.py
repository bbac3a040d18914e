"""Checkpoints: full training state and model-only weights, written atomically, loaded safely.

A full checkpoint is a dict of plain containers and tensors (see
:meth:`lenetish.Trainer.checkpoint_state`) saved with :func:`torch.save` and loaded with
``torch.load(weights_only=True)``, so loading one never runs code from the file. Model-only
weights are also written as safetensors. Every write goes to a temporary file in the same folder,
is flushed to disk, then renamed over the target: a crash leaves the old file or the new one,
never half of one. Reading weights from any accepted file (safetensors, checkpoints, plain
state dicts) is :mod:`lenetish.weightfiles`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import pickletools
import random
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import nn

from lenetish.errors import CheckpointError
from lenetish.identity import DatasetInfo, dataset_info, recorded_dataset

__all__ = [
    "CHECKPOINT_FORMAT_VERSION",
    "capture_rng_state",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
    "save_weights",
]

_MOVED = ("load_model", "load_weights", "saved_model_class", "saved_dataset")


def __getattr__(name: str) -> Any:
    """``load_weights`` and ``load_model`` moved to :mod:`lenetish.weightfiles`; found here too."""
    if name in _MOVED:
        from lenetish import weightfiles

        return getattr(weightfiles, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


CHECKPOINT_FORMAT_VERSION = 1
_REQUIRED_KEYS = ("format_version", "model", "optimizer", "epoch", "global_step", "callbacks")


_TEMPORARY_NAME = re.compile(
    r"^\.(?P<target>.+)\.(?P<pid>[0-9]{1,10})\.[0-9a-f]{8}\.tmp$"
    # the names earlier versions used, for the kinds of file they wrote
    r"|^\.(?P<old_target>.+\.(?:pt|pth|pt2|safetensors|onnx))\.(?P<old_pid>[0-9]{1,10})"
    r"\.tmp(?:\.onnx(?:\.data)?)?$"
)
"""Temporary files :func:`atomic_write` makes: ``.<target>.<pid>.<8 hex digits>.tmp``.

Also matched: ``.<target>.<pid>.tmp`` and ``.<target>.<pid>.tmp.onnx[.data]`` for the targets
earlier versions wrote (checkpoints, weights, exports), so what they left is cleaned up too;
a user's own ``.notes.123.tmp`` is not taken for one.
"""


def _process_is_dead(pid: int) -> bool:
    """Whether no process ``pid`` exists on this machine (``False`` when unsure)."""
    if pid == os.getpid() or os.name != "posix":
        return False
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # PermissionError: alive, owned by another user
        return False
    return False


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that writers which died (e.g. by SIGKILL) left in ``folder``.

    Only files whose name has the pattern :func:`atomic_write` uses and whose process id
    belongs to no running process are removed; a live process's file is never touched.
    Called by every :func:`atomic_write`, so an orphan disappears at the next write there.

    Args:
        folder: the folder to clean.

    Returns:
        The files removed.

    Example:
        >>> import tempfile
        >>> remove_stale_temporaries(tempfile.mkdtemp())
        []
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY_NAME.match(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        if _process_is_dead(int(match["pid"] or match["old_pid"])):
            try:
                os.unlink(entry.path)
            except OSError:  # removed meanwhile, or not ours to remove: leave it
                continue
            removed.append(Path(entry.path))
    return removed


def _failure_message(target: Path, exc: BaseException) -> str:
    """Say why writing ``target`` failed; torch wraps the OSError of a full disk."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    kept = "any earlier file there is left as it was"
    if isinstance(cause, OSError):
        advice = "; free some space and try again" if cause.errno == errno.ENOSPC else ""
        return f"could not write {target}: {cause}; {kept}{advice}"
    if isinstance(exc, (pickle.PicklingError, TypeError, AttributeError)):
        return (
            f"could not write {target}: the object cannot be serialised "
            f"({type(exc).__name__}: {exc}); a checkpoint may hold only tensors, numbers, "
            f"strings and lists/tuples/dicts of them; {kept}"
        )
    return f"could not write {target} ({type(exc).__name__}: {exc}); {kept}".replace("\n", " ")


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write`` on a temporary file beside ``path``, sync it, then rename it to ``path``.

    Whatever happens (a full disk, an object that cannot be serialised, Ctrl-C), the temporary
    file is removed and ``path`` keeps its earlier contents. Temporary files left by writers
    that were killed are removed first (:func:`remove_stale_temporaries`).

    Args:
        path: the file to write.
        write: called with the open temporary file; it writes the whole contents.

    Raises:
        CheckpointError: the write failed (the message says why); ``path`` is untouched.

    Example:
        >>> import tempfile
        >>> target = f"{tempfile.mkdtemp()}/hello.bin"
        >>> atomic_write(target, lambda handle: handle.write(b"hello"))
        >>> open(target, "rb").read()
        b'hello'
    """
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target.parent)
        with open(temporary, "xb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        if isinstance(exc, CheckpointError) or not isinstance(exc, Exception):
            raise  # already named, or KeyboardInterrupt/SystemExit: let it through
        raise CheckpointError(_failure_message(target, exc)) from exc


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Atomically save a full training state (from :meth:`lenetish.Trainer.checkpoint_state`).

    Raises:
        CheckpointError: the file could not be written (e.g. the disk is full) or ``state``
            holds an object that cannot be serialised; no file is left half-written.
    """
    atomic_write(path, lambda handle: torch.save(state, handle))


def _is_raw_pickle(path: Path) -> bool:
    """Whether ``path`` is one whole pickle stream (its opcodes parsed, nothing run)."""
    try:
        with path.open("rb") as stream:
            if stream.read(4) == b"PK\x03\x04":
                return False  # torch's zip format: its refusals name a global
            stream.seek(0)
            return any(opcode.name == "STOP" for opcode, _, _ in pickletools.genops(stream))
    except Exception:  # not a pickle: genops raises ValueError and others on other bytes
        return False


def safe_load(source: Path, what: str = "checkpoint") -> Any:
    """``torch.load(source, weights_only=True)`` onto the CPU, its failures as CheckpointError.

    Raises:
        CheckpointError: the file is damaged, or holds objects other than tensors and plain
            containers (refused, never run).
    """
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # damaged files make torch.load raise many different types
        refused = isinstance(exc, pickle.UnpicklingError) and "global" in str(exc).lower()
        if refused or _is_raw_pickle(source):  # torch's own text advises unsafe loading
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
