"""Text from files and file names made safe to print: one escaping function, used everywhere.

A class name in a weights file, an image's file name or a folder given on the command line
can hold terminal escape sequences (which set the window title or clear the screen),
newlines (which forge extra output lines), or bytes that are not valid in the file system's
encoding. Everything lenetish prints or puts in an error message from such a source goes
through :func:`printable`. Torch-free, so the command line's error path can use it.
"""

from __future__ import annotations

import os

__all__ = ["printable"]

_SURROGATE_ESCAPES = range(0xDC80, 0xDD00)  # os.fsdecode's stand-ins for undecodable bytes


def _escape(char: str) -> str:
    code = ord(char)
    if code in _SURROGATE_ESCAPES:
        return f"\\x{code - 0xDC00:02x}"  # the byte the file name really holds
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str | os.PathLike[str]) -> str:
    r"""``text`` with every non-printable character shown as an escape, on one line.

    Control characters (escape, newline, tab, ...) and other characters Python does not
    print as themselves (``str.isprintable``: format characters such as right-to-left
    overrides, separators other than the space) become ``\xNN``, ``\uNNNN`` or
    ``\UNNNNNNNN``; the undecodable bytes of a file name become ``\xNN`` of the byte. Letters
    of any script and backslashes are kept, so applying it twice changes nothing more.

    Args:
        text: a string, or a path (its name may hold undecodable bytes).

    Returns:
        Text that prints as one line and cannot drive the terminal.

    Example:
        >>> from lenetish._text import printable
        >>> printable("\x1b]0;owned\x07seven\n3.png")
        '\\x1b]0;owned\\x07seven\\x0a3.png'
        >>> printable(os.fsdecode(b"digit-\xff.png")), printable("Ñandú")
        ('digit-\\xff.png', 'Ñandú')
    """
    value = os.fspath(text)
    if value.isprintable():
        return value
    return "".join(char if char.isprintable() else _escape(char) for char in value)
