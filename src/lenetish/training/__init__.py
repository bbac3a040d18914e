"""Training: the :class:`Trainer` (settings and seams), its state, steps and exact resume.

:mod:`.trainer` holds what a user sets and overrides; each fit builds a plan (the private
``_plan`` module: device, precision, layout, step, parallel strategy, loss, scores, callback
list) that the epoch loop (``_loop``) and :mod:`.resume` take as an argument; :mod:`.step`
runs one batch eagerly and :mod:`.cuda_graph` as a captured CUDA graph.
"""

from __future__ import annotations

from lenetish.training.state import BatchOutput, TrainState
from lenetish.training.trainer import Trainer

__all__ = ["BatchOutput", "TrainState", "Trainer"]
