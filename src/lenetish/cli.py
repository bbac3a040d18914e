"""The ``lenetish`` command line: ``lenetish train`` (more commands grow here)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lenetish.checkpoint import save_weights
from lenetish.data import DATASETS, make_loaders
from lenetish.errors import LenetishError
from lenetish.evaluation import evaluate
from lenetish.loggers import CSVLogger
from lenetish.models import MNISTConvNet
from lenetish.monitors import ModelCheckpoint
from lenetish.trainer import Trainer

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``lenetish`` command."""
    parser = argparse.ArgumentParser(
        prog="lenetish", description="Train and use LeNet-like CNNs on MNIST and its family."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser("train", help="train MNISTConvNet and report test accuracy")
    train.add_argument(
        "--data",
        metavar="DIR",
        help="data folder (default: $LENETISH_DATA "
        "or ~/.cache/lenetish); the idx files may be raw or .gz",
    )
    train.add_argument("--dataset", default="mnist", choices=sorted(DATASETS))
    train.add_argument("--epochs", type=int, default=5)
    train.add_argument("--batch-size", type=int, default=200)
    train.add_argument(
        "--lr", type=float, default=None, help="learning rate (default: 1e-3 for adam, 0.1 for sgd)"
    )
    train.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    train.add_argument(
        "--val-size",
        type=int,
        default=0,
        help="training samples held out for validation (default: 0)",
    )
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--out",
        metavar="DIR",
        help="write last.pt (resumable checkpoint, every epoch), model.safetensors, "
        "history.json and history.csv here",
    )
    train.add_argument("--resume", metavar="CKPT", help="continue from a last.pt checkpoint")
    train.add_argument("--no-download", action="store_true", help="never download data")
    train.add_argument("--quiet", action="store_true", help="print only the final accuracy")
    return parser


def _train(args: argparse.Namespace) -> None:
    loaders = make_loaders(
        args.data,
        dataset=args.dataset,
        batch_size=args.batch_size,
        val_size=args.val_size,
        device=args.device,
        download=not args.no_download,
        seed=args.seed,
    )
    model = MNISTConvNet()
    out = Path(args.out) if args.out else None
    callbacks = [] if out is None else [CSVLogger(out / "history.csv"), ModelCheckpoint(out)]
    trainer = Trainer(
        model,
        optimizer=args.optimizer,
        lr=args.lr,
        epochs=args.epochs,
        device=args.device,
        seed=args.seed,
        callbacks=callbacks,
        progress=False if args.quiet else None,
    )
    history = trainer.fit(loaders.train, loaders.val, resume=args.resume)
    if not args.quiet:
        for row in history:
            print(" ".join(_format_metric(key, value) for key, value in row.items()))
    result = evaluate(model, loaders.test)
    print(f"test accuracy {result.accuracy:.2%} ({result.correct}/{result.total})")
    if out is not None:
        save_weights(model, out / "model.safetensors")
        history.to_json(out / "history.json")


def _format_metric(key: str, value: float) -> str:
    return f"{key}={value:.4f}" if isinstance(value, float) else f"{key}={value}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lenetish`` command with ``argv`` (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 1 when lenetish reports an error.
    """
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            _train(args)
    except LenetishError as exc:
        print(f"lenetish: error: {exc}", file=sys.stderr)
        return 1
    return 0
