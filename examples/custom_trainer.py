"""Example: subclass the Trainer (label smoothing) and write a callback (gradient norms).

    python examples/custom_trainer.py --epochs 2     # the MNIST copy bundled with lenetish

``LENETISH_EXAMPLE_SUBSET=N`` trains on the first N training images only.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.nn.functional as F
from torch import Tensor

from lenetish import (
    BatchOutput,
    Callback,
    EarlyStopping,
    MNISTConvNet,
    Trainer,
    TrainState,
    evaluate,
    make_loaders,
)


class LabelSmoothingTrainer(Trainer):
    """A Trainer whose loss mixes the NLL with a uniform target (label smoothing)."""

    def __init__(self, *args: object, smoothing: float = 0.1, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.smoothing = smoothing

    def training_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
        """Forward the batch; loss = (1 - s) * NLL + s * mean negative log-probability."""
        log_probs = self.model(images)  # (B, 10)
        nll = F.nll_loss(log_probs, labels)
        uniform = -log_probs.mean(dim=1).mean()
        return BatchOutput((1 - self.smoothing) * nll + self.smoothing * uniform, log_probs, labels)


class GradientNorm(Callback):
    """Track the global gradient norm before every optimizer step; print its epoch mean."""

    def reset(self) -> None:
        """Start each fit with no recorded norms."""
        self.norms: list[Tensor] = []

    def on_before_optimizer_step(
        self, trainer: Trainer, state: TrainState, optimizer: torch.optim.Optimizer
    ) -> None:
        """Record the norm as a device tensor (no sync here)."""
        grads = [p.grad.norm() for p in trainer.model.parameters() if p.grad is not None]
        self.norms.append(torch.stack(grads).norm())

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        """Print the epoch's mean gradient norm next to its metrics (one sync per epoch)."""
        mean = float(torch.stack(self.norms).mean()) if self.norms else float("nan")
        print(
            f"epoch {state.epoch + 1}: loss {state.metrics['loss']:.4f}, "
            f"val_accuracy {state.metrics['val_accuracy']:.4f}, mean grad norm {mean:.3f}"
        )
        self.norms.clear()


def main() -> None:
    """Train with the subclass and the callback, stopping early on the validation loss."""
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
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    subset = os.environ.get("LENETISH_EXAMPLE_SUBSET")
    loaders = make_loaders(args.data, val_size=0.1, seed=0, subset=int(subset) if subset else None)
    model = MNISTConvNet()
    trainer = LabelSmoothingTrainer(
        model,
        epochs=args.epochs,
        seed=0,
        smoothing=0.1,
        callbacks=[GradientNorm(), EarlyStopping("val_loss", patience=2)],
    )
    trainer.fit(loaders.train, loaders.val)
    print(f"test accuracy: {evaluate(model, loaders.test).accuracy:.2%}")


if __name__ == "__main__":
    main()
