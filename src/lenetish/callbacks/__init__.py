"""Training callbacks: the ``Callback`` base class and every built-in, in one namespace.

Subclass :class:`Callback` and override the hooks you need; the built-ins live in small
modules by job (``monitors``, ``checkpointing``, ``loggers``, ``schedules``, ``lr_monitor``,
``ema``, ``guards``, ``history``) and are all importable from here, e.g.
``from lenetish.callbacks import ModelCheckpoint``.
"""

from __future__ import annotations

from lenetish.callbacks.base import Callback, SkipBatch, StopTraining
from lenetish.callbacks.checkpointing import ModelCheckpoint
from lenetish.callbacks.ema import EMA
from lenetish.callbacks.guards import TerminateOnNaN, Timer
from lenetish.callbacks.history import History
from lenetish.callbacks.loggers import CSVLogger, ProgressBar, TensorBoardLogger
from lenetish.callbacks.lr_monitor import LearningRateMonitor
from lenetish.callbacks.monitors import EarlyStopping
from lenetish.callbacks.schedules import LRSchedule

__all__ = [
    "EMA",
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "History",
    "LRSchedule",
    "LearningRateMonitor",
    "ModelCheckpoint",
    "ProgressBar",
    "SkipBatch",
    "StopTraining",
    "TensorBoardLogger",
    "TerminateOnNaN",
    "Timer",
]
