"""Tests of lenetish.training.limits: accumulation, budgets, quick runs, weights, sanity checks."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lenetish import (
    BatchOutput,
    Callback,
    CSVLogger,
    EarlyStopping,
    InvalidArgumentError,
    MNISTConvNet,
    ModelCheckpoint,
    Trainer,
    TrainState,
    load_checkpoint,
)
from lenetish.training.limits import LoopLimits


def _batches(count: int, size: int, seed: int = 0) -> list[tuple[Tensor, Tensor]]:
    """``count`` random batches of ``size`` images with labels."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(count * size, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (count * size,), generator=generator)
    return [(images[i : i + size], labels[i : i + size]) for i in range(0, count * size, size)]


def _sgd_trainer(model: nn.Module, **options: Any) -> Trainer:
    return Trainer(
        model, optimizer="sgd", lr=0.05, momentum=0.0, device="cpu", progress=False,
        channels_last=False, **options,
    )  # fmt: skip


class Counter(Callback):
    """Counts optimizer-step hooks and records global_step at each batch end."""

    def __init__(self) -> None:
        self.optimizer_steps = 0
        self.steps: list[int] = []
        self.training_batches = 0

    def on_batch_start(self, trainer: Trainer, state: TrainState) -> None:
        self.training_batches += 1

    def on_before_optimizer_step(
        self, trainer: Trainer, state: TrainState, optimizer: torch.optim.Optimizer
    ) -> None:
        self.optimizer_steps += 1

    def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
        self.steps.append(state.global_step)


def test_accumulating_n_batches_of_b_equals_one_batch_of_n_times_b_like_lightning() -> None:
    """accumulate_grad_batches=4 over batches of 8 trains like batches of 32 (within 1e-6)."""
    torch.manual_seed(0)
    small, big = MNISTConvNet(), None
    big = copy.deepcopy(small)
    micro = _batches(8, 8)
    whole = [
        (torch.cat([b[0] for b in micro[i : i + 4]]), torch.cat([b[1] for b in micro[i : i + 4]]))
        for i in (0, 4)
    ]
    _sgd_trainer(small, epochs=2, accumulate_grad_batches=4).fit(micro)
    _sgd_trainer(big, epochs=2).fit(whole)
    for a, b in zip(small.parameters(), big.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), float((a - b).abs().max())


def test_global_step_counts_optimizer_steps_and_the_last_short_group_steps_too() -> None:
    """10 batches, groups of 4: steps after batches 4, 8 and 10; one hook call per step."""
    counter = Counter()
    _sgd_trainer(MNISTConvNet(), epochs=1, accumulate_grad_batches=4, callbacks=[counter]).fit(
        _batches(10, 4)
    )
    assert counter.optimizer_steps == 3
    assert counter.steps == [0, 0, 0, 1, 1, 1, 1, 2, 2, 3]


def test_a_per_step_schedule_steps_once_per_optimizer_step_with_accumulation() -> None:
    """The one-cycle schedule is planned for optimizer steps, stepped only after them."""
    lrs: list[float] = []

    class Watch(Callback):
        def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
            lrs.append(trainer.optimizer.param_groups[0]["lr"])

    trainer = Trainer(
        MNISTConvNet(), epochs=2, scheduler="onecycle", accumulate_grad_batches=3,
        device="cpu", progress=False, callbacks=[Watch()],
    )  # fmt: skip
    trainer.fit(_batches(7, 4))  # 3 + 3 + 1 batches: 3 optimizer steps an epoch
    assert trainer.state.global_step == 6
    assert lrs[0] == lrs[1] < lrs[2]  # micro-batches leave the schedule where it is
    assert min(lrs) < 1e-8  # the cycle's end is reached at the planned last step


def test_max_steps_ends_the_fit_and_records_the_cut_epoch_like_keras() -> None:
    """max_steps=5 with epochs=None: 5 steps, the cut epoch validated and in History."""
    counter = Counter()
    trainer = _sgd_trainer(MNISTConvNet(), epochs=None, max_steps=5, callbacks=[counter])
    history = trainer.fit(_batches(3, 4), _batches(1, 4, seed=1))
    assert trainer.state.global_step == 5 and counter.optimizer_steps == 5
    assert [row["epoch"] for row in history] == [1, 2]
    assert "val_loss" in history[-1]


def test_limit_train_and_val_batches_take_counts_and_fractions_like_lightning() -> None:
    """An int or a fraction of len(loader) per epoch; validation likewise."""
    counter = Counter()
    seen: list[int] = []

    class CountingTrainer(Trainer):
        def validation_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
            seen.append(len(labels))
            return super().validation_step(images, labels)

    trainer = CountingTrainer(
        MNISTConvNet(), epochs=2, device="cpu", progress=False, callbacks=[counter],
        limit_train_batches=0.5, limit_val_batches=1, num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(_batches(8, 2), _batches(4, 3, seed=1))
    assert counter.training_batches == 8 and seen == [3, 3]


def test_fast_dev_run_trains_n_batches_once_and_writes_no_files(tmp_path: Path) -> None:
    """fast_dev_run=2: one epoch of 2 batches; ModelCheckpoint and CSVLogger write nothing."""
    counter = Counter()
    callbacks = [counter, ModelCheckpoint(tmp_path / "ckpt"), CSVLogger(tmp_path / "h.csv")]
    trainer = _sgd_trainer(MNISTConvNet(), epochs=5, fast_dev_run=2, callbacks=callbacks)
    history = trainer.fit(_batches(6, 2), _batches(6, 2, seed=1))
    assert len(history) == 1 and counter.training_batches == 2
    assert list(tmp_path.iterdir()) == []


def test_a_broken_validation_step_fails_before_the_first_epoch_like_lightning() -> None:
    """The sanity check runs 2 validation batches first: the error comes before any training."""
    counter = Counter()

    class Broken(Trainer):
        def validation_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
            raise RuntimeError("broken validation")

    trainer = Broken(MNISTConvNet(), epochs=1, device="cpu", progress=False, callbacks=[counter])
    with pytest.raises(RuntimeError, match="broken validation"):
        trainer.fit(_batches(3, 4), _batches(3, 4, seed=1))
    assert counter.training_batches == 0


def test_the_sanity_check_changes_nothing_the_fit_computes() -> None:
    """A fit with and without the sanity check ends with the same weights and History."""
    results = []
    for sanity in (0, 2):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(784, 10))
        history = Trainer(
            model, epochs=2, device="cpu", progress=False, num_sanity_val_steps=sanity, seed=1
        ).fit(_batches(3, 4), _batches(3, 4, seed=1))
        results.append(([p.detach().clone() for p in model.parameters()], history[-1]["loss"]))
    assert all(torch.equal(a, b) for a, b in zip(results[0][0], results[1][0], strict=True))
    assert results[0][1] == results[1][1]


def test_class_weight_weights_the_training_loss_only_like_keras() -> None:
    """Each sample's loss times its class's weight, the batch mean; val_loss unweighted."""
    weights = torch.tensor([2.0] + [0.5] * 9)
    images, labels = _batches(1, 16)[0]
    model = MNISTConvNet()

    class Probe(Trainer):
        def training_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
            output = super().training_step(images, labels)
            per_sample = F.nll_loss(output.logits.detach(), labels, reduction="none")
            expected.append(float((per_sample * weights[labels]).mean()))
            got.append(float(output.loss))
            return output

    expected: list[float] = []
    got: list[float] = []
    trainer = Probe(model, epochs=1, lr=0.0 + 1e-12, device="cpu", progress=False,
                    class_weight=weights.tolist(), channels_last=False)  # fmt: skip
    history = trainer.fit([(images, labels)], [(images, labels)])
    assert got[0] == pytest.approx(expected[0], rel=1e-5)
    unweighted = F.nll_loss(model.eval()(images), labels).item()
    assert history[-1]["val_loss"] == pytest.approx(unweighted, rel=1e-4)


def test_sample_weight_batches_weight_each_sample_like_keras() -> None:
    """(images, labels, weights) batches: zero weights leave an SGD model unchanged."""
    model = MNISTConvNet()
    before = [p.detach().clone() for p in model.parameters()]
    images, labels = _batches(1, 8)[0]
    _sgd_trainer(model, epochs=1).fit([(images, labels, torch.zeros(8))])
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_a_mid_group_checkpoint_resumes_bit_identical(tmp_path: Path) -> None:
    """A checkpoint written between micro-batches keeps their gradients: resume is exact."""

    class SaveAt(Callback):
        def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
            if state.epoch == 0 and state.batch_index == 1:  # mid-group of 3
                trainer.save_checkpoint(tmp_path / "mid.pt")

    batches = _batches(6, 4)
    torch.manual_seed(0)
    straight = MNISTConvNet()
    resumed = copy.deepcopy(straight)
    _sgd_trainer(straight, epochs=2, accumulate_grad_batches=3, callbacks=[SaveAt()]).fit(batches)
    _sgd_trainer(resumed, epochs=2, accumulate_grad_batches=3).fit(
        batches, resume=tmp_path / "mid.pt"
    )
    assert all(
        torch.equal(a, b) for a, b in zip(straight.parameters(), resumed.parameters(), strict=True)
    )


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        (
            {"images": torch.zeros(2, 1, 28, 28), "labels": torch.zeros(2).long()},
            "a dict with keys",
        ),
        ((torch.zeros(2, 1, 28, 28),), "a tuple of 1"),
        (torch.zeros(2, 1, 28, 28), "a Tensor"),
    ],
)
def test_a_batch_of_another_form_is_a_named_error(batch: Any, match: str) -> None:
    """Dicts, 1-tuples and bare tensors are refused with what to yield instead."""
    with pytest.raises(InvalidArgumentError, match=match):
        _sgd_trainer(MNISTConvNet(), epochs=1).fit([batch])


def test_training_step_returning_none_is_a_named_error() -> None:
    """A training_step that returns nothing says to return a BatchOutput."""

    class Forgetful(Trainer):
        def training_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
            super().training_step(images, labels)
            return None  # type: ignore[return-value]

    trainer = Forgetful(MNISTConvNet(), epochs=1, device="cpu", progress=False)
    with pytest.raises(InvalidArgumentError, match="training_step returned NoneType"):
        trainer.fit(_batches(1, 4))


def test_on_exception_sees_a_failing_configure_optimizers_like_lightning() -> None:
    """An error in configure_optimizers reaches every callback's on_exception."""
    seen: list[BaseException] = []

    class Watcher(Callback):
        def on_exception(self, trainer: Trainer, state: TrainState, exc: BaseException) -> None:
            seen.append(exc)

    class NoOptimizer(Trainer):
        def configure_optimizers(self) -> torch.optim.Optimizer:
            raise RuntimeError("no optimizer today")

    trainer = NoOptimizer(MNISTConvNet(), epochs=1, device="cpu", progress=False,
                          callbacks=[Watcher()])  # fmt: skip
    with pytest.raises(RuntimeError, match="no optimizer today"):
        trainer.fit(_batches(1, 4))
    assert len(seen) == 1 and "no optimizer today" in str(seen[0])


def test_a_submodule_frozen_in_eval_mode_stays_frozen_while_training_like_lightning() -> None:
    """model.train() with its batch norm set to eval: the fit does not flip it back."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(2704, 10))
    model[1].eval()
    modes: list[bool] = []

    class Watch(Callback):
        def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
            modes.append(model[1].training)

    Trainer(model, epochs=2, device="cpu", progress=False, callbacks=[Watch()]).fit(
        _batches(2, 4), _batches(1, 4, seed=1)
    )
    assert modes == [False] * 4


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"accumulate_grad_batches": 0}, "accumulate_grad_batches must be an integer >= 1"),
        ({"max_steps": 0}, "max_steps must be an integer >= 1"),
        ({"limit_train_batches": 1.5}, r"must be in \(0, 1\]"),
        ({"limit_val_batches": "all"}, "a number of batches"),
        ({"fast_dev_run": -1}, "fast_dev_run must be an integer >= 1"),
        ({"num_sanity_val_steps": -1}, "num_sanity_val_steps must be"),
        ({"epochs": None}, "needs max_steps"),
        ({"class_weight": [1.0, -1.0]}, "one finite weight >= 0"),
    ],
)
def test_loop_settings_out_of_range_are_refused(options: dict[str, Any], match: str) -> None:
    """Each loop setting is checked when the Trainer is built."""
    with pytest.raises(InvalidArgumentError, match=match):
        Trainer(MNISTConvNet(), device="cpu", **options)


def test_a_fractional_limit_of_a_loader_without_length_is_refused() -> None:
    """limit_train_batches=0.5 needs len(loader)."""

    def endless() -> Any:
        yield from _batches(2, 4)

    class NoLength:
        def __iter__(self) -> Any:
            return endless()

    trainer = _sgd_trainer(MNISTConvNet(), epochs=1, limit_train_batches=0.5)
    with pytest.raises(InvalidArgumentError, match="the loader has no len"):
        trainer.fit(NoLength())


def test_loop_limits_count_optimizer_steps() -> None:
    """optimizer_steps rounds a last short group up."""
    assert LoopLimits(accumulate_grad_batches=3).optimizer_steps(7) == 3


def test_trainer_validate_scores_like_the_fits_last_validation_like_lightning() -> None:
    """trainer.validate(val) after a fit gives the last epoch's val_loss and val_accuracy."""
    val = _batches(2, 4, seed=1)
    trainer = Trainer(MNISTConvNet(), epochs=2, device="cpu", progress=False)
    history = trainer.fit(_batches(3, 4), val)
    scores = trainer.validate(val)
    assert scores["val_loss"] == pytest.approx(history[-1]["val_loss"], rel=1e-5)
    assert scores["val_accuracy"] == history[-1]["val_accuracy"]


def test_trainer_validate_before_any_fit_is_a_named_error() -> None:
    """validate() needs a fit's loss: NotFittedError says to fit or use evaluate."""
    from lenetish import NotFittedError

    with pytest.raises(NotFittedError, match="call fit"):
        Trainer(MNISTConvNet(), device="cpu").validate(_batches(1, 4))


def test_trainer_predict_runs_predict_step_on_every_batch_like_lightning() -> None:
    """predict() concatenates predict_step's outputs; (images, labels) tuples are taken too."""
    model = MNISTConvNet().eval()
    batches = _batches(2, 3)
    outputs = Trainer(model, device="cpu").predict(batches)
    with torch.no_grad():
        expected = torch.cat([model(images) for images, _ in batches])
    assert torch.allclose(outputs, expected, atol=1e-6)


def test_a_list_of_validation_loaders_is_a_named_error() -> None:
    """val=[loader, loader] is refused with how to combine them (Lightning takes several)."""
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*_batches(1, 4)[0]))
    with pytest.raises(InvalidArgumentError, match="a list of 2 loaders"):
        Trainer(MNISTConvNet(), epochs=1, device="cpu").fit(_batches(1, 4), [loader, loader])


def test_lbfgs_is_a_named_error_not_a_missing_closure() -> None:
    """An optimizer whose step needs a closure is refused before the first batch."""

    class LBFGSTrainer(Trainer):
        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.LBFGS(self.model.parameters())

    trainer = LBFGSTrainer(MNISTConvNet(), epochs=1, device="cpu", progress=False)
    with pytest.raises(InvalidArgumentError, match="LBFGS, whose step needs a closure"):
        trainer.fit(_batches(1, 4))


class LogsBatchMeans(Trainer):
    """Logs each batch's mean label, in training (reduce='mean') and validation (default)."""

    def training_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
        self.log("train_label", labels.float().mean(), reduce="mean")
        self.log("last_label", labels.float().mean())
        return super().training_step(images, labels)

    def validation_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
        self.log("val_label", labels.float().mean())
        return super().validation_step(images, labels)


def _uneven_batches() -> list[tuple[Tensor, Tensor]]:
    """Three batches of 4, 4 and 2 samples with known labels."""
    images = torch.zeros(10, 1, 28, 28)
    labels = torch.tensor([0, 0, 0, 0, 4, 4, 4, 4, 9, 9])
    return [(images[:4], labels[:4]), (images[4:8], labels[4:8]), (images[8:], labels[8:])]


def test_log_averages_by_batch_size_in_validation_and_when_asked_like_lightning() -> None:
    """Validation logs default to the batch-size-weighted mean; reduce='mean' in training."""
    batches = _uneven_batches()
    trainer = LogsBatchMeans(MNISTConvNet(), epochs=1, device="cpu", progress=False,
                             num_sanity_val_steps=0)  # fmt: skip
    row = trainer.fit(batches, batches)[-1]
    assert row["val_label"] == pytest.approx(3.4) and row["train_label"] == pytest.approx(3.4)
    assert row["last_label"] == pytest.approx(9.0)  # training's default: the last value


def test_an_unknown_reduce_is_refused() -> None:
    """trainer.log(..., reduce='max') names the choices."""

    class Odd(Trainer):
        def training_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
            self.log("x", 1.0, reduce="max")  # type: ignore[arg-type]
            return super().training_step(images, labels)

    with pytest.raises(InvalidArgumentError, match="reduce='max' is not supported"):
        Odd(MNISTConvNet(), epochs=1, device="cpu", progress=False).fit(_batches(1, 4))


def test_a_mid_epoch_resume_keeps_a_logged_mean(tmp_path: Path) -> None:
    """A checkpoint inside the epoch keeps the mean's weight: the resumed row is the same."""

    class SaveAt(Callback):
        def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
            if state.epoch == 0 and state.batch_index == 1:
                trainer.save_checkpoint(tmp_path / "mid.pt")

    batches = _uneven_batches()
    straight = LogsBatchMeans(MNISTConvNet(), epochs=1, device="cpu", progress=False,
                              callbacks=[SaveAt()])  # fmt: skip
    expected = straight.fit(batches)[-1]["train_label"]
    resumed = LogsBatchMeans(MNISTConvNet(), epochs=1, device="cpu", progress=False)
    assert resumed.fit(batches, resume=tmp_path / "mid.pt")[-1]["train_label"] == expected


class ScriptedValidation(Trainer):
    """A trainer whose validation losses follow a script, one value per validation."""

    def __init__(self, model: nn.Module, losses: list[float], **options: Any) -> None:
        super().__init__(model, device="cpu", progress=False, num_sanity_val_steps=0, **options)
        self.script, self.calls = list(losses), 0

    def validation_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
        output = super().validation_step(images, labels)
        loss = torch.tensor(self.script[min(self.calls, len(self.script) - 1)])
        return BatchOutput(loss, output.logits, output.targets)

    def on_validation_done(self) -> None:
        self.calls += 1


class NextScriptValue(Callback):
    """Moves a ScriptedValidation to its next scripted loss after each validation."""

    order = 5000  # after every reader

    def on_validation_end(
        self, trainer: Trainer, state: TrainState, metrics: dict[str, float]
    ) -> None:
        assert isinstance(trainer, ScriptedValidation)
        trainer.on_validation_done()


def test_val_check_interval_fraction_validates_inside_each_epoch_like_lightning() -> None:
    """val_check_interval=0.25 of 8 batches: validations after batches 2, 4, 6 and 8."""
    trainer = _sgd_trainer(MNISTConvNet(), epochs=2, val_check_interval=0.25)
    history = trainer.fit(_batches(8, 2), _batches(1, 2, seed=1))
    assert [(row["epoch"], row["batch"]) for row in history.validations] == [
        (e, b) for e in (1, 2) for b in (2, 4, 6, 8)
    ]
    assert len(history) == 2  # one row per epoch, holding the epoch end's validation
    assert history[-1]["val_loss"] == history.validations[-1]["val_loss"]


def test_val_check_interval_counts_batches_and_waits_for_the_optimizer_step() -> None:
    """An int interval counts batches; inside a group of micro-batches it waits for the step."""
    trainer = _sgd_trainer(MNISTConvNet(), epochs=1, val_check_interval=3,
                           accumulate_grad_batches=2)  # fmt: skip
    history = trainer.fit(_batches(10, 2), _batches(1, 2, seed=1))
    assert [row["batch"] for row in history.validations] == [4, 6, 10]
    assert [row["step"] for row in history.validations] == [2, 3, 5]


def test_early_stopping_judges_every_in_epoch_validation_like_lightning() -> None:
    """Patience counts validations: a loss rising after the first check stops inside epoch 1."""
    stopper = EarlyStopping("val_loss", patience=1)
    trainer = ScriptedValidation(
        MNISTConvNet(), [1.0, 2.0, 3.0], epochs=3, val_check_interval=2,
        callbacks=[stopper, NextScriptValue()],
    )  # fmt: skip
    history = trainer.fit(_batches(8, 2), _batches(1, 2, seed=1))
    assert stopper.stopping_reason == "patience_exhausted" and stopper.stopped_epoch == 1
    assert [row["batch"] for row in history.validations] == [2, 4]
    assert trainer.state.global_step == 4 and len(history) == 0  # the epoch was cut short


def test_model_checkpoint_keeps_the_best_in_epoch_validation_resumable(tmp_path: Path) -> None:
    """best.pt from a validation inside the epoch is a mid-epoch checkpoint of that point."""
    checkpoint = ModelCheckpoint(
        tmp_path, save_best=True, save_top_k=2, filename="{epoch}-{step}.pt"
    )
    trainer = ScriptedValidation(
        MNISTConvNet(), [3.0, 1.0, 2.0, 4.0], epochs=1, val_check_interval=2,
        callbacks=[checkpoint, NextScriptValue()],
    )  # fmt: skip
    trainer.fit(_batches(8, 2), _batches(1, 2, seed=1))
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["mid_epoch"]["batches_done"] == 4 and best["global_step"] == 4
    assert sorted(p.name for p in tmp_path.glob("1-*.pt")) == ["1-4.pt", "1-6.pt"]


def test_a_checkpoint_from_an_in_epoch_validation_resumes_bit_identical(tmp_path: Path) -> None:
    """Resumed from a save at an in-epoch validation: same weights, same validations."""

    class SaveAtCheck(Callback):
        reads_metrics, order = True, 1000  # after History, as ModelCheckpoint: its row saved

        def on_validation_end(
            self, trainer: Trainer, state: TrainState, metrics: dict[str, float]
        ) -> None:
            if state.in_epoch_validation and state.global_step == 6:
                trainer.save_checkpoint(tmp_path / "check.pt")

    batches, val = _batches(8, 2), _batches(1, 2, seed=1)
    torch.manual_seed(0)
    straight = MNISTConvNet()
    resumed = copy.deepcopy(straight)
    first = _sgd_trainer(straight, epochs=2, val_check_interval=3, callbacks=[SaveAtCheck()])
    expected = first.fit(batches, val).validations
    second = _sgd_trainer(resumed, epochs=2, val_check_interval=3)
    assert second.fit(batches, val, resume=tmp_path / "check.pt").validations == expected
    assert all(
        torch.equal(a, b) for a, b in zip(straight.parameters(), resumed.parameters(), strict=True)
    )


def test_values_logged_by_an_in_epoch_validation_stay_in_its_own_row() -> None:
    """trainer.log in validation_step: each validation's row has its own mean."""

    class LogsBatches(Trainer):
        def validation_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
            self.log("val_step", float(self.state.global_step))
            return super().validation_step(images, labels)

    trainer = LogsBatches(MNISTConvNet(), epochs=1, device="cpu", progress=False,
                          val_check_interval=2, num_sanity_val_steps=0)  # fmt: skip
    history = trainer.fit(_batches(4, 2), _batches(2, 2, seed=1))
    assert history.validations[0]["val_step"] == 2.0
    assert history[-1]["val_step"] == 4.0  # the epoch's end, not a mean with the check at 2


@pytest.mark.parametrize(
    ("options", "val", "match"),
    [
        ({"val_check_interval": 2}, None, "fit\\(\\) was given no val batches"),
        ({"val_check_interval": 9}, _batches(1, 2), "longer than an epoch"),
        ({"val_check_interval": 0}, _batches(1, 2), "val_check_interval=0"),
    ],
)
def test_val_check_interval_that_cannot_work_is_refused(
    options: dict[str, Any], val: Any, match: str
) -> None:
    """No validation data, an interval past the epoch's end, or 0: named errors."""
    with pytest.raises(InvalidArgumentError, match=match):
        _sgd_trainer(MNISTConvNet(), epochs=1, **options).fit(_batches(4, 2), val)


def test_the_sanity_check_drops_what_validation_step_logs_without_a_warning() -> None:
    """A validation_step that logs is fine before the first epoch: nothing warns or leaks."""
    import warnings

    class Logs(Trainer):
        def validation_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
            self.log("val_seen", float(len(labels)))
            return super().validation_step(images, labels)

    trainer = Logs(MNISTConvNet(), epochs=1, device="cpu", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        history = trainer.fit(_batches(2, 4), _batches(3, 2, seed=1))
    assert history[-1]["val_seen"] == 2.0


def test_trainer_validate_returns_what_validation_step_logs_like_lightning() -> None:
    """Trainer.validate's dict holds the logged means too, and nothing warns."""
    import warnings

    class Logs(Trainer):
        def validation_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
            self.log("val_seen", float(len(labels)))
            return super().validation_step(images, labels)

    trainer = Logs(MNISTConvNet(), epochs=1, device="cpu", progress=False)
    trainer.fit(_batches(2, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert trainer.validate([*_batches(1, 2), *_batches(1, 4)])["val_seen"] == pytest.approx(
            (2 * 2 + 4 * 4) / 6
        )
