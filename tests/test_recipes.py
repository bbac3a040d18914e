"""Tests of lenetish.recipes: the named configurations and what they build."""

from __future__ import annotations

import pytest

from lenetish import (
    EMA,
    RECIPES,
    InvalidArgumentError,
    MNISTConvNet,
    MNISTWideNet,
    RandomAffine,
    get_recipe,
)


def test_seed_recipes_are_the_blog_settings() -> None:
    """seed-adam and seed-sgd are the blog post's two runs, in float32."""
    adam, sgd = get_recipe("seed-adam"), get_recipe("seed-sgd")
    assert (adam.optimizer, adam.lr, adam.batch_size, adam.epochs) == ("adam", None, 200, 5)
    assert (sgd.optimizer, sgd.lr, sgd.batch_size, sgd.epochs) == ("sgd", 0.1, 200, 10)
    assert adam.precision == sgd.precision == "32"
    assert adam.augment is None and adam.ema_decay is None and adam.label_smoothing == 0


def test_default_recipe_keeps_the_seed_network_within_ten_epochs() -> None:
    """The default recipe trains the exact MNISTConvNet (252,866 parameters), <= 10 epochs."""
    recipe = get_recipe("default")
    model = recipe.build_model()
    assert isinstance(model, MNISTConvNet) and recipe.epochs <= 10
    assert sum(p.numel() for p in model.parameters()) == 252_866


def test_default_recipe_is_the_searched_setting() -> None:
    """The default recipe's settings are the ones the documented validation search kept."""
    recipe = get_recipe("default")
    assert (recipe.epochs, recipe.batch_size, recipe.optimizer) == (10, 64, "adam")
    assert (recipe.lr, recipe.scheduler, recipe.weight_decay) == (3e-3, "onecycle", 5e-5)
    assert recipe.augment == {"degrees": 10.0, "scale": (0.9, 1.1), "translate": 0.08}
    assert (recipe.label_smoothing, recipe.ema_decay, recipe.precision) == (0.05, None, "auto")


def test_best_recipe_uses_the_wide_network() -> None:
    """The best recipe trains MNISTWideNet, whose parameter count is documented."""
    model = get_recipe("best").build_model()
    assert isinstance(model, MNISTWideNet)
    assert sum(p.numel() for p in model.parameters()) == 575_338


def test_build_trainer_applies_the_recipe() -> None:
    """The Trainer gets the recipe's optimizer, schedule, augmentation, smoothing and EMA."""
    recipe = get_recipe("default")
    trainer = recipe.build_trainer(recipe.build_model(), device="cpu", progress=False)
    assert trainer.scheduler_spec == "onecycle" and trainer.lr == recipe.lr
    assert isinstance(trainer.augment, RandomAffine) and trainer.label_smoothing == 0.05
    best = get_recipe("best")
    best_trainer = best.build_trainer(best.build_model(), device="cpu", progress=False)
    assert any(isinstance(c, EMA) for c in best_trainer.callbacks)


def test_every_recipe_is_described() -> None:
    """Each recipe has a name matching its key and a description."""
    for name, recipe in RECIPES.items():
        assert recipe.name == name and len(recipe.description) > 20


def test_unknown_recipe_lists_the_recipes() -> None:
    """An unknown name raises InvalidArgumentError listing the recipes."""
    with pytest.raises(InvalidArgumentError, match="recipe='fastest' does not exist; use one of"):
        get_recipe("fastest")
