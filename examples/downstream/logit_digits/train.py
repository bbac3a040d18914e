"""Train SmallConvNet with lenetish: focal loss, macro F1, early stopping, checkpoints, resume.

    python -m logit_digits                      # synthetic digits, no files needed
    python -m logit_digits --mnist --epochs 5 --out runs/a
    python -m logit_digits --mnist --epochs 8 --out runs/a --resume

``--mnist`` trains on the MNIST copy bundled with lenetish, ``--data DIR`` on the idx files in
``DIR``. ``LENETISH_EXAMPLE_SUBSET=N`` trains on the first N training images of either only.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from lenetish import (
    EarlyStopping,
    History,
    ModelCheckpoint,
    TensorLoader,
    Trainer,
    evaluate,
    make_loaders,
    seed_everything,
)
from logit_digits.callbacks import ImprovementTracker
from logit_digits.losses import FocalLoss
from logit_digits.metrics import MacroF1
from logit_digits.model import SmallConvNet

Batches = Iterable[tuple[Tensor, Tensor]]
Splits = tuple[Batches, Batches, Batches]


def synthetic_splits(samples: int, *, seed: int = 0) -> Splits:
    """Train, validation and test loaders of ten noisy 28x28 patterns (one per class)."""
    patterns = torch.randn(10, 1, 28, 28, generator=torch.Generator().manual_seed(1234))

    def split(count: int, split_seed: int, shuffle: bool) -> TensorLoader:
        generator = torch.Generator().manual_seed(split_seed)
        labels = torch.randint(0, 10, (count,), generator=generator)
        images = patterns[labels] + 1.5 * torch.randn(count, 1, 28, 28, generator=generator)
        return TensorLoader(images, labels, batch_size=32, shuffle=shuffle, seed=seed)

    quarter = samples // 4
    return (
        split(samples, seed, True),
        split(quarter, seed + 1, False),
        split(quarter, seed + 2, False),
    )


def real_splits(data: str | None, *, seed: int = 0) -> Splits:
    """Loaders of the MNIST-family idx files in ``data`` (10% of training for validation).

    ``None`` is lenetish's default: ``$LENETISH_DATA`` or its cache folder if they hold MNIST,
    else the copy bundled with lenetish.
    """
    subset = os.environ.get("LENETISH_EXAMPLE_SUBSET")
    loaders = make_loaders(
        data, val_size=0.1, seed=seed, batch_size=64, subset=int(subset) if subset else None
    )
    assert loaders.val is not None  # val_size > 0
    return loaders.train, loaders.val, loaders.test


def build_trainer(epochs: int, out: Path, *, seed: int) -> Trainer:
    """The project's Trainer: its own model, loss, metric and callback on lenetish's loop."""
    seed_everything(seed)  # before building the model: Trainer(seed=) comes too late for that
    return Trainer(
        SmallConvNet(),
        epochs=epochs,
        loss=FocalLoss(gamma=2.0),
        metrics={"macro_f1": MacroF1()},
        seed=seed,
        device="cpu",
        callbacks=[
            ImprovementTracker("val_macro_f1"),
            EarlyStopping("val_macro_f1", patience=3),  # MacroF1.higher_is_better
            ModelCheckpoint(out, monitor="val_macro_f1", save_best=True),
        ],
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, train (or resume), evaluate; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="logit_digits",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data",
        default=None,
        metavar="DIR",
        help="a folder of MNIST idx files (default: synthetic digits)",
    )
    parser.add_argument(
        "--mnist",
        action="store_true",
        help="MNIST: the copy bundled with lenetish (or $LENETISH_DATA)",
    )
    parser.add_argument("--epochs", type=int, default=3, help="epochs in all (resumed included)")
    parser.add_argument("--out", type=Path, default=Path("runs/logit_digits"))
    parser.add_argument("--resume", action="store_true", help="continue from --out/last.pt")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    train, val, test = (
        synthetic_splits(512, seed=args.seed)  # neither --data nor --mnist
        if args.data is None and not args.mnist
        else real_splits(args.data, seed=args.seed)
    )
    trainer = build_trainer(args.epochs, args.out, seed=args.seed)
    last = args.out / "last.pt"
    resume = last if args.resume and last.exists() else None
    history: History = trainer.fit(train, val, resume=resume)
    for row in history:
        print(
            f"epoch {row['epoch']:.0f}: loss {row['loss']:.4f}, "
            f"val_macro_f1 {row['val_macro_f1']:.4f}, "
            f"best {row['best_val_macro_f1']:.4f}, since best {row['epochs_since_best']:.0f}"
        )
    result = evaluate(trainer.module, test)
    print(f"test accuracy: {result.accuracy:.2%} (loss {result.loss:.4f})")
    return 0
