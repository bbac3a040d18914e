"""Device resolution (cuda > mps > cpu) and seeding of every random number generator."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import numpy as np
import torch
from torch import nn

from lenetish.catalog import PRECISIONS as PRECISIONS
from lenetish.catalog import Precision as Precision
from lenetish.errors import DeviceUnavailableError, InvalidArgumentError

__all__ = [
    "AUTOCAST_DTYPES",
    "Deterministic",
    "DeviceLike",
    "Precision",
    "ResolvedPrecision",
    "autocast",
    "check_deterministic",
    "deterministic_algorithms",
    "resolve_device",
    "resolve_precision",
    "scoring",
    "seed_everything",
    "supports_bf16",
]

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
            Under ``torchrun`` (``LOCAL_RANK`` set), CUDA without an index means this
            process's own GPU, ``cuda:LOCAL_RANK``.

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
            return _local_gpu(torch.device("cuda"))
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
        resolved = _local_gpu(resolved)
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


def _local_gpu(device: torch.device) -> torch.device:
    """``cuda`` without an index is this process's GPU under torchrun, else the current one."""
    local_rank = os.environ.get("LOCAL_RANK")
    if str(device) != "cuda" or local_rank is None or not local_rank.isdigit():
        return device
    if int(local_rank) >= torch.cuda.device_count():
        raise DeviceUnavailableError(
            f"LOCAL_RANK={local_rank} asks for GPU {local_rank} but this machine has "
            f"{torch.cuda.device_count()}; start at most that many processes per machine "
            "(torchrun --nproc_per_node)"
        )
    return torch.device("cuda", int(local_rank))


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


ResolvedPrecision = Literal["32", "bf16-mixed", "16-mixed"]


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def supports_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively (so bf16 autocast is faster there).

    True on CUDA GPUs with bfloat16 support and on CPUs with AMX or AVX-512 BF16 (read from
    ``/proc/cpuinfo``; other systems answer False).
    """
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(_cpu_flags() & {"amx_bf16", "avx512_bf16"})
    return False


def resolve_precision(precision: Precision | str, device: torch.device) -> ResolvedPrecision:
    """Turn ``"auto"`` into ``"bf16-mixed"`` where the device has native bf16, else ``"32"``.

    Raises:
        InvalidArgumentError: ``precision`` is not one of ``auto``, ``32``, ``bf16-mixed``,
            ``16-mixed``, or ``16-mixed`` is asked for off CUDA.
    """
    if precision not in PRECISIONS:
        raise InvalidArgumentError(
            f"precision={precision!r} is not supported; use one of {', '.join(PRECISIONS)}"
        )
    if precision == "16-mixed" and device.type != "cuda":
        raise InvalidArgumentError(
            f"precision='16-mixed' needs a CUDA device, but this trainer runs on "
            f"{device.type}; use precision='bf16-mixed' or '32'"
        )
    if precision == "auto":
        return "bf16-mixed" if supports_bf16(device) else "32"
    return precision


AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "32": None,
    "bf16-mixed": torch.bfloat16,
    "16-mixed": torch.float16,
}


def autocast(
    device: torch.device, precision: ResolvedPrecision, *, cache_enabled: bool = True
) -> torch.autocast:
    """Autocast to ``precision``'s dtype on ``device`` (disabled, a no-op, for ``"32"``)."""
    dtype = AUTOCAST_DTYPES[precision]
    return torch.autocast(
        device.type, dtype=dtype, enabled=dtype is not None, cache_enabled=cache_enabled
    )


@contextmanager
def scoring(
    models: Sequence[nn.Module], device: torch.device, precision: ResolvedPrecision
) -> Iterator[None]:
    """How lenetish scores models: eval mode, inference mode and autocast; modes restored after.

    Validation during a fit and ``evaluate``/``predict`` both run inside it.

    Example:
        >>> from lenetish._device import scoring
        >>> model = torch.nn.Dropout()
        >>> with scoring([model], torch.device("cpu"), "32"):
        ...     model.training
        False
        >>> model.training
        True
    """
    # Every submodule's own mode: a layer frozen in eval mode inside a training model stays so.
    modes = [[module.training for module in model.modules()] for model in models]
    for model in models:
        model.eval()
    try:
        with torch.inference_mode(), autocast(device, precision):
            yield
    finally:
        for model, own in zip(models, modes, strict=True):
            for module, mode in zip(model.modules(), own, strict=False):
                module.training = mode


#: The Trainer's ``deterministic`` setting: on, off, or on with warnings where an operation
#: has no deterministic implementation (Lightning's ``"warn"``).
Deterministic = bool | Literal["warn"]


def check_deterministic(deterministic: object) -> None:
    """Refuse a ``deterministic`` setting other than ``True``, ``False`` and ``"warn"``.

    Raises:
        InvalidArgumentError: naming the value and the three meanings.

    Example:
        >>> check_deterministic("warn")
        >>> check_deterministic("yes")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        lenetish.errors.InvalidArgumentError: deterministic must be ..., got 'yes': ...
    """
    if not (isinstance(deterministic, bool) or deterministic == "warn"):
        raise InvalidArgumentError(
            f"deterministic must be True, False or 'warn', got {deterministic!r}: True "
            "raises where an operation has no deterministic implementation, 'warn' warns "
            "there and goes on (torch.use_deterministic_algorithms(True, warn_only=True))"
        )


@contextmanager
def deterministic_algorithms(enabled: Deterministic) -> Iterator[None]:
    """Use PyTorch's deterministic algorithms inside the block (if ``enabled``), then restore.

    ``"warn"`` uses them where they exist and warns instead of raising where an operation
    has none (``warn_only=True``).
    """
    if not enabled:
        yield
        return
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    previous_benchmark = torch.backends.cudnn.benchmark
    # cuBLAS needs a fixed workspace to be deterministic; it reads this at first use.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=enabled == "warn")
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        # warn_only too: setting the flag alone would reset a caller's warn_only=True.
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn_only)
        torch.backends.cudnn.benchmark = previous_benchmark
