"""Turning what users pass to ``predict`` into model input: tensors, arrays, PIL images, files.

Images from files (or PIL) are prepared the way MNIST itself was made: greyscale, inverted
when the background is light, cropped to the ink, scaled to fit a 20x20 box keeping the aspect
ratio, and placed in a 28x28 frame so that the centre of mass of the ink is at the centre.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lenetish.data import DatasetInfo
from lenetish.errors import InputShapeError, InvalidImageError, InvalidInputError

__all__ = [
    "IMAGE_SUFFIXES",
    "mnistify",
    "mnistify_files",
    "open_image",
    "prepare_inputs",
    "printable_path",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MAX_PIXELS = 50_000_000  # larger images are refused rather than decoded
_BOX = 20  # MNIST digits were scaled to fit 20x20 and centred by mass in 28x28
_SIDE = 28


def open_image(path: str | os.PathLike[str]) -> Any:
    """Open an image file with PIL, fully decoded, refusing missing, huge or non-image files.

    Raises:
        InvalidImageError: the file does not exist, is not an image, or has more than
            50 million pixels.
    """
    from PIL import Image, UnidentifiedImageError

    source = Path(path)
    name = printable_path(source)  # the messages can be printed whatever the name holds
    if not source.is_file():
        raise InvalidImageError(f"image file {name} does not exist (or is not a file)")
    try:
        with Image.open(source) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise InvalidImageError(
                    f"{name} is {width}x{height} pixels, more than the {MAX_PIXELS:,} "
                    "lenetish opens; scale it down first"
                )
            image.load()
            return image.copy()
    except UnidentifiedImageError as exc:
        raise InvalidImageError(f"{name} is not an image file PIL can read") from exc
    except (OSError, Image.DecompressionBombError, SyntaxError, ValueError) as exc:
        raise InvalidImageError(f"{name} cannot be read as an image ({exc})") from exc


def printable_path(path: str | os.PathLike[str]) -> str:
    r"""``path`` as printable text, undecodable bytes replaced by ``\ufffd``.

    A file name on Linux may hold bytes that are not valid in the file system's encoding (a
    non-UTF-8 name); Python keeps them as surrogate escapes, which ``print`` refuses.

    Args:
        path: a file name, possibly holding undecodable bytes.

    Returns:
        The name with every undecodable byte replaced by the replacement character.

    Example:
        >>> printable_path(os.fsdecode(b"digit-\xff.png")) == "digit-\ufffd.png"
        True
    """
    return os.fsencode(path).decode(sys.getfilesystemencoding(), errors="replace")


_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def _wide_greyscale(image: Any) -> np.ndarray:
    """16- and 32-bit greyscale (modes ``I;16*`` and ``I``) scaled, not clamped, to [0, 255].

    16-bit values are divided by 257 (65535 -> 255). Mode ``I`` holds 16-bit PNGs in older
    Pillow versions, so values within 0..65535 are treated the same; other ranges (32-bit
    TIFFs) are mapped linearly from their own minimum and maximum.
    """
    values = np.asarray(image, dtype=np.float64)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if image.mode in _SIXTEEN_BIT_MODES or (low >= 0 and high <= 65535):
        return (values / 257.0).astype(np.float32)
    return ((values - low) * (255.0 / (high - low))).astype(np.float32)


def _greyscale(image: Any) -> np.ndarray:
    """A float array in [0, 255]; transparent pixels become the white background."""
    from PIL import Image

    if image.mode in (*_SIXTEEN_BIT_MODES, "I"):
        return _wide_greyscale(image)
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return np.asarray(image.convert("L"), dtype=np.float32)


def mnistify(image: Any) -> Tensor:
    """Prepare a PIL image of one digit the way MNIST was made; return uint8 ``(28, 28)``.

    Args:
        image: a PIL image of any size and mode, light ink on dark or dark ink on light.

    Returns:
        White-on-black uint8 ``(28, 28)``: the ink cropped, scaled to fit 20x20 keeping the
        aspect ratio, and centred by its centre of mass.

    Raises:
        InvalidInputError: the image holds no ink (it is of one colour).
    """
    from PIL import Image

    pixels = _greyscale(image)  # (H, W)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if np.median(border) > 127:  # light background: MNIST has white ink on black
        pixels = 255.0 - pixels
    pixels = pixels - pixels.min()
    if pixels.max() <= 0:
        raise InvalidInputError("the image is of one colour: there is no digit to read in it")
    rows, columns = np.nonzero(pixels > 0.25 * pixels.max())
    ink = pixels[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    ink = ink * (255.0 / ink.max())
    height, width = ink.shape
    scale = _BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(ink.astype(np.uint8)).resize(size, Image.Resampling.LANCZOS)
    glyph = np.asarray(resized, dtype=np.float32)  # (h, w), fits in 20x20
    total = glyph.sum()
    grid_y, grid_x = np.indices(glyph.shape)
    centre_y = (grid_y * glyph).sum() / total if total else glyph.shape[0] / 2
    centre_x = (grid_x * glyph).sum() / total if total else glyph.shape[1] / 2
    top = int(np.clip(round(_SIDE / 2 - centre_y), 0, _SIDE - glyph.shape[0]))
    left = int(np.clip(round(_SIDE / 2 - centre_x), 0, _SIDE - glyph.shape[1]))
    canvas = np.zeros((_SIDE, _SIDE), dtype=np.float32)
    canvas[top : top + glyph.shape[0], left : left + glyph.shape[1]] = glyph
    return torch.from_numpy(np.clip(canvas, 0, 255).round().astype(np.uint8))


def _mnistify_file(path: str | os.PathLike[str]) -> Tensor:
    """Open and prepare one image file; an error names the file."""
    image = open_image(path)  # its errors name the file already
    try:
        return mnistify(image)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{printable_path(path)}: {exc}") from exc


def mnistify_files(
    paths: Sequence[str | os.PathLike[str]], *, skip_bad: bool = False
) -> tuple[list[Path], Tensor, list[str]]:
    """Open and prepare image files with :func:`mnistify`, optionally skipping the bad ones.

    Args:
        paths: the image files.
        skip_bad: leave out a file that is missing, unreadable or blank (with a message
            saying why) instead of raising.

    Returns:
        ``(kept, digits, skipped)``: the files prepared, their uint8 ``(N, 28, 28)`` digits in
        the same order, and one message per file left out (each naming it).

    Raises:
        InvalidImageError: a file is missing, not an image or too large (without
            ``skip_bad``); the message names the file.
        InvalidInputError: an image is of one colour (without ``skip_bad``), or no file could
            be prepared; the message names the file.

    Example:
        >>> import tempfile
        >>> from PIL import Image, ImageDraw
        >>> folder = tempfile.mkdtemp()
        >>> digit = Image.new("L", (40, 40), 255)
        >>> ImageDraw.Draw(digit).line((20, 5, 20, 35), fill=0, width=4)
        >>> digit.save(f"{folder}/one.png")
        >>> Image.new("L", (40, 40), 255).save(f"{folder}/blank.png")
        >>> kept, digits, skipped = mnistify_files(
        ...     [f"{folder}/one.png", f"{folder}/blank.png"], skip_bad=True
        ... )
        >>> [p.name for p in kept], tuple(digits.shape), len(skipped)
        (['one.png'], (1, 28, 28), 1)
    """
    kept: list[Path] = []
    digits: list[Tensor] = []
    skipped: list[str] = []
    for path in paths:
        try:
            digits.append(_mnistify_file(path))
        except (InvalidImageError, InvalidInputError) as exc:
            if not skip_bad:
                raise
            skipped.append(str(exc))
            continue
        kept.append(Path(path))
    if not digits:
        raise InvalidInputError(
            f"none of the {len(paths)} image files could be used"
            + (f" ({skipped[0]}{' ...' if len(skipped) > 1 else ''})" if skipped else "")
        )
    return kept, torch.stack(digits), skipped


def _is_pil(value: object) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - torchvision depends on pillow
        return False
    return isinstance(value, Image.Image)


def _scaled_batch(values: Tensor) -> Tensor:
    """A tensor of images -> float ``(N, 1, 28, 28)`` in [0, 1], with every check."""
    if values.dtype == torch.uint8:
        scaled = values.float() / 255.0
    elif values.is_floating_point():
        scaled = values.float()
        if not torch.isfinite(scaled).all():
            raise InvalidInputError(
                "the images contain NaN or infinite values; clean them before predicting"
            )
    else:
        raise InvalidInputError(
            f"images of dtype {values.dtype} are not supported; pass uint8 (0-255) or float "
            "(0-1) values"
        )
    if scaled.dim() == 2:
        scaled = scaled.unsqueeze(0)
    if scaled.dim() == 3:
        scaled = scaled.unsqueeze(1)
    if scaled.dim() != 4 or tuple(scaled.shape[1:]) != (1, _SIDE, _SIDE):
        raise InputShapeError(
            f"expected images of shape (28, 28), (N, 28, 28) or (N, 1, 28, 28), got "
            f"{tuple(values.shape)}; pass image files or PIL images to have them resized"
        )
    if scaled.shape[0] == 0:
        raise InvalidInputError("the batch is empty: there is nothing to predict")
    return scaled


def _as_scaled(item: Any) -> Tensor:
    if isinstance(item, Tensor):
        return _scaled_batch(item.detach().cpu())
    if isinstance(item, np.ndarray):
        return _scaled_batch(torch.from_numpy(np.ascontiguousarray(item)))
    if _is_pil(item):
        return _scaled_batch(mnistify(item))
    if isinstance(item, (str, os.PathLike)):
        return _scaled_batch(_mnistify_file(item))
    raise InvalidInputError(
        f"cannot predict on a {type(item).__name__}; pass a tensor, a numpy array, a PIL "
        "image, an image path, or a list of these"
    )


def prepare_inputs(inputs: Any, info: DatasetInfo) -> Tensor:
    """Turn ``inputs`` into a normalised float batch ``(N, 1, 28, 28)`` on the CPU.

    Args:
        inputs: a tensor or numpy array ``(28, 28)``, ``(N, 28, 28)`` or ``(N, 1, 28, 28)``
            (uint8 0-255, or float 0-1); a PIL image; an image file path; or a list of these.
        info: the dataset whose normalisation the model was trained with.

    Returns:
        The normalised batch.

    Raises:
        InputShapeError: a tensor or array has the wrong rank or size.
        InvalidInputError: the batch is empty, holds NaN/Inf or has an unsupported dtype.
        InvalidImageError: a file is missing, not an image, or too large.
    """
    if isinstance(inputs, (list, tuple)):
        if not inputs:
            raise InvalidInputError("the batch is empty: there is nothing to predict")
        batch = torch.cat([_as_scaled(item) for item in inputs])
    else:
        batch = _as_scaled(inputs)
    return (batch - info.mean) / info.std
