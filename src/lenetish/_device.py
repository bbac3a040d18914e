"""Device resolution (cuda > mps > cpu) and seeding of every random number generator."""

from __future__ import annotations

import random

import numpy as np
import torch

from lenetish.errors import DeviceUnavailableError, InvalidArgumentError

__all__ = ["DeviceLike", "resolve_device", "seed_everything"]

DeviceLike = str | torch.device

_KNOWN_TYPES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(device: DeviceLike | None = "auto") -> torch.device:
    """Turn a user's device request into a concrete :class:`torch.device`.

    Args:
        device: ``"auto"`` (or ``None``) picks CUDA, then Apple MPS, then the CPU; anything
            else is parsed by :class:`torch.device` (``"cpu"``, ``"cuda"``, ``"cuda:1"``...).

    Returns:
        The device to use.

    Raises:
        InvalidArgumentError: ``device`` is not a device name torch understands.
        DeviceUnavailableError: the device type exists but this machine does not have it.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidArgumentError(
            f"device={device!r} is not a device; use one of {', '.join(_KNOWN_TYPES)} "
            "(optionally with an index, e.g. 'cuda:0')"
        ) from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device={device!r} asks for CUDA but torch sees no CUDA GPU on this machine; "
                "use device='cpu' or device='auto'"
            )
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"device={device!r} asks for GPU {resolved.index} but this machine has "
                f"{torch.cuda.device_count()}; pick an index below that"
            )
    elif resolved.type == "mps" and not _mps_available():
        raise DeviceUnavailableError(
            f"device={device!r} asks for Apple MPS, which is not available here; "
            "use device='cpu' or device='auto'"
        )
    elif resolved.type not in _KNOWN_TYPES:
        raise InvalidArgumentError(
            f"device={device!r} is a device type lenetish does not support; "
            f"use one of {', '.join(_KNOWN_TYPES)}"
        )
    return resolved


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's (CPU and every GPU) random number generators.

    Args:
        seed: any integer; the same seed gives the same random streams.

    Example:
        >>> seed_everything(0)
        >>> a = torch.rand(1)
        >>> seed_everything(0)
        >>> bool(torch.equal(a, torch.rand(1)))
        True
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
