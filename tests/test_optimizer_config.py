"""Tests of lenetish.training.optimizer_config: what configure_optimizers may return."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.optim import Optimizer

from lenetish import Callback, InvalidArgumentError, LRSchedule, MNISTConvNet, Trainer, TrainState
from lenetish.training.optimizer_config import OptimizerConfig, unpack_optimizer_config
from tests.training_helpers import digit_batches


def _optimizer() -> Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)


class Returning(Trainer):
    """A Trainer whose configure_optimizers returns what the test gives it."""

    def __init__(self, build: Any, **options: Any) -> None:
        super().__init__(MNISTConvNet(), device="cpu", progress=False, **options)
        self.build = build

    def configure_optimizers(self) -> OptimizerConfig:
        """Whatever the test's function builds from the model's parameters."""
        return self.build(self.model.parameters())  # type: ignore[no-any-return]


def test_a_tuple_with_a_scheduler_is_stepped_every_epoch() -> None:
    """(optimizer, scheduler), as Lightning users return it, halves the lr after each epoch."""

    def build(parameters: Any) -> Any:
        optimizer = torch.optim.SGD(parameters, lr=0.08)
        return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.5)

    history = Returning(build, epochs=3).fit(digit_batches(32, 16))
    assert [row["lr"] for row in history] == pytest.approx([0.08, 0.04, 0.02])


def test_a_lightning_dict_with_a_step_interval_is_stepped_every_batch() -> None:
    """{"optimizer", "lr_scheduler": {"scheduler", "interval": "step"}} steps per batch."""

    def build(parameters: Any) -> Any:
        optimizer = torch.optim.SGD(parameters, lr=0.08)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.5)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    history = Returning(build, epochs=1).fit(digit_batches(32, 16))  # 2 batches
    assert history[0]["lr"] == pytest.approx(0.02)


def test_a_plain_optimizer_gets_no_schedule() -> None:
    """An optimizer alone comes back with no schedule."""
    optimizer = _optimizer()
    assert unpack_optimizer_config(optimizer) == (optimizer, None)


def test_several_optimizers_are_refused() -> None:
    """Two optimizers in Lightning's list form are a named error."""
    with pytest.raises(InvalidArgumentError, match="returned 2 optimizers; a lenetish fit has one"):
        unpack_optimizer_config(([_optimizer(), _optimizer()], []))


def test_something_that_is_not_an_optimizer_is_refused() -> None:
    """A non-optimizer return names the accepted shapes."""
    with pytest.raises(InvalidArgumentError, match=r"returned str: return an optimizer, \("):
        unpack_optimizer_config("adam")


def test_a_scheduler_that_is_not_a_scheduler_is_refused() -> None:
    """The second item must be a torch scheduler."""
    with pytest.raises(InvalidArgumentError, match="returned int as the scheduler"):
        unpack_optimizer_config((_optimizer(), 3))


def test_an_unknown_scheduler_key_is_refused() -> None:
    """A scheduler dict key lenetish does not honour is named."""
    optimizer = _optimizer()
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    with pytest.raises(InvalidArgumentError, match=r"does not know \(warmup\)"):
        unpack_optimizer_config(
            {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "warmup": 3}}
        )


def test_a_frequency_other_than_one_is_refused() -> None:
    """'frequency': 2 is not honoured, so it is refused."""
    optimizer = _optimizer()
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    with pytest.raises(InvalidArgumentError, match="'frequency': 2 is not supported"):
        unpack_optimizer_config(
            {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "frequency": 2}}
        )


def test_a_returned_scheduler_and_a_scheduler_setting_together_are_refused() -> None:
    """scheduler= and a returned scheduler would both step the lr: keep one."""

    def build(parameters: Any) -> Any:
        optimizer = torch.optim.SGD(parameters, lr=0.08)
        return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, 1)

    trainer = Returning(build, epochs=1, scheduler="step")
    with pytest.raises(InvalidArgumentError, match="scheduler='step' is set too; keep one"):
        trainer.fit(digit_batches(16, 16))


class _NoBatch(Callback):
    """Fails the test if a training batch starts."""

    def on_batch_start(self, trainer: Trainer, state: TrainState) -> None:
        raise AssertionError("a batch started")


def test_an_optimizer_over_another_network_is_refused_before_training() -> None:
    """configure_optimizers returning an optimizer over another net's parameters raises first."""
    other = MNISTConvNet()
    trainer = Returning(lambda parameters: torch.optim.SGD(other.parameters(), lr=0.1), epochs=1)
    trainer.callbacks.append(_NoBatch())
    with pytest.raises(
        InvalidArgumentError,
        match=r"optimizer built by configure_optimizers \(SGD\) holds 8 tensors, none of them a "
        r"parameter of the MNISTConvNet being fitted",
    ):
        trainer.fit(digit_batches(16, 16))


def test_an_optimizer_factory_ignoring_its_parameters_is_refused() -> None:
    """Trainer(optimizer=callable) whose optimizer holds none of the model's parameters raises."""
    stray = torch.nn.Parameter(torch.zeros(3))
    trainer = Trainer(
        MNISTConvNet(),
        optimizer=lambda parameters: torch.optim.SGD([stray], lr=0.1),
        device="cpu",
        progress=False,
    )
    with pytest.raises(InvalidArgumentError, match=r"built by optimizer= \(SGD\) holds 1 tensor,"):
        trainer.fit(digit_batches(16, 16))


def test_an_optimizer_with_an_extra_tensor_besides_the_model_trains() -> None:
    """A loss's own learnable tensor next to the model's parameters is not refused."""
    temperature = torch.nn.Parameter(torch.ones(()))

    def build(parameters: Any) -> Optimizer:
        return torch.optim.SGD([*parameters, temperature], lr=0.05)

    history = Returning(build, epochs=1).fit(digit_batches(16, 16))
    assert len(history) == 1


def test_a_scheduler_of_another_optimizer_is_refused() -> None:
    """(optimizer, scheduler built on a second optimizer) raises before training."""

    def build(parameters: Any) -> Any:
        optimizer = torch.optim.SGD(parameters, lr=0.08)
        return optimizer, torch.optim.lr_scheduler.StepLR(_optimizer(), 1)

    trainer = Returning(build, epochs=1)
    trainer.callbacks.append(_NoBatch())
    with pytest.raises(
        InvalidArgumentError,
        match=r"returned a StepLR built on another optimizer \(SGD\) than the SGD it returned",
    ):
        trainer.fit(digit_batches(16, 16))


def test_a_scheduler_factory_building_on_another_optimizer_is_refused() -> None:
    """scheduler=callable returning a scheduler of an optimizer it was not given raises."""
    stray = _optimizer()
    trainer = Trainer(
        MNISTConvNet(),
        scheduler=lambda optimizer: torch.optim.lr_scheduler.StepLR(stray, 1),
        callbacks=[_NoBatch()],
        device="cpu",
        progress=False,
    )
    with pytest.raises(
        InvalidArgumentError,
        match=r"factory built a StepLR on another optimizer \(SGD\) than the fit's Adam",
    ):
        trainer.fit(digit_batches(16, 16))


def _plateau_dict(monitor: str, **settings: Any) -> Any:
    """A build function returning Lightning's dict with a plateau scheduler on ``monitor``."""

    def build(parameters: Any) -> Any:
        optimizer = torch.optim.SGD(parameters, lr=0.08)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": monitor, **settings},
        }

    return build


def test_lightning_strict_false_skips_a_missing_monitor_with_a_warning() -> None:
    """'strict': False: an epoch without the monitored metric skips the step and warns."""
    trainer = Returning(_plateau_dict("never_logged", strict=False), epochs=2)
    with pytest.warns(UserWarning, match=r"monitor='never_logged' is not among epoch 1's metrics"):
        history = trainer.fit(digit_batches(16, 16))
    assert [row["lr"] for row in history] == pytest.approx([0.08, 0.08])


def test_strict_false_still_refuses_a_val_monitor_without_validation() -> None:
    """'strict': False with a val_* monitor and no val= is refused: it would never step."""
    trainer = Returning(_plateau_dict("val_loss", strict=False), epochs=1)
    with pytest.raises(InvalidArgumentError, match="watches 'val_loss', but fit"):
        trainer.fit(digit_batches(16, 16))


def test_lightning_strict_true_raises_for_a_missing_monitor() -> None:
    """The default 'strict': True names the missing metric at the epoch's end."""
    trainer = Returning(_plateau_dict("never_logged"), epochs=1)
    with pytest.raises(InvalidArgumentError, match="monitor='never_logged' is not among"):
        trainer.fit(digit_batches(16, 16))


def test_a_strict_setting_that_is_not_a_bool_is_refused() -> None:
    """'strict': 'no' is refused, saying what True and False mean."""
    with pytest.raises(InvalidArgumentError, match=r"'strict': 'no' in the scheduler dict must"):
        unpack_optimizer_config(_plateau_dict("loss", strict="no")(MNISTConvNet().parameters()))


def test_lr_schedule_refuses_a_strict_that_is_not_a_bool() -> None:
    """LRSchedule(strict=1) is refused: strict is True or False."""
    with pytest.raises(InvalidArgumentError, match=r"strict must be True .* got 1"):
        LRSchedule(lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1), strict=1)  # type: ignore[arg-type]
