"""Benchmark: seconds for one pass over the MNIST training loader (prints one JSON line)."""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time

import torch

from lenetish import TensorLoader, make_loaders


def time_pass(loader: TensorLoader) -> float:
    """Seconds to draw every batch of one epoch, with the device synchronised at the end."""
    started = time.perf_counter()
    checksum = torch.zeros((), device=loader.device)
    for images, _ in loader:
        checksum += images[0, 0, 0, 0]  # touch each batch so the gather really happens
    if loader.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    """Time passes over the training loader and print the median as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=None, help="MNIST folder (default: the bundled copy)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()

    started = time.perf_counter()
    loaders = make_loaders(
        args.data, batch_size=args.batch_size, device=args.device, download=False
    )
    load_seconds = time.perf_counter() - started
    assert isinstance(loaders.train, TensorLoader)
    time_pass(loaders.train)  # warm-up
    passes = [time_pass(loaders.train) for _ in range(args.passes)]
    result = {
        "benchmark": "loader_pass",
        "device": str(loaders.train.device),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        "torch threads",
        "date": datetime.date.today().isoformat(),
        "torch": torch.__version__,
        "batch_size": args.batch_size,
        "samples": loaders.train.num_samples,
        "load_seconds": round(load_seconds, 3),
        "pass_seconds_median": round(statistics.median(passes), 4),
        "pass_seconds_all": [round(p, 4) for p in passes],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
