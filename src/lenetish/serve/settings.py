"""The settings of ``lenetish serve``: where it listens, what it accepts, how it batches."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lenetish.errors import InvalidArgumentError

__all__ = ["LOOPBACK_HOSTS", "ServeSettings"]

#: Host names that only this machine can reach.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServeSettings:
    """How the prediction service listens, which requests it takes and how it batches them.

    Attributes:
        host: the address to listen on; the default, loopback, lets only this machine in
            (``"0.0.0.0"`` listens on every interface).
        port: the TCP port (0: any free port).
        max_upload_bytes: the largest request body taken; a larger one is refused with
            status 413 before it is read whole (by its ``Content-Length``, else as it arrives).
        max_image_pixels: the most pixels an uploaded image may have (width times height),
            checked from its header before it is decoded, so a small file that decodes to a
            huge picture (a decompression bomb) is refused.
        max_images: the most images one request may hold.
        batching: gather concurrent requests into one forward pass; ``False`` runs each
            request alone (for comparison).
        max_batch: the most images in one forward pass.
        max_wait_ms: how long the first request of a batch may wait for others to join it,
            counted from its arrival, and only while other requests are being read or
            prepared: a lone request never waits, nor do requests that queued during the
            previous pass.
        max_queue: the most images waiting for the model; more get status 503 (busy).
        read_timeout_s: a client has this long to send its request body (else status 408).
        max_connections: the most connections served at once (uvicorn answers more with
            status 503), which bounds the memory request bodies can take.
        device: where the model runs (``None``: where its weights are, the CPU for files).
        threads: torch's CPU threads for the model's thread (``None``: torch's setting).
            One by default: a batch of 28x28 images gains little from more, and more
            threads contend with the server's own work for the cores (on a busy 2-core
            machine two threads made each pass several times slower than one).

    Raises:
        InvalidArgumentError: a value is out of its range (the message names it).

    Example:
        >>> from lenetish.serve import ServeSettings
        >>> settings = ServeSettings(max_wait_ms=2.0)
        >>> settings.host, settings.port, settings.max_batch
        ('127.0.0.1', 8000, 256)
        >>> settings.is_loopback
        True
    """

    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_bytes: int = 5 * 2**20
    max_image_pixels: int = 20_000_000
    max_images: int = 64
    batching: bool = True
    max_batch: int = 256
    max_wait_ms: float = 5.0
    max_queue: int = 4096
    read_timeout_s: float = 30.0
    max_connections: int = 128
    device: str | None = None
    threads: int | None = 1

    def __post_init__(self) -> None:
        if not self.host.strip():
            raise InvalidArgumentError("host must name an address, e.g. 127.0.0.1, got ''")
        if not 0 <= self.port <= 65535:
            raise InvalidArgumentError(f"port must be from 0 to 65535, got {self.port}")
        positive = ("max_upload_bytes", "max_image_pixels", "max_images", "max_batch")
        for name in (*positive, "max_connections"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            raise InvalidArgumentError(
                f"threads must be a positive integer or None, got {self.threads!r}"
            )
        if self.max_queue < self.max_images:
            raise InvalidArgumentError(
                f"max_queue ({self.max_queue}) must be at least max_images ({self.max_images}), "
                "or a request of max_images images could never be queued"
            )
        if not (math.isfinite(self.max_wait_ms) and 0 <= self.max_wait_ms <= 1000):
            raise InvalidArgumentError(
                f"max_wait_ms must be from 0 to 1000 (a few ms is usual), got {self.max_wait_ms}"
            )
        if not (math.isfinite(self.read_timeout_s) and self.read_timeout_s > 0):
            raise InvalidArgumentError(
                f"read_timeout_s must be a positive number of seconds, got {self.read_timeout_s}"
            )

    @property
    def is_loopback(self) -> bool:
        """Whether only this machine can connect (the host is a loopback address)."""
        return self.host in LOOPBACK_HOSTS or self.host.startswith("127.")
