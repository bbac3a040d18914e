"""Named training configurations: ``seed-adam``, ``seed-sgd``, ``default``, ``fast``, ``best``.

A recipe fixes everything that decides the result (network, epochs, batch size, optimizer,
schedule, augmentation, label smoothing, weight averaging, precision) so that
``lenetish train --recipe NAME`` and :func:`train_recipe` reproduce it. No recipe looks at the
test set: epoch counts are fixed in advance and the final weights are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lenetish.errors import InvalidArgumentError

if TYPE_CHECKING:  # torch loads only when a recipe builds something: ``--help`` stays fast
    from torch import nn

    from lenetish._device import DeviceLike, Precision
    from lenetish.callbacks import Callback
    from lenetish.catalog import OptimizerName, SchedulerName
    from lenetish.training.trainer import Trainer

__all__ = ["RECIPES", "Recipe", "get_recipe"]


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
        train_images: train on the first ``train_images`` training images only (``None``:
            all of them); with one epoch, a fixed fraction of an epoch.
        model_options: keyword arguments of the network's constructor.

    Example:
        >>> from dataclasses import replace
        >>> quick = replace(RECIPES["default"], epochs=2)
        >>> quick.name, quick.epochs, quick.batch_size, type(quick.build_model()).__name__
        ('default', 2, 64, 'MNISTConvNet')
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
    train_images: int | None = None
    model_options: dict[str, Any] = field(default_factory=dict)

    def build_model(self, num_classes: int | None = None) -> nn.Module:
        """A freshly initialised network of this recipe.

        Args:
            num_classes: the number of classes of the data it will train on (``None``: the
                network's default, 10), e.g. ``len(loaders.info.classes)`` for your own data.
        """
        from lenetish.models import MODELS

        options = dict(self.model_options)
        if num_classes is not None:
            options["num_classes"] = num_classes
        return MODELS[self.model](**options)

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
        from lenetish.callbacks import EMA
        from lenetish.data.augment import RandomAffine
        from lenetish.training.trainer import Trainer

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
            "random affine augmentation, label smoothing 0.05, weight decay 5e-5",
            epochs=10,
            batch_size=64,
            lr=3e-3,
            scheduler="onecycle",
            augment={"degrees": 10.0, "scale": (0.9, 1.1), "translate": 0.08},
            label_smoothing=0.05,
            weight_decay=5e-5,  # chosen by a 3-seed validation search (docs/accuracy.rst)
            precision="auto",
        ),
        Recipe(
            "fast",
            "the least CPU time to 99% with the seed's exact MNISTConvNet: three quarters of "
            "an epoch (the first 45,000 training images) of one-cycle Adam (peak 1.6e-2), "
            "batch 128, label smoothing 0.05, no augmentation, bf16 where native",
            epochs=1,
            batch_size=128,
            lr=1.6e-2,
            scheduler="onecycle",
            label_smoothing=0.05,
            precision="auto",
            train_images=45_000,
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

    Example:
        >>> get_recipe("seed-sgd").optimizer, get_recipe("seed-sgd").lr
        ('sgd', 0.1)
    """
    if name not in RECIPES:
        raise InvalidArgumentError(
            f"recipe={name!r} does not exist; use one of {', '.join(RECIPES)}"
        )
    return RECIPES[name]
