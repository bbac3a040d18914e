"""What ``Trainer.configure_optimizers`` may return: an optimizer, with or without a scheduler.

Three shapes are accepted, the last two as Lightning users write them:

* an optimizer;
* ``(optimizer, scheduler)``;
* ``{"optimizer": optimizer, "lr_scheduler": scheduler}``, where the scheduler may be a dict
  ``{"scheduler": ..., "interval": "epoch" | "step", "monitor": "val_loss", "frequency": 1,
  "strict": True}``. ``"strict": False`` makes an epoch whose metrics lack ``monitor`` skip
  the scheduler's step with a warning instead of raising (Lightning's meaning); ``"name"`` is
  accepted for Lightning's sake and names nothing (:class:`~lenetish.LearningRateMonitor`
  names its columns by optimizer and parameter group).

A returned scheduler is stepped by an :class:`~lenetish.LRSchedule` the fit adds, under the
same checkpoint key as the Trainer's ``scheduler=`` setting, so it resumes like it. Both must
belong to the fit: a scheduler built on another optimizer than the one returned, or an
optimizer holding none of the model's parameters, is refused before training starts (each
would train silently without effect).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from lenetish.callbacks.schedules import LRSchedule
from lenetish.errors import InvalidArgumentError

__all__ = [
    "SCHEDULE_KEY",
    "OptimizerConfig",
    "build_optimizer",
    "check_optimizer_owner",
    "unpack_optimizer_config",
]

#: What ``configure_optimizers`` may return.
OptimizerConfig: TypeAlias = Optimizer | tuple[Optimizer, LRScheduler] | Mapping[str, Any]

#: The checkpoint key of the fit's own schedule (``scheduler=`` or a returned scheduler).
SCHEDULE_KEY = "lenetish.Trainer.scheduler"

_SHAPES = (
    "return an optimizer, (optimizer, scheduler), or {'optimizer': optimizer, "
    "'lr_scheduler': scheduler or {'scheduler': ..., 'interval': 'epoch' or 'step', "
    "'monitor': ...}}"
)


def build_optimizer(
    spec: str | Callable[[Iterable[nn.Parameter]], Optimizer],
    parameters: Iterable[nn.Parameter],
    *,
    lr: float | None,
    momentum: float,
    weight_decay: float,
    device: torch.device,
) -> Optimizer:
    """The optimizer a Trainer's settings name: ``"adam"``, ``"sgd"``, or the user's callable.

    Example:
        >>> from lenetish.training.optimizer_config import build_optimizer
        >>> layer = torch.nn.Linear(2, 2)
        >>> optimizer = build_optimizer("sgd", layer.parameters(), lr=0.1, momentum=0.9,
        ...                             weight_decay=0.0, device=torch.device("cpu"))
        >>> type(optimizer).__name__, optimizer.param_groups[0]["momentum"]
        ('SGD', 0.9)
    """
    if callable(spec):
        return spec(parameters)
    if spec == "sgd":
        return torch.optim.SGD(
            parameters, lr=float(lr or 0.0), momentum=momentum, weight_decay=weight_decay
        )
    # One fused kernel for the whole update (faster than the per-parameter loop on a CPU).
    fused = device.type in ("cuda", "cpu")
    return torch.optim.Adam(parameters, lr=float(lr or 0.0), weight_decay=weight_decay, fused=fused)


def _single(value: object, what: str) -> object:
    """``value``, or the one item of a one-item list or tuple (Lightning's ``[opt], [sched]``)."""
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise InvalidArgumentError(
                f"configure_optimizers returned {len(value)} {what}s; a lenetish fit has one "
                f"optimizer and at most one scheduler: {_SHAPES}"
            )
        return value[0]
    return value


def _schedule(spec: object, optimizer: Optimizer) -> LRSchedule:
    """The callback that steps a returned scheduler (or a Lightning scheduler dict)."""
    settings: Mapping[str, Any] = spec if isinstance(spec, Mapping) else {"scheduler": spec}
    scheduler = settings.get("scheduler")
    if not isinstance(scheduler, (LRScheduler, ReduceLROnPlateau)):
        raise InvalidArgumentError(
            f"configure_optimizers returned {type(scheduler).__name__} as the scheduler, not a "
            f"torch.optim.lr_scheduler scheduler: {_SHAPES}"
        )
    if scheduler.optimizer is not optimizer:  # it would change another optimizer's lr
        raise InvalidArgumentError(
            f"configure_optimizers returned a {type(scheduler).__name__} built on another "
            f"optimizer ({type(scheduler.optimizer).__name__}) than the "
            f"{type(optimizer).__name__} it returned, so it would never change the fit's "
            "learning rate; build the scheduler from the returned optimizer, e.g. "
            "StepLR(optimizer, ...)"
        )
    unknown = set(settings) - {"scheduler", "interval", "monitor", "frequency", "name", "strict"}
    if unknown:
        raise InvalidArgumentError(
            f"the scheduler dict has keys lenetish does not know ({', '.join(sorted(unknown))});"
            " use 'scheduler', 'interval', 'monitor', 'strict', 'name' (and 'frequency': 1)"
        )
    strict = settings.get("strict", True)
    if not isinstance(strict, bool):
        raise InvalidArgumentError(
            f"'strict': {strict!r} in the scheduler dict must be True (an epoch without the "
            "monitored metric raises) or False (it skips that epoch's step with a warning)"
        )
    if settings.get("frequency", 1) != 1:
        raise InvalidArgumentError(
            f"'frequency': {settings['frequency']!r} is not supported; a returned scheduler "
            "steps every interval: use 'frequency': 1, or an LRSchedule callback of your own"
        )
    schedule = LRSchedule(
        lambda optimizer: scheduler,  # built already, by configure_optimizers
        interval=settings.get("interval", "epoch"),
        monitor=settings.get("monitor"),
        strict=strict,
    )
    schedule.state_key = SCHEDULE_KEY
    return schedule


def unpack_optimizer_config(config: object) -> tuple[Optimizer, LRSchedule | None]:
    """The optimizer ``configure_optimizers`` returned, and a callback for its scheduler.

    Args:
        config: what ``configure_optimizers`` returned.

    Returns:
        The optimizer and an :class:`~lenetish.LRSchedule` stepping the returned scheduler,
        or ``None`` when it returned none.

    Raises:
        InvalidArgumentError: any other shape, several optimizers or schedulers, a
            scheduler built on another optimizer than the returned one, or a scheduler
            setting lenetish cannot honour.

    Example:
        >>> import torch
        >>> from lenetish.training.optimizer_config import unpack_optimizer_config
        >>> weights = [torch.nn.Parameter(torch.zeros(2))]
        >>> optimizer = torch.optim.SGD(weights, lr=0.1)
        >>> steps = torch.optim.lr_scheduler.StepLR(optimizer, 1)
        >>> found, schedule = unpack_optimizer_config((optimizer, steps))
        >>> found is optimizer, schedule.interval
        (True, 'epoch')
        >>> unpack_optimizer_config({"optimizer": optimizer, "lr_scheduler": {
        ...     "scheduler": steps, "interval": "step"}})[1].interval
        'step'
    """
    if isinstance(config, Optimizer):
        return config, None
    if isinstance(config, Mapping):
        unknown = set(config) - {"optimizer", "lr_scheduler"}
        if "optimizer" not in config or unknown:
            raise InvalidArgumentError(
                f"configure_optimizers returned a dict with keys {sorted(map(str, config))}: "
                f"{_SHAPES}"
            )
        optimizer, scheduler = config["optimizer"], config.get("lr_scheduler")
    elif isinstance(config, (tuple, list)) and len(config) == 2:
        optimizer, scheduler = _single(config[0], "optimizer"), _single(config[1], "scheduler")
    else:
        raise InvalidArgumentError(
            f"configure_optimizers returned {type(config).__name__}: {_SHAPES}"
        )
    if not isinstance(optimizer, Optimizer):
        raise InvalidArgumentError(
            f"configure_optimizers returned {type(optimizer).__name__} as the optimizer, not a "
            f"torch.optim.Optimizer: {_SHAPES}"
        )
    return optimizer, None if scheduler is None else _schedule(scheduler, optimizer)


def check_optimizer_owner(optimizer: Optimizer, model: nn.Module, *, built_by: str) -> None:
    """Refuse an optimizer that updates none of ``model``'s parameters.

    An optimizer over another network's parameters trains that network and leaves the fit's
    model as it was, with losses that never fall; one that also holds other tensors (a loss's
    own learnable temperature, say) is fine.

    Args:
        optimizer: the fit's optimizer.
        model: the network being fitted.
        built_by: what built it, for the message (``"configure_optimizers"``...).

    Raises:
        InvalidArgumentError: none of the optimizer's parameters is one of ``model``'s.

    Example:
        >>> from lenetish.training.optimizer_config import check_optimizer_owner
        >>> model, other = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
        >>> check_optimizer_owner(torch.optim.SGD(model.parameters(), lr=0.1), model,
        ...                       built_by="optimizer=")
        >>> check_optimizer_owner(torch.optim.SGD(other.parameters(), lr=0.1), model,
        ...                       built_by="optimizer=")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        lenetish.errors.InvalidArgumentError: the optimizer built by optimizer= (SGD) holds ...
    """
    mine = {id(parameter) for parameter in model.parameters()}
    held = [p for group in optimizer.param_groups for p in group["params"]]
    if any(id(parameter) in mine for parameter in held):
        return
    raise InvalidArgumentError(
        f"the optimizer built by {built_by} ({type(optimizer).__name__}) holds {len(held)} "
        f"tensor{'' if len(held) == 1 else 's'}, none of them a parameter of the "
        f"{type(model).__name__} being fitted, so training would never change it; build the "
        "optimizer from the trainer's model: e.g. torch.optim.Adam(self.model.parameters()) "
        "in configure_optimizers, or a callable optimizer= that uses the parameters it is given"
    )
