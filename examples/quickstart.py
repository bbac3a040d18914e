"""Example: train the seed's MNISTConvNet with lenetish and report its test accuracy.

Run it from the root of a checkout; it trains on the MNIST copy bundled with lenetish (no
files, no internet needed), or on the idx files of ``--data DIR``:

    python examples/quickstart.py --epochs 1

``LENETISH_EXAMPLE_SUBSET=N`` trains on the first N training images only, for a quick check
that the example still runs.
"""

from __future__ import annotations

import argparse
import os

from lenetish import MNISTConvNet, Trainer, evaluate, make_loaders


def main() -> None:
    """Train for a few epochs with a validation split, then score on the test set."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data",
        default=None,
        metavar="DIR",
        help="folder of MNIST idx files (default: $LENETISH_DATA or ~/.cache/lenetish if they "
        "hold them, else the copy bundled with lenetish)",
    )
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    subset = os.environ.get("LENETISH_EXAMPLE_SUBSET")
    loaders = make_loaders(args.data, val_size=0.1, seed=0, subset=int(subset) if subset else None)
    model = MNISTConvNet()
    history = Trainer(model, epochs=args.epochs, seed=0).fit(loaders.train, loaders.val)
    for row in history:
        print(row)
    result = evaluate(model, loaders.test)
    print(f"test accuracy: {result.accuracy:.2%} ({result.correct}/{result.total})")


if __name__ == "__main__":
    main()
