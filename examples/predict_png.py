"""Example: classify your own PNG digits (dark ink on white, any size) with a trained model.

    python examples/predict_png.py my_digit.png other.png    # trains on the bundled MNIST first
    python examples/predict_png.py --weights runs/a/model.safetensors my_digit.png

Without a ``--weights`` file it first trains MNISTConvNet briefly; without image paths it draws
three test digits as dark-on-white PNGs of odd sizes (as a phone photo of paper would be) and
classifies those. ``LENETISH_EXAMPLE_SUBSET=N`` trains on the first N training images only.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from PIL import Image

from lenetish import MNISTConvNet, Trainer, load_split, load_weights, make_loaders, predict


def drawn_test_digits(data: str | None, folder: Path) -> list[Path]:
    """Save three MNIST test digits as dark ink on white, enlarged, as PNG files."""
    images, labels = load_split(data, train=False)
    paths = []
    for index, size in zip(range(3), (60, 150, 333), strict=True):
        picture = Image.fromarray(255 - images[index].numpy()).resize((size, size))
        path = folder / f"digit-{index}-label-{int(labels[index])}.png"
        picture.save(path)
        paths.append(path)
    return paths


def main() -> None:
    """Load or train a model, then print a label and a probability per image."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("images", nargs="*", help="PNG/JPEG files to classify")
    parser.add_argument(
        "--data",
        default=None,
        metavar="DIR",
        help="folder of MNIST idx files (default: $LENETISH_DATA or ~/.cache/lenetish if they "
        "hold them, else the copy bundled with lenetish)",
    )
    parser.add_argument("--weights", default=None, help="model.safetensors or last.pt")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()

    model = MNISTConvNet()
    if args.weights:
        load_weights(model, args.weights)
    else:
        subset = os.environ.get("LENETISH_EXAMPLE_SUBSET")
        loaders = make_loaders(args.data, subset=int(subset) if subset else None)
        Trainer(model, epochs=args.epochs, seed=0).fit(loaders.train)
    with tempfile.TemporaryDirectory() as scratch:
        paths = [Path(p) for p in args.images] or drawn_test_digits(args.data, Path(scratch))
        prediction = predict(model, [str(p) for p in paths])
        for path, label, confidence in zip(
            paths, prediction.labels.tolist(), prediction.confidence.tolist(), strict=True
        ):
            print(f"{path.name}: {label} (probability {confidence:.3f})")
    print(f"{len(paths)} images classified; for the test accuracy run `lenetish evaluate`")


if __name__ == "__main__":
    main()
