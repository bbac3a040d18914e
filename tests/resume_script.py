"""Training run used by the resume tests: ``python -m tests.resume_script OUT [options]``.

Trains a dropout MNISTConvNet (so torch's RNG matters) on synthetic digits with SGD, a
one-cycle schedule and a validation split, checkpointing every epoch into OUT, and writes the
final weights to OUT/final.safetensors. ``--kill-at-step N`` kills the process with SIGKILL
right after optimizer step N, as a crash would; ``--stop-after-epoch N`` ends the run
cleanly after epoch N (a schedule still planned for ``--epochs``); ``--kill-in-save N``
kills it during the N-th checkpoint write, after the temporary file is written and before it
is renamed over ``last.pt``.
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

import torch

from lenetish import (
    BatchOutput,
    Callback,
    MNISTConvNet,
    ModelCheckpoint,
    Trainer,
    TrainState,
    make_loaders,
    save_weights,
)
from tests.conftest import write_fake_mnist


class KillAtStep(Callback):
    """SIGKILL this process right after the given optimizer step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
        """Kill the process at the chosen step."""
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class StopAfterEpoch(Callback):
    """Ask the trainer to stop after the given (1-based) epoch."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        """Stop once the chosen epoch is done."""
        if state.epoch + 1 == self.epoch:
            trainer.should_stop = True


def kill_during_save(write_number: int) -> None:
    """Make the given checkpoint write (1-based) SIGKILL the process just before its rename."""
    import lenetish.saving.checkpoint

    real_replace = os.replace
    writes = 0

    def replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        nonlocal writes
        writes += str(target).endswith(".pt")  # the data files are written atomically too
        if writes == write_number:
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(source, target)

    lenetish.saving.checkpoint.os.replace = replace  # type: ignore[assignment]


def main() -> None:
    """Run (or resume) the training described in the module docstring."""
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kill-at-step", type=int, default=None)
    parser.add_argument("--stop-after-epoch", type=int, default=None)
    parser.add_argument("--kill-in-save", type=int, default=None)
    args = parser.parse_args()

    torch.set_num_threads(1)
    if args.kill_in_save is not None:
        kill_during_save(args.kill_in_save)
    data = write_fake_mnist(args.out / "data", num_train=120, num_test=20)
    loaders = make_loaders(data, batch_size=25, val_size=20, download=False, seed=4)
    torch.manual_seed(11)
    model = MNISTConvNet(dropout=0.3)
    callbacks: list[Callback] = [ModelCheckpoint(args.out / "ckpt")]
    if args.kill_at_step is not None:
        callbacks.append(KillAtStep(args.kill_at_step))
    if args.stop_after_epoch is not None:
        callbacks.append(StopAfterEpoch(args.stop_after_epoch))
    trainer = Trainer(
        model,
        optimizer="sgd",
        lr=0.05,
        epochs=args.epochs,
        scheduler="onecycle",
        callbacks=callbacks,
        device="cpu",
        seed=3,
        progress=False,
    )
    resume = args.out / "ckpt" / "last.pt" if args.resume else None
    history = trainer.fit(loaders.train, loaders.val, resume=resume)
    save_weights(model, args.out / "final.safetensors")
    history.to_json(args.out / "history.json")


if __name__ == "__main__":
    main()
