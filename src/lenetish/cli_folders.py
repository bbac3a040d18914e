"""The ``--out`` folder of ``lenetish train``: created, locked against a second run, and checked."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

from lenetish.cli_output import UsageError
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
    advisory ``flock``, released by the kernel when its holder ends) is taken over.
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
            lock.unlink()
        handle.close()


def _take_lock(lock: Path) -> io.TextIOWrapper:
    assert fcntl is not None
    while True:
        try:
            handle = open(lock, "a+")  # noqa: SIM115 (held open until the run ends)
        except OSError as exc:
            raise InvalidArgumentError(
                f"--out folder {lock.parent} is not writable ({exc.strerror or exc}); pick a "
                "folder you can write to"
            ) from exc
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise FolderBusyError(
                f"--out folder {lock.parent} is in use by another lenetish process (pid "
                f"{owner}), which holds its lock file {lock}; wait for that run to end, or "
                "pick another --out folder"
            ) from None
        try:
            same = os.stat(lock).st_ino == os.fstat(handle.fileno()).st_ino
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
    """Refuse an ``--out`` folder holding a run, unless resuming; with --overwrite, empty it."""
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
