"""Bounds on the work requests make: decoding slots on threads of their own, clients that leave.

:class:`DecodeSlots` lets at most ``max_decodes`` request bodies be decoded or parsed at once,
each on one of as many threads. Decoding an image just under the pixel limit costs up to ~90
MB for a moment; forty of them at once (Starlette's thread pool) cost gigabytes, and each of
its threads would keep its own malloc arena grown to that size. :class:`ClientWatch` stops a
request's work when its client disconnects.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

from lenetish.errors import RequestRejectedError

__all__ = ["ClientWatch", "DecodeSlots"]

_T = TypeVar("_T")
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class DecodeSlots:
    """At most ``count`` request bodies decoded or parsed at once, on ``count`` threads.

    Hold a slot with :meth:`slot` and run the decoding in it with :meth:`run`. Bodies waiting
    for a slot wait in the event loop (their clients may leave meanwhile, see
    :class:`ClientWatch`), not in a thread. The semaphore is made for the event loop that uses
    it (a test client starts one per block; an asyncio semaphore serves a single loop).

    Args:
        count: the slots, and the threads that decode.

    Attributes:
        waiting: bodies waiting for a slot now.

    Example:
        >>> slots = DecodeSlots(2)
        >>> async def decode() -> int:
        ...     async with slots.slot():
        ...         return await slots.run(len, b"png")
        >>> asyncio.run(decode())
        3
        >>> slots.close()
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.waiting = 0
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot while the block runs (waiting for one first, if all are taken)."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._loop is not loop:
            self._slots, self._loop = asyncio.Semaphore(self.count), loop
        slots = self._slots
        self.waiting += 1
        try:
            await slots.acquire()
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            slots.release()

    async def run(self, function: Callable[..., _T], *args: Any) -> _T:
        """``function(*args)`` on one of the decoding threads (call it holding a slot)."""
        if self._threads is None:
            self._threads = concurrent.futures.ThreadPoolExecutor(
                self.count, thread_name_prefix="lenetish-serve-decode"
            )
        call = functools.partial(function, *args)
        return await asyncio.get_running_loop().run_in_executor(self._threads, call)

    def close(self) -> None:
        """Let the decoding threads end once their work is done (:meth:`run` makes new ones)."""
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None


class ClientWatch:
    """Cancels what a request waits for once its client disconnects (after its body is read).

    A client that gives up (a closed tab, a timeout) leaves nothing to answer: its images are
    not decoded if they wait for a slot, and are dropped from the model's queue if their pass
    has not begun (:meth:`~lenetish.serve.batcher.Batcher.predict` cancels them). Servers
    report the disconnect as the next ``receive()`` message once the body is in.

    Args:
        receive: the request's ASGI ``receive``, with the body already read from it.

    Example:
        >>> async def receive() -> dict[str, str]:
        ...     return {"type": "http.disconnect"}
        >>> async def ask() -> None:
        ...     watch = ClientWatch(receive)
        ...     try:
        ...         await watch.run(asyncio.Event().wait())  # would never end
        ...     finally:
        ...         watch.close()
        >>> asyncio.run(ask())
        Traceback (most recent call last):
            ...
        lenetish.errors.RequestRejectedError: the client went away before its answer
    """

    def __init__(self, receive: Receive) -> None:
        self._left = asyncio.ensure_future(_disconnected(receive))

    async def run(self, work: Awaitable[_T]) -> _T:
        """``work``'s result, unless the client leaves first.

        Raises:
            RequestRejectedError: the client disconnected (status 400; nobody reads it).
        """
        task = asyncio.ensure_future(work)
        try:
            await asyncio.wait({task, self._left}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the server is stopping: the work stops with it
            task.cancel()
            raise
        if not task.done() and self._client_left():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task  # its clean-up (dropping the queued images) runs before the answer
            raise RequestRejectedError(400, "the client went away before its answer")
        return await task

    def _client_left(self) -> bool:
        left = self._left
        return bool(
            left.done() and not left.cancelled() and left.exception() is None and left.result()
        )

    def close(self) -> None:
        """Stop watching."""
        self._left.cancel()


async def _disconnected(receive: Receive) -> bool:
    """Whether the next message after the body says the client left (any other: not known)."""
    message = await receive()
    return bool(message["type"] == "http.disconnect")
