"""Training networks with a named recipe: one (:func:`train_recipe`), or several at once."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lenetish._device import DeviceLike
from lenetish.callbacks import Callback, History
from lenetish.data import Loaders, make_loaders
from lenetish.data.identity import remember_dataset
from lenetish.data.loaders import TensorLoader
from lenetish.data.own import OwnData
from lenetish.errors import InvalidArgumentError
from lenetish.recipes import Recipe, get_recipe
from lenetish.stack import ModelStack
from lenetish.stack.fitting import StackLoader

__all__ = ["TrainedModel", "TrainedStack", "train_ensemble", "train_recipe", "train_stack"]


@dataclass
class TrainedModel:
    """What :func:`train_recipe` returns.

    Attributes:
        model: the trained network (in eval mode).
        history: one row per epoch.
        recipe: the recipe used.
        seed: the seed used.

    Example:
        >>> trained = train_recipe("seed-adam", epochs=1, subset=400, device="cpu",
        ...                        progress=False)
        >>> type(trained.model).__name__, trained.recipe.name, trained.seed, len(trained.history)
        ('MNISTConvNet', 'seed-adam', 0, 1)
    """

    model: nn.Module
    history: History
    recipe: Recipe
    seed: int


def _recipe_loaders(
    recipe: Recipe,
    root: str | os.PathLike[str] | OwnData | None,
    seed: int,
    dataset: str,
    val_size: float,
    device: DeviceLike,
    download: bool,
    subset: int | None,
) -> Loaders:
    """The loaders a recipe trains on: its batch size, and its ``train_images`` by default."""
    return make_loaders(
        root,
        dataset=dataset,
        batch_size=recipe.batch_size,
        val_size=val_size,
        seed=seed,
        device=device,
        download=download,
        subset=subset if subset is not None else recipe.train_images,
        eval_batch_size=1000,
    )


def train_recipe(
    recipe: str | Recipe,
    root: str | os.PathLike[str] | OwnData | None = None,
    *,
    seed: int = 0,
    device: DeviceLike = "auto",
    dataset: str = "auto",
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
        root: the data folder, or your own data (see :func:`~lenetish.make_loaders`: a
            folder of class sub-folders of images, arrays, a Dataset); the network gets as
            many outputs as the data has classes.
        seed: seeds the initialisation, the data order and the augmentation.
        device: where to train.
        dataset: ``"auto"`` (what the files in ``root`` are, by their contents; the
            bundled MNIST without ``root``), or ``"mnist"``, ``"fashion-mnist"`` or
            ``"kmnist"``, as for :func:`~lenetish.make_loaders`.
        val_size: samples held out for validation (reported in the History, never used to
            choose anything by the recipe itself).
        download: let torchvision download missing files.
        callbacks: extra callbacks.
        progress: show a progress bar (``None``: when stderr is a terminal).
        epochs: override the recipe's epoch count (for quick trials).
        subset: train on the first ``subset`` training images only (for quick trials;
            default: the recipe's ``train_images``).

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
    loaders = _recipe_loaders(chosen, root, seed, dataset, val_size, device, download, subset)
    torch.manual_seed(seed)
    model = chosen.build_model(len(loaders.info.classes))
    trainer = chosen.build_trainer(
        model, device=device, seed=seed, callbacks=callbacks, progress=progress, epochs=epochs
    )
    trainer.data_info = loaders.info  # checkpoints record the dataset
    history = trainer.fit(loaders.train, loaders.val)
    remember_dataset(model, loaders.info)  # predict and save_weights use it
    return TrainedModel(model.eval(), history, chosen, seed)


@dataclass
class TrainedStack:
    """What :func:`train_stack` returns.

    Attributes:
        stack: the trained :class:`~lenetish.ModelStack` (in eval mode); ``stack.unstack()``
            gives the members as ordinary networks.
        history: one row per epoch, with the members' mean and each member's values
            (``loss``, ``loss/0``, ...).
        recipe: the recipe used.
        seeds: member ``i`` was initialised, ordered and augmented with ``seeds[i]``.

    Example:
        >>> trained = train_stack("seed-adam", seeds=[3, 4], epochs=1, subset=400,
        ...                       device="cpu", progress=False)
        >>> trained.seeds, [type(m).__name__ for m in trained.stack.unstack()]
        ((3, 4), ['MNISTConvNet', 'MNISTConvNet'])
    """

    stack: ModelStack
    history: History
    recipe: Recipe
    seeds: tuple[int, ...]


def train_stack(
    recipe: str | Recipe,
    root: str | os.PathLike[str] | OwnData | None = None,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    device: DeviceLike = "auto",
    dataset: str = "auto",
    val_size: float = 0,
    download: bool = True,
    callbacks: Sequence[Callback] = (),
    progress: bool | None = None,
    epochs: int | None = None,
    subset: int | None = None,
) -> TrainedStack:
    """Train one network per seed with a recipe, all in one fit (a :class:`~lenetish.ModelStack`).

    Member ``i`` starts from the weights ``train_recipe(recipe, seed=seeds[i])`` starts from
    and visits the training images in that run's order (a :class:`~lenetish.StackLoader`),
    so it trains as that run does, exactly when the recipe draws no random numbers during a
    step: augmentation and dropout draws come from one stream shared by the members, so with
    either a member is an equally valid run that differs from its sequential run.

    Args:
        recipe: a recipe name (see :data:`RECIPES`) or a :class:`Recipe`.
        root: the data folder, or your own data (see :func:`~lenetish.make_loaders`: a
            folder of class sub-folders of images, arrays, a Dataset); the network gets as
            many outputs as the data has classes.
        seeds: one member per seed: its initialisation, data order and augmentation.
        device: where to train.
        dataset: ``"auto"`` (what the files in ``root`` are, by their contents; the
            bundled MNIST without ``root``), or ``"mnist"``, ``"fashion-mnist"`` or
            ``"kmnist"``, as for :func:`~lenetish.make_loaders`.
        val_size: samples held out for validation; every member holds out the split that
            ``seeds[0]`` chooses.
        download: let torchvision download missing files.
        callbacks: extra callbacks.
        progress: show a progress bar (``None``: when stderr is a terminal).
        epochs: override the recipe's epoch count.
        subset: train on the first ``subset`` training images only (default: the
            recipe's ``train_images``).

    Returns:
        The :class:`TrainedStack`.

    Raises:
        InvalidArgumentError: ``seeds`` is empty, or as :func:`train_recipe`.

    Example:
        >>> trained = train_stack("seed-adam", seeds=[0, 1], epochs=1, subset=400,
        ...                       device="cpu", progress=False)
        >>> trained.stack.k, sorted(trained.history[-1])[:3]
        (2, ['accuracy', 'accuracy/0', 'accuracy/1'])
    """
    if not seeds:
        raise InvalidArgumentError("seeds is empty: a stack needs at least one seed")
    chosen = get_recipe(recipe) if isinstance(recipe, str) else recipe
    loaders = _recipe_loaders(chosen, root, seeds[0], dataset, val_size, device, download, subset)
    classes = len(loaders.info.classes)
    stack = ModelStack(lambda: chosen.build_model(classes), len(seeds), seeds=seeds, inputs="split")
    trainer = chosen.build_trainer(
        stack, device=device, seed=seeds[0], callbacks=callbacks, progress=progress, epochs=epochs
    )
    trainer.data_info = loaders.info
    assert isinstance(loaders.train, TensorLoader)  # make_loaders' own loader, not a DataLoader
    history = trainer.fit(StackLoader(loaders.train, seeds), loaders.val)
    remember_dataset(stack, loaders.info)
    return TrainedStack(stack.eval(), history, chosen, tuple(seeds))


def train_ensemble(
    recipe: str | Recipe,
    root: str | os.PathLike[str] | OwnData | None = None,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    stacked: bool = True,
    **options: Any,
) -> list[nn.Module]:
    """Train one model per seed with the same recipe; pass the list to evaluate/predict.

    Args:
        recipe: a recipe name or a :class:`Recipe`.
        root: the data folder.
        seeds: one model per seed (each seed changes initialisation, order and augmentation).
        stacked: train the seeds together in one fit (:func:`train_stack`); ``False`` trains
            them one after another with :func:`train_recipe`. The models are the same up to
            their augmentation draws.
        **options: passed on to :func:`train_recipe` / :func:`train_stack`.

    Returns:
        The trained models, in the order of ``seeds`` (in eval mode).

    Raises:
        InvalidArgumentError: ``seeds`` is empty, or as :func:`train_recipe`.

    Example:
        >>> models = train_ensemble("seed-adam", seeds=[0, 1], epochs=1, subset=400,
        ...                         device="cpu", progress=False)
        >>> [type(model).__name__ for model in models]
        ['MNISTConvNet', 'MNISTConvNet']
    """
    if not seeds:
        raise InvalidArgumentError("seeds is empty: an ensemble needs at least one seed")
    if not stacked:
        return [train_recipe(recipe, root, seed=seed, **options).model for seed in seeds]
    trained = train_stack(recipe, root, seeds=seeds, **options)
    return [member.eval() for member in trained.stack.unstack()]  # each knows its dataset
