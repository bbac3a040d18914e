"""Serving the application with uvicorn: a socket bound first, one line saying where, clean stops.

The socket is bound before uvicorn starts, so a port in use is a one-line error and port 0
gives a free port whose number is known. Connections are served by
:class:`~lenetish.serve.protocol.LimitedH11Protocol` (a connection limit, idle and header
deadlines, JSON errors) whatever HTTP parsers are installed. uvicorn catches SIGINT and
SIGTERM, answers the requests in flight (for at most ``shutdown_timeout_s`` seconds; those
still running then get a JSON 503), runs the application's shutdown (the model's thread
answers what is queued) and then passes the signal on.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import math
import socket
import threading
from collections.abc import Callable, Iterator

import uvicorn
from fastapi import FastAPI

from lenetish.errors import InvalidArgumentError
from lenetish.serve.guard import MAX_HEAD_BYTES
from lenetish.serve.protocol import ConnectionLimits, protocol_for
from lenetish.serve.settings import LOOPBACK_HOSTS, ServeSettings

__all__ = ["GRACE_S", "address", "background_server", "listen", "run_server"]

#: Seconds a stopping server gives requests in flight by default (``shutdown_timeout_s``).
GRACE_S = 5


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening (port 0: a free port).

    Raises:
        InvalidArgumentError: the address cannot be used (a port in use, a host name that
            does not resolve, or a port below 1024 without the right to bind it).

    Example:
        >>> sock = listen("127.0.0.1", 0)
        >>> sock.getsockname()[1] > 0
        True
        >>> sock.close()
    """
    try:
        family, kind, proto, _, where = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise InvalidArgumentError(
            f"cannot listen on {host}: {exc.strerror or exc}; pass --host an address of this "
            "machine, e.g. 127.0.0.1"
        ) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(where)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise InvalidArgumentError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; pass another --port "
            "(or stop the program using it)"
        ) from None
    return sock


def address(sock: socket.socket) -> str:
    """The URL a browser on this machine opens for a server on ``sock``.

    Example:
        >>> sock = listen("127.0.0.1", 0)
        >>> address(sock).startswith("http://127.0.0.1:")
        True
        >>> sock.close()
    """
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _settings(app: FastAPI) -> ServeSettings:
    settings = getattr(app.state, "settings", None)
    return settings if isinstance(settings, ServeSettings) else ServeSettings()


def _config(app: FastAPI) -> uvicorn.Config:
    settings = _settings(app)
    limits = ConnectionLimits(
        max_connections=settings.max_connections,
        idle_timeout_s=settings.idle_timeout_s,
        header_timeout_s=settings.header_timeout_s,
        max_head_bytes=MAX_HEAD_BYTES,
    )
    config = uvicorn.Config(
        app,
        http=protocol_for(limits),  # never httptools, which has none of these limits
        ws="none",  # no WebSocket routes: an upgrade request is served as plain HTTP
        log_level="warning",
        access_log=False,
        lifespan="on",
        limit_concurrency=None,  # the protocol limits connections; it counts idle ones as busy
        # the protocol's own idle deadline acts first; uvicorn's keep-alive timer is a backstop
        timeout_keep_alive=math.ceil(settings.idle_timeout_s) + 1,
    )
    # uvicorn waits with asyncio, which takes fractions of a second; its hint says int only
    config.timeout_graceful_shutdown = settings.shutdown_timeout_s  # type: ignore[assignment]
    return config


#: Buffers this large or larger are mapped from the system and given back when freed.
BIG_BUFFER_BYTES = 2**20
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)


def return_big_buffers() -> bool:
    """Make glibc give every buffer of ``BIG_BUFFER_BYTES`` or more back to the system on free.

    A decoded upload takes tens of megabytes in a few arrays. glibc raises its threshold for
    mapping buffers after each such free, and then keeps the next ones in its heaps: every
    decoding thread ends up holding the peak of its largest decode for good (on a 2-core
    machine 12 uploads just under the pixel limit left 120 MB held; with a fixed threshold,
    none). Process-wide; a no-op (``False``) where the C library is not glibc.

    Example:
        >>> return_big_buffers() in (True, False)
        True
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, BIG_BUFFER_BYTES))


def run_server(
    app: FastAPI, sock: socket.socket, *, what: str = "", say: Callable[[str], None] = print
) -> None:
    """Serve ``app`` on ``sock`` until SIGINT or SIGTERM, after saying where in one line.

    The line says whether other machines can connect (only loopback keeps them out). The
    signal that stopped the server is raised again once it has stopped cleanly, so the
    caller sees a ``KeyboardInterrupt`` (or its own handler runs). Large buffers are given
    back to the system when freed (:func:`return_big_buffers`), so the process keeps no
    decode's peak.

    Args:
        app: the application (:func:`~lenetish.serve.create_app`).
        sock: a listening socket (:func:`listen`).
        what: what is served, for the line (e.g. the model and its weights).
        say: where the line goes.

    Example:
        >>> from lenetish.serve import create_app, listen, run_server
        >>> run_server(create_app(), listen("127.0.0.1", 8000))  # doctest: +SKIP
        lenetish serve: at http://127.0.0.1:8000/ (loopback: only this machine can connect; ...
    """
    host = sock.getsockname()[0]
    loopback = host in LOOPBACK_HOSTS or host.startswith("127.")
    names = _settings(app).host_names
    reach = (
        "loopback: only this machine can connect; --host 0.0.0.0 opens it to others"
        if loopback
        else f"listening on {host}: other machines can connect, with no password; "
        + (
            "any Host name taken"
            if "*" in names
            else f"Host names taken: {', '.join(names)} (--allow-host adds one)"
        )
    )
    say(
        f"lenetish serve: {what + ' ' if what else ''}at {address(sock)} ({reach}); Ctrl-C stops it"
    )
    return_big_buffers()
    uvicorn.Server(_config(app)).run(sockets=[sock])


@contextlib.contextmanager
def background_server(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` from a thread while the block runs; yields its URL (for tests and scripts).

    Example:
        >>> import urllib.request
        >>> from lenetish.serve import background_server, create_app
        >>> with background_server(create_app()) as url:
        ...     urllib.request.urlopen(url + "health").status
        200
    """
    sock = listen(host, port)
    server = uvicorn.Server(_config(app))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server stopped while starting; see its log")
            threading.Event().wait(0.01)
        yield address(sock)
    finally:
        server.should_exit = True
        thread.join(_settings(app).shutdown_timeout_s + 30)
        sock.close()
