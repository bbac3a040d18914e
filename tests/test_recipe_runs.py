"""Tests of lenetish.recipe_runs: train_recipe, train_stack and train_ensemble."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from lenetish import (
    InvalidArgumentError,
    ModelStack,
    evaluate,
    make_loaders,
    train_ensemble,
    train_recipe,
    train_stack,
)
from lenetish.data.identity import recorded_dataset


def test_train_recipe_is_reproducible(fake_mnist: Path) -> None:
    """Training a recipe twice with the same seed gives identical weights."""

    def weights() -> list[torch.Tensor]:
        trained = train_recipe(
            "default", fake_mnist, seed=3, device="cpu", download=False, progress=False, epochs=2
        )
        assert len(trained.history) == 2 and not trained.model.training
        return [p.detach().clone() for p in trained.model.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(weights(), weights(), strict=True))


@pytest.mark.parametrize("stacked", [True, False])
def test_train_ensemble_gives_one_model_per_seed(fake_mnist: Path, stacked: bool) -> None:
    """train_ensemble trains a differently seeded model per seed, stacked or one by one."""
    models = train_ensemble(
        "seed-adam",
        fake_mnist,
        seeds=(0, 1),
        stacked=stacked,
        device="cpu",
        download=False,
        progress=False,
        epochs=1,
    )
    assert len(models) == 2
    assert not torch.equal(models[0].fc2.weight, models[1].fc2.weight)


def test_empty_ensemble_is_refused(fake_mnist: Path) -> None:
    """An ensemble needs at least one seed."""
    with pytest.raises(InvalidArgumentError, match="seeds is empty"):
        train_ensemble("default", fake_mnist, seeds=())


def test_train_recipe_remembers_the_dataset(fake_mnist: Path) -> None:
    """The trained model records its dataset, so predict and save_weights can use it."""
    trained = train_recipe("seed-adam", fake_mnist, epochs=1, download=False, progress=False)
    assert recorded_dataset(trained.model) is not None


def test_a_stacked_member_trains_as_its_sequential_run(fake_mnist: Path) -> None:
    """Without augmentation, member i of a stack ends on train_recipe(seed=seeds[i])'s weights."""
    options = {"device": "cpu", "download": False, "progress": False, "epochs": 2}
    members = train_stack("seed-adam", fake_mnist, seeds=[5, 6], **options).stack.unstack()
    alone = train_recipe("seed-adam", fake_mnist, seed=6, **options).model
    for stacked, single in zip(members[1].parameters(), alone.parameters(), strict=True):
        torch.testing.assert_close(stacked, single, rtol=1e-5, atol=1e-6)


def test_train_stack_history_holds_every_member(fake_mnist: Path) -> None:
    """History rows have the mean and each member's loss; evaluate scores every member."""
    trained = train_stack(
        "seed-adam", fake_mnist, seeds=[0, 1, 2], device="cpu", download=False, progress=False,
        epochs=1,
    )  # fmt: skip
    assert {"loss", "loss/0", "loss/1", "loss/2"} <= set(trained.history[-1])
    assert isinstance(trained.stack, ModelStack) and not trained.stack.training
    test = make_loaders(fake_mnist, download=False).test
    assert len(evaluate(trained.stack, test).member_accuracy) == 3


def test_stacked_ensemble_members_remember_the_dataset(fake_mnist: Path) -> None:
    """train_ensemble's stacked members are plain networks in eval mode that know their data."""
    models = train_ensemble(
        "seed-adam", fake_mnist, seeds=(0, 1), device="cpu", download=False, progress=False,
        epochs=1,
    )  # fmt: skip
    assert all(not model.training and recorded_dataset(model) is not None for model in models)


def test_an_empty_stack_is_refused(fake_mnist: Path) -> None:
    """A stack needs at least one seed."""
    with pytest.raises(InvalidArgumentError, match="seeds is empty: a stack needs"):
        train_stack("default", fake_mnist, seeds=[])


@pytest.mark.parametrize("runner", [train_recipe, train_stack])
def test_recipes_take_the_dataset_of_the_folder_they_are_given(
    runner: Any, shared_fashion: Path
) -> None:
    """train_recipe/train_stack on a Fashion-MNIST folder train on Fashion without dataset=."""
    options: dict[str, Any] = {"epochs": 1, "subset": 200, "download": False, "progress": False}
    trained = runner("seed-adam", shared_fashion, device="cpu", **options)
    model = trained.model if runner is train_recipe else trained.stack
    record = recorded_dataset(model)
    assert record is not None and record.name == "fashion-mnist"
