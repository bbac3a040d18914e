"""Example: the same training script on one process or on several under torchrun (DDP).

Run it alone, or with two processes on this machine's CPU (Gloo) or GPUs (NCCL):

    python examples/distributed_train.py --epochs 2
    torchrun --standalone --nproc_per_node=2 examples/distributed_train.py --device cpu

(on the MNIST copy bundled with lenetish; ``--data DIR`` reads the idx files in ``DIR``.)

Nothing in the script is specific to distributed training except that only the main process
prints and writes files: the Trainer sees torchrun's variables, joins the process group,
wraps the model in DistributedDataParallel and gives each process its share of every batch.
``LENETISH_EXAMPLE_SUBSET=N`` trains on the first N training images only.
"""

from __future__ import annotations

import argparse
import os

from lenetish import (
    MNISTConvNet,
    Trainer,
    evaluate,
    is_main_process,
    make_loaders,
    save_weights,
)
from lenetish.distributed import exit_together


def main() -> None:
    """Train with a validation split; the main process scores and saves the model."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data",
        default=None,
        metavar="DIR",
        help="folder of MNIST idx files (default: $LENETISH_DATA or ~/.cache/lenetish if they "
        "hold them, else the copy bundled with lenetish)",
    )
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--out", default=None, help="write the weights here (.safetensors)")
    args = parser.parse_args()

    subset = os.environ.get("LENETISH_EXAMPLE_SUBSET")
    loaders = make_loaders(
        args.data,
        batch_size=64,  # the global batch, split between the processes
        val_size=0.1,
        seed=0,
        device=args.device,
        subset=int(subset) if subset else None,
    )
    model = MNISTConvNet()
    trainer = Trainer(model, epochs=args.epochs, seed=0, device=args.device)
    history = trainer.fit(loaders.train, loaders.val)
    if is_main_process():
        for row in history:
            print(row)
        result = evaluate(model, loaders.test)
        print(f"test accuracy: {result.accuracy:.2%} ({result.correct}/{result.total})")
        if args.out:
            save_weights(model, args.out)


if __name__ == "__main__":
    main()
    exit_together(0)  # ranks leave together, skipping a teardown race in Gloo/NCCL
