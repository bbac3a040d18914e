"""Named, documented training configurations: ``seed-adam``, ``seed-sgd``, ``default``, ``best``.

A recipe fixes everything that decides the result (network, epochs, batch size, optimizer,
schedule, augmentation, label smoothing, weight averaging, precision) so that
``lenetish train --recipe NAME`` and :func:`train_recipe` reproduce it. No recipe looks at the
test set: epoch counts are fixed in advance and the final weights are kept.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lenetish._device import DeviceLike, Precision
from lenetish.augment import RandomAffine
from lenetish.callbacks import EMA, Callback, History
from lenetish.data import make_loaders
from lenetish.errors import InvalidArgumentError
from lenetish.identity import remember_dataset
from lenetish.models import MODELS
from lenetish.trainer import OptimizerName, SchedulerName, Trainer

__all__ = ["RECIPES", "Recipe", "TrainedModel", "get_recipe", "train_ensemble", "train_recipe"]


@dataclass(frozen=True)
class Recipe:
    """One named training configuration.

    Attributes:
        name: what ``--recipe`` accepts.
        description: one line for ``--help`` and the docs.
        model: ``"MNISTConvNet"`` or ``"MNISTWideNet"``.
        epochs: a fixed number of epochs.
        batch_size: training batch size.
        optimizer: ``"adam"`` or ``"sgd"``.
        lr: learning rate (the peak for one-cycle).
        scheduler: ``None``, ``"onecycle"`` or ``"step"``.
        augment: :class:`~lenetish.RandomAffine` settings, or ``None`` for none.
        label_smoothing: see :class:`~lenetish.Trainer`.
        ema_decay: weight averaging (:class:`~lenetish.EMA`), or ``None``.
        weight_decay: L2 weight decay.
        precision: the Trainer's precision.
    """

    name: str
    description: str
    model: str = "MNISTConvNet"
    epochs: int = 5
    batch_size: int = 200
    optimizer: OptimizerName = "adam"
    lr: float | None = None
    scheduler: SchedulerName | None = None
    augment: dict[str, Any] | None = None
    label_smoothing: float = 0.0
    ema_decay: float | None = None
    weight_decay: float = 0.0
    precision: Precision = "32"
    model_options: dict[str, Any] = field(default_factory=dict)

    def build_model(self) -> nn.Module:
        """A freshly initialised network of this recipe."""
        return MODELS[self.model](**self.model_options)

    def build_trainer(
        self,
        model: nn.Module,
        *,
        device: DeviceLike = "auto",
        seed: int | None = 0,
        callbacks: Sequence[Callback] = (),
        progress: bool | None = None,
        epochs: int | None = None,
    ) -> Trainer:
        """A :class:`~lenetish.Trainer` set up as this recipe says."""
        extra: list[Callback] = [EMA(self.ema_decay)] if self.ema_decay is not None else []
        return Trainer(
            model,
            optimizer=self.optimizer,
            lr=self.lr,
            epochs=epochs or self.epochs,
            scheduler=self.scheduler,
            weight_decay=self.weight_decay,
            augment=RandomAffine(**self.augment) if self.augment is not None else None,
            label_smoothing=self.label_smoothing,
            precision=self.precision,
            device=device,
            seed=seed,
            callbacks=[*callbacks, *extra],
            progress=progress,
        )


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            "seed-adam",
            "the blog post's Adam run: MNISTConvNet, Adam lr 1e-3, batch 200, 5 epochs, fp32",
        ),
        Recipe(
            "seed-sgd",
            "the blog post's SGD run: MNISTConvNet, SGD lr 0.1 momentum 0.9, batch 200, "
            "10 epochs, fp32",
            optimizer="sgd",
            lr=0.1,
            epochs=10,
        ),
        Recipe(
            "default",
            "the seed's exact MNISTConvNet, 10 epochs: one-cycle Adam (peak 3e-3), batch 64, "
            "random affine augmentation, label smoothing 0.05",
            epochs=10,
            batch_size=64,
            lr=3e-3,
            scheduler="onecycle",
            augment={"degrees": 10.0, "scale": (0.9, 1.1), "translate": 0.08},
            label_smoothing=0.05,
            precision="auto",
        ),
        Recipe(
            "best",
            "MNISTWideNet (575k parameters), 30 epochs: one-cycle Adam (peak 3e-3), batch 128, "
            "random affine augmentation, label smoothing 0.1, weight averaging",
            model="MNISTWideNet",
            epochs=30,
            batch_size=128,
            lr=3e-3,
            scheduler="onecycle",
            augment={"degrees": 12.0, "scale": (0.85, 1.15), "translate": 0.1},
            label_smoothing=0.1,
            ema_decay=0.999,
            weight_decay=1e-5,
            precision="auto",
        ),
    )
}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``.

    Args:
        name: one of :data:`RECIPES`.

    Returns:
        The :class:`Recipe`.

    Raises:
        InvalidArgumentError: there is no such recipe (the message lists them).
    """
    if name not in RECIPES:
        raise InvalidArgumentError(
            f"recipe={name!r} does not exist; use one of {', '.join(RECIPES)}"
        )
    return RECIPES[name]


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
