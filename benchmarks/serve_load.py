"""Benchmark: ``lenetish serve`` under load on loopback, with batching on and off, in one run.

Two servers are started as subprocesses on 127.0.0.1 (``lenetish serve --port 0``, and the
same with ``--no-batching``), both with the shipped ``default`` weights. A bounded number of
concurrent clients (``--clients``, one keep-alive connection each, asyncio and httpx2) post
``--requests`` requests in all, each one MNIST test digit as JSON uint8 pixels (or as a PNG
with ``--payload png``), after a warm-up. The servers take turns for ``--rounds`` rounds. Each
round prints one JSON line: requests per second, p50/p99 latency, the share of right labels,
the forward passes the server ran (from ``/health``) and the server's CPU time per request
(user plus system, from ``/proc``: steadier than wall-clock figures on a shared machine);
then a table of the medians and the ratio of batched to unbatched requests per second.

    python benchmarks/serve_load.py --clients 16 --requests 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import io
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx2
import torch
from machine_info import describe_machine

from lenetish import load_split

WARM_UP = 64


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of process ``pid`` so far (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(batching: bool, max_wait_ms: float) -> tuple[subprocess.Popen[str], str]:
    """A ``lenetish serve`` subprocess on a free loopback port, and its URL."""
    command = [sys.executable, "-m", "lenetish", "serve", "--port", "0"]
    command += ["--max-wait-ms", str(max_wait_ms)] + ([] if batching else ["--no-batching"])
    server = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    assert server.stdout is not None
    line = server.stdout.readline()
    if " at http://127.0.0.1:" not in line:
        server.kill()
        sys.exit(f"the server did not start: {line!r}")
    return server, line.split(" at ", 1)[1].split()[0]


def bodies(payload: str, count: int) -> tuple[list[tuple[bytes, str]], list[int]]:
    """``count`` request bodies (one test digit each) with their Content-Type, and labels."""
    images, labels = load_split(train=False)
    made = []
    for image in images[:count]:
        if payload == "json":
            body = json.dumps({"pixels": image.tolist(), "dtype": "uint8"}).encode()
            made.append((body, "application/json"))
        else:
            from PIL import Image

            buffer = io.BytesIO()
            Image.fromarray(image.numpy()).save(buffer, format="PNG")
            made.append((buffer.getvalue(), "image/png"))
    return made, labels[:count].tolist()


async def load(
    server: subprocess.Popen[str],
    url: str,
    requests: list[tuple[bytes, str]],
    labels: list[int],
    clients: int,
    total: int,
) -> dict[str, Any]:
    """``total`` requests from ``clients`` concurrent clients; latencies and right answers."""
    latencies: list[float] = []
    right = 0
    issued = 0
    limits = httpx2.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx2.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def one_client() -> None:
            nonlocal issued, right
            while issued < total:
                index = issued % len(requests)
                issued += 1
                body, kind = requests[index]
                started = time.perf_counter()
                answer = await client.post("predict", content=body, headers={"content-type": kind})
                latencies.append(time.perf_counter() - started)
                answer.raise_for_status()
                right += answer.json()["labels"][0] == labels[index]

        before = (await client.get("health")).json()
        cpu_before = cpu_seconds(server.pid)
        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
        cpu_after = cpu_seconds(server.pid)
        after = (await client.get("health")).json()
    latencies.sort()
    passes = after["forward_passes"] - before["forward_passes"]
    return {
        "requests": total,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(total / elapsed, 1),
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2),
        "accuracy": round(right / total, 4),
        "forward_passes": passes,
        "images_per_pass": round(total / max(passes, 1), 2),
        "server_cpu_ms_per_request": None
        if cpu_before is None or cpu_after is None
        else round(1000 * (cpu_after - cpu_before) / total, 3),
    }


def main() -> None:
    """Start both servers, alternate their rounds, print JSON lines and a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (16)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per round (2000)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per server (2)")
    parser.add_argument("--payload", choices=["json", "png"], default="json")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="batched server's wait")
    args = parser.parse_args()
    if not 1 <= args.clients <= 256:
        sys.exit("--clients must be from 1 to 256 (the load stays bounded)")
    requests, labels = bodies(args.payload, 1000)
    servers = {
        "batched": start_server(True, args.max_wait_ms),
        "unbatched": start_server(False, args.max_wait_ms),
    }
    common = {
        "date": datetime.date.today().isoformat(),
        "machine": describe_machine(),
        "torch": torch.__version__,
        "clients": args.clients,
        "payload": args.payload,
        "max_wait_ms": args.max_wait_ms,
        "load_before": os.getloadavg()[0],
    }
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    try:
        for server, url in servers.values():
            asyncio.run(load(server, url, requests, labels, args.clients, WARM_UP))
        for round_index in range(args.rounds):
            for name, (server, url) in servers.items():
                run = asyncio.run(load(server, url, requests, labels, args.clients, args.requests))
                results[name].append(run)
                print(json.dumps({"server": name, "round": round_index, **common, **run}))
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(60)
    print(f"\n{args.clients} clients, {args.requests} requests per round, median of {args.rounds}")
    head = ("req/s", "p50 ms", "p99 ms", "img/pass", "cpu ms/req")
    print(f"{'server':<10} " + " ".join(f"{name:>10}" for name in head))
    for name, runs in results.items():
        median = {
            key: statistics.median(run[key] for run in runs)
            for key in runs[0]
            if runs[0][key] is not None
        }
        print(
            f"{name:<10} {median['requests_per_s']:>10.1f} {median['p50_ms']:>10.2f} "
            f"{median['p99_ms']:>10.2f} {median['images_per_pass']:>10.2f} "
            f"{median.get('server_cpu_ms_per_request', float('nan')):>10.2f}"
        )
    ratios = [
        on["requests_per_s"] / off["requests_per_s"]
        for on, off in zip(results["batched"], results["unbatched"], strict=True)
    ]
    print(f"batched / unbatched requests per second, per round: {[round(r, 2) for r in ratios]}")


if __name__ == "__main__":
    main()
