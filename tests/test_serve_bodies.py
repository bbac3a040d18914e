"""Tests of lenetish.serve.bodies: bounded reading, PNG/JPEG decoding and JSON pixel arrays."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import zlib
from typing import Any

import pytest
import torch
from PIL import Image, ImageDraw

from lenetish.catalog import DATASETS
from lenetish.errors import (
    InputShapeError,
    InvalidImageError,
    InvalidInputError,
    RequestRejectedError,
)
from lenetish.evaluation.prepare import mnistify
from lenetish.serve.bodies import decode_image, image_pixels, json_pixels, read_body

MNIST = DATASETS["mnist"]


def _receiver(*chunks: bytes) -> Any:
    """An ASGI receive callable sending ``chunks`` as the body."""
    messages = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return receive


def _seven() -> Image.Image:
    """A dark seven on white paper, 60x60."""
    seven = Image.new("L", (60, 60), 255)
    ImageDraw.Draw(seven).line((12, 10, 48, 10, 24, 52), fill=0, width=6)
    return seven


def _encoded(image: Image.Image, kind: str = "PNG", **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kind, **options)
    return buffer.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def _json(pixels: Any, dtype: Any = "uint8") -> bytes:
    return json.dumps({"pixels": pixels, "dtype": dtype}).encode()


def test_a_body_within_the_limit_is_read_whole() -> None:
    """A chunked body under the limit arrives joined."""
    body = asyncio.run(read_body({}, _receiver(b"ab", b"cd"), limit=10))
    assert body == b"abcd"


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    """Content-Length over the limit is refused with 413 without calling receive."""

    async def receive() -> dict[str, Any]:
        raise AssertionError("the body was read")

    with pytest.raises(RequestRejectedError, match="over the server's limit of 100 bytes") as no:
        asyncio.run(read_body({"content-length": "101"}, receive, limit=100))
    assert no.value.status == 413


def test_an_undeclared_body_is_refused_once_past_the_limit() -> None:
    """A chunked body is refused as soon as its bytes pass the limit."""
    with pytest.raises(
        RequestRejectedError, match="the request body passed the server's limit of 10 bytes"
    ):
        asyncio.run(read_body({}, _receiver(b"x" * 8, b"x" * 8, b"x" * 8), limit=10))


def test_a_malformed_content_length_is_refused() -> None:
    """A Content-Length that is not a number is a 400."""
    with pytest.raises(RequestRejectedError, match="Content-Length '-5' is not a number"):
        asyncio.run(read_body({"content-length": "-5"}, _receiver(b""), limit=10))


def test_a_png_is_decoded() -> None:
    """PNG bytes become the PIL image."""
    assert decode_image(_encoded(_seven()), "seven.png", max_pixels=10_000).size == (60, 60)


def test_bytes_that_are_no_image_are_refused() -> None:
    """Text is not a PNG or JPEG."""
    with pytest.raises(InvalidImageError, match=r"notes\.txt is not a PNG or JPEG image"):
        decode_image(b"hello, world", "notes.txt", max_pixels=10_000)


def test_formats_other_than_png_and_jpeg_are_refused() -> None:
    """A GIF is refused like any other non-PNG, non-JPEG file."""
    with pytest.raises(InvalidImageError, match="is not a PNG or JPEG image"):
        decode_image(_encoded(_seven(), "GIF"), "seven.gif", max_pixels=10_000)


def test_a_truncated_png_is_refused() -> None:
    """A PNG cut short cannot be read."""
    data = _encoded(_seven())
    with pytest.raises(InvalidImageError, match=r"cut\.png cannot be read as an image"):
        decode_image(data[: len(data) // 2], "cut.png", max_pixels=10_000)


def test_a_decompression_bomb_is_refused_before_decoding() -> None:
    """A tiny file claiming 8,000 x 8,000 pixels is refused from its header."""
    with pytest.raises(InvalidImageError, match=r"bomb\.png is 8000x8000 pixels, more than"):
        decode_image(_png_claiming(8_000, 8_000), "bomb.png", max_pixels=20_000_000)


def test_a_file_over_pils_own_bomb_limit_is_refused() -> None:
    """A header claiming 100,000 x 100,000 pixels is refused by PIL's guard, as an image error."""
    with pytest.raises(InvalidImageError, match=r"bomb\.png decodes to too many pixels"):
        decode_image(_png_claiming(100_000, 100_000), "bomb.png", max_pixels=20_000_000)


def test_an_image_over_the_pixel_limit_is_refused() -> None:
    """A real image with more pixels than the limit is refused."""
    with pytest.raises(InvalidImageError, match="is 60x60 pixels, more than the 1,000"):
        decode_image(_encoded(_seven()), "seven.png", max_pixels=1_000)


def test_an_image_is_prepared_the_way_predict_prepares_files() -> None:
    """Decoded images go through the dataset's preparation (mnistify for digits)."""
    pixels = image_pixels(_encoded(_seven()), "seven.png", MNIST, max_pixels=10_000)
    assert torch.equal(pixels[0, 0], mnistify(_seven()))


def test_the_exif_orientation_is_applied() -> None:
    """A JPEG stored sideways with an orientation tag is prepared upright."""
    upright = _encoded(_seven().convert("RGB"), "JPEG", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: shown after a quarter turn clockwise
    sideways = _seven().convert("RGB").transpose(Image.Transpose.ROTATE_90)
    tagged = _encoded(sideways, "JPEG", quality=95, exif=exif.tobytes())
    straight = image_pixels(upright, "upright.jpg", MNIST, max_pixels=10_000).float()
    turned = image_pixels(tagged, "tagged.jpg", MNIST, max_pixels=10_000).float()
    assert (straight - turned).abs().mean() < 10


def test_a_blank_image_is_refused_by_name() -> None:
    """An image of one colour holds nothing to classify; the error names it."""
    with pytest.raises(InvalidInputError, match=r"blank\.png: the image is of one colour"):
        image_pixels(_encoded(Image.new("L", (20, 20), 255)), "blank.png", MNIST, 10_000)


def test_json_pixels_of_one_image() -> None:
    """One 28x28 uint8 image gives a batch of one."""
    pixels = json_pixels(_json([[0] * 28] * 28), MNIST, max_images=4)
    assert (tuple(pixels.shape), pixels.dtype) == ((1, 1, 28, 28), torch.uint8)


def test_json_pixels_of_several_float_images() -> None:
    """A list of 28x28 float32 images in [0, 1] gives a float batch."""
    pixels = json_pixels(_json([[[0.5] * 28] * 28] * 3, "float32"), MNIST, max_images=4)
    assert (tuple(pixels.shape), pixels.dtype) == ((3, 1, 28, 28), torch.float32)


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        (b"{not json", RequestRejectedError, "the body is not valid JSON"),
        (b"[1, 2]", RequestRejectedError, 'send a JSON object {"pixels"'),
        (_json([[0] * 28] * 28, None), RequestRejectedError, '"dtype" must be "uint8"'),
        (_json([[0] * 27] * 28), InputShapeError, r"got shape \(28, 27\)"),
        (_json([[0] * 28] * 27 + [[0] * 5]), InputShapeError, "must be a regular grid"),
        (_json([["a"] * 28] * 28), InvalidInputError, "must hold numbers only; found strings"),
        (_json([[None] * 28] * 28), InvalidInputError, "found null"),
        (_json([[True] * 28] * 28), InvalidInputError, "found true/false"),
        (_json([[0] * 27 + [True]] * 28), InvalidInputError, "numbers only; found true/false"),
        (_json([[0.0] * 27 + [False]] * 28, "float32"), InvalidInputError, "found true/false"),
        (_json([[300] * 28] * 28), InvalidInputError, "whole numbers from 0 to 255"),
        (_json([[0.5] * 28] * 28), InvalidInputError, 'send "dtype": "float32"'),
        (_json([[2.0] * 28] * 28, "float32"), InvalidInputError, "must be from 0 to 1"),
        (b'{"pixels": [[NaN]], "dtype": "float32"}', InputShapeError, "got shape"),
        (
            b'{"dtype": "uint8", "pixels": ['
            + b",".join([b"[" + b",".join([b"NaN"] * 28) + b"]"] * 28)
            + b"]}",
            InvalidInputError,
            "NaN or infinite",
        ),
        (_json([[[0] * 28] * 28] * 5), RequestRejectedError, "5 images in one request"),
    ],
)
def test_bad_json_is_refused_with_a_reason(
    body: bytes, error: type[Exception], message: str
) -> None:
    """Each malformed JSON body raises the named error saying what was wrong."""
    with pytest.raises(error, match=message):
        json_pixels(body, MNIST, max_images=4)
