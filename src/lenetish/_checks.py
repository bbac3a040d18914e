"""Argument checks shared by the public constructors: each raises InvalidArgumentError."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lenetish.catalog import SCHEDULERS
from lenetish.errors import InvalidArgumentError

__all__ = [
    "DEFAULT_LR",
    "as_class_labels",
    "check_epoch_settings",
    "check_fraction",
    "check_positive_int",
    "check_positive_number",
    "check_trainer_settings",
]

DEFAULT_LR = {"adam": 1e-3, "sgd": 0.1}  # the seed's learning rates of the built-in optimizers


def check_positive_int(name: str, value: object) -> None:
    """Raise :class:`InvalidArgumentError` naming ``name`` unless ``value`` is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")


def check_positive_number(name: str, value: object) -> None:
    """Raise :class:`InvalidArgumentError` unless ``value`` is a finite number > 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidArgumentError(f"{name} must be a positive finite number, got {value!r}")


def check_fraction(name: str, value: object) -> None:
    """Raise :class:`InvalidArgumentError` unless ``value`` is a number in ``[0, 1)``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise InvalidArgumentError(f"{name} must be in [0, 1), got {value!r}")


def check_epoch_settings(epochs: object, min_epochs: object, validation_freq: object) -> None:
    """Refuse a Trainer's ``min_epochs`` or ``validation_freq`` that cannot be meant.

    Raises:
        InvalidArgumentError: ``min_epochs`` is not an integer in ``[0, epochs]`` or
            ``validation_freq`` not a positive integer.
    """
    if isinstance(min_epochs, bool) or not isinstance(min_epochs, int) or min_epochs < 0:
        raise InvalidArgumentError(f"min_epochs must be an integer >= 0, got {min_epochs!r}")
    if isinstance(epochs, int) and min_epochs > epochs:
        raise InvalidArgumentError(
            f"min_epochs={min_epochs} is more than epochs={epochs}, so the fit could never "
            "reach it; lower min_epochs or raise epochs"
        )
    check_positive_int("validation_freq", validation_freq)


def check_trainer_settings(
    optimizer: object,
    lr: object,
    epochs: object,
    scheduler: object,
    momentum: float,
    weight_decay: float,
    grad_clip_norm: object,
    label_smoothing: object,
    augment: object,
    channels_last: object,
    min_epochs: object,
    validation_freq: object,
) -> None:
    """Refuse a Trainer's unknown optimizer, scheduler or layout, and out-of-range numbers."""
    if not (isinstance(channels_last, bool) or channels_last == "auto"):
        raise InvalidArgumentError(
            f"channels_last must be True, False or 'auto', got {channels_last!r}"
        )
    check_epoch_settings(epochs, min_epochs, validation_freq)
    if isinstance(optimizer, str) and optimizer not in DEFAULT_LR:
        raise InvalidArgumentError(
            f"optimizer={optimizer!r} is not supported; use one of {', '.join(DEFAULT_LR)} "
            "or a callable that builds an optimizer from the parameters"
        )
    if callable(optimizer) and lr is not None:
        raise InvalidArgumentError(
            "lr is ignored when optimizer is a callable; set the learning rate inside it"
        )
    if lr is not None:
        check_positive_number("lr", lr)
    if epochs is not None:  # None: open, bounded by max_steps (checked by the Trainer)
        check_positive_int("epochs", epochs)
    if isinstance(scheduler, str) and scheduler not in SCHEDULERS:
        raise InvalidArgumentError(
            f"scheduler={scheduler!r} is not supported; use None, 'onecycle', 'step' or a callable"
        )
    if not 0 <= momentum < 1 or not weight_decay >= 0:
        raise InvalidArgumentError(
            f"momentum must be in [0, 1) and weight_decay >= 0, got {momentum!r} and "
            f"{weight_decay!r}"
        )
    if grad_clip_norm is not None:
        check_positive_number("grad_clip_norm", grad_clip_norm)
    check_fraction("label_smoothing", label_smoothing)
    if augment is not None and not callable(augment):
        raise InvalidArgumentError(f"augment must be callable, got {augment!r}")


def as_class_labels(labels: Tensor) -> Tensor:
    """Labels as int64 class indices (what the losses need), from any integer dtype.

    Raises:
        InvalidArgumentError: the labels are not integers (float, bool or complex values).
    """
    if labels.dtype == torch.int64:
        return labels
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise InvalidArgumentError(
            f"labels must be integer class indices, got dtype {labels.dtype}; convert them "
            "with labels.long() (or round them first if they are whole numbers)"
        )
    return labels.long()


def is_overridden(obj: object, name: str) -> bool:
    """Whether ``obj``'s class redefines the method ``name`` of a base class it inherits.

    True when more than one class of its method resolution order defines ``name`` (a
    subclass of the Trainer or of a Callback that overrides a seam or a hook).

    Example:
        >>> from lenetish._checks import is_overridden
        >>> class Base:
        ...     def hook(self): ...
        >>> class Own(Base):
        ...     def hook(self): ...
        >>> is_overridden(Own(), "hook"), is_overridden(Base(), "hook")
        (True, False)
    """
    return sum(name in vars(klass) for klass in type(obj).__mro__) > 1
