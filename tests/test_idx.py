"""Tests of lenetish.idx: round trips and a clear DatasetCorruptError for every bad file."""

from __future__ import annotations

import gzip
import struct
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lenetish import DatasetCorruptError, InvalidArgumentError, read_idx, write_idx
from lenetish.idx import read_idx_images, read_idx_labels
from tests.strategies import uint8_tensors


@settings(max_examples=40, deadline=None)
@given(values=uint8_tensors(), gz=st.booleans())
def test_write_then_read_round_trips(values: torch.Tensor, gz: bool) -> None:
    """Any uint8 tensor written as idx (raw or gzip) reads back equal."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("values.gz" if gz else "values")
        write_idx(path, values)
        assert torch.equal(read_idx(path), values)


def _header(*dims: int, type_code: int = 0x08) -> bytes:
    return bytes([0, 0, type_code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


BAD_FILES = {
    "empty": (b"", r"empty\b.*file has 0 bytes"),
    "wrong-magic": (b"\x89PNG\r\n\x1a\n" + bytes(20), "wrong magic number 0x89504e47"),
    "float-values": (_header(2, type_code=0x0D) + bytes(8), r"idx type 0x0d.*unsigned bytes"),
    "short-header": (bytes([0, 0, 8, 3]) + b"\x00\x00", r"truncated inside its header \(6 of 16"),
    "truncated": (_header(3, 28, 28) + bytes(100), r"is truncated.*shape \(3, 28, 28\)"),
    "trailing-bytes": (_header(2) + bytes(3), "longer than its header says"),
    "bad.gz": (b"this is not gzip at all", r"bad.gz is not a readable gzip file"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_is_refused_with_its_problem(tmp_path: Path, name: str) -> None:
    """Each kind of damaged idx file raises DatasetCorruptError naming the problem."""
    content, message = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DatasetCorruptError, match=message):
        read_idx(path)


def test_truncated_gzip_is_refused(tmp_path: Path) -> None:
    """A gzip stream cut short raises DatasetCorruptError."""
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(_header(50) + bytes(50))[:-12])
    with pytest.raises(DatasetCorruptError, match="not a readable gzip file"):
        read_idx(path)


def test_directory_in_place_of_a_file_is_refused(tmp_path: Path) -> None:
    """A directory where the idx file should be is named as such."""
    with pytest.raises(DatasetCorruptError, match="is a directory, but an idx file is needed"):
        read_idx(tmp_path)


def test_image_file_with_wrong_image_size_is_refused(tmp_path: Path) -> None:
    """Images that are not 28x28 are refused with the shape found."""
    path = tmp_path / "images"
    write_idx(path, torch.zeros(2, 32, 32, dtype=torch.uint8))
    with pytest.raises(DatasetCorruptError, match=r"shape \(N, 28, 28\) but holds \(2, 32, 32\)"):
        read_idx_images(path)


def test_label_file_with_wrong_dimensions_is_refused(tmp_path: Path) -> None:
    """A label file with more than one dimension is refused."""
    path = tmp_path / "labels"
    write_idx(path, torch.zeros(2, 2, dtype=torch.uint8))
    with pytest.raises(DatasetCorruptError, match=r"labels of shape \(N,\) but holds \(2, 2\)"):
        read_idx_labels(path)


def test_label_outside_range_is_refused(tmp_path: Path) -> None:
    """A label of 10 or more is reported with its value and position."""
    path = tmp_path / "labels"
    write_idx(path, torch.tensor([1, 2, 10, 3], dtype=torch.uint8))
    with pytest.raises(DatasetCorruptError, match=r"holds label 10 at position 2.*0\.\.9"):
        read_idx_labels(path)


def test_write_refuses_non_uint8(tmp_path: Path) -> None:
    """write_idx refuses a tensor that is not uint8."""
    with pytest.raises(InvalidArgumentError, match=r"needs a uint8 tensor.*torch.float32"):
        write_idx(tmp_path / "x", torch.zeros(3))
