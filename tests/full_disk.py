"""Test helper: a disk that fills up while a file is written, where torch's writer sees it."""

from __future__ import annotations

import errno
import io
from typing import Any

import pytest

import lenetish.checkpoint


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


def fill_disk_after(monkeypatch: pytest.MonkeyPatch, room: int) -> None:
    """Make the files lenetish writes atomically run out of space after ``room`` bytes."""

    def full_open(name: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "b" in mode and any(flag in mode for flag in "wxa"):
            return FullDiskFile(name, mode.replace("b", ""), room)
        return open(name, mode, *args, **kwargs)

    monkeypatch.setattr(lenetish.checkpoint, "open", full_open, raising=False)
