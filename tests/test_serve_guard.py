"""Tests of lenetish.serve.guard: Host names, cross-site form posts, answers cut by shutdown."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lenetish import MNISTConvNet
from lenetish.serve import ServeSettings, create_app
from lenetish.serve.guard import RequestGuard, error_body, host_of

ONE_PIXELS = {"pixels": [[0] * 28] * 28, "dtype": "uint8"}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """A client of a service with an untrained network, on loopback's default names."""
    app = create_app(MNISTConvNet(), settings=ServeSettings(max_image_pixels=10_000))
    with TestClient(app, base_url="http://localhost:8000", raise_server_exceptions=False) as c:
        yield c


def _json_error(answer: Any) -> str:
    """The message of a one-line JSON error, checked to be one."""
    error = answer.json()
    assert set(error) == {"error", "type"} and "\n" not in error["error"]
    assert error["type"] == "RequestRejectedError"
    return str(error["error"])


def test_a_foreign_host_name_is_refused_with_421(client: TestClient) -> None:
    """A Host naming another site (DNS rebinding) is answered 421, naming what is taken."""
    answer = client.get("/health", headers={"host": "attacker.example:8000"})
    assert answer.status_code == 421
    assert _json_error(answer).startswith(
        'this server does not answer to the Host name "attacker.example:8000" (it takes: '
        "localhost, 127.0.0.1, [::1]); open it by one of those names, or start it with "
        "--allow-host NAME"
    )


def test_a_request_without_host_is_refused(client: TestClient) -> None:
    """A request with no Host header names no allowed host: 421."""
    answer = client.get("/health", headers={"host": ""})
    assert answer.status_code == 421
    assert "the Host name none" in _json_error(answer)


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:1", "127.0.0.1:65535", "[::1]:80"])
def test_loopback_names_with_any_port_are_served(client: TestClient, host: str) -> None:
    """localhost, 127.0.0.1 and [::1] are taken by default, with or without a port."""
    assert client.get("/health", headers={"host": host}).status_code == 200


def test_allowed_hosts_replaces_the_default_names() -> None:
    """allowed_hosts=("digits.lan",) takes that name, and no longer localhost."""
    app = create_app(MNISTConvNet(), settings=ServeSettings(allowed_hosts=("digits.lan",)))
    with TestClient(app, base_url="http://digits.lan:8000") as client:
        assert client.get("/health").status_code == 200
        assert client.get("/health", headers={"host": "localhost"}).status_code == 421


def test_a_star_takes_every_host_name() -> None:
    """allowed_hosts=("*",) turns the check off."""
    app = create_app(MNISTConvNet(), settings=ServeSettings(allowed_hosts=("*",)))
    with TestClient(app, base_url="http://anything.example") as client:
        assert client.get("/health").status_code == 200


@pytest.mark.parametrize(
    "kind",
    ["multipart/form-data; boundary=b", "application/x-www-form-urlencoded", "text/plain", None],
)
def test_a_form_post_without_the_header_is_refused(client: TestClient, kind: str | None) -> None:
    """Posts any web page could send cross-site are refused with 403 unless marked."""
    headers = {} if kind is None else {"content-type": kind}
    answer = client.post("/predict", content=b"--b--\r\n", headers=headers)
    assert answer.status_code == 403
    assert "without an X-Requested-With header is refused" in _json_error(answer)


def test_a_form_post_from_another_origin_is_refused(client: TestClient) -> None:
    """An Origin of another site does not let a form post in."""
    headers = {"content-type": "text/plain", "origin": "http://attacker.example"}
    assert client.post("/predict", content=b"7", headers=headers).status_code == 403


def test_a_form_post_with_x_requested_with_reaches_the_route(client: TestClient) -> None:
    """X-Requested-With (any value) lets a form post through to /predict's own checks."""
    headers = {"content-type": "text/plain", "x-requested-with": "curl"}
    answer = client.post("/predict", content=b"7", headers=headers)
    assert answer.status_code == 415  # /predict's answer: the guard let it in


def test_a_form_post_from_the_server_own_origin_reaches_the_route(client: TestClient) -> None:
    """A post whose Origin is this server (its own page) is let in."""
    headers = {"content-type": "text/plain", "origin": "http://localhost:8000"}
    assert client.post("/predict", content=b"7", headers=headers).status_code == 415


def test_json_posts_need_no_header(client: TestClient) -> None:
    """JSON is no form type (a browser asks the server before sending it cross-site)."""
    assert client.post("/predict", json=ONE_PIXELS).status_code == 200


def test_a_head_over_the_limit_is_refused_with_431(client: TestClient) -> None:
    """Request line and headers over 16 KiB in all are answered 431."""
    answer = client.get("/health", headers={"x-filler": "a" * 17_000})
    assert answer.status_code == 431
    assert "over 16,384 bytes" in _json_error(answer)


def test_a_request_cancelled_by_shutdown_gets_a_json_503() -> None:
    """A request the stopping server cancels is answered 503 with a JSON error, not a 500."""

    async def cancelled(scope: Any, receive: Any, send: Any) -> None:
        raise asyncio.CancelledError

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/health",
        "headers": [(b"host", b"[::1]:8000")],
    }
    guard = RequestGuard(cancelled, names=("[::1]",))
    asyncio.run(guard(scope, None, send))  # type: ignore[arg-type]
    assert sent[0]["status"] == 503
    assert (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["error"].startswith(
        "the server stopped before this request was answered"
    )


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("localhost", "localhost"),
        ("Example.ORG.:8080", "example.org"),
        ("[::1]:8000", "[::1]"),
        ("localhost:http", None),
        ("[::1", None),
        ("", None),
    ],
)
def test_host_of_takes_the_name_and_drops_the_port(header: str, name: str | None) -> None:
    """host_of lower-cases, drops the port and a final dot, and refuses malformed headers."""
    assert host_of(header) == name


def test_error_body_is_one_line_of_json() -> None:
    """error_body gives the same JSON the application's errors have."""
    assert json.loads(error_body("a\nb")) == {"error": "a\nb", "type": "RequestRejectedError"}
    assert b"\n" not in error_body("a\nb")
