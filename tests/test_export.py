"""Tests of lenetish.saving.export: safetensors, torch.export, TorchScript and ONNX round trips."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lenetish import (
    CheckpointError,
    InvalidArgumentError,
    MissingDependencyError,
    MNISTConvNet,
    export_model,
    load_split,
    load_weights,
    predict,
    pretrained,
)
from lenetish.data.sources import bundled_mnist
from lenetish.saving.export import METADATA_FILE
from tests.full_disk import fill_disk_after
from tests.training_helpers import digit_batches, quick_trainer


def _trained() -> MNISTConvNet:
    trainer = quick_trainer(epochs=2)
    trainer.fit(digit_batches(100, 25))
    assert isinstance(trainer.model, MNISTConvNet)
    return trainer.model


def test_safetensors_export_loads_back(tmp_path: Path) -> None:
    """The safetensors export loads into a fresh network with equal outputs."""
    model = _trained().eval()
    path = export_model(model, tmp_path / "m.safetensors", format="safetensors")
    images = digit_batches(20, 20)[0][0]
    torch.testing.assert_close(load_weights(MNISTConvNet(), path).eval()(images), model(images))


def test_pt2_export_runs_any_batch_size(tmp_path: Path) -> None:
    """The torch.export program gives the model's outputs for a batch size it never saw."""
    model = _trained().eval()
    program = torch.export.load(export_model(model, tmp_path / "m.pt2", format="pt2"))
    images = digit_batches(37, 37)[0][0]
    torch.testing.assert_close(program.module()(images), model(images))


def test_torchscript_export_runs_without_the_class(tmp_path: Path) -> None:
    """The TorchScript file gives the model's outputs."""
    model = _trained().eval()
    path = export_model(model, tmp_path / "m.ts", format="torchscript")
    with pytest.warns(FutureWarning):
        scripted = torch.jit.load(str(path))
    images = digit_batches(10, 10)[0][0]
    torch.testing.assert_close(scripted(images), model(images))


def test_onnx_export_gives_the_same_labels_in_onnxruntime(tmp_path: Path) -> None:
    """The ONNX file run by onnxruntime predicts the labels PyTorch predicts."""
    onnxruntime = pytest.importorskip("onnxruntime")
    model = _trained().eval()
    path = export_model(model, tmp_path / "m.onnx", format="onnx")
    session = onnxruntime.InferenceSession(str(path))
    images = torch.cat([batch[0] for batch in digit_batches(100, 25)])
    (outputs,) = session.run(["log_probabilities"], {"images": images.numpy()})
    assert torch.equal(torch.from_numpy(outputs).argmax(1), model(images).argmax(1))


def test_export_restores_the_model_mode(tmp_path: Path) -> None:
    """A model in training mode stays in training mode after an export."""
    model = MNISTConvNet().train()
    export_model(model, tmp_path / "m.pt2", format="pt2")
    assert model.training


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    """An unknown format raises InvalidArgumentError listing the formats."""
    with pytest.raises(InvalidArgumentError, match="format='tflite' is not supported"):
        export_model(MNISTConvNet(), tmp_path / "m", format="tflite")


def test_onnx_without_the_extra_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without onnx installed, ONNX export raises MissingDependencyError naming the extra."""
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'lenetish\[export\]'"):
        export_model(MNISTConvNet(), tmp_path / "m.onnx", format="onnx")


def test_onnx_export_runs_after_being_moved(tmp_path: Path) -> None:
    """The ONNX file holds its weights: moved to another folder it still runs in onnxruntime."""
    onnxruntime = pytest.importorskip("onnxruntime")
    model = _trained().eval()
    exported = export_model(model, tmp_path / "made" / "m.onnx", format="onnx")
    moved = shutil.move(exported, tmp_path / "elsewhere.onnx")
    shutil.rmtree(tmp_path / "made")
    session = onnxruntime.InferenceSession(str(moved))
    images = digit_batches(20, 20)[0][0]
    (outputs,) = session.run(["log_probabilities"], {"images": images.numpy()})
    assert torch.equal(torch.from_numpy(outputs).argmax(1), model(images).argmax(1))


def test_onnx_export_leaves_only_its_file(tmp_path: Path) -> None:
    """An ONNX export writes one file and no hidden data or temporary files."""
    export_model(MNISTConvNet(), tmp_path / "m.onnx", format="onnx")
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


@pytest.mark.parametrize("format", ["safetensors", "torchscript", "onnx"])
def test_full_disk_during_export_is_named_and_cleaned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, format: str
) -> None:
    """A disk filling up during an export raises CheckpointError and leaves no file."""
    fill_disk_after(monkeypatch, room=4096)
    with pytest.raises(CheckpointError, match=r"could not write .*No space left on device"):
        export_model(MNISTConvNet(), tmp_path / f"m.{format}", format=format)
    assert list(tmp_path.iterdir()) == []


_PT2_ON_A_FULL_DISK = """
import sys
import pytest
from lenetish import MNISTConvNet, export_model
from lenetish.errors import CheckpointError
from tests.full_disk import fill_disk_after

fill_disk_after(pytest.MonkeyPatch(), room=4096)
try:
    export_model(MNISTConvNet(), sys.argv[1], format="pt2")
except CheckpointError as exc:
    print(f"named: {exc}")
"""


def test_pt2_export_on_a_full_disk_is_named_not_an_abort(tmp_path: Path) -> None:
    """export(format="pt2") on a full disk raises CheckpointError instead of a C++ abort."""
    done = subprocess.run(
        [sys.executable, "-c", _PT2_ON_A_FULL_DISK, str(tmp_path / "m.pt2")],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-1000:]
    assert re.search(r"named: could not write .*m\.pt2: .*No space left on device", done.stdout)
    assert list(tmp_path.iterdir()) == []


def test_old_files_named_like_earlier_onnx_temporaries_survive_an_export(tmp_path: Path) -> None:
    """Hidden files named like earlier versions' ONNX temporaries, however old, are kept."""
    dead_pid = 2**22 + 1  # above Linux's default pid_max: no process has it
    leftovers = [f".m.onnx.{dead_pid}.tmp.onnx", f".m.onnx.{dead_pid}.tmp.onnx.data"]
    for name in leftovers:
        (tmp_path / name).write_bytes(b"old")
        os.utime(tmp_path / name, (1_000_000_000, 1_000_000_000))  # nothing proves whose
    export_model(MNISTConvNet(), tmp_path / "m.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*leftovers, "m.safetensors"])


def test_an_onnx_consumer_reading_only_the_file_reproduces_predict(tmp_path: Path) -> None:
    """Onnxruntime plus the file's metadata give predict's labels on 1,000 MNIST test images."""
    onnxruntime = pytest.importorskip("onnxruntime")
    model = pretrained("default")
    path = export_model(model, tmp_path / "m.onnx", format="onnx")
    images, _ = load_split(bundled_mnist(), train=False, download=False)
    pixels = images[:1000].numpy()  # uint8 (1000, 28, 28), as a consumer would have them
    expected = predict(model, images[:1000], precision="32").labels.numpy()
    session = onnxruntime.InferenceSession(str(path))
    meta = session.get_modelmeta().custom_metadata_map
    mean, std = float(meta["lenetish.mean"]), float(meta["lenetish.std"])
    inputs = ((pixels.astype(np.float32) / 255 - mean) / std)[:, None]
    (scores,) = session.run(None, {"images": inputs})
    assert (scores.argmax(axis=1) == expected).all()
    assert meta["lenetish.output"] == "log_probabilities" == session.get_outputs()[0].name
    assert json.loads(meta["lenetish.classes"])[3] == "3"
    assert (meta["lenetish.dataset"], meta["lenetish.dataset_assumed"]) == ("mnist", "false")
    assert meta["lenetish.preparation"] == "mnistify"


def test_a_logits_models_onnx_output_is_named_logits(tmp_path: Path) -> None:
    """A model returning raw logits exports an output named logits, said in its metadata."""
    onnx = pytest.importorskip("onnx")
    logits_model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    path = export_model(logits_model, tmp_path / "m.onnx", format="onnx")
    proto = onnx.load(str(path))
    meta = {entry.key: entry.value for entry in proto.metadata_props}
    assert proto.graph.output[0].name == "logits" == meta["lenetish.output"]
    assert meta["lenetish.dataset_assumed"] == "true"


@pytest.mark.parametrize("format", ["pt2", "torchscript"])
def test_pt2_and_torchscript_files_carry_the_metadata(format: str, tmp_path: Path) -> None:
    """pt2 and TorchScript exports hold lenetish.json with the output kind and normalisation."""
    path = export_model(MNISTConvNet(), tmp_path / "m.bin", format=format)
    extra = {METADATA_FILE: ""}
    if format == "pt2":
        torch.export.load(path, extra_files=extra)
    else:
        torch.jit.load(str(path), _extra_files=extra)  # type: ignore[no-untyped-call]
    metadata = json.loads(extra[METADATA_FILE])
    assert metadata["output"] == "log_probabilities" and float(metadata["std"]) > 0
