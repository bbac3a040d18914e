"""``ModelCheckpoint``: full, resumable checkpoints: ``last.pt``, ``best.pt``, the top k."""

from __future__ import annotations

import logging
import math
import os
import string
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lenetish._checks import check_positive_int
from lenetish._text import printable
from lenetish.callbacks.base import Callback
from lenetish.callbacks.watch import MetricWatch, Mode, check_finite_or_none
from lenetish.errors import CheckpointError, InvalidArgumentError

if TYPE_CHECKING:
    from lenetish.training.state import BatchOutput, TrainState
    from lenetish.training.trainer import Trainer

__all__ = ["ModelCheckpoint"]

logger = logging.getLogger("lenetish")


class ModelCheckpoint(Callback):
    """Save full, resumable checkpoints (``last.pt``, ``best.pt``, the top k) at epoch ends.

    It runs after every other callback, so a checkpoint holds their state for that epoch.
    Files are written atomically; resume with ``trainer.fit(..., resume=folder / "last.pt")``.
    ``last.pt`` is also written for the final epoch of a fit stopped at an epoch's end (by
    :class:`~lenetish.EarlyStopping`, say); a stop in the middle of an epoch
    (:class:`~lenetish.Timer`, :class:`~lenetish.TerminateOnNaN`) leaves the last one
    ``every_n_epochs`` (or ``every_n_steps``) wrote. An epoch (or step) whose training loss is
    NaN or infinite is not saved, so a diverged run never replaces the last good checkpoint.
    ``last.pt`` is one file, overwritten by each save, also by a later fit into the same
    folder (Lightning would write ``last-v1.ckpt``): it is the file to resume from. The best
    value is kept across fits of the same object, so a second fit never replaces a better
    ``best.pt`` with a worse one (unless ``reset_best``). With the Trainer's
    ``validation_freq=N`` and a ``val_*`` monitor, only validated epochs compete for
    ``best.pt`` and the top k; with ``val_check_interval`` every validation inside an epoch
    competes too (as in Lightning), its files resuming inside that epoch (give the top-k
    ``filename`` a ``{step}``). The checkpoint a fit resumed from is never deleted: when
    better epochs push it out of the top k it leaves the list and stays on disk (as in
    Lightning), so a resume that goes wrong can start again from it.

    Args:
        folder: where the files go (created if needed).
        monitor: the metric that decides ``best.pt`` and the top k.
        mode: ``"min"``, ``"max"``, or ``"auto"`` (see :class:`~lenetish.EarlyStopping`);
            used only with ``save_best`` or ``save_top_k``.
        save_best: keep ``best.pt``, the epoch with the best ``monitor`` value.
        save_last: keep ``last.pt``, the latest epoch.
        every_n_epochs: write ``last.pt`` every this many epochs (and after the final one).
        every_n_steps: also write ``last.pt`` every this many optimizer steps (Keras'
            integer ``save_freq``, Lightning's ``every_n_train_steps``), from the batch's
            end: a checkpoint that resumes inside the epoch. ``best.pt`` and the top k are
            decided at epochs' ends only, where the monitored metric exists. Needs
            ``save_last``.
        save_top_k: also keep the ``k`` best epochs, each in a file named by ``filename``
            (worse files are deleted as better ones arrive); ``-1`` keeps every epoch's file
            (Lightning's ``save_top_k=-1``, ignite's ``n_saved=None``), still ranked.
        filename: a :meth:`str.format` template for the top-k files, given ``epoch`` (from
            1), ``step`` (optimizer steps so far) and the epoch's metrics, e.g.
            ``"{epoch:03d}-{val_loss:.4f}.pt"``: a file name in ``folder``, without a path
            separator.
        reset_best: forget the best value at the start of every fit.
        baseline: a value an epoch must beat for ``best.pt`` to be written at all (Keras'
            ``initial_value_threshold``); ``reset_best`` starts again from it.
        latest_on_tie: an epoch whose value equals the best (or the worst kept one) replaces
            that file (ignite's ``greater_or_equal=True``); by default the earlier file stays.
        auto_insert_metric_name: write each template field as ``name=value``, so
            ``"{epoch}-{val_loss:.2f}.pt"`` names ``epoch=3-val_loss=0.12.pt`` (Lightning's
            default; off here, so a template is used as written).

    Raises:
        InvalidArgumentError: a setting is out of range or nothing would be saved; at fit
            start (with ``save_best`` or ``save_top_k``), ``mode="auto"`` for a metric whose
            direction is not known, or a ``val_*`` monitor without ``val``.
        CheckpointError: a resumed checkpoint lists a top-k file that is not a plain file
            name in ``folder`` (``../x``, an absolute path): refused before any file is
            deleted.

    Example:
        >>> saver = ModelCheckpoint("runs/a", monitor="val_accuracy", save_top_k=3)
        >>> saver.filename
        '{epoch:03d}-{val_accuracy:.4f}.pt'
        >>> named = ModelCheckpoint("runs/a", filename="{epoch}-{val_loss:.2f}.pt",
        ...                         auto_insert_metric_name=True)
        >>> named.format_filename({"epoch": 3, "step": 300, "val_loss": 0.123})
        'epoch=3-val_loss=0.12.pt'
    """

    order = 1000
    reads_metrics = True
    writes_files = True

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        monitor: str = "val_loss",
        mode: Mode = "auto",
        save_best: bool = False,
        save_last: bool = True,
        every_n_epochs: int = 1,
        every_n_steps: int | None = None,
        save_top_k: int = 0,
        filename: str | None = None,
        reset_best: bool = False,
        baseline: float | None = None,
        latest_on_tie: bool = False,
        auto_insert_metric_name: bool = False,
    ) -> None:
        check_positive_int("every_n_epochs", every_n_epochs)
        if every_n_steps is not None:
            check_positive_int("every_n_steps", every_n_steps)
            if not save_last:
                raise InvalidArgumentError(
                    "every_n_steps writes last.pt, but save_last=False; pass save_last=True "
                    "or drop every_n_steps"
                )
        if isinstance(save_top_k, bool) or not isinstance(save_top_k, int) or save_top_k < -1:
            raise InvalidArgumentError(
                f"save_top_k must be an integer >= -1 (-1 keeps every epoch's file), "
                f"got {save_top_k!r}"
            )
        if not (save_best or save_last or save_top_k):
            raise InvalidArgumentError(
                "save_best and save_last are both False and save_top_k is 0: nothing to save"
            )
        check_finite_or_none("baseline", baseline)
        if filename is not None and _template_separates(filename):
            raise InvalidArgumentError(
                f"filename={printable(repr(filename))} holds a path separator or a NUL "
                "character; it must name a file in folder (the top-k files are deleted by "
                "name as better ones arrive): pick the sub-folder with folder= instead"
            )
        self.folder = Path(folder)
        self.watch = MetricWatch.checked(monitor, mode)
        self.save_best, self.save_last = save_best, save_last
        self.every_n_epochs, self.save_top_k = every_n_epochs, save_top_k
        self.every_n_steps = every_n_steps
        self.filename = filename or f"{{epoch:03d}}-{{{self.watch.monitor}:.4f}}.pt"
        self.reset_best = reset_best
        self.baseline = baseline
        self.latest_on_tie = latest_on_tie
        self.auto_insert_metric_name = auto_insert_metric_name
        self._template = _insert_names(self.filename) if auto_insert_metric_name else None
        if baseline is not None:
            self.watch.best = baseline
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

    def format_filename(self, values: Mapping[str, float]) -> str:
        """The top-k file name of ``filename`` for ``values`` (``epoch``, ``step``, metrics).

        Args:
            values: what the template's fields name.

        Returns:
            The file name, with ``name=`` before each value under ``auto_insert_metric_name``.

        Raises:
            InvalidArgumentError: the template names a value that ``values`` lacks, or does
                not format it.

        Example:
            >>> ModelCheckpoint("runs/a", filename="{epoch:03d}-{acc}.pt").format_filename(
            ...     {"epoch": 3, "acc": 0.03})
            '003-0.03.pt'
        """
        try:
            return (self._template or self.filename).format(**values)
        except (KeyError, ValueError, IndexError) as exc:
            raise InvalidArgumentError(
                f"filename={self.filename!r} does not fit this epoch's metrics "
                f"({', '.join(sorted(values))}): {exc}"
            ) from exc

    def reset(self) -> None:
        """Forget the best value of an earlier fit only with ``reset_best``."""
        if self.reset_best:
            self.watch.forget()
            if self.baseline is not None:
                self.watch.best = self.baseline
            self.top = []

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        """Decide ``mode="auto"``; refuse a ``val_*`` monitor in a fit without validation."""
        if self.save_best or self.save_top_k:
            self.watch.resolve(trainer.metrics, "ModelCheckpoint")
            self.watch.check_available(state, "ModelCheckpoint")
            # best first, NaN last (files of earlier versions could list a NaN entry first)
            self.top.sort(key=lambda item: self.watch.rank_key(item[0]))

    def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
        """Write ``last.pt`` every ``every_n_steps`` optimizer steps (a mid-epoch checkpoint)."""
        if self.every_n_steps is None or state.global_step % self.every_n_steps:
            return
        if state.accumulating:  # a micro-batch: the step it belongs to has not happened
            return
        if not math.isfinite(float(output.loss)):
            logger.warning(
                "ModelCheckpoint: step %d has a non-finite loss; not saving", state.global_step
            )
            return
        trainer.save_checkpoint(self.last_path)

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
        judged = (self.save_best or self.save_top_k) and not self.watch.skips(state)
        displaced = self._keep(trainer, state, state.metrics) if judged else []
        # the fit ends after this epoch: its last, or a stop that min_epochs does not hold
        final = epoch == state.epochs or (trainer.should_stop and epoch >= state.min_epochs)
        if self.save_last and (epoch % self.every_n_epochs == 0 or final):
            trainer.save_checkpoint(self.last_path)
        self._delete_all(trainer, displaced, state.resumed_from)

    def on_validation_end(
        self, trainer: Trainer, state: TrainState, metrics: dict[str, float]
    ) -> None:
        """Judge a validation inside the epoch (``val_check_interval``) for the best and top k.

        Its files are mid-epoch checkpoints: a fit resumed from one goes on inside the epoch.
        """
        if not (self.save_best or self.save_top_k) or not self.watch.judges_in_epoch(
            state, metrics
        ):
            return
        if state.last_loss is not None and not math.isfinite(float(state.last_loss)):
            logger.warning(
                "ModelCheckpoint: step %d has a non-finite loss; not saving", state.global_step
            )
            return
        self._delete_all(trainer, self._keep(trainer, state, metrics), state.resumed_from)

    def _keep(self, trainer: Trainer, state: TrainState, metrics: dict[str, float]) -> list[str]:
        """Write ``best.pt`` on improvement and this point's top-k file; the displaced names.

        The place in the top k and the best value are decided before any file is written,
        so every file written here holds them.
        """
        value = self.watch.value(metrics)
        top_name: str | None = None
        displaced: list[str] = []
        if self.save_top_k:
            top_name, displaced = self._rank(state, metrics, value)
        epoch = state.epoch + 1
        improved = self.save_best and self.watch.update(value, epoch, ties=self.latest_on_tie)
        if top_name is not None:
            trainer.save_checkpoint(self.folder / top_name)
        if improved:
            trainer.save_checkpoint(self.best_path)
        return displaced

    def _delete_all(self, trainer: Trainer, names: list[str], resumed_from: str | None) -> None:
        if trainer.is_main_process:
            for name in names:
                self._delete(name, resumed_from)

    def _delete(self, name: str, resumed_from: str | None = None) -> None:
        """Delete the displaced top-k file ``name``, never anything outside :attr:`folder`.

        Nor the checkpoint the fit resumed from (``resumed_from``), the one file known good.
        """
        problem = _name_problem(name, self.folder)
        if problem is not None:
            # load_state_dict refuses such names; this guards a top list set any other way
            logger.warning(
                "ModelCheckpoint: not deleting the displaced top-k file %s: %s",
                printable(repr(name)),
                problem,
            )
            return
        if resumed_from is not None and _same_file(self.folder / name, resumed_from):
            logger.info(
                "ModelCheckpoint: %s left the top %d; kept, as the checkpoint this fit "
                "resumed from",
                printable(str(self.folder / name)),
                self.save_top_k,
            )
            return
        (self.folder / name).unlink(missing_ok=True)

    def _rank(
        self, state: TrainState, metrics: dict[str, float], value: float
    ) -> tuple[str | None, list[str]]:
        """Place this epoch in the top k (NaN ranks worst) and update :attr:`top`.

        Returns:
            The file name to write this epoch to (``None`` if it is not among the k best),
            and the names of the files it displaced.
        """
        full = self.save_top_k > 0 and len(self.top) >= self.save_top_k
        if full and not self.watch.improves(value, self.top[-1][0], ties=self.latest_on_tie):
            return None, []
        name = self.format_filename(
            {**metrics, "epoch": state.epoch + 1, "step": state.global_step}
        )
        problem = _name_problem(name, self.folder)
        if problem is not None:
            raise InvalidArgumentError(
                f"filename={printable(repr(self.filename))} gives {printable(repr(name))} for "
                f"epoch {state.epoch + 1}, which {problem}; a top-k file must be a plain file "
                "name in folder: change the template"
            )
        if any(kept == name for _, kept in self.top):
            raise InvalidArgumentError(
                f"filename={self.filename!r} gives {name!r} for epoch {state.epoch + 1} too, "
                "which would overwrite another kept epoch's file; put {epoch} in the template "
                "({step} too with val_check_interval)"
            )
        # On a tie the newcomer goes first (latest_on_tie) or last: the sort is stable.
        entries = [(value, name), *self.top] if self.latest_on_tie else [*self.top, (value, name)]
        ranked = sorted(entries, key=lambda item: self.watch.rank_key(item[0]))
        if self.save_top_k < 0:  # keep every epoch's file
            self.top = ranked
            return name, []
        self.top = ranked[: self.save_top_k]
        # The check above makes this epoch beat the worst kept one, so it is never displaced.
        return name, [dropped for _, dropped in ranked[self.save_top_k :]]

    def state_dict(self) -> dict[str, Any]:
        """The best value and its epoch, and the top-k files."""
        return {**self.watch.state_dict(), "top": [list(item) for item in self.top]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`.

        Raises:
            CheckpointError: a top-k entry is not a plain file name in :attr:`folder`; its
                files are deleted by name later, so the whole state is refused first.
        """
        top = [(float(value), self._checked_name(name)) for value, name in state.get("top", [])]
        self.watch.load_state_dict(state)
        self.top = top  # sorted at fit start, once the direction of the monitor is decided

    def _checked_name(self, name: object) -> str:
        """``name`` from a saved top-k list, or CheckpointError if it is no file of the folder."""
        problem = _name_problem(name, self.folder) if isinstance(name, str) else "is not a string"
        if problem is not None:
            raise CheckpointError(
                f"ModelCheckpoint (folder {printable(str(self.folder))}): the saved top-k list "
                f"names {printable(repr(name))}, which {problem}; ModelCheckpoint writes only "
                "plain file names in its folder there, so this checkpoint was altered or is not "
                "a lenetish checkpoint, and nothing was deleted: resume from a checkpoint you "
                "trust, or start a new run"
            )
        assert isinstance(name, str)
        return name


# both separators on every system, so a checkpoint names the same files wherever it resumes
_SEPARATORS = frozenset(filter(None, ("/", "\\", "\0", os.sep, os.altsep)))


def _template_separates(template: str) -> bool:
    """Whether the text or format specs of ``template`` hold a separator or NUL.

    A field's name may hold one (``{val/loss}``): it is replaced by the value, and only
    :meth:`ModelCheckpoint.format_filename` with ``auto_insert_metric_name`` writes it out,
    which the name check at the epoch's end catches.
    """
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError:  # a malformed template: format_filename says so at the first epoch
        return False
    return any(
        char in _SEPARATORS for literal, _, spec, _ in parts for char in literal + (spec or "")
    )


def _name_problem(name: str, folder: Path) -> str | None:
    """Why ``name`` is not a plain file name inside ``folder`` (``None`` if it is one).

    Example:
        >>> _name_problem("../victim.txt", Path("runs/a"))
        'holds a path separator'
        >>> _name_problem("003-0.1234.pt", Path("runs/a")) is None
        True
    """
    if "\0" in name:
        return "holds a NUL character"
    if any(char in name for char in _SEPARATORS):
        return "holds a path separator"
    if name in ("", ".", ".."):
        return "names no file (it is empty, '.' or '..')"
    if os.path.isabs(name) or Path(name).name != name:  # e.g. a Windows drive, 'C:x'
        return "is an absolute path"
    inside = os.path.realpath(folder)
    if os.path.dirname(os.path.normpath(os.path.join(inside, name))) != inside:
        return f"is not inside {printable(str(folder))}"
    return None


def _same_file(path: Path, other: str) -> bool:
    """Whether ``path`` and ``other`` are one file (``False`` if either is missing)."""
    try:
        return os.path.samefile(path, other)
    except OSError:  # gone already: nothing left to keep
        return False


def _insert_names(template: str) -> str:
    """``template`` with ``name=`` before each replacement field (Lightning's auto insert).

    Example:
        >>> _insert_names("{epoch:03d}-{val_loss:.2f}.pt")
        'epoch={epoch:03d}-val_loss={val_loss:.2f}.pt'
    """
    parts = []
    for literal, field, spec, conversion in string.Formatter().parse(template):
        parts.append(literal.replace("{", "{{").replace("}", "}}"))
        if field is not None:
            parts.append(f"{field}={{{field}{'!' + conversion if conversion else ''}")
            parts.append(f"{':' + spec if spec else ''}}}")
    return "".join(parts)
