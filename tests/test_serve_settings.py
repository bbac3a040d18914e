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


def test_the_default_host_names_are_loopback_names() -> None:
    """By default a request may name the server localhost, 127.0.0.1 or [::1]."""
    assert ServeSettings().host_names == ("localhost", "127.0.0.1", "[::1]")


def test_a_named_host_is_added_to_the_host_names() -> None:
    """A --host that names one address is taken as a Host name too (IPv6 in brackets)."""
    assert ServeSettings(host="192.168.1.5").host_names[-1] == "192.168.1.5"
    assert ServeSettings(host="fe80::1").host_names[-1] == "[fe80::1]"


def test_every_interface_is_no_host_name() -> None:
    """0.0.0.0 is no name a request gives: only the loopback names are taken."""
    assert ServeSettings(host="0.0.0.0").host_names == ("localhost", "127.0.0.1", "[::1]")


def test_allowed_hosts_replace_the_default_names() -> None:
    """allowed_hosts, given as a list or a tuple, are the names taken, lower case."""
    settings = ServeSettings(allowed_hosts=["Digits.LAN", "::1"])  # type: ignore[arg-type]
    assert settings.allowed_hosts == ("Digits.LAN", "::1")
    assert settings.host_names == ("digits.lan", "[::1]")


def test_the_defaults_bound_decoding_and_connections() -> None:
    """4 megapixels per image, two decodes at once, 512 connections, docs pages off."""
    settings = ServeSettings()
    assert (settings.max_image_pixels, settings.max_decodes) == (4_000_000, 2)
    assert (settings.max_connections, settings.max_requests, settings.api_docs) == (512, 64, False)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"host": " "}, "host must name an address"),
        ({"host": None}, "host must name an address, e.g. 127.0.0.1, got None"),
        ({"port": 70000}, "port must be from 0 to 65535, got 70000"),
        ({"port": "8000"}, "port must be an integer from 0 to 65535, got '8000'"),
        ({"port": True}, "port must be an integer from 0 to 65535, got True"),
        ({"max_upload_bytes": 0}, "max_upload_bytes must be a positive integer, got 0"),
        ({"max_image_pixels": -1}, "max_image_pixels must be a positive integer"),
        ({"max_decodes": 0}, "max_decodes must be a positive integer, got 0"),
        ({"max_images": True}, "max_images must be a positive integer, got True"),
        ({"max_batch": 2.5}, "max_batch must be a positive integer, got 2.5"),
        ({"max_batch": "256"}, "max_batch must be a positive integer, got '256'"),
        ({"max_queue": float("nan")}, "max_queue must be a positive integer, got nan"),
        ({"max_queue": 3}, r"max_queue \(3\) must be at least max_images \(64\)"),
        ({"max_requests": 0}, "max_requests must be a positive integer, got 0"),
        ({"max_wait_ms": -1.0}, "max_wait_ms must be from 0 to 1000"),
        ({"max_wait_ms": float("nan")}, "max_wait_ms must be from 0 to 1000"),
        ({"max_wait_ms": "5"}, "max_wait_ms must be from 0 to 1000 .*, got '5'"),
        ({"read_timeout_s": 0.0}, "read_timeout_s must be a positive number"),
        ({"read_timeout_s": "30"}, "read_timeout_s must be a positive number of seconds, got '30'"),
        ({"idle_timeout_s": float("inf")}, "idle_timeout_s must be a positive number of seconds"),
        ({"header_timeout_s": -1}, "header_timeout_s must be a positive number of seconds"),
        ({"shutdown_timeout_s": None}, "shutdown_timeout_s must be a positive number of seconds"),
        ({"threads": 0}, "threads must be a positive integer or None, got 0"),
        ({"threads": "2"}, "threads must be a positive integer or None, got '2'"),
        ({"max_connections": 0}, "max_connections must be a positive integer, got 0"),
        ({"batching": "yes"}, "batching must be True or False, got 'yes'"),
        ({"api_docs": 1}, "api_docs must be True or False, got 1"),
        ({"device": 0}, "device must be None or a device name such as 'cpu' or 'cuda', got 0"),
        ({"allowed_hosts": "localhost"}, "allowed_hosts must be a tuple of host names"),
        ({"allowed_hosts": ("example.org:8000",)}, "without scheme or port .*'example.org:8000'"),
        ({"allowed_hosts": ("http://example.org",)}, "without scheme or port"),
        ({"allowed_hosts": ("[::1]:80",)}, "without scheme or port"),
        ({"allowed_hosts": ("",)}, "without scheme or port"),
    ],
)
def test_a_wrong_value_is_refused_by_name(options: dict[str, object], message: str) -> None:
    """Each setting of the wrong type or out of its range raises InvalidArgumentError naming it."""
    with pytest.raises(InvalidArgumentError, match=message):
        ServeSettings(**options)  # type: ignore[arg-type]
