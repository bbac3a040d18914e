"""``EMA``: an exponential moving average of the weights, kept during training."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from lenetish._checks import check_fraction
from lenetish.callbacks.base import Callback

if TYPE_CHECKING:
    from lenetish.training.state import BatchOutput, TrainState
    from lenetish.training.trainer import Trainer

__all__ = ["EMA"]


class EMA(Callback):
    """Keep ``shadow = decay * shadow + (1 - decay) * weights`` after every optimizer step.

    The average usually generalises better than the last weights. When training ends the
    model's weights are replaced by the average (``apply_at_end``); validation during training
    sees the raw weights. Buffers (none in MNISTConvNet) are copied, not averaged.

    Args:
        decay: how much of the old average each step keeps, in ``[0, 1)``.
        apply_at_end: load the average into the model in ``on_fit_end``.

    Raises:
        InvalidArgumentError: ``decay`` is outside ``[0, 1)``.

    Example:
        >>> EMA(decay=0.999).decay
        0.999
    """

    order = -20

    def __init__(self, decay: float = 0.999, *, apply_at_end: bool = True) -> None:
        check_fraction("decay", decay)
        self.decay = decay
        self.apply_at_end = apply_at_end
        self.shadow: dict[str, Tensor] | None = None
        self.state_key = "lenetish.EMA"

    def reset(self) -> None:
        """Forget the average of an earlier fit."""
        self.shadow = None

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        """Start the average from the current weights (unless resumed with one)."""
        if self.shadow is None:
            self.shadow = {
                name: value.detach().clone().float()
                for name, value in trainer.module.state_dict().items()
            }
        else:
            device = next(trainer.module.parameters()).device
            self.shadow = {name: value.to(device) for name, value in self.shadow.items()}

    def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
        """Move the average towards the new weights (one fused update, no sync)."""
        assert self.shadow is not None
        parameters = {name for name, _ in trainer.module.named_parameters()}
        with torch.no_grad():
            averaged, current = [], []
            for name, value in trainer.module.state_dict().items():
                if name in parameters:  # buffers (batch-norm statistics) are copied
                    averaged.append(self.shadow[name])
                    current.append(value.float())
                else:
                    self.shadow[name].copy_(value)
            torch._foreach_lerp_(averaged, current, 1.0 - self.decay)

    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None:
        """Load the average into the model when ``apply_at_end``."""
        if self.apply_at_end and self.shadow is not None:
            model_state = trainer.module.state_dict()
            trainer.module.load_state_dict(
                {name: value.to(model_state[name].dtype) for name, value in self.shadow.items()}
            )

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights."""
        return {"shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the averaged weights."""
        self.shadow = state["shadow"]
