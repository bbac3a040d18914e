"""Tests of lenetish.export: safetensors, torch.export, TorchScript and ONNX round trips."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from lenetish import (
    InvalidArgumentError,
    MissingDependencyError,
    MNISTConvNet,
    export_model,
    load_weights,
)
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
