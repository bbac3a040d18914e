"""Tests of lenetish.serve.settings: the defaults of lenetish serve and their checks."""

from __future__ import annotations

import pytest

from lenetish.errors import InvalidArgumentError
from lenetish.serve.settings import ServeSettings


def test_the_default_host_is_loopback() -> None:
    """Out of the box only this machine can connect."""
    assert ServeSettings().host == "127.0.0.1"
    assert ServeSettings().is_loopback


def test_every_interface_is_not_loopback() -> None:
    """0.0.0.0 opens the server to other machines, and is not called loopback."""
    assert not ServeSettings(host="0.0.0.0").is_loopback


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"host": " "}, "host must name an address"),
        ({"port": 70000}, "port must be from 0 to 65535, got 70000"),
        ({"max_upload_bytes": 0}, "max_upload_bytes must be a positive integer, got 0"),
        ({"max_image_pixels": -1}, "max_image_pixels must be a positive integer"),
        ({"max_images": True}, "max_images must be a positive integer, got True"),
        ({"max_batch": 2.5}, "max_batch must be a positive integer, got 2.5"),
        ({"max_queue": 3}, r"max_queue \(3\) must be at least max_images \(64\)"),
        ({"max_wait_ms": -1.0}, "max_wait_ms must be from 0 to 1000"),
        ({"max_wait_ms": float("nan")}, "max_wait_ms must be from 0 to 1000"),
        ({"read_timeout_s": 0.0}, "read_timeout_s must be a positive number"),
        ({"threads": 0}, "threads must be a positive integer or None, got 0"),
        ({"max_connections": 0}, "max_connections must be a positive integer, got 0"),
    ],
)
def test_a_value_out_of_range_is_refused(options: dict[str, object], message: str) -> None:
    """Each setting out of its range raises InvalidArgumentError naming it."""
    with pytest.raises(InvalidArgumentError, match=message):
        ServeSettings(**options)  # type: ignore[arg-type]
