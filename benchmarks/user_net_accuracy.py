"""Benchmark: does lenetish's fast path change what a user's own network learns?

For networks written the way users write them (the blog post's class and pytorch/examples'
``Net``, both flattening with ``.view``), train each seed twice from the same initial
weights: once with the plain loop of ``speed.py`` (torchvision's MNIST through a shuffled
``DataLoader``, eager float32, Adam) and once with ``Trainer``'s defaults on
``make_loaders`` (where the channels-last rewrite of ``.view`` applies). The number of epochs
is fixed before any run; the test set only scores. Prints one JSON line per run and a table
of the mean test accuracy of each loop over the seeds.

    python benchmarks/user_net_accuracy.py --data /path/to/mnist --seeds 0 1 2 3 4 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from machine_info import describe_machine
from speed import NETWORKS, Reference, torchvision_root
from torch.utils.data import DataLoader

from lenetish import Trainer, evaluate, make_loaders


def plain_test_accuracy(model: torch.nn.Module, root: Path) -> float:
    """Test accuracy the plain way: torchvision's test set, ToTensor and Normalize."""
    from torchvision import datasets, transforms

    transform = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
    )
    test = datasets.MNIST(str(root), train=False, download=False, transform=transform)
    model.eval()
    correct = 0
    with torch.no_grad():
        for images, labels in DataLoader(test, batch_size=1000):
            correct += int((model(images).argmax(1) == labels).sum())
    return correct / len(test)


def main() -> None:
    """Train every seed of every network both ways; print the rows and the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of the MNIST idx files")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=1, help="fixed before any run")
    parser.add_argument(
        "--models", nargs="+", default=["blog-view", "examples-view"], choices=sorted(NETWORKS)
    )
    args = parser.parse_args()
    device = torch.device("cpu")
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        root = torchvision_root(args.data, Path(folder))
        for name in args.models:
            network = NETWORKS[name]
            for seed in args.seeds:
                torch.manual_seed(seed)
                reference = Reference(root, 0, device, network)
                initial = {k: v.clone() for k, v in reference.model.state_dict().items()}
                for _ in range(args.epochs):
                    reference.epoch()
                plain = plain_test_accuracy(reference.model, root)
                # The training order follows the seed too, as the plain loop's does.
                loaders = make_loaders(args.data, device=device, download=False, seed=seed)
                model = network()
                model.load_state_dict(initial)
                trainer = Trainer(model, epochs=args.epochs, device=device, progress=False,
                                  seed=seed)  # fmt: skip
                trainer.fit(loaders.train)
                ours = evaluate(model, loaders.test, device=device).accuracy
                for loop, accuracy in (("plain", plain), ("lenetish", ours)):
                    results.setdefault((name, loop), []).append(accuracy)
                row = {"model": name, "seed": seed, "epochs": args.epochs,
                       "plain": plain, "lenetish": ours}  # fmt: skip
                print(json.dumps(row), flush=True)
    print(json.dumps({"machine": describe_machine()}))
    print(f"\n{'model':16} {'plain loop':>11} {'lenetish':>9} {'difference':>11}  (test %, mean)")
    for name in args.models:
        plain = statistics.mean(results[(name, "plain")]) * 100
        ours = statistics.mean(results[(name, "lenetish")]) * 100
        print(f"{name:16} {plain:11.2f} {ours:9.2f} {ours - plain:+11.2f}")


if __name__ == "__main__":
    main()
