"""Tests of lenetish.cli: the ``lenetish`` command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lenetish import History, MNISTConvNet, load_checkpoint, load_weights
from lenetish.cli import main


def test_train_reports_accuracy_and_writes_outputs(
    fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lenetish train` prints epochs and accuracy and writes checkpoint, weights, history."""
    out = tmp_path / "run"
    status = main(
        [
            "train",
            "--data",
            str(fake_mnist),
            "--epochs",
            "2",
            "--batch-size",
            "20",
            "--device",
            "cpu",
            "--val-size",
            "10",
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert status == 0
    assert "epoch=2" in printed and "val_accuracy=" in printed
    assert "test accuracy" in printed and "/20)" in printed
    load_weights(MNISTConvNet(), out / "model.safetensors")
    assert load_checkpoint(out / "last.pt")["epoch"] == 2
    assert len(json.loads((out / "history.json").read_text())) == 2
    assert len(History.from_csv(out / "history.csv")) == 2


def test_train_resumes_from_a_checkpoint(
    fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lenetish train --resume last.pt` continues to the requested number of epochs."""
    out = tmp_path / "run"
    common = ["train", "--data", str(fake_mnist), "--batch-size", "20", "--device", "cpu"]
    assert main([*common, "--epochs", "1", "--out", str(out)]) == 0
    status = main([*common, "--epochs", "3", "--out", str(out), "--resume", str(out / "last.pt")])
    assert status == 0
    assert [row["epoch"] for row in History.from_json(out / "history.json")] == [1, 2, 3]


def test_missing_data_is_one_line_and_exit_status_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Missing data gives exit status 1 and a single 'lenetish: error:' line."""
    status = main(["train", "--data", str(tmp_path), "--no-download", "--device", "cpu"])
    error = capsys.readouterr().err
    assert status == 1
    assert error.startswith("lenetish: error: mnist train files not found")
    assert error.count("\n") == 1


def test_python_dash_m_runs_the_command() -> None:
    """`python -m lenetish --help` lists the train command."""
    result = subprocess.run(
        [sys.executable, "-m", "lenetish", "--help"], capture_output=True, text=True, check=True
    )
    assert "train" in result.stdout
