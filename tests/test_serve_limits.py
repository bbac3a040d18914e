"""Tests of lenetish.serve.limits: decoding slots and watching for clients that leave."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from lenetish.errors import RequestRejectedError
from lenetish.serve.limits import ClientWatch, DecodeSlots


def test_a_body_beyond_the_slots_waits_until_one_is_free() -> None:
    """With one slot taken, a second holder waits (counted) until the first lets go."""
    slots = DecodeSlots(1)
    order: list[str] = []

    async def hold(name: str, release: asyncio.Event) -> None:
        async with slots.slot():
            order.append(name)
            await release.wait()

    async def both() -> int:
        first_done, second_done = asyncio.Event(), asyncio.Event()
        second_done.set()
        first = asyncio.ensure_future(hold("first", first_done))
        await asyncio.sleep(0)  # one turn: the first takes the slot
        second = asyncio.ensure_future(hold("second", second_done))
        await asyncio.sleep(0)  # one turn: the second finds it taken
        waiting = slots.waiting
        first_done.set()
        await asyncio.gather(first, second)
        return waiting

    assert asyncio.run(both()) == 1
    assert order == ["first", "second"] and slots.waiting == 0


def test_decoding_runs_on_the_slots_own_threads() -> None:
    """run() calls the function on a thread named lenetish-serve-decode, not the loop's."""
    slots = DecodeSlots(2)

    async def name() -> str:
        async with slots.slot():
            return await slots.run(lambda: threading.current_thread().name)

    try:
        assert asyncio.run(name()).startswith("lenetish-serve-decode")
    finally:
        slots.close()


def _receive_after(event: asyncio.Event, message: dict[str, Any]) -> Any:
    """An ASGI receive that answers ``message`` once ``event`` is set."""

    async def receive() -> dict[str, Any]:
        await event.wait()
        return message

    return receive


def test_work_is_cancelled_when_the_client_leaves() -> None:
    """A disconnect cancels the awaited work and raises RequestRejectedError."""
    cancelled = []

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def ask() -> None:
        left = asyncio.Event()
        watch = ClientWatch(_receive_after(left, {"type": "http.disconnect"}))
        left.set()
        try:
            await watch.run(forever())
        finally:
            watch.close()

    with pytest.raises(RequestRejectedError, match="the client went away before its answer"):
        asyncio.run(ask())
    assert cancelled == [True]


def test_work_finishes_while_the_client_stays() -> None:
    """With the client still there, run() gives the work's result."""

    async def ask() -> int:
        watch = ClientWatch(_receive_after(asyncio.Event(), {"type": "http.disconnect"}))
        try:
            return await watch.run(asyncio.sleep(0, result=7))
        finally:
            watch.close()

    assert asyncio.run(ask()) == 7


def test_a_message_other_than_a_disconnect_stops_the_watch_only() -> None:
    """A receive() message that is no disconnect leaves the work running to its end."""

    async def ask() -> str:
        said = asyncio.Event()
        said.set()
        watch = ClientWatch(_receive_after(said, {"type": "http.request", "body": b""}))

        async def work() -> str:
            for _ in range(3):  # outlasts the watch, which ends with the first message
                await asyncio.sleep(0)
            return "answered"

        try:
            return await watch.run(work())
        finally:
            watch.close()

    assert asyncio.run(ask()) == "answered"
