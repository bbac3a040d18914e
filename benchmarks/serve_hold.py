"""Benchmark: ``lenetish serve`` with sockets held open, and its memory under heavy uploads.

Everything runs on loopback (127.0.0.1) against ``lenetish serve --port 0`` subprocesses with
the shipped ``default`` weights, and stops by itself.

Hold: ``--idle`` connections that send nothing and ``--slow`` clients that send a request
head one byte every 2 s are kept open for ``--seconds`` (each one the server closes is opened
again, as an attacker would); meanwhile, once a second, a new client asks ``GET /health``
and ``POST /predict`` (one MNIST test digit as JSON), each on a fresh connection. This runs
twice: with the default connection limit (512) and with ``--max-connections 100``, below
what is held, so the server must close held sockets to let the new clients in. Each second
prints one JSON line (both latencies, sockets held, closes seen); every answer must be right
and come within 1 s.

Memory: ``--uploads`` worst-case PNGs posted at once: 16-bit greyscale (the costliest mode to
decode, ~22 bytes a pixel) just under the 4-megapixel limit, a few kilobytes each; then as
many just under the old 20-megapixel limit, now refused from their header. The server's
peak resident memory (VmHWM, reset before each run) must stay under 1 GB.

    python benchmarks/serve_hold.py --idle 200 --slow 20 --seconds 20 --uploads 12
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import io
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import torch
from machine_info import describe_machine
from PIL import Image, ImageDraw

from lenetish import load_split

LIMIT_S = 1.0  # every probe must be answered within this
MEMORY_LIMIT_MB = 1024.0
PROBE_TIMEOUT_S = 10.0
REOPEN_AFTER_S = 1.0  # a closed socket is opened again after this (keeps the churn bounded)


def start_server(*options: str) -> tuple[subprocess.Popen[str], str]:
    """A ``lenetish serve`` subprocess on a free loopback port, and its URL."""
    command = [sys.executable, "-m", "lenetish", "serve", "--port", "0", *options]
    server = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    if " at http://127.0.0.1:" not in line:
        server.kill()
        sys.exit(f"the server did not start: {line!r}")
    return server, line.split(" at ", 1)[1].split()[0]


@contextlib.contextmanager
def serving(*options: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A server for the block; stopped (SIGTERM, then waited for) afterwards."""
    server, url = start_server(*options)
    try:
        yield server, url
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)


class Held:
    """Counts of the sockets held open and of what the server did to them."""

    def __init__(self) -> None:
        self.idle = self.slow = 0
        self.idle_closed = self.slow_cut = self.slow_408 = self.refused = 0
        self.slow_cut_after: list[float] = []


async def _until_closed(reader: asyncio.StreamReader, stop: asyncio.Event) -> bytes | None:
    """What the server sent before closing (``None``: ``stop`` came first)."""
    read = asyncio.ensure_future(reader.read(65536))
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if read.done():
        return read.result() if read.exception() is None else b""
    read.cancel()
    return None


async def hold_idle(port: int, stop: asyncio.Event, held: Held, reopen: int) -> None:
    """One connection that sends nothing, opened again (at most ``reopen`` times) when closed."""
    for _ in range(reopen):
        if stop.is_set():
            return
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            held.refused += 1
            await asyncio.sleep(0.1)
            continue
        held.idle += 1
        try:
            closed = await _until_closed(reader, stop) is not None
        finally:
            held.idle -= 1
            writer.close()
        if closed:
            held.idle_closed += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), REOPEN_AFTER_S)


async def hold_slow(port: int, stop: asyncio.Event, held: Held, reopen: int) -> None:
    """One client sending a head a byte every 2 s, opened again (at most ``reopen`` times)."""
    loop = asyncio.get_running_loop()
    for _ in range(reopen):
        if stop.is_set():
            return
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            held.refused += 1
            await asyncio.sleep(0.1)
            continue
        held.slow += 1
        started = loop.time()
        answer: bytes | None = None
        try:
            writer.write(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ".encode())
            read = asyncio.ensure_future(reader.read(65536))
            for _ in range(120):  # a byte every 2 s for at most 4 minutes
                done, _ = await asyncio.wait({read}, timeout=2.0)
                if done or stop.is_set():
                    break
                try:
                    writer.write(b"a")
                    await writer.drain()
                except OSError:
                    break
            if read.done():
                answer = read.result() if read.exception() is None else b""
            else:
                read.cancel()
        finally:
            held.slow -= 1
            writer.close()
        if answer is not None:
            held.slow_cut += 1
            held.slow_cut_after.append(loop.time() - started)
            held.slow_408 += answer.startswith(b"HTTP/1.1 408")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), REOPEN_AFTER_S)


async def probe(url: str, body: bytes, label: int) -> dict[str, Any]:
    """GET /health and POST /predict, each from a new client on a new connection."""
    row: dict[str, Any] = {}
    for name, method, path, content in (
        ("health", "GET", "health", None),
        ("predict", "POST", "predict", body),
    ):
        limits = httpx2.Limits(max_connections=1, max_keepalive_connections=0)
        async with httpx2.AsyncClient(
            base_url=url, limits=limits, timeout=PROBE_TIMEOUT_S
        ) as client:
            started = time.perf_counter()
            try:
                answer = await client.request(
                    method, path, content=content, headers={"content-type": "application/json"}
                )
                status = answer.status_code
                right = status == 200 and (name == "health" or answer.json()["labels"] == [label])
            except httpx2.HTTPError as error:
                status, right = f"{type(error).__name__}: {error}"[:120], False
            row[f"{name}_ms"] = round(1000 * (time.perf_counter() - started), 2)
            row[f"{name}_status"] = status
            row[f"{name}_right"] = right
    return row


async def hold_run(
    url: str, idle: int, slow: int, seconds: int, body: bytes, label: int, name: str
) -> list[dict[str, Any]]:
    """Hold the sockets for ``seconds`` while probing once a second; one row per probe."""
    port = int(url.rstrip("/").rsplit(":", 1)[1])
    stop, held = asyncio.Event(), Held()
    reopen = 4 * seconds  # bounds each holder's connections even if every one is cut at once
    holders = [asyncio.ensure_future(hold_idle(port, stop, held, reopen)) for _ in range(idle)]
    holders += [asyncio.ensure_future(hold_slow(port, stop, held, reopen)) for _ in range(slow)]
    rows = []
    for second in range(seconds):
        tick = asyncio.ensure_future(asyncio.sleep(1.0))  # pacing of the probes, not a wait
        row = {"run": name, "second": second + 1, **await probe(url, body, label)}
        row.update(held_idle=held.idle, held_slow=held.slow, idle_closed=held.idle_closed)
        row.update(slow_cut=held.slow_cut, slow_408=held.slow_408, refused=held.refused)
        print(json.dumps(row), flush=True)
        rows.append(row)
        await tick
    stop.set()
    await asyncio.wait_for(asyncio.gather(*holders), 60)
    cut = held.slow_cut_after
    summary = {
        "run": name,
        "summary": True,
        "held_idle_range": [
            min(row["held_idle"] for row in rows),
            max(row["held_idle"] for row in rows),
        ],
        "idle_closed_by_server": held.idle_closed,
        "slow_cut_by_server": held.slow_cut,
        "slow_answered_408": held.slow_408,
        "slow_cut_after_s_median": round(statistics.median(cut), 2) if cut else None,
        "connects_refused": held.refused,
    }
    print(json.dumps(summary), flush=True)
    rows[-1]["slow_answered_408"] = held.slow_408  # for the table: cuts after the last probe too
    return rows


def status_of(pid: int, field: str) -> float:
    """A ``/proc/<pid>/status`` field in megabytes (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as handle:
        line = next(line for line in handle if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def worst_png(pixels: int) -> bytes:
    """A 16-bit greyscale PNG of a dark stroke on white, just under ``pixels``, tiny compressed."""
    side = int(pixels**0.5)
    width, height = side, (pixels - 1) // side
    image = Image.new("I;16", (width, height), 65535)
    ImageDraw.Draw(image).line(
        (width // 2, height // 8, width // 2, 7 * height // 8), fill=0, width=max(8, width // 12)
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


async def post_all(url: str, png: bytes, count: int) -> list[int | str]:
    """``count`` concurrent uploads of ``png``; their statuses."""
    limits = httpx2.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx2.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def one() -> int | str:
            try:
                answer = await client.post(
                    "predict", content=png, headers={"content-type": "image/png"}
                )
            except httpx2.HTTPError as error:
                return type(error).__name__
            return answer.status_code

        return list(await asyncio.gather(*(one() for _ in range(count))))


def memory_run(server: subprocess.Popen[str], url: str, png: bytes, count: int) -> dict[str, Any]:
    """Peak resident memory of the server while ``count`` copies of ``png`` are posted at once."""
    pid = server.pid
    with open(f"/proc/{pid}/clear_refs", "w") as handle:
        handle.write("5")  # resets VmHWM, the peak, to the memory resident now
    before = status_of(pid, "VmRSS")
    sampled = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            sampled.append(status_of(pid, "VmRSS"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    statuses = asyncio.run(post_all(url, png, count))
    seconds = time.perf_counter() - started
    done.set()
    sampler.join(10)
    peak = status_of(pid, "VmHWM")
    return {
        "uploads": count,
        "png_bytes": len(png),
        "statuses": sorted({str(status) for status in statuses}),
        "seconds": round(seconds, 2),
        "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(peak, 1),
        "peak_sampled_mb": round(max(sampled), 1),
        "increase_mb": round(peak - before, 1),
    }


def main() -> None:
    """Run the hold runs and the memory runs; print JSON lines and a table; exit 1 on a miss."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=int, default=200, help="idle connections held (200)")
    parser.add_argument("--slow", type=int, default=20, help="slow-header clients held (20)")
    parser.add_argument("--seconds", type=int, default=20, help="seconds each hold run (20)")
    parser.add_argument("--uploads", type=int, default=12, help="concurrent worst PNGs (12)")
    args = parser.parse_args()
    if not (0 <= args.idle <= 1000 and 0 <= args.slow <= 200 and 1 <= args.seconds <= 120):
        sys.exit("--idle 0-1000, --slow 0-200 and --seconds 1-120 keep the run bounded")
    if not 1 <= args.uploads <= 64:
        sys.exit("--uploads must be from 1 to 64")
    images, labels = load_split(train=False)
    body = json.dumps({"pixels": images[0].tolist(), "dtype": "uint8"}).encode()
    common = {
        "date": datetime.date.today().isoformat(),
        "machine": describe_machine(),
        "torch": torch.__version__,
        "load_before": os.getloadavg()[0],
    }
    print(json.dumps({"benchmark": "serve_hold", **common, **vars(args)}), flush=True)
    runs: dict[str, list[dict[str, Any]]] = {}
    for name, options in (("default", ()), ("limit 100", ("--max-connections", "100"))):
        with serving(*options) as (_, url):
            runs[name] = asyncio.run(
                hold_run(url, args.idle, args.slow, args.seconds, body, int(labels[0]), name)
            )
    memory = []
    with serving() as (server, url):
        asyncio.run(post_all(url, worst_png(1000), 1))  # warm: everything loaded once
        for pixels in (3_999_999, 19_999_999):
            row = {"pixels": pixels, **memory_run(server, url, worst_png(pixels), args.uploads)}
            print(json.dumps({"run": "memory", **row}), flush=True)
            memory.append(row)

    print(f"\nheld: {args.idle} idle + {args.slow} slow-header connections, {args.seconds} s each")
    head = ("probes", "health p50", "health max", "predict p50", "predict max", "wrong", "408s")
    print(f"{'run':<10} " + " ".join(f"{name:>11}" for name in head))
    failed = []
    for name, rows in runs.items():
        health = [row["health_ms"] for row in rows]
        predict = [row["predict_ms"] for row in rows]
        wrong = sum(not (row["health_right"] and row["predict_right"]) for row in rows)
        print(
            f"{name:<10} {len(rows):>11} {statistics.median(health):>11.1f} {max(health):>11.1f} "
            f"{statistics.median(predict):>11.1f} {max(predict):>11.1f} {wrong:>11} "
            f"{rows[-1]['slow_answered_408']:>11}"
        )
        if wrong or max(health + predict) > 1000 * LIMIT_S:
            failed.append(f"{name}: {wrong} wrong answers, slowest {max(health + predict):.0f} ms")
    print(f"\n{'upload':<22} {'statuses':>12} {'before MB':>10} {'peak MB':>10} {'+MB':>8}")
    for row in memory:
        print(
            f"{row['pixels']:>11,} px {row['png_bytes']:>6} B {','.join(row['statuses']):>12} "
            f"{row['rss_before_mb']:>10.1f} {row['peak_rss_mb']:>10.1f} {row['increase_mb']:>8.1f}"
        )
        if row["peak_rss_mb"] >= MEMORY_LIMIT_MB:
            failed.append(f"{row['pixels']:,} px uploads: peak {row['peak_rss_mb']} MB")
    expected = (["200"], ["422"])
    for row, statuses in zip(memory, expected, strict=True):
        if row["statuses"] != statuses:
            failed.append(f"{row['pixels']:,} px uploads answered {row['statuses']}")
    print("\n" + ("FAILED: " + "; ".join(failed) if failed else "ok: every check passed"))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
