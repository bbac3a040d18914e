"""Where in a refused checkpoint the objects ``torch.load(weights_only=True)`` refuses sit.

When loading a checkpoint is refused, torch names a global but not where it is, so a user
cannot tell which callback's state holds it. :func:`scan` runs the file's pickle on inert
stand-ins (:mod:`lenetish._inert_pickle`: nothing imported, run or hashed) and reports each
stand-in of a global that torch refuses with its path in the loaded structure.

The file may be hostile, so every cost is bounded whatever its bytes: the pickle part is read
only up to :data:`MAX_PICKLE_BYTES`; opcodes read and references followed together spend at
most :data:`MAX_STEPS` steps; the walk of the loaded structure visits each object once (a
structure shared a million ways, or holding itself, costs its size, not its number of paths)
and goes no deeper than :data:`MAX_DEPTH`. A file over a budget, or anything unexpected, gives
no places and never an error: the caller keeps its general message.
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lenetish._inert_pickle import MAX_GLOBALS, MAX_STEPS, Budget, GiveUp, Interpreter, Pairs, Stub
from lenetish._text import printable

__all__ = [
    "MAX_DEPTH",
    "MAX_GLOBALS",
    "MAX_PICKLE_BYTES",
    "MAX_PLACES",
    "MAX_STEPS",
    "Scan",
    "describe_global",
    "is_raw_pickle",
    "refused_callbacks_message",
    "refused_places",
    "scan",
]

MAX_PICKLE_BYTES = 4 * 1024 * 1024
"""The largest pickle part read (tensors' bytes are stored apart): a checkpoint's is some KB."""

MAX_DEPTH = 100
"""How deep the walk goes into the loaded structure; a checkpoint nests about 10 deep."""

MAX_PLACES = 64
"""How many places a scan keeps (a message shows four and counts the rest)."""

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


Place = tuple[Any, ...]  # the keys and indexes from the top of the loaded structure


@dataclass(frozen=True)
class Scan:
    """What one scan of a file found, and what it cost.

    Attributes:
        places: ``(place, global)`` of the refused objects, in the file's order, at most
            :data:`MAX_PLACES`; empty when the scan gave up.
        found: how many refused objects the walk met (each object once).
        steps: opcodes read plus references followed, never more than :data:`MAX_STEPS`.
        gave_up: why the scan stopped early, or ``None`` when it read the whole file.
    """

    places: list[tuple[Place, str]]
    found: int
    steps: int
    gave_up: str | None


def _pickle_bytes(source: Path) -> bytes:
    """The pickle part of a ``torch.save`` zip file, at most :data:`MAX_PICKLE_BYTES`."""
    if not zipfile.is_zipfile(source):
        raise GiveUp("not a torch.save zip file")
    with zipfile.ZipFile(source) as archive:
        for info in archive.infolist():
            if info.filename.endswith("/data.pkl") and info.filename.count("/") == 1:
                if info.file_size > MAX_PICKLE_BYTES:
                    raise GiveUp(f"its pickle is over {MAX_PICKLE_BYTES} bytes")
                with archive.open(info) as member:  # a header may lie about the size
                    data = member.read(MAX_PICKLE_BYTES + 1)
                if len(data) > MAX_PICKLE_BYTES:
                    raise GiveUp(f"its pickle is over {MAX_PICKLE_BYTES} bytes")
                return data
    raise GiveUp("no data.pkl in the zip file")


def _refused_globals(named: set[tuple[str, str]]) -> set[str]:
    """Which of the globals ``named`` torch refuses, asked of torch itself.

    Torch's own list is read from a pickle of these names alone, so torch scans only them,
    never the file again.
    """
    unsafe = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if unsafe is None:
        raise GiveUp("this torch cannot list the globals it refuses")
    readable = {pair for pair in named if not any("\n" in part for part in pair)}
    lines = b"".join(b"c%s\n%s\n" % (m.encode(), n.encode()) for m, n in sorted(readable))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as writer:
        writer.writestr("archive/data.pkl", b"\x80\x02" + lines + b"N.")
        writer.writestr("archive/version", "3\n")
    archive.seek(0)
    refused = {f"{module}.{name}" for module, name in named - readable}  # no such global
    return refused | set(unsafe(archive))


def _walk(loaded: Any, refused: set[str], budget: Budget) -> tuple[list[tuple[Place, str]], int]:
    """The places of refused stand-ins in ``loaded`` (not inside one another), and their count.

    Each object is visited once, and the structure entered :data:`MAX_DEPTH` deep.
    """
    places: list[tuple[Place, str]] = []
    found = 0
    seen: set[int] = set()  # ids: loaded keeps every object alive while the walk runs
    todo: list[tuple[Any, tuple[Any, ...], int]] = [(loaded, (), 0)]  # (value, link, depth)
    while todo:
        value, link, depth = todo.pop()
        if isinstance(value, Stub) and value.name in refused:
            if id(value) not in seen:
                seen.add(id(value))
                found += 1
                if len(places) < MAX_PLACES:
                    places.append((_place(link), value.name))
            continue
        if not isinstance(value, (Stub, list, tuple)) or id(value) in seen or depth >= MAX_DEPTH:
            continue
        seen.add(id(value))
        children = _children(value, link)
        budget.spend(len(children))
        todo.extend((child, where, depth + 1) for child, where in reversed(children))
    return places, found


def _children(value: Stub | list[Any] | tuple[Any, ...], link: tuple[Any, ...]) -> list[Any]:
    """``(child, link)`` of each child of a container, a link being ``(key, parent's link)``."""
    if isinstance(value, Pairs):
        return [pair for key, item in value for pair in ((key, link), (item, (key, link)))]
    if isinstance(value, Stub):  # its arguments and state: the same place for the user
        return [
            pair
            for part in value.parts
            for pair in (
                [(item, (key, link)) for key, item in part]
                if isinstance(part, Pairs)
                else [(part, link)]
            )
        ]
    return [(item, (index, link)) for index, item in enumerate(value)]


def _place(link: tuple[Any, ...]) -> Place:
    """The keys from the top of the structure down to a link."""
    keys = []
    while link:
        key, link = link
        keys.append(key)
    return tuple(reversed(keys))


def scan(source: Path) -> Scan:
    """Find where the objects torch refuses sit in the checkpoint ``source``, running nothing.

    Returns:
        The :class:`Scan`: its places are empty when the file is not a ``torch.save`` zip,
        this torch cannot list refused globals, the file is over a budget, or it is damaged.
    """
    budget = Budget()
    try:
        interpreter = Interpreter(_pickle_bytes(source), budget)
        loaded = interpreter.run()
        places, found = _walk(loaded, _refused_globals(interpreter.globals), budget)
    except GiveUp as exc:
        return Scan([], 0, budget.steps, str(exc))
    except Exception as exc:  # a damaged zip file, and anything unforeseen: no places
        return Scan([], 0, budget.steps, f"{type(exc).__name__}: {exc}")
    return Scan(places, found, budget.steps, None)


def refused_places(source: Path) -> list[tuple[Place, str]]:
    """``(place, global)`` of the refused objects in ``source`` (see :func:`scan`).

    Example places: ``(("callbacks", "my.Tracker", "best"), "numpy._core.multiarray.scalar")``.
    """
    return scan(source).places


def is_raw_pickle(source: Path) -> bool:
    """Whether ``source`` starts with one whole pickle stream (opcodes read, nothing run).

    Only the first :data:`MAX_PICKLE_BYTES` and :data:`MAX_STEPS` opcodes are read: a file
    whose every opcode read so far is valid counts as a pickle.
    """
    try:
        with source.open("rb") as stream:
            head = stream.read(MAX_PICKLE_BYTES + 1)
    except OSError:
        return False
    if head[:4] == b"PK\x03\x04":
        return False  # torch's zip format: its refusals name a global
    steps = 0
    try:
        for opcode, _, _ in pickletools.genops(head):
            steps += 1
            if opcode.name == "STOP" or steps >= MAX_STEPS:
                return True
    except Exception:  # not a pickle: genops raises ValueError and others on other bytes
        return len(head) > MAX_PICKLE_BYTES  # or cut short here, everything before valid
    return False


def _shown(key: Any) -> str:
    """A key of a place as a message shows it: short, on one line, never a huge ``repr``."""
    if isinstance(key, (str, bytes)):
        text = repr(key[:60]) + ("..." if len(key) > 60 else "")
    elif key is None or isinstance(key, (bool, float)):
        text = repr(key)
    elif isinstance(key, int):
        text = repr(key) if key.bit_length() <= 64 else "<a large int>"
    else:
        text = f"<a {type(key).__name__.strip('_').lower()}>"
    return printable(text)


def refused_callbacks_message(what: str, source: Path) -> str | None:
    """The refusal of a checkpoint naming the callbacks whose state torch refuses, or ``None``.

    ``None`` when no refused object sits in a callback's state, or the scan gave up (the
    caller then gives its general message).
    """
    found = scan(source)
    places = [
        (_shown(place[1]), "".join(f"[{_shown(key)}]" for key in place[2:10]), place, name)
        for place, name in found.places
        if len(place) >= 2 and isinstance(place[0], str) and place[0] == "callbacks"
    ]
    if not places:
        return None
    by_callback: dict[str, list[str]] = {}
    for key, where, place, name in places[:4]:
        where += "[...]" if len(place) > 10 else ""
        by_callback.setdefault(key, []).append(f"{describe_global(name)} at state{where}")
    named = "; ".join(
        f"the state of callback {key} holds {', '.join(held)}" for key, held in by_callback.items()
    )
    at_least = "at least " if found.found > len(found.places) else ""
    more = f" (and {at_least}{len(places) - 4} more)" if len(places) > 4 else ""
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
