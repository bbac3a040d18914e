"""Tests of lenetish.losses: what outputs are, and a loss that is right for them."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lenetish import BatchOutput, InvalidArgumentError, Trainer, evaluate, predict
from lenetish.losses import output_kind, smoothed_nll
from tests.training_helpers import digit_batches, quick_trainer


class LogitMLP(nn.Module):
    """What most PyTorch code looks like: raw logits out, no log_softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, images: Tensor) -> Tensor:
        return self.layers(images) * 20  # large logits: their "NLL" would be very negative


def _logit_trainer(**options: object) -> Trainer:
    torch.manual_seed(0)
    return Trainer(LogitMLP(), device="cpu", progress=False, seed=0, **options)  # type: ignore[arg-type]


def test_output_kind_tells_log_probabilities_probabilities_and_logits_apart() -> None:
    """The three kinds of classifier output are recognised from one batch."""
    logits = torch.randn(16, 10) * 5
    assert output_kind(logits) == "logits"
    assert output_kind(logits.log_softmax(1)) == "log_probabilities"
    assert output_kind(logits.softmax(1)) == "probabilities"


def test_a_raw_logit_model_trains_on_a_positive_loss_by_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """loss='auto' detects logits once and trains on the cross-entropy: every loss >= 0."""
    losses: list[float] = []
    trainer = _logit_trainer(epochs=3)
    with caplog.at_level(logging.INFO, "lenetish"):
        history = trainer.fit(digit_batches(), digit_batches(50))
    losses = history.column("loss") + history.column("val_loss")
    assert all(loss >= 0 for loss in losses)
    assert history[-1]["loss"] < history[0]["loss"]
    assert caplog.text.count("treats the model's outputs as logits") == 1


def test_evaluate_and_predict_turn_logits_into_probabilities() -> None:
    """For a logit model, evaluate's loss is >= 0 and predict's rows sum to 1."""
    trainer = _logit_trainer(epochs=2)
    trainer.fit(digit_batches())
    result = evaluate(trainer.model, digit_batches())
    images = torch.cat([images for images, _ in digit_batches()])[:, 0]
    prediction = predict(trainer.model, (images * 255).round().to(torch.uint8))
    assert result.loss >= 0
    sums = prediction.probabilities.sum(dim=1)
    torch.testing.assert_close(sums, torch.ones_like(sums), atol=1e-5, rtol=0)


def test_evaluate_can_be_told_the_output_kind() -> None:
    """outputs='logits' skips detection; an unknown kind is refused with the choices."""
    result = evaluate(LogitMLP(), digit_batches(20, 10), outputs="logits")
    assert result.loss >= 0
    with pytest.raises(InvalidArgumentError, match=r"outputs='scores' is not supported.*logits"):
        evaluate(LogitMLP(), digit_batches(20, 10), outputs="scores")  # type: ignore[arg-type]


def test_label_smoothing_on_logits_is_torchs_cross_entropy_with_smoothing() -> None:
    """The built-in smoothing on log_softmax(logits) equals F.cross_entropy(label_smoothing)."""
    logits, targets = torch.randn(32, 10), torch.randint(0, 10, (32,))
    ours = smoothed_nll(logits.log_softmax(1), targets, 0.1)
    torch.testing.assert_close(ours, F.cross_entropy(logits, targets, label_smoothing=0.1))


def test_a_callable_loss_is_used_as_given() -> None:
    """loss=callable gets the raw outputs and the targets."""
    seen: list[tuple[int, ...]] = []

    def my_loss(outputs: Tensor, targets: Tensor) -> Tensor:
        seen.append(tuple(outputs.shape))
        return F.cross_entropy(outputs, targets)

    history = _logit_trainer(loss=my_loss).fit(digit_batches(20, 10))
    assert seen[0] == (10, 10) and history[0]["loss"] > 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"loss": "mse"}, "loss='mse' is not supported; use one of auto, nll, cross_entropy"),
        (
            {"loss": lambda o, t: o.sum(), "label_smoothing": 0.1},
            "label_smoothing applies to the built-in losses only",
        ),
    ],
)
def test_loss_settings_are_checked(options: dict[str, object], message: str) -> None:
    """An unknown loss name, or label smoothing with a callable loss, is refused."""
    with pytest.raises(InvalidArgumentError, match=message):
        quick_trainer(**options)


def test_a_training_step_that_drops_label_smoothing_is_warned_about_once() -> None:
    """A subclass computing its own loss while label_smoothing is set gets one warning."""

    class OwnLoss(Trainer):
        def training_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
            outputs = self.model(images)
            return BatchOutput(F.nll_loss(outputs, labels), outputs, labels)

    trainer = OwnLoss(LogitMLP(), device="cpu", progress=False, epochs=2, label_smoothing=0.1)
    with pytest.warns(UserWarning, match=r"label_smoothing=0.1 is not applied") as caught:
        trainer.fit(digit_batches(20, 10))
    assert len([w for w in caught if "label_smoothing" in str(w.message)]) == 1


def test_a_training_step_that_calls_compute_loss_keeps_label_smoothing() -> None:
    """A subclass that uses self.compute_loss keeps smoothing: no dropped-smoothing warning."""

    class Calls(Trainer):
        def training_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
            outputs = self.model(images)
            return BatchOutput(self.compute_loss(outputs, labels), outputs, labels)

    trainer = Calls(LogitMLP(), device="cpu", progress=False, label_smoothing=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.fit(digit_batches(20, 10))  # a dropped smoothing would warn


def test_bf16_softmax_outputs_are_recognised_as_probabilities() -> None:
    """Rows of a bf16 softmax sum to 1 only within bf16's precision: still probabilities."""
    logits = torch.randn(64, 10) * 3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        probabilities = torch.nn.Linear(10, 10)(logits).softmax(dim=1)
        log_probs = torch.nn.Linear(10, 10)(logits).log_softmax(dim=1)
    assert probabilities.dtype == torch.bfloat16 or output_kind(probabilities) == "probabilities"
    assert output_kind(probabilities.bfloat16()) == "probabilities"
    assert output_kind(log_probs.bfloat16()) == "log_probabilities"


def test_a_declared_loss_that_does_not_fit_the_outputs_warns() -> None:
    """loss='nll' on a logit model trains on a loss that can go negative: it warns once."""
    with pytest.warns(UserWarning, match=r"declared log_probabilities but look like logits"):
        _logit_trainer(loss="nll").fit(digit_batches(20, 10))


def test_evaluate_warns_when_declared_outputs_do_not_fit() -> None:
    """outputs='log_probabilities' for a logit model is checked on the first batch."""
    with pytest.warns(UserWarning, match="declared log_probabilities but look like logits"):
        evaluate(LogitMLP(), digit_batches(20, 10), outputs="log_probabilities")
