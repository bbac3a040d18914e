"""Benchmark: a multi-seed search of recipe settings on a validation split (JSON lines, resumable).

A SPEC file (JSON, under ``benchmarks/search/``) names a recipe, optionally a ``base`` (recipe
fields every candidate starts from, so that a search stays reproducible after the recipe
changes), the seeds, the size of the validation split and a list of candidates, each a name and
the recipe fields it changes (the names of :class:`lenetish.Recipe`; ``augment`` settings
merge into the recipe's own)::

    {"recipe": "default", "base": {"weight_decay": 0.0}, "seeds": [0, 1, 2], "val_size": 10000,
     "candidates": [{"name": "as-is", "override": {}},
                    {"name": "lr-2e-3", "override": {"lr": 0.002}}]}

Each candidate trains all its seeds as ONE stack (:func:`lenetish.train_stack`) on the
training images minus the validation split (``val_size`` images chosen by the first seed; the
same split for every candidate), and every member is scored on that split after the fit (so a
weight average, which validation during the fit does not see, is what is scored). The test set
is never loaded. One JSON line per candidate is appended to the log (settings, per-seed and
mean validation accuracy, standard error of the mean, seconds, threads, CPU, load); a
candidate already in the log with the same settings is skipped, so an interrupted search
resumes where it stopped. At the end the logged candidates are printed as a ranked table.

    python benchmarks/accuracy_search.py benchmarks/search/default.json --threads 1
    python benchmarks/accuracy_search.py benchmarks/search/default.json --only as-is lr-2e-3
    python benchmarks/accuracy_search.py benchmarks/search/default.json --table   # no training
    python benchmarks/accuracy_search.py benchmarks/search/default.json --table --rst
    python benchmarks/accuracy_search.py benchmarks/search/default.json --subset 3000 \
        --val-size 1000 --epochs 1 --log /tmp/smoke.jsonl                  # a quick smoke run
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from accuracy import with_overrides  # the same merge of augment settings as accuracy.py
from machine_info import describe_machine

import lenetish
from lenetish import Recipe, evaluate, get_recipe, make_loaders, train_stack

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    """Run the candidates of a SPEC that are not in the log yet, then print the ranked table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("spec", type=Path, help="the search, a JSON file (see above)")
    parser.add_argument("--data", default=None, help="MNIST folder (default: the bundled copy)")
    parser.add_argument("--log", type=Path, default=None, help="default: results/search-SPEC.jsonl")
    parser.add_argument("--only", nargs="+", default=None, help="run these candidates only")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (recorded)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=None, help="override (smoke runs)")
    parser.add_argument("--subset", type=int, default=None, help="first N images (smoke runs)")
    parser.add_argument("--val-size", type=int, default=None, help="override the spec's")
    parser.add_argument("--table", action="store_true", help="print the table, train nothing")
    parser.add_argument("--rst", action="store_true", help="print the table as reST rows")
    args = parser.parse_args()
    spec = json.loads(args.spec.read_text())
    log = args.log or RESULTS / f"search-{args.spec.stem}.jsonl"
    names = [candidate["name"] for candidate in spec["candidates"]]
    unknown = sorted(set(args.only or ()) - set(names))
    if unknown:
        parser.error(f"--only names no candidate of the spec: {', '.join(unknown)}")
    if not args.table:
        torch.set_num_threads(args.threads)
        for candidate in spec["candidates"]:
            if args.only is not None and candidate["name"] not in args.only:
                continue
            settings = candidate_settings(spec, candidate, args)
            if any(row["settings"] == settings for row in read_log(log)):
                print(f"{candidate['name']}: in {log} already, skipped", flush=True)
                continue
            row = run_candidate(settings, args)
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    print(rst_rows(read_log(log)) if args.rst else ranked_table(read_log(log)))


def candidate_settings(
    spec: dict[str, Any], candidate: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """What decides a candidate's result: the key that resuming matches on."""
    return {
        "name": candidate["name"],
        "recipe": spec["recipe"],
        "base": spec.get("base", {}),
        "override": candidate.get("override", {}),
        "seeds": candidate.get("seeds", spec["seeds"]),
        "val_size": args.val_size or spec["val_size"],
        "epochs": args.epochs,
        "subset": args.subset,
    }


def run_candidate(settings: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Train the candidate's seeds as one stack and score every member on the validation split."""
    base = with_overrides(get_recipe(settings["recipe"]), settings["base"])
    recipe = with_overrides(base, settings["override"])
    seeds = settings["seeds"]
    load = os.getloadavg()[0]
    started = time.perf_counter()
    trained = train_stack(
        recipe,
        args.data,
        seeds=seeds,
        device=args.device,
        download=False,
        progress=False,
        epochs=settings["epochs"],
        subset=settings["subset"],
        val_size=settings["val_size"],
    )
    seconds = time.perf_counter() - started
    # The split train_stack held out: make_loaders' split is fixed by the first seed.
    val = make_loaders(
        args.data,
        val_size=settings["val_size"],
        seed=seeds[0],
        download=False,
        subset=settings["subset"] if settings["subset"] is not None else recipe.train_images,
        eval_batch_size=1000,
    ).val
    assert val is not None
    accuracies = [evaluate(member, val).accuracy for member in trained.stack.unstack()]
    return {
        "benchmark": "accuracy_search",
        "settings": settings,
        "recipe_used": recipe_fields(recipe),
        "val_accuracies": accuracies,
        "val_mean": statistics.mean(accuracies),
        "val_sem": standard_error(accuracies),
        "epochs_run": len(trained.history),
        "seconds": round(seconds, 1),
        "threads": torch.get_num_threads(),
        "machine": describe_machine(),
        "load_at_start": load,
        "load_at_end": os.getloadavg()[0],
        "torch": torch.__version__,
        "lenetish": lenetish.__version__,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def recipe_fields(recipe: Recipe) -> dict[str, Any]:
    """The recipe's settings that decide a result, as JSON values."""
    return {
        "epochs": recipe.epochs,
        "batch_size": recipe.batch_size,
        "optimizer": recipe.optimizer,
        "lr": recipe.lr,
        "scheduler": recipe.scheduler,
        "augment": recipe.augment,
        "label_smoothing": recipe.label_smoothing,
        "ema_decay": recipe.ema_decay,
        "weight_decay": recipe.weight_decay,
        "precision": recipe.precision,
    }


def standard_error(values: list[float]) -> float:
    """The standard error of the mean of ``values`` (0 for fewer than two)."""
    if len(values) < 2:
        return 0.0
    return statistics.stdev(values) / math.sqrt(len(values))


def read_log(log: Path) -> list[dict[str, Any]]:
    """The rows logged so far (none if the log does not exist)."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def ranked_table(rows: list[dict[str, Any]]) -> str:
    """The logged candidates, best mean validation accuracy first, as a plain-text table."""
    lines = [f"{'candidate':<28} {'val mean':>9} {'+- se':>7}  {'per seed':<26} {'seconds':>7}"]
    for row in sorted(rows, key=lambda row: row["val_mean"], reverse=True):
        seeds = " ".join(f"{accuracy:.2%}" for accuracy in row["val_accuracies"])
        lines.append(
            f"{row['settings']['name']:<28} {row['val_mean']:>9.3%} {row['val_sem']:>7.3%}  "
            f"{seeds:<26} {row['seconds']:>7.0f}"
        )
    return "\n".join(lines)


def rst_rows(rows: list[dict[str, Any]]) -> str:
    """The ranked table as the rows of a reST ``list-table`` (for docs/accuracy.rst)."""
    lines = []
    for row in sorted(rows, key=lambda row: row["val_mean"], reverse=True):
        override = json.dumps(row["settings"]["override"]) if row["settings"]["override"] else ""
        seeds = ", ".join(f"{accuracy:.2%}" for accuracy in row["val_accuracies"])
        lines += [
            f"   * - ``{row['settings']['name']}``",
            f"     - ``{override}``"
            if override
            else "     - none (the base: ``default`` before the search)",
            f"     - {row['val_mean']:.3%} ± {row['val_sem']:.3%} ({seeds})",
            f"     - {row['seconds']:.0f}",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
