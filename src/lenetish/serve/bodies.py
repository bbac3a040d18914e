"""Request bodies of ``POST /predict`` turned into checked pixels, with the library's preparation.

Three kinds of body are taken, told apart by ``Content-Type``:

* ``image/png`` or ``image/jpeg``: one image, the body is the file;
* ``multipart/form-data``: one or more image files (form field ``file``, repeated);
* ``application/json``: ``{"pixels": ..., "dtype": "uint8" | "float32"}``, one image
  ``28 x 28`` or several ``N x 28 x 28``, light on dark as in the dataset.

Images are opened with PIL (PNG and JPEG only; their size is checked from the header before
decoding) and prepared as :func:`lenetish.predict` prepares files: the dataset's preparation
(:func:`lenetish.evaluation.prepare.preparation_for`), EXIF orientation first. Pixel arrays
follow the library's range contract (:func:`lenetish.evaluation.inputs.prepare_images`):
uint8 values are 0-255, float32 values 0-1, NaN refused. JSON loses the difference between
``1`` and ``1.0``, so the body says which it sends.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lenetish.data.identity import DatasetInfo
from lenetish.errors import (
    InputShapeError,
    InvalidInputError,
    RequestRejectedError,
)
from lenetish.evaluation.inputs import decode_bounded, prepare_images, printable_path

__all__ = [
    "IMAGE_TYPES",
    "JSON_TYPE",
    "MULTIPART_TYPE",
    "decode_image",
    "image_pixels",
    "json_pixels",
    "read_body",
]

#: The image formats taken, by media type, and PIL's names for them.
IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG"}
JSON_TYPE = "application/json"
MULTIPART_TYPE = "multipart/form-data"
_DTYPES = ("uint8", "float32")
_SIDE = 28

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


async def read_body(headers: dict[str, str], receive: Receive, limit: int) -> bytes:
    """The request body, refused once it is known to exceed ``limit`` bytes.

    A ``Content-Length`` over the limit is refused before anything is read; a body without
    one (chunked) is refused as soon as the bytes received pass the limit.

    Args:
        headers: the request headers, names in lower case.
        receive: the ASGI ``receive`` callable of the request.
        limit: the most bytes taken.

    Raises:
        RequestRejectedError: status 413 (too large) or 400 (a malformed Content-Length).

    Example:
        >>> import asyncio
        >>> async def receive():
        ...     return {"type": "http.request", "body": b"x" * 10, "more_body": False}
        >>> asyncio.run(read_body({}, receive, limit=100))
        b'xxxxxxxxxx'
    """
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise RequestRejectedError(400, f"Content-Length {declared!r} is not a number")
        if int(declared) > limit:
            raise _too_large(limit, int(declared))
    chunks, size = [], 0
    async for chunk in _chunks(receive):
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, None)
        chunks.append(chunk)
    return b"".join(chunks)


async def _chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise RequestRejectedError(400, "the client went away before sending its body")
        yield bytes(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _too_large(limit: int, size: int | None) -> RequestRejectedError:
    body = "the request body" + (f" is {size:,} bytes, over" if size else " passed")
    return RequestRejectedError(
        413,
        f"{body} the server's limit of {limit:,} bytes; send a smaller image (a digit needs "
        "only a few kilobytes) or fewer at once",
    )


def decode_image(data: bytes, name: str, max_pixels: int) -> Any:
    """A PNG or JPEG image from bytes, fully decoded; its size is checked before decoding.

    Args:
        data: the file's bytes.
        name: what to call it in messages (escaped before use).
        max_pixels: the most pixels (width times height) taken.

    Returns:
        The PIL image.

    Raises:
        InvalidImageError: not a PNG or JPEG, damaged, or with more than ``max_pixels``
            pixels (a decompression bomb among them).

    Example:
        >>> from PIL import Image
        >>> buffer = io.BytesIO()
        >>> Image.new("L", (40, 30), 255).save(buffer, format="PNG")
        >>> decode_image(buffer.getvalue(), "white.png", max_pixels=10_000).size
        (40, 30)
    """
    return decode_bounded(
        io.BytesIO(data),
        printable_path(name),
        max_pixels=max_pixels,
        formats=list(IMAGE_TYPES.values()),
        limit_owner="this server decodes (28x28 is what the model sees)",
        kinds="a PNG or JPEG image",
    )


def image_pixels(data: bytes, name: str, info: DatasetInfo, max_pixels: int) -> Tensor:
    """One image file's bytes as checked pixels ``(1, 1, 28, 28)``, prepared for ``info``.

    The preparation is the dataset's, as :func:`lenetish.predict` applies it to a file.

    Raises:
        InvalidImageError: as :func:`decode_image`.
        InvalidInputError: the image holds nothing to classify (one colour); the message
            names it.

    Example:
        >>> from PIL import Image, ImageDraw
        >>> from lenetish.catalog import DATASETS
        >>> digit = Image.new("L", (60, 60), 255)
        >>> ImageDraw.Draw(digit).line((30, 8, 30, 52), fill=0, width=6)
        >>> buffer = io.BytesIO()
        >>> digit.save(buffer, format="PNG")
        >>> pixels = image_pixels(buffer.getvalue(), "one.png", DATASETS["mnist"], 10_000)
        >>> tuple(pixels.shape), pixels.dtype
        ((1, 1, 28, 28), torch.uint8)
    """
    image = decode_image(data, name, max_pixels)
    try:
        return prepare_images(image, info).pixels
    except (InvalidInputError, InputShapeError) as exc:
        raise InvalidInputError(f"{printable_path(name)}: {exc}") from exc


def json_pixels(data: bytes, info: DatasetInfo, max_images: int) -> Tensor:
    """A JSON body ``{"pixels": ..., "dtype": ...}`` as checked pixels ``(N, 1, 28, 28)``.

    Args:
        data: the body.
        info: the model's dataset.
        max_images: the most images taken.

    Raises:
        RequestRejectedError: not JSON, not an object with ``pixels`` and ``dtype`` (status
            400), or more than ``max_images`` images (413).
        InputShapeError: the pixels are not one 28x28 image or a list of them.
        InvalidInputError: values that are not numbers, NaN or infinite, or outside the
            dtype's range (uint8: whole numbers 0-255; float32: 0-1).

    Example:
        >>> from lenetish.catalog import DATASETS
        >>> body = json.dumps({"pixels": [[0] * 28] * 28, "dtype": "uint8"}).encode()
        >>> pixels = json_pixels(body, DATASETS["mnist"], max_images=8)
        >>> tuple(pixels.shape), pixels.dtype
        ((1, 1, 28, 28), torch.uint8)
    """
    try:
        payload = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise RequestRejectedError(400, f"the body is not valid JSON ({exc})") from None
    if not isinstance(payload, dict) or "pixels" not in payload:
        raise RequestRejectedError(
            400,
            'send a JSON object {"pixels": [[...28 numbers...] x 28], "dtype": "uint8"} '
            '(or a list of such images under "pixels")',
        )
    dtype = payload.get("dtype")
    if dtype not in _DTYPES:
        raise RequestRejectedError(
            400,
            f'"dtype" must be "uint8" (whole numbers 0-255) or "float32" (numbers 0-1), got '
            f"{json.dumps(dtype)[:40]}",
        )
    array = _numbers(payload["pixels"])
    if array.ndim == 3 and array.shape[0] > max_images:
        raise RequestRejectedError(
            413, f"{array.shape[0]} images in one request; this server takes at most {max_images}"
        )
    if array.ndim not in (2, 3) or array.shape[-2:] != (_SIDE, _SIDE):
        raise InputShapeError(
            f'"pixels" must be one image of 28 rows of 28 numbers, or a list of such images; '
            f"got shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise InvalidInputError("the pixels contain NaN or infinite values; send numbers only")
    if dtype == "uint8":
        if array.min() < 0 or array.max() > 255 or (array != np.round(array)).any():
            raise InvalidInputError(
                f'"dtype": "uint8" pixels must be whole numbers from 0 to 255, but these range '
                f'from {array.min():.4g} to {array.max():.4g}; send "dtype": "float32" for '
                "values from 0 to 1"
            )
        values = torch.from_numpy(array.astype(np.uint8))
    else:
        if array.min() < 0 or array.max() > 1:
            raise InvalidInputError(
                f'"dtype": "float32" pixels must be from 0 to 1, but these range from '
                f'{array.min():.4g} to {array.max():.4g}; send "dtype": "uint8" for 0-255 values'
            )
        values = torch.from_numpy(array.astype(np.float32))
    return prepare_images(values, info).pixels  # the library's checks, once more


def _numbers(value: Any) -> np.ndarray:
    """Nested JSON lists as a float64 array; anything but numbers in a regular grid refused."""
    if _holds_bool(value):  # numpy would take true as 1 among numbers
        raise InvalidInputError('"pixels" must hold numbers only; found true/false')
    try:
        array = np.asarray(value)
    except (ValueError, RecursionError) as exc:  # ragged lists, or nesting too deep
        raise InputShapeError(
            f'"pixels" must be a regular grid: one image of 28 rows of 28 numbers, or a list '
            f"of such images ({str(exc).splitlines()[0][:80]})"
        ) from None
    if array.dtype.kind not in "iuf":
        raise InvalidInputError(f'"pixels" must hold numbers only; found {_kind_name(array)}')
    return array.astype(np.float64)


def _holds_bool(value: Any) -> bool:
    """Whether nested lists hold ``true`` or ``false`` anywhere (walked without recursion)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, bool):
            return True
        if isinstance(item, list):
            pending.extend(item)
    return False


def _kind_name(array: np.ndarray) -> str:
    kinds = {"b": "true/false", "U": "strings", "O": "null, mixed or out-of-range values"}
    return kinds.get(array.dtype.kind, f"values of type {array.dtype}")
