"""Fuzz tests: random and mutated bytes reach the readers; only lenetish errors may escape."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lenetish import (
    CheckpointError,
    DatasetCorruptError,
    MNISTConvNet,
    Trainer,
    load_checkpoint,
)
from lenetish.data.idx import read_idx_images, read_idx_labels, write_idx
from lenetish.saving.checkpoint import save_weights
from lenetish.saving.weightfiles import load_weights
from tests.training_helpers import digit_batches

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _tiny_model() -> MNISTConvNet:
    return MNISTConvNet(conv1_channels=2, conv2_channels=2, hidden=4)


def _valid_idx() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "images"
        write_idx(path, torch.randint(0, 255, (3, 28, 28), dtype=torch.uint8))
        return path.read_bytes()


@pytest.fixture(scope="module")
def valid_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a real checkpoint of a tiny network trained for one epoch."""
    path = tmp_path_factory.mktemp("fuzz") / "c.pt"
    trainer = Trainer(_tiny_model(), device="cpu", epochs=1, progress=False)
    trainer.fit(digit_batches(10, 10))
    trainer.save_checkpoint(path)
    return path.read_bytes()


VALID_IDX = _valid_idx()


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` with a few bytes changed, then possibly truncated or extended."""
    data = bytearray(original)
    for _ in range(draw(st.integers(0, 8))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    tail = draw(st.binary(max_size=16))
    return bytes(data[:cut]) + tail if draw(st.booleans()) else bytes(data)


def _read_idx_file(content: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(content)
        try:
            reader = read_idx_labels if "labels" in name else read_idx_images
            reader(path)
        except DatasetCorruptError:
            pass


@FUZZ
@given(content=st.binary(max_size=4096), gz=st.booleans(), labels=st.booleans())
def test_idx_reader_survives_random_bytes(content: bytes, gz: bool, labels: bool) -> None:
    """Random bytes, raw or as .gz, give a tensor or DatasetCorruptError, nothing else."""
    _read_idx_file(content, ("labels" if labels else "images") + (".gz" if gz else ""))


@FUZZ
@given(content=mutated(VALID_IDX), gz=st.booleans())
def test_idx_reader_survives_mutated_files(content: bytes, gz: bool) -> None:
    """A valid idx file with bytes changed, cut or added never escapes as a raw error."""
    _read_idx_file(gzip.compress(content) if gz else content, "images.gz" if gz else "images")


@FUZZ
@given(content=mutated(gzip.compress(VALID_IDX)))
def test_idx_reader_survives_mutated_gzip(content: bytes) -> None:
    """A valid gzip idx file with bytes changed is read or refused with DatasetCorruptError."""
    _read_idx_file(content, "images.gz")


def _load(content: bytes, name: str = "c.pt") -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(content)
        try:
            if name.endswith(".safetensors"):
                load_weights(_tiny_model(), path)
            else:
                load_checkpoint(path)
        except CheckpointError:
            pass


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@FUZZ
@given(content=st.binary(max_size=4096))
def test_checkpoint_loader_survives_random_bytes(content: bytes) -> None:
    """Random bytes give CheckpointError, nothing else."""
    _load(content)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@FUZZ
@given(data=st.data())
def test_checkpoint_loader_survives_mutated_checkpoints(
    valid_checkpoint: bytes, data: st.DataObject
) -> None:
    """A real checkpoint with bytes changed, cut or added loads or raises CheckpointError."""
    _load(data.draw(mutated(valid_checkpoint)))


def _valid_weights() -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        save_weights(
            MNISTConvNet(conv1_channels=2, conv2_channels=2, hidden=4),
            Path(folder) / "w.safetensors",
        )
        return (Path(folder) / "w.safetensors").read_bytes()


@FUZZ
@given(content=mutated(_valid_weights()))
def test_weights_loader_survives_mutated_safetensors(content: bytes) -> None:
    """A safetensors file with bytes changed loads or raises CheckpointError."""
    _load(content, "w.safetensors")
