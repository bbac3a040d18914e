"""``LearningRateMonitor``: every parameter group's lr (and momentum), per step or epoch."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from torch.optim import Optimizer

from lenetish.callbacks.base import Callback
from lenetish.callbacks.schedules import LRSchedule
from lenetish.errors import InvalidArgumentError

if TYPE_CHECKING:
    from lenetish.training.state import TrainState
    from lenetish.training.trainer import Trainer

__all__ = ["LearningRateMonitor"]

Interval = Literal["step", "epoch"]


class LearningRateMonitor(Callback):
    """Record the learning rate of every parameter group, per step or per epoch (Lightning's).

    Names follow Lightning's ``LearningRateMonitor``: ``lr-Adam`` for an optimizer with one
    parameter group; with several, ``lr-Adam/pg1``, ``lr-Adam/pg2``... (or
    ``lr-Adam/<name>`` for a group with a ``"name"`` key); momentum as ``lr-Adam-momentum``
    (SGD's ``momentum``, Adam's first beta), weight decay as ``lr-Adam-weight_decay``.

    Per epoch, the values in effect during the epoch (read at its start, before an epoch
    schedule steps) are logged with ``trainer.log``: they are History, CSV and TensorBoard
    columns. Per step, they are read before every batch and kept in :attr:`lrs` (a History
    row is one epoch); reading a learning rate held in a device tensor (the captured CUDA
    step's) waits for the device each time. The values are saved in checkpoints, so a
    resumed fit continues the same lists.

    Args:
        logging_interval: ``"step"``, ``"epoch"``, or ``None``: ``"step"`` when one of the
            fit's schedules steps every batch (``scheduler="onecycle"``,
            ``LRSchedule(interval="step")``), else ``"epoch"``.
        log_momentum: also record the momentum (0, with a ``RuntimeWarning``, for an
            optimizer that has none).
        log_weight_decay: also record the weight decay.

    Attributes:
        lrs: ``{name: [learning rate per step or epoch]}`` of this run.
        last_momentum_values: ``{name-momentum: latest value}`` (``None`` before any, and
            without ``log_momentum``).
        last_weight_decay_values: ``{name-weight_decay: latest value}`` (``None`` before any,
            and without ``log_weight_decay``).
        interval: the interval of the latest fit, ``"step"`` or ``"epoch"``.

    Raises:
        InvalidArgumentError: ``logging_interval`` is not ``"step"``, ``"epoch"`` or
            ``None``; at fit start, two parameter groups share a ``"name"``.

    Example:
        >>> from lenetish import LearningRateMonitor, MNISTConvNet, Trainer
        >>> monitor = LearningRateMonitor(log_momentum=True)
        >>> batches = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))] * 2
        >>> history = Trainer(MNISTConvNet(), optimizer="sgd", lr=0.05, epochs=2,
        ...                   scheduler="step", device="cpu", callbacks=[monitor]).fit(batches)
        >>> [round(lr, 3) for lr in monitor.lrs["lr-SGD"]], history[-1]["lr-SGD-momentum"]
        ([0.05, 0.035], 0.9)
    """

    def __init__(
        self,
        logging_interval: Interval | None = None,
        *,
        log_momentum: bool = False,
        log_weight_decay: bool = False,
    ) -> None:
        if logging_interval not in (None, "step", "epoch"):
            raise InvalidArgumentError(
                f"logging_interval must be 'step', 'epoch' or None, got {logging_interval!r}"
            )
        self.logging_interval = logging_interval
        self.log_momentum = log_momentum
        self.log_weight_decay = log_weight_decay
        self.state_key = "lenetish.LearningRateMonitor"
        self.reset()

    def reset(self) -> None:
        """Forget the values of an earlier fit."""
        self.lrs: dict[str, list[float]] = {}
        self.last_momentum_values: dict[str, float | None] = {}
        self.last_weight_decay_values: dict[str, float | None] = {}
        self.interval: Interval = self.logging_interval or "epoch"
        self._names: list[str] = []
        self._epoch_logged = -1  # a resumed epoch runs on_epoch_start again: log it once

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        """Name the parameter groups, decide the interval, warn about a missing momentum."""
        optimizer = trainer.optimizer
        self._names = group_names(optimizer)
        if self.logging_interval is None:
            stepped = any(
                isinstance(c, LRSchedule) and c.interval == "step" for c in trainer.fit_callbacks
            )
            self.interval = "step" if stepped else "epoch"
        for name in self._names:
            self.lrs.setdefault(name, [])
            self.last_momentum_values.setdefault(f"{name}-momentum", None)
            self.last_weight_decay_values.setdefault(f"{name}-weight_decay", None)
        if self.log_momentum and not any(
            "momentum" in group or "betas" in group for group in optimizer.param_groups
        ):
            warnings.warn(
                f"LearningRateMonitor(log_momentum=True), but {type(optimizer).__name__} has "
                "no momentum (no 'momentum' or 'betas'); 0 is recorded for it",
                RuntimeWarning,
                stacklevel=2,
            )

    def on_epoch_start(self, trainer: Trainer, state: TrainState) -> None:
        """Per epoch: record the values in effect and log them as this epoch's columns."""
        if self.interval != "epoch":
            return
        values = self._read(trainer.optimizer, record=state.epoch != self._epoch_logged)
        self._epoch_logged = state.epoch
        for name, value in values.items():
            trainer.log(name, value)

    def on_batch_start(self, trainer: Trainer, state: TrainState) -> None:
        """Per step: record the values the coming optimizer step uses."""
        if self.interval == "step":
            self._read(trainer.optimizer, record=True)

    def _rename(self, optimizer: Optimizer) -> None:
        """Name groups a callback added since (``add_param_group``), as Lightning does.

        The first group's values so far move with its name (``lr-Adam`` to ``lr-Adam/pg1``).
        """
        names = group_names(optimizer)
        if names[: len(self._names)] != self._names and self._names:
            first, renamed = self._names[0], names[0]
            self.lrs.setdefault(renamed, []).extend(self.lrs.pop(first, []))
            for kind, last in (
                ("momentum", self.last_momentum_values),
                ("weight_decay", self.last_weight_decay_values),
            ):
                last.setdefault(f"{renamed}-{kind}", last.pop(f"{first}-{kind}", None))
        for name in names:
            self.lrs.setdefault(name, [])
        self._names = names

    def _read(self, optimizer: Optimizer, *, record: bool) -> dict[str, float]:
        """The current values by name; appended to :attr:`lrs` when ``record``."""
        if len(optimizer.param_groups) != len(self._names):
            self._rename(optimizer)
        values: dict[str, float] = {}
        for name, group in zip(self._names, optimizer.param_groups, strict=True):
            values[name] = lr = float(group["lr"])
            if record:
                self.lrs[name].append(lr)
            if self.log_momentum:
                values[f"{name}-momentum"] = momentum = _momentum(group)
                self.last_momentum_values[f"{name}-momentum"] = momentum
            if self.log_weight_decay:
                values[f"{name}-weight_decay"] = decay = float(group.get("weight_decay", 0.0))
                self.last_weight_decay_values[f"{name}-weight_decay"] = decay
        return values

    def state_dict(self) -> dict[str, Any]:
        """The recorded values, so a resumed fit continues them."""
        return {
            "lrs": {name: list(values) for name, values in self.lrs.items()},
            "last_momentum_values": dict(self.last_momentum_values),
            "last_weight_decay_values": dict(self.last_weight_decay_values),
            "epoch_logged": self._epoch_logged,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.lrs = {str(k): [float(v) for v in values] for k, values in state["lrs"].items()}
        self.last_momentum_values = dict(state.get("last_momentum_values", {}))
        self.last_weight_decay_values = dict(state.get("last_weight_decay_values", {}))
        self._epoch_logged = int(state.get("epoch_logged", -1))


def group_names(optimizer: Optimizer) -> list[str]:
    """Lightning's names of the optimizer's parameter groups (``lr-Adam``, ``lr-Adam/pg2``).

    Raises:
        InvalidArgumentError: two groups have the same ``"name"``.

    Example:
        >>> import torch
        >>> w, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
        >>> group_names(torch.optim.SGD([{"params": [w]}, {"params": [b], "name": "bias"}], lr=1))
        ['lr-SGD/pg1', 'lr-SGD/bias']
    """
    base = f"lr-{type(optimizer).__name__}"
    groups = optimizer.param_groups
    given = [group.get("name") for group in groups]
    named = [str(name) for name in given if name is not None]
    if len(set(named)) < len(named):
        raise InvalidArgumentError(
            f"{type(optimizer).__name__} has parameter groups with the same 'name' "
            f"({', '.join(sorted({n for n in named if named.count(n) > 1}))}); "
            "LearningRateMonitor names each group's column by it: give them distinct names"
        )
    if len(groups) == 1:
        return [base if given[0] is None else f"{base}/{given[0]}"]
    return [f"{base}/{name if name is not None else f'pg{i}'}" for i, name in enumerate(given, 1)]


def _momentum(group: Mapping[str, Any]) -> float:
    """SGD's ``momentum`` or Adam's first beta; 0 for an optimizer with neither."""
    if "betas" in group:
        return float(group["betas"][0])
    return float(group.get("momentum", 0.0))
