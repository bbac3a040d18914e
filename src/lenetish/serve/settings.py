"""The settings of ``lenetish serve``: where it listens, what it accepts, how it batches."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lenetish.errors import InvalidArgumentError

__all__ = ["LOOPBACK_HOSTS", "LOOPBACK_NAMES", "ServeSettings", "host_name"]

#: Host names that only this machine can reach.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: The names a request's ``Host`` header may give by default, as that header writes them.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
_EVERY_INTERFACE = ("0.0.0.0", "::", "[::]")


def host_name(name: str) -> str:
    """``name`` as a ``Host`` header writes it: lower case, no final dot, IPv6 in brackets.

    Example:
        >>> host_name("LocalHost."), host_name("::1")
        ('localhost', '[::1]')
    """
    name = name.strip().lower().rstrip(".")
    return f"[{name}]" if ":" in name and not name.startswith("[") else name


def _is_host_name(name: object) -> bool:
    """Whether ``name`` is a host name or address with no scheme, user or port."""
    if not isinstance(name, str) or not name or any(mark in name for mark in "/@ \t\r\n"):
        return False
    if name.startswith("["):  # an IPv6 address as URLs write it
        return name.endswith("]") and ":" in name
    return ":" not in name or name.count(":") >= 2  # one colon is a port, more are IPv6


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass(frozen=True)
class ServeSettings:
    """How the prediction service listens, which requests it takes and how it batches them.

    Attributes:
        host: the address to listen on; the default, loopback, lets only this machine in
            (``"0.0.0.0"`` listens on every interface).
        port: the TCP port (0: any free port).
        allowed_hosts: the names a request's ``Host`` header may give (any port); others are
            refused with status 421, so a web page whose name an attacker points at this
            machine (DNS rebinding) cannot read or post here. ``None``: ``localhost``,
            ``127.0.0.1`` and ``[::1]``, and ``host`` itself unless it is every interface
            (``0.0.0.0`` or ``::``: add the names other machines use). ``("*",)``: any name.
        max_upload_bytes: the largest request body taken; a larger one is refused with
            status 413 before it is read whole (by its ``Content-Length``, else as it arrives).
        max_image_pixels: the most pixels an uploaded image may have (width times height),
            checked from its header before it is decoded. The model sees 28x28, so 4 million
            (a 2000x2000 picture) is plenty; decoding one costs up to ~22 bytes a pixel
            (16-bit or transparent PNGs), so the limit bounds each decode's memory (~90 MB).
        max_decodes: the most request bodies decoded or parsed at once (images, JSON); the
            others wait their turn. With ``max_image_pixels`` this bounds decoding memory.
        max_images: the most images one request may hold.
        batching: gather concurrent requests into one forward pass; ``False`` runs each
            request alone (for comparison).
        max_batch: the most images in one forward pass.
        max_wait_ms: how long the first request of a batch may wait for others to join it,
            counted from its arrival, and only while other requests are being read or
            prepared: a lone request never waits, nor do requests that queued during the
            previous pass.
        max_queue: the most images waiting for the model; more get status 503 (busy).
        max_requests: the most ``/predict`` requests in progress at once (being read,
            prepared or answered); more get status 503 at once. With ``max_upload_bytes``
            this bounds the memory request bodies take (64 x 5 MiB).
        read_timeout_s: a client has this long to send its request body (else status 408).
        max_connections: the most connections open at once. A new one beyond it closes the
            connection that has waited longest for its next request (an idle keep-alive
            connection, or one still sending its request line and headers) once that one has
            had a second to send it (a burst of new connections may go over the limit, up to
            twice it); when every connection has a request in progress, the new one is
            answered 503.
        idle_timeout_s: a connection that sends nothing for this long while no request is
            in progress (a fresh one, or a kept-alive one between requests) is closed.
        header_timeout_s: a client has this long to send a request's line and headers,
            counted from when the server began waiting for them (else status 408 and the
            connection is closed, however slowly the bytes keep coming).
        shutdown_timeout_s: on SIGINT or SIGTERM, how long requests in flight may still
            take; those not answered by then get status 503 (the server stopped).
        api_docs: serve the interactive API pages ``/docs`` (Swagger UI) and ``/redoc``,
            which load their scripts from a CDN into this server's origin; off by default
            (``/openapi.json`` is always served).
        device: where the model runs (``None``: where its weights are, the CPU for files).
        threads: torch's CPU threads for the model's thread (``None``: torch's setting).
            One by default: a batch of 28x28 images gains little from more, and more
            threads contend with the server's own work for the cores (on a busy 2-core
            machine two threads made each pass several times slower than one).

    Raises:
        InvalidArgumentError: a value is of the wrong type or out of its range (the message
            names it).

    Example:
        >>> from lenetish.serve import ServeSettings
        >>> settings = ServeSettings(max_wait_ms=2.0)
        >>> settings.host, settings.port, settings.max_batch
        ('127.0.0.1', 8000, 256)
        >>> settings.is_loopback, settings.host_names
        (True, ('localhost', '127.0.0.1', '[::1]'))
    """

    host: str = "127.0.0.1"
    port: int = 8000
    allowed_hosts: tuple[str, ...] | None = None
    max_upload_bytes: int = 5 * 2**20
    max_image_pixels: int = 4_000_000
    max_decodes: int = 2
    max_images: int = 64
    batching: bool = True
    max_batch: int = 256
    max_wait_ms: float = 5.0
    max_queue: int = 4096
    max_requests: int = 64
    read_timeout_s: float = 30.0
    max_connections: int = 512
    idle_timeout_s: float = 5.0
    header_timeout_s: float = 10.0
    shutdown_timeout_s: float = 5.0
    api_docs: bool = False
    device: str | None = None
    threads: int | None = 1

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host.strip():
            raise InvalidArgumentError(
                f"host must name an address, e.g. 127.0.0.1, got {self.host!r}"
            )
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise InvalidArgumentError(
                f"port must be an integer from 0 to 65535, got {self.port!r}"
            )
        if not 0 <= self.port <= 65535:
            raise InvalidArgumentError(f"port must be from 0 to 65535, got {self.port}")
        self._check_hosts()
        counts = (
            *("max_upload_bytes", "max_image_pixels", "max_decodes", "max_images"),
            *("max_batch", "max_queue", "max_requests", "max_connections"),
        )
        for name in counts:
            value = getattr(self, name)
            if not _is_count(value):
                raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")
        for name in ("batching", "api_docs"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidArgumentError(
                    f"{name} must be True or False, got {getattr(self, name)!r}"
                )
        if self.threads is not None and not _is_count(self.threads):
            raise InvalidArgumentError(
                f"threads must be a positive integer or None, got {self.threads!r}"
            )
        if self.device is not None and (not isinstance(self.device, str) or not self.device):
            raise InvalidArgumentError(
                f"device must be None or a device name such as 'cpu' or 'cuda', got {self.device!r}"
            )
        if self.max_queue < self.max_images:
            raise InvalidArgumentError(
                f"max_queue ({self.max_queue}) must be at least max_images ({self.max_images}), "
                "or a request of max_images images could never be queued"
            )
        if not (_is_number(self.max_wait_ms) and 0 <= self.max_wait_ms <= 1000):
            raise InvalidArgumentError(
                f"max_wait_ms must be from 0 to 1000 (a few ms is usual), got {self.max_wait_ms!r}"
            )
        seconds = ("read_timeout_s", "idle_timeout_s", "header_timeout_s", "shutdown_timeout_s")
        for name in seconds:
            value = getattr(self, name)
            if not (_is_number(value) and math.isfinite(value) and value > 0):
                raise InvalidArgumentError(
                    f"{name} must be a positive number of seconds, got {value!r}"
                )

    def _check_hosts(self) -> None:
        names: object = self.allowed_hosts  # checked as what a caller may really pass
        if names is None:
            return
        if isinstance(names, (str, bytes)) or not isinstance(names, (tuple, list)):
            raise InvalidArgumentError(
                "allowed_hosts must be a tuple of host names, e.g. ('localhost', "
                f"'example.org'), or None, got {names!r}"
            )
        for name in names:
            if not _is_host_name(name):
                raise InvalidArgumentError(
                    f"allowed_hosts must hold host names without scheme or port (e.g. "
                    f"'example.org', '192.168.1.5', '::1', or '*' for any), got {name!r}"
                )
        object.__setattr__(self, "allowed_hosts", tuple(names))  # a list is kept as a tuple

    @property
    def is_loopback(self) -> bool:
        """Whether only this machine can connect (the host is a loopback address)."""
        return self.host in LOOPBACK_HOSTS or self.host.startswith("127.")

    @property
    def host_names(self) -> tuple[str, ...]:
        """The names a request's ``Host`` header may give (``"*"``: any), lower case."""
        if self.allowed_hosts is not None:
            return tuple(dict.fromkeys(host_name(name) for name in self.allowed_hosts))
        own = host_name(self.host)
        extra = () if own in _EVERY_INTERFACE else (own,)
        return tuple(dict.fromkeys((*LOOPBACK_NAMES, *extra)))
