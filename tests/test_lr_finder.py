"""Tests of lenetish.lr_finder: the ramp, what it puts back, the suggestion, the errors."""

from __future__ import annotations

import copy
import json
import logging
import math
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lenetish import (
    InvalidArgumentError,
    LRFinderResult,
    MissingDependencyError,
    TensorLoader,
    Trainer,
    lr_find,
)
from lenetish.training.optimizer_config import OptimizerConfig
from lenetish.training.state import BatchOutput
from tests.training_helpers import digit_batches

Batches = list[tuple[Tensor, Tensor]]


def tiny_model(seed: int = 0) -> nn.Module:
    """A small MLP with dropout (so a fit draws from torch's generator)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 16),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(16, 10),
        nn.LogSoftmax(dim=1),
    )


def trainer_of(model: nn.Module, **settings: Any) -> Trainer:
    """A quiet CPU trainer of ``model``."""
    return Trainer(model, device="cpu", progress=False, **settings)


def weights(model: nn.Module) -> list[Tensor]:
    """Copies of the model's parameters and buffers."""
    return [t.detach().clone() for t in (*model.parameters(), *model.buffers())]


def same(left: list[Tensor], right: list[Tensor]) -> bool:
    """Whether two lists of tensors are equal element for element."""
    return len(left) == len(right) and all(
        torch.equal(a, b) for a, b in zip(left, right, strict=True)
    )


class RecordingTrainer(Trainer):
    """Records the learning rate its own training_step sees."""

    def __init__(self, model: nn.Module, **settings: Any) -> None:
        super().__init__(model, device="cpu", progress=False, **settings)
        self.seen_lrs: list[float] = []
        self.seen_losses: list[float] = []

    def training_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
        """Record the optimizer's rate and the batch's loss, then train as usual."""
        self.seen_lrs.append(float(self.optimizer.param_groups[0]["lr"]))
        output = super().training_step(images, labels)
        self.seen_losses.append(float(output.loss.detach()))
        return output


def test_lr_find_ramps_exponentially_from_min_to_max_lr_like_lightning() -> None:
    """The rates climb geometrically from min_lr to max_lr over num_steps steps."""
    result = lr_find(
        trainer_of(tiny_model()),
        digit_batches(),
        min_lr=1e-5,
        max_lr=1e-1,
        num_steps=9,
        divergence=None,
    )
    assert len(result.lrs) == len(result.losses) == len(result.smoothed_losses) == 9
    assert result.lrs[0] == 1e-5 and result.lrs[-1] == pytest.approx(1e-1)
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:], strict=False)]
    assert ratios == pytest.approx([10**0.5] * 8)


def test_lr_find_uses_the_trainers_own_training_step_and_optimizer_like_fastai() -> None:
    """A subclass's training_step runs every step, under the ramp's rate on its optimizer."""
    trainer = RecordingTrainer(tiny_model())
    result = lr_find(trainer, digit_batches(), min_lr=1e-4, max_lr=1e-2, num_steps=6)
    assert trainer.seen_lrs == list(result.lrs)


def test_lr_find_steps_once_per_accumulated_group_like_lightning() -> None:
    """With accumulate_grad_batches=2 a step is two micro-batches at one rate, mean loss."""
    trainer = RecordingTrainer(tiny_model(), accumulate_grad_batches=2)
    result = lr_find(trainer, digit_batches(), min_lr=1e-4, max_lr=1e-2, num_steps=5)
    assert len(result.losses) == 5
    assert trainer.seen_lrs == [lr for lr in result.lrs for _ in range(2)]
    pairs = zip(trainer.seen_losses[::2], trainer.seen_losses[1::2], strict=True)
    assert list(result.losses) == pytest.approx([(a + b) / 2 for a, b in pairs])


def test_lr_find_is_not_cut_short_by_max_steps_or_fast_dev_run_like_lightning() -> None:
    """The trainer's step budget and quick-run setting do not shorten the ramp."""
    for settings in ({"max_steps": 2}, {"fast_dev_run": True}):
        trainer = trainer_of(tiny_model(), **settings)
        result = lr_find(trainer, digit_batches(), min_lr=1e-4, max_lr=1e-2, num_steps=6)
        assert len(result.losses) == 6, settings


def test_lr_find_cycles_a_loader_shorter_than_num_steps_like_fastai() -> None:
    """Four batches give a ramp of ten steps (the loader is cycled)."""
    result = lr_find(
        trainer_of(tiny_model()), digit_batches(200, 50), min_lr=1e-5, max_lr=1e-3, num_steps=10
    )
    assert len(result.losses) == 10 and not result.diverged


def test_lr_find_smooths_losses_with_bias_correction_like_fastai() -> None:
    """Smoothed loss i is the bias-corrected moving average of losses 0..i."""
    result = lr_find(
        trainer_of(tiny_model()),
        digit_batches(),
        min_lr=1e-5,
        max_lr=1e-2,
        num_steps=8,
        smoothing=0.9,
    )
    average, expected = 0.0, []
    for step, loss in enumerate(result.losses, start=1):
        average = 0.9 * average + 0.1 * loss
        expected.append(average / (1 - 0.9**step))
    assert result.smoothed_losses == pytest.approx(expected)
    assert result.smoothed_losses[0] == pytest.approx(result.losses[0])


def test_lr_find_stops_when_the_smoothed_loss_diverges_like_fastai() -> None:
    """SGD up to a huge rate stops early, at a smoothed loss above 4x the best."""
    trainer = trainer_of(tiny_model(), optimizer="sgd", momentum=0.0)
    result = lr_find(trainer, digit_batches(), min_lr=1e-3, max_lr=1e5, num_steps=40)
    assert result.diverged and len(result.losses) < 40
    best = min(result.smoothed_losses[:-1])
    last = result.smoothed_losses[-1]
    assert not math.isfinite(last) or last > 4 * best


def test_lr_find_restores_model_and_optimizer_like_lightning() -> None:
    """Weights, gradients, buffers and a lasting optimizer's state are as before the ramp."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.BatchNorm1d(10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    class LastingOptimizer(Trainer):
        def configure_optimizers(self) -> OptimizerConfig:
            """The same optimizer for every fit."""
            return optimizer

    trainer = LastingOptimizer(model, epochs=1, device="cpu", progress=False)
    trainer.fit(digit_batches())  # the optimizer now has moments, the model gradients
    before = weights(model)
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    state = copy.deepcopy(optimizer.state_dict())
    lr_find(trainer, digit_batches(), min_lr=1e-4, max_lr=1.0, num_steps=8)
    assert same(weights(model), before)
    assert same([p.grad for p in model.parameters() if p.grad is not None], grads)
    after = optimizer.state_dict()
    assert after["param_groups"] == state["param_groups"]
    for key, moments in state["state"].items():
        assert all(torch.equal(moments[k], after["state"][key][k]) for k in moments)


def test_lr_find_restores_train_and_eval_modes_like_lightning() -> None:
    """Each submodule's train/eval mode is as it was (here a model in eval mode)."""
    model = tiny_model()
    model.eval()
    list(model.modules())[4].train()  # a mixed model: only the dropout in training mode
    modes = [m.training for m in model.modules()]
    lr_find(trainer_of(model), digit_batches(), min_lr=1e-4, max_lr=1e-2, num_steps=4)
    assert [m.training for m in model.modules()] == modes


def test_lr_find_restores_the_random_generators_like_lightning() -> None:
    """Python's, NumPy's and torch's generators are where they were before the ramp."""
    trainer, batches = trainer_of(tiny_model(), seed=7), digit_batches()  # seeds torch itself
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    lr_find(trainer, batches, min_lr=1e-4, max_lr=1e-2, num_steps=4)
    drawn = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    assert drawn == (random.random(), float(np.random.rand()), float(torch.rand(1)))


def test_fit_after_lr_find_equals_fit_without_it_like_fastai() -> None:
    """A shuffled, dropout fit after lr_find gives the weights of one without it (equal)."""
    images, labels = (torch.cat(parts) for parts in zip(*digit_batches(200, 200), strict=True))

    def loader() -> DataLoader[tuple[Tensor, ...]]:
        generator = torch.Generator().manual_seed(5)  # the loader's own shuffling
        return DataLoader(TensorDataset(images, labels), 40, shuffle=True, generator=generator)

    with_find, without = tiny_model(), tiny_model()
    batches = loader()
    trainer = trainer_of(with_find, epochs=2)
    torch.manual_seed(11)
    lr_find(trainer, batches, min_lr=1e-4, max_lr=1.0, num_steps=7)
    trainer.fit(batches)
    torch.manual_seed(11)
    trainer_of(without, epochs=2).fit(loader())
    assert same(weights(with_find), weights(without))


def test_lr_find_restores_a_lenetish_loaders_epoch_counter_like_lightning() -> None:
    """A TensorLoader's next epoch (its shuffle) is the one it was before the ramp."""
    images, labels = (torch.cat(parts) for parts in zip(*digit_batches(200, 200), strict=True))
    loader = TensorLoader(images, labels, batch_size=50, shuffle=True)
    loader.set_epoch(3)
    lr_find(trainer_of(tiny_model()), loader, min_lr=1e-4, max_lr=1e-2, num_steps=9)
    assert loader.epoch == 3


def test_lr_find_leaves_the_trainer_as_it_was_like_lightning() -> None:
    """The trainer's callbacks, History, settings and (absent) optimizer are unchanged."""
    trainer = trainer_of(tiny_model(), scheduler="onecycle", epochs=3, min_epochs=2)
    callbacks, history = list(trainer.callbacks), trainer.history
    lr_find(trainer, digit_batches(), min_lr=1e-4, max_lr=1e-2, num_steps=5)
    assert trainer.callbacks == callbacks and trainer.history is history and not len(history)
    assert (trainer.scheduler_spec, trainer.epochs, trainer.min_epochs) == ("onecycle", 3, 2)
    assert trainer.fit_callbacks == ()  # no fit has run on the trainer itself


def test_lr_find_builds_a_default_trainer_for_a_bare_model_like_fastai() -> None:
    """A bare network gets Trainer(model, device=device); its weights come back too."""
    model = tiny_model()
    before = weights(model)
    result = lr_find(model, digit_batches(), min_lr=1e-4, max_lr=1e-2, num_steps=5, device="cpu")
    assert len(result.losses) == 5 and same(weights(model), before)


def test_lr_find_suggests_the_steepest_descent_of_the_smoothed_loss_like_lightning() -> None:
    """The suggestion is the rate of the most negative d(smoothed)/d(log lr), after a tenth."""
    result = lr_find(
        trainer_of(tiny_model()), digit_batches(400, 50), min_lr=1e-4, max_lr=1.0, num_steps=30
    )
    usable = len(result.lrs) - (1 if result.diverged else 0)
    slopes = np.gradient(np.array(result.smoothed_losses[:usable]), np.log(result.lrs[:usable]))
    steepest = 3 + int(np.argmin(slopes[3:]))
    assert slopes[steepest] < 0 and result.suggestion == result.lrs[steepest]


def test_lr_find_divergence_before_any_usable_point_gives_no_suggestion_like_lightning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A ramp that diverges at once suggests None and says why in the log."""
    trainer = trainer_of(tiny_model(), optimizer="sgd", momentum=0.0)
    with caplog.at_level(logging.WARNING, logger="lenetish"):
        result = lr_find(trainer, digit_batches(), min_lr=1e3, max_lr=1e6, num_steps=20)
    assert result.diverged and result.suggestion is None
    assert "suggestion is None" in caplog.text and "diverged after" in caplog.text


class RisingLossTrainer(Trainer):
    """A step whose loss only rises (still attached to the graph, so it trains)."""

    def training_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
        """The model's outputs, with a loss of 1 + 0.1 per step taken so far."""
        outputs = self.model(images)
        loss = (outputs * 0).sum() + 1.0 + 0.1 * self.state.global_step
        return BatchOutput(loss, outputs, labels)


def test_lr_find_a_loss_that_never_falls_gives_no_suggestion_like_lightning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A smoothed loss that only rises suggests None and says so in the log."""
    trainer = RisingLossTrainer(tiny_model(), device="cpu", progress=False)
    with caplog.at_level(logging.WARNING, logger="lenetish"):
        result = lr_find(trainer, digit_batches(), min_lr=1e-4, max_lr=1e-2, num_steps=10)
    assert not result.diverged and result.suggestion is None
    assert "the smoothed loss never fell" in caplog.text


def test_lr_find_result_to_dict_is_plain_json_like_lightning() -> None:
    """to_dict() holds lists and numbers that json.dumps writes and reads back."""
    result = lr_find(
        trainer_of(tiny_model()), digit_batches(), min_lr=1e-4, max_lr=1e-2, num_steps=5
    )
    loaded = json.loads(json.dumps(result.to_dict()))
    assert loaded["lrs"] == pytest.approx(list(result.lrs))
    assert loaded["losses"] == pytest.approx(list(result.losses))
    assert loaded["suggestion"] == result.suggestion and loaded["diverged"] is False


def test_lr_find_result_plot_writes_a_png_like_fastai(tmp_path: Path) -> None:
    """plot(path) writes a PNG of the curve, marking the suggestion."""
    pytest.importorskip("matplotlib")
    result = LRFinderResult(
        (1e-4, 1e-3, 1e-2, 1e-1), (2.3, 2.0, 1.2, 9.0), (2.3, 2.1, 1.8, 9.5), 1e-2, True
    )
    path = result.plot(tmp_path / "lr.png")
    assert path == tmp_path / "lr.png" and path.read_bytes()[:4] == b"\x89PNG"


def test_lr_find_plot_without_matplotlib_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without matplotlib, plot() raises MissingDependencyError naming the plot extra."""
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    result = LRFinderResult((1e-3, 1e-2), (2.3, 2.0), (2.3, 2.2), None, False)
    with pytest.raises(MissingDependencyError, match=r"pip install 'lenetish\[plot\]'"):
        result.plot(tmp_path / "lr.png")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"min_lr": 1e-2, "max_lr": 1e-3}, r"min_lr=0\.01 must be below max_lr=0\.001"),
        ({"min_lr": 1.0, "max_lr": 1.0}, r"min_lr=1\.0 must be below max_lr=1\.0"),
        ({"min_lr": 0.0}, r"min_lr must be a positive finite number, got 0\.0"),
        ({"max_lr": -1.0}, r"max_lr must be a positive finite number, got -1\.0"),
        ({"max_lr": math.inf}, r"max_lr must be a positive finite number, got inf"),
        ({"num_steps": 1}, r"num_steps must be an integer of at least 2 .*got 1"),
        ({"num_steps": 2.5}, r"num_steps must be an integer of at least 2 .*got 2\.5"),
        ({"smoothing": 1.0}, r"smoothing must be in \[0, 1\) .*got 1\.0"),
        ({"smoothing": -0.1}, r"smoothing must be in \[0, 1\) .*got -0\.1"),
        ({"divergence": 1.0}, r"divergence must be a number above 1 .*got 1\.0"),
        ({"divergence": 0.0}, r"divergence must be a number above 1 .*got 0\.0"),
    ],
)
def test_lr_find_refuses_settings_out_of_range_like_lightning(
    settings: dict[str, float], message: str
) -> None:
    """Rates, steps, smoothing and divergence out of range are InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError, match=message):
        lr_find(trainer_of(tiny_model()), digit_batches(), **settings)  # type: ignore[arg-type]


def test_lr_find_refuses_a_loader_with_no_batches() -> None:
    """An empty loader is InvalidArgumentError saying lr_find needs batches."""
    with pytest.raises(InvalidArgumentError, match=r"train has no batches \(its len\(\) is 0\)"):
        lr_find(trainer_of(tiny_model()), [])


def test_lr_find_refuses_a_device_with_a_trainer() -> None:
    """device= goes with a bare model only; with a Trainer it is InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError, match=r"device='cpu' is for a bare model"):
        lr_find(trainer_of(tiny_model()), digit_batches(), device="cpu")


def test_lr_find_refuses_what_is_neither_trainer_nor_model() -> None:
    """Anything but a Trainer or an nn.Module is InvalidArgumentError naming its type."""
    with pytest.raises(InvalidArgumentError, match=r"Trainer or a torch nn.Module, got dict"):
        lr_find({}, digit_batches())  # type: ignore[arg-type]


def test_lr_find_refuses_an_iterator_as_the_fit_does() -> None:
    """A generator of batches is InvalidArgumentError (it would be used up after one pass)."""
    with pytest.raises(InvalidArgumentError, match=r"train is an iterator \(generator\)"):
        lr_find(trainer_of(tiny_model()), (batch for batch in digit_batches()))


class NoBatches:
    """An iterable without a length that yields nothing."""

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield no batches."""
        return iter(())


def test_lr_find_refuses_an_unsized_loader_that_yields_nothing_as_the_fit_does() -> None:
    """A loader without len() that yields no batches is InvalidArgumentError from the fit."""
    with pytest.raises(InvalidArgumentError, match=r"yielded no batches in epoch 1"):
        lr_find(trainer_of(tiny_model()), NoBatches())
