"""How the command line treats SIGINT and SIGTERM: during a fit, at the next batch boundary."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["Terminated", "raise_pending", "signals_at_batch_ends", "sigterm_interrupts"]


class Terminated(KeyboardInterrupt):
    """Raised by the CLI's SIGTERM handler, so SIGTERM ends a run the way Ctrl-C does."""


class _Signals:
    """A signal that arrived while a fit was running, kept for the next batch boundary.

    Raising at an arbitrary bytecode can land inside ``torch.save`` (a checkpoint write),
    where torch turns the interrupt into a ``RuntimeError``; during a fit the handler only
    records the signal and a callback of ``lenetish.cli.train`` raises it between batches. A second
    signal, or one outside a fit, raises at once.
    """

    deferring = False
    pending: type[KeyboardInterrupt] | None = None


def _on_signal(signum: int, frame: FrameType | None) -> None:
    kind = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    if _Signals.deferring and _Signals.pending is None:
        _Signals.pending = kind
        return
    raise kind


def raise_pending() -> None:
    """Raise the signal recorded during the fit, if any (and forget it)."""
    pending, _Signals.pending = _Signals.pending, None
    if pending is not None:
        raise pending


@contextlib.contextmanager
def signals_at_batch_ends() -> Iterator[None]:
    """During a fit, SIGINT and SIGTERM take effect between batches (see :class:`_Signals`)."""
    _Signals.deferring, _Signals.pending = True, None
    try:
        yield
    finally:
        _Signals.deferring = False
    raise_pending()  # a signal during the last epoch's end


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """While running, SIGTERM and SIGINT end the command (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_signal), signal.signal(signal.SIGINT, _on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
