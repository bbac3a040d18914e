"""The run settings ``lenetish train`` records in its checkpoints, checked before a resume.

A resumed run takes its recipe, batch size and epochs from the checkpoint and compares its
learning rate with ``--lr``. A checkpoint is a file a user can alter or damage, so every
recorded value is checked to be what a run writes before it picks a recipe or sizes the
loaders; anything else is a :class:`~lenetish.CheckpointError` naming the setting, never an
``AttributeError`` or ``TypeError`` from deep inside the command.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from lenetish.errors import CheckpointError
from lenetish.saving.checkpoint_checks import MAX_COUNT

__all__ = ["recorded_settings"]


def _count(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and 1 <= value <= MAX_COUNT


def _rate(value: object) -> bool:
    if value is None:  # an optimizer of the user's own: its learning rate was not recorded
        return True
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and value > 0


def _name(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 200


# What each recorded setting must be, and how the message says it.
_CHECKS: dict[str, tuple[Callable[[object], bool], str]] = {
    "recipe": (_name, "a recipe name"),
    "batch_size": (_count, f"an integer from 1 to {MAX_COUNT:,}"),
    "epochs": (_count, f"an integer from 1 to {MAX_COUNT:,}"),
    "lr": (_rate, "a positive finite number (or None)"),
}


def _damaged(source: str, what: str) -> CheckpointError:
    return CheckpointError(
        f"{source} is damaged: {what}; resume from another checkpoint (e.g. best.pt or an "
        "earlier copy), or start a new run"
    )


def recorded_settings(checkpoint: dict[str, Any], source: str, name: str) -> dict[str, Any] | None:
    """The settings a CLI run recorded in ``checkpoint``, checked; ``None`` if it recorded none.

    Args:
        checkpoint: the loaded checkpoint.
        source: where it was read from, for messages.
        name: the class name of the callback whose state holds the settings.

    Returns:
        The recorded settings (``recipe``, ``batch_size``, ``epochs``, ``lr``), or ``None``
        for a checkpoint of a run that did not record them (a Python API run).

    Raises:
        CheckpointError: the callbacks' states are not a dictionary, the settings are not
            one, or a setting is not what a run records (the message names it).

    Example:
        >>> state = {"recipe": "fast", "batch_size": 200, "epochs": 3, "lr": 0.003}
        >>> recorded_settings({"callbacks": {"x._RunSettings": state}}, "c.pt", "_RunSettings")
        {'recipe': 'fast', 'batch_size': 200, 'epochs': 3, 'lr': 0.003}
        >>> recorded_settings({"callbacks": {}}, "c.pt", "_RunSettings") is None
        True
    """
    callbacks = checkpoint.get("callbacks", {})
    if not isinstance(callbacks, dict):
        raise _damaged(source, f"its callbacks are a {type(callbacks).__name__}, not a dictionary")
    for key, state in callbacks.items():
        if str(key).rsplit(".", 1)[-1] != name:
            continue
        if not isinstance(state, dict):
            raise _damaged(
                source, f"its run settings are a {type(state).__name__}, not a dictionary"
            )
        for setting, (valid, expected) in _CHECKS.items():
            if setting in state and not valid(state[setting]):
                shown = repr(state[setting])[:60]  # repr: escaped, one line
                raise _damaged(
                    source, f"its recorded run setting {setting} is {shown}, not {expected}"
                )
        return state
    return None
