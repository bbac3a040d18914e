"""Tests of lenetish.serve.protocol on a clock the test moves: deadlines, the limit, JSON errors.

uvicorn makes one protocol object per connection; here each one gets a recording transport
and a loop whose timers run only when the test says so, so no test waits or races.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from lenetish.serve.protocol import ConnectionLimits, LimitedH11Protocol, protocol_for

LIMITS = ConnectionLimits(
    max_connections=2, idle_timeout_s=5.0, header_timeout_s=10.0, max_head_bytes=1024
)


class Timer:
    """A timer of :class:`Clock`: runs when the clock passes its time, unless cancelled."""

    def __init__(self, when: float, callback: Callable[..., object], args: tuple[Any, ...]):
        self.when, self.callback, self.args, self.cancelled = when, callback, args, False

    def cancel(self) -> None:
        self.cancelled = True


class Task:
    """What :meth:`Clock.create_task` gives: a request the test runs itself (or never)."""

    def __init__(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self.coroutine = coroutine

    def add_done_callback(self, callback: Callable[..., object]) -> None:
        pass


class Clock:
    """The parts of an event loop the protocol uses, with time moved by :meth:`advance`."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[Timer] = []
        self.tasks: list[Task] = []

    def create_task(self, coroutine: Coroutine[Any, Any, None], **_: Any) -> Task:
        self.tasks.append(Task(coroutine))
        return self.tasks[-1]

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Timer:
        timer = Timer(self.now + delay, callback, args)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        """Move time on, running the timers that come due, in order."""
        self.now += seconds
        for timer in sorted(self.timers, key=lambda timer: timer.when):
            if timer.when <= self.now and not timer.cancelled:
                timer.cancelled = True
                timer.callback(*timer.args)


class Transport:
    """A socket that records what is written, and whether it was closed."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _connect(
    clock: Clock, state: ServerState, limits: ConnectionLimits = LIMITS
) -> tuple[LimitedH11Protocol, Transport]:
    """A new connection to a server sharing ``state``."""
    config = uvicorn.Config(_app, http=protocol_for(limits), log_level="critical")
    config.load()
    protocol = protocol_for(limits)(
        config=config,
        server_state=state,
        app_state={},
        _loop=clock,  # type: ignore[arg-type]
    )
    transport = Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, transport


def _error(transport: Transport) -> tuple[int, str]:
    """The status and JSON message written to ``transport``."""
    head, _, body = transport.written.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head
    return int(head.split()[1]), str(json.loads(body)["error"])


def test_an_idle_connection_is_closed_quietly_after_idle_timeout() -> None:
    """A connection that sends nothing is closed after idle_timeout_s, with no answer."""
    clock = Clock()
    _, transport = _connect(clock, ServerState())
    clock.advance(4.9)
    assert not transport.closed
    clock.advance(0.2)
    assert transport.closed and transport.written == b""


def test_a_head_trickling_in_is_cut_at_the_header_deadline() -> None:
    """Bytes of a head arriving every 2 s do not move its deadline: 408 at header_timeout_s."""
    clock = Clock()
    protocol, transport = _connect(clock, ServerState())
    for byte in b"GET /health HTTP/1.1\r\n":
        if transport.closed:
            break
        protocol.data_received(bytes([byte]))
        clock.advance(2.0)
    assert transport.closed and clock.now <= 12.0
    status, message = _error(transport)
    assert (status, message) == (
        408,
        "the request line and headers did not arrive within 10 s; send them at once",
    )


def test_a_garbled_request_gets_a_json_400() -> None:
    """Bytes that are no HTTP request are answered with a one-line JSON 400."""
    clock = Clock()
    protocol, transport = _connect(clock, ServerState())
    protocol.data_received(b"\x16\x03\x01 not http\r\n\r\n")
    assert transport.closed
    status, message = _error(transport)
    assert status == 400 and message.startswith("the request is not valid HTTP/1.1")


def test_a_head_over_the_limit_arriving_in_pieces_gets_431() -> None:
    """A head that grows past max_head_bytes before it ends is answered 431 in JSON."""
    clock = Clock()
    protocol, transport = _connect(clock, ServerState())
    protocol.data_received(b"GET / HTTP/1.1\r\nx-filler: " + b"a" * 2048)
    status, message = _error(transport)
    assert (status, message) == (
        431,
        "the request line and headers are over 1,024 bytes; send fewer or shorter headers",
    )


def test_a_connection_beyond_the_limit_closes_the_longest_waiting() -> None:
    """With two connections idle, a third closes the one idle longest, not the newer one."""
    clock, state = Clock(), ServerState()
    _, first = _connect(clock, state)
    clock.advance(2.0)
    _, second = _connect(clock, state)
    _, third = _connect(clock, state)
    assert (first.closed, second.closed, third.closed) == (True, False, False)


def test_fresh_connections_are_kept_up_to_twice_the_limit() -> None:
    """A burst of new connections is kept over the limit until it doubles, then trimmed."""
    clock, state = Clock(), ServerState()
    burst = []
    for _ in range(4):  # twice max_connections, each under fresh_s old
        burst.append(_connect(clock, state)[1])
        clock.advance(0.1)
    assert not any(transport.closed for transport in burst)
    _connect(clock, state)
    assert [transport.closed for transport in burst] == [True, False, False, False]


def test_a_connection_beyond_the_limit_while_all_are_busy_gets_503() -> None:
    """When every connection has a request in progress, the newcomer is answered 503."""
    clock, state = Clock(), ServerState()
    busy = [_connect(clock, state) for _ in range(2)]
    for protocol, _ in busy:  # a POST whose body has not come: its request is in progress
        protocol.data_received(b"POST /predict HTTP/1.1\r\nhost: x\r\ncontent-length: 9\r\n\r\n")
    late, transport = _connect(clock, state)
    late.data_received(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
    for task in clock.tasks[:-1]:
        task.coroutine.close()  # the busy requests never finish
    asyncio.run(clock.tasks[-1].coroutine)  # the newcomer's request: answered at once
    assert not any(other.closed for _, other in busy)
    head, _, body = transport.written.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert json.loads(body)["error"].startswith("the server has as many connections as it takes")
