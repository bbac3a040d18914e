"""Running scores of a fit or an evaluation, kept on the device and summed across processes.

:class:`RunningScore` counts the loss and the accuracy. :class:`MetricSet` adds the user's
metrics: plain functions ``fn(outputs, targets) -> tensor`` (averaged over the samples of
an epoch) or objects with ``update(outputs, targets)``, ``compute()`` and ``reset()`` (the
protocol torchmetrics' ``Metric`` follows, accepted by duck typing).
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeAlias, runtime_checkable

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from lenetish.errors import InvalidArgumentError

__all__ = [
    "BUILT_IN_METRICS",
    "LoggedValue",
    "MetricFunction",
    "MetricLike",
    "MetricObject",
    "MetricSet",
    "RunningScore",
    "check_logged",
    "check_metric_name",
]

MetricFunction = Callable[[Tensor, Tensor], Any]

#: What ``trainer.log`` takes: a real number (Python's or NumPy's) or a one-element tensor
#: or array (see :func:`check_logged`).
LoggedValue: TypeAlias = float | Tensor | np.number[Any] | np.ndarray[Any, Any]


@runtime_checkable
class MetricObject(Protocol):
    """A stateful metric: ``reset()``, ``update(outputs, targets)`` per batch, ``compute()``.

    Any object with these three methods can be passed in the Trainer's ``metrics=`` (a
    torchmetrics ``Metric`` is one); it is not a class to inherit from.

    Example:
        >>> from lenetish import MNISTConvNet, Trainer
        >>> class Seen:
        ...     def reset(self):
        ...         self.count = 0
        ...     def update(self, outputs, targets):
        ...         self.count += len(targets)
        ...     def compute(self):
        ...         return self.count
        >>> batches = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))] * 3
        >>> trainer = Trainer(MNISTConvNet(), epochs=1, device="cpu", metrics={"seen": Seen()})
        >>> trainer.fit(batches)[0]["seen"]
        24.0
    """

    def update(self, outputs: Tensor, targets: Tensor) -> Any:
        """Add one batch."""
        ...

    def compute(self) -> Any:
        """The value over every batch since the last reset (a number or a 0-d tensor)."""
        ...

    def reset(self) -> Any:
        """Start again."""
        ...


MetricLike = MetricFunction | MetricObject


class RunningScore:
    """Sums of loss and correct predictions kept on the device: one sync when read.

    Args:
        device: where the sums live (the device the batches are on).

    Example:
        >>> from lenetish.metrics import RunningScore
        >>> score = RunningScore(torch.device("cpu"))
        >>> outputs = torch.tensor([[0.0, -9.0], [0.0, -9.0]])  # both predict class 0
        >>> score.add(torch.tensor(0.5), outputs, torch.tensor([0, 1]))
        >>> score.metrics(prefix="val_")
        {'val_loss': 0.5, 'val_accuracy': 0.5}
    """

    def __init__(self, device: torch.device) -> None:
        self._loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self._correct = torch.zeros((), dtype=torch.int64, device=device)
        self._seen = 0

    @property
    def seen(self) -> int:
        """The number of samples counted so far."""
        return self._seen

    @property
    def correct(self) -> int:
        """The number of samples classified correctly so far (waits for the device)."""
        return int(self._correct)

    def add(self, mean_loss: Tensor, outputs: Tensor, targets: Tensor) -> None:
        """Count one batch: its mean loss, its outputs ``(B, C)`` and its labels ``(B,)``."""
        count = int(targets.shape[0])
        self._loss_sum += mean_loss.detach().double() * count
        self._correct += (outputs.argmax(dim=1) == targets).sum()
        self._seen += count

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """``{prefix}loss`` and ``{prefix}accuracy`` so far (empty before any batch)."""
        if not self._seen:
            return {}
        return {
            f"{prefix}loss": float(self._loss_sum) / self._seen,
            f"{prefix}accuracy": int(self._correct) / self._seen,
        }

    def state_dict(self) -> dict[str, Any]:
        """The running sums and count, for a checkpoint written in the middle of an epoch.

        Every tensor and integer attribute is saved, so a subclass's own sums come too.

        Example:
            >>> score = RunningScore(torch.device("cpu"))
            >>> score.add(torch.tensor(0.5), torch.tensor([[0.0, -9.0]]), torch.tensor([0]))
            >>> again = RunningScore(torch.device("cpu"))
            >>> again.load_state_dict(score.state_dict())
            >>> again.metrics()
            {'loss': 0.5, 'accuracy': 1.0}
        """
        return {
            name: value.detach().clone() if isinstance(value, Tensor) else value
            for name, value in vars(self).items()
            if isinstance(value, (Tensor, int)) and not isinstance(value, bool)
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`: the same fields, tensor shapes and dtypes.

        The values must be ones batches could have added up to, since a damaged score would
        be reported for the whole epoch: correct predictions from 0 to the samples counted
        (an accuracy in [0, 1]) and finite loss sums.

        Raises:
            KeyError: a field is missing.
            ValueError: a field has another type, shape or dtype, or an impossible value.
        """
        loaded: dict[str, Tensor | int] = {}
        for name, current in self.state_dict().items():
            saved = state[name]
            if isinstance(current, Tensor):
                if not isinstance(saved, Tensor) or (saved.shape, saved.dtype) != (
                    current.shape,
                    current.dtype,
                ):
                    raise ValueError(
                        f"{name} must be a {current.dtype} tensor of shape {tuple(current.shape)}"
                    )
                if saved.is_floating_point() and not bool(torch.isfinite(saved).all()):
                    raise ValueError(f"{name} holds NaN or infinite values; a loss sum is finite")
                loaded[name] = saved.to(current.device).clone()
            elif isinstance(saved, bool) or not isinstance(saved, int) or saved < 0:
                raise ValueError(f"{name} must be an integer >= 0, not {saved!r}")
            else:
                loaded[name] = saved
        seen, correct = loaded.get("_seen"), loaded.get("_correct")
        if isinstance(seen, int) and isinstance(correct, Tensor) and correct.numel():
            low, high = int(correct.min()), int(correct.max())
            if low < 0 or high > seen:
                raise ValueError(
                    f"_correct counts {low if low < 0 else high} correct predictions of {seen} "
                    "samples; it must be from 0 to the samples counted (an accuracy in [0, 1])"
                )
        for name, value in loaded.items():
            setattr(self, name, value)

    def all_reduce(self) -> None:
        """Replace this process's sums by the sums over every process of the group.

        Call it on every rank at the same point (it is a collective operation); the sums
        must live on a device the process group's backend handles.
        """
        totals = torch.stack(
            [
                self._loss_sum,
                self._correct.double(),
                torch.tensor(float(self._seen), dtype=torch.float64, device=self._loss_sum.device),
            ]
        )
        dist.all_reduce(totals)
        loss_sum, correct, seen = totals.unbind()
        self._loss_sum = loss_sum
        self._correct = correct.round().long()
        self._seen = int(seen.item())


BUILT_IN_METRICS = ("epoch", "loss", "accuracy", "lr", "seconds")


def check_metric_name(name: object) -> None:
    """Refuse a user metric name that would clash with a column the trainer writes itself.

    Raises:
        InvalidArgumentError: ``name`` is not a non-empty string, is a built-in column
            (``epoch``, ``loss``, ``accuracy``, ``lr``, ``seconds``), or starts with
            ``val_`` (the validation copy of every metric gets that prefix).
    """
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"metric names must be non-empty strings, got {name!r}")
    if name in BUILT_IN_METRICS or name.startswith("val_"):
        raise InvalidArgumentError(
            f"metric name {name!r} clashes with a column the trainer writes itself "
            f"({', '.join(BUILT_IN_METRICS)}, and val_ + every name); pick another name"
        )


def check_logged(name: str, value: object, *, computed: Mapping[str, object]) -> float | Tensor:
    """The value ``trainer.log(name, value)`` keeps, or refuse a computed column or a non-number.

    A Python or NumPy number (``np.float32(0.5)``, ``np.int64(3)``) or a one-element NumPy
    array becomes a float now; a one-element tensor (``loss``, ``shape (1,)``) is kept as it
    is and read once at the epoch's end, so logging never waits for the device. NaN and
    infinities are kept, as Lightning keeps them: the row shows them, monitors rank NaN worst.

    Raises:
        InvalidArgumentError: ``name`` is a built-in column, a user metric (or its ``val_``
            copy), or ``value`` is not one real number: a bool (or bool tensor), a string,
            a complex number, or a tensor or array of several elements (which the epoch's
            row could not hold).

    Example:
        >>> import numpy as np
        >>> check_logged("gap", np.float32(0.25), computed={})
        0.25
        >>> check_logged("gap", torch.ones(3), computed={})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        lenetish.errors.InvalidArgumentError: trainer.log('gap', ...) needs one number, got a ...
    """
    builtin = name in BUILT_IN_METRICS or name in ("val_loss", "val_accuracy")
    if builtin or name in computed or name.removeprefix("val_") in computed:
        raise InvalidArgumentError(
            f"{name!r} is a metric the trainer computes itself; log under another name"
        )
    if isinstance(value, (Tensor, np.ndarray)):
        kind = "tensor" if isinstance(value, Tensor) else "NumPy array"
        if math.prod(value.shape) != 1:  # a 0-d one has shape (), of product 1
            raise InvalidArgumentError(
                f"trainer.log({name!r}, ...) needs one number, got a {kind} of shape "
                f"{tuple(value.shape)}; log a scalar: value.mean() (or value.sum()), or one "
                "element's value[i].item()"
            )
        if isinstance(value, Tensor):
            dtype: object = value.dtype
            real = not (value.dtype.is_complex or value.dtype == torch.bool)
        else:
            dtype, real = value.dtype, value.dtype.kind in "iuf"
        if not real:
            raise InvalidArgumentError(
                f"trainer.log({name!r}, ...) needs a real number, got a {kind} of dtype "
                f"{dtype}; log a float tensor (value.float()) or a Python number"
            )
        # A tensor stays on its device until the epoch's end; an array is read now.
        return value if isinstance(value, Tensor) else float(value.item())
    # numbers.Real: int, float, fractions and NumPy's integer and floating scalars, not bool
    # (a flag is logged as float(flag), so a comparison logged by mistake is caught).
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        hint = "; log float(flag) for a flag" if isinstance(value, (bool, np.bool_)) else ""
        raise InvalidArgumentError(
            f"trainer.log({name!r}, ...) needs a number, got {value!r} "
            f"({type(value).__name__}){hint}"
        )
    try:
        return float(value)
    except OverflowError:  # an int or fraction beyond a float's range
        raise InvalidArgumentError(
            f"trainer.log({name!r}, ...) got a number too large for a float "
            f"({type(value).__name__}); "
            "log a number below 1.8e308 (a float's largest)"
        ) from None


class MetricSet:
    """The user's metrics over one epoch of training or validation batches.

    A function's values are weighted by batch size and summed on the device (no sync per
    batch); an object is updated with every batch and computed once. Each set holds its own
    copies of the objects, so training and validation never mix.

    Args:
        metrics: ``{name: function or object}``.
        device: where the running sums live.

    Raises:
        InvalidArgumentError: a name is not a non-empty string, or a value is neither a
            callable nor an object with ``update``, ``compute`` and ``reset``.

    Example:
        >>> from lenetish.metrics import MetricSet
        >>> def error_rate(outputs, targets):
        ...     return (outputs.argmax(1) != targets).float().mean()
        >>> metrics = MetricSet({"error": error_rate}, torch.device("cpu"))
        >>> metrics.update(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([1, 1]))
        >>> metrics.compute(prefix="val_")
        {'val_error': 0.5}
    """

    def __init__(self, metrics: Mapping[str, MetricLike], device: torch.device) -> None:
        self.functions: dict[str, MetricFunction] = {}
        self.objects: dict[str, MetricObject] = {}
        for name, metric in metrics.items():
            check_metric_name(name)
            if isinstance(metric, MetricObject):
                duplicate = copy.deepcopy(metric)
                move = getattr(duplicate, "to", None)
                moved = move(device) if callable(move) else None
                # nn.Module.to returns the module; an in-place to() may return None.
                self.objects[name] = moved if isinstance(moved, MetricObject) else duplicate
            elif callable(metric):
                self.functions[name] = metric
            else:
                raise InvalidArgumentError(
                    f"metric {name!r} must be a function (outputs, targets) -> value or an "
                    f"object with update/compute/reset, got {metric!r}"
                )
        self.device = device
        self.reset()

    def reset(self) -> None:
        """Start a new epoch."""
        self.sums = {
            name: torch.zeros((), dtype=torch.float64, device=self.device)
            for name in self.functions
        }
        self.seen = 0
        for metric in self.objects.values():
            metric.reset()

    def update(self, outputs: Tensor, targets: Tensor) -> None:
        """Add one batch of (detached) outputs and targets."""
        count = int(targets.shape[0])
        for name, function in self.functions.items():
            value = _scalar(name, function(outputs, targets), self.device)
            self.sums[name] += value.detach().double() * count
        for metric in self.objects.values():
            metric.update(outputs, targets)
        self.seen += count

    def compute(self, prefix: str = "") -> dict[str, float]:
        """``{prefix + name: value}`` over the batches so far (NaN before any batch)."""
        values = {
            f"{prefix}{name}": float(total) / self.seen if self.seen else math.nan
            for name, total in self.sums.items()
        }
        for name, metric in self.objects.items():
            value = _scalar(name, metric.compute(), self.device) if self.seen else math.nan
            values[f"{prefix}{name}"] = float(value)
        return values

    def state_dict(self) -> dict[str, Any]:
        """The functions' running sums and the count, for a checkpoint written mid-epoch.

        Metric objects keep their own state, which is not saved: after a resume they count
        only the batches trained since (a resume logs which; see :mod:`lenetish.training.resume`).
        """
        return {
            "sums": {name: total.detach().clone() for name, total in self.sums.items()},
            "seen": self.seen,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict` (the same function metrics).

        Raises:
            KeyError: a field or a metric is missing.
            ValueError: the metrics differ, or a sum is not a float64 scalar tensor.
        """
        sums, seen = state["sums"], state["seen"]
        if set(sums) != set(self.sums):
            raise ValueError(
                f"the saved metrics {sorted(sums)} are not this fit's {sorted(self.sums)}"
            )
        for name, total in sums.items():
            if not isinstance(total, Tensor) or (total.shape, total.dtype) != ((), torch.float64):
                raise ValueError(f"the sum of metric {name!r} must be a float64 scalar tensor")
        if isinstance(seen, bool) or not isinstance(seen, int) or seen < 0:
            raise ValueError(f"seen must be an integer >= 0, not {seen!r}")
        self.sums = {name: sums[name].to(self.device).clone() for name in self.sums}
        self.seen = seen

    def all_reduce(self) -> None:
        """Sum the functions' totals over every process (objects synchronise themselves)."""
        if not self.functions:
            return
        totals = torch.stack(
            [
                *self.sums.values(),
                torch.tensor(float(self.seen), dtype=torch.float64, device=self.device),
            ]
        )
        dist.all_reduce(totals)
        *sums, seen = totals.unbind()
        self.sums = dict(zip(self.sums, sums, strict=True))
        self.seen = int(seen.item())


def _scalar(name: str, value: object, device: torch.device) -> Tensor:
    """A metric's value as a one-element tensor, or a named error saying what it was.

    Raises:
        InvalidArgumentError: the value is not a number or a one-element tensor.
    """
    try:
        tensor = torch.as_tensor(value, device=device)
    except (TypeError, RuntimeError, ValueError) as exc:
        raise InvalidArgumentError(
            f"metric {name!r} returned {type(value).__name__}, not a number; a metric must "
            "give one number per batch (function) or per epoch (object)"
        ) from exc
    if tensor.numel() != 1:
        raise InvalidArgumentError(
            f"metric {name!r} returned a tensor of shape {tuple(tensor.shape)}; a metric must "
            "give one number (log per-class values under names of their own, e.g. with "
            "trainer.log(f'acc_{c}', value))"
        )
    return tensor.reshape(())
