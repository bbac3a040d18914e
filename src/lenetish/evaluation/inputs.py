"""Turning what users pass to ``predict`` into model input: tensors, arrays, PIL images, files.

Images from files (or PIL) are prepared per dataset (see :mod:`lenetish.evaluation.prepare`):
digits the
way MNIST was made, clothing the way Fashion-MNIST was made, EXIF orientation applied first.
Tensors and arrays follow one range contract: uint8 values are raw 0-255 pixels, float values
raw pixels in ``[0, 1]``; anything else is refused unless ``normalized=True`` says the batch is
already normalised.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lenetish._images import (
    IMAGE_SUFFIXES,
    decode_bounded,
    open_image,
    printable_path,
)
from lenetish.data.identity import DatasetInfo
from lenetish.errors import InputShapeError, InvalidImageError, InvalidInputError
from lenetish.evaluation.prepare import Preparation, mnistify, preparation_for

__all__ = [
    "IMAGE_SUFFIXES",
    "PreparedImages",
    "decode_bounded",
    "mnistify",
    "mnistify_files",
    "open_image",
    "prepare_files",
    "prepare_images",
    "prepare_inputs",
    "printable_path",
]

_SIDE = 28
_SLACK = 1e-4  # float pixels this far outside [0, 1] are still taken as raw pixels


def _prepare_file(path: str | os.PathLike[str], prepare: Preparation) -> Tensor:
    """Open and prepare one image file; an error names the file."""
    image = open_image(path)  # its errors name the file already
    try:
        picture = _scaled_batch(torch.as_tensor(np.asarray(prepare(image))), False)[0, 0]
    except (InvalidInputError, InputShapeError) as exc:
        raise InvalidInputError(f"{printable_path(path)}: {exc}") from exc
    return picture.float() / 255.0 if picture.dtype == torch.uint8 else picture


def prepare_files(
    paths: Sequence[str | os.PathLike[str]],
    *,
    prepare: Preparation = mnistify,
    skip_bad: bool = False,
) -> tuple[list[Path], Tensor, list[str]]:
    """Open and prepare image files, optionally skipping the bad ones.

    Args:
        paths: the image files.
        prepare: turns one PIL image into a ``(28, 28)`` picture (see
            :mod:`lenetish.evaluation.prepare`; default
            :func:`~lenetish.evaluation.prepare.mnistify`).
        skip_bad: leave out a file that is missing, unreadable or blank (with a message
            saying why) instead of raising.

    Returns:
        ``(kept, pictures, skipped)``: the files prepared, their float ``(N, 28, 28)`` raw
        pixels in ``[0, 1]`` in the same order, and one message per file left out (each
        naming it).

    Raises:
        InvalidImageError: a file is missing, not an image or too large (without
            ``skip_bad``); the message names the file.
        InvalidInputError: an image is of one colour (without ``skip_bad``), ``prepare``
            returned no 28x28 picture of raw pixels, or no file could be prepared; the
            message names the file.

    Example:
        >>> import tempfile
        >>> from PIL import Image, ImageDraw
        >>> folder = tempfile.mkdtemp()
        >>> digit = Image.new("L", (40, 40), 255)
        >>> ImageDraw.Draw(digit).line((20, 5, 20, 35), fill=0, width=4)
        >>> digit.save(f"{folder}/one.png")
        >>> Image.new("L", (40, 40), 255).save(f"{folder}/blank.png")
        >>> kept, pictures, skipped = prepare_files(
        ...     [f"{folder}/one.png", f"{folder}/blank.png"], skip_bad=True
        ... )
        >>> [p.name for p in kept], tuple(pictures.shape), len(skipped)
        (['one.png'], (1, 28, 28), 1)
    """
    kept: list[Path] = []
    pictures: list[Tensor] = []
    skipped: list[str] = []
    for path in paths:
        try:
            pictures.append(_prepare_file(path, prepare))
        except (InvalidImageError, InvalidInputError) as exc:
            if not skip_bad:
                raise
            skipped.append(str(exc))
            continue
        kept.append(Path(path))
    if not pictures:
        raise InvalidInputError(
            f"none of the {len(paths)} image files could be used"
            + (f" ({skipped[0]}{' ...' if len(skipped) > 1 else ''})" if skipped else "")
        )
    return kept, torch.stack(pictures), skipped


def mnistify_files(
    paths: Sequence[str | os.PathLike[str]], *, skip_bad: bool = False
) -> tuple[list[Path], Tensor, list[str]]:
    """:func:`prepare_files` with :func:`~lenetish.evaluation.prepare.mnistify`, as uint8 digits.

    Args:
        paths: the image files (dark digits on light paper, or light on dark).
        skip_bad: leave out a file that is missing, unreadable or blank (with a message
            saying why) instead of raising.

    Returns:
        ``(kept, digits, skipped)`` with uint8 ``(N, 28, 28)`` digits.

    Raises:
        InvalidImageError: as :func:`prepare_files`.
        InvalidInputError: as :func:`prepare_files`.

    Example:
        >>> import tempfile
        >>> from PIL import Image, ImageDraw
        >>> from lenetish.evaluation.inputs import mnistify_files
        >>> path = f"{tempfile.mkdtemp()}/seven.png"
        >>> seven = Image.new("L", (60, 60), 255)
        >>> ImageDraw.Draw(seven).line((10, 10, 50, 10, 25, 50), fill=0, width=5)
        >>> seven.save(path)
        >>> kept, digits, skipped = mnistify_files([path])
        >>> digits.dtype, tuple(digits.shape), skipped
        (torch.uint8, (1, 28, 28), [])
    """
    kept, pictures, skipped = prepare_files(paths, skip_bad=skip_bad)
    return kept, (pictures * 255).round().to(torch.uint8), skipped


def _is_pil(value: object) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - torchvision depends on pillow
        return False
    return isinstance(value, Image.Image)


def _scaled_batch(values: Tensor, normalized: bool) -> Tensor:
    """A tensor of images -> ``(N, 1, 28, 28)``, checked; uint8 stays uint8, floats float32.

    uint8 values are raw 0-255 pixels (converted batch by batch later, see
    :class:`PreparedImages`); float values raw pixels in [0, 1], or normalised ones.
    """
    if values.dtype == torch.uint8:
        if normalized:
            raise InvalidInputError(
                "uint8 images are raw 0-255 pixels, but normalized=True says the batch is "
                "already normalised; drop normalized=True (or pass the normalised float batch)"
            )
        scaled = values
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
    if scaled.dtype == torch.uint8:
        return scaled
    low, high = float(scaled.min()), float(scaled.max())
    if not normalized and (low < -_SLACK or high > 1 + _SLACK):
        raise InvalidInputError(
            f"float images must be raw pixels in [0, 1], but these range from {low:.4g} to "
            f"{high:.4g}; pass normalized=True if the batch is already normalised (as "
            "make_loaders gives it), or divide 0-255 pixel values by 255 (or pass them as uint8)"
        )
    return scaled


_NUMERIC_KINDS = "biufc"  # bool, signed, unsigned, float, complex: torch holds these


def _array_tensor(array: np.ndarray) -> Tensor:
    """A numpy array as a tensor; arrays of objects, strings or dates are refused by name."""
    if array.dtype.kind not in _NUMERIC_KINDS or array.dtype.fields is not None:
        raise InvalidInputError(
            f"a numpy array of dtype {array.dtype} holds no pixel values; pass uint8 (0-255) "
            "or float (0-1) pixels, e.g. np.asarray(images, dtype=np.uint8), or image files"
        )
    if not array.flags.writeable:  # torch warns on read-only memory (e.g. np.frombuffer)
        array = array.copy()
    return torch.from_numpy(np.ascontiguousarray(array))


def _check_open(image: Any) -> None:
    """Refuse a PIL image that was closed (its pixels are gone)."""
    try:
        image.load()
    except ValueError as exc:  # PIL: "Operation on closed image"
        raise InvalidInputError(
            f"the PIL image was closed, so its pixels are gone ({exc}); keep it open until "
            "predict returns (or pass an image.copy() made before closing it), or pass the "
            "file's path"
        ) from exc
    except OSError as exc:  # a lazily opened file that turns out damaged
        raise InvalidImageError(f"the PIL image cannot be decoded ({exc})") from exc


def _check_dense(tensor: Tensor) -> None:
    """Refuse a tensor whose pixels cannot be read as one block: nested, meta or sparse.

    Such tensors fail deep inside torch (``NotImplementedError`` for ``ne`` on the sparse
    backend, "Cannot copy out of meta tensor"), so they are named before anything reads them.
    """
    if tensor.is_nested:
        raise InvalidInputError(
            "the images are a nested tensor (images of different sizes in one tensor); pass "
            "a dense (N, 28, 28) tensor, e.g. torch.stack(images.unbind()) for images of one "
            "size, or a list of tensors or image files to have them resized"
        )
    if tensor.is_meta:
        raise InvalidInputError(
            f"the images are a meta tensor of shape {tuple(tensor.shape)}: it holds a shape "
            "but no pixel values; pass a dense CPU or GPU tensor of real data"
        )
    if tensor.layout != torch.strided:
        raise InvalidInputError(
            f"the images are a tensor of layout {tensor.layout}, not a dense one; pass a "
            "dense CPU or GPU tensor, e.g. images.to_dense()"
        )


def _as_batch(item: Any, normalized: bool, prepare: Preparation) -> tuple[Tensor, bool]:
    """One input as a float batch, and whether it is already normalised."""
    if isinstance(item, Tensor):
        _check_dense(item)
        return _scaled_batch(item.detach().cpu(), normalized), normalized
    if isinstance(item, np.ndarray):
        return _scaled_batch(_array_tensor(item), normalized), normalized
    if _is_pil(item):
        _check_open(item)
        try:
            return _scaled_batch(torch.as_tensor(np.asarray(prepare(item))), False), False
        except InputShapeError as exc:
            raise InvalidInputError(f"the preparation of a PIL image failed: {exc}") from exc
    if isinstance(item, (str, os.PathLike)):
        return _prepare_file(item, prepare)[None, None], False
    raise InvalidInputError(
        f"cannot predict on a {type(item).__name__}; pass a tensor, a numpy array, a PIL "
        "image, an image path, or a list of these"
    )


@dataclass(frozen=True)
class PreparedImages:
    """Checked images ``(N, 1, 28, 28)`` kept as given, normalised batch by batch.

    A uint8 batch stays uint8 (a quarter of the memory of float32) until :meth:`batch`
    converts one slice of it on the device that runs the model.

    Attributes:
        pixels: uint8 raw pixels (0-255), float32 raw pixels in ``[0, 1]``, or (with
            ``normalized``) float32 values already normalised.
        mean: the dataset's mean pixel value, in ``[0, 1]``.
        std: the dataset's pixel standard deviation, in ``[0, 1]``.
        normalized: ``pixels`` are normalised already.
    """

    pixels: Tensor
    mean: float
    std: float
    normalized: bool = False

    def __len__(self) -> int:
        """The number of images."""
        return int(self.pixels.shape[0])

    def batch(self, start: int, stop: int, device: torch.device) -> Tensor:
        """Images ``start:stop`` as a normalised float32 batch on ``device``."""
        chunk = self.pixels[start:stop].to(device, non_blocking=True)
        if self.normalized:
            return chunk
        raw = chunk.float() / 255.0 if chunk.dtype == torch.uint8 else chunk
        return (raw - self.mean) / self.std


def prepare_images(
    inputs: Any,
    info: DatasetInfo,
    *,
    normalized: bool = False,
    prepare: Preparation | None = None,
) -> PreparedImages:
    """Check ``inputs`` and hold them as :class:`PreparedImages` (see :func:`prepare_inputs`).

    Raises:
        InputShapeError: a tensor or array has the wrong rank or size.
        InvalidInputError: the batch is empty, holds NaN/Inf, has an unsupported dtype, or
            float values outside [0, 1] without ``normalized=True``; a tensor is sparse,
            nested or on the meta device.
        InvalidImageError: a file is missing, not an image, or too large.

    Example:
        >>> from lenetish.catalog import DATASETS
        >>> images = prepare_images(torch.zeros(5, 28, 28, dtype=torch.uint8), DATASETS["mnist"])
        >>> len(images), images.pixels.dtype, images.batch(0, 2, torch.device("cpu")).shape
        (5, torch.uint8, torch.Size([2, 1, 28, 28]))
    """
    how = preparation_for(info) if prepare is None else prepare
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if not items:
        raise InvalidInputError("the batch is empty: there is nothing to predict")
    held = [PreparedImages(pixels, info.mean, info.std, done) for pixels, done in (
        _as_batch(item, normalized, how) for item in items
    )]  # fmt: skip
    if len(held) == 1:
        return held[0]
    cpu = torch.device("cpu")  # a mixed list: normalised here, once, as one float batch
    whole = torch.cat([images.batch(0, len(images), cpu) for images in held])
    return PreparedImages(whole, info.mean, info.std, normalized=True)


def prepare_inputs(
    inputs: Any,
    info: DatasetInfo,
    *,
    normalized: bool = False,
    prepare: Preparation | None = None,
) -> Tensor:
    """Turn ``inputs`` into a normalised float batch ``(N, 1, 28, 28)`` on the CPU.

    Args:
        inputs: a tensor or numpy array ``(28, 28)``, ``(N, 28, 28)`` or ``(N, 1, 28, 28)``
            (uint8 0-255, or float 0-1); a PIL image; an image file path; or a list of these.
        info: the dataset whose normalisation the model was trained with.
        normalized: float tensors and arrays are already normalised with ``info``'s mean
            and std (as :func:`~lenetish.make_loaders` gives them): used as they are.
        prepare: turns a PIL image (or an opened file) into a ``(28, 28)`` picture
            (default: ``info``'s preparation, see
            :func:`lenetish.evaluation.prepare.preparation_for`).

    Returns:
        The normalised batch.

    Raises:
        InputShapeError: a tensor or array has the wrong rank or size.
        InvalidInputError: the batch is empty, holds NaN/Inf, has an unsupported dtype, or
            float values outside [0, 1] without ``normalized=True``; a tensor is sparse,
            nested or on the meta device.
        InvalidImageError: a file is missing, not an image, or too large.

    Example:
        >>> from lenetish.data.identity import DATASETS
        >>> white = torch.full((2, 28, 28), 255, dtype=torch.uint8)
        >>> batch = prepare_inputs(white, DATASETS["mnist"])
        >>> tuple(batch.shape), round(float(batch.max()), 4)
        ((2, 1, 28, 28), 2.8215)
    """
    images = prepare_images(inputs, info, normalized=normalized, prepare=prepare)
    return images.batch(0, len(images), torch.device("cpu"))
