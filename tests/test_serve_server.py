"""Tests of lenetish.serve.server: the bound socket, the address shown, a server in a thread."""

from __future__ import annotations

import json
import platform
import socket
import threading
import urllib.error
import urllib.request

import pytest
import uvicorn

from lenetish import MNISTConvNet
from lenetish.errors import InvalidArgumentError
from lenetish.serve import ServeSettings, background_server, create_app, listen, run_server
from lenetish.serve.server import address, return_big_buffers
from tests.serve_helpers import GatedNet, health, post_raw, read_answer, until
from tests.serve_helpers import address as address_of


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
        (
            "0.0.0.0",
            "(listening on 0.0.0.0: other machines can connect, with no password; Host names "
            "taken: localhost, 127.0.0.1, [::1] (--allow-host adds one))",
        ),
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


def test_idle_connections_at_the_limit_do_not_block_health() -> None:
    """With max_connections idle sockets held open, /health is still answered 200."""
    app = create_app(MNISTConvNet(), settings=ServeSettings(max_connections=4))
    with background_server(app) as url:
        idle = [socket.create_connection(address_of(url), timeout=30) for _ in range(4)]
        try:
            assert health(url)["status"] == "ok"
        finally:
            for sock in idle:
                sock.close()


def test_a_connection_over_the_limit_while_all_are_busy_gets_a_json_503() -> None:
    """With max_connections=1 and a request in progress, another connection is answered 503."""
    model = GatedNet()
    app = create_app(model, settings=ServeSettings(max_connections=1))
    with background_server(app) as url:
        first = post_raw(url)
        try:
            assert model.entered.wait(60)
            with pytest.raises(urllib.error.HTTPError) as busy:
                urllib.request.urlopen(url + "health", timeout=30)
            assert busy.value.code == 503
            assert json.load(busy.value)["error"].startswith("the server has as many connections")
        finally:
            model.release.set()
            first.close()


def test_a_head_that_stops_halfway_gets_a_json_408() -> None:
    """A client that sends part of its request line is answered 408 at header_timeout_s."""
    app = create_app(MNISTConvNet(), settings=ServeSettings(header_timeout_s=0.2))
    with background_server(app) as url, socket.create_connection(address_of(url), 30) as sock:
        sock.sendall(b"GET /hea")
        status, error = read_answer(sock)
    assert status == 408
    assert error["error"].startswith("the request line and headers did not arrive within 0.2 s")


def test_a_request_that_is_not_http_gets_a_json_400() -> None:
    """The server's own 400 for unparsable bytes is a JSON error, not uvicorn's plain text."""
    with (
        background_server(create_app(MNISTConvNet())) as url,
        socket.create_connection(address_of(url), timeout=30) as sock,
    ):
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, error = read_answer(sock)
    assert (status, error["type"]) == (400, "RequestRejectedError")


def test_a_client_that_leaves_before_its_pass_is_never_run() -> None:
    """A request whose client disconnects while it waits for the model is dropped."""
    model = GatedNet()
    with background_server(create_app(model)) as url:
        first = post_raw(url)
        try:
            assert model.entered.wait(60)  # the model is busy with the first request
            second = post_raw(url)
            until(lambda: health(url)["waiting"] == 1, "the second request is queued")
            second.close()
            until(lambda: health(url)["dropped"] == 1, "the second request is dropped")
        finally:
            model.release.set()
        assert read_answer(first)[0] == 200
        first.close()
        assert health(url)["images"] == 1
    assert model.batches == [1]


def test_a_request_still_running_at_the_grace_limit_gets_a_json_503() -> None:
    """Stopping with a request in the model past shutdown_timeout_s answers it 503 in JSON."""
    model = GatedNet()
    app = create_app(model, settings=ServeSettings(shutdown_timeout_s=0.1))
    answers: list[tuple[int, dict[str, object]]] = []

    def read_then_release(sock: socket.socket) -> None:
        try:
            answers.append(read_answer(sock))
        finally:
            model.release.set()  # the model's thread may finish once the answer is in

    with background_server(app) as url:
        sock = post_raw(url)
        assert model.entered.wait(60)
        reader = threading.Thread(target=read_then_release, args=(sock,))
        reader.start()
    reader.join(60)
    sock.close()
    status, error = answers[0]
    assert status == 503
    assert str(error["error"]).startswith("the server stopped before this request was answered")


def test_big_buffers_are_given_back_with_glibc() -> None:
    """Under glibc, return_big_buffers fixes malloc's mapping threshold (mallopt succeeds)."""
    if platform.libc_ver()[0] != "glibc":
        pytest.skip(f"the C library is {platform.libc_ver()[0] or 'unknown'}, not glibc")
    assert return_big_buffers()
