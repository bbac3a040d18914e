"""Benchmark: a Fashion-MNIST model's accuracy on the test images as PNG files vs as tensors.

Trains an MNISTConvNet on Fashion-MNIST (Adam, batch 100; by default one epoch on the first
20,000 training images, to keep a CPU run short), saves it with its dataset record, writes the
test images as 28x28 PNG files and predicts them by path (``predict`` prepares them the
Fashion-MNIST way) and as uint8 tensors. Prints one JSON line and a short table.

    .venv/bin/python benchmarks/fashion_png.py --data /path/to/fashion-mnist
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from lenetish import MNISTConvNet, load_split, make_loaders, predict, save_weights
from lenetish.saving.weightfiles import load_model


def train(data: str, subset: int, epochs: int, seed: int) -> torch.nn.Module:
    """An MNISTConvNet trained on Fashion-MNIST, saved and loaded back (it carries its record)."""
    loaders = make_loaders(data, subset=subset, batch_size=100, download=False, seed=seed)
    assert loaders.info.name == "fashion-mnist", f"{data} holds {loaders.info.name}, not Fashion"
    torch.manual_seed(seed)
    model = MNISTConvNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(epochs):
        for images, labels in loaders.train:
            optimizer.zero_grad()
            F.nll_loss(model(images), labels).backward()
            optimizer.step()
    path = Path(tempfile.mkdtemp()) / "fashion.safetensors"
    save_weights(model, path, dataset=loaders.info)
    return load_model(path)


def main() -> None:
    """Train, predict the test images both ways, print the result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="the Fashion-MNIST folder")
    parser.add_argument("--subset", type=int, default=20_000, help="training images used")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--count", type=int, default=10_000, help="test images compared")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    started = time.perf_counter()
    model = train(args.data, args.subset, args.epochs, args.seed)
    trained = time.perf_counter() - started
    images, labels = load_split(args.data, train=False, download=False)
    images, labels = images[: args.count], labels[: args.count]
    folder = Path(tempfile.mkdtemp())
    paths = []
    for index, image in enumerate(images):
        paths.append(folder / f"{index:05d}.png")
        Image.fromarray(image.numpy()).save(paths[-1])
    by_tensor = predict(model, images).labels
    started = time.perf_counter()
    by_path = predict(model, paths).labels
    png_seconds = time.perf_counter() - started
    result = {
        "benchmark": "fashion_png",
        "test_images": len(labels),
        "accuracy_tensor": round(float((by_tensor == labels).float().mean()), 4),
        "accuracy_png": round(float((by_path == labels).float().mean()), 4),
        "same_label": round(float((by_path == by_tensor).float().mean()), 4),
        "train_subset": args.subset,
        "epochs": args.epochs,
        "train_seconds": round(trained, 1),
        "png_predict_seconds": round(png_seconds, 1),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}",
        "date": datetime.date.today().isoformat(),
    }
    print(json.dumps(result))
    print(f"{'input':<8} {'accuracy':>9}")
    print(f"{'tensor':<8} {result['accuracy_tensor']:>9.2%}")
    print(f"{'PNG':<8} {result['accuracy_png']:>9.2%}")
    print(f"same label for {result['same_label']:.2%} of the {len(labels)} images")


if __name__ == "__main__":
    main()
