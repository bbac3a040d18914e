"""Image files as PIL images and grey pixels: bounded decoding, EXIF orientation, greyscale.

The one reader of image files for every part of lenetish: ``predict``'s files, a folder of
training images (:func:`~lenetish.make_loaders`) and ``lenetish serve``'s uploads. The size
comes from the header, so a decompression bomb is never decoded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from lenetish._text import printable
from lenetish.errors import InvalidImageError

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "decode_bounded",
    "greyscale",
    "open_image",
    "printable_path",
    "resized_grey",
    "upright",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MAX_PIXELS = 50_000_000  # larger images are refused rather than decoded


def decode_bounded(
    source: Path | BinaryIO,
    label: str,
    *,
    max_pixels: int,
    formats: Sequence[str] | None = None,
    limit_owner: str = "lenetish opens",
    kinds: str = "an image file PIL can read",
) -> Any:
    """Open an image with PIL, refuse more than ``max_pixels`` before decoding, then decode it.

    The one reader of image files and uploads (``predict``'s files, ``lenetish serve``'s
    bodies): the size comes from the header, so a decompression bomb is never decoded.

    Args:
        source: a file path or a binary stream.
        label: what messages call it (already escaped for printing).
        max_pixels: the most pixels (width times height) taken.
        formats: the PIL formats accepted (``None``: any PIL reads).
        limit_owner: who sets the limit, for the message ("this server decodes").
        kinds: what an acceptable file is, for the message ("a PNG or JPEG image").

    Raises:
        InvalidImageError: not an image of the accepted kinds, damaged, or too many pixels.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source, formats=None if formats is None else list(formats)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise InvalidImageError(
                    f"{label} is {width}x{height} pixels, more than the {max_pixels:,} "
                    f"{limit_owner}; scale it down first"
                )
            image.load()
            return image.copy()
    except UnidentifiedImageError as exc:
        raise InvalidImageError(f"{label} is not {kinds}") from exc
    except Image.DecompressionBombError as exc:
        raise InvalidImageError(f"{label} decodes to too many pixels ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImageError(f"{label} cannot be read as an image ({exc})") from exc


def open_image(path: str | os.PathLike[str]) -> Any:
    """Open an image file with PIL, fully decoded, refusing missing, huge or non-image files.

    Raises:
        InvalidImageError: the file does not exist, is not an image, or has more than
            50 million pixels.
    """
    source = Path(path)
    name = printable_path(source)  # the messages can be printed whatever the name holds
    if not source.is_file():
        raise InvalidImageError(f"image file {name} does not exist (or is not a file)")
    return decode_bounded(source, name, max_pixels=MAX_PIXELS)


def printable_path(path: str | os.PathLike[str]) -> str:
    r"""``path`` as printable text on one line: undecodable bytes and control characters escaped.

    A file name on Linux may hold bytes that are not valid in the file system's encoding (a
    non-UTF-8 name), which Python keeps as surrogate escapes that ``print`` refuses, and
    control characters: a newline forges extra output lines, an escape sequence drives the
    terminal. Both are shown as ``\xNN`` (see ``lenetish._text.printable``).

    Args:
        path: a file name, possibly holding undecodable bytes or control characters.

    Returns:
        The name with every undecodable byte and non-printable character escaped.

    Example:
        >>> printable_path(os.fsdecode(b"digit-\xff.png")) == "digit-\\xff.png"
        True
        >>> print(printable_path("seven\n3.png: 3 (probability 1.000)"))
        seven\x0a3.png: 3 (probability 1.000)
    """
    return printable(path)


def upright(image: Any) -> Any:
    """``image`` turned as its EXIF orientation tag says (a copy), or itself without a tag.

    Args:
        image: a PIL image, as a phone or camera stored it.

    Returns:
        The image the right way up; a damaged EXIF block leaves it as stored.

    Example:
        >>> from PIL import Image
        >>> from lenetish.evaluation.prepare import upright
        >>> upright(Image.new("L", (30, 20))).size  # no orientation tag: as stored
        (30, 20)
    """
    from PIL import ImageOps

    try:
        turned = ImageOps.exif_transpose(image)
    except Exception:  # a damaged EXIF block: keep the pixels as stored
        return image
    return image if turned is None else turned


_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def _wide_greyscale(image: Any) -> np.ndarray:
    """16- and 32-bit greyscale (modes ``I;16*`` and ``I``) scaled, not clamped, to [0, 255].

    16-bit values are divided by 257 (65535 -> 255). Mode ``I`` holds 16-bit PNGs in older
    Pillow versions, so values within 0..65535 are treated the same; other ranges (32-bit
    TIFFs) are mapped linearly from their own minimum and maximum; one constant value there
    gives a blank picture (not a division by zero).
    """
    values = np.asarray(image, dtype=np.float64)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if image.mode in _SIXTEEN_BIT_MODES or (low >= 0 and high <= 65535):
        return (values / 257.0).astype(np.float32)
    if high == low:  # one value outside 0..65535: a blank picture (refused as one colour)
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - low) * (255.0 / (high - low))).astype(np.float32)


def greyscale(image: Any) -> np.ndarray:
    """A float array in [0, 255]; transparent pixels become the white background."""
    from PIL import Image

    if image.mode in (*_SIXTEEN_BIT_MODES, "I"):
        return _wide_greyscale(image)
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return np.asarray(image.convert("L"), dtype=np.float32)


def resized_grey(image: Any, side: int = 28) -> np.ndarray:
    """``image`` upright, in greyscale, resized to ``side`` x ``side``: uint8 ``(side, side)``.

    Bilinear resampling (PIL's, which filters when it shrinks); nothing inverted or cropped.
    """
    from PIL import Image

    grey = np.clip(greyscale(upright(image)), 0, 255).round().astype(np.uint8)  # (H, W)
    resized = Image.fromarray(grey).resize((side, side), Image.Resampling.BILINEAR)
    return np.array(resized, dtype=np.uint8)
