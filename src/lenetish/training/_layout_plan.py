"""A fit's memory layout: decided once (or on the first batch), and the model put back after.

:func:`plan_layout` decides when the fit starts whether it runs channels-last;
:func:`settle_layout` decides on the first batch for a model that declares nothing;
:class:`ModelAsFound` records what a fit changes on the user's network and
:func:`restore_model` puts it back when the fit ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from lenetish._reshape_twin import twin_channels_last
from lenetish.errors import UnsupportedModelError
from lenetish.layout import (
    LayoutRecord,
    compiled_forward,
    declares_fast_path,
    layout_verdict,
    match_optimizer_layout,
    module_channels_last,
    record_layout,
    restore_layout,
    set_compiled_forward,
)

__all__ = [
    "ChannelsLast",
    "LayoutDecision",
    "ModelAsFound",
    "plan_layout",
    "restore_model",
    "settle_layout",
]

logger = logging.getLogger("lenetish")

ChannelsLast = bool | Literal["auto"]
_ADVICE = "flatten with torch.flatten(x, 1) or x.reshape(len(x), -1) instead of x.view(...)"


@dataclass
class LayoutDecision:
    """Whether a fit runs channels-last.

    Attributes:
        setting: the Trainer's ``channels_last``.
        channels_last: the decision, or ``None`` until the first batch decides it.
        unchecked: laid out channels-last before the first batch could check it (a
            multi-process fit with ``channels_last=True``): the first batch verifies it.
        reason: how it was decided, for the fit's plan line.
    """

    setting: ChannelsLast
    channels_last: bool | None
    unchecked: bool = False
    reason: str = ""

    @property
    def pending(self) -> bool:
        """Whether the next batch must decide or verify the layout."""
        return self.channels_last is None or self.unchecked

    def describe(self) -> str:
        """The layout part of the fit's plan line."""
        if self.channels_last is None:
            return "layout checked on the first batch"
        return ("channels-last" if self.channels_last else "own layout") + f" ({self.reason})"


def plan_layout(model: nn.Module, setting: ChannelsLast, world_size: int) -> LayoutDecision:
    """Whether the fit runs channels-last, or ``None``: checked on the first batch.

    Networks that declare ``lenetish_fast_path`` run channels-last unless told not to. Any
    other model is checked on the first training batch (:func:`settle_layout`), except in a
    multi-process fit, where the layout must be fixed before the model is wrapped:
    ``"auto"`` then keeps the model's layout and says so.
    """
    if setting is False:
        return LayoutDecision(setting, False, reason="channels_last=False")
    if declares_fast_path(model):
        return LayoutDecision(setting, True, reason="declared by the network")
    if world_size > 1:
        if setting is True:  # laid out before the DDP wrap; checked on the first batch
            return LayoutDecision(setting, True, unchecked=True, reason="channels_last=True")
        logger.info(
            "lenetish: %s trains in its own layout: channels_last='auto' checks a model on "
            "its first batch, which a multi-process fit cannot wait for (pass "
            "channels_last=True if it flattens with torch.flatten or .reshape)",
            type(model).__name__,
        )
        return LayoutDecision(setting, False, reason="not checkable in a multi-process fit")
    return LayoutDecision(setting, None)


@contextmanager
def _own_layout(model: nn.Module) -> Iterator[None]:
    """``model`` contiguous inside the block (for a check that starts from its own layout)."""
    record = record_layout(model)
    for tensor, _ in record:  # explicit NCHW strides, even with one channel
        tensor.data = tensor.data.clone(memory_format=torch.contiguous_format)
    try:
        yield
    finally:
        restore_layout(record)


def settle_layout(
    decision: LayoutDecision, model: nn.Module, optimizer: Optimizer, images: Tensor
) -> None:
    """Decide on the first batch whether a model that declares nothing runs channels-last.

    The model runs channels-last only if :func:`lenetish.layout.layout_verdict` finds its
    outputs unchanged on ``images``; otherwise it trains in its own layout with one log line
    saying why, or, with ``channels_last=True``, the fit stops with a named error.

    Raises:
        UnsupportedModelError: ``channels_last=True`` and the model cannot take it.
    """
    name = type(model).__name__
    verify_only, decision.unchecked = decision.unchecked, False
    if verify_only:  # a multi-process fit: laid out already
        with _own_layout(model):
            problem = layout_verdict(model, images, module_channels_last)
    else:
        problem = layout_verdict(model, images, module_channels_last)
    twin = False
    # e.g. a .view network: its reshape twin (not for a compiled model, whose compiled call
    # the check's private copy does not have)
    if problem is not None and not verify_only and compiled_forward(model) is None:
        twin = layout_verdict(model, images, twin_channels_last) is None
        problem = None if twin else problem
    if problem is not None and decision.setting is True:
        raise UnsupportedModelError(
            f"channels_last=True, but {name} cannot run channels-last: {problem}; {_ADVICE}, "
            "or pass channels_last='auto' (or False) to train it in its own layout"
        )
    if verify_only:
        return
    decision.channels_last = problem is None
    if problem is None and twin:
        decision.reason = ".view run as .reshape, outputs checked unchanged"
        twin_channels_last(model)  # its call replaced until restore_model takes it away
        match_optimizer_layout(optimizer)
        logger.info(
            "lenetish: %s trains channels-last with .view run as .reshape (its outputs "
            "checked unchanged; the model itself is not changed)",
            name,
        )
    elif problem is None:
        decision.reason = "its outputs checked unchanged"
        module_channels_last(model)
        match_optimizer_layout(optimizer)
        logger.info("lenetish: %s trains channels-last (its outputs checked unchanged)", name)
    else:
        decision.reason = problem
        logger.info(
            "lenetish: %s trains in its own layout, not channels-last: %s (channels_last="
            "'auto'; to let it run channels-last, %s)",
            name,
            problem,
            _ADVICE,
        )


@dataclass(frozen=True)
class ModelAsFound:
    """What a fit changes on the user's network and puts back when it ends.

    Attributes:
        layout: every parameter's and buffer's strides.
        modes: every submodule's train/eval mode, in ``modules()`` order (a frozen
            batch-norm layer in eval mode inside a training model stays frozen).
        compiled: what ``Module.compile()`` had set (``None`` for an uncompiled model).
    """

    layout: LayoutRecord
    modes: tuple[bool, ...]
    compiled: Callable[..., Any] | None

    @classmethod
    def of(cls, model: nn.Module) -> ModelAsFound:
        """Record ``model`` as it is now."""
        modes = tuple(module.training for module in model.modules())
        return cls(record_layout(model), modes, compiled_forward(model))


def restore_model(model: nn.Module, found: ModelAsFound, optimizer: Optimizer | None) -> None:
    """Put ``model`` back as :class:`ModelAsFound` recorded it.

    Its weights keep what the fit learnt; only their layout, the compilation ``compile=True``
    added and the train/eval mode go back. The optimizer's state follows the weights' layout.
    """
    restore_layout(found.layout)
    if compiled_forward(model) is not found.compiled:
        set_compiled_forward(model, found.compiled)
    # Not strict: a callback may have added a submodule; those keep the mode they have.
    for module, training in zip(model.modules(), found.modes, strict=False):
        module.training = training
    if optimizer is not None:
        match_optimizer_layout(optimizer)
