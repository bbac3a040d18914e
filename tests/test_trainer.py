"""Tests of lenetish.trainer: the fit loop and its argument checks."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from lenetish import InvalidArgumentError, MNISTConvNet, Trainer, evaluate
from tests.conftest import synthetic_digits


def _digit_batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    images, labels = synthetic_digits(200)
    normalised = (images.float() / 255).unsqueeze(1)
    return [(normalised[i : i + 50], labels[i : i + 50].long()) for i in range(0, 200, 50)]


def test_fit_learns_synthetic_digits() -> None:
    """A few epochs of Adam fit the synthetic band digits and return one row per epoch."""
    batches = _digit_batches()
    model = MNISTConvNet()
    history = Trainer(model, epochs=4, device="cpu", seed=0).fit(batches, batches)
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert history[-1]["loss"] < history[0]["loss"]
    assert evaluate(model, batches).accuracy > 0.9


def test_same_seed_gives_same_weights() -> None:
    """Two runs with the same seed end with identical weights."""

    def run() -> list[torch.Tensor]:
        torch.manual_seed(5)
        model = MNISTConvNet()
        Trainer(model, epochs=1, device="cpu", optimizer="sgd", lr=0.01).fit(_digit_batches())
        return [p.detach().clone() for p in model.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(run(), run(), strict=True))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"optimizer": "adagrad"}, "optimizer='adagrad' is not supported; use one of adam, sgd"),
        ({"lr": 0.0}, "lr must be positive, got 0.0"),
        ({"epochs": 0}, "epochs must be a positive integer, got 0"),
    ],
)
def test_invalid_settings_are_refused(options: dict[str, Any], message: str) -> None:
    """Unknown optimizers and non-positive lr or epochs raise InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError, match=message):
        Trainer(MNISTConvNet(), **options)
