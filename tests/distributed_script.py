"""Training run of the distributed tests: ``[torchrun ...] -m tests.distributed_script OUT``.

Trains MNISTConvNet on synthetic digits and writes, per process, ``OUT/rank{R}.safetensors``
(final weights) and ``OUT/history{R}.json``. ``--fail-at-step N --on-rank R`` raises in one
process at step N; ``--stop-at-step N --on-rank R`` makes one process ask to stop there;
``--stop-after-epoch N`` ends the run after epoch N; ``--extra-on-rank-one N`` gives rank 1
N more training images than the others (data of different sizes); ``--stop-check-every N`` sets how
often the processes agree on a stop within an epoch; ``--count-collectives`` writes, per
epoch, the blocking and non-blocking collectives lenetish issued to
``OUT/collectives{R}.json``; ``--unseeded`` starts each process from its own random
weights and gives the Trainer no seed; ``--checkpoints`` writes ``OUT/ckpt/last.pt`` every
epoch; ``--resume`` continues from it.
A rank-zero-only callback appends to ``OUT/calls{R}.txt`` in the processes it runs in.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from lenetish import (
    BatchOutput,
    Callback,
    MNISTConvNet,
    ModelCheckpoint,
    RandomAffine,
    StopTraining,
    Trainer,
    TrainState,
    make_loaders,
    save_weights,
)
from lenetish.distributed import exit_together
from lenetish.distributed.strategies import DataParallel
from tests.conftest import write_fake_mnist
from tests.resume_script import StopAfterEpoch

RANK = int(os.environ.get("RANK", "0"))


class AtStep(Callback):
    """On one rank, raise ``error`` after optimizer step ``step``."""

    def __init__(self, step: int, rank: int, error: BaseException) -> None:
        self.step, self.rank, self.error = step, rank, error

    def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
        """Raise the error at the chosen step of the chosen rank."""
        if state.global_step == self.step and self.rank == RANK:
            raise self.error


class RecordEpochs(Callback):
    """Append the epoch number to this process's ``calls{RANK}.txt`` (rank 0 only)."""

    rank_zero_only = True

    def __init__(self, folder: Path) -> None:
        self.path = folder / f"calls{RANK}.txt"

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        """Record the finished epoch."""
        with self.path.open("a") as file:
            file.write(f"{state.epoch + 1}\n")


class CountCollectives(Callback):
    """Count the collectives issued between each epoch's start and end (all ranks)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / f"collectives{RANK}.json"
        self.counts: Counter[str] = Counter()
        self.epochs: list[dict[str, int]] = []
        self.at_start: Counter[str] = Counter()
        for name in ("all_reduce", "broadcast", "all_gather", "barrier"):
            self._wrap(name)

    def _wrap(self, name: str) -> None:
        original = getattr(dist, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            kind = "non_blocking" if kwargs.get("async_op") else "blocking"
            self.counts[kind] += 1
            return original(*args, **kwargs)

        setattr(dist, name, counted)

    def on_epoch_start(self, trainer: Trainer, state: TrainState) -> None:
        """Remember the counts so far."""
        self.at_start = Counter(self.counts)

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        """Record this epoch's collectives and the number of steps it took."""
        steps = state.steps_per_epoch or 0
        self.epochs.append({**(self.counts - self.at_start), "steps": steps})
        self.path.write_text(json.dumps(self.epochs))


def main() -> None:
    """Parse the options, train, and write this process's results."""
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-train", type=int, default=256)
    parser.add_argument("--augment", action="store_true")
    parser.add_argument("--fail-at-step", type=int)
    parser.add_argument("--stop-at-step", type=int)
    parser.add_argument("--on-rank", type=int, default=1)
    parser.add_argument("--stop-after-epoch", type=int)
    parser.add_argument("--unseeded", action="store_true")
    parser.add_argument("--checkpoints", action="store_true")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--stop-check-every", type=int)
    parser.add_argument("--count-collectives", action="store_true")
    parser.add_argument("--extra-on-rank-one", type=int, default=0)
    args = parser.parse_args()

    num_train = args.num_train + (args.extra_on_rank_one if RANK == 1 else 0)
    data = write_fake_mnist(args.out / f"data{RANK}", num_train=num_train, num_test=20)
    loaders = make_loaders(
        data, batch_size=args.batch_size, val_size=64, device="cpu", download=False
    )
    callbacks: list[Callback] = [RecordEpochs(args.out)]
    if args.fail_at_step is not None:
        error = RuntimeError(f"injected failure on rank {args.on_rank}")
        callbacks.append(AtStep(args.fail_at_step, args.on_rank, error))
    if args.stop_at_step is not None:
        callbacks.append(AtStep(args.stop_at_step, args.on_rank, StopTraining()))
    if args.stop_after_epoch is not None:
        callbacks.append(StopAfterEpoch(args.stop_after_epoch))
    if args.checkpoints:
        callbacks.append(ModelCheckpoint(args.out / "ckpt"))
    if args.stop_check_every is not None:
        DataParallel.stop_check_every = args.stop_check_every
    if args.count_collectives:
        callbacks.append(CountCollectives(args.out))
    # The same initial weights in every run; with --unseeded, different ones in each process
    # and no Trainer seed, so the processes must agree by themselves.
    torch.manual_seed(RANK if args.unseeded else 0)
    trainer = Trainer(
        MNISTConvNet(),
        epochs=args.epochs,
        optimizer="sgd",
        lr=0.05,
        scheduler="onecycle",
        device="cpu",
        seed=None if args.unseeded else 0,
        augment=RandomAffine() if args.augment else None,
        callbacks=callbacks,
        progress=False,
    )
    resume = args.out / "ckpt" / "last.pt" if args.resume else None
    history = trainer.fit(loaders.train, loaders.val, resume=resume)
    save_weights(trainer.module, args.out / f"rank{RANK}.safetensors")
    history.to_json(args.out / f"history{RANK}.json")


if __name__ == "__main__":
    main()
    exit_together(0)
