"""Benchmark: the seed's settings through lenetish's Trainer, test accuracy on real MNIST.

The blog post trained MNISTConvNet with Adam (default lr), batch 200, for 5 epochs and got
99.02%; SGD (lr 0.1, momentum 0.9) for 10 epochs gave 99.16%. This script repeats that with the
Trainer over several seeds and prints one JSON line per run, then a short table. Nothing is
chosen by the test set: the number of epochs is fixed in advance.

    python benchmarks/seed_accuracy.py --data /path/to/mnist --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time

import torch

from lenetish import MNISTConvNet, Trainer, evaluate, make_loaders


def run(
    data: str, *, optimizer: str, epochs: int, seed: int, device: str, precision: str
) -> dict[str, object]:
    """Train once with the seed's settings and return the result as a dict."""
    loaders = make_loaders(data, batch_size=200, device=device, download=False, seed=seed)
    torch.manual_seed(seed)
    model = MNISTConvNet()
    trainer = Trainer(
        model,
        optimizer=optimizer,
        epochs=epochs,
        device=device,
        seed=seed,
        precision=precision,
        progress=False,
    )
    started = time.perf_counter()
    history = trainer.fit(loaders.train)
    seconds = time.perf_counter() - started
    result = evaluate(model, loaders.test)
    return {
        "benchmark": "seed_accuracy",
        "optimizer": optimizer,
        "precision": trainer.precision,
        "epochs": epochs,
        "batch_size": 200,
        "seed": seed,
        "test_accuracy": result.accuracy,
        "test_correct": result.correct,
        "final_train_loss": round(history[-1]["loss"], 5),
        "train_seconds": round(seconds, 1),
        "device": str(trainer.device),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
    }


def main() -> None:
    """Run every seed, print JSON lines and a summary table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=None, help="MNIST folder (default: the bundled copy)")
    parser.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="default: 5 for adam, 10 for sgd (the seed's settings)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="32", help="32, bf16-mixed or auto")
    args = parser.parse_args()
    epochs = args.epochs or (5 if args.optimizer == "adam" else 10)
    results = []
    for seed in args.seeds:
        result = run(
            args.data,
            optimizer=args.optimizer,
            epochs=epochs,
            seed=seed,
            device=args.device,
            precision=args.precision,
        )
        print(json.dumps(result), flush=True)
        results.append(result)
    accuracies = [float(r["test_accuracy"]) for r in results]  # type: ignore[arg-type]
    spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    print(
        f"{args.optimizer}, {args.precision}, {epochs} epochs, {len(accuracies)} seeds: mean "
        f"{statistics.mean(accuracies):.2%} (sd {spread:.2%}, min {min(accuracies):.2%}, "
        f"max {max(accuracies):.2%})"
    )


if __name__ == "__main__":
    main()
