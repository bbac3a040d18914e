"""Benchmark: the test accuracy of an ensemble of saved networks (one JSON line).

The networks are weights files written by ``accuracy.py --save-models`` (or ``save_weights``),
possibly by runs in different processes; their probabilities are averaged. Nothing is chosen:
every file given is in the ensemble.

    python benchmarks/ensemble.py runs/best/*.safetensors --tta
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from lenetish import evaluate, make_loaders
from lenetish.saving.weightfiles import load_model


def main() -> None:
    """Load the networks, score each and the ensemble on the test set, print one JSON line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("weights", type=Path, nargs="+", help="weights files (.safetensors)")
    parser.add_argument("--data", default=None, help="MNIST folder (default: the bundled copy)")
    parser.add_argument("--tta", action="store_true", help="also score with shifted copies")
    args = parser.parse_args()
    test = make_loaders(args.data, download=False, eval_batch_size=2000).test
    models = [load_model(path) for path in args.weights]
    row: dict[str, object] = {
        "benchmark": "ensemble",
        "members": [path.name for path in args.weights],
        "member_accuracies": [evaluate(model, test).accuracy for model in models],
        "test_accuracy": evaluate(models, test).accuracy,
        "date": datetime.date.today().isoformat(),
    }
    if args.tta:
        row["test_accuracy_tta"] = evaluate(models, test, tta=True).accuracy
    print(json.dumps(row))


if __name__ == "__main__":
    main()
