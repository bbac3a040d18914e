"""Callbacks that watch a metric: ``EarlyStopping`` and ``ModelCheckpoint``."""

from __future__ import annotations

import logging
import math
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lenetish._checks import check_positive_int
from lenetish.callbacks.base import Callback
from lenetish.callbacks.ema import EMA
from lenetish.callbacks.watch import MetricWatch, Mode
from lenetish.errors import InvalidArgumentError

if TYPE_CHECKING:
    from lenetish.state import TrainState
    from lenetish.trainer import Trainer

__all__ = ["EarlyStopping", "ModelCheckpoint"]

logger = logging.getLogger("lenetish")


class EarlyStopping(Callback):
    """Stop when a metric has not improved for ``patience`` epochs.

    It reads each epoch's final metrics (``reads_metrics``), so it can watch anything a
    callback or ``training_step`` logged with ``trainer.log``, and a ``val_*`` metric in a
    fit without validation is refused before training starts.

    Args:
        monitor: the metric to watch (``"val_loss"``, ``"val_accuracy"``, ``"loss"``...).
        mode: ``"min"``, ``"max"``, or ``"auto"``: decided at fit start, only for names whose
            direction is known: ``loss`` and ``val_loss`` (min), ``accuracy`` and
            ``val_accuracy`` (max), a stack member's ``loss/0``, ``val_accuracy/1``... and the
            Trainer's ``metrics=`` entries with a ``higher_is_better`` of ``True`` or ``False``
            (torchmetrics metrics have one). Any other name needs ``mode="min"`` or
            ``mode="max"``: the words of a name decide nothing. The decision is logged once.
        patience: epochs without improvement before stopping.
        min_delta: the smallest change that counts as an improvement.
        restore_best: load the best epoch's weights back into the model when training ends.
        check_finite: stop at once when the monitored value is NaN or infinite.
        baseline: a value the metric must beat to count as improving at all.
        start_from_epoch: epochs (from 1) to train before watching: earlier epochs neither
            improve nor use up patience.

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
    """

    reads_metrics = True

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        mode: Mode = "auto",
        patience: int = 3,
        min_delta: float = 0.0,
        restore_best: bool = False,
        check_finite: bool = True,
        baseline: float | None = None,
        start_from_epoch: int = 0,
    ) -> None:
        check_positive_int("patience", patience)
        if (
            isinstance(start_from_epoch, bool)
            or not isinstance(start_from_epoch, int)
            or (start_from_epoch < 0)
        ):
            raise InvalidArgumentError(
                f"start_from_epoch must be an integer >= 0, got {start_from_epoch!r}"
            )
        if baseline is not None and not math.isfinite(baseline):
            raise InvalidArgumentError(f"baseline must be a finite number, got {baseline!r}")
        self.watch = MetricWatch.checked(monitor, mode, min_delta)
        self.patience = patience
        self.restore_best = restore_best
        self.check_finite = check_finite
        self.baseline = baseline
        self.start_from_epoch = start_from_epoch
        self.state_key = f"lenetish.EarlyStopping[monitor={self.watch.monitor}]"
        self.reset()

    def reset(self) -> None:
        """Forget the best value, the waiting count and the saved weights."""
        self.watch.forget()
        if self.baseline is not None:
            self.watch.best = self.baseline
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.best_weights: dict[str, torch.Tensor] | None = None

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        """Decide ``mode="auto"``; refuse a ``val_*`` monitor in a fit without validation."""
        self.watch.resolve(trainer.metrics, "EarlyStopping")
        self.watch.check_available(state, "EarlyStopping")
        averaging = [c for c in trainer.fit_callbacks if isinstance(c, EMA) and c.apply_at_end]
        if self.restore_best and averaging:
            warnings.warn(
                "EarlyStopping(restore_best=True) and EMA(apply_at_end=True) both set the final "
                "weights; EarlyStopping's best epoch wins and the average is discarded. Keep "
                "one, or use EMA(apply_at_end=False) and read ema.shadow yourself",
                UserWarning,
                stacklevel=2,
            )

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        """Compare the epoch's metric with the best; request a stop when patience runs out."""
        epoch = state.epoch + 1
        value = self.watch.value(state.metrics)
        if self.check_finite and not math.isfinite(value):
            self._stop(trainer, epoch, f"{self.watch.monitor} is {value}")
            return
        if epoch <= self.start_from_epoch:
            return
        if self.watch.update(value, epoch):
            self.wait = 0
            if self.restore_best:
                self.best_weights = {
                    k: v.detach().clone() for k, v in trainer.module.state_dict().items()
                }
            return
        self.wait += 1
        if self.wait >= self.patience:
            reason = f"{self.watch.monitor} has not improved for {self.wait} epochs " + (
                f"(best {self.watch.best:.5g} at epoch {self.watch.best_epoch})"
                if self.watch.best_epoch
                else f"(never better than the baseline {self.watch.best:.5g})"
                if self.baseline is not None
                else "(every value was NaN)"
            )
            self._stop(trainer, epoch, reason)

    def _stop(self, trainer: Trainer, epoch: int, reason: str) -> None:
        self.stopped_epoch = epoch
        logger.info("EarlyStopping: %s; stopping after epoch %d", reason, epoch)
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
        """Best value, waiting count, stop epoch and (with ``restore_best``) best weights."""
        return {
            **self.watch.state_dict(),
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
            "best_weights": self.best_weights,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.watch.load_state_dict(state)
        self.wait = int(state["wait"])
        self.stopped_epoch = state["stopped_epoch"]
        self.best_weights = state["best_weights"]


class ModelCheckpoint(Callback):
    """Save full, resumable checkpoints (``last.pt``, ``best.pt``, the top k) at epoch ends.

    It runs after every other callback, so a checkpoint holds their state for that epoch.
    Files are written atomically; resume with ``trainer.fit(..., resume=folder / "last.pt")``.
    ``last.pt`` is also written for the final epoch of a fit stopped at an epoch's end (by
    :class:`EarlyStopping`, say); a stop in the middle of an epoch (:class:`~lenetish.Timer`,
    :class:`~lenetish.TerminateOnNaN`) leaves the last one ``every_n_epochs`` wrote. An epoch whose
    training loss is NaN or infinite is not saved, so a diverged run never replaces the last
    good checkpoint. The best value is kept across fits of the same object, so a second fit
    never replaces a better ``best.pt`` with a worse one (unless ``reset_best``).

    Args:
        folder: where the files go (created if needed).
        monitor: the metric that decides ``best.pt`` and the top k.
        mode: ``"min"``, ``"max"``, or ``"auto"`` (see :class:`EarlyStopping`); used only
            with ``save_best`` or ``save_top_k``.
        save_best: keep ``best.pt``, the epoch with the best ``monitor`` value.
        save_last: keep ``last.pt``, the latest epoch.
        every_n_epochs: write ``last.pt`` every this many epochs (and after the final one).
        save_top_k: also keep the ``k`` best epochs, each in a file named by ``filename``
            (worse files are deleted as better ones arrive).
        filename: a :meth:`str.format` template for the top-k files, given ``epoch`` and the
            epoch's metrics, e.g. ``"{epoch:03d}-{val_loss:.4f}.pt"``.
        reset_best: forget the best value at the start of every fit.

    Raises:
        InvalidArgumentError: a setting is out of range or nothing would be saved; at fit
            start (with ``save_best`` or ``save_top_k``), ``mode="auto"`` for a metric whose
            direction is not known, or a ``val_*`` monitor without ``val``.

    Example:
        >>> saver = ModelCheckpoint("runs/a", monitor="val_accuracy", save_top_k=3)
        >>> saver.filename
        '{epoch:03d}-{val_accuracy:.4f}.pt'
    """

    order = 1000
    reads_metrics = True

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        monitor: str = "val_loss",
        mode: Mode = "auto",
        save_best: bool = False,
        save_last: bool = True,
        every_n_epochs: int = 1,
        save_top_k: int = 0,
        filename: str | None = None,
        reset_best: bool = False,
    ) -> None:
        check_positive_int("every_n_epochs", every_n_epochs)
        if isinstance(save_top_k, bool) or not isinstance(save_top_k, int) or save_top_k < 0:
            raise InvalidArgumentError(f"save_top_k must be an integer >= 0, got {save_top_k!r}")
        if not (save_best or save_last or save_top_k):
            raise InvalidArgumentError(
                "save_best and save_last are both False and save_top_k is 0: nothing to save"
            )
        self.folder = Path(folder)
        self.watch = MetricWatch.checked(monitor, mode)
        self.save_best, self.save_last = save_best, save_last
        self.every_n_epochs, self.save_top_k = every_n_epochs, save_top_k
        self.filename = filename or f"{{epoch:03d}}-{{{self.watch.monitor}:.4f}}.pt"
        self.reset_best = reset_best
        self.top: list[tuple[float, str]] = []  # (value, file name), best first
        self.state_key = f"lenetish.ModelCheckpoint[folder={self.folder}]"

    @property
    def last_path(self) -> Path:
        """Where the latest checkpoint is written."""
        return self.folder / "last.pt"

    @property
    def best_path(self) -> Path:
        """Where the best checkpoint is written."""
        return self.folder / "best.pt"

    def reset(self) -> None:
        """Forget the best value of an earlier fit only with ``reset_best``."""
        if self.reset_best:
            self.watch.forget()
            self.top = []

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        """Decide ``mode="auto"``; refuse a ``val_*`` monitor in a fit without validation."""
        if self.save_best or self.save_top_k:
            self.watch.resolve(trainer.metrics, "ModelCheckpoint")
            self.watch.check_available(state, "ModelCheckpoint")
            # best first, NaN last (files of earlier versions could list a NaN entry first)
            self.top.sort(key=lambda item: self.watch.rank_key(item[0]))

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        """Write ``best.pt`` on improvement, the top k, and ``last.pt`` on schedule.

        The epoch's place in the top k and the best value are decided before any file is
        written, so every file of this epoch holds them: a fit resumed from it knows that
        this epoch is kept and how good it was. Displaced top-k files are deleted last.
        """
        epoch = state.epoch + 1
        if not math.isfinite(state.metrics.get("loss", 0.0)):
            # A diverged epoch would overwrite the last good checkpoint with NaN weights.
            logger.warning("ModelCheckpoint: epoch %d has a non-finite loss; not saving", epoch)
            return
        top_name: str | None = None
        displaced: list[str] = []
        improved = False
        if self.save_best or self.save_top_k:
            value = self.watch.value(state.metrics)
            if self.save_top_k:
                top_name, displaced = self._rank(state, value)
            improved = self.save_best and self.watch.update(value, epoch)
        if top_name is not None:
            trainer.save_checkpoint(self.folder / top_name)
        if improved:
            trainer.save_checkpoint(self.best_path)
        final = epoch == state.epochs or trainer.should_stop  # the fit ends after this epoch
        if self.save_last and (epoch % self.every_n_epochs == 0 or final):
            trainer.save_checkpoint(self.last_path)
        if trainer.is_main_process:
            for name in displaced:
                (self.folder / name).unlink(missing_ok=True)

    def _rank(self, state: TrainState, value: float) -> tuple[str | None, list[str]]:
        """Place this epoch in the top k (NaN ranks worst) and update :attr:`top`.

        Returns:
            The file name to write this epoch to (``None`` if it is not among the k best),
            and the names of the files it displaced.
        """
        if len(self.top) == self.save_top_k and not self.watch.improves(value, self.top[-1][0]):
            return None, []
        try:
            name = self.filename.format(**{**state.metrics, "epoch": state.epoch + 1})
        except (KeyError, ValueError, IndexError) as exc:
            raise InvalidArgumentError(
                f"filename={self.filename!r} does not fit this epoch's metrics "
                f"({', '.join(sorted(state.metrics))}): {exc}"
            ) from exc
        if any(kept == name for _, kept in self.top):
            raise InvalidArgumentError(
                f"filename={self.filename!r} gives {name!r} for epoch {state.epoch + 1} too, "
                "which would overwrite another kept epoch's file; put {epoch} in the template"
            )
        ranked = sorted([*self.top, (value, name)], key=lambda item: self.watch.rank_key(item[0]))
        self.top = ranked[: self.save_top_k]
        # The check above makes this epoch beat the worst kept one, so it is never displaced.
        return name, [dropped for _, dropped in ranked[self.save_top_k :]]

    def state_dict(self) -> dict[str, Any]:
        """The best value and its epoch, and the top-k files."""
        return {**self.watch.state_dict(), "top": [list(item) for item in self.top]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.watch.load_state_dict(state)
        # sorted at fit start, once the direction of the monitor is decided
        self.top = [(float(value), str(name)) for value, name in state.get("top", [])]
