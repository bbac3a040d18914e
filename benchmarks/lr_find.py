"""Benchmark: lr_find's suggested learning rate against the default one, one epoch each.

On MNIST with a validation split of 10,000 images carved from the training set (the test set
is never read), the seed network (MNISTConvNet) from one seed runs :func:`lenetish.lr_find`
with its defaults (100 steps from 1e-7 to 10), then trains one epoch with Adam at the
suggested rate; the same initial weights then train one epoch with the Trainer's defaults
(Adam at 1e-3, the seed-adam recipe), on the same batches of 200. Everything else is equal,
so the difference is the learning rate's. The default recipe's other settings (batch 64,
one-cycle, augmentation, label smoothing) would change more than the rate, so they are not
the comparison here. Prints one JSON line per run, then a table; the target is the suggested
rate's validation accuracy within 0.3 points of the default's (or above it).

    python benchmarks/lr_find.py                      # CPU or GPU ("auto"), bundled MNIST
    python benchmarks/lr_find.py --device cpu --seed 1 --plot lr_find.png
    python benchmarks/lr_find.py --subset 3000 --val-size 1000 --num-steps 20   # a quick check
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time

import torch
from machine_info import describe_machine

from lenetish import MNISTConvNet, Trainer, lr_find, make_loaders, seed_everything

TARGET_POINTS = 0.3  # the suggestion may trail the default's accuracy by at most this much


def main() -> None:
    """Find a rate, train with it and with the default, print JSON lines and a table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=None, help="MNIST folder (default: the bundled copy)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-steps", type=int, default=100, help="steps of the ramp")
    parser.add_argument("--plot", default=None, help="also draw the lr_find curve to this PNG")
    parser.add_argument("--val-size", type=int, default=10_000, help="held-out training images")
    parser.add_argument("--subset", type=int, default=None, help="use only N training images")
    args = parser.parse_args()
    loaders = make_loaders(
        args.data,
        val_size=args.val_size,
        batch_size=200,
        device=args.device,
        seed=args.seed,
        subset=args.subset,
    )
    common = {
        "benchmark": "lr_find",
        "seed": args.seed,
        "train_images": loaders.train.num_samples,
        "val_images": loaders.val.num_samples if loaders.val is not None else 0,
        "date": datetime.date.today().isoformat(),
        "load_average": os.getloadavg()[0],
        "torch": torch.__version__,
    }

    seed_everything(args.seed)
    model = MNISTConvNet()
    initial = [t.clone() for t in model.state_dict().values()]
    finder = Trainer(model, device=args.device, seed=args.seed, progress=False)
    started = time.perf_counter()
    result = lr_find(finder, loaders.train, num_steps=args.num_steps)
    seconds = time.perf_counter() - started
    restored = all(
        torch.equal(a, b) for a, b in zip(initial, model.state_dict().values(), strict=True)
    )
    machine = describe_machine(finder.device)
    finding = {
        **common,
        "run": "lr_find",
        "steps": len(result.lrs),
        "diverged": result.diverged,
        "suggestion": result.suggestion,
        "weights_restored": restored,
        "seconds": round(seconds, 1),
        "machine": machine,
    }
    print(json.dumps(finding), flush=True)
    if args.plot:
        result.plot(args.plot)
    if result.suggestion is None:
        raise SystemExit("lr_find gave no suggestion (see the log); nothing to compare")

    rows = []
    for run, lr, trained in (
        ("suggested", result.suggestion, model),
        ("default", None, _fresh_model(args.seed)),
    ):
        trainer = Trainer(
            trained,
            optimizer="adam",
            lr=lr,
            epochs=1,
            device=args.device,
            seed=args.seed,
            progress=False,
        )
        started = time.perf_counter()
        history = trainer.fit(loaders.train, loaders.val)
        row = {
            **common,
            "run": run,
            "lr": trainer.lr,
            "epochs": 1,
            "val_accuracy": history[-1]["val_accuracy"],
            "val_loss": round(history[-1]["val_loss"], 5),
            "train_loss": round(history[-1]["loss"], 5),
            "seconds": round(time.perf_counter() - started, 1),
            "machine": machine,
        }
        print(json.dumps(row), flush=True)
        rows.append(row)

    suggested, default = (float(row["val_accuracy"]) for row in rows)
    gap = 100 * (suggested - default)
    print(f"\n{'run':<10} {'lr':>9} {'val accuracy':>13} {'seconds':>8}")
    for row in rows:
        print(
            f"{row['run']:<10} {row['lr']:>9.2e} {float(row['val_accuracy']):>13.2%} "
            f"{row['seconds']:>8}"
        )
    verdict = "met" if gap >= -TARGET_POINTS else "missed"
    print(
        f"lr_find: {finding['steps']} steps in {finding['seconds']} s, weights restored: "
        f"{restored}; suggested - default = {gap:+.2f} points (target >= -{TARGET_POINTS}: "
        f"{verdict}); {machine}, load {common['load_average']:.2f}, {common['date']}"
    )


def _fresh_model(seed: int) -> MNISTConvNet:
    """The seed network with the initial weights of ``seed`` (the lr_find run's, too)."""
    seed_everything(seed)
    return MNISTConvNet()


if __name__ == "__main__":
    main()
