"""Stacks: k copies of one network trained and evaluated together as one model.

:class:`ModelStack` (in :mod:`lenetish.stack.model`) holds the members; :mod:`.fitting`
teaches the Trainer to fit a stack (its own plan: per-member scores, refused couplings, the
member-by-member step) and gives each member its own data order (:class:`StackLoader`);
:mod:`.evaluation` scores each member and the ensemble. Importing this package registers
both with the lower layers, so plain training never imports it.
"""

from __future__ import annotations

from lenetish.stack.evaluation import StackEvalResult, evaluate_stack
from lenetish.stack.fitting import StackLoader
from lenetish.stack.model import EXECUTIONS, Execution, Inputs, Member, ModelStack

__all__ = [
    "EXECUTIONS",
    "Execution",
    "Inputs",
    "Member",
    "ModelStack",
    "StackEvalResult",
    "StackLoader",
    "evaluate_stack",
]
