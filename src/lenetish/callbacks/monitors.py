"""``EarlyStopping``: stop when a watched metric stops improving or crosses a threshold.

``ModelCheckpoint`` lives in ``lenetish.callbacks.checkpointing`` (and still imports from
here, where it used to live).
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import TYPE_CHECKING, Any, Literal

import torch

from lenetish.callbacks.base import Callback
from lenetish.callbacks.checkpointing import ModelCheckpoint
from lenetish.callbacks.ema import EMA
from lenetish.callbacks.watch import DeltaMode, MetricWatch, Mode, check_finite_or_none
from lenetish.errors import CheckpointError, InvalidArgumentError

if TYPE_CHECKING:
    from lenetish.training.state import TrainState
    from lenetish.training.trainer import Trainer

__all__ = ["EarlyStopping", "ModelCheckpoint", "StoppingReason"]

logger = logging.getLogger("lenetish")


StoppingReason = Literal[
    "not_stopped",
    "stopping_threshold",
    "divergence_threshold",
    "patience_exhausted",
    "non_finite_metric",
]


class EarlyStopping(Callback):
    """Stop when a metric has not improved for ``patience`` epochs, or crosses a threshold.

    It reads each epoch's final metrics (``reads_metrics``), so it can watch anything a
    callback or ``training_step`` logged with ``trainer.log``, and a ``val_*`` metric in a
    fit without validation is refused before training starts. With the Trainer's
    ``validation_freq=N``, epochs without validation are passed over: patience counts
    validations. Each epoch is judged in this order: a non-finite value (``check_finite``),
    ``start_from_epoch``, the best value, ``stopping_threshold``, ``divergence_threshold``,
    then patience. Why it stopped is in :attr:`stopping_reason`.

    Args:
        monitor: the metric to watch (``"val_loss"``, ``"val_accuracy"``, ``"loss"``...).
        mode: ``"min"``, ``"max"``, or ``"auto"``: decided at fit start, only for names whose
            direction is known: ``loss`` and ``val_loss`` (min), ``accuracy`` and
            ``val_accuracy`` (max), a stack member's ``loss/0``, ``val_accuracy/1``... and the
            Trainer's ``metrics=`` entries with a ``higher_is_better`` of ``True`` or ``False``
            (torchmetrics metrics have one). Any other name needs ``mode="min"`` or
            ``mode="max"``: the words of a name decide nothing. The decision is logged once.
        patience: epochs without improvement before stopping; 0 stops at the first epoch
            that does not improve, as 1 does (as in Keras and Lightning).
        min_delta: the smallest change that counts as an improvement.
        min_delta_mode: ``"abs"``: ``min_delta`` is a change of the value; ``"rel"``: a
            fraction of the best value (ignite's ``threshold_mode="rel"``: with ``0.1``, a
            loss must fall below 90% of the best).
        cumulative_delta: ``True`` (Keras and Lightning): the best value moves only on an
            improvement, so small gains add up until they pass ``min_delta``. ``False``
            (ignite's ``cumulative=False``): any better value becomes the one to beat by
            ``min_delta``, though it still uses up patience.
        restore_best: load the best epoch's weights back into the model when training ends.
        check_finite: stop at once when the monitored value is NaN or infinite.
        baseline: a value the metric must beat to count as improving at all.
        start_from_epoch: epochs (from 1) to train before watching: earlier epochs neither
            improve nor use up patience, nor reach a threshold.
        stopping_threshold: stop as soon as the metric is better than this (strictly: below
            it in mode min, above it in mode max), as Lightning does.
        divergence_threshold: stop as soon as the metric is worse than this (strictly), as
            Lightning does.

    Attributes:
        stopped_epoch: the epoch (from 1) that requested the stop, or ``None``.
        stopping_reason: ``"not_stopped"``, ``"stopping_threshold"``,
            ``"divergence_threshold"``, ``"patience_exhausted"`` or ``"non_finite_metric"``
            (Lightning's ``EarlyStoppingReason``, as strings); saved in checkpoints.
        stopping_reason_message: the log line of the stop, or ``None``.

    Raises:
        InvalidArgumentError: a setting is out of range; at fit start, ``mode="auto"`` for a
            metric whose direction is not known, or a ``val_*`` monitor without ``val``.

    Example:
        >>> EarlyStopping("val_accuracy", patience=2).watch.mode
        'max'
        >>> EarlyStopping("val_f1").watch.mode  # decided at fit start, or refused there
        'auto'
        >>> EarlyStopping("accuracy_gap", mode="min").watch.mode
        'min'
        >>> EarlyStopping("val_loss", stopping_threshold=0.05).stopping_reason
        'not_stopped'
    """

    reads_metrics = True

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        mode: Mode = "auto",
        patience: int = 3,
        min_delta: float = 0.0,
        min_delta_mode: DeltaMode = "abs",
        cumulative_delta: bool = True,
        restore_best: bool = False,
        check_finite: bool = True,
        baseline: float | None = None,
        start_from_epoch: int = 0,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
    ) -> None:
        for name, value in (("patience", patience), ("start_from_epoch", start_from_epoch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidArgumentError(f"{name} must be an integer >= 0, got {value!r}")
        for name, number in (
            ("baseline", baseline),
            ("stopping_threshold", stopping_threshold),
            ("divergence_threshold", divergence_threshold),
        ):
            check_finite_or_none(name, number)
        self.watch = MetricWatch.checked(monitor, mode, min_delta, min_delta_mode)
        self.patience = patience
        self.cumulative_delta = cumulative_delta
        self.restore_best = restore_best
        self.check_finite = check_finite
        self.baseline = baseline
        self.start_from_epoch = start_from_epoch
        self.stopping_threshold = stopping_threshold
        self.divergence_threshold = divergence_threshold
        self.state_key = f"lenetish.EarlyStopping[monitor={self.watch.monitor}]"
        self.reset()

    def reset(self) -> None:
        """Forget the best value, the waiting count, the stop and the saved weights."""
        self.watch.forget()
        if self.baseline is not None:
            self.watch.best = self.baseline
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.stopping_reason: StoppingReason = "not_stopped"
        self.stopping_reason_message: str | None = None
        self.best_weights: dict[str, torch.Tensor] | None = None

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        """Decide ``mode="auto"``; refuse a ``val_*`` monitor in a fit without validation.

        Raises:
            CheckpointError: best weights restored from a checkpoint do not fit the model.
        """
        self.watch.resolve(trainer.metrics, "EarlyStopping")
        self.watch.check_available(state, "EarlyStopping")
        if self.best_weights is not None:  # restored from a checkpoint: check before training
            _check_best_weights(self.best_weights, trainer.module.state_dict())
        averaging = [c for c in trainer.fit_callbacks if isinstance(c, EMA) and c.apply_at_end]
        if self.restore_best and averaging:
            warnings.warn(
                "EarlyStopping(restore_best=True) and EMA(apply_at_end=True) both set the final "
                "weights; EarlyStopping's best epoch wins and the average is discarded. Keep "
                "one, or use EMA(apply_at_end=False) and read ema.shadow yourself",
                UserWarning,
                stacklevel=2,
            )

    def on_validation_end(
        self, trainer: Trainer, state: TrainState, metrics: dict[str, float]
    ) -> None:
        """Judge a validation inside the epoch (``val_check_interval``), as Lightning does."""
        if self.watch.judges_in_epoch(state, metrics):
            self._judge(trainer, state, metrics)

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        """Judge the epoch's metric; request a stop on a threshold or when patience runs out."""
        if self.watch.skips(state):  # validation_freq: this epoch was not validated
            return
        self._judge(trainer, state, state.metrics)

    def _judge(self, trainer: Trainer, state: TrainState, metrics: dict[str, float]) -> None:
        epoch, watch = state.epoch + 1, self.watch
        value = watch.value(metrics)
        if self.check_finite and not math.isfinite(value):
            self._stop(
                trainer,
                epoch,
                "non_finite_metric",
                f"{watch.monitor} is {value}, not finite (best {watch.best:.5g})",
            )
            return
        if epoch <= self.start_from_epoch:
            return
        improved = watch.update(value, epoch)
        if improved:
            self.wait = 0
        else:
            if not self.cumulative_delta and watch.better(value, watch.best):
                watch.best, watch.best_epoch = value, epoch  # ignite: the last event's value
            self.wait += 1
        if self.restore_best and watch.best_epoch == epoch:
            self.best_weights = {
                k: v.detach().clone() for k, v in trainer.module.state_dict().items()
            }
        sign = "<" if watch.mode == "min" else ">"
        if self.stopping_threshold is not None and watch.better(value, self.stopping_threshold):
            reason = f"{value:.5g} {sign} {self.stopping_threshold:.5g}"
            self._stop(
                trainer,
                epoch,
                "stopping_threshold",
                f"stopping threshold reached: {watch.monitor} = {reason}",
            )
        elif (
            self.divergence_threshold is not None
            and not math.isnan(value)
            and watch.better(self.divergence_threshold, value)
        ):
            reason = f"{value:.5g} {'>' if sign == '<' else '<'} {self.divergence_threshold:.5g}"
            self._stop(
                trainer,
                epoch,
                "divergence_threshold",
                f"divergence threshold reached: {watch.monitor} = {reason}",
            )
        elif not improved and self.wait >= max(self.patience, 1):
            since = (
                f"best {watch.best:.5g} at epoch {watch.best_epoch}"
                if watch.best_epoch
                else f"never better than the baseline {watch.best:.5g}"
                if self.baseline is not None
                else "every value was NaN"
            )
            self._stop(
                trainer,
                epoch,
                "patience_exhausted",
                f"{watch.monitor} did not improve for {self.wait} epochs ({since})",
            )

    def _stop(self, trainer: Trainer, epoch: int, why: StoppingReason, message: str) -> None:
        self.stopped_epoch = epoch
        self.stopping_reason, self.stopping_reason_message = why, message
        state = trainer.state
        if state.in_epoch_validation:  # the epoch ends before its next batch
            logger.info(
                "EarlyStopping: %s; stopping at step %d, inside epoch %d",
                message,
                state.global_step,
                epoch,
            )
        else:
            logger.info("EarlyStopping: %s; stopping after epoch %d", message, epoch)
        trainer.should_stop = True

    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None:
        """Put the best weights back when ``restore_best`` is set (say so when there are none)."""
        if not self.restore_best:
            return
        if self.best_weights is None:
            logger.warning(
                "EarlyStopping: restore_best has nothing to restore: %s never improved "
                "(no finite value beat the start); the model keeps its last weights",
                self.watch.monitor,
            )
            return
        trainer.module.load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        """Best value, waiting count, the stop and its reason, and the best weights."""
        return {
            **self.watch.state_dict(),
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
            "stopping_reason": self.stopping_reason,
            "stopping_reason_message": self.stopping_reason_message,
            "best_weights": self.best_weights,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (a state saved before the stopping reason had none)."""
        self.watch.load_state_dict(state)
        self.wait = int(state["wait"])
        self.stopped_epoch = state["stopped_epoch"]
        self.stopping_reason = state.get("stopping_reason", "not_stopped")
        self.stopping_reason_message = state.get("stopping_reason_message")
        self.best_weights = state["best_weights"]


def _check_best_weights(saved: object, expected: dict[str, torch.Tensor]) -> None:
    """Refuse restored best weights that ``load_state_dict`` would fail on at the fit's end.

    Raises:
        CheckpointError: naming the missing, unexpected or mismatched entries.
    """
    problems: list[str] = []
    if not isinstance(saved, dict):
        problems.append(f"a {type(saved).__name__}, not a state dict")
    else:
        missing, unexpected = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
        problems += [f"missing {', '.join(missing[:3])}"] if missing else []
        problems += [f"unexpected {', '.join(map(str, unexpected[:3]))}"] if unexpected else []
        for name, tensor in expected.items():
            value = saved.get(name)
            if isinstance(value, torch.Tensor) and value.shape != tensor.shape:
                problems.append(f"{name} is {tuple(value.shape)}, not {tuple(tensor.shape)}")
            elif name in saved and not isinstance(value, torch.Tensor):
                problems.append(f"{name} is a {type(value).__name__}, not a tensor")
    if problems:
        raise CheckpointError(
            f"EarlyStopping's saved best weights do not fit the model ({'; '.join(problems[:4])}):"
            " the checkpoint's EarlyStopping state is damaged or comes from another network; "
            "resume from a checkpoint of this network"
        )
