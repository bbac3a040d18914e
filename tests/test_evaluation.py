"""Tests of lenetish.evaluation: evaluate against a hand-written loop."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lenetish import InvalidArgumentError, MNISTConvNet, Trainer, evaluate, predict, pretrained
from lenetish.data import make_test_loader, read_split
from lenetish.losses import recorded_output_kind


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
    result = evaluate(model, batches, precision="32")
    assert result.total == 15 and result.correct == correct
    assert int(result.confusion.sum()) == 15 and int(result.confusion.trace()) == correct
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


def test_confusion_and_per_class_accuracy_match_a_hand_count() -> None:
    """The confusion matrix counts (actual, predicted) pairs; per-class accuracy follows."""
    torch.manual_seed(1)
    model = MNISTConvNet().eval()
    batches = _batches()
    expected = torch.zeros(10, 10, dtype=torch.int64)
    with torch.no_grad():
        for images, labels in batches:
            for actual, guess in zip(
                labels.tolist(), model(images).argmax(1).tolist(), strict=True
            ):
                expected[actual, guess] += 1
    result = evaluate(model, batches, precision="32")
    assert torch.equal(result.confusion, expected)
    for label in range(10):
        row = expected[label]
        if row.sum():
            assert result.per_class_accuracy[label] == pytest.approx(row[label] / row.sum())
        else:
            assert math.isnan(result.per_class_accuracy[label])


def test_ensemble_evaluation_uses_mean_probabilities() -> None:
    """For a list of models, the loss is the NLL of the mean of their probabilities."""
    torch.manual_seed(2)
    models = [MNISTConvNet().eval(), MNISTConvNet().eval()]
    batches = _batches()
    with torch.no_grad():
        total = 0.0
        for images, labels in batches:
            mean = (models[0](images).exp() + models[1](images).exp()) / 2
            total += float(F.nll_loss(mean.log(), labels, reduction="sum"))
    assert evaluate(models, batches, precision="32").loss == pytest.approx(total / 15, rel=1e-5)


def test_tta_averages_the_shifted_views() -> None:
    """With tta, probabilities are the mean over the image and its four one-pixel shifts."""
    torch.manual_seed(3)
    model = MNISTConvNet().eval()
    images, labels = _batches()[0]
    with torch.no_grad():
        views = [images] + [torch.roll(images, s, d) for d in (-2, -1) for s in (-1, 1)]
        mean = torch.stack([model(v).exp() for v in views]).mean(0)
        expected = float(F.nll_loss(mean.log(), labels))
    assert evaluate(model, [(images, labels)], tta=True, precision="32").loss == pytest.approx(
        expected, rel=1e-5
    )
    assert evaluate(model, [(images, labels)]).loss != pytest.approx(expected, rel=1e-5)


def test_a_loader_of_another_dataset_is_refused(fake_mnist: Path) -> None:
    """Evaluate refuses a make_loaders loader of another dataset than the model records."""
    from lenetish import DATASETS, DatasetMismatchError, make_loaders
    from lenetish.data.identity import remember_dataset

    model = MNISTConvNet()
    remember_dataset(model, DATASETS["fashion-mnist"])
    test = make_loaders(fake_mnist, dataset="kmnist", download=False).test
    with pytest.raises(
        DatasetMismatchError,
        match=r"loader holds kmnist data .* trained on "
        r"fashion-mnist; load the test data with dataset='fashion-mnist'",
    ):
        evaluate(model, test)


def test_precision_32_predicts_exactly_as_a_plain_fp32_loop() -> None:
    """predict(precision="32") on uint8 pixels gives the plain loop's probabilities bit for bit."""
    torch.manual_seed(0)
    model = MNISTConvNet().eval()
    pixels = torch.randint(0, 256, (50, 28, 28), dtype=torch.uint8)
    with torch.inference_mode():
        expected = model(((pixels.float() / 255.0 - 0.1307) / 0.3081).unsqueeze(1)).exp()
    assert torch.equal(predict(model, pixels, precision="32").probabilities, expected)


def test_fast_inference_agrees_with_fp32_on_the_mnist_test_set(real_mnist: Path) -> None:
    """bf16 channels-last predictions of the shipped weights equal fp32's on >= 99.9% of digits."""
    images, labels, _ = read_split(real_mnist, train=False)
    model = pretrained("default")
    fast = predict(model, images, precision="bf16-mixed")
    exact = predict(model, images, precision="32")
    assert (fast.labels == exact.labels).float().mean() >= 0.999
    assert (fast.labels == labels).float().mean() >= 0.99


def test_fast_evaluation_scores_within_a_hair_of_fp32(real_mnist: Path) -> None:
    """evaluate()'s accuracy at bf16 is within 0.1 points of fp32's with the shipped weights."""
    loader = make_test_loader(real_mnist, batch_size=1000)
    model = pretrained("default")
    fast = evaluate(model, loader, precision="bf16-mixed")
    exact = evaluate(model, loader, precision="32")
    assert abs(fast.accuracy - exact.accuracy) <= 0.001
    assert fast.loss == pytest.approx(exact.loss, rel=0.05)


def test_an_unknown_precision_is_refused() -> None:
    """precision= takes the Trainer's values; anything else is a named error."""
    with pytest.raises(InvalidArgumentError, match="precision='64' is not supported"):
        predict(MNISTConvNet(), torch.zeros(1, 28, 28), precision="64")  # type: ignore[arg-type]


def test_labels_outside_the_classes_are_a_named_error() -> None:
    """A label of 12 for a 10-class model is InvalidArgumentError, not a bare IndexError."""
    batch = (torch.zeros(2, 1, 28, 28), torch.tensor([3, 12]))
    with pytest.raises(InvalidArgumentError, match=r"class indices 0\.\.9 .* holds 12"):
        evaluate(MNISTConvNet(), [batch])


def test_evaluate_uses_the_output_kind_the_fit_recorded(caplog: pytest.LogCaptureFixture) -> None:
    """After a fit, evaluate takes the loss's detected output kind instead of detecting again."""
    logits_model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    batch = (torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))
    Trainer(logits_model, epochs=1, device="cpu", progress=False).fit([batch])
    assert recorded_output_kind(logits_model) == "logits"
    with caplog.at_level(logging.INFO, logger="lenetish"):
        evaluate(logits_model, [batch])
    assert not [r for r in caplog.records if "treats the model's outputs" in r.message]


def test_probabilities_sum_to_one_after_a_bf16_forward_of_a_fitted_model(tmp_path: Path) -> None:
    """Probabilities from predict are float32 and sum to 1 within 1e-6 after a fit and a load."""
    from lenetish import load_model, save_weights

    model = pretrained()
    batch = (torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,)))
    Trainer(model, epochs=1, lr=1e-9, device="cpu", progress=False).fit([batch])
    assert recorded_output_kind(model) == "log_probabilities"  # no detection to renormalise
    save_weights(model, tmp_path / "w.safetensors")
    images, _ = read_split(None, train=False)[:2]
    for candidate in (model, load_model(tmp_path / "w.safetensors")):
        probabilities = predict(candidate, images[:500], precision="bf16-mixed").probabilities
        assert probabilities.dtype == torch.float32
        assert (probabilities.sum(dim=1) - 1).abs().max().item() < 1e-6
        assert probabilities.unique().numel() > 2_000  # not a few bf16 steps
