"""Tests of lenetish's progress output inside a real Jupyter kernel (nbclient)."""

from __future__ import annotations

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

FIT = """\
import os
os.environ.pop("CI", None)  # the bar is off under CI=true; a notebook user has no CI
import torch
from lenetish import MNISTConvNet, Trainer
batches = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))] * 4
history = Trainer(MNISTConvNet(), epochs=3, device="cpu").fit(batches)
"""


def _run_notebook(*cells: str) -> list[dict[str, str]]:
    """Execute the cells in a fresh python3 kernel; the last cell's outputs."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    return list(notebook.cells[-1].outputs)


def test_a_notebook_without_ipywidgets_gets_one_line_per_epoch_and_one_warning() -> None:
    """No ipywidgets: three epoch lines and a single warning, not one output per redraw."""
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("ipywidgets is installed here: the notebook would draw a widget")
    outputs = _run_notebook(FIT)
    text = "".join(output.get("text", "") for output in outputs)
    lines = [line for line in text.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert text.count("no ipywidgets") == 1
    assert "TqdmWarning" not in text and "\r" not in text
