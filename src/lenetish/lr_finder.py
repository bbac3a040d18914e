"""A learning-rate finder: train over an exponential ramp of rates, then put everything back.

:func:`~lenetish.lr_find` is fastai's ``Learner.lr_find`` and Lightning's ``Tuner.lr_find``:
it trains the real model with the trainer's own step and optimizer while the learning rate
climbs from ``min_lr`` to ``max_lr``, records each step's loss, stops early when the loss
diverges, and then restores the model, the optimizer, the random generators and the loader,
so a ``fit`` that follows trains exactly as it would have without it.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
from collections.abc import Iterable, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from lenetish._checks import check_positive_number
from lenetish._device import DeviceLike
from lenetish._snapshots import LoaderSnapshot, ModelSnapshot
from lenetish.callbacks.base import Callback, StopTraining
from lenetish.callbacks.history import History
from lenetish.errors import InvalidArgumentError
from lenetish.layout import match_optimizer_layout
from lenetish.saving.checkpoint import capture_rng_state, restore_rng_state
from lenetish.training.state import BatchOutput, TrainState
from lenetish.training.trainer import Trainer

__all__ = ["LRFinderResult", "lr_find"]

logger = logging.getLogger("lenetish")

Batch = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class LRFinderResult:
    """What :func:`~lenetish.lr_find` measured: one learning rate and loss per optimizer step.

    Attributes:
        lrs: the learning rate of each step, climbing exponentially from ``min_lr``.
        losses: each step's training loss as the trainer computed it (before the step).
        smoothed_losses: their exponential moving average with fastai's bias correction,
            ``avg = smoothing * avg + (1 - smoothing) * loss``, divided by
            ``1 - smoothing ** (step + 1)``; divergence and the suggestion read these.
        suggestion: the learning rate where the smoothed loss falls fastest against
            ``log(lr)`` (Lightning's steepest-gradient rule), or ``None`` when the ramp gave
            no such point (the loss diverged too early, or never fell); the first tenth of
            the planned ramp is left out (its average holds few batches), and so is the step
            where the loss diverged.
        diverged: the ramp stopped before ``num_steps`` because the smoothed loss rose above
            ``divergence`` times its best (or stopped being finite); that last step is the
            final entry of each list.

    Example:
        >>> result = LRFinderResult(
        ...     lrs=(1e-3, 1e-2, 1e-1), losses=(2.3, 2.0, 9.0),
        ...     smoothed_losses=(2.3, 2.1, 5.0), suggestion=1e-2, diverged=True,
        ... )
        >>> result.to_dict()["suggestion"]
        0.01
    """

    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed_losses: tuple[float, ...]
    suggestion: float | None
    diverged: bool

    def to_dict(self) -> dict[str, Any]:
        """The result as plain lists and numbers (a non-finite loss stays ``nan`` or ``inf``).

        Returns:
            ``{"lrs", "losses", "smoothed_losses", "suggestion", "diverged"}``, e.g. for
            ``json.dumps``.

        Example:
            >>> result = LRFinderResult((1e-3, 1e-2), (2.3, 2.0), (2.3, 2.2), None, False)
            >>> sorted(result.to_dict())
            ['diverged', 'losses', 'lrs', 'smoothed_losses', 'suggestion']
        """
        return {
            "lrs": list(self.lrs),
            "losses": list(self.losses),
            "smoothed_losses": list(self.smoothed_losses),
            "suggestion": self.suggestion,
            "diverged": self.diverged,
        }

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Draw loss against learning rate (log axis) as a PNG, marking the suggestion.

        Needs the ``plot`` extra (matplotlib); see :func:`lenetish.plots.plot_lr_find`.

        Args:
            path: the PNG to write.

        Returns:
            ``path`` as a :class:`~pathlib.Path`.

        Raises:
            MissingDependencyError: matplotlib is not installed.
            OutputFileError: the PNG cannot be written (see :func:`~lenetish.plot_history`).

        Example:
            >>> import tempfile
            >>> result = LRFinderResult((1e-3, 1e-2, 1e-1), (2.3, 2.0, 1.9), (2.3, 2.1, 2.0),
            ...                         1e-2, False)
            >>> result.plot(f"{tempfile.mkdtemp()}/lr_find.png").name
            'lr_find.png'
        """
        from lenetish.plots import plot_lr_find  # matplotlib loads only when a plot is drawn

        return plot_lr_find(self, path)


def lr_find(
    trainer_or_model: Trainer | nn.Module,
    train: Iterable[Batch],
    *,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    num_steps: int = 100,
    smoothing: float = 0.98,
    divergence: float | None = 4.0,
    device: DeviceLike | None = None,
) -> LRFinderResult:
    """Train over an exponential ramp of learning rates and suggest one (fastai, Lightning).

    Optimizer step ``i`` of ``num_steps`` runs at ``min_lr * (max_lr / min_lr) ** (i /
    (num_steps - 1))``, set on every parameter group of the optimizer the trainer's
    ``configure_optimizers`` builds, through its own ``training_step``, precision, loss,
    gradient clipping, augmentation and ``accumulate_grad_batches`` (a step's loss is the
    mean of its micro-batches'); ``train`` is cycled when it has fewer batches than the ramp
    needs. The ramp stops early once the smoothed loss exceeds ``divergence`` times the best
    smoothed loss so far, or is not finite.

    Afterwards the model's parameters, gradients, buffers and train/eval modes, the
    optimizer's state, Python's, NumPy's and torch's random generators, and the loader's own
    generators and epoch counter are as they were, so a following ``fit`` gives the same
    weights as one without ``lr_find``. The trainer itself is not changed: the ramp runs on
    a copy of it whose only callback is the ramp (as in Lightning: the trainer's callbacks,
    ``scheduler=`` and ``metrics=`` would act on a run that is thrown away, and its
    ``max_steps`` and ``fast_dev_run`` would cut the ramp short). A scheduler returned by
    ``configure_optimizers`` still steps, but the ramp sets the rate before every batch. A
    bare model is moved to ``device`` for the ramp and back afterwards.

    Args:
        trainer_or_model: a :class:`~lenetish.Trainer` (or subclass), or a network, for
            which ``Trainer(model, device=device)`` is built (Adam, the seed's defaults).
        train: a re-iterable of ``(images, labels)`` batches (a lenetish loader, a
            ``DataLoader``, a list).
        min_lr: the first learning rate of the ramp.
        max_lr: the last learning rate of the ramp (above ``min_lr``).
        num_steps: optimizer steps in the ramp (at least 2).
        smoothing: the moving average's weight of the past, in ``[0, 1)`` (fastai's beta;
            0 does not smooth).
        divergence: stop when the smoothed loss exceeds this many times its best (above 1);
            ``None`` never stops early. It assumes a positive loss, as NLL and
            cross-entropy are.
        device: for a bare model only (``None``: ``"auto"``); a Trainer has its own.

    Returns:
        The :class:`~lenetish.LRFinderResult` (rates, losses, smoothed losses, suggestion).
        When the ramp gives no suggestion, a warning in the ``lenetish`` log says why.

    Raises:
        InvalidArgumentError: an argument is out of range (``min_lr >= max_lr``, a
            non-positive rate, ``num_steps < 2``, ``smoothing`` outside ``[0, 1)``,
            ``divergence <= 1``), ``train`` has no batches or is an iterator, ``device`` is
            given with a Trainer, or ``trainer_or_model`` is neither a Trainer nor a network.

    Example:
        >>> from lenetish import MNISTConvNet, Trainer, lr_find
        >>> _ = torch.manual_seed(0)
        >>> batches = [(torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,)))] * 4
        >>> model = MNISTConvNet()
        >>> before = [p.clone() for p in model.parameters()]
        >>> trainer = Trainer(model, epochs=1, device="cpu", progress=False)
        >>> result = lr_find(trainer, batches, min_lr=1e-5, max_lr=1.0, num_steps=30)
        >>> len(result.lrs), result.lrs[0]
        (30, 1e-05)
        >>> all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
        True
    """
    _check_settings(min_lr, max_lr, num_steps, smoothing, divergence)
    if _batch_count(train) == 0:
        raise InvalidArgumentError(
            "train has no batches (its len() is 0); give lr_find the training batches "
            "(it cycles through them when there are fewer than num_steps)"
        )
    trainer, as_found = _as_trainer(trainer_or_model, device)
    model = trainer.module
    lrs = _exponential_ramp(min_lr, max_lr, num_steps)
    ramp = _LRRamp(lrs, smoothing, divergence, model_tensors={id(p) for p in model.parameters()})
    runner = _ramp_runner(trainer, ramp, num_steps)
    rng, loader = capture_rng_state(), LoaderSnapshot.of(train)
    try:
        runner.fit(train)
    finally:  # also after an error or an interruption: everything as it came
        ramp.restore_optimizer()
        as_found.restore()
        restore_rng_state(rng)
        loader.restore()
    return LRFinderResult(
        lrs=tuple(lrs[: len(ramp.losses)]),
        losses=tuple(ramp.losses),
        smoothed_losses=tuple(ramp.smoothed),
        suggestion=_suggest(ramp, num_steps),
        diverged=ramp.diverged,
    )


def _check_settings(
    min_lr: object, max_lr: object, num_steps: object, smoothing: object, divergence: object
) -> None:
    """Refuse lr_find settings out of range, each with what fits instead."""
    check_positive_number("min_lr", min_lr)
    check_positive_number("max_lr", max_lr)
    if isinstance(min_lr, (int, float)) and isinstance(max_lr, (int, float)) and min_lr >= max_lr:
        raise InvalidArgumentError(
            f"min_lr={min_lr!r} must be below max_lr={max_lr!r}: the ramp climbs from min_lr "
            "to max_lr; swap them, or widen the range (fastai's and Lightning's: 1e-7 to 10)"
        )
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
        raise InvalidArgumentError(
            f"num_steps must be an integer of at least 2 (the ramp's first and last rates), "
            f"got {num_steps!r}; 100 is fastai's and Lightning's"
        )
    if (
        isinstance(smoothing, bool)
        or not isinstance(smoothing, (int, float))
        or not 0 <= smoothing < 1
    ):
        raise InvalidArgumentError(
            f"smoothing must be in [0, 1) (the moving average's weight of the past; 0 does "
            f"not smooth, 0.98 is fastai's), got {smoothing!r}"
        )
    if divergence is not None and (
        isinstance(divergence, bool)
        or not isinstance(divergence, (int, float))
        or not divergence > 1  # also refuses NaN
    ):
        raise InvalidArgumentError(
            f"divergence must be a number above 1 (stop when the smoothed loss exceeds that "
            f"many times its best; fastai's is 4) or None (never stop early), got {divergence!r}"
        )


def _as_trainer(
    trainer_or_model: object, device: DeviceLike | None
) -> tuple[Trainer, ModelSnapshot]:
    """The trainer given, or a default one for a bare network; and its model as found."""
    if isinstance(trainer_or_model, Trainer):
        if device is not None:
            raise InvalidArgumentError(
                f"device={device!r} is for a bare model; this Trainer trains on "
                f"{trainer_or_model.device}: build the Trainer with the device you want"
            )
        return trainer_or_model, ModelSnapshot.of(trainer_or_model.module)
    if isinstance(trainer_or_model, nn.Module):
        # Taken before the Trainer moves the model to the device, so that it goes back.
        found = ModelSnapshot.of(trainer_or_model, move_back=True)
        device = "auto" if device is None else device
        return Trainer(trainer_or_model, device=device, progress=False), found
    raise InvalidArgumentError(
        f"lr_find needs a lenetish Trainer or a torch nn.Module, got "
        f"{type(trainer_or_model).__name__}"
    )


def _batch_count(train: Iterable[Batch]) -> int | None:
    """``len(train)``, or ``None`` for a loader without one."""
    if not isinstance(train, Sized):
        return None
    try:
        return len(train)
    except TypeError:  # a DataLoader over an IterableDataset has no length
        return None


def _exponential_ramp(min_lr: float, max_lr: float, num_steps: int) -> list[float]:
    """``num_steps`` rates evenly spaced in ``log(lr)``, from ``min_lr`` to ``max_lr``."""
    ratio = max_lr / min_lr
    return [min_lr * ratio ** (step / (num_steps - 1)) for step in range(num_steps)]


def _ramp_runner(trainer: Trainer, ramp: _LRRamp, num_steps: int) -> Trainer:
    """A shallow copy of ``trainer`` set up for the ramp (the trainer keeps its own state).

    The copy shares the model and the seams (a subclass's ``training_step`` and
    ``configure_optimizers``), so what is trained is what ``fit`` would train; its fit's
    plan, state and History stay on the copy.
    """
    runner = copy.copy(trainer)
    runner.callbacks = [ramp]
    runner.history = History()
    runner.scheduler_spec = None  # the ramp is the schedule
    runner.metrics = {}  # nobody reads them, and a metric object's state stays the user's
    runner.min_epochs = 0  # a stop on divergence must not be held
    # The ramp ends itself after num_steps: a step budget or a quick run would cut it short.
    runner.limits = dataclasses.replace(trainer.limits, max_steps=None, fast_dev_run=False)
    # Every epoch takes at least one optimizer step (the fit refuses a loader that yields no
    # batch, and an epoch's last group of micro-batches steps), so num_steps epochs suffice.
    runner.epochs = num_steps
    return runner


class _LRRamp(Callback):
    """Sets each step's learning rate, records the losses, stops at the end or on divergence.

    With ``accumulate_grad_batches=N`` a step is N micro-batches: each gets the step's rate,
    and the step's loss is their mean (the loss its gradients are of).
    """

    order = -1000  # set the rate before any other callback's on_batch_start could read it

    def __init__(
        self,
        lrs: list[float],
        smoothing: float,
        divergence: float | None,
        *,
        model_tensors: set[int],
    ) -> None:
        self.lrs, self.smoothing, self.divergence = lrs, smoothing, divergence
        self.model_tensors = model_tensors
        self.losses: list[float] = []
        self.smoothed: list[float] = []
        self.micro_losses: list[float] = []  # of the optimizer step under way
        self.steps_seen = 0
        self.diverged = False
        self.optimizer: Optimizer | None = None
        self.optimizer_state: dict[str, Any] = {}
        self.other_tensors: list[tuple[Tensor, Tensor]] = []
        self.average, self.best = 0.0, math.inf

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        # A configure_optimizers may return an optimizer that outlives the fit (built once
        # in __init__): keep its state, and any tensor it trains besides the model's.
        optimizer = self.optimizer = trainer.optimizer
        self.optimizer_state = copy.deepcopy(optimizer.state_dict())
        self.other_tensors = [
            (tensor, tensor.detach().clone())
            for group in optimizer.param_groups
            for tensor in group["params"]
            if id(tensor) not in self.model_tensors
        ]

    def on_batch_start(self, trainer: Trainer, state: TrainState) -> None:
        lr = self.lrs[len(self.losses)]
        for group in trainer.optimizer.param_groups:
            if isinstance(group["lr"], Tensor):  # a tensor lr (capturable, compiled) stays one
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr

    def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
        self.micro_losses.append(float(output.loss))
        if state.global_step == self.steps_seen:  # a micro-batch: its group has not stepped
            return
        self.steps_seen = state.global_step
        loss = sum(self.micro_losses) / len(self.micro_losses)
        self.micro_losses.clear()
        self.losses.append(loss)
        self.average = self.smoothing * self.average + (1 - self.smoothing) * loss
        smoothed = self.average / (1 - self.smoothing ** len(self.losses))
        self.smoothed.append(smoothed)
        if not math.isfinite(smoothed) or (
            self.divergence is not None and 0 < self.best < smoothed / self.divergence
        ):
            self.diverged = True
            raise StopTraining
        self.best = min(self.best, smoothed)
        if len(self.losses) == len(self.lrs):
            raise StopTraining

    def restore_optimizer(self) -> None:
        """Put the optimizer's state, and the other tensors it trains, back as they were."""
        if self.optimizer is None:  # the fit failed before it built one
            return
        self.optimizer.load_state_dict(self.optimizer_state)
        match_optimizer_layout(self.optimizer)  # the state was saved in the fit's layout
        with torch.no_grad():
            for tensor, saved in self.other_tensors:
                tensor.copy_(saved)


def _suggest(ramp: _LRRamp, num_steps: int) -> float | None:
    """The steepest descent of the smoothed loss against ``log(lr)``, or ``None`` (logged)."""
    usable = len(ramp.smoothed) - (1 if ramp.diverged else 0)
    skip = num_steps // 10  # the first averages hold a handful of batches: too noisy
    if usable - skip < 2:  # only a divergence ends the ramp this early
        logger.warning(
            "lenetish: lr_find: the smoothed loss diverged after %d of %d steps (at lr %.3g), "
            "before the ramp had the %d points a suggestion needs; suggestion is None: lower "
            "min_lr and max_lr, raise num_steps, or raise divergence",
            len(ramp.smoothed),
            num_steps,
            ramp.lrs[max(len(ramp.smoothed) - 1, 0)],
            skip + 2,
        )
        return None
    logs = [math.log(lr) for lr in ramp.lrs[:usable]]
    losses = ramp.smoothed[:usable]
    slopes = [
        (losses[min(i + 1, usable - 1)] - losses[max(i - 1, 0)])
        / (logs[min(i + 1, usable - 1)] - logs[max(i - 1, 0)])
        for i in range(skip, usable)
    ]  # central differences, one-sided at the ends (numpy.gradient's on this even grid)
    steepest = min(range(len(slopes)), key=slopes.__getitem__)
    if not slopes[steepest] < 0:
        logger.warning(
            "lenetish: lr_find: the smoothed loss never fell between lr %.3g and %.3g, so "
            "there is no steepest descent to suggest; suggestion is None: raise max_lr or "
            "num_steps, or check that the loss can fall on this data",
            ramp.lrs[skip],
            ramp.lrs[usable - 1],
        )
        return None
    suggestion = ramp.lrs[skip + steepest]
    logger.info(
        "lenetish: lr_find: %d steps from lr %.3g to %.3g%s; steepest descent of the smoothed "
        "loss at lr %.3g",
        len(ramp.losses),
        ramp.lrs[0],
        ramp.lrs[len(ramp.losses) - 1],
        " (stopped: the loss diverged)" if ramp.diverged else "",
        suggestion,
    )
    return suggestion
