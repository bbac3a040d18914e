"""Tests of lenetish.training.optimizer_config: what configure_optimizers may return."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.optim import Optimizer

from lenetish import InvalidArgumentError, MNISTConvNet, Trainer
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
