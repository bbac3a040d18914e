"""Tests of lenetish.stack.fitting: a ModelStack trained by the Trainer, member by member exact."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from lenetish import (
    Callback,
    InvalidArgumentError,
    LRSchedule,
    MNISTConvNet,
    ModelStack,
    StackLoader,
    TensorLoader,
    Trainer,
)
from lenetish.losses import Criterion
from tests.training_helpers import digit_batches


def stack_trainer(stack: ModelStack, **options: Any) -> Trainer:
    """A CPU trainer of ``stack`` without a progress bar."""
    options.setdefault("epochs", 1)
    return Trainer(stack, device="cpu", progress=False, **options)


@pytest.mark.parametrize(
    "options", [{"optimizer": "adam"}, {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9}]
)
def test_each_member_trains_exactly_as_it_would_alone(options: dict[str, Any]) -> None:
    """Each member of a stack of 3 ends where the same network trained alone ends (1e-5)."""
    batches = digit_batches(120, 20)  # 6 steps per epoch, the same order for every member
    stack = ModelStack(MNISTConvNet, 3, seeds=[11, 12, 13])
    alone, initial = stack.unstack(), stack.unstack()
    stack_trainer(stack, epochs=2, **options).fit(batches)
    for index, member in enumerate(stack.unstack()):
        stack_trainer(alone[index], epochs=2, **options).fit(batches)  # type: ignore[arg-type]
        for name, expected in alone[index].named_parameters():
            actual = member.get_parameter(name)
            assert not torch.equal(actual, initial[index].get_parameter(name))
            scale = float(expected.detach().abs().max())
            torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * scale)


def test_history_rows_hold_the_mean_and_each_members_metrics() -> None:
    """History has loss/accuracy (the members' mean) and loss/i, accuracy/i per member."""
    batches = digit_batches(60, 20)
    history = stack_trainer(ModelStack(MNISTConvNet, 2)).fit(batches, batches)
    row = history[-1]
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert row[name] == pytest.approx((row[f"{name}/0"] + row[f"{name}/1"]) / 2)
    assert row["loss/0"] != row["loss/1"]


def test_a_members_history_matches_its_fit_alone() -> None:
    """loss/i and val_accuracy/i are what the member's own fit reports."""
    batches = digit_batches(60, 20)
    stack = ModelStack(MNISTConvNet, 2)
    alone = stack.unstack()[1]
    row = stack_trainer(stack).fit(batches, batches)[-1]
    own = stack_trainer(alone).fit(batches, batches)[-1]  # type: ignore[arg-type]
    assert row["loss/1"] == pytest.approx(own["loss"], rel=1e-5)
    assert row["val_accuracy/1"] == own["val_accuracy"]


def test_user_metrics_are_reported_per_member_and_as_their_mean() -> None:
    """A metric function gets name/i per member and name as the mean."""

    def error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (outputs.argmax(1) != targets).float().mean()

    row = stack_trainer(ModelStack(MNISTConvNet, 2), metrics={"error": error}).fit(
        digit_batches(40, 20)
    )[-1]
    assert row["error"] == pytest.approx((row["error/0"] + row["error/1"]) / 2)
    assert row["error/0"] == pytest.approx(1 - row["accuracy/0"])


def test_global_gradient_clipping_is_refused() -> None:
    """grad_clip_norm would couple the members through one global norm."""
    trainer = stack_trainer(ModelStack(MNISTConvNet, 2), grad_clip_norm=1.0)
    with pytest.raises(InvalidArgumentError, match="grad_clip_norm clips the global"):
        trainer.fit(digit_batches(20, 10))


def test_a_plateau_schedule_is_refused() -> None:
    """ReduceLROnPlateau would set every member's lr from one metric."""
    schedule = LRSchedule(lambda opt: ReduceLROnPlateau(opt), monitor="loss")
    trainer = stack_trainer(ModelStack(MNISTConvNet, 2), callbacks=[schedule])
    with pytest.raises(InvalidArgumentError, match="ReduceLROnPlateau reads one metric"):
        trainer.fit(digit_batches(20, 10))


def test_member_losses_refuse_outputs_that_are_not_stacked() -> None:
    """Criterion.member_losses needs (members, batch, classes) outputs."""
    with pytest.raises(InvalidArgumentError, match="a stack's outputs are"):
        Criterion("nll").member_losses(torch.zeros(4, 10), torch.zeros(4, dtype=torch.long))


def digit_loader(count: int = 60, batch_size: int = 20) -> TensorLoader:
    """A shuffling TensorLoader over synthetic digits."""
    images, labels = (torch.cat(part) for part in zip(*digit_batches(count, count), strict=True))
    return TensorLoader(images, labels, batch_size=batch_size, shuffle=True, seed=0)


def test_a_stack_loader_gives_each_member_its_own_seeded_order() -> None:
    """Member i's part of every batch is the batch of a loader with seed=seeds[i]."""
    plain = digit_loader()
    stacked = StackLoader(plain, [3, 4])
    own = [
        TensorLoader(plain.images, plain.labels, batch_size=20, shuffle=True, seed=s)
        for s in (3, 4)
    ]
    for (images, labels), *alone in zip(stacked, *own, strict=True):
        assert labels.shape == (2, 20)
        for index, (member_images, member_labels) in enumerate(alone):
            assert torch.equal(labels[index], member_labels)
            assert torch.equal(images[20 * index : 20 * (index + 1)], member_images)


def test_a_split_stack_trains_each_member_on_its_own_order() -> None:
    """With inputs='split' and a StackLoader, member i ends where a fit with seed i's order ends."""
    plain = digit_loader()
    stack = ModelStack(MNISTConvNet, 2, seeds=[5, 6], inputs="split")
    alone = stack.unstack()
    stack_trainer(stack).fit(StackLoader(plain, stack.seeds))
    for index, member in enumerate(stack.unstack()):
        order = TensorLoader(
            plain.images, plain.labels, batch_size=20, shuffle=True, seed=stack.seeds[index]
        )
        stack_trainer(alone[index]).fit(order)  # type: ignore[arg-type]
        for name, expected in alone[index].named_parameters():
            scale = float(expected.detach().abs().max())
            torch.testing.assert_close(
                member.get_parameter(name), expected, rtol=1e-5, atol=1e-5 * scale
            )


def test_member_labels_without_a_split_stack_are_refused() -> None:
    """A StackLoader's (members, batch) labels need ModelStack(inputs='split')."""
    trainer = stack_trainer(ModelStack(MNISTConvNet, 2))
    with pytest.raises(InvalidArgumentError, match="labels of shape"):
        trainer.fit(StackLoader(digit_loader(), [0, 1]))


def test_a_split_stack_refuses_a_batch_it_cannot_divide() -> None:
    """A split stack needs batches of k equal parts."""
    trainer = stack_trainer(ModelStack(MNISTConvNet, 3, inputs="split"))
    with pytest.raises(InvalidArgumentError, match="cannot be split between 3 members"):
        trainer.fit(digit_batches(20, 10))


def test_a_stack_loader_needs_a_shuffling_tensor_loader() -> None:
    """StackLoader refuses a plain list of batches."""
    with pytest.raises(InvalidArgumentError, match="StackLoader needs a shuffling"):
        StackLoader(digit_batches(20, 10), [0, 1])  # type: ignore[arg-type]


def test_a_stack_loader_needs_seeds() -> None:
    """StackLoader refuses an empty list of seeds."""
    with pytest.raises(InvalidArgumentError, match="seeds is empty"):
        StackLoader(digit_loader(), [])


class SeesLoss(Callback):
    """Overrides on_before_backward, which needs the whole loss before any backward."""

    def on_before_backward(self, trainer: Trainer, state: Any, loss: torch.Tensor) -> None:
        """Look at the loss."""


def test_on_the_cpu_members_train_one_after_another_within_a_step(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A CPU fit of a stack uses the member-by-member step."""
    trainer = stack_trainer(ModelStack(MNISTConvNet, 2))
    with caplog.at_level(logging.INFO, "lenetish"):
        trainer.fit(digit_batches(20, 10))
    assert "run as MemberByMemberStep" in caplog.text


def test_the_all_members_step_trains_the_members_as_the_member_by_member_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With a callback that reads the loss before backward, the whole-stack step gives the same."""
    batches = digit_batches(60, 20)
    first, second = ModelStack(MNISTConvNet, 2), ModelStack(MNISTConvNet, 2)
    stack_trainer(first).fit(batches)
    trainer = stack_trainer(second, callbacks=[SeesLoss()])
    with caplog.at_level(logging.INFO, "lenetish"):
        trainer.fit(batches)
    assert "fit plan" in caplog.text and "MemberByMemberStep" not in caplog.text
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_with_dropout_members_differ_from_their_solo_runs_as_documented() -> None:
    """Dropout draws come from one shared stream, so members do not match solo runs (docs)."""
    batches = digit_batches(60, 20)
    stack = ModelStack(lambda: MNISTConvNet(dropout=0.5), 2, seeds=[11, 12])
    alone = stack.unstack()
    torch.manual_seed(0)
    stack_trainer(stack).fit(batches)
    torch.manual_seed(0)
    stack_trainer(alone[1]).fit(batches)  # type: ignore[arg-type]
    assert not torch.allclose(stack.unstack()[1].fc1.weight, alone[1].get_parameter("fc1.weight"))
