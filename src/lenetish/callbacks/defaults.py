"""The callbacks every Trainer has: a History and a ProgressBar, unless the user gave their own."""

from __future__ import annotations

from collections.abc import Sequence

from lenetish.callbacks.base import Callback
from lenetish.callbacks.history import History
from lenetish.callbacks.loggers import ProgressBar

__all__ = ["renew_history", "with_defaults"]


def with_defaults(
    callbacks: Sequence[Callback], progress: bool | None
) -> tuple[list[Callback], History, bool]:
    """A Trainer's callbacks: the given ones, a History unless given, a ProgressBar unless given.

    Returns:
        The list, its History, and whether the caller gave that History (then every fit
        appends to it; else each fit gets a fresh one, see :func:`renew_history`).

    Example:
        >>> from lenetish.callbacks.defaults import with_defaults
        >>> callbacks, history, given = with_defaults([], progress=False)
        >>> [type(c).__name__ for c in callbacks], given
        (['History', 'ProgressBar'], False)
    """
    history = next((c for c in callbacks if isinstance(c, History)), History())
    given = history in callbacks
    extra: list[Callback] = [] if given else [history]
    if not any(isinstance(c, ProgressBar) for c in callbacks):
        extra.append(ProgressBar(enabled=progress))
    return [*callbacks, *extra], history, given


def renew_history(callbacks: list[Callback], history: History) -> tuple[list[Callback], History]:
    """``callbacks`` with a fresh History in place of ``history`` (each fit returns its own)."""
    fresh = History()
    return [fresh if c is history else c for c in callbacks], fresh
