"""What the command line prints and writes: lines that survive a closed pipe, checked files."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from lenetish._atomic import unsafe_kind
from lenetish.errors import InvalidArgumentError, LenetishError, OutputFileError

__all__ = [
    "UsageError",
    "check_output_file",
    "flush_stdout",
    "say",
    "silence_stdout",
    "writing",
]


class UsageError(InvalidArgumentError):
    """Options that contradict each other or would destroy earlier work (exit status 2)."""


def say(text: str) -> None:
    """Print a line now; if the reader has gone away (``| head``), drop all further output."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        silence_stdout()


def flush_stdout() -> None:
    """Flush stdout; if the reader has gone away, drop all further output."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()


def silence_stdout() -> None:
    """Point stdout at /dev/null so flushing it at exit cannot raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass  # stdout is not a real file (e.g. captured by a test): nothing to flush


def check_output_file(name: str, option: str) -> None:
    """Refuse an output file path that cannot be written, before any work is done.

    A symbolic link, a device, a FIFO or a folder at the path is refused (the writer would
    refuse it too, after the work).
    """
    path = Path(name)
    if path.is_dir() and not path.is_symlink():
        raise InvalidArgumentError(
            f"{option} {path} is a folder, but a file name is needed there, e.g. "
            f"{path / 'picture.png'}"
        )
    kind = unsafe_kind(path)
    if kind is not None:
        raise InvalidArgumentError(
            f"{option} {path} is {kind}; lenetish writes only regular files, never through a "
            "link or over a device or a FIFO: remove it, or pick another path"
        )
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the nearest existing folder: the rest is created
    if not folder.is_dir():
        raise InvalidArgumentError(
            f"{option} {path} cannot be written: {folder} is a file, not a folder; pick "
            "another path"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InvalidArgumentError(
            f"{option} {path} cannot be written: the folder {folder} is not writable; pick a "
            "folder you can write to"
        )


@contextlib.contextmanager
def writing(option: str) -> Iterator[None]:
    """Turn an operating-system error while writing ``option``'s file into a named error.

    A refusal of the writer (a link, a device, a FIFO or a folder at the path) passes through
    as it is; a failed write, raw or wrapped in :class:`~lenetish.OutputFileError`, is
    said in terms of ``option``.
    """
    try:
        yield
    except OutputFileError as exc:
        if not isinstance(exc.__cause__, OSError):
            raise  # a refusal, already named
        raise _cannot_write(option, exc.__cause__) from exc
    except LenetishError:
        raise  # already named
    except OSError as exc:
        raise _cannot_write(option, exc) from exc


def _cannot_write(option: str, exc: OSError) -> InvalidArgumentError:
    where = f" {exc.filename}" if exc.filename else ""
    advice = (
        "free some space and try again"
        if exc.errno == errno.ENOSPC
        else "pick a path you can write to"
    )
    return InvalidArgumentError(
        f"{option}{where} cannot be written ({exc.strerror or exc}); {advice}"
    )
