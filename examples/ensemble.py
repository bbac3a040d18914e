"""Example: train an ensemble of MNISTConvNets with different seeds and score it.

    python examples/ensemble.py --members 3 --epochs 2     # the MNIST copy bundled with lenetish

``evaluate`` and ``predict`` accept a list of models and average their probabilities.
``LENETISH_EXAMPLE_SUBSET=N`` trains on the first N training images only.
"""

from __future__ import annotations

import argparse
import os

import torch

from lenetish import MNISTConvNet, Trainer, evaluate, make_loaders


def main() -> None:
    """Train the members one after another, then compare each with the ensemble."""
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
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    subset = os.environ.get("LENETISH_EXAMPLE_SUBSET")
    members = []
    for seed in range(args.members):
        # Each member sees its own initialisation and its own data order.
        loaders = make_loaders(args.data, seed=seed, subset=int(subset) if subset else None)
        torch.manual_seed(seed)
        model = MNISTConvNet()
        Trainer(model, epochs=args.epochs, seed=seed, progress=False).fit(loaders.train)
        members.append(model)
        print(f"member {seed}: test accuracy {evaluate(model, loaders.test).accuracy:.2%}")
    print(
        f"ensemble of {len(members)}: test accuracy {evaluate(members, loaders.test).accuracy:.2%}"
    )


if __name__ == "__main__":
    main()
