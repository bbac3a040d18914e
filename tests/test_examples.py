"""Tests of examples/: every example script runs to the end on tiny synthetic data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# The example scripts directly in examples/. Not recursive on purpose: examples/downstream/ is
# a project of its own (a package run with ``python -m``), tested by its own test below.
EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.py"))
DOWNSTREAM = Path(__file__).parents[1] / "examples" / "downstream"


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=lambda path: path.name)
def test_example_runs(script: Path, fake_mnist: Path) -> None:
    """The example exits 0 and prints its result."""
    environment = {**os.environ, "LENETISH_EXAMPLE_SUBSET": "40"}
    result = subprocess.run(
        [sys.executable, str(script), "--data", str(fake_mnist), "--epochs", "2"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout or "images classified" in result.stdout


@pytest.mark.slow
def test_distributed_example_runs_under_torchrun(fake_mnist: Path, tmp_path: Path) -> None:
    """The distributed example trains on 2 processes; only the main one reports and saves."""
    script = Path(__file__).parents[1] / "examples" / "distributed_train.py"
    out = tmp_path / "model.safetensors"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    options = ["--data", str(fake_mnist), "--epochs", "2", "--device", "cpu", "--out", str(out)]
    result = subprocess.run(
        [*torchrun, str(script), *options],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("test accuracy") == 1
    assert out.exists()


@pytest.mark.slow
def test_downstream_project_trains_and_resumes(fake_mnist: Path, tmp_path: Path) -> None:
    """examples/downstream trains on idx files, then resumes with its callback's saved state."""
    path = os.pathsep.join(filter(None, [str(DOWNSTREAM), os.environ.get("PYTHONPATH")]))
    environment = {**os.environ, "LENETISH_EXAMPLE_SUBSET": "40", "PYTHONPATH": path}
    out = tmp_path / "run"

    def run(*options: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "logit_digits", "--data", str(fake_mnist)]
        return subprocess.run(
            [*command, "--out", str(out), *options],
            capture_output=True,
            text=True,
            env=environment,
            timeout=300,
        )

    first = run("--epochs", "2")
    assert first.returncode == 0, first.stderr
    second = run("--epochs", "3", "--resume")
    assert second.returncode == 0, second.stderr
    assert "test accuracy" in second.stdout
    epochs = [line for line in second.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1", "epoch 2", "epoch 3"]
    assert epochs[:2] == [line for line in first.stdout.splitlines() if line.startswith("epoch ")]
    saved = torch.load(out / "last.pt", weights_only=True)["callbacks"]
    tracker = saved["logit_digits.ImprovementTracker[val_macro_f1]"]
    assert tracker["best_epoch"] in (1, 2, 3) and tracker["best"] > 0


def test_downstream_embedding_contracts_hold() -> None:
    """logit_digits.embedding: dataset after fit, returned schedule, ONNX metadata, types."""
    path = os.pathsep.join(filter(None, [str(DOWNSTREAM), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-m", "logit_digits.embedding"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "dataset: T-shirt/top" in result.stdout
    assert "schedule: [0.05, 0.025]" in result.stdout
    assert "training samples: 200" in result.stdout
