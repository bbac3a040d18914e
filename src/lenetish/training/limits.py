"""How much a fit trains and validates: accumulation, step and batch budgets, quick runs.

The Trainer's loop settings that Lightning, Keras and fastai users bring, checked once and
resolved per fit:

* ``accumulate_grad_batches=N``: gradients of N micro-batches are added up (each loss
  scaled by 1/N; the epoch's last, shorter group by 1/its size) before one optimizer step,
  so N batches of B train like one batch of N*B for a model without batch statistics.
  Clipping, ``on_before_optimizer_step`` and per-step schedules act per optimizer step, and
  ``global_step`` counts optimizer steps.
* ``max_steps``: stop after that many optimizer steps (``epochs=None`` leaves the epochs open);
  the epoch it cuts short is validated and recorded in History, as in Keras and Lightning.
* ``limit_train_batches`` / ``limit_val_batches``: an int (batches) or a fraction of
  ``len(loader)`` per epoch; a cut epoch is recorded like a whole one.
* ``fast_dev_run``: ``True`` (1) or N: one epoch of N training and N validation batches, no
  sanity check, and no callback that writes files (checkpoints, CSV, TensorBoard) runs.
* ``num_sanity_val_steps``: validation batches run before the first epoch (2 by default, as
  in Lightning), so a broken ``validation_step`` fails at once, not after a whole epoch;
  their scores are discarded, no hook sees them, and the random state is put back.
* ``val_check_interval``: validate inside the epoch too, every N training batches (an int)
  or every fraction of the epoch (a float), as in Lightning; the epoch's end is validated as
  before. Each validation reaches ``on_validation_end``, ``History.validations``, the
  TensorBoard logger, and the ``val_*`` monitors of :class:`~lenetish.EarlyStopping` and
  :class:`~lenetish.ModelCheckpoint`, which judge every validation (patience then counts
  validations, as in Lightning).
* ``overfit_batches``: train on the first N batches (or fraction) of the training loader,
  the same batches in the same order every epoch (taken once, so shuffling is off), and
  validate on N batches, as in Lightning: a network that cannot overfit them has a bug.
* ``steps_per_epoch``: Keras' setting: each epoch trains that many batches, the loader's
  iterator going on across epochs; where a pass of the loader ends, the next begins inside
  the same epoch (Keras ends such an epoch early with a warning instead).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lenetish.errors import InvalidArgumentError

__all__ = ["BatchLimit", "LoopLimits", "batches_allowed", "check_interval"]

BatchLimit = int | float | None


def _check_limit(name: str, value: BatchLimit) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgumentError(
            f"{name} must be a number of batches (int) or a fraction of the loader (float "
            f"in (0, 1]), got {value!r}"
        )
    if isinstance(value, int) and value < 0:
        raise InvalidArgumentError(f"{name} must be 0 or more batches, got {value}")
    if isinstance(value, float) and not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise InvalidArgumentError(
            f"{name}={value!r}: a fraction of the loader must be in (0, 1]; give an int for a "
            "number of batches"
        )


def _check_count(name: str, value: object, *, least: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InvalidArgumentError(f"{name} must be an integer >= {least}, got {value!r}")


def _refuse_together(*settings: tuple[str, object]) -> None:
    """Refuse two settings that each decide which training batches an epoch takes."""
    given = [name for name, value in settings if value not in (None, 0)]
    # limit_train_batches gives way to fast_dev_run (Lightning's); the others are refused
    if len(given) > 1 and given[0] in ("overfit_batches", "steps_per_epoch"):
        raise InvalidArgumentError(
            f"{' and '.join(given)} each decide which training batches an epoch takes; "
            "give one of them"
        )


def check_interval(interval: int, batches: int | None) -> None:
    """Refuse an in-epoch validation interval longer than the epoch it divides.

    Raises:
        InvalidArgumentError: ``interval`` batches exceed the ``batches`` of an epoch.
    """
    if batches is not None and interval > batches:
        raise InvalidArgumentError(
            f"val_check_interval={interval} batches is longer than an epoch ({batches} "
            "batches): give at most that many, a fraction of the epoch, or validation_freq "
            "for validation every few epochs"
        )


def batches_allowed(limit: BatchLimit, length: int | None, *, name: str) -> int | None:
    """How many batches of a loader of ``length`` batches an epoch takes (``None``: all).

    Raises:
        InvalidArgumentError: a fractional limit of a loader without ``len()``.

    Example:
        >>> batches_allowed(0.25, 10, name="limit_train_batches")  # a quarter, rounded down
        2
        >>> batches_allowed(3, 10, name="limit_train_batches"), batches_allowed(None, 10, name="x")
        (3, None)
    """
    if limit is None:
        return None
    if isinstance(limit, float):
        if length is None:
            raise InvalidArgumentError(
                f"{name}={limit} is a fraction of len(loader), but the loader has no len(); "
                "give a number of batches (an int)"
            )
        return max(1, int(limit * length)) if limit < 1.0 else None
    return limit


@dataclass(frozen=True)
class LoopLimits:
    """The Trainer's accumulation, budgets and quick-run settings (see the module's text).

    Raises:
        InvalidArgumentError: a setting is out of range, or ``epochs=None`` without
            ``max_steps``.

    Example:
        >>> from lenetish.training.limits import LoopLimits
        >>> LoopLimits(accumulate_grad_batches=4).optimizer_steps(10)  # 4 + 4 + 2
        3
        >>> LoopLimits(fast_dev_run=True).train_batches
        1
    """

    accumulate_grad_batches: int = 1
    max_steps: int | None = None
    limit_train_batches: BatchLimit = None
    limit_val_batches: BatchLimit = None
    fast_dev_run: bool | int = False
    num_sanity_val_steps: int = 2
    val_check_interval: BatchLimit = None
    overfit_batches: BatchLimit = None
    steps_per_epoch: int | None = None

    def __post_init__(self) -> None:
        _check_count("accumulate_grad_batches", self.accumulate_grad_batches, least=1)
        _check_count("max_steps", self.max_steps, least=1, allow_none=True)
        _check_limit("limit_train_batches", self.limit_train_batches)
        _check_limit("limit_val_batches", self.limit_val_batches)
        _check_count("num_sanity_val_steps", self.num_sanity_val_steps, least=0)
        if not isinstance(self.fast_dev_run, bool):
            _check_count("fast_dev_run", self.fast_dev_run, least=1)
        _check_limit("val_check_interval", self.val_check_interval)
        _check_limit("overfit_batches", self.overfit_batches)
        _check_count("steps_per_epoch", self.steps_per_epoch, least=1, allow_none=True)
        if self.val_check_interval == 0:
            raise InvalidArgumentError(
                "val_check_interval=0 would validate before every batch; give a number of "
                "batches >= 1, a fraction of the epoch in (0, 1], or None"
            )
        _refuse_together(
            ("overfit_batches", self.overfit_batches),
            ("steps_per_epoch", self.steps_per_epoch),
            ("limit_train_batches", self.limit_train_batches),
            ("fast_dev_run", self.fast_dev_run or None),
        )

    @property
    def quick_run(self) -> int:
        """The batches of a ``fast_dev_run`` (0: not one)."""
        return int(self.fast_dev_run)

    @property
    def train_batches(self) -> BatchLimit:
        """The training batches an epoch takes (a count or fraction; ``None``: all)."""
        return self.quick_run or self.overfit_batches or self.limit_train_batches

    @property
    def val_batches(self) -> BatchLimit:
        """The validation batches a validation takes (a count or fraction; ``None``: all)."""
        return self.quick_run or self.overfit_batches or self.limit_val_batches

    @property
    def sanity_batches(self) -> int:
        """The validation batches run before the first epoch (none in a quick run)."""
        return 0 if self.quick_run else self.num_sanity_val_steps

    def optimizer_steps(self, batches: int) -> int:
        """Optimizer steps an epoch of ``batches`` micro-batches takes."""
        return math.ceil(batches / self.accumulate_grad_batches)
