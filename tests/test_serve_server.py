"""Tests of lenetish.serve.server: the bound socket, the address shown, a server in a thread."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest
import uvicorn

from lenetish import MNISTConvNet
from lenetish.errors import InvalidArgumentError
from lenetish.serve import ServeSettings, background_server, create_app, listen, run_server
from lenetish.serve.server import address


def test_port_zero_gives_a_free_port() -> None:
    """listen(host, 0) binds a port the system chose, and listens on it."""
    sock = listen("127.0.0.1", 0)
    try:
        assert sock.getsockname()[1] > 0
        socket.create_connection(sock.getsockname()[:2], timeout=5).close()
    finally:
        sock.close()


def test_a_port_in_use_is_a_one_line_error() -> None:
    """Binding a port another socket holds raises InvalidArgumentError saying what to do."""
    taken = listen("127.0.0.1", 0)
    port = taken.getsockname()[1]
    try:
        with pytest.raises(
            InvalidArgumentError, match=f"cannot listen on 127.0.0.1:{port}: .*--port"
        ):
            listen("127.0.0.1", port)
    finally:
        taken.close()


def test_a_host_that_does_not_resolve_is_refused() -> None:
    """A host name with no address raises InvalidArgumentError naming it."""
    with pytest.raises(InvalidArgumentError, match=r"cannot listen on no-such-host\.invalid"):
        listen("no-such-host.invalid", 0)


def test_the_address_of_every_interface_is_shown_as_loopback() -> None:
    """A server on 0.0.0.0 is shown with the URL a browser on this machine opens."""
    sock = listen("0.0.0.0", 0)
    try:
        assert address(sock) == f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        sock.close()


def test_a_background_server_answers_over_http() -> None:
    """background_server serves the app on loopback while the block runs."""
    with (
        background_server(create_app(MNISTConvNet())) as url,
        urllib.request.urlopen(url + "health", timeout=30) as answer,
    ):
        assert json.load(answer)["status"] == "ok"
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "health", timeout=5)


@pytest.mark.parametrize(
    ("host", "said"),
    [
        ("127.0.0.1", "(loopback: only this machine can connect; --host 0.0.0.0 opens it"),
        ("0.0.0.0", "(listening on 0.0.0.0: other machines can connect, with no password)"),
    ],
)
def test_the_start_line_says_who_can_connect(
    monkeypatch: pytest.MonkeyPatch, host: str, said: str
) -> None:
    """run_server says in one line where it listens and whether other machines can connect."""
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: None)
    lines: list[str] = []
    sock = listen(host, 0)
    try:
        run_server(create_app(MNISTConvNet()), sock, what="a net", say=lines.append)
    finally:
        sock.close()
    assert len(lines) == 1
    assert lines[0].startswith("lenetish serve: a net at http://127.0.0.1:")
    assert said in lines[0]


def test_connections_beyond_max_connections_get_503() -> None:
    """With max_connections=1, a second connection is answered busy while the first is open."""
    app = create_app(MNISTConvNet(), settings=ServeSettings(max_connections=1))
    with background_server(app) as url:
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        with socket.create_connection((host, int(port)), timeout=30):
            with pytest.raises(urllib.error.HTTPError) as busy:
                urllib.request.urlopen(url + "health", timeout=30)
            assert busy.value.code == 503
