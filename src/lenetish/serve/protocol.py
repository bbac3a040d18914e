"""Connections of ``lenetish serve``: a bounded number open, idle and header deadlines, JSON errors.

uvicorn's HTTP/1.1 protocol (h11) with four changes, so that clients which hold sockets open
cannot starve the others:

* at most ``max_connections`` open: a new connection beyond it closes the one that has waited
  longest for its next request (idle, or still sending its head), once that one has had
  ``fresh_s`` to send it. A burst of newcomers may so go over the limit, up to twice it; past
  that the longest waiting one is closed however fresh. Only when every connection has a
  request in progress is a newcomer answered 503. uvicorn's own limit counts idle
  connections as busy and answers every request 503 while they stay open.
* a connection with no request in progress that sends nothing for ``idle_timeout_s`` is
  closed (uvicorn times out kept-alive connections only, never a fresh one);
* a request's line and headers must arrive within ``header_timeout_s`` of the server starting
  to wait for them, however slowly the bytes trickle in (uvicorn has no such deadline: a head
  sent a byte at a time held its connection for ever); heads over ``max_head_bytes`` are
  refused (431);
* the answers the protocol itself gives (400 for a request that is not HTTP, 408, 431, 503)
  are one-line JSON errors like the application's, not plain text.
"""

from __future__ import annotations

import asyncio
import http
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from lenetish.serve.guard import MAX_HEAD_BYTES, Receive, Scope, Send, error_body, send_error

if TYPE_CHECKING:
    from uvicorn.protocols.http.h11_impl import RequestResponseCycle

__all__ = ["ConnectionLimits", "LimitedH11Protocol", "protocol_for"]


@dataclass(frozen=True)
class ConnectionLimits:
    """The bounds a :class:`LimitedH11Protocol` keeps (see :class:`ServeSettings`)."""

    max_connections: int = 512
    idle_timeout_s: float = 5.0
    header_timeout_s: float = 10.0
    max_head_bytes: int = MAX_HEAD_BYTES
    #: A connection this new is not closed for a newcomer until the count doubles: a burst of
    #: connections (accepted together) would otherwise close each other before any sends.
    fresh_s: float = 1.0


def _answer(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 answer with a JSON error, for writing straight to the socket."""
    body = error_body(message)
    phrase = http.HTTPStatus(status).phrase
    head = (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a connection limit, idle and header deadlines, JSON errors.

    Subclass it with :func:`protocol_for`, which sets :attr:`limits`; uvicorn creates one
    instance per connection (``uvicorn.Config(http=protocol_for(limits))``).
    """

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_head_bytes)
        self._idle_timer: asyncio.TimerHandle | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._waiting_since: float | None = None  # loop time; None while a request runs
        self._head_begun = False  # a byte of the awaited request arrived
        self._awaited: RequestResponseCycle | None = None  # the cycle before the awaited one

    @property
    def waiting_since(self) -> float | None:
        """Loop time since which the connection waits for a request; ``None`` while one runs."""
        return self._waiting_since

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Count the connection, make room for it if needed, and start its deadlines."""
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._make_room()
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the deadlines, then let uvicorn wind the connection up."""
        self._stop_timers()
        self._waiting_since = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed h11; the idle deadline ends with the first byte, the header one with the head."""
        if self._waiting_since is not None and data and not self._head_begun:
            self._head_begun = True
            if self._idle_timer is not None:
                self._idle_timer.cancel()
        super().data_received(data)
        self._check_head()

    def on_response_complete(self) -> None:
        """Wait for the next request (its deadlines start now), then let uvicorn go on."""
        self._await_head()  # first: uvicorn may start a pipelined request at once
        super().on_response_complete()
        self._check_head()

    def send_400_response(self, msg: str) -> None:
        """Answer a request h11 cannot parse with a JSON 400 (or 431: its head is too long)."""
        cycle = self.cycle
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            self.transport.close()  # an answer is half sent: nothing more can be said
            return
        if len(self.conn.trailing_data[0]) > self.limits.max_head_bytes:
            answer = _answer(
                431,
                f"the request line and headers are over {self.limits.max_head_bytes:,} "
                "bytes; send fewer or shorter headers",
            )
        else:
            answer = _answer(
                400,
                "the request is not valid HTTP/1.1 (a malformed request line or header, or a "
                "missing Host header); check what the client sends",
            )
        self.transport.write(answer)
        self.transport.close()

    def _make_room(self) -> None:
        """Over the limit: close the connection waiting longest, or answer this one busy."""
        live = [
            other
            for other in self.connections
            if isinstance(other, LimitedH11Protocol) and not other.transport.is_closing()
        ]
        if len(live) <= self.limits.max_connections:
            return
        waiting = [other for other in live if other is not self and other.waiting_since is not None]
        if not waiting:
            self.app = _busy  # every connection has a request running: answer 503
            return
        oldest = min(waiting, key=lambda other: other.waiting_since or 0.0)
        waited = self.loop.time() - (oldest.waiting_since or 0.0)
        if waited >= self.limits.fresh_s or len(live) > 2 * self.limits.max_connections:
            oldest.transport.close()  # as an idle keep-alive timeout: clients open a new one

    def _await_head(self) -> None:
        """Start waiting for a request: the idle and header deadlines run from now."""
        self._stop_timers()
        if self.transport.is_closing():
            return
        self._waiting_since = self.loop.time()
        self._head_begun = False
        self._awaited = self.cycle
        self._idle_timer = self.loop.call_later(self.limits.idle_timeout_s, self._idle_expired)
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_expired)

    def _check_head(self) -> None:
        """A new request began (uvicorn made a new cycle): its head arrived in time."""
        if self._waiting_since is not None and self.cycle is not self._awaited:
            self._waiting_since = None
            self._stop_timers()

    def _stop_timers(self) -> None:
        for timer in (self._idle_timer, self._head_timer):
            if timer is not None:
                timer.cancel()
        self._idle_timer = self._head_timer = None

    def _idle_expired(self) -> None:
        if self._waiting_since is not None and not self._head_begun:
            self.transport.close()  # nothing sent: close quietly, as keep-alive timeouts do

    def _head_expired(self) -> None:
        if self._waiting_since is None or self.transport.is_closing():
            return
        if self._head_begun:
            self.transport.write(
                _answer(
                    408,
                    f"the request line and headers did not arrive within "
                    f"{self.limits.header_timeout_s:g} s; send them at once",
                )
            )
        self.transport.close()


async def _busy(scope: Scope, receive: Receive, send: Send) -> None:
    """The answer on a connection over the limit while every other one has a request running."""
    await send_error(
        send,
        503,
        "the server has as many connections as it takes, each with a request in progress; "
        "try again in a moment",
        close=True,
    )


def protocol_for(limits: ConnectionLimits) -> type[LimitedH11Protocol]:
    """A :class:`LimitedH11Protocol` class keeping ``limits``, for ``uvicorn.Config(http=...)``.

    Example:
        >>> protocol_for(ConnectionLimits(max_connections=8)).limits.max_connections
        8
    """

    class Limited(LimitedH11Protocol):
        pass

    Limited.limits = limits
    return Limited
