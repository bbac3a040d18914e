"""Where in a refused checkpoint the objects ``torch.load(weights_only=True)`` refuses sit.

When loading a checkpoint is refused, torch names a global but not where it is, so a user
cannot tell which callback's state holds it. :func:`refused_places` reads the file's pickle
with an unpickler whose every global is an inert stand-in (:class:`_Stub`): nothing is
imported and no code from the file runs (the restricted ``find_class`` that Python's pickle
documentation describes). Each stand-in of a global that torch refuses is reported with its
path in the loaded structure. Anything unexpected gives no places, never an error.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

__all__ = ["describe_global", "refused_callbacks_message", "refused_places"]

_MAX_PICKLE_BYTES = 64 * 1024 * 1024  # the pickle part only; tensors' bytes are not read

# What the common refused globals are, in the words of the user who saved them.
_NAMES = {
    "numpy.core.multiarray.scalar": "a NumPy scalar (np.float64, what np.mean returns...)",
    "numpy._core.multiarray.scalar": "a NumPy scalar (np.float64, what np.mean returns...)",
    "numpy.core.multiarray._reconstruct": "a NumPy array",
    "numpy._core.multiarray._reconstruct": "a NumPy array",
    "collections.deque": "a collections.deque",
}


def describe_global(name: str) -> str:
    """A refused global as its user knows it (``'a NumPy array'``), else what built it."""
    return _NAMES.get(name, f"an object built by {name}")


class _Stub:
    """Stands for an object a global would build; it records its arguments and runs nothing."""

    name = ""

    parts: list[Any]  # the arguments, then any state, items or elements set on it

    def __new__(cls, *args: Any, **kwargs: Any) -> _Stub:
        stub = super().__new__(cls)
        stub.parts = [args, kwargs]
        return stub

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.parts.append(state)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.parts.append({key: value})

    def append(self, item: Any) -> None:
        self.parts.append(item)

    def extend(self, items: Any) -> None:
        self.parts.append(list(items))


class _InertUnpickler(pickle.Unpickler):
    """An unpickler whose globals are :class:`_Stub` types and whose storages are stubs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._types: dict[str, type[_Stub]] = {}

    def find_class(self, module: str, name: str) -> type[_Stub]:
        qualified = f"{module}.{name}"
        if qualified not in self._types:
            self._types[qualified] = type("_Stub", (_Stub,), {"name": qualified})
        return self._types[qualified]

    def persistent_load(self, pid: Any) -> _Stub:
        return _Stub()  # a tensor's storage: not read


def _pickle_bytes(source: Path) -> bytes | None:
    """The pickle part of a ``torch.save`` zip file, or ``None`` for anything else."""
    if not zipfile.is_zipfile(source):
        return None
    with zipfile.ZipFile(source) as archive:
        for info in archive.infolist():
            if info.filename.endswith("/data.pkl") and info.filename.count("/") == 1:
                if info.file_size > _MAX_PICKLE_BYTES:
                    return None
                return archive.read(info)
    return None


Place = tuple[Any, ...]  # the keys and indexes from the top of the loaded structure


def _walk(value: Any, place: Place, refused: set[str], open_ids: set[int]) -> Iterator[Any]:
    """``(place, global)`` of each refused stand-in within ``value`` (not inside one another)."""
    if isinstance(value, _Stub) and value.name in refused:
        yield place, value.name
        return
    if not isinstance(value, (_Stub, dict, list, tuple, set)) or id(value) in open_ids:
        return
    open_ids.add(id(value))
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(key, place, refused, open_ids)
            yield from _walk(item, (*place, key), refused, open_ids)
    elif isinstance(value, _Stub):  # its arguments and state: the same place for the user
        for part in value.parts:
            if isinstance(part, dict):
                for key, item in part.items():
                    yield from _walk(item, (*place, key), refused, open_ids)
            else:
                yield from _walk(part, place, refused, open_ids)
    else:
        for index, item in enumerate(value):
            yield from _walk(item, (*place, index), refused, open_ids)
    open_ids.discard(id(value))


def refused_places(source: Path) -> list[tuple[Place, str]]:
    """Where the objects torch refuses sit in the checkpoint ``source``, read without running it.

    Returns:
        ``(place, global)`` pairs, e.g. ``(("callbacks", "my.Tracker", "best"),
        "numpy._core.multiarray.scalar")``; empty when the file is not a ``torch.save`` zip,
        this torch cannot list refused globals, or the scan fails.
    """
    unsafe = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    try:
        data = _pickle_bytes(source)
        if data is None or unsafe is None:
            return []
        refused = set(unsafe(source))
        loaded = _InertUnpickler(io.BytesIO(data)).load()
        return list(_walk(loaded, (), refused, set()))
    except Exception:  # a damaged or strange file: the caller keeps its general message
        return []


def refused_callbacks_message(what: str, source: Path) -> str | None:
    """The refusal of a checkpoint naming the callbacks whose state torch refuses, or ``None``.

    ``None`` when no refused object sits in a callback's state (the caller then gives its
    general message).
    """
    places = [
        (place[1], "".join(f"[{key!r}]" for key in place[2:]), name)
        for place, name in refused_places(source)
        if len(place) >= 2 and place[0] == "callbacks"
    ]
    if not places:
        return None
    by_callback: dict[Any, list[str]] = {}
    for key, where, name in places[:4]:
        by_callback.setdefault(key, []).append(f"{describe_global(name)} at state{where}")
    named = "; ".join(
        f"the state of callback {key!r} holds {', '.join(found)}"
        for key, found in by_callback.items()
    )
    more = f" (and {len(places) - 4} more)" if len(places) > 4 else ""
    return (
        f"{what} {source} was refused: {named}{more}, which torch.load(weights_only=True) does "
        "not load (objects other than tensors and plain containers could run code when "
        "loaded), so lenetish does not open the file. It cannot be resumed as it is. Fix the "
        "callback's state_dict() (lenetish now converts NumPy scalars and arrays as it saves, "
        "and refuses other objects right there, naming the callback) and start a new run; or, "
        "only if you trust the file, load it once with torch.load(path, weights_only=False), "
        "replace those values in checkpoint['callbacks'] by Python numbers, lists or tensors "
        "(float(x), torch.from_numpy(a), list(d)), and torch.save it again"
    )
