"""Tests of examples/: every example script runs to the end on tiny synthetic data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parents[1] / "examples").glob("*.py"))


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
