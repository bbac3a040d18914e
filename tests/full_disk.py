"""Test helper: a disk that fills up while a file is written, where torch's writer sees it."""

from __future__ import annotations

import errno
import io
import os
from typing import Any

import pytest

import lenetish._atomic


class FullDiskFile(io.FileIO):
    """A real file that accepts ``room`` bytes, then fails every write with ENOSPC."""

    def __init__(self, name: Any, mode: str, room: int) -> None:
        super().__init__(name, mode)
        self.room = room

    def write(self, data: Any) -> int:
        """Write what still fits, then raise ``OSError(ENOSPC)`` as a full disk does."""
        size = memoryview(data).nbytes
        if size > self.room:
            if self.room:
                super().write(memoryview(data).cast("B")[: self.room])
                self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= size
        return super().write(data)


def _written_name(name: Any) -> str:
    """The file name of what the writer opens: a path, or (Linux) an open descriptor's file."""
    if isinstance(name, int):
        return os.path.basename(os.readlink(f"/proc/self/fd/{name}"))
    return os.path.basename(os.fspath(name))


def fill_disk_after(monkeypatch: pytest.MonkeyPatch, room: int, *, only: str = "") -> None:
    """Make the files lenetish writes atomically run out of space after ``room`` bytes.

    With ``only``, just the files whose (temporary) name contains it fill up, e.g. ``"history"``.
    """

    def full_open(name: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        writes = "b" in mode and any(flag in mode for flag in "wxa")
        if writes and (not only or only in _written_name(name)):
            return FullDiskFile(name, mode.replace("b", ""), room)
        return open(name, mode, *args, **kwargs)

    monkeypatch.setattr(lenetish._atomic, "open", full_open, raising=False)
