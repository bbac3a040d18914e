"""What the command line prints and writes: escaped lines that survive a closed pipe, files."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from lenetish._atomic import name_length_problem, unsafe_kind
from lenetish._text import printable
from lenetish.errors import InvalidArgumentError, LenetishError, OutputFileError

__all__ = [
    "StdoutError",
    "UsageError",
    "check_output_file",
    "check_stdout",
    "flush_stdout",
    "say",
    "silence_stdout",
    "warn",
    "writing",
]


class UsageError(InvalidArgumentError):
    """Options that contradict each other or would destroy earlier work (exit status 2)."""


class StdoutError(OutputFileError):
    """Standard output cannot be written: it is closed, or the file behind it is full."""


def _stdout_failed(exc: OSError | None) -> StdoutError:
    """The error for a failed write to stdout; what is still buffered goes to /dev/null."""
    silence_stdout()  # else the interpreter's final flush fails again, with a traceback
    if exc is None:
        return StdoutError(
            "standard output is closed, so the results cannot be printed; run lenetish with "
            "its output going somewhere (a terminal, a file, or > /dev/null to drop it)"
        )
    advice = (
        "free some space, or send the output elsewhere"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT)
        else "send the output to a terminal or a file you can write"
    )
    return StdoutError(f"could not write to standard output ({exc.strerror or exc}); {advice}")


def check_stdout() -> None:
    """Refuse to start with standard output closed (the results could not be shown).

    Raises:
        StdoutError: standard output is closed.
    """
    if sys.stdout is None:
        raise _stdout_failed(None)


def say(text: str) -> None:
    """Print ``text`` escaped (see ``lenetish._text.printable``) as one line, now.

    If the reader has gone away (``| head``), all further output is dropped.

    Raises:
        StdoutError: standard output is closed or cannot be written (e.g. ``/dev/full``).
    """
    stream = sys.stdout
    if stream is None:
        raise _stdout_failed(None)
    try:
        print(printable(text), file=stream, flush=True)
    except BrokenPipeError:
        silence_stdout()
    except OSError as exc:
        raise _stdout_failed(exc) from exc
    except ValueError as exc:  # "I/O operation on closed file"
        raise _stdout_failed(None) from exc


def warn(text: str) -> None:
    """Print ``lenetish: `` and ``text``, escaped, as one line on stderr (never raising)."""
    if sys.stderr is None:
        return
    with contextlib.suppress(OSError, ValueError):
        print(f"lenetish: {printable(text)}", file=sys.stderr, flush=True)


def flush_stdout() -> None:
    """Flush stdout; if the reader has gone away, drop all further output.

    Raises:
        StdoutError: standard output cannot be written (e.g. ``/dev/full``).
    """
    if sys.stdout is None:
        return
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
    except OSError as exc:
        raise _stdout_failed(exc) from exc


def silence_stdout() -> None:
    """Point stdout at /dev/null so flushing it at exit cannot raise again."""
    if sys.stdout is None:
        return  # closed from the start: Python prints nothing and flushes nothing
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass  # stdout is not a real file (e.g. captured by a test): nothing to flush


def check_output_file(name: str, option: str) -> None:
    """Refuse an output file path that cannot be written, before any work is done.

    A symbolic link, a device, a FIFO or a folder at the path is refused, and so is a name
    with more bytes than the file system allows (the writer would refuse them too, after the
    work).
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
    too_long = name_length_problem(path)
    if too_long is not None:
        raise InvalidArgumentError(f"{option} {path} cannot be written: {too_long}")
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
