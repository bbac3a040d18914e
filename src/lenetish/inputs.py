"""Turning what users pass to ``predict`` into model input: tensors, arrays, PIL images, files.

Images from files (or PIL) are prepared the way MNIST itself was made: greyscale, inverted
when the background is light, cropped to the ink, scaled to fit a 20x20 box keeping the aspect
ratio, and placed in a 28x28 frame so that the centre of mass of the ink is at the centre.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lenetish.data import DatasetInfo
from lenetish.errors import InputShapeError, InvalidImageError, InvalidInputError

__all__ = ["IMAGE_SUFFIXES", "mnistify", "open_image", "prepare_inputs"]

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
    if not source.is_file():
        raise InvalidImageError(f"image file {source} does not exist (or is not a file)")
    try:
        with Image.open(source) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise InvalidImageError(
                    f"{source} is {width}x{height} pixels, more than the {MAX_PIXELS:,} "
                    "lenetish opens; scale it down first"
                )
            image.load()
            return image.copy()
    except UnidentifiedImageError as exc:
        raise InvalidImageError(f"{source} is not an image file PIL can read") from exc
    except (OSError, Image.DecompressionBombError, SyntaxError, ValueError) as exc:
        raise InvalidImageError(f"{source} cannot be read as an image ({exc})") from exc


def _greyscale(image: Any) -> np.ndarray:
    """A float array in [0, 255]; transparent pixels become the white background."""
    from PIL import Image

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
        return _scaled_batch(mnistify(open_image(item)))
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
