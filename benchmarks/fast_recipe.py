"""Benchmark: the `fast` recipe, the least CPU time to 99% test accuracy, against the blog's loop.

Two modes:

    python benchmarks/fast_recipe.py --tune           # candidates on a validation split
    python benchmarks/fast_recipe.py                  # `fast` over 5 seeds on the test set

``--tune`` trains each candidate setting (the ``fast`` recipe with one field changed) on the
training set minus a 10,000-image validation split and prints validation accuracy and
training seconds; the test set is never read, so it chooses nothing. The default mode trains
the ``fast`` recipe with 5 seeds on all 60,000 training images, scores each on the test set,
and times one epoch of the seed-style reference loop (benchmarks/speed.py's, batch 200, fp32
Adam) in the same process: the blog's Adam run is 5 such epochs, and the ratio printed is
``fast`` training seconds / (5 x reference epoch seconds). Training time is the sum of the
History's per-epoch ``seconds`` (what ``lenetish train`` reports).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from machine_info import describe_machine
from speed import Reference, timed, torchvision_root

from lenetish import evaluate, get_recipe, make_loaders, resolve_device, train_recipe
from lenetish.data.sources import bundled_mnist

# One field of the `fast` recipe changed per candidate (tuning on the validation split).
# Candidate changes to the `fast` recipe for --tune. The recipe was chosen on the validation
# split (3 seeds each, 10,000 held-out images; with --val-size the first 47,500 training
# images are three quarters of the 50,000 left) from batch 64-256, peak lr 3e-3 to 2.4e-2,
# label smoothing 0-0.1, augmentation or none, and 60%-100% of an epoch.
CANDIDATES: list[dict[str, Any]] = [
    {"train_images": 47_500},
    {"train_images": None},
    {"train_images": None, "batch_size": 192},
    {"train_images": 47_500, "lr": 1.2e-2},
    {"train_images": None, "label_smoothing": 0.1},
]


def seconds_of(history: Any) -> float:
    """Training seconds as lenetish reports them: the sum of the epochs' ``seconds``."""
    return float(sum(history.column("seconds")))


def tune(args: argparse.Namespace) -> None:
    """Print validation accuracy and seconds for each candidate (test set unread)."""
    base = get_recipe("fast")
    for change in args.candidates:
        recipe = dataclasses.replace(base, **change)
        for seed in args.seeds:
            trained = train_recipe(
                recipe, args.data, seed=seed, val_size=10_000, download=False, progress=False
            )
            row = {
                "benchmark": "fast_recipe_tune",
                "change": change,
                "seed": seed,
                "val_accuracy": trained.history[-1]["val_accuracy"],
                "train_seconds": round(seconds_of(trained.history), 2),
                "machine": describe_machine(),
            }
            print(json.dumps(row), flush=True)


def report(args: argparse.Namespace) -> None:
    """The `fast` recipe over the seeds on the test set, against 5 reference epochs."""
    device = resolve_device(args.device)
    images = args.subset or 60_000  # a reference epoch over --subset images counts as 60,000
    with tempfile.TemporaryDirectory() as folder:
        reference = Reference(torchvision_root(args.data, Path(folder)), args.subset, device)
        if args.warm_up:
            reference.epoch()
        reference_epoch = timed(reference.epoch, device) * 60_000 / images
    test = make_loaders(args.data, download=False, device=device).test
    options = {"device": device, "subset": args.subset or None, "progress": False}
    if args.warm_up:  # untimed: on a GPU the first run pays for CUDA's start-up
        train_recipe("fast", args.data, seed=args.seeds[0], download=False, **options)
    accuracies, seconds = [], []
    for seed in args.seeds:
        trained = train_recipe("fast", args.data, seed=seed, download=False, **options)
        accuracies.append(evaluate(trained.model, test).accuracy)
        seconds.append(seconds_of(trained.history))
        print(
            json.dumps(
                {
                    "benchmark": "fast_recipe_seed",
                    "seed": seed,
                    "test_accuracy": accuracies[-1],
                    "train_seconds": round(seconds[-1], 2),
                }
            ),
            flush=True,
        )
    blog = 5 * reference_epoch
    summary = {
        "benchmark": "fast_recipe",
        "seeds": args.seeds,
        "mean_test_accuracy": round(statistics.mean(accuracies), 5),
        "min_test_accuracy": min(accuracies),
        "mean_train_seconds": round(statistics.mean(seconds), 2),
        "reference_epoch_seconds": round(reference_epoch, 2),
        "blog_5_epochs_seconds": round(blog, 1),
        "fraction_of_blog_time": round(statistics.mean(seconds) / blog, 4),
        "speedup": round(blog / statistics.mean(seconds), 1),
        "machine": describe_machine(device),
        "subset": args.subset or None,
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
        "command": "python " + " ".join(sys.argv),
    }
    print(json.dumps(summary))
    print(
        f"fast: {summary['mean_test_accuracy']:.2%} mean over {len(args.seeds)} seeds, "
        f"{summary['mean_train_seconds']} s of training = 1/{summary['speedup']} of the blog's "
        f"5 reference epochs ({summary['blog_5_epochs_seconds']} s)"
    )


def main() -> None:
    """Parse the options and run one mode."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="MNIST folder (default: bundled)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--tune", action="store_true", help="candidates on a validation split")
    parser.add_argument("--device", default="auto", help="where both loops train (report mode)")
    parser.add_argument(
        "--subset", type=int, default=0, help="train on the first N images (0: the recipe's)"
    )
    parser.add_argument(
        "--warm-up", action="store_true", help="one untimed reference epoch and recipe run first"
    )
    parser.add_argument(
        "--candidates", type=json.loads, default=CANDIDATES, help="JSON list of field changes"
    )
    args = parser.parse_args()
    args.data = args.data or bundled_mnist()
    if args.tune:
        tune(args)
    else:
        report(args)


if __name__ == "__main__":
    main()
