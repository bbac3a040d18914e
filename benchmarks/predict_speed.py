"""Benchmark: ``predict`` against a plain fp32 inference loop, in one process.

Both classify the 10,000 MNIST test images, given as uint8 as they are read from disk, with
the shipped ``default`` weights. The plain loop is what a user writes first: batches of 1,000
normalised to float32 NCHW, ``model(x)`` under ``torch.inference_mode``. ``predict`` runs with
its default ``precision="auto"`` (bfloat16 autocast where the device computes bf16 natively,
channels-last conv weights on the CPU) and with ``precision="32"``. The three alternate for
``--rounds`` rounds after a warm-up; the script prints one JSON line per variant (images per
second, the ratio to the plain loop within each round, its median over the rounds) and how
often the fast predictions equal the fp32 ones. ``--batch-sizes`` adds ``predict`` with other
batch sizes than its default (512 on the CPU).

    python benchmarks/predict_speed.py --data /path/to/mnist
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from machine_info import describe_machine
from torch import Tensor

from lenetish import load_split, predict, pretrained

MEAN, STD = 0.1307, 0.3081


def plain_loop(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 1000) -> Tensor:
    """The loop a user writes first: normalise each batch to float32 NCHW, argmax of model(x)."""
    model.eval()
    images = images.to(next(model.parameters()).device)  # on a GPU: all of them, once
    with torch.inference_mode():
        return torch.cat(
            [
                model(
                    ((images[i : i + batch_size].float() / 255 - MEAN) / STD).unsqueeze(1)
                ).argmax(dim=1)
                for i in range(0, len(images), batch_size)
            ]
        )


def seconds(function: Callable[[], object]) -> float:
    """Wall-clock seconds of one call (queued GPU work included)."""
    started = time.perf_counter()
    function()
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    """Alternate the plain loop and predict; print JSON lines and a table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=None, help="default: the bundled MNIST")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="where the model runs, e.g. cuda")
    parser.add_argument("--images", type=int, default=None, help="the first N test images only")
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="*",
        default=[],
        help="also time predict (auto) with these batch sizes, e.g. 256 1000 4096",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    images, _ = load_split(args.data, train=False, download=False)  # uint8 (10000, 28, 28)
    images = images[: args.images]  # all of them without --images
    device = torch.device(args.device)
    model = pretrained("default").to(device)
    variants: dict[str, Callable[[], object]] = {
        "plain fp32 loop": lambda: plain_loop(model, images),
        "predict precision=auto": lambda: predict(model, images),
        "predict precision=32": lambda: predict(model, images, precision="32"),
        **{
            f"predict auto, batch {size}": lambda size=size: predict(model, images, batch_size=size)
            for size in args.batch_sizes
        },
    }
    for run in variants.values():
        run()  # warm-up: oneDNN primitives, caches
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, run in variants.items():
            times[name].append(seconds(run))
    agreement = float(
        (predict(model, images).labels == predict(model, images, precision="32").labels)
        .float()
        .mean()
    )
    common = {
        "device": describe_machine(device),
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
        "images": len(images),
        "rounds": args.rounds,
    }
    plain = times["plain fp32 loop"]
    print(f"{'variant':<26}{'images/s':>10}{'x plain':>9}")
    for name, values in times.items():
        ratio = statistics.median(p / v for p, v in zip(plain, values, strict=True))
        row = {
            "benchmark": "predict_speed",
            "variant": name,
            "images_per_second": round(len(images) / statistics.median(values)),
            "ratio_to_plain_median_of_rounds": round(ratio, 2),
            "all_seconds": [round(v, 4) for v in values],
            **common,
        }
        print(f"{name:<26}{row['images_per_second']:>10}{ratio:>8.2f}x")
        print(json.dumps(row), flush=True)
    print(json.dumps({"benchmark": "predict_agreement", "auto_vs_32": agreement, **common}))


if __name__ == "__main__":
    main()
