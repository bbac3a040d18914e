"""Small, strict readers and writers for the idx format MNIST-family files use (raw or gzip).

An idx file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the values. MNIST-family files hold uint8 values
(type code ``0x08``): images with 3 dimensions ``(N, 28, 28)``, labels with 1 dimension ``(N,)``.
Every problem with a file is reported as :class:`~lenetish.errors.DatasetCorruptError` naming
the file, never as a raw numpy, torch or gzip traceback.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import struct
import zlib
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from lenetish._atomic import atomic_write
from lenetish.errors import DatasetCorruptError, InvalidArgumentError, OutputFileError

__all__ = ["MAX_IDX_BYTES", "read_idx", "read_idx_images", "read_idx_labels", "write_idx"]

_UBYTE = 0x08
_MAX_DIMS = 4
MAX_IDX_BYTES = 256 * 2**20
"""The most data bytes :func:`read_idx` accepts from one file (256 MiB).

The largest MNIST-family file is MNIST's training images, 47,040,000 bytes; 256 MiB leaves
room for larger 28x28 collections (QMNIST's 120,000 images, Kuzushiji-49's 232,365) while a
header that declares more, or dimensions whose product overflows, is refused before anything
is allocated or decompressed.
"""
_CHUNK = 4 * 2**20  # bytes per read: reading a whole file at once would hold it twice
_NON_REGULAR = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class _Reader(Protocol):
    """A binary stream: a raw file or a gzip file."""

    def read(self, size: int = -1, /) -> bytes: ...

    def readinto(self, buffer: memoryview, /) -> int: ...


def _open_regular(path: Path) -> io.BufferedReader:
    """Open ``path`` for reading, refusing directories, FIFOs, devices and sockets.

    The file is opened without blocking (opening a FIFO for reading would otherwise wait for a
    writer forever) and checked with ``fstat`` on the open descriptor, so the check and the read
    concern the same file.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(path, flags)
    except IsADirectoryError as exc:
        raise DatasetCorruptError(
            f"{path} is a directory, but an idx file is needed there"
        ) from exc
    except OSError as exc:
        raise DatasetCorruptError(f"{path} cannot be read: {exc}") from exc
    kind = stat.S_IFMT(os.fstat(descriptor).st_mode)
    if kind != stat.S_IFREG:
        os.close(descriptor)
        if kind == stat.S_IFDIR:
            raise DatasetCorruptError(f"{path} is a directory, but an idx file is needed there")
        raise DatasetCorruptError(
            f"{path} is {_NON_REGULAR.get(kind, 'not a regular file')}, not a regular file; "
            "an idx file must be a regular file (raw or .gz) on disk"
        )
    if hasattr(os, "set_blocking"):
        os.set_blocking(descriptor, True)
    return os.fdopen(descriptor, "rb")


def _read_exactly(handle: _Reader, count: int) -> tuple[np.ndarray, int]:
    """Read up to ``count`` bytes into a new uint8 array; return it and how many were read."""
    values = np.empty(count, dtype=np.uint8)
    view = values.data
    filled = 0
    while filled < count:
        got = handle.readinto(view[filled : filled + _CHUNK])  # gzip copies a read once more
        if not got:
            break
        filled += got
    return values, filled


def _declared_size(path: Path, dims: tuple[int, ...], max_bytes: int) -> int:
    """The number of data bytes ``dims`` declare, refused when over ``max_bytes``."""
    size = 1
    for dim in dims:  # Python integers do not wrap; stop as soon as the limit is passed
        size *= dim
        if size > max_bytes:
            product = 1
            for each in dims:
                product *= each
            raise DatasetCorruptError(
                f"{path} declares shape {dims} ({product:,} values), more than the "
                f"{max_bytes:,} bytes lenetish reads from one idx file; it is not an "
                "MNIST-family file (or its header is damaged): delete it and download it again"
            )
    return size


def _read_checked(path: Path, handle: _Reader, file_size: int | None) -> torch.Tensor:
    """Parse and check the header from ``handle``, then read exactly the data it declares.

    ``file_size`` is the size of a raw file (known before reading), ``None`` for a gzip stream.
    """
    magic = handle.read(4)
    if len(magic) < 4:
        raise DatasetCorruptError(
            f"{path} is {'empty' if not magic else 'truncated'}: an idx file starts with a "
            f"4-byte magic number, but the file has {len(magic)} bytes"
        )
    zero1, zero2, type_code, ndim = magic
    if zero1 != 0 or zero2 != 0 or not 1 <= ndim <= _MAX_DIMS:
        raise DatasetCorruptError(
            f"{path} has the wrong magic number 0x{magic.hex()}: it is not an idx file "
            "(expected 0x0000080N with N the number of dimensions)"
        )
    if type_code != _UBYTE:
        raise DatasetCorruptError(
            f"{path} holds values of idx type 0x{type_code:02x}; MNIST-family files hold "
            "unsigned bytes (0x08)"
        )
    header_size = 4 + 4 * ndim
    shape = handle.read(4 * ndim)
    if len(shape) < 4 * ndim:
        raise DatasetCorruptError(
            f"{path} is truncated inside its header ({4 + len(shape)} of {header_size} bytes)"
        )
    dims = struct.unpack(f">{ndim}I", shape)
    size = _declared_size(path, dims, MAX_IDX_BYTES)
    expected = header_size + size
    if file_size is not None and file_size != expected:
        problem = "truncated" if file_size < expected else "longer than its header says"
        raise DatasetCorruptError(
            f"{path} is {problem}: its header declares shape {dims} ({expected} bytes in all) "
            f"but the file has {file_size} bytes; delete it and download it again"
        )
    values, filled = _read_exactly(handle, size)
    if filled < size:
        raise DatasetCorruptError(
            f"{path} is truncated: its header declares shape {dims} ({expected} bytes in all) "
            f"but the file has {header_size + filled} bytes; delete it and download it again"
        )
    if handle.read(1):  # one byte more than declared is enough to know; never read the rest
        raise DatasetCorruptError(
            f"{path} is longer than its header says: its header declares shape {dims} "
            f"({expected} bytes in all) but the file has more; delete it and download it again"
        )
    return torch.from_numpy(values.reshape(dims))


def read_idx(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read a uint8 idx file (raw, or gzip if the name ends in ``.gz``) into a tensor.

    The header is read and checked first; then exactly the bytes it declares are read (and one
    more, to detect trailing data), so a small gzip file that would decompress to gigabytes
    costs no more memory or time than the file it claims to be.

    Args:
        path: the file to read.

    Returns:
        A ``torch.uint8`` tensor with the dimensions the header declares.

    Raises:
        DatasetCorruptError: the file is empty, truncated, has trailing bytes, a wrong magic
            number, a value type other than uint8, declares more values than
            ``lenetish.data.idx.MAX_IDX_BYTES`` (256 MiB), is not valid gzip, or is not a regular
            file (a directory, FIFO, device or socket).

    Example:
        >>> import tempfile, torch
        >>> folder = tempfile.mkdtemp()
        >>> write_idx(f"{folder}/x-idx1-ubyte", torch.tensor([3, 1, 4], dtype=torch.uint8))
        >>> read_idx(f"{folder}/x-idx1-ubyte").tolist()
        [3, 1, 4]
    """
    path = Path(path)
    with _open_regular(path) as raw:
        try:
            if path.suffix == ".gz":
                with gzip.GzipFile(fileobj=raw, mode="rb") as unzipped:
                    return _read_checked(path, unzipped, None)
            return _read_checked(path, raw, os.fstat(raw.fileno()).st_size)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise DatasetCorruptError(
                f"{path} is not a readable gzip file ({exc}); delete it and download it again"
            ) from exc
        except OSError as exc:
            raise DatasetCorruptError(f"{path} cannot be read: {exc}") from exc


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
        OutputFileError: the file cannot be written (atomically: a full disk leaves an earlier
            file whole; a symbolic link, a device, a FIFO or a folder at ``path`` is refused).

    Example:
        >>> import tempfile
        >>> from lenetish import read_idx, write_idx
        >>> labels = torch.tensor([7, 2, 1, 0, 4], dtype=torch.uint8)
        >>> path = f"{tempfile.mkdtemp()}/t10k-labels-idx1-ubyte.gz"
        >>> write_idx(path, labels)  # gzip-compressed, by its name
        >>> torch.equal(read_idx(path), labels)
        True
    """
    if values.dtype != torch.uint8 or not 1 <= values.dim() <= _MAX_DIMS:
        raise InvalidArgumentError(
            f"write_idx needs a uint8 tensor with 1 to {_MAX_DIMS} dimensions, got "
            f"dtype {values.dtype} with shape {tuple(values.shape)}"
        )
    header = bytes([0, 0, _UBYTE, values.dim()]) + struct.pack(f">{values.dim()}I", *values.shape)
    payload = header + values.contiguous().cpu().numpy().tobytes()
    if Path(path).suffix == ".gz":
        payload = gzip.compress(payload)
    atomic_write(path, lambda handle: handle.write(payload), error=OutputFileError)
