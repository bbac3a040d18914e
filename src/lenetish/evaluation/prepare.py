"""How an image (PIL or file) becomes a 28x28 picture, per dataset, EXIF orientation first.

* Digits (MNIST, KMNIST, a user's own digit-like data): :func:`mnistify`, the way MNIST was
  made: greyscale, inverted when the background is light, cropped to the ink, scaled to fit a
  20x20 box keeping the aspect ratio, placed in 28x28 with the ink's centre of mass centred.
* Clothing (Fashion-MNIST): :func:`fashionify`, the way Zalando made that dataset: greyscale,
  inverted when the background is light (so the background is dark), trimmed to the object,
  the longest side fitted into 28 pixels, centred in 28x28. A picture that is already 28x28
  is kept pixel for pixel (only inverted if its background is light).
* A user's own folder of images (:func:`~lenetish.make_loaders` on class sub-folders):
  :func:`resize`, greyscale and a plain resize to 28x28, nothing inverted or cropped; the
  model's dataset record says ``"resize"`` and ``predict`` prepares files the same way.

Every preparation first turns the image upright by its EXIF orientation tag
(``ImageOps.exif_transpose``), as phones store photos rotated with such a tag.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lenetish._images import greyscale, resized_grey, upright
from lenetish.data.identity import DATASETS, DatasetInfo
from lenetish.errors import InvalidInputError

__all__ = [
    "PREPARATIONS",
    "Preparation",
    "fashionify",
    "mnistify",
    "preparation_for",
    "resize",
    "upright",
]

Preparation = Callable[[Any], Any]
"""A function from a PIL image to a ``(28, 28)`` picture: uint8 (0-255) or float (0-1)."""

_BOX = 20  # MNIST digits were scaled to fit 20x20 and centred by mass in 28x28
_SIDE = 28


def _light_background(pixels: np.ndarray) -> bool:
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return bool(np.median(border) > 127)


def mnistify(image: Any) -> Tensor:
    """Prepare a PIL image of one digit the way MNIST was made; return uint8 ``(28, 28)``.

    The EXIF orientation (photos from phones) is applied first, as in every preparation here.

    Args:
        image: a PIL image of any size and mode, light ink on dark or dark ink on light.

    Returns:
        White-on-black uint8 ``(28, 28)``: the ink cropped, scaled to fit 20x20 keeping the
        aspect ratio, and centred by its centre of mass.

    Raises:
        InvalidInputError: the image holds no ink (it is of one colour).

    Example:
        >>> from PIL import Image, ImageDraw
        >>> digit = Image.new("L", (40, 40), 255)
        >>> ImageDraw.Draw(digit).line((20, 5, 20, 35), fill=0, width=4)
        >>> from lenetish.evaluation.prepare import mnistify
        >>> picture = mnistify(digit)
        >>> picture.shape, picture.dtype, int(picture[14, 14]) > 200
        (torch.Size([28, 28]), torch.uint8, True)
    """
    from PIL import Image

    pixels = greyscale(upright(image))  # (H, W)
    if _light_background(pixels):  # MNIST has white ink on black
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


def fashionify(image: Any) -> Tensor:
    """Prepare a PIL image of one garment the way Fashion-MNIST was made; uint8 ``(28, 28)``.

    Args:
        image: a PIL image of any size and mode; a product photo on a light background, or a
            light object on a dark one.

    Returns:
        Light-on-dark uint8 ``(28, 28)``: trimmed to the object, its longest side fitted into
        28 pixels keeping the aspect ratio, centred. A 28x28 image keeps its pixels (inverted
        when its background is light).

    Raises:
        InvalidInputError: the image is of one colour.

    Example:
        >>> from PIL import Image, ImageDraw
        >>> photo = Image.new("L", (100, 200), 255)  # a dark bag on white paper
        >>> ImageDraw.Draw(photo).rectangle((10, 20, 89, 179), fill=40)
        >>> from lenetish.evaluation.prepare import fashionify
        >>> picture = fashionify(photo)
        >>> picture.shape, int(picture[14, 14]), int(picture[14, 1])
        (torch.Size([28, 28]), 215, 0)
    """
    from PIL import Image

    pixels = greyscale(upright(image))  # (H, W) in [0, 255]
    if _light_background(pixels):
        pixels = 255.0 - pixels
    if pixels.shape == (_SIDE, _SIDE):  # already the dataset's size: keep every pixel
        return torch.from_numpy(np.clip(pixels, 0, 255).round().astype(np.uint8))
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    pixels = np.clip(pixels - np.median(border), 0, 255)  # a grey background becomes black
    if pixels.max() <= 0:
        raise InvalidInputError("the image is of one colour: there is nothing in it to classify")
    rows, columns = np.nonzero(pixels > 0.05 * pixels.max())
    thing = pixels[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    height, width = thing.shape
    scale = _SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(thing.astype(np.uint8)).resize(size, Image.Resampling.LANCZOS)
    fitted = np.asarray(resized, dtype=np.float32)
    top, left = (_SIDE - fitted.shape[0]) // 2, (_SIDE - fitted.shape[1]) // 2
    canvas = np.zeros((_SIDE, _SIDE), dtype=np.float32)
    canvas[top : top + fitted.shape[0], left : left + fitted.shape[1]] = fitted
    return torch.from_numpy(np.clip(canvas, 0, 255).round().astype(np.uint8))


def resize(image: Any) -> Tensor:
    """Greyscale and resize a PIL image to 28x28, as a folder of training images is read.

    Nothing is inverted, cropped or centred: the pictures keep the look of the user's own
    images, and the model learns it (EXIF orientation is applied; transparency becomes white).

    Args:
        image: a PIL image of any size and mode.

    Returns:
        uint8 ``(28, 28)``.

    Example:
        >>> from PIL import Image
        >>> from lenetish.evaluation.prepare import resize
        >>> picture = resize(Image.new("RGB", (64, 40), (255, 0, 0)))
        >>> picture.shape, picture.dtype, int(picture[0, 0])  # red is grey 76
        (torch.Size([28, 28]), torch.uint8, 76)
    """
    return torch.from_numpy(resized_grey(image))


_BY_NAME: dict[str, Preparation] = {
    "mnistify": mnistify,
    "fashionify": fashionify,
    "resize": resize,
}

#: The preparation of each recognised dataset's images; other names get :func:`mnistify`.
PREPARATIONS: dict[str, Preparation] = {
    name: _BY_NAME[info.image_preparation] for name, info in DATASETS.items()
}


def preparation_for(info: DatasetInfo) -> Preparation:
    """The preparation of ``info``'s images: what its record names, else by dataset name.

    Args:
        info: the dataset the model was trained on, e.g. ``loaders.info``.

    Returns:
        The preparation named by the record's ``image_preparation``
        (:attr:`lenetish.DatasetInfo.image_preparation`), which is the recorded one
        (:func:`~lenetish.evaluation.prepare.resize` for a folder of images), else
        :func:`fashionify` for Fashion-MNIST, :func:`mnistify` for MNIST and KMNIST, and
        :func:`~lenetish.evaluation.prepare.resize` for a record of one's own data.

    Example:
        >>> from lenetish.data.identity import DATASETS
        >>> from lenetish.evaluation.prepare import preparation_for
        >>> preparation_for(DATASETS["fashion-mnist"]).__name__
        'fashionify'
    """
    return _BY_NAME[info.image_preparation]
