"""Helpers shared by the serve tests: waiting for a condition, a model held at a gate, raw HTTP."""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from collections.abc import Callable
from typing import Any

from torch import Tensor

from lenetish import MNISTConvNet

#: One blank 28x28 image as the JSON body of POST /predict.
BLANK_PIXELS = json.dumps({"pixels": [[0] * 28] * 28, "dtype": "uint8"}).encode()


def until(condition: Callable[[], bool], what: str, limit_s: float = 60.0) -> None:
    """Return once ``condition()`` holds; fail naming ``what`` if it never does in ``limit_s``.

    The state the condition reads is set by the code under test, so the test goes on as soon
    as it holds: the limit only keeps a broken server from hanging the test run.
    """
    pause = threading.Event()
    for _ in range(int(limit_s / 0.01)):
        if condition():
            return
        pause.wait(0.01)
    raise AssertionError(f"gave up waiting until {what}")


class GatedNet(MNISTConvNet):
    """MNISTConvNet whose forward pass says it began, then waits until the test releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.batches: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.batches.append(int(x.shape[0]))
        self.entered.set()
        self.release.wait(120)
        return super().forward(x)


def address(url: str) -> tuple[str, int]:
    """``(host, port)`` of a server's URL such as ``http://127.0.0.1:8000/``."""
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    return host, int(port)


def post_raw(url: str, body: bytes = BLANK_PIXELS, kind: str = "application/json") -> socket.socket:
    """A socket that has sent ``POST /predict`` with ``body``; the caller reads or closes it."""
    sock = socket.create_connection(address(url), timeout=60)
    host, port = address(url)
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {kind}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of the next answer on ``sock`` (read until its body is in)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            None,
        )
        if length is not None and len(body) >= length:
            break
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def health(url: str) -> dict[str, Any]:
    """GET /health of the server at ``url``."""
    with urllib.request.urlopen(url + "health", timeout=60) as answer:
        result: dict[str, Any] = json.load(answer)
    return result
