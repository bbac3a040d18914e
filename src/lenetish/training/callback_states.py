"""Callback states in a checkpoint: keyed by ``state_key``, checked loadable, put back.

Every callback's ``state_dict()`` is checked as it is saved, so that the checkpoint loads back
under ``torch.load(weights_only=True)`` (:func:`loadable_state`): NumPy scalars become Python
numbers and NumPy arrays tensors; any other object that loading would refuse (a
``collections.deque``, a ``frozenset``, a dataclass...) is refused at once with a
:class:`~lenetish.CheckpointError` naming the callback and where in its state the object sits.
States are matched to callbacks by :attr:`Callback.state_key <lenetish.Callback.state_key>`
(:func:`callbacks_by_key`), so the order of the callbacks may change between runs.
"""

from __future__ import annotations

import collections
import logging
import warnings
from collections.abc import Iterable
from typing import Any, NoReturn

import numpy as np
import torch
from torch import Tensor, nn

from lenetish._checks import is_overridden
from lenetish._text import printable
from lenetish.callbacks.base import Callback
from lenetish.errors import CheckpointError, InvalidArgumentError

__all__ = ["callbacks_by_key", "has_state", "loadable_state", "restore_callbacks"]

logger = logging.getLogger("lenetish")

# What torch.load(weights_only=True) gives back as it was saved (exact types: a subclass, such
# as a named tuple or an IntEnum, is pickled by its class name and refused).
_LEAVES = frozenset(
    {type(None), bool, int, float, complex, str, bytes, bytearray, torch.dtype, torch.device}
    | {torch.Size, Tensor, nn.Parameter}
)
_SEQUENCES = frozenset({list, tuple, set})
_MAPPINGS = frozenset({dict, collections.OrderedDict, collections.Counter})
_ALLOWED = (
    "tensors, None, bool, int, float, complex, str, bytes, torch.dtype, torch.device, "
    "torch.Size, and lists, tuples, sets and dicts (OrderedDict, Counter) of them"
)


def has_state(callback: Callback) -> bool:
    """Whether the callback's class saves a state (overrides ``state_dict``)."""
    return is_overridden(callback, "state_dict")


def callbacks_by_key(callbacks: Iterable[Callback]) -> dict[str, Callback]:
    """Map the ``state_key`` of each callback that saves a state to the callback.

    Raises:
        InvalidArgumentError: two such callbacks share a key (their states would be mixed up).
    """
    keyed: dict[str, Callback] = {}
    for callback in filter(has_state, callbacks):
        key = callback.state_key
        if key in keyed:
            raise InvalidArgumentError(
                f"two callbacks ({type(keyed[key]).__name__} and {type(callback).__name__}) "
                f"share the state_key {key!r}, so a checkpoint could not tell their states "
                "apart; give one of them a distinct key, e.g. callback.state_key = "
                f"{key + '-2'!r}"
            )
        keyed[key] = callback
    return keyed


def _legacy_keys(callbacks: Iterable[Callback]) -> dict[str, Callback]:
    """Keys of checkpoints from lenetish 0.1: the class name, ``#2``, ``#3`` for repeats."""
    seen: dict[str, int] = {}
    keyed: dict[str, Callback] = {}
    for callback in callbacks:  # every callback counted, as 0.1 did
        name = type(callback).__name__
        seen[name] = seen.get(name, 0) + 1
        keyed[name if seen[name] == 1 else f"{name}#{seen[name]}"] = callback
    return keyed


def loadable_state(
    callback: Callback, state: object, *, told: set[tuple[str, str]] | None = None
) -> Any:
    """``state`` (what ``callback.state_dict()`` returned) as it will load back from a file.

    ``torch.load(weights_only=True)``, which every lenetish checkpoint is read with, refuses
    any object but tensors, plain numbers, strings and plain containers. So NumPy scalars
    (``np.float64``, what ``np.mean`` returns) become the Python number of the same value and
    NumPy arrays become tensors of the same dtype and shape (logged once per place, since
    ``load_state_dict`` then gets a tensor back); the containers holding them are copied,
    ``state`` itself is never changed. Anything else that loading would refuse is refused
    now, before a checkpoint that could never be resumed is written. A ``collections.deque``
    is refused rather than saved as a list: a list given back would lose the ``maxlen`` and
    the deque's methods, and a moving window would silently stop moving.

    Args:
        callback: the callback whose state it is (named in the log and the error).
        state: what its ``state_dict()`` returned.
        told: ``(state_key, place)`` of the arrays already logged; each is logged once
            (default: every time).

    Returns:
        ``state``, or a copy of the containers that held NumPy values, converted.

    Raises:
        CheckpointError: ``state`` holds an object that would not load back, named with the
            callback's class and ``state_key``, where it sits and what is allowed.

    Example:
        >>> import numpy as np
        >>> from lenetish import Callback
        >>> loadable_state(Callback(), {"best": np.float64(0.25), "epochs": [np.int64(3)]})
        {'best': 0.25, 'epochs': [3]}
    """
    return _Converter(callback, set() if told is None else told).convert(state, "")


class _Converter:
    """Converts one callback's state (see :func:`loadable_state`)."""

    def __init__(self, callback: Callback, told: set[tuple[str, str]]) -> None:
        self.callback, self.told = callback, told
        self.open_ids: set[int] = set()  # the containers being converted: a cycle stops

    def convert(self, value: object, path: str) -> Any:
        """``value`` with NumPy scalars and arrays converted, or CheckpointError at ``path``."""
        kind: Any = type(value)  # rebuilds a changed container of the same type
        if kind in _LEAVES:
            return value
        if isinstance(value, (np.number, np.bool_, np.str_, np.bytes_)):
            return value.item()
        if isinstance(value, np.ndarray):
            return self._array(value, path)
        if id(value) in self.open_ids:  # a container inside itself: pickle keeps the cycle
            return value
        if kind in _SEQUENCES:
            assert isinstance(value, (list, tuple, set))
            self.open_ids.add(id(value))
            items = [
                self.convert(item, f"{path}[{index}]" if kind is not set else f"{path} (a set)")
                for index, item in enumerate(value)
            ]
            self.open_ids.discard(id(value))
            changed = any(new is not old for new, old in zip(items, value, strict=True))
            return kind(items) if changed else value
        if kind in _MAPPINGS:
            assert isinstance(value, dict)
            self.open_ids.add(id(value))
            pairs = [
                (self.convert(key, f"{path} (a key)"), self.convert(item, f"{path}[{key!r}]"))
                for key, item in value.items()
            ]
            self.open_ids.discard(id(value))
            changed = any(
                new_key is not key or new is not item
                for (new_key, new), (key, item) in zip(pairs, value.items(), strict=True)
            )
            return kind(dict(pairs)) if changed else value
        _refuse(value, path, self.callback, "")

    def _array(self, value: np.ndarray[Any, Any], path: str) -> Tensor:
        """The array as a tensor of its dtype and shape (logged once per place)."""
        try:  # a copy in native byte order that owns its memory
            tensor = torch.from_numpy(value.astype(value.dtype.newbyteorder("="), copy=True))
        except (TypeError, ValueError):
            detail = f" (of dtype {value.dtype}, which no tensor has)"
            _refuse(value, path, self.callback, detail)
        place = (self.callback.state_key, path)
        if place not in self.told:
            self.told.add(place)
            logger.warning(
                "%s (state_key %r): the NumPy array at state%s is saved as a tensor "
                "(torch.load(weights_only=True) loads no NumPy arrays), so load_state_dict() "
                "gets a tensor back there; np.asarray() it if you need an array",
                type(self.callback).__name__,
                self.callback.state_key,
                path,
            )
        return tensor


def _refuse(value: object, path: str, callback: Callback, detail: str) -> NoReturn:
    """Raise the CheckpointError for an object of a callback's state that would not load."""
    kind = type(value)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    fix = (
        "return list(...) from state_dict() and rebuild collections.deque(saved, maxlen=...) "
        "in load_state_dict()"
        if isinstance(value, collections.deque)
        else "convert it in state_dict() and back in load_state_dict()"
    )
    raise CheckpointError(
        f"callback {type(callback).__name__} (state_key {callback.state_key!r}) cannot be "
        f"saved so that it resumes: its state_dict() holds a {name} "
        f"{f'at state{path}' if path else 'as its whole state'}{detail}, which "
        f"torch.load(weights_only=True) refuses to load; a callback's state may hold only "
        f"{_ALLOWED} (NumPy scalars and arrays are converted for you): {fix}"
    )


def _kind(key: object) -> str | None:
    """The kind of callback a key like ``lenetish.ModelCheckpoint[folder=runs/a]`` names.

    Built-ins that may appear twice in one fit add their settings in brackets to their
    ``state_key``; a key without them (a user's own) has no kind here.
    """
    if not isinstance(key, str):  # a damaged checkpoint's key: matches nothing
        return None
    head, bracket, _ = key.partition("[")
    return head if bracket and key.endswith("]") and head else None


def _settings(key: str) -> str:
    """The bracketed settings of such a key: ``folder=runs/a``."""
    return key.partition("[")[2][:-1]


def restore_callbacks(callbacks: list[Callback], saved: dict[str, Any], source: str) -> None:
    """Give each callback the state saved under its key (or under its 0.1-style key).

    A callback the checkpoint has no state for starts fresh, with one log line at WARNING;
    where the checkpoint holds the state of a callback of the same kind with other settings
    (a ``ModelCheckpoint`` of another folder, when a run is resumed into a new one), that
    line says so and nothing more is reported. Any other saved state that no callback of
    this fit claims is named in a ``UserWarning``.
    """
    legacy = {id(callback): key for key, callback in _legacy_keys(callbacks).items()}
    claimed: set[str] = set()
    fresh: list[str] = []
    for key, callback in callbacks_by_key(callbacks).items():
        found = key if key in saved else legacy[id(callback)]
        if found not in saved:
            fresh.append(key)
            continue
        claimed.add(found)
        try:
            callback.load_state_dict(saved[found])
        except CheckpointError as exc:  # already says what is wrong and what to do
            raise CheckpointError(f"{source}: {exc}") from exc
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise CheckpointError(
                f"{source} is damaged: the state of callback {key} does not load "
                f"({type(exc).__name__}: {exc}); resume from another checkpoint, or start a "
                "new run"
            ) from exc
    dropped = sorted(set(saved) - claimed)
    for key in fresh:
        kind = _kind(key)
        kin = [other for other in dropped if kind is not None and _kind(other) == kind]
        if len(kin) != 1:
            logger.warning("checkpoint has no state for callback %s; it starts fresh", key)
            continue
        dropped.remove(kin[0])  # told here: the same callback, set up otherwise
        logger.warning(
            "%s starts fresh: %s holds the state of one with %s, and this fit's has %s (a "
            "state carries over only to a callback with the same settings)",
            kind,
            printable(source),
            printable(_settings(kin[0])),
            printable(_settings(key)),
        )
    for key in dropped:
        warnings.warn(
            f"{source} holds the state of callback {key!r}, which no callback of this fit "
            "has (callbacks are matched by state_key), so its state is dropped; to keep it, "
            "add the callback that wrote it (with the same settings) to the resumed fit",
            UserWarning,
            stacklevel=6,  # the caller of Trainer.fit
        )
