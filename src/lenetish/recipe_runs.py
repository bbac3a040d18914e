"""Training networks with a named recipe: :func:`train_recipe`, :func:`train_ensemble`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lenetish._device import DeviceLike
from lenetish.callbacks import Callback, History
from lenetish.data import make_loaders
from lenetish.errors import InvalidArgumentError
from lenetish.identity import remember_dataset
from lenetish.recipes import Recipe, get_recipe

__all__ = ["TrainedModel", "train_ensemble", "train_recipe"]


@dataclass
class TrainedModel:
    """What :func:`train_recipe` returns.

    Attributes:
        model: the trained network (in eval mode).
        history: one row per epoch.
        recipe: the recipe used.
        seed: the seed used.
    """

    model: nn.Module
    history: History
    recipe: Recipe
    seed: int


def train_recipe(
    recipe: str | Recipe,
    root: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    device: DeviceLike = "auto",
    dataset: str = "mnist",
    val_size: float = 0,
    download: bool = True,
    callbacks: Sequence[Callback] = (),
    progress: bool | None = None,
    epochs: int | None = None,
    subset: int | None = None,
) -> TrainedModel:
    """Train one network with a recipe, from scratch, seeded.

    Args:
        recipe: a recipe name (see :data:`RECIPES`) or a :class:`Recipe`.
        root: the data folder (see :func:`~lenetish.make_loaders`).
        seed: seeds the initialisation, the data order and the augmentation.
        device: where to train.
        dataset: ``"mnist"``, ``"fashion-mnist"`` or ``"kmnist"``.
        val_size: samples held out for validation (reported in the History, never used to
            choose anything by the recipe itself).
        download: let torchvision download missing files.
        callbacks: extra callbacks.
        progress: show a progress bar (``None``: when stderr is a terminal).
        epochs: override the recipe's epoch count (for quick trials).
        subset: train on the first ``subset`` training images only (for quick trials).

    Returns:
        The :class:`TrainedModel`.

    Raises:
        InvalidArgumentError: an unknown recipe or an out-of-range argument.
        DatasetNotFoundError: the data is absent and could not be downloaded.

    Example:
        >>> trained = train_recipe("default", "/data/mnist", seed=1)  # doctest: +SKIP
        >>> evaluate(trained.model, make_loaders("/data/mnist").test).accuracy  # doctest: +SKIP
    """
    chosen = get_recipe(recipe) if isinstance(recipe, str) else recipe
    loaders = make_loaders(
        root,
        dataset=dataset,
        batch_size=chosen.batch_size,
        val_size=val_size,
        seed=seed,
        device=device,
        download=download,
        subset=subset,
        eval_batch_size=1000,
    )
    torch.manual_seed(seed)
    model = chosen.build_model()
    trainer = chosen.build_trainer(
        model, device=device, seed=seed, callbacks=callbacks, progress=progress, epochs=epochs
    )
    trainer.data_info = loaders.info  # checkpoints record the dataset
    history = trainer.fit(loaders.train, loaders.val)
    remember_dataset(model, loaders.info)  # predict and save_weights use it
    return TrainedModel(model.eval(), history, chosen, seed)


def train_ensemble(
    recipe: str | Recipe,
    root: str | os.PathLike[str] | None = None,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    **options: Any,
) -> list[nn.Module]:
    """Train one model per seed with the same recipe; pass the list to evaluate/predict.

    Args:
        recipe: a recipe name or a :class:`Recipe`.
        root: the data folder.
        seeds: one model per seed (each seed changes initialisation, order and augmentation).
        **options: passed on to :func:`train_recipe`.

    Returns:
        The trained models, in the order of ``seeds``.

    Raises:
        InvalidArgumentError: ``seeds`` is empty, or as :func:`train_recipe`.
    """
    if not seeds:
        raise InvalidArgumentError("seeds is empty: an ensemble needs at least one seed")
    return [train_recipe(recipe, root, seed=seed, **options).model for seed in seeds]
