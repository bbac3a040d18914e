"""Benchmark: memory across 100 consecutive ``fit`` calls in one process (prints JSON).

Each call trains a fresh MNISTConvNet for one epoch on the first 2,000 MNIST training images
with a History, a ModelCheckpoint and an EarlyStopping callback. Resident memory is sampled
after calls 10, 50 and 100; a leak shows up as steady growth between the samples.

    python benchmarks/repeated_fit.py --data /path/to/mnist
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import resource
import tempfile
from pathlib import Path

import torch

from lenetish import EarlyStopping, MNISTConvNet, ModelCheckpoint, Trainer, make_loaders


def resident_mib() -> float:
    """Current resident set size of this process, in MiB (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def main() -> None:
    """Run the fits and print one JSON line with the memory samples."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=None, help="MNIST folder (default: the bundled copy)")
    parser.add_argument("--fits", type=int, default=100)
    args = parser.parse_args()
    loaders = make_loaders(args.data, subset=2_000, val_size=200, download=False)
    samples: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        for fit in range(1, args.fits + 1):
            trainer = Trainer(
                MNISTConvNet(),
                epochs=1,
                device="cpu",
                progress=False,
                callbacks=[ModelCheckpoint(folder), EarlyStopping("val_loss")],
            )
            trainer.fit(loaders.train, loaders.val)
            if fit in (10, 50, args.fits):
                gc.collect()
                samples[fit] = round(resident_mib(), 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "benchmark": "repeated_fit",
                "fits": args.fits,
                "resident_mib_after": samples,
                "peak_resident_mib": round(peak, 1),
                "torch": torch.__version__,
                "date": datetime.date.today().isoformat(),
            }
        )
    )


if __name__ == "__main__":
    main()
