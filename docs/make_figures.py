"""Draw the documentation's figures with lenetish itself, into docs/_static/figures/.

    python docs/make_figures.py                          # $LENETISH_DATA, else the bundled MNIST
    python docs/make_figures.py --data /path/to/mnist --out /tmp/figures

Every picture comes from the library's own plot functions: two from the ``lenetish`` command
as a user runs it (:data:`COMMANDS`), the others from the functions below, which the pages
show next to their pictures. The model is the shipped ``default`` weights
(``lenetish.pretrained("default")``); the data is the MNIST idx files of ``--data``, else of
``$LENETISH_DATA``, else the copy bundled with lenetish. Nothing is downloaded. Without the
data or without matplotlib the script says so and exits 0, leaving the committed PNGs as they
are (CI runs it before the docs build).

The training curves come from ``history.json`` beside the figures: the History of a real run
on the 60,000 MNIST training images (5,000 of them held out for validation) on a 2-core CPU,
made with

    lenetish train --data /path/to/mnist --epochs 5 --val-size 5000 --seed 0 --out runs/first

(the ``default`` recipe, shortened to 5 epochs; it reported a test accuracy of 99.56%) and
copied from ``runs/first/history.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor, nn

from lenetish import (
    DatasetNotFoundError,
    History,
    evaluate,
    load_split,
    make_loaders,
    plot_confusion,
    plot_digits,
    plot_history,
    plot_mistakes,
    predict,
    pretrained,
)

FIGURES = Path(__file__).resolve().parent / "_static" / "figures"

# The pictures drawn by the ``lenetish`` command, as the quickstart shows them: run in the
# output folder, each writes the file it is keyed by.
COMMANDS: dict[str, list[str]] = {
    "digits.png": ["img", "--seed", "0", "--out", "digits.png"],
    "predictions.png": ["predict", "--sample", "8", "--seed", "0", "--plot", "predictions.png"],
}

# Everything the script writes, in the order it writes it.
OUTPUTS = (
    *COMMANDS,
    "test-predictions.png",
    "confusion.png",
    "mistakes.png",
    "history.png",
)


def draw_test_predictions(model: nn.Module, images: Tensor, labels: Tensor, out: Path) -> Path:
    """The first 16 test digits, captioned actual / predicted (a wrong guess in red)."""
    prediction = predict(model, images[:16])
    return plot_digits(
        images[:16],
        out / "test-predictions.png",
        labels=labels[:16],
        predicted=prediction.labels,
        title="actual / predicted",
    )


def draw_confusion(model: nn.Module, data: str | None, out: Path) -> Path:
    """The confusion matrix of the model over the whole test split."""
    loaders = make_loaders(data, download=False)
    result = evaluate(model, loaders.test)
    return plot_confusion(result.confusion, out / "confusion.png")


def draw_mistakes(model: nn.Module, images: Tensor, labels: Tensor, out: Path) -> Path:
    """The 16 test digits the model gets wrong with the highest confidence."""
    prediction = predict(model, images)
    return plot_mistakes(images, labels, prediction.probabilities, out / "mistakes.png", count=16)


def draw_history(history_file: Path, out: Path) -> Path:
    """Loss and accuracy per epoch of a recorded run (``history.json`` of ``lenetish train``)."""
    history = History.from_json(history_file)
    return plot_history(history, out / "history.png")


def run_command(arguments: Sequence[str], data: str | None, out: Path) -> None:
    """Run ``lenetish ARGUMENTS`` in ``out`` with the data folder, never downloading.

    Raises:
        RuntimeError: the command failed (its error output is in the message).
    """
    options = ["--no-download", *(["--data", data] if data else [])]
    result = subprocess.run(
        [sys.executable, "-m", "lenetish", *arguments, *options],
        cwd=out,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"lenetish {' '.join(arguments)} exited with status {result.returncode}:\n"
            f"{result.stderr}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Draw every figure into ``--out``; return 0, also when the data or matplotlib is missing."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--data",
        default=os.environ.get("LENETISH_DATA") or None,
        help="folder with the MNIST idx files (default: $LENETISH_DATA, else the bundled copy)",
    )
    parser.add_argument("--out", type=Path, default=FIGURES, help=f"default: {FIGURES}")
    parser.add_argument(
        "--history",
        type=Path,
        default=FIGURES / "history.json",
        help="the recorded History to draw (default: history.json beside the figures)",
    )
    args = parser.parse_args(argv)
    data = str(Path(args.data).resolve()) if args.data else None

    if importlib.util.find_spec("matplotlib") is None:
        print("make_figures: matplotlib is not installed; the committed figures stay as they are")
        return 0
    try:
        images, labels = load_split(data, train=False, download=False)
    except DatasetNotFoundError as exc:
        print(f"make_figures: no MNIST files ({exc}); the committed figures stay as they are")
        return 0

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for arguments in COMMANDS.values():
        run_command(arguments, data, out)
    model = pretrained("default")
    draw_test_predictions(model, images, labels, out)
    draw_confusion(model, data, out)
    draw_mistakes(model, images, labels, out)
    draw_history(args.history, out)
    for name in OUTPUTS:
        size = (out / name).stat().st_size
        print(f"make_figures: wrote {out / name} ({size / 1000:.0f} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
