"""Callbacks that report progress: ``ProgressBar``, ``CSVLogger`` and ``TensorBoardLogger``."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from lenetish._atomic import refuse_unsafe
from lenetish._checks import check_positive_int
from lenetish.callbacks.base import Callback
from lenetish.callbacks.history import History, check_separator
from lenetish.errors import InvalidArgumentError, MissingDependencyError, OutputFileError

if TYPE_CHECKING:
    from lenetish.training.state import BatchOutput, TrainState
    from lenetish.training.trainer import Trainer

__all__ = ["CSVLogger", "ProgressBar", "TensorBoardLogger"]


def _format_metrics(metrics: dict[str, float]) -> dict[str, str]:
    return {k: f"{v:.4f}" for k, v in metrics.items() if k not in ("epoch", "seconds", "lr")}


class ProgressBar(Callback):
    """One tqdm bar per epoch with the loss, redrawn in place (no new line per update).

    Reading the loss waits for the device, so the bar shows it only every ``refresh_every``
    batches; the epoch's metrics appear when it ends.

    Args:
        enabled: ``True``/``False``, or ``None``: a bar in a terminal and in a Jupyter
            notebook (as a notebook widget, through ``tqdm.auto``; without ``ipywidgets``, one
            printed line per epoch and a single warning); off a terminal (a file, a pipe, or
            ``CI`` set to true) a plain line every ``line_every`` seconds inside an epoch,
            with the batches done, the rate and the time left, flushed as it is written.
        refresh_every: batches between loss updates.
        stream: where to draw (default: ``sys.stderr``).
        line_every: seconds between the plain lines off a terminal (``None``: the
            ``LENETISH_PROGRESS_EVERY`` environment variable, else 30); an epoch shorter than
            that prints none.

    Raises:
        InvalidArgumentError: ``refresh_every`` is not a positive integer, or ``line_every``
            is negative.

    Example:
        >>> import io
        >>> from lenetish import MNISTConvNet, ProgressBar, Trainer
        >>> screen = io.StringIO()
        >>> bar = ProgressBar(enabled=True, stream=screen)
        >>> batches = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))]
        >>> _ = Trainer(MNISTConvNet(), epochs=1, device="cpu", callbacks=[bar]).fit(batches)
        >>> "epoch 1/1: 100%" in screen.getvalue()
        True
    """

    order = 100
    reads_metrics = True
    rank_zero_only = True

    def __init__(
        self,
        *,
        enabled: bool | None = None,
        refresh_every: int = 25,
        stream: TextIO | None = None,
        line_every: float | None = None,
    ) -> None:
        check_positive_int("refresh_every", refresh_every)
        if line_every is None:
            line_every = _seconds_from_environment()
        if (
            isinstance(line_every, bool)
            or not isinstance(line_every, (int, float))
            or not line_every >= 0
        ):
            raise InvalidArgumentError(
                f"line_every must be a number of seconds >= 0, got {line_every!r}"
            )
        self.stream = stream
        self.enabled = enabled
        self.refresh_every = refresh_every
        self.line_every = float(line_every)
        self.bar: Any = None
        self.lines = False  # a notebook without ipywidgets: one printed line per epoch
        self.plain = False  # off a terminal: a plain line every line_every seconds
        self.started = self.last_line = 0.0
        self.state_key = "lenetish.ProgressBar"

    def _off_terminal(self) -> bool:
        """Not shown as a bar by the automatic choice, but not switched off either."""
        return self.enabled is None and not self._active()

    def _active(self) -> bool:
        if self.enabled is not None:
            return self.enabled
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            return False
        stream = self.stream or sys.stderr
        return in_notebook() or bool(getattr(stream, "isatty", lambda: False)())

    def on_epoch_start(self, trainer: Trainer, state: TrainState) -> None:
        """Open this epoch's bar (in a notebook without ipywidgets, or off a terminal: none)."""
        self.lines = False
        self.plain = self._off_terminal()
        self.started = self.last_line = time.monotonic()
        if not self._active():
            return
        if in_notebook() and not _have_widgets():
            # tqdm's text bar becomes one output per redraw there: print one line per epoch.
            self.lines = True
            _say_once_widgets_missing()
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=state.steps_per_epoch,
            desc=f"epoch {state.epoch + 1}/{state.epochs}",
            unit="batch",
            file=self.stream or sys.stderr,
            dynamic_ncols=True,
            leave=True,
        )

    def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
        """Advance the bar; show the loss every ``refresh_every`` batches (or a plain line)."""
        if self.plain:
            self._plain_line(state)
        if self.bar is None:
            return
        self.bar.update(1)
        if (state.batch_index + 1) % self.refresh_every == 0:
            self.bar.set_postfix(loss=f"{float(output.loss):.4f}", refresh=False)

    def _plain_line(self, state: TrainState) -> None:
        """Off a terminal: one flushed line when ``line_every`` seconds have passed."""
        now = time.monotonic()
        if now - self.last_line < self.line_every:
            return
        self.last_line = now
        done, total = state.batch_index + 1, state.steps_per_epoch
        rate = done / max(now - self.started, 1e-9)
        left = f", {(total - done) / rate:.0f} s left" if total else ""
        of = f"/{total}" if total else ""
        print(
            f"epoch {state.epoch + 1}/{state.epochs}: {done}{of} batches, "
            f"{rate:.1f} batches/s{left}",
            file=self.stream or sys.stderr,
            flush=True,
        )

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        """Show the epoch's metrics and close the bar (or print them on one line)."""
        if self.bar is not None:
            self.bar.set_postfix(_format_metrics(state.metrics), refresh=True)
        elif self.lines:
            shown = ", ".join(f"{k}={v}" for k, v in _format_metrics(state.metrics).items())
            print(
                f"epoch {state.epoch + 1}/{state.epochs}: {shown}", file=self.stream or sys.stdout
            )
        self._close()

    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None:
        """Close a bar left open by a stop request."""
        self._close()

    def on_exception(self, trainer: Trainer, state: TrainState, exc: BaseException) -> None:
        """Close the bar so the traceback starts on a clean line."""
        self._close()

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class CSVLogger(Callback):
    r"""Write a CSV file of the :class:`~lenetish.History` after every epoch.

    By default the file is rewritten from the fit's History each epoch, which keeps it
    complete after a resume; :meth:`History.from_csv <lenetish.History.from_csv>` reads it
    back. With ``append=True`` the rows already in the file (earlier fits, or the run a
    resumed fit continues) are kept and each epoch's row is added after them; a new column
    rewrites the header. Each write is atomic (written beside the file, then renamed over it),
    so a failure such as a full disk leaves the previous file whole, never a torn row.

    A value an epoch lacks (``val_loss`` in an epoch the Trainer's ``validation_freq`` did
    not validate) is an empty cell, where Keras writes ``NA``: the csv module, pandas and
    :meth:`History.from_csv <lenetish.History.from_csv>` read an empty cell as missing, and
    ``nan`` stays what a recorded NaN is. An epoch cut short by a stop is not a row (see
    :doc:`the callbacks page </api/callbacks>`).

    Args:
        path: the CSV file (its folder is created if needed).
        append: keep the file's earlier rows instead of starting it afresh each fit.
        separator: the one character between cells (Keras' ``separator``), e.g. ``"\t"``
            or ``";"``; read the file back with ``History.from_csv(path, separator=...)``.

    Raises:
        InvalidArgumentError: ``separator`` is not one character, or is a quote or a line
            break.
        OutputFileError: (at the end of an epoch) the file cannot be written: the disk is
            full, or ``path`` is a symbolic link, a device, a FIFO or a folder.

    Example:
        >>> CSVLogger("runs/a/history.csv", append=True).append
        True
        >>> CSVLogger("runs/a/history.tsv", separator="\t").separator
        '\t'
    """

    reads_metrics = True
    rank_zero_only = True
    writes_files = True

    def __init__(
        self, path: str | os.PathLike[str], *, append: bool = False, separator: str = ","
    ) -> None:
        check_separator(separator)
        self.path = Path(path)
        self.append = append
        self.separator = separator
        self.state_key = f"lenetish.CSVLogger[path={self.path}]"

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        """Write the history so far (after the file's earlier rows, with ``append``)."""
        refuse_unsafe(self.path, OutputFileError)  # before reading: a FIFO would block
        if not self.append:
            trainer.history.to_csv(self.path, separator=self.separator)
            return
        earlier = (
            History.from_csv(self.path, separator=self.separator).rows if self.path.exists() else []
        )
        History([*earlier, dict(state.metrics)]).to_csv(self.path, separator=self.separator)


class TensorBoardLogger(Callback):
    """Write every epoch's metrics as TensorBoard scalars (needs the ``tensorboard`` extra).

    Each validation (inside epochs too, with ``val_check_interval``) is also written as
    ``validation/<name>`` at its optimizer step.

    Args:
        log_dir: the TensorBoard run folder.

    Raises:
        MissingDependencyError: tensorboard is not installed.

    Example:
        >>> import os, tempfile
        >>> from lenetish import MNISTConvNet, TensorBoardLogger, Trainer
        >>> run = tempfile.mkdtemp()
        >>> logger = TensorBoardLogger(run)
        >>> batches = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))]
        >>> _ = Trainer(MNISTConvNet(), epochs=1, device="cpu", callbacks=[logger]).fit(batches)
        >>> [name.split(".")[0] for name in os.listdir(run)]  # open it with tensorboard --logdir
        ['events']
    """

    reads_metrics = True
    rank_zero_only = True
    writes_files = True

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise MissingDependencyError(
                "TensorBoardLogger needs the tensorboard package; install it with "
                "pip install 'lenetish[tensorboard]' (in a lenetish checkout: "
                "pip install '.[tensorboard]')"
            ) from exc
        self.log_dir = Path(log_dir)
        self.state_key = f"lenetish.TensorBoardLogger[log_dir={self.log_dir}]"
        self._writer_class = SummaryWriter
        self.writer: Any = None

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        """Open the event file."""
        self.writer = self._writer_class(log_dir=str(self.log_dir))

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        """Log each metric at step ``epoch`` (1-based)."""
        for name, value in state.metrics.items():
            if name != "epoch":
                self.writer.add_scalar(name, value, global_step=state.epoch + 1)
        self.writer.flush()

    def on_validation_end(
        self, trainer: Trainer, state: TrainState, metrics: dict[str, float]
    ) -> None:
        """Log every validation, inside epochs too, as ``validation/<name>`` at its step.

        With ``val_check_interval`` these series show the validations inside each epoch;
        the per-epoch series keep the epoch's end, at step ``epoch``.
        """
        for name, value in metrics.items():
            self.writer.add_scalar(f"validation/{name}", value, global_step=state.global_step)

    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None:
        """Close the event file."""
        self._close()

    def on_exception(self, trainer: Trainer, state: TrainState, exc: BaseException) -> None:
        """Close the event file."""
        self._close()

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _seconds_from_environment() -> float:
    """``LENETISH_PROGRESS_EVERY`` as seconds (30 when unset or not a number >= 0)."""
    try:
        seconds = float(os.environ.get("LENETISH_PROGRESS_EVERY", "30"))
    except ValueError:
        return 30.0
    return seconds if seconds >= 0 else 30.0


def _have_widgets() -> bool:
    """Whether ipywidgets, which tqdm's notebook bar needs, can be imported."""
    return importlib.util.find_spec("ipywidgets") is not None


_TOLD_WIDGETS = False


def _say_once_widgets_missing() -> None:
    """One warning per process that the notebook gets epoch lines instead of a live bar."""
    global _TOLD_WIDGETS
    if not _TOLD_WIDGETS:
        _TOLD_WIDGETS = True
        warnings.warn(
            "lenetish: this notebook has no ipywidgets, so progress is one line per epoch "
            "instead of a live bar; pip install ipywidgets for the bar",
            UserWarning,
            stacklevel=3,
        )


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (where ``tqdm.auto`` draws a widget)."""
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)() if ipython else None
    return type(shell).__name__ == "ZMQInteractiveShell"
