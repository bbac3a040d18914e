"""Tests of lenetish.evaluation: evaluate against a hand-written loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lenetish import InvalidArgumentError, MNISTConvNet, evaluate


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [
        (
            torch.randn(size, 1, 28, 28, generator=generator),
            torch.randint(0, 10, (size,), generator=generator),
        )
        for size in (7, 5, 3)
    ]


def test_matches_a_hand_written_loop() -> None:
    """Loss and accuracy equal a plain loop's sum of NLL and count of correct argmaxes."""
    torch.manual_seed(0)
    model = MNISTConvNet().eval()
    batches = _batches()
    with torch.no_grad():
        loss = sum(float(F.nll_loss(model(x), y, reduction="sum")) for x, y in batches)
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in batches)
    result = evaluate(model, batches)
    assert result.total == 15 and result.correct == correct
    assert result.accuracy == pytest.approx(correct / 15)
    assert result.loss == pytest.approx(loss / 15, rel=1e-5)


def test_restores_training_mode() -> None:
    """A model in training mode is back in training mode afterwards."""
    model = MNISTConvNet(dropout=0.5).train()
    evaluate(model, _batches())
    assert model.training


def test_empty_loader_is_refused() -> None:
    """A loader without samples raises InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError, match="the loader yielded no samples"):
        evaluate(MNISTConvNet(), [])
