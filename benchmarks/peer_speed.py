"""Benchmark: one CNN training epoch on the CPU, lenetish against plain PyTorch and its peers.

Three networks (lenetish's ``MNISTConvNet``, the blog post's class from ``speed.py`` and
pytorch/examples' MNIST network written with ``.view``) are each trained six ways on the same
real MNIST images: a hand-written eager float32 loop (``plain``), lenetish's ``Trainer`` with
its defaults, Lightning, Ignite's ``create_supervised_trainer``, skorch's
``NeuralNetClassifier`` and Keras 3 on its torch backend (the torch module wrapped as a layer
by ``keras.layers.TorchModuleWrapper``). Every way uses the same batch size, Adam at 1e-3,
the same first ``--subset`` training images normalised the same way, and the same initial
weights for a network. The loss is the negative log-likelihood of the networks'
log-probabilities (cross-entropy from logits where a library wants logits: the same number).

Each (network, way) pair runs in a fresh Python process: a warm-up epoch, then ``--epochs``
timed epochs, each timed from the library's own epoch-start hook to its epoch-end hook (so a
fit's setup is not counted; its whole wall time is reported apart as ``fit_seconds``). The
rounds alternate the ways: round 1 runs every pair once in order, round 2 again, and so on.
The script prints one JSON line per measurement, one per pair with the median over rounds
of the seconds per 60,000 images and the time as a multiple of ``plain`` for the same network,
and a Markdown table (``--table rst`` for a reStructuredText list-table).

The peers are not lenetish's dependencies; install them beside lenetish in an environment of
their own, e.g.::

    python -m venv peers && peers/bin/pip install -e . lightning pytorch-ignite skorch keras
    peers/bin/python benchmarks/peer_speed.py --data /path/to/mnist
    peers/bin/python benchmarks/peer_speed.py --subset 512 --rounds 1      # a quick check

A way whose library is missing is reported as "not installed" and skipped. With
``--nets`` and ``--ways`` a run keeps to some of them (``--nets`` also offers ``blog-view``,
the blog class flattening with ``.view``). Where each way's time goes: ``plain``,
Lightning and Ignite batch a ``TensorDataset`` through a ``DataLoader`` (one Python index per
image); skorch does the same through its own dataset; Keras slices its arrays in batches;
lenetish's ``make_loaders`` holds the normalised images as one tensor and batches by index.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from machine_info import describe_machine
from speed import BlogViewNet, ExamplesViewNet, SeedNet
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lenetish import MNISTConvNet, load_split
from lenetish.data.sources import bundled_mnist

#: The networks ``--nets`` picks from; the first three are the default.
NETWORKS: dict[str, type[nn.Module]] = {
    "seed": MNISTConvNet,
    "blog": SeedNet,
    "examples-view": ExamplesViewNet,
    "blog-view": BlogViewNet,
}
DEFAULT_NETS = ("seed", "blog", "examples-view")

#: Each way's importable module and its distribution (for the version); ``plain`` is torch.
WAYS: dict[str, tuple[str, str]] = {
    "plain": ("torch", "torch"),
    "lenetish": ("lenetish", "lenetish"),
    "lightning": ("lightning", "lightning"),
    "ignite": ("ignite", "pytorch-ignite"),
    "skorch": ("skorch", "skorch"),
    "keras": ("keras", "keras"),
}

MEAN, STD = 0.1307, 0.3081  # MNIST's normalisation, as in speed.py and lenetish
CHECK_IMAGES = 1024  # the first training images, scored before and after training
RESULT = "peer_speed result: "  # marks the worker's one line of output that the parent reads


class EpochClock:
    """Wall-clock seconds of each epoch, started and stopped from a library's hooks."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.threads: list[int] = []
        self._started = 0.0

    def start(self) -> None:
        """An epoch begins (records the intra-op threads torch uses at that moment)."""
        self.threads.append(torch.get_num_threads())
        self._started = time.perf_counter()

    def stop(self) -> None:
        """The epoch ends."""
        self.seconds.append(time.perf_counter() - self._started)


@dataclass
class Job:
    """One worker's network, data and settings, and what its training reported."""

    net: nn.Module
    images: torch.Tensor  # float32 (N, 1, 28, 28), normalised
    labels: torch.Tensor  # int64 (N,)
    data: Path
    subset: int
    batch_size: int
    epochs: int  # warm-up included
    seed: int
    lr: float = 1e-3
    clock: EpochClock = field(default_factory=EpochClock)
    first_loss: float | None = None  # the library's loss of the very first batch
    final_loss: float | None = None  # its mean training loss over the last epoch
    note: str = ""

    def loader(self) -> DataLoader[tuple[torch.Tensor, ...]]:
        """The shuffled DataLoader over a TensorDataset that plain, Lightning and Ignite use."""
        generator = torch.Generator().manual_seed(self.seed)
        dataset = TensorDataset(self.images, self.labels)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=True, generator=generator)

    def record_epoch(self, losses: list[float]) -> None:
        """Keep the first batch's loss of the fit and the mean of the latest epoch."""
        if self.first_loss is None and losses:
            self.first_loss = losses[0]
        self.final_loss = statistics.fmean(losses) if losses else None


def train_plain(job: Job) -> None:
    """A hand-written eager float32 loop."""
    loader = job.loader()
    optimizer = torch.optim.Adam(job.net.parameters(), lr=job.lr)
    for _ in range(job.epochs):
        job.clock.start()
        job.net.train()
        losses = []
        for images, labels in loader:
            optimizer.zero_grad()
            loss = F.nll_loss(job.net(images), labels)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        job.clock.stop()
        job.record_epoch(losses)


def train_lenetish(job: Job) -> None:
    """The lenetish Trainer with its defaults on ``make_loaders`` data (the same images)."""
    from lenetish import Callback, Trainer, make_loaders

    class Clock(Callback):
        def on_epoch_start(self, trainer: Any, state: Any) -> None:
            job.clock.start()

        def on_batch_end(self, trainer: Any, state: Any, output: Any) -> None:
            if job.first_loss is None:
                job.first_loss = float(output.loss)

        def on_epoch_end(self, trainer: Any, state: Any) -> None:
            job.clock.stop()

    loaders = make_loaders(
        job.data,
        batch_size=job.batch_size,
        device="cpu",
        download=False,
        subset=job.subset,
        seed=job.seed,
    )
    trainer = Trainer(
        job.net, lr=job.lr, epochs=job.epochs, device="cpu", progress=False, callbacks=[Clock()]
    )
    job.final_loss = float(trainer.fit(loaders.train)[-1]["loss"])


def train_lightning(job: Job) -> None:
    """A LightningModule, with Lightning's logging, checkpoints, bars and summary off."""
    import lightning.pytorch as pl

    class Module(pl.LightningModule):
        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net
            self.losses: list[float] = []

        def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
            images, labels = batch
            loss = F.nll_loss(self.net(images), labels)
            self.losses.append(loss.item())
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=job.lr)

    class Clock(pl.Callback):
        def on_train_epoch_start(self, trainer: Any, module: Module) -> None:
            module.losses = []
            job.clock.start()

        def on_train_epoch_end(self, trainer: Any, module: Module) -> None:
            job.clock.stop()
            job.record_epoch(module.losses)

    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=job.epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Clock()],
    )
    trainer.fit(Module(job.net), train_dataloaders=job.loader())


def train_ignite(job: Job) -> None:
    """Ignite's ``create_supervised_trainer`` (its output is each batch's loss)."""
    from ignite.engine import Engine, Events, create_supervised_trainer

    optimizer = torch.optim.Adam(job.net.parameters(), lr=job.lr)
    engine = create_supervised_trainer(job.net, optimizer, F.nll_loss, device="cpu")
    losses: list[float] = []

    def started(engine: Engine) -> None:
        losses.clear()
        job.clock.start()

    def completed(engine: Engine) -> None:
        job.clock.stop()
        job.record_epoch(losses)

    engine.add_event_handler(Events.EPOCH_STARTED, started)
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output))
    engine.add_event_handler(Events.EPOCH_COMPLETED, completed)
    engine.run(job.loader(), max_epochs=job.epochs)


def train_skorch(job: Job) -> None:
    """The skorch NeuralNetClassifier on the tensors, no validation split."""
    from skorch import NeuralNetClassifier
    from skorch.callbacks import Callback

    class Clock(Callback):
        def on_epoch_begin(self, net: Any, **kwargs: Any) -> None:
            job.clock.start()

        def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
            job.clock.stop()

    classifier = NeuralNetClassifier(
        job.net,
        # skorch's default NLLLoss takes the log of probabilities; these networks give
        # log-probabilities, for which cross-entropy is exactly the NLL.
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=job.lr,
        batch_size=job.batch_size,
        max_epochs=job.epochs,
        train_split=None,
        iterator_train__shuffle=True,
        device="cpu",
        verbose=0,
        callbacks=[Clock()],
    )
    classifier.fit(job.images, job.labels)
    job.first_loss = float(classifier.history[0, "batches", 0, "train_loss"])
    job.final_loss = float(classifier.history[-1, "train_loss"])


def train_keras(job: Job) -> None:
    """Keras 3 on its torch backend, the torch module wrapped by ``TorchModuleWrapper``."""
    os.environ["KERAS_BACKEND"] = "torch"
    import keras

    if keras.backend.backend() != "torch":
        raise RuntimeError(f"Keras runs on {keras.backend.backend()}, not torch")

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            job.clock.start()

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if job.first_loss is None:  # the running mean of the epoch: batch 0's own loss
                job.first_loss = float(logs["loss"])

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            job.clock.stop()
            job.final_loss = float(logs["loss"])

    model = keras.Sequential(
        [keras.Input(shape=(1, 28, 28)), keras.layers.TorchModuleWrapper(job.net)]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=job.lr, epsilon=1e-8),  # torch's epsilon
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    model.fit(
        job.images.numpy(),
        job.labels.numpy(),
        batch_size=job.batch_size,
        epochs=job.epochs,
        shuffle=True,
        verbose=0,
        callbacks=[Clock()],
    )
    job.note = "torch module wrapped by keras.layers.TorchModuleWrapper"


TRAIN: dict[str, Callable[[Job], None]] = {
    "plain": train_plain,
    "lenetish": train_lenetish,
    "lightning": train_lightning,
    "ignite": train_ignite,
    "skorch": train_skorch,
    "keras": train_keras,
}


def training_images(data: Path, subset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``subset`` training images, float32 ``(N, 1, 28, 28)`` normalised, and labels."""
    images, labels = load_split(data, train=True, download=False)
    images, labels = images[:subset], labels[:subset]
    return images.unsqueeze(1).float().div_(255).sub_(MEAN).div_(STD), labels.long()


def check_loss(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """The network's NLL on the first training images, in eval mode (no training effect)."""
    was_training = net.training
    net.eval()
    with torch.no_grad():
        loss = F.nll_loss(net(images[:CHECK_IMAGES]), labels[:CHECK_IMAGES]).item()
    net.train(was_training)
    return loss


def work(args: argparse.Namespace) -> dict[str, Any]:
    """Train one network one way in this process; return what to report."""
    warnings.filterwarnings("ignore")  # e.g. Lightning's advice on DataLoader workers
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # the same initial weights for a network, whatever the way
    images, labels = training_images(args.data, args.subset)
    job = Job(
        NETWORKS[args.nets](),
        images,
        labels,
        args.data,
        len(labels),
        args.batch_size,
        args.epochs + 1,
        args.seed,
    )
    before = check_loss(job.net, images, labels)
    started = time.perf_counter()
    TRAIN[args.ways](job)
    fit_seconds = time.perf_counter() - started
    if len(job.clock.seconds) != job.epochs:
        raise RuntimeError(f"timed {len(job.clock.seconds)} epochs, expected {job.epochs}")
    after = check_loss(job.net, images, labels)
    return {
        "epoch_seconds": job.clock.seconds,
        "fit_seconds": fit_seconds,
        "threads_in_epoch": sorted(set(job.clock.threads)),
        "first_batch_loss": job.first_loss,
        "final_loss": job.final_loss,
        "check_loss_before": before,
        "check_loss_after": after,
        # The library's own losses fell, and so did the loss of the very module it was given.
        "trained": job.first_loss is not None
        and job.final_loss is not None
        and job.final_loss < job.first_loss
        and after < before,
        "note": job.note,
    }


def package_version(way: str) -> str | None:
    """The installed version of the way's library, or None where it is missing."""
    module, distribution = WAYS[way]
    if find_spec(module) is None:
        return None
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


def run_worker(args: argparse.Namespace, net: str, way: str) -> dict[str, Any]:
    """Train one pair in a fresh Python process; its report, or why it failed."""
    command = [
        sys.executable, str(Path(__file__).resolve()), "--worker", "--nets", net, "--ways", way,
        "--data", str(args.data), "--subset", str(args.subset), "--batch-size",
        str(args.batch_size), "--epochs", str(args.epochs), "--threads", str(args.threads),
        "--seed", str(args.seed),
    ]  # fmt: skip
    # A CPU benchmark: no library may pick a GPU behind our back (Keras and Lightning would).
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "KERAS_BACKEND": "torch"}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=environment, timeout=args.timeout
        )
    except subprocess.TimeoutExpired:
        return {"status": "failed", "error": f"timed out after {args.timeout} s"}
    for line in done.stdout.splitlines():
        if line.startswith(RESULT):
            return {"status": "ok", **json.loads(line[len(RESULT) :])}
    said = (done.stderr or done.stdout).strip().splitlines()
    return {"status": "failed", "exit_code": done.returncode, "error": said[-1] if said else ""}


def measure(args: argparse.Namespace, common: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """Run every pair ``--rounds`` times, alternating; print one JSON line per measurement."""
    versions = {way: package_version(way) for way in args.ways}
    results: dict[tuple[str, str], Any] = {}
    for way, found in versions.items():
        if found is None:
            print(json.dumps({"benchmark": "peer_speed", "way": way, "status": "not installed"}))
    for round_number in range(1, args.rounds + 1):
        for net in args.nets:
            for way in args.ways:
                if versions[way] is None:
                    continue
                load = os.getloadavg()[0]  # others' work on the machine skews the times
                report = run_worker(args, net, way)
                timed = report.get("epoch_seconds", [])[1:]  # the first is the warm-up
                if timed:
                    seconds = statistics.median(timed) * 60_000 / args.images
                    report["seconds_per_60k"] = round(seconds, 3)
                row = {
                    "benchmark": "peer_speed",
                    "round": round_number,
                    "net": net,
                    "way": way,
                    "version": versions[way],
                    "load_before": round(load, 2),
                    **{k: round(v, 4) if isinstance(v, float) else v for k, v in report.items()},
                    **common,
                }
                if "epoch_seconds" in row:
                    row["epoch_seconds"] = [round(v, 4) for v in row["epoch_seconds"]]
                print(json.dumps(row), flush=True)
                results.setdefault((net, way), []).append(row)
    for way, found in versions.items():
        if found is None:
            for net in args.nets:
                results[net, way] = "not installed"
    return results


def summarise(
    args: argparse.Namespace, results: dict[tuple[str, str], Any]
) -> list[dict[str, Any]]:
    """One row per pair: median seconds per 60k images over rounds and the ratio to plain."""
    rows = []
    for net in args.nets:
        plain = results.get((net, "plain"))
        plain_seconds = _seconds(plain) if isinstance(plain, list) else []
        for way in args.ways:
            found = results.get((net, way))
            row: dict[str, Any] = {"benchmark": "peer_speed_summary", "net": net, "way": way}
            seconds = _seconds(found) if isinstance(found, list) else []
            if isinstance(found, str):
                row["status"] = found
            elif not seconds:
                row["status"] = "failed"
                row["error"] = found[-1].get("error", "") if found else ""
            else:
                median = statistics.median(seconds)
                row.update(
                    status="ok",
                    version=found[0]["version"],
                    seconds_per_60k=round(median, 3),
                    final_loss=found[-1]["final_loss"],
                    first_batch_loss=found[-1]["first_batch_loss"],
                    note=found[-1]["note"],
                    trained=all(m.get("trained") for m in found if "seconds_per_60k" in m),
                )
                if plain_seconds:
                    row["time_vs_plain"] = round(median / statistics.median(plain_seconds), 2)
                if len(plain_seconds) == len(seconds):  # the ratio within each round
                    per_round = [s / p for s, p in zip(seconds, plain_seconds, strict=True)]
                    row["time_vs_plain_per_round"] = round(statistics.median(per_round), 2)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def _seconds(rows: list[dict[str, Any]]) -> list[float]:
    """The seconds per 60k images of each successful measurement."""
    return [row["seconds_per_60k"] for row in rows if "seconds_per_60k" in row]


def table(rows: list[dict[str, Any]], style: str) -> str:
    """The summary as a Markdown table or a reStructuredText list-table."""
    header = ["network", "way", "version", "s / epoch (60k)", "time / plain", "per round"]
    header += ["loss: first batch -> last epoch"]
    cells = []
    for row in rows:
        if row["status"] != "ok":
            cells.append([row["net"], row["way"], row["status"], "", "", "", ""])
            continue
        cells.append(
            [
                row["net"],
                row["way"],
                row["version"],
                f"{row['seconds_per_60k']:.2f}",
                f"{row['time_vs_plain']:.2f}x" if "time_vs_plain" in row else "",
                f"{row['time_vs_plain_per_round']:.2f}x"
                if "time_vs_plain_per_round" in row
                else "",
                f"{row['first_batch_loss']:.3f} -> {row['final_loss']:.3f}"
                + ("" if row["trained"] else " (did not train)"),
            ]
        )
    if style == "rst":
        lines = [".. list-table::", "   :header-rows: 1", ""]
        for line in [header, *cells]:
            lines += [f"   * - {line[0]}", *(f"     - {cell}" for cell in line[1:])]
        return "\n".join(lines)
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(line) + " |" for line in cells)])


def comma_list(choices: dict[str, Any]) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated list of names from ``choices``."""

    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(unknown) or 'empty list'}; choose from {', '.join(choices)}"
            )
        return names

    return parse


def main() -> None:
    """Time every (network, way) pair in fresh processes; print JSON lines and a table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=None, type=Path, help="default: the bundled MNIST")
    parser.add_argument(
        "--subset", type=int, default=12_000, help="training images per epoch (0: all 60,000)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="fresh processes of each pair")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs after the warm-up")
    parser.add_argument("--batch-size", type=int, default=64, help="the same for every way")
    parser.add_argument("--nets", type=comma_list(NETWORKS), default=list(DEFAULT_NETS))
    parser.add_argument("--ways", type=comma_list(WAYS), default=list(WAYS))
    parser.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        help="torch.set_num_threads in every worker (default: all cores)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=int, default=3600, help="seconds one worker may take")
    parser.add_argument("--table", choices=["markdown", "rst"], default="markdown")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.data = args.data or bundled_mnist()
    args.subset = args.subset or 60_000
    if args.worker:  # one network, one way: --nets and --ways name one each
        args.nets, args.ways = args.nets[0], args.ways[0]
        print(RESULT + json.dumps(work(args)), flush=True)
        return
    torch.set_num_threads(args.threads)
    args.images = len(load_split(args.data, train=True, download=False)[1][: args.subset])
    common = {
        "device": describe_machine(torch.device("cpu")),
        "torch": torch.__version__,
        "date": datetime.date.today().isoformat(),
        "images_per_epoch": args.images,
        "batch_size": args.batch_size,
        "timed_epochs": args.epochs,
        "python": sys.version.split()[0],
    }
    results = measure(args, common)
    rows = summarise(args, results)
    print(
        f"\n{common['device']}; torch {common['torch']}; {args.images} images per epoch, "
        f"batch {args.batch_size}, Adam 1e-3; median of {args.rounds} rounds; {common['date']}\n"
    )
    print(table(rows, args.table))
    notes = {row["way"]: row["note"] for row in rows if row.get("note")}
    for way, note in notes.items():
        print(f"\n{way}: {note}")


if __name__ == "__main__":
    main()
