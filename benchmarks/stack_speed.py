"""Benchmark: k seed networks trained together (ModelStack) vs k sequential fits (prints JSON).

Both sides do the same work: k MNISTConvNets, each seeded, trained with the Trainer's
defaults (Adam, channels-last, fp32) for ``--epochs`` over the first ``--subset`` MNIST
training images in batches of 200, in the same data order. Sequential = k ``fit`` calls one
after another; stacked = one ``fit`` of a ``ModelStack`` of k. The two alternate within one
process (which side goes first alternates too), so a busy machine slows both alike. The
ratio is sequential time / stacked time (above 1: the stack is faster).

    python benchmarks/stack_speed.py --data /path/to/mnist
    python benchmarks/stack_speed.py --executions loop,vmap   # compare the two forms
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch

from lenetish import MNISTConvNet, ModelStack, Trainer, make_loaders, resolve_device
from lenetish.stack import Execution


def timed(work: Callable[[], None], device: torch.device) -> float:
    """Seconds ``work`` takes (waiting for the device at both ends)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def cpu_model() -> str:
    """The CPU's model name (as ``lscpu`` prints it), from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    """Alternate sequential and stacked fits; print a JSON line per round and a summary."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=None, help="MNIST folder (default: the bundled copy)")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--subset", type=int, default=4_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--executions", default="auto", help="comma-separated: auto,loop,vmap")
    args = parser.parse_args()
    device = resolve_device(args.device)
    executions: list[Execution] = args.executions.split(",")
    loaders = make_loaders(
        args.data, subset=args.subset, batch_size=200, device=device, download=False
    )

    def sequential() -> None:
        for seed in range(args.k):
            torch.manual_seed(seed)
            model = MNISTConvNet()
            Trainer(model, epochs=args.epochs, device=device, progress=False).fit(loaders.train)

    def stacked(execution: Execution) -> Callable[[], None]:
        def run() -> None:
            stack = ModelStack(MNISTConvNet, args.k, execution=execution)
            Trainer(stack, epochs=args.epochs, device=device, progress=False).fit(loaders.train)

        return run

    sides: dict[str, Callable[[], None]] = {"sequential": sequential}
    sides.update({f"stack_{e}": stacked(e) for e in executions})
    for work in sides.values():  # warm up: allocators, oneDNN primitive caches
        work()
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    for round_index in range(args.rounds):
        order = list(sides) if round_index % 2 == 0 else list(reversed(sides))
        for name in order:
            seconds[name].append(timed(sides[name], device))
        row = {name: round(values[-1], 3) for name, values in seconds.items()}
        print(json.dumps({"round": round_index, "seconds": row}), flush=True)
    summary = {
        "benchmark": "stack_speed",
        "k": args.k,
        "subset": args.subset,
        "epochs": args.epochs,
        "rounds": args.rounds,
        "device": str(device),
        "machine": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
        "threads": torch.get_num_threads(),
        "median_seconds": {name: round(statistics.median(v), 3) for name, v in seconds.items()},
        "ratio_sequential_over_stack": {
            name: round(sum(seconds["sequential"]) / sum(seconds[name]), 3)
            for name in sides
            if name != "sequential"
        },
        "median_of_round_ratios": {
            name: round(
                statistics.median(
                    s / t for s, t in zip(seconds["sequential"], seconds[name], strict=True)
                ),
                3,
            )
            for name in sides
            if name != "sequential"
        },
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
    }
    print(json.dumps(summary))
    print(f"\n{'side':<14}{'median s':>10}{'median of round ratios':>24}")
    ratios: dict[str, float] = summary["median_of_round_ratios"]  # type: ignore[assignment]
    for name, values in seconds.items():
        print(f"{name:<14}{statistics.median(values):>10.2f}{ratios.get(name, 1.0):>24.2f}")


if __name__ == "__main__":
    main()
