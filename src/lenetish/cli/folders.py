"""The ``--out`` folder of ``lenetish train``: created, locked against a second run, and checked."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from lenetish._atomic import unsafe_kind
from lenetish.cli.output import UsageError
from lenetish.errors import InvalidArgumentError, LenetishError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "RUN_FILES", "FolderBusyError", "check_run_folder", "run_folder"]

#: What makes a folder "hold a run": ``train --out`` refuses it without --resume/--overwrite.
RUN_FILES = ("last.pt", "best.pt", "model.safetensors", "history.json", "history.csv")
LOCK_NAME = ".lenetish.lock"


class FolderBusyError(LenetishError, RuntimeError):
    """Another live process holds the lock of the ``--out`` folder."""


def _make_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InvalidArgumentError(
            f"--out {out} is a file, but a folder is needed there; give the name of a folder "
            "(it is created if missing)"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidArgumentError(
            f"--out folder {out} cannot be created ({exc.strerror or exc}); pick a folder you "
            "can write to"
        ) from exc


@contextlib.contextmanager
def run_folder(out: Path, *, locks: bool) -> Iterator[None]:
    """Create ``out`` if needed and, when ``locks``, hold its lock file meanwhile.

    The lock file records the holder's pid. A lock left by a process that has died (an
    advisory ``flock``, released by the kernel when its holder ends) is taken over. The lock
    file is opened itself, never through a symbolic link; a link, a device, a FIFO or a folder
    in its place is refused. At the end it is removed only if it is still this run's file.
    """
    _make_folder(out)
    if not locks or fcntl is None:  # Windows has no flock; the folder is not locked there
        yield
        return
    lock = out / LOCK_NAME
    handle = _take_lock(lock)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            if os.lstat(lock).st_ino == os.fstat(handle.fileno()).st_ino:
                lock.unlink()  # not another run's lock, made after ours was deleted
        handle.close()


def _refuse_lock(lock: Path, kind: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"--out folder {lock.parent} has {kind} where its lock file {lock} goes; lenetish "
        "locks only a regular file and never writes through a link: remove "
        f"{lock} and run again"
    )


def _open_lock(lock: Path) -> io.TextIOWrapper:
    """Open (or create) the lock file itself, never following a link or opening a device."""
    kind = unsafe_kind(lock)
    if kind is not None:  # refused before opening: opening a device can have effects
        raise _refuse_lock(lock, kind)
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        descriptor = os.open(lock, flags, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link appeared since the check above
            raise _refuse_lock(lock, "a symbolic link") from exc
        raise InvalidArgumentError(
            f"--out folder {lock.parent} is not writable ({exc.strerror or exc}); pick a "
            "folder you can write to"
        ) from exc
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise _refuse_lock(lock, "something other than a regular file")
    return open(descriptor, "r+")  # held open until the run ends


def _take_lock(lock: Path) -> io.TextIOWrapper:
    assert fcntl is not None
    while True:
        handle = _open_lock(lock)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read(64).strip() or "unknown"
            handle.close()
            raise FolderBusyError(
                f"--out folder {lock.parent} is in use by another lenetish process (pid "
                f"{owner}), which holds its lock file {lock}; wait for that run to end, or "
                "pick another --out folder"
            ) from None
        try:
            same = os.lstat(lock).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:  # else the holder removed the file as we opened it: try again
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            return handle
        handle.close()


def check_run_folder(out: Path, *, resume: str | None, overwrite: bool, delete: bool) -> None:
    """Refuse an ``--out`` folder holding a run, unless resuming; with --overwrite, empty it.

    A symbolic link, a device, a FIFO or a folder where one of the run's files goes is refused
    first, before any training: the writer would refuse it at the end of the first epoch.
    """
    for name in RUN_FILES:
        kind = unsafe_kind(out / name)
        if kind is not None:
            raise InvalidArgumentError(
                f"--out folder {out} has {kind} at {out / name}; lenetish writes its files "
                "only as regular files, never through a link or over a device, a FIFO or a "
                f"folder: remove {out / name}, or pick another --out folder"
            )
    present = [name for name in RUN_FILES if (out / name).exists()]
    if not present or resume is not None:
        return
    if not overwrite:
        continue_it = (
            f"continue it with --resume {out / 'last.pt'}, " if "last.pt" in present else ""
        )
        raise UsageError(
            f"--out folder {out} already holds a run ({', '.join(present)}); {continue_it}"
            "start afresh with --overwrite (deletes those files), or pick another --out folder"
        )
    if delete:
        for name in present:
            (out / name).unlink()
