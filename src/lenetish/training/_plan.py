"""Assembling one fit: its batches checked, its History, callbacks, optimizer, scores and step.

:meth:`Trainer.fit <lenetish.Trainer.fit>` calls these before the first hook; everything
goes through the trainer's public attributes and seams.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

from lenetish.callbacks import History
from lenetish.callbacks.schedules import builtin_schedule
from lenetish.errors import InvalidArgumentError, UnsupportedModelError
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
from lenetish.metrics import MetricSet
from lenetish.stack.fitting import prepare_stack_fit
from lenetish.training.optimizer_config import unpack_optimizer_config
from lenetish.training.resume import callbacks_by_key
from lenetish.training.step import CaptureRequest, EagerStep, StepSettings, make_step

if TYPE_CHECKING:
    from lenetish.training.trainer import Trainer

__all__ = [
    "ModelAsFound",
    "batch_count",
    "check_channels_last_setting",
    "check_reiterable",
    "plan_layout",
    "prepare_fit",
    "restore_model",
    "settle_layout",
]

logger = logging.getLogger("lenetish")


def check_reiterable(**batches: Iterable[object] | None) -> None:
    """Refuse an iterator (a generator, say) as a fit's batches: it is used up after a pass.

    Raises:
        InvalidArgumentError: naming the argument and what to pass instead.
    """
    for name, given in batches.items():
        if isinstance(given, Iterator):
            raise InvalidArgumentError(
                f"{name} is an iterator ({type(given).__name__}), which would be used up "
                "after one pass; pass something that can be iterated again each epoch: a "
                "list of batches, a DataLoader, a lenetish loader"
            )


def batch_count(batches: Iterable[object]) -> int | None:
    """``len(batches)``, or ``None`` for a loader without one (an iterable dataset's)."""
    if not isinstance(batches, Sized):
        return None
    try:
        return len(batches)
    except TypeError:  # a DataLoader over an IterableDataset without __len__
        return None


def prepare_fit(
    trainer: Trainer, steps_per_epoch: int | None, *, custom_training_step: bool
) -> None:
    """Give ``trainer`` this fit's History, callbacks, loss, optimizer, metrics and step.

    Callbacks are sorted by ``order``, reset, and checked for distinct state keys.

    Args:
        trainer: the trainer about to fit.
        steps_per_epoch: batches per epoch (``None`` when the loader has no length).
        custom_training_step: a subclass overrides ``training_step`` (capture is then unsafe).
    """
    if not trainer.history_given:  # each fit returns a History of its own
        fresh = History()
        trainer.callbacks = [fresh if c is trainer.history else c for c in trainer.callbacks]
        trainer.history = fresh
    trainer.criterion.reset()
    schedule = builtin_schedule(
        trainer.scheduler_spec,
        epochs=trainer.epochs,
        steps_per_epoch=steps_per_epoch,
    )
    everyone = [*trainer.callbacks, *([schedule] if schedule else [])]
    trainer.fit_callbacks = sorted(
        (c for c in everyone if trainer.is_main_process or not c.rank_zero_only),
        key=lambda c: c.order,
    )
    callbacks_by_key(everyone)  # refuses two callbacks with one key, on every rank
    for callback in trainer.fit_callbacks:
        callback.reset()
    optimizer, returned = unpack_optimizer_config(trainer.configure_optimizers())
    trainer.fitted_optimizer = optimizer
    if returned is not None:
        if schedule is not None:
            raise InvalidArgumentError(
                f"configure_optimizers returned a scheduler and scheduler="
                f"{trainer.scheduler_spec!r} is set too; keep one of them"
            )
        trainer.fit_callbacks = sorted([*trainer.fit_callbacks, returned], key=lambda c: c.order)
    trainer.metric_sets = (
        MetricSet(trainer.metrics, trainer.device),
        MetricSet(trainer.metrics, trainer.device),
    )
    settings = StepSettings(
        trainer.device, trainer.precision, trainer.grad_clip_norm, trainer.augment
    )
    eager = EagerStep(trainer.model, optimizer, trainer.training_step, settings, trainer.call_hook)
    request = CaptureRequest(
        cuda_graphs=trainer.cuda_graphs,
        settings=settings,
        optimizer=optimizer,
        callbacks=trainer.fit_callbacks,
        custom_training_step=custom_training_step,
        deterministic=trainer.deterministic,
        compiled=trainer.compile,
        world_size=trainer.world_size,
    )
    trainer.step = make_step(eager, request)
    trainer.state.lr = float(optimizer.param_groups[0]["lr"])
    prepare_stack_fit(trainer)  # a ModelStack: per-member scores, coupling settings refused
    if trainer.compile:
        trainer.module.compile()  # undone by restore_model when the fit ends
    trainer.layout_unchecked = False
    trainer.fit_channels_last = plan_layout(trainer)
    if trainer.fit_channels_last:
        module_channels_last(trainer.module)


def check_channels_last_setting(channels_last: object) -> None:
    """Refuse a ``channels_last`` that is not ``True``, ``False`` or ``"auto"``.

    Raises:
        InvalidArgumentError: naming the accepted values.
    """
    if not (isinstance(channels_last, bool) or channels_last == "auto"):
        raise InvalidArgumentError(
            f"channels_last must be True, False or 'auto', got {channels_last!r}"
        )


def plan_layout(trainer: Trainer) -> bool | None:
    """Whether the fit runs channels-last, or ``None``: checked on the first batch.

    Networks that declare ``lenetish_fast_path`` run channels-last unless told not to. Any
    other model is checked on the first training batch (:func:`settle_layout`), except in a
    multi-process fit, where the layout must be fixed before the model is wrapped:
    ``"auto"`` then keeps the model's layout and says so.
    """
    setting: bool | Literal["auto"] = trainer.channels_last
    if setting is False:
        return False
    if declares_fast_path(trainer.module):
        return True
    if trainer.world_size > 1:
        if setting is True:  # laid out before the DDP wrap; checked on the first batch
            trainer.layout_unchecked = True
            return True
        logger.info(
            "lenetish: %s trains in its own layout: channels_last='auto' checks a model on "
            "its first batch, which a multi-process fit cannot wait for (pass "
            "channels_last=True if it flattens with torch.flatten or .reshape)",
            type(trainer.module).__name__,
        )
        return False
    return None


_ADVICE = "flatten with torch.flatten(x, 1) or x.reshape(len(x), -1) instead of x.view(...)"


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


def settle_layout(trainer: Trainer, images: Tensor) -> None:
    """Decide on the first batch whether a model that declares nothing runs channels-last.

    The model runs channels-last only if :func:`lenetish.layout.layout_verdict` finds its
    outputs unchanged on ``images``; otherwise it trains in its own layout with one log line
    saying why, or, with ``channels_last=True``, the fit stops with a named error.

    Raises:
        UnsupportedModelError: ``channels_last=True`` and the model cannot take it.
    """
    model = trainer.module
    name = type(model).__name__
    verify_only = trainer.layout_unchecked  # a multi-process fit: laid out already
    trainer.layout_unchecked = False
    if verify_only:
        with _own_layout(model):
            problem = layout_verdict(model, images, module_channels_last)
    else:
        problem = layout_verdict(model, images, module_channels_last)
    if problem is not None and trainer.channels_last is True:
        raise UnsupportedModelError(
            f"channels_last=True, but {name} cannot run channels-last: {problem}; {_ADVICE}, "
            "or pass channels_last='auto' (or False) to train it in its own layout"
        )
    if verify_only:
        return
    trainer.fit_channels_last = problem is None
    if problem is None:
        module_channels_last(model)
        match_optimizer_layout(trainer.optimizer)
        logger.info("lenetish: %s trains channels-last (its outputs checked unchanged)", name)
    else:
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


def restore_model(trainer: Trainer, found: ModelAsFound) -> None:
    """Put the trainer's network back as :class:`ModelAsFound` recorded it.

    Its weights keep what the fit learnt; only their layout, the compilation ``compile=True``
    added and the train/eval mode go back. The optimizer's state follows the weights' layout.
    """
    model = trainer.module
    restore_layout(found.layout)
    if compiled_forward(model) is not found.compiled:
        set_compiled_forward(model, found.compiled)
    # Not strict: a callback may have added a submodule; those keep the mode they have.
    for module, training in zip(model.modules(), found.modes, strict=False):
        module.training = training
    if trainer.fitted_optimizer is not None:
        match_optimizer_layout(trainer.fitted_optimizer)
