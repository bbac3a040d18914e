"""logit_digits: a project that trains its own network with lenetish's Trainer.

Everything here is the project's own (a network that returns raw logits, a focal loss, a
macro-F1 metric object, a callback that logs with ``trainer.log`` and survives a resume);
lenetish provides the fit loop, the data, monitors and checkpoints.
"""

from __future__ import annotations

from logit_digits.callbacks import ImprovementTracker
from logit_digits.losses import FocalLoss
from logit_digits.metrics import MacroF1
from logit_digits.model import SmallConvNet
from logit_digits.train import main

__all__ = ["FocalLoss", "ImprovementTracker", "MacroF1", "SmallConvNet", "main"]
