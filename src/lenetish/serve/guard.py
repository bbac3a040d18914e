"""What every request of ``lenetish serve`` passes first: its Host name, cross-site forms, shutdown.

:class:`RequestGuard` wraps the whole application (an ASGI middleware):

* a request whose ``Host`` header is not one of the server's names is refused with 421. A web
  page can point a name of its own at this machine's address (DNS rebinding) and then read
  and post here as if it came from the same site; its requests still carry its own name.
* a form post (``multipart/form-data``, ``application/x-www-form-urlencoded``, ``text/plain``
  or no type: what any web page may post to any site without asking first) is refused with
  403 unless it carries an ``X-Requested-With`` header or an ``Origin`` of this server. A
  page elsewhere cannot add that header without the server's consent (which it never gives),
  so it cannot post forms here in the user's name; this server's page and scripts can.
* a request still running when a stopping server's grace time is up is answered 503, as
  JSON like every other refusal, instead of a plain 500 and a traceback per request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["FORM_TYPES", "MAX_HEAD_BYTES", "RequestGuard", "error_body", "host_of", "send_error"]

logger = logging.getLogger("lenetish")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The longest request line and headers taken, in bytes (h11's default buffer; more: 431).
MAX_HEAD_BYTES = 16 * 1024
#: Content types a page on any site may post here without the browser asking first.
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded", "text/plain", "")
_KIND = "RequestRejectedError"


def error_body(message: str, kind: str = _KIND) -> bytes:
    """The JSON of a refused request: ``{"error": message, "type": kind}``, one line.

    Example:
        >>> error_body("too large")
        b'{"error":"too large","type":"RequestRejectedError"}'
    """
    return json.dumps({"error": message, "type": kind}, separators=(",", ":")).encode()


async def send_error(send: Send, status: int, message: str, *, close: bool = False) -> None:
    """Answer ``status`` with the JSON error ``message`` (and close the connection after it)."""
    body = error_body(message)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def host_of(header: str) -> str | None:
    """The name in a ``Host`` header, lower case, without its port (``None``: malformed).

    Example:
        >>> host_of("LocalHost:8000"), host_of("[::1]:80"), host_of("a:b")
        ('localhost', '[::1]', None)
    """
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        name, port = (value[: end + 1], value[end + 1 :]) if end > 0 else ("", "")
    else:
        name, colon, digits = value.partition(":")
        port = colon + digits
    if not name or (port and not (port[0] == ":" and port[1:].isdigit())):
        return None
    return name.rstrip(".")


class RequestGuard:
    """ASGI middleware: refuse foreign Host names and cross-site form posts; answer cut requests.

    Args:
        app: the application it guards.
        names: the host names taken (as :attr:`ServeSettings.host_names` gives them; ``"*"``
            takes any).
        max_head_bytes: the longest request line and headers taken (a longer one: 431).
            h11 refuses a longer head only while it arrives in pieces; one that arrives in
            one read is measured here.
    """

    def __init__(
        self, app: ASGIApp, *, names: tuple[str, ...], max_head_bytes: int = MAX_HEAD_BYTES
    ) -> None:
        self.app = app
        self.names = names
        self.max_head_bytes = max_head_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check an HTTP request, then hand it on; other scopes pass unchanged."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {name.lower(): value for name, value in scope.get("headers", [])}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await send_error(send, *refusal)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            # The server cancels what still runs when its grace time is up: answer, then end.
            if started:
                raise
            logger.warning("lenetish serve: stopped before answering %s", scope.get("path"))
            await send_error(
                send,
                503,
                "the server stopped before this request was answered; send it again once the "
                "server is back",
                close=True,
            )

    def _refusal(self, scope: Scope, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
        """The status and message refusing the request, or ``None`` to let it in."""
        head = len(scope.get("raw_path", b"")) + len(scope.get("query_string", b""))
        head += sum(len(name) + len(value) + 4 for name, value in scope.get("headers", []))
        if head > self.max_head_bytes:
            return (
                431,
                f"the request line and headers are over {self.max_head_bytes:,} bytes; send "
                "fewer or shorter headers",
            )
        raw = headers.get(b"host", b"").decode("latin-1")
        name = host_of(raw)
        if "*" not in self.names and name not in self.names:
            taken = ", ".join(self.names)
            shown = json.dumps(raw[:80]) if raw else "none"
            return (
                421,
                f"this server does not answer to the Host name {shown} (it takes: {taken}); "
                "open it by one of those names, or start it with --allow-host NAME "
                "(ServeSettings.allowed_hosts) to add the name",
            )
        if scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            return None
        kind = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if kind not in FORM_TYPES or b"x-requested-with" in headers:
            return None
        origin = headers.get(b"origin", b"").decode("latin-1").lower()
        if origin.partition("://")[2] == raw.strip().lower() and raw:
            return None  # a page of this server
        return (
            403,
            f"a form post ({kind or 'no Content-Type'}) without an X-Requested-With header is "
            "refused, so that pages of other sites cannot post here; add the header (any "
            "value), e.g. curl -H 'X-Requested-With: curl' -F file=@digit.png URL",
        )
