"""The one writer of every file lenetish makes: atomic, link-safe, and owner-locked temporaries.

:func:`atomic_write` writes to a temporary file beside the target, flushes it to disk, then
renames it over the target, so a crash or a full disk leaves the old file or the new one, never
half of one. It refuses a target that is a symbolic link (it never writes through one) or
anything but a regular file (a device, a FIFO, a folder: it never replaces one).

While it writes, the writer holds an exclusive ``flock`` on its temporary file. The kernel
drops that lock when the writer ends, however it ends (SIGKILL included), and every process
sharing the file sees it, whatever its host or PID namespace. So
:func:`remove_stale_temporaries` deletes a temporary only when it can take the lock itself:
proof that its writer has ended, where a process id proves nothing (another container on the
same volume has its own ids). It deletes only what it can tell is a lenetish temporary: a
regular file of this user, with one link, named ``.<target>.lenetish-<16 hex digits>.tmp``; a
name alone (``.settings.json.4242.tmp``, which earlier versions' temporaries looked like) is
never enough. Torch-free, so every module may write through it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import re
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO

from lenetish.errors import CheckpointError, LenetishError

try:
    import fcntl
except ImportError:  # Windows: no flock, so no temporary is ever taken for abandoned
    fcntl = None  # type: ignore[assignment]

_LOCKS = fcntl is not None

__all__ = [
    "atomic_write",
    "name_length_problem",
    "name_max",
    "refuse_unsafe",
    "remove_stale_temporaries",
    "unsafe_kind",
]

_NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOSE_ON_EXEC = getattr(os, "O_CLOEXEC", 0)
_NON_BLOCKING = getattr(os, "O_NONBLOCK", 0)

_TEMPORARY_NAME = re.compile(r"^\.(?P<target>.+)\.lenetish-(?P<token>[0-9a-f]{16})\.tmp$")
"""Temporary files :func:`atomic_write` makes: ``.<target>.lenetish-<16 hex digits>.tmp``.

The names of earlier versions' temporaries (``.<target>.<pid>[.<8 hex digits>].tmp``) are not
matched: their writers held no lock, so nothing could tell one from a user's file named alike,
and a user's ``.settings.json.4242.tmp`` was deleted as one. What they left stays.
"""

_DEFAULT_NAME_MAX = 255  # ext4, XFS, btrfs, APFS: bytes; NTFS: UTF-16 units (see _name_size)

_WRITING: set[tuple[int, int]] = set()
"""The (device, inode) of this process's temporaries being written: never cleaned, even where
``flock`` is emulated with POSIX locks (NFS), which do not conflict within one process."""


def unsafe_kind(path: str | os.PathLike[str]) -> str | None:
    """What is at ``path`` when it is something lenetish must not write over, else ``None``.

    Args:
        path: the file about to be written.

    Returns:
        ``None`` when nothing is there or a regular file is; otherwise a description such as
        ``"a symbolic link (to /etc/passwd)"``, ``"a device"``, ``"a FIFO (named pipe)"`` or
        ``"a folder"``. The last part of ``path`` is looked at itself, never followed.

    Example:
        >>> import tempfile
        >>> unsafe_kind(tempfile.mkdtemp()), unsafe_kind("/dev/null")
        ('a folder', 'a device')
    """
    try:
        mode = os.lstat(path).st_mode
    except OSError:  # missing (or its folder is): creating it is checked when it happens
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        try:
            return f"a symbolic link (to {os.readlink(path)})"
        except OSError:
            return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def refuse_unsafe(path: str | os.PathLike[str], error: type[LenetishError]) -> None:
    """Raise ``error`` when ``path`` is a symbolic link or anything but a regular file.

    Args:
        path: the file about to be written (missing is fine).
        error: the exception type to raise.

    Raises:
        LenetishError: (of type ``error``) what is at ``path`` and what to do.
    """
    kind = unsafe_kind(path)
    if kind is not None:
        raise error(
            f"refused to write {path}: it is {kind}; lenetish replaces only regular files, "
            "and never writes through a link or over a device, a FIFO or a folder: remove it, "
            "or pick another path"
        )


def _identity(info: os.stat_result) -> tuple[int, int]:
    """A file's (device, inode): the same however its path is spelled."""
    return info.st_dev, info.st_ino


def _same_file(path: str | os.PathLike[str], descriptor: int) -> bool:
    """Whether ``path`` still names the file open as ``descriptor`` (not removed, not replaced)."""
    try:
        return _identity(os.lstat(path)) == _identity(os.fstat(descriptor))
    except OSError:
        return False


def _remove_if_abandoned(path: str) -> bool:
    """Delete the temporary ``path`` if its writer provably ended; whether it was deleted.

    Proof is taking the exclusive ``flock`` its writer holds while writing. The file must also
    be what :func:`_create_temporary` makes: a regular file of this user with a single link
    (another user's file, or a second name of a file kept elsewhere, is never a temporary of
    this user's writes). Anything uncertain (no permission, no locks on this filesystem) keeps
    it.
    """
    if not _LOCKS:
        return False
    try:
        descriptor = os.open(path, os.O_RDWR | _NO_FOLLOW | _NON_BLOCKING | _CLOSE_ON_EXEC)
    except OSError:  # removed meanwhile, not ours to open, or a link: leave it
        return False
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            return False
        if info.st_uid != os.geteuid():  # root included: it never deletes another user's file
            return False
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if not _same_file(path, descriptor):
            return False
        os.unlink(path)
        return True
    except OSError:  # BlockingIOError: its writer holds it; or this filesystem has no locks
        return False
    finally:
        os.close(descriptor)  # also releases the lock taken above


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that writers which ended (e.g. by SIGKILL) left in ``folder``.

    Only regular files of this user named the way :func:`atomic_write` names them
    (``.<target>.lenetish-<16 hex digits>.tmp``) are considered, and one is removed only when
    this process can take the ``flock`` its writer holds while writing: the writer has ended,
    on this machine or any other sharing the folder. A process id is never taken as proof, so
    the file of a writer in another container or PID namespace is never touched, and a name
    alone never is either: files named like earlier versions' temporaries (whose writers held
    no lock) are left alone. Called by every :func:`atomic_write`, so an orphan disappears at
    the next write there.

    Args:
        folder: the folder to clean.

    Returns:
        The files removed.

    Example:
        >>> import tempfile
        >>> remove_stale_temporaries(tempfile.mkdtemp())
        []
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY_NAME.match(entry.name)
        if match is None or not entry.is_file(follow_symlinks=False):
            continue
        with contextlib.suppress(OSError):
            if _identity(entry.stat(follow_symlinks=False)) in _WRITING:
                continue  # this process is writing it
        if _remove_if_abandoned(entry.path):
            removed.append(Path(entry.path))
    return removed


def name_max(folder: str | os.PathLike[str]) -> int:
    """The most bytes one file name may have in ``folder`` (or its nearest existing parent).

    Asks the file system (``pathconf``'s ``PC_NAME_MAX``) where it can; else 255, the limit
    of the common file systems.

    Example:
        >>> import tempfile
        >>> name_max(tempfile.mkdtemp()) >= 14  # POSIX's least
        True
    """
    place = Path(folder).absolute()
    while not place.exists() and place != place.parent:
        place = place.parent  # a folder still to be created gets its parent's file system
    try:
        limit = os.pathconf(place, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):  # no pathconf (Windows), or not answered
        return _DEFAULT_NAME_MAX
    return limit if limit > 0 else _DEFAULT_NAME_MAX  # -1: no limit known


def _name_size(name: str) -> int:
    """How much of the file system's name limit ``name`` takes.

    Bytes as stored (``os.fsencode``: UTF-8 on Linux and macOS, so ``é`` counts twice); on
    Windows, whose limit counts UTF-16 units, those.
    """
    if os.name == "nt":
        return len(name.encode("utf-16-le", "surrogatepass")) // 2
    return len(os.fsencode(name))


def name_length_problem(path: str | os.PathLike[str]) -> str | None:
    """Why the last part of ``path`` cannot be a file name there (too many bytes), or ``None``.

    The limit is on the name's bytes as the file system stores them (``os.fsencode``: UTF-8
    on Linux, so ``é`` counts twice), not on its characters (see :func:`name_max`).

    Example:
        >>> import tempfile
        >>> name_length_problem(f"{tempfile.mkdtemp()}/{'é' * 120}.png") is None  # 244 bytes
        True
    """
    target = Path(path)
    size, limit = _name_size(target.name), name_max(target.parent)
    if size <= limit:
        return None
    return (
        f"its name is {size} bytes long (encoded), more than the {limit} a file name may "
        "have on this file system; pick a shorter name"
    )


def _temporary_name(target: str, limit: int) -> str:
    """``.<target>.lenetish-<16 hex>.tmp`` within ``limit`` bytes, ``target`` cut if needed.

    The target's part is cut by characters, never inside one (UTF-8 takes up to four bytes
    each), so that a legal target whose temporary would be too long is still written; the
    cut name still matches :data:`_TEMPORARY_NAME`, so its orphan can be cleaned.
    """
    rest = f".lenetish-{secrets.token_hex(8)}.tmp"
    room = limit - _name_size("." + rest)
    kept = target
    while len(kept) > 1 and _name_size(kept) > room:
        kept = kept[: max(1, min(len(kept) - 1, room))]  # at most one byte per character
    return f".{kept}{rest}"


def _create_temporary(target: Path) -> tuple[IO[bytes], Path]:
    """A new temporary file beside ``target``, open for writing and locked by this process."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NO_FOLLOW | _CLOSE_ON_EXEC
    limit = name_max(target.parent)
    while True:
        temporary = target.with_name(_temporary_name(target.name, limit))
        descriptor = os.open(temporary, flags, 0o666)
        try:
            if _LOCKS:
                with contextlib.suppress(OSError):  # a filesystem without locks: none is held
                    fcntl.flock(descriptor, fcntl.LOCK_EX)  # waits only while a cleaner looks
                if not _same_file(temporary, descriptor):
                    os.close(descriptor)  # a cleaner took it before it was locked: again
                    continue
            return open(descriptor, "wb"), temporary  # the caller closes it
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(descriptor)
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise


def _sync_folder(folder: Path) -> None:
    """Flush ``folder``'s entries to disk so the rename survives a power cut (best effort)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY | _CLOSE_ON_EXEC)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _failure_message(target: Path, exc: BaseException) -> str:
    """Say why writing ``target`` failed; torch wraps the OSError of a full disk."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    kept = "any earlier file there is left as it was"
    if isinstance(cause, OSError):
        advice = "; free some space and try again" if cause.errno == errno.ENOSPC else ""
        return f"could not write {target}: {cause}; {kept}{advice}"
    if isinstance(exc, (pickle.PicklingError, TypeError, AttributeError)):
        return (
            f"could not write {target}: the object cannot be serialised "
            f"({type(exc).__name__}: {exc}); a checkpoint may hold only tensors, numbers, "
            f"strings and lists/tuples/dicts of them; {kept}"
        )
    return f"could not write {target} ({type(exc).__name__}: {exc}); {kept}".replace("\n", " ")


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[IO[bytes]], object],
    *,
    error: type[LenetishError] = CheckpointError,
) -> None:
    """Call ``write`` on a locked temporary file beside ``path``, sync it, rename it to ``path``.

    Whatever happens (a full disk, an object that cannot be serialised, Ctrl-C), the temporary
    file is removed and ``path`` keeps its earlier contents. ``path`` must be missing or a
    regular file: a symbolic link is never written through, and a device, a FIFO or a folder
    is never replaced. Temporary files left by writers that ended are removed first
    (:func:`remove_stale_temporaries`).

    Args:
        path: the file to write.
        write: called with the open temporary file; it writes the whole contents.
        error: the exception type raised on failure (:class:`~lenetish.CheckpointError` for
            checkpoints, weights and exports; :class:`~lenetish.OutputFileError` for
            pictures and histories).

    Raises:
        CheckpointError: (or ``error``) ``path`` is a link or not a regular file, its name has
            more bytes than the file system allows (see :func:`name_max`), or the write failed
            (the message says why); ``path`` is untouched.

    Example:
        >>> import tempfile
        >>> target = f"{tempfile.mkdtemp()}/hello.bin"
        >>> atomic_write(target, lambda handle: handle.write(b"hello"))
        >>> open(target, "rb").read()
        b'hello'
    """
    target = Path(path)
    temporary: Path | None = None
    writing = (-1, -1)
    try:
        refuse_unsafe(target, error)
        too_long = name_length_problem(target)
        if too_long is not None:  # refused before anything is created or cleaned
            raise error(f"cannot write {target}: {too_long}")
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(target.parent)
        handle, temporary = _create_temporary(target)
        with handle:  # the lock is held until the file has its final name
            writing = _identity(os.fstat(handle.fileno()))
            _WRITING.add(writing)
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
            refuse_unsafe(target, error)  # again: something may have appeared meanwhile
            os.replace(temporary, target)
        _sync_folder(target.parent)
    except BaseException as exc:
        if temporary is not None:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
        if isinstance(exc, LenetishError) or not isinstance(exc, Exception):
            raise  # already named, or KeyboardInterrupt/SystemExit: let it through
        raise error(_failure_message(target, exc)) from exc
    finally:
        _WRITING.discard(writing)
