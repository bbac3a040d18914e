"""Benchmark: a recipe over several seeds, scored once on the MNIST test set (JSON lines).

The seeds train together as one :class:`lenetish.ModelStack` (each member from its own seed's
initial weights, data order and augmentation); ``--sequential`` trains them one after
another instead. ``train_seconds`` of a stacked seed is its share of the stack's time.

Nothing is chosen by the test set: the recipe fixes its epochs and keeps its final weights.
``--save-weights DIR`` writes the first seed's weights and their record (recipe, seed, test
accuracy, SHA-256, command) as ``DIR/RECIPE.safetensors`` and ``DIR/RECIPE.json``; that is how
the weights shipped in ``src/lenetish/weights`` were made.

    python benchmarks/accuracy.py --recipe default --seeds 0 1 2 3 4             # one stack
    python benchmarks/accuracy.py --recipe default --seeds 0 1 2 3 4 --sequential
    python benchmarks/accuracy.py --recipe default --seeds 0 --save-weights src/lenetish/weights
    python benchmarks/accuracy.py --recipe best --seeds 3 4 --save-models runs/best

Tuning never looks at the test set: ``--val-size N`` trains on the other ``60000 - N`` images
and reports the last epoch's accuracy on the N held-out ones instead, and ``--override JSON``
changes fields of the recipe for such a trial (the names of :class:`lenetish.Recipe`)::

    python benchmarks/accuracy.py --recipe best --seeds 0 --val-size 10000 \
        --override '{"epochs": 40}'
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from machine_info import describe_machine

import lenetish
from lenetish import (
    Recipe,
    evaluate,
    get_recipe,
    make_loaders,
    save_weights,
    train_recipe,
    train_stack,
)
from lenetish.data.identity import recorded_dataset, remember_dataset


def main() -> None:
    """Train the recipe once per seed and print one JSON line each, then a summary."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=None, help="MNIST folder (default: the bundled copy)")
    parser.add_argument("--recipe", default="default")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=None, help="override (quick trials)")
    parser.add_argument("--tta", action="store_true", help="also score with shifted copies")
    parser.add_argument("--ensemble", action="store_true", help="also score all seeds together")
    parser.add_argument("--save-weights", type=Path, default=None)
    parser.add_argument(
        "--save-models",
        type=Path,
        default=None,
        help="write every seed's weights as DIR/RECIPE-seedN.safetensors (for ensemble.py)",
    )
    parser.add_argument(
        "--val-size", type=int, default=0, help="hold out N training images; no test set"
    )
    parser.add_argument(
        "--sequential",
        action="store_true",
        help="train the seeds one after another (default: together, as one ModelStack)",
    )
    parser.add_argument(
        "--override", type=json.loads, default={}, help="recipe fields to change, as JSON"
    )
    args = parser.parse_args()
    if args.val_size and (args.save_weights or args.ensemble or args.tta):
        parser.error("--val-size scores on the validation split only: drop the test-set options")
    recipe = with_overrides(get_recipe(args.recipe), args.override)
    # Tuning trials (--val-size) never even load the test set.
    test = (
        None
        if args.val_size
        else make_loaders(args.data, download=False, eval_batch_size=2000).test
    )
    accuracies, models = [], []
    for seed, run in zip(args.seeds, trained_runs(args, recipe), strict=True):
        models.append(run.model)
        row: dict[str, object] = {
            "benchmark": "validation" if args.val_size else "accuracy",
            "recipe": args.recipe,
            "override": args.override,
            "seed": seed,
            "epochs": run.epochs,
            "train_seconds": round(run.seconds, 1),
            "stacked": not args.sequential,
            "device": str(next(run.model.parameters()).device),
            "machine": describe_machine(),
            "torch": torch.__version__,
            "lenetish": lenetish.__version__,
            "date": datetime.date.today().isoformat(),
        }
        if test is None:
            accuracy = run.val_accuracy
            row["val_accuracy"] = accuracy
        else:
            result = evaluate(run.model, test)
            accuracy = result.accuracy
            row.update(test_accuracy=accuracy, test_correct=result.correct)
            if args.tta:
                row["test_accuracy_tta"] = evaluate(run.model, test, tta=True).accuracy
        print(json.dumps(row), flush=True)
        accuracies.append(accuracy)
        if args.save_models is not None:
            args.save_models.mkdir(parents=True, exist_ok=True)
            save_weights(run.model, args.save_models / f"{args.recipe}-seed{seed}.safetensors")
        if args.save_weights is not None and seed == args.seeds[0]:
            save_record(args, run.model, row)
    spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    scored_on = "test" if test is not None else "validation"
    print(
        f"{args.recipe}, {scored_on} accuracy: {len(accuracies)} seeds, "
        f"mean {statistics.mean(accuracies):.2%} "
        f"(sd {spread:.2%}, min {min(accuracies):.2%}, max {max(accuracies):.2%})"
    )
    if args.ensemble and len(models) > 1 and test is not None:
        ensemble = evaluate(models, test)
        print(
            json.dumps(
                {
                    "benchmark": "ensemble",
                    "recipe": args.recipe,
                    "seeds": args.seeds,
                    "test_accuracy": ensemble.accuracy,
                }
            )
        )


@dataclass
class Run:
    """One seed's trained model and what the report needs of its training."""

    model: torch.nn.Module
    epochs: int
    seconds: float
    val_accuracy: float


def trained_runs(args: argparse.Namespace, recipe: Recipe) -> Iterator[Run]:
    """Train the recipe for every seed: in one stack, or (``--sequential``) one by one."""
    options = {
        "device": args.device,
        "download": False,
        "progress": False,
        "epochs": args.epochs,
        "val_size": args.val_size,
    }
    if args.sequential:
        for seed in args.seeds:
            started = time.perf_counter()
            trained = train_recipe(recipe, args.data, seed=seed, **options)
            seconds = time.perf_counter() - started
            last = trained.history[-1]
            yield Run(trained.model, len(trained.history), seconds, last.get("val_accuracy", 0.0))
        return
    started = time.perf_counter()
    stacked = train_stack(recipe, args.data, seeds=args.seeds, **options)
    seconds = (time.perf_counter() - started) / len(args.seeds)  # each seed's share
    last = stacked.history[-1]
    for index, member in enumerate(stacked.stack.unstack()):
        remember_dataset(member, recorded_dataset(stacked.stack))
        val = last.get(f"val_accuracy/{index}", 0.0)
        yield Run(member.eval(), len(stacked.history), seconds, val)


def with_overrides(recipe: Recipe, fields: dict[str, object]) -> Recipe:
    """The recipe with some fields changed; ``augment`` settings merge into the recipe's own."""
    augment = fields.get("augment")
    if isinstance(augment, dict):
        merged = {**(recipe.augment or {}), **augment}
        if isinstance(merged.get("scale"), list):  # JSON has no tuples
            merged["scale"] = tuple(merged["scale"])
        fields = {**fields, "augment": merged}
    return replace(recipe, **fields)  # type: ignore[arg-type]


def save_record(args: argparse.Namespace, model: torch.nn.Module, row: dict[str, object]) -> None:
    """Write the weights and their record for shipping in the package."""
    args.save_weights.mkdir(parents=True, exist_ok=True)
    weights = args.save_weights / f"{args.recipe}.safetensors"
    save_weights(model.cpu(), weights)
    record = {
        "recipe": args.recipe,
        "seed": row["seed"],
        "test_accuracy": row["test_accuracy"],
        "epochs": row["epochs"],
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "trained_on": row["machine"],
        "torch": row["torch"],
        "date": row["date"],
        "command": "python " + " ".join(sys.argv),
    }
    (args.save_weights / f"{args.recipe}.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
