"""Small, strict readers and writers for the idx format MNIST-family files use (raw or gzip).

An idx file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the values. MNIST-family files hold uint8 values
(type code ``0x08``): images with 3 dimensions ``(N, 28, 28)``, labels with 1 dimension ``(N,)``.
Every problem with a file is reported as :class:`~lenetish.errors.DatasetCorruptError` naming
the file, never as a raw numpy, torch or gzip traceback.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from lenetish.errors import DatasetCorruptError, InvalidArgumentError

__all__ = ["read_idx", "read_idx_images", "read_idx_labels", "write_idx"]

_UBYTE = 0x08
_MAX_DIMS = 4


def _read_bytes(path: Path) -> bytes:
    """Return the decompressed contents of ``path`` (gzip when its name ends in ``.gz``)."""
    if path.is_dir():
        raise DatasetCorruptError(f"{path} is a directory, but an idx file is needed there")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DatasetCorruptError(
            f"{path} is not a readable gzip file ({exc}); delete it and download it again"
        ) from exc
    except OSError as exc:
        raise DatasetCorruptError(f"{path} cannot be read: {exc}") from exc


def read_idx(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read a uint8 idx file (raw, or gzip if the name ends in ``.gz``) into a tensor.

    Args:
        path: the file to read.

    Returns:
        A ``torch.uint8`` tensor with the dimensions the header declares.

    Raises:
        DatasetCorruptError: the file is empty, truncated, has trailing bytes, a wrong magic
            number, a value type other than uint8, or is not valid gzip.

    Example:
        >>> import tempfile, torch
        >>> folder = tempfile.mkdtemp()
        >>> write_idx(f"{folder}/x-idx1-ubyte", torch.tensor([3, 1, 4], dtype=torch.uint8))
        >>> read_idx(f"{folder}/x-idx1-ubyte").tolist()
        [3, 1, 4]
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DatasetCorruptError(
            f"{path} is {'empty' if not data else 'truncated'}: an idx file starts with a "
            f"4-byte magic number, but the file has {len(data)} bytes"
        )
    zero1, zero2, type_code, ndim = data[0], data[1], data[2], data[3]
    if zero1 != 0 or zero2 != 0 or not 1 <= ndim <= _MAX_DIMS:
        raise DatasetCorruptError(
            f"{path} has the wrong magic number 0x{data[:4].hex()}: it is not an idx file "
            "(expected 0x0000080N with N the number of dimensions)"
        )
    if type_code != _UBYTE:
        raise DatasetCorruptError(
            f"{path} holds values of idx type 0x{type_code:02x}; MNIST-family files hold "
            "unsigned bytes (0x08)"
        )
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DatasetCorruptError(
            f"{path} is truncated inside its header ({len(data)} of {header_size} bytes)"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_size])
    expected = header_size + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "longer than its header says"
        raise DatasetCorruptError(
            f"{path} is {problem}: its header declares shape {dims} ({expected} bytes in all) "
            f"but the file has {len(data)} bytes; delete it and download it again"
        )
    values = np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims)
    return torch.from_numpy(values.copy())


def read_idx_images(path: str | os.PathLike[str], *, size: int = 28) -> torch.Tensor:
    """Read an idx image file and check it holds ``(N, size, size)`` images.

    Raises:
        DatasetCorruptError: the file is not a valid idx file or its images are not
            ``size`` x ``size``.
    """
    images = read_idx(path)
    if images.dim() != 3 or tuple(images.shape[1:]) != (size, size):
        raise DatasetCorruptError(
            f"{path} should hold images of shape (N, {size}, {size}) but holds "
            f"{tuple(images.shape)}"
        )
    return images


def read_idx_labels(path: str | os.PathLike[str], *, num_classes: int = 10) -> torch.Tensor:
    """Read an idx label file and check it holds ``(N,)`` labels in ``0..num_classes-1``.

    Raises:
        DatasetCorruptError: the file is not a valid idx file, is not one-dimensional, or holds
            a label outside ``0..num_classes-1``.
    """
    labels = read_idx(path)
    if labels.dim() != 1:
        raise DatasetCorruptError(
            f"{path} should hold labels of shape (N,) but holds {tuple(labels.shape)}"
        )
    if labels.numel() and int(labels.max()) >= num_classes:
        bad = int(labels.max())
        position = int((labels == bad).nonzero()[0])
        raise DatasetCorruptError(
            f"{path} holds label {bad} at position {position}; labels must be in "
            f"0..{num_classes - 1}"
        )
    return labels


def write_idx(path: str | os.PathLike[str], values: torch.Tensor) -> None:
    """Write a uint8 tensor as an idx file (gzip-compressed if the name ends in ``.gz``).

    Args:
        path: the file to write.
        values: a ``torch.uint8`` tensor with 1 to 4 dimensions.

    Raises:
        InvalidArgumentError: ``values`` is not uint8 or has an unsupported number of
            dimensions.
    """
    if values.dtype != torch.uint8 or not 1 <= values.dim() <= _MAX_DIMS:
        raise InvalidArgumentError(
            f"write_idx needs a uint8 tensor with 1 to {_MAX_DIMS} dimensions, got "
            f"dtype {values.dtype} with shape {tuple(values.shape)}"
        )
    header = bytes([0, 0, _UBYTE, values.dim()]) + struct.pack(f">{values.dim()}I", *values.shape)
    payload = header + values.contiguous().cpu().numpy().tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)
