"""Benchmark: lenetish's Trainer against a seed-style training loop, in one process.

The reference mirrors the blog post's script: torchvision's ``MNIST`` dataset with
``ToTensor`` and ``Normalize`` through a ``DataLoader`` (batch 200, shuffled), the same network
written out as in the post, eager float32, Adam. lenetish runs ``MNISTConvNet`` through the
``Trainer`` on ``make_loaders`` data held on the device. The two alternate epoch by epoch after
a warm-up epoch each, and the script prints one JSON line per configuration and a table.

    python benchmarks/speed.py --data /path/to/mnist              # CPU, 12k subset
    python benchmarks/speed.py --data /path/to/mnist --device cuda --subset 0

With ``--time-to-accuracy`` it also trains lenetish's fastest setting from scratch and
reports the training time until the test accuracy, checked after every epoch, first reaches
99.0% (the checks are not counted in the time).
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from machine_info import describe_machine
from torch import nn
from torch.utils.data import DataLoader, Subset

from lenetish import MNISTConvNet, Trainer, evaluate, load_split, make_loaders, predict
from lenetish.data.sources import bundled_mnist

FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class SeedNet(nn.Module):
    """The blog post's network, written the way the post wrote it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 24, 3, 1)
        self.conv2 = nn.Conv2d(24, 48, 3, 1)
        self.fc1 = nn.Linear(1200, 200)
        self.fc2 = nn.Linear(200, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The seed's forward pass: log-probabilities (N, 10)."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return F.log_softmax(self.fc2(x), dim=1)


class BlogViewNet(SeedNet):
    """The seed network flattening with ``.view``, as the blog post's class does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (N, 10), flattened with ``.view``."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(-1, 1200)
        x = F.relu(self.fc1(x))
        return F.log_softmax(self.fc2(x), dim=1)


class ExamplesViewNet(nn.Module):
    """pytorch/examples' MNIST network as most users write it: dropout layers, ``.view``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (N, 10)."""
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)  # (N, 64, 12, 12)
        x = self.dropout1(x).view(-1, 9216)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)


#: The networks ``--model`` picks: lenetish's own, and two written as users write them.
NETWORKS: dict[str, type[nn.Module]] = {
    "seed": MNISTConvNet,
    "blog-view": BlogViewNet,
    "examples-view": ExamplesViewNet,
}


def torchvision_root(data: Path, folder: Path) -> Path:
    """Lay the idx files out as torchvision's MNIST expects (root/MNIST/raw, uncompressed)."""
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in FILES:
        source = data / name if (data / name).exists() else data / (name + ".gz")
        if source.suffix == ".gz":
            with gzip.open(source) as packed, open(raw / name, "wb") as out:
                shutil.copyfileobj(packed, out)
        else:
            shutil.copy(source, raw / name)
    return folder


class Reference:
    """The seed-style loop: DataLoader + ToTensor/Normalize, eager float32, Adam."""

    def __init__(
        self, root: Path, subset: int, device: torch.device, network: type[nn.Module] = SeedNet
    ) -> None:
        from torchvision import datasets, transforms

        transform = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
        )
        dataset = datasets.MNIST(str(root), train=True, download=False, transform=transform)
        if subset:
            dataset = Subset(dataset, range(subset))  # type: ignore[assignment]
        self.loader = DataLoader(dataset, batch_size=200, shuffle=True)
        self.device = device
        self.model = network().to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters())

    def epoch(self) -> None:
        """One pass over the data."""
        self.model.train()
        for images, labels in self.loader:
            images, labels = images.to(self.device), labels.to(self.device)
            self.optimizer.zero_grad()
            loss = F.nll_loss(self.model(images), labels)
            loss.backward()
            self.optimizer.step()


def synchronise(device: torch.device) -> None:
    """Wait for the device, so wall-clock times include all queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function: object, device: torch.device) -> float:
    """Seconds ``function()`` takes, device work included."""
    synchronise(device)
    started = time.perf_counter()
    function()  # type: ignore[operator]
    synchronise(device)
    return time.perf_counter() - started


def main() -> None:
    """Alternate reference and lenetish epochs; print JSON lines and a table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=None, type=Path, help="default: the bundled MNIST")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--subset", type=int, default=12_000, help="training images per epoch (0: all 60,000)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs of each")
    parser.add_argument(
        "--precision",
        nargs="+",
        default=["32", "auto"],
        help="lenetish precisions to time; 'auto' is bf16 where native",
    )
    parser.add_argument("--time-to-accuracy", action="store_true")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="print torch.profiler's table of one more lenetish epoch at the last precision",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time Trainer(compile=True) at the last precision (compile time reported apart)",
    )
    parser.add_argument(
        "--cuda-graphs",
        choices=["off", "on", "both"],
        default="off",
        help="the captured step (Trainer(cuda_graphs=True), rows '<precision>+graphs'): "
        "off, on, or both side by side",
    )
    parser.add_argument("--log", action="store_true", help="print lenetish's log lines")
    parser.add_argument(
        "--model",
        choices=sorted(NETWORKS),
        default="seed",
        help="the network both loops train: 'seed' (lenetish's MNISTConvNet; the reference "
        "writes it out as the post did), or a user-style network flattening with .view",
    )
    args = parser.parse_args()
    if args.log:  # e.g. which training step each fit uses, and why
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.data = args.data or bundled_mnist()
    device = torch.device(args.device)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        network = NETWORKS[args.model]
        reference = Reference(
            torchvision_root(args.data, Path(folder)),
            args.subset,
            device,
            SeedNet if args.model == "seed" else network,
        )
        loaders = make_loaders(args.data, device=device, download=False, subset=args.subset or None)
        graphs = {"off": [False], "on": [True], "both": [False, True]}[args.cuda_graphs]
        trainers = {
            precision + ("+graphs" if captured else ""): Trainer(
                network(),
                epochs=1,
                device=device,
                precision=precision,
                progress=False,
                cuda_graphs=captured,
            )
            for precision in args.precision
            for captured in graphs
        }
        if args.compile:
            trainers[f"{args.precision[-1]}+compile"] = Trainer(
                MNISTConvNet(),
                epochs=1,
                device=device,
                precision=args.precision[-1],
                progress=False,
                compile=True,
            )
        reference.epoch()  # warm-up
        for name, trainer in trainers.items():
            seconds = timed(lambda trainer=trainer: trainer.fit(loaders.train), device)
            if name.endswith("+compile"):  # the first fit compiles: reported, not counted
                print(json.dumps({"benchmark": "compile", "first_fit_seconds": round(seconds, 2)}))
        times: dict[str, list[float]] = {"reference": [], **{p: [] for p in trainers}}
        for _ in range(args.rounds):
            times["reference"].append(timed(reference.epoch, device))
            for precision, trainer in trainers.items():
                times[precision].append(
                    timed(lambda trainer=trainer: trainer.fit(loaders.train), device)
                )
    images = args.subset or 60_000
    reference_median = statistics.median(times["reference"])
    # The load on a shared machine drifts; the ratio within each alternation round is steadier.
    round_ratios = {
        name: statistics.median(r / v for r, v in zip(times["reference"], values, strict=True))
        for name, values in times.items()
    }
    common = {
        "device": describe_machine(device),
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
        "images_per_epoch": images,
        "batch_size": 200,
        "rounds": args.rounds,
        "model": args.model,
    }
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        row = {
            "benchmark": "speed",
            "loop": "reference" if name == "reference" else "lenetish",
            "precision": "32" if name == "reference" else name,
            "cuda_graphs": name.endswith("+graphs"),
            "seconds_per_epoch": round(median, 4),
            "seconds_per_full_epoch": round(median * 60_000 / images, 3),
            "images_per_second": round(images / median),
            "speedup_vs_reference": round(reference_median / median, 2),
            "speedup_median_of_rounds": round(round_ratios[name], 2),
            "all_seconds": [round(v, 4) for v in values],
            **common,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{'loop':<22}{'s/epoch (60k)':>14}{'images/s':>12}{'speed-up':>10}{'per round':>11}")
    for row in rows:
        label = f"{row['loop']} {row['precision']}"
        print(
            f"{label:<22}{row['seconds_per_full_epoch']:>14}{row['images_per_second']:>12}"
            f"{row['speedup_vs_reference']:>9}x{row['speedup_median_of_rounds']:>10}x"
        )
    predict_throughput(args, device, common)
    if args.profile:
        profile_epoch(list(trainers.values())[-1], loaders.train)
    if args.time_to_accuracy:
        time_to_accuracy(args, device, common)


def profile_epoch(trainer: Trainer, train: object) -> None:
    """Print where one epoch's time goes, op by op (self CPU time, as torch.profiler gives it)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        trainer.fit(train)  # type: ignore[arg-type]
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def predict_throughput(args: argparse.Namespace, device: torch.device, common: dict) -> None:  # type: ignore[type-arg]
    """Images per second of ``predict`` on the 10,000 test images (uint8, as from disk)."""
    images, _ = load_split(args.data, train=False, download=False)
    model = MNISTConvNet().to(device)
    predict(model, images[:1000])  # warm-up
    seconds = statistics.median(timed(lambda: predict(model, images), device) for _ in range(3))
    print(
        json.dumps(
            {
                "benchmark": "predict",
                "images": len(images),
                "images_per_second": round(len(images) / seconds),
                **common,
            }
        )
    )


def time_to_accuracy(args: argparse.Namespace, device: torch.device, common: dict) -> None:  # type: ignore[type-arg]
    """Train the fastest setting on all 60,000 images until 99.0% test accuracy."""
    loaders = make_loaders(args.data, device=device, download=False, seed=0)
    torch.manual_seed(0)
    model = MNISTConvNet()
    trainer = Trainer(
        model, epochs=1, device=device, precision=args.precision[-1], progress=False, seed=0
    )
    spent = 0.0
    for epoch in range(1, 21):
        loaders.train.set_epoch(epoch - 1)  # type: ignore[union-attr]
        spent += timed(lambda: trainer.fit(loaders.train), device)
        accuracy = evaluate(model, loaders.test).accuracy
        if accuracy >= 0.99:
            break
    print(
        json.dumps(
            {
                "benchmark": "time_to_99",
                "precision": args.precision[-1],
                "epochs": epoch,
                "train_seconds": round(spent, 2),
                "test_accuracy": accuracy,
                **common,
            }
        )
    )


if __name__ == "__main__":
    main()
