"""Tests of lenetish.data.idx: round trips and a clear DatasetCorruptError for every bad file."""

from __future__ import annotations

import gzip
import os
import re
import struct
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lenetish import DatasetCorruptError, InvalidArgumentError, read_idx, write_idx
from lenetish.data.idx import read_idx_images, read_idx_labels
from lenetish.errors import OutputFileError
from tests.peak_memory import Measured, run_measured
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


MNIST_TRAIN_SHAPE = (60000, 28, 28)
BOMB_TAIL = 2 * 2**30  # bytes of zeros after the declared data: 2 GiB from ~2 MB of gzip


def _gzip_zeros(count: int) -> bytes:
    """A gzip stream of ``count`` zero bytes, as members of 64 MiB (fast to build)."""
    chunk = 64 * 2**20
    member = gzip.compress(bytes(chunk), compresslevel=9)
    whole, rest = divmod(count, chunk)
    return member * whole + (gzip.compress(bytes(rest)) if rest else b"")


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A valid MNIST-sized gzip file and gzip bombs built from it."""
    folder = tmp_path_factory.mktemp("hostile-idx")
    valid = gzip.compress(_header(*MNIST_TRAIN_SHAPE)) + _gzip_zeros(MNIST_TRAIN_SHAPE[0] * 28 * 28)
    files = {
        "valid": valid,
        # the declared shape is right, but 2 GiB more follow it
        "long-bomb": valid + _gzip_zeros(BOMB_TAIL),
        # the header declares 2.3 GB and the stream holds 2 GiB
        "huge-header-bomb": gzip.compress(_header(3_000_000, 28, 28)) + _gzip_zeros(BOMB_TAIL),
    }
    paths = {}
    for name, content in files.items():
        paths[name] = folder / f"{name}-idx3-ubyte.gz"
        paths[name].write_bytes(content)
    return paths


def _read_measured(path: Path) -> Measured:
    return run_measured(f"from lenetish import read_idx\nread_idx({str(path)!r})")


def test_gzip_bomb_after_valid_data_is_refused_within_small_memory(
    hostile_files: dict[str, Path],
) -> None:
    """A 2 MB gzip file holding 2 GiB after its declared data is refused in bounded memory."""
    assert hostile_files["long-bomb"].stat().st_size < 4 * 2**20
    baseline = _read_measured(hostile_files["valid"])
    bomb = _read_measured(hostile_files["long-bomb"])
    assert baseline.outcome == "ok"
    assert re.match(r"DatasetCorruptError: .*longer than its header says", bomb.outcome)
    assert bomb.peak_mb < baseline.peak_mb + 300


def test_gzip_bomb_with_a_huge_header_is_refused_within_small_memory(
    hostile_files: dict[str, Path],
) -> None:
    """A gzip file whose header declares 2.3 GB is refused before its data is decompressed."""
    baseline = _read_measured(hostile_files["valid"])
    bomb = _read_measured(hostile_files["huge-header-bomb"])
    assert re.match(r"DatasetCorruptError: .*declares shape \(3000000, 28, 28\)", bomb.outcome)
    assert bomb.peak_mb < baseline.peak_mb + 300


def test_dimensions_past_two_to_the_63_are_refused(tmp_path: Path) -> None:
    """A header whose dimensions multiply past 2**63 is named, not a wrapped length."""
    path = tmp_path / "overflow"
    path.write_bytes(_header(2**32 - 1, 2**32 - 1, 2**32 - 1))
    with pytest.raises(DatasetCorruptError, match=r"declares shape .*more than the 268,435,456"):
        read_idx(path)


def test_dimensions_wrapping_to_zero_are_refused(tmp_path: Path) -> None:
    """A header whose dimensions multiply to exactly 2**64 (0 when wrapped) is refused."""
    path = tmp_path / "wraps"
    path.write_bytes(_header(2**16, 2**16, 2**16, 2**16))
    with pytest.raises(DatasetCorruptError, match=r"declares shape \(65536, 65536, 65536, 65536"):
        read_idx(path)


def test_fifo_in_place_of_a_file_is_refused_without_waiting(tmp_path: Path) -> None:
    """A named pipe is refused at once instead of blocking for a writer forever."""
    fifo = tmp_path / "train-images-idx3-ubyte"
    os.mkfifo(fifo)
    done = run_measured(f"from lenetish import read_idx\nread_idx({str(fifo)!r})", timeout=60)
    assert re.match(r"DatasetCorruptError: .*is a FIFO \(named pipe\), not a regular", done.outcome)


def test_character_device_in_place_of_a_file_is_refused() -> None:
    """A device such as /dev/null is refused as not a regular file."""
    with pytest.raises(DatasetCorruptError, match=r"/dev/null is a character device"):
        read_idx("/dev/null")


def test_real_mnist_reads_the_same_as_before(real_mnist: Path) -> None:
    """The bounded reader returns the real MNIST training images unchanged."""
    images_file = real_mnist / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(images_file.read_bytes())
    images = read_idx_images(images_file)
    assert images.shape == MNIST_TRAIN_SHAPE and images.numpy().tobytes() == raw[16:]


def test_write_idx_refuses_a_symlink_and_keeps_its_target(tmp_path: Path) -> None:
    """write_idx refuses a symbolic link at the path; the file it names is unchanged."""
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"precious")
    link = tmp_path / "train-labels-idx1-ubyte"
    link.symlink_to(outside)
    with pytest.raises(OutputFileError, match=r"it is a symbolic link"):
        write_idx(link, torch.zeros(3, dtype=torch.uint8))
    assert outside.read_bytes() == b"precious"
