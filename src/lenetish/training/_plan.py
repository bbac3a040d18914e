"""One fit's plan: everything that exists only while one ``Trainer.fit`` runs, built in one place.

:func:`build_plan` resolves, once per fit, what the Trainer's settings and the model mean for
this fit (the callbacks in their order, the loss, the optimizer, the scores, the step, the
layout) and logs it in one line; the epoch loop, resume and the stack code receive the
:class:`FitPlan` as an argument. A kind of model that changes how it is fitted (a
:class:`~lenetish.ModelStack`) registers a :class:`FitKind` with :func:`register_fit_kind`, so
that plain training never imports it.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from lenetish._bf16_check import bf16_problem
from lenetish._checks import is_overridden
from lenetish._device import ResolvedPrecision, resolve_precision
from lenetish.callbacks.base import Callback, SkipBatch, StopTraining
from lenetish.callbacks.schedules import builtin_schedule
from lenetish.distributed.strategies import ParallelStrategy
from lenetish.errors import InvalidArgumentError, NotFittedError
from lenetish.layout import declares_fast_path, module_channels_last
from lenetish.losses import Criterion
from lenetish.metrics import MetricLike, MetricSet, RunningScore
from lenetish.training._layout_plan import LayoutDecision, plan_layout
from lenetish.training.callback_states import callbacks_by_key
from lenetish.training.cuda_graph import CaptureRequest, make_step
from lenetish.training.optimizer_config import check_optimizer_owner, unpack_optimizer_config
from lenetish.training.step import EagerStep, StepSettings, TrainingStep

if TYPE_CHECKING:
    from lenetish.training._streams import ContinuingLoader
    from lenetish.training.trainer import Trainer

__all__ = [
    "FitKind",
    "FitPlan",
    "HookRunner",
    "StepChoice",
    "batch_count",
    "build_plan",
    "check_reiterable",
    "deprecated_criterion",
    "record_logged",
    "register_fit_kind",
]

logger = logging.getLogger("lenetish")

_BATCH_HOOKS = ("on_batch_start", "on_before_backward", "on_before_optimizer_step", "on_batch_end")


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
        if isinstance(given, (list, tuple)) and given and _is_loader(given[0]):
            raise InvalidArgumentError(
                f"{name} is a {type(given).__name__} of {len(given)} loaders; a fit takes one "
                f"loader for {name}: chain them (itertools.chain of their batches in a list, "
                "or torch.utils.data.ConcatDataset), or score each with lenetish.evaluate"
            )


def _is_loader(item: object) -> bool:
    """Whether ``item`` is a loader of batches (a DataLoader, a TensorLoader), not one batch."""
    return hasattr(item, "__iter__") and not isinstance(item, (tuple, list, Tensor, dict, str))


def batch_count(batches: Iterable[object]) -> int | None:
    """``len(batches)``, or ``None`` for a loader without one (an iterable dataset's)."""
    if not isinstance(batches, Sized):
        return None
    try:
        return len(batches)
    except TypeError:  # a DataLoader over an IterableDataset without __len__
        return None


@dataclass(frozen=True)
class StepChoice:
    """What a :class:`FitKind` may read to choose a step of its own.

    Attributes:
        trainer: the trainer (its settings and seams).
        callbacks: the fit's callbacks, in order.
        criterion: the fit's loss.
    """

    trainer: Trainer
    callbacks: Sequence[Callback]
    criterion: Criterion


class FitKind:
    """How a fit treats a kind of model; this one is a plain network's (it changes nothing).

    Subclasses change what differs for their kind of model (the stack package's gives each
    member its own scores and refuses settings that would couple the members).

    Args:
        model: the network being fitted.
    """

    members: int | None = None  # a loss summed over this many members (None: one network)

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def check(self, trainer: Trainer) -> None:
        """Refuse settings this kind of model cannot be trained with (none here)."""

    def metric_set(self, metrics: Mapping[str, MetricLike], device: torch.device) -> MetricSet:
        """A fresh set of the user's metrics for one role (training or validation)."""
        return MetricSet(metrics, device)

    def running_score(
        self, device: torch.device, criterion: Criterion, *, smoothing: bool
    ) -> RunningScore:
        """A running loss and accuracy for one epoch of training or validation batches."""
        return RunningScore(device)

    def callbacks(self) -> list[Callback]:
        """Callbacks this kind adds to every fit (none here)."""
        return []

    def step(self, chosen: TrainingStep, eager: EagerStep, plan: StepChoice) -> TrainingStep | None:
        """A step of this kind's own instead of ``chosen`` (eager or captured), or ``None``."""
        return None


_KINDS: dict[type[nn.Module], type[FitKind]] = {}


def register_fit_kind(model_type: type[nn.Module], kind: type[FitKind]) -> None:
    """Fit models of ``model_type`` (and its subclasses) with ``kind``."""
    _KINDS[model_type] = kind


def _kind_of(model: nn.Module) -> FitKind:
    for model_type, kind in _KINDS.items():
        if isinstance(model, model_type):
            return kind(model)
    return FitKind(model)


class HookRunner:
    """The callbacks of one fit, in the order their hooks run, and how a hook is run on them.

    Args:
        trainer: passed to every hook, with its current ``state``.
        callbacks: the fit's callbacks, sorted by ``order``.
    """

    def __init__(self, trainer: Trainer, callbacks: list[Callback]) -> None:
        self.trainer, self.callbacks = trainer, callbacks

    def __call__(self, hook: str, *args: Any, reading: bool | None = None) -> None:
        """Run ``hook`` on every callback in order (a StopTraining stops the fit).

        With ``reading`` set, only the callbacks whose ``reads_metrics`` equals it.

        Raises:
            InvalidArgumentError: a callback raised SkipBatch outside a batch's hooks.
        """
        trainer = self.trainer
        for callback in self.callbacks:
            if reading is not None and callback.reads_metrics != reading:
                continue
            try:
                getattr(callback, hook)(trainer, trainer.state, *args)
            except StopTraining:
                trainer.should_stop = True
            except SkipBatch as skip:
                if hook in _BATCH_HOOKS:
                    raise
                raise InvalidArgumentError(
                    f"{type(callback).__name__} raised SkipBatch in {hook}, where there is no "
                    "batch to skip; raise it from on_batch_start, on_before_backward or "
                    "on_before_optimizer_step (or StopTraining to end the fit)"
                ) from skip


@dataclass(eq=False)
class FitPlan:
    """Everything one fit resolved: built by :func:`build_plan` when ``fit()`` starts.

    The trainer keeps the plan of its latest fit only so that ``trainer.optimizer`` and
    ``save_checkpoint()`` after a fit still work; the next fit builds a new one.

    Attributes:
        parallel: how the processes of the fit train together (one process: does nothing).
        kind: how the model's kind changes the fit (a plain network, or a stack).
        criterion: this fit's loss (its output-kind detection starts afresh each fit).
        hooks: the fit's callbacks in order, and how their hooks run.
        optimizer: what the trainer's ``configure_optimizers`` built.
        step: runs one training batch (eager, captured, or member by member).
        step_line: which step and why, for the plan's log line.
        metric_sets: the user's metrics for training and for validation batches.
        layout: whether the fit runs channels-last (or decides on the first batch).
        eager: the eager step (``step`` or what it wraps): it holds whether gradients of
            micro-batches wait for an optimizer step (``accumulate_grad_batches``).
        first_step: ``state.global_step`` when the fit started (a resume starts later).
        logged: this epoch's ``trainer.log`` values.
        logging_open: whether ``trainer.log`` records now (from ``on_epoch_start`` until the
            epoch's logged values are merged).
        logged_weights: for values logged with ``reduce="mean"``, the samples averaged so
            far (``logged`` then holds the running mean).
        validating: a validation is running (``trainer.log`` averages by default then).
        batch_size: the samples of the batch being trained or validated (the mean's weight).
        stream: the training batches' stream under ``steps_per_epoch`` (its position goes
            into checkpoints), else ``None``.
        precision: the fit's precision (the trainer's, or ``"32"`` where the first batch's
            bfloat16 check failed); validation runs under it too.
        precision_pending: the bfloat16 check waits for the first training batch.
    """

    parallel: ParallelStrategy
    kind: FitKind
    criterion: Criterion
    hooks: HookRunner
    optimizer: Optimizer
    step: TrainingStep
    step_line: str
    metric_sets: tuple[MetricSet, MetricSet]
    layout: LayoutDecision
    eager: EagerStep | None = None
    first_step: int = 0
    logged: dict[str, float | Tensor] = field(default_factory=dict)
    logged_weights: dict[str, float] = field(default_factory=dict)
    logging_open: bool = False
    validating: bool = False
    batch_size: int = 0
    stream: ContinuingLoader | None = None
    precision: ResolvedPrecision = "32"
    precision_pending: bool = False

    @property
    def callbacks(self) -> list[Callback]:
        """The fit's callbacks, in the order their hooks run."""
        return self.hooks.callbacks

    def running_score(self, device: torch.device, *, smoothing: bool) -> RunningScore:
        """A fresh running score for one epoch (``smoothing``: of training batches)."""
        return self.kind.running_score(device, self.criterion, smoothing=smoothing)

    def _loss_text(self) -> str:
        loss = self.criterion.loss
        text = loss if isinstance(loss, str) else getattr(loss, "__name__", type(loss).__name__)
        smoothing = self.criterion.label_smoothing
        return f"{text} (label smoothing {smoothing})" if smoothing else text

    def describe(self, trainer: Trainer) -> str:
        """The plan in one readable line (logged once per fit)."""
        processes = self.parallel.world_size
        names = ", ".join(  # the library's private guards are not the user's business
            name for name in (type(c).__name__ for c in self.callbacks) if name[0] != "_"
        )
        return (
            f"lenetish: fit plan: {type(trainer.module).__name__} on {trainer.device}, "
            f"precision {trainer.precision}, {self.layout.describe()}, {self.step_line}, "
            f"{processes} process{'' if processes == 1 else 'es'}, loss {self._loss_text()}, "
            f"optimizer {type(self.optimizer).__name__}, "
            f"callbacks {names}"
        )


def record_logged(
    plan: FitPlan | None, name: str, value: float | Tensor, reduce: str | None = None
) -> None:
    """Keep ``trainer.log(name, value)`` for the epoch's row, or warn that it is dropped.

    ``reduce="mean"`` (the default during validation) keeps the mean over the batches
    weighted by their sizes; ``"last"`` (the default elsewhere) the last value.

    Raises:
        InvalidArgumentError: ``reduce`` is neither ``"last"``, ``"mean"`` nor ``None``.
    """
    if reduce not in (None, "last", "mean"):
        raise InvalidArgumentError(
            f"reduce={reduce!r} is not supported; use 'mean' (weighted by batch size), 'last', "
            "or leave it out (mean during validation, last otherwise)"
        )
    if plan is None or not plan.logging_open:
        warnings.warn(
            f"trainer.log({name!r}, ...) outside an epoch is dropped: log from "
            "training_step or a hook between on_epoch_start and the on_epoch_end of "
            "callbacks with reads_metrics=False",
            UserWarning,
            stacklevel=3,
        )
        return
    value = value.detach() if isinstance(value, Tensor) else value
    if (reduce or ("mean" if plan.validating else "last")) == "last":
        plan.logged[name] = value
        plan.logged_weights.pop(name, None)
        return
    weight = float(plan.batch_size or 1)
    seen = plan.logged_weights.get(name, 0.0)
    if not seen:
        plan.logged[name] = value
    else:  # a running mean: tensors stay on their device, read at the epoch's end
        previous = plan.logged[name]
        plan.logged[name] = previous + (value - previous) * (weight / (seen + weight))
    plan.logged_weights[name] = seen + weight


def deprecated_criterion(plan: FitPlan | None) -> Criterion:
    """What the deprecated ``Trainer.criterion`` gives: the plan's loss, after a FutureWarning.

    Raises:
        NotFittedError: no fit has started yet (each fit builds its own loss).
    """
    warnings.warn(
        "Trainer.criterion is deprecated and will be removed in lenetish 0.3: call "
        "trainer.compute_loss(outputs, targets) for a batch's loss as the fit computes it, "
        "or read trainer.loss for the loss setting",
        FutureWarning,
        stacklevel=3,  # the line reading trainer.criterion
    )
    if plan is None:
        raise NotFittedError(
            "trainer.criterion exists once fit() has started (each fit builds its own loss); "
            "read it in a hook or after fit(), or use trainer.compute_loss(outputs, targets)"
        )
    return plan.criterion


def _fit_callbacks(
    trainer: Trainer, parallel: ParallelStrategy, kind: FitKind, steps: int | None
) -> list[Callback]:
    """The trainer's callbacks, its built-in schedule and the kind's, sorted and reset."""
    limits = trainer.limits
    schedule = builtin_schedule(
        trainer.scheduler_spec,
        epochs=trainer.state.epochs,
        steps_per_epoch=None if steps is None else limits.optimizer_steps(steps),
    )
    everyone = [*trainer.callbacks, *([schedule] if schedule else []), *kind.callbacks()]
    if limits.quick_run:  # fast_dev_run writes nothing (Lightning's)
        left_out = [type(c).__name__ for c in everyone if c.writes_files]
        everyone = [c for c in everyone if not c.writes_files]
        if left_out:
            logger.info(
                "lenetish: fast_dev_run=%d leaves out the callbacks that write files: %s",
                limits.quick_run,
                ", ".join(left_out),
            )
    callbacks_by_key(everyone)  # refuses two callbacks with one key, on every rank
    mine = sorted(
        (c for c in everyone if parallel.is_main or not c.rank_zero_only), key=lambda c: c.order
    )
    for callback in mine:
        callback.reset()
    return mine


def build_plan(
    trainer: Trainer, parallel: ParallelStrategy, steps_per_epoch: int | None
) -> FitPlan:
    """Resolve one fit: callbacks, loss, optimizer, scores, step and layout; log it in one line.

    Args:
        trainer: the trainer about to fit (its settings and seams are read, not changed,
            except that ``compile=True`` compiles and the layout applies to its model).
        parallel: how the processes of this fit train together.
        steps_per_epoch: batches per epoch (``None`` when the loader has no length).

    Raises:
        InvalidArgumentError: settings that contradict each other for this fit (a scheduler
            set twice, a setting the model's kind refuses, ``onecycle`` without ``len()``).
    """
    model = trainer.module
    kind = _kind_of(model)
    kind.check(trainer)
    criterion = Criterion(trainer.loss, trainer.label_smoothing)
    criterion.members = kind.members
    criterion.class_weight = trainer.class_weight
    hooks = HookRunner(trainer, _fit_callbacks(trainer, parallel, kind, steps_per_epoch))
    optimizer, returned = unpack_optimizer_config(trainer.configure_optimizers())
    built_by = (
        "configure_optimizers"
        if is_overridden(trainer, "configure_optimizers")
        else "optimizer="
        if callable(trainer.optimizer_spec)
        else f"optimizer={trainer.optimizer_spec!r}"
    )
    check_optimizer_owner(optimizer, model, built_by=built_by)
    if isinstance(optimizer, torch.optim.LBFGS):
        raise InvalidArgumentError(
            f"{built_by} gave LBFGS, whose step needs a closure that re-evaluates the loss; "
            "the Trainer's step calls optimizer.step() once per batch without one: use a "
            "first-order optimizer (Adam, SGD), or train LBFGS in a loop of your own"
        )
    if returned is not None:
        if trainer.scheduler_spec is not None:
            raise InvalidArgumentError(
                f"configure_optimizers returned a scheduler and scheduler="
                f"{trainer.scheduler_spec!r} is set too; keep one of them"
            )
        hooks.callbacks = sorted([*hooks.callbacks, returned], key=lambda c: c.order)
    # afresh each fit: an earlier fit's bfloat16 check may have set "32"
    trainer.precision = resolve_precision(trainer.precision_spec, trainer.device)
    settings = StepSettings(
        trainer.device, trainer.precision, trainer.grad_clip_norm, trainer.augment
    )
    eager = EagerStep(trainer.model, optimizer, trainer.training_step, settings, hooks)
    request = CaptureRequest(
        cuda_graphs=trainer.cuda_graphs,
        settings=settings,
        optimizer=optimizer,
        callbacks=hooks.callbacks,
        custom_training_step=is_overridden(trainer, "training_step"),
        deterministic=trainer.deterministic,
        compiled=trainer.compile,
        world_size=parallel.world_size,
        accumulate_grad_batches=trainer.limits.accumulate_grad_batches,
    )
    step, step_line = make_step(eager, request)
    own_step = kind.step(step, eager, StepChoice(trainer, hooks.callbacks, criterion))
    if own_step is not None and trainer.limits.accumulate_grad_batches > 1:
        raise InvalidArgumentError(
            f"accumulate_grad_batches={trainer.limits.accumulate_grad_batches} is not "
            f"supported for a {type(model).__name__} fit (it runs as "
            f"{type(own_step).__name__}); use a larger batch, or accumulate_grad_batches=1"
        )
    if own_step is not None:
        step, step_line = own_step, f"{step_line}, run as {type(own_step).__name__}"
    metric_sets = (
        kind.metric_set(trainer.metrics, trainer.device),
        kind.metric_set(trainer.metrics, trainer.device),
    )
    trainer.state.lr = float(optimizer.param_groups[0]["lr"])
    if trainer.compile:
        model.compile()  # undone by restore_model when the fit ends
    layout = plan_layout(model, trainer.channels_last, parallel.world_size)
    if layout.channels_last:
        module_channels_last(model)
    plan = FitPlan(
        parallel, kind, criterion, hooks, optimizer, step, step_line, metric_sets, layout,
        eager=eager, precision=trainer.precision,
    )  # fmt: skip
    # precision="auto" gives bfloat16 to a network lenetish did not write only once its first
    # batch shows the outputs unchanged (lenetish._bf16_check); decided by settle_precision.
    plan.precision_pending = (
        trainer.precision_spec == "auto"
        and trainer.precision == "bf16-mixed"
        and own_step is None
        and not declares_fast_path(model)
    )
    logger.info("%s", plan.describe(trainer))
    return plan


def settle_precision(plan: FitPlan, model: nn.Module, images: Tensor) -> None:
    """On the first training batch: bfloat16 for ``model`` if the check finds it safe.

    Otherwise the fit's step and validation run in float32, said in one log line.
    """
    plan.precision_pending = False
    problem = bf16_problem(model, images)
    name = type(model).__name__
    if problem is None:
        logger.info(
            "lenetish: %s trains under bfloat16 autocast (precision='auto'): its outputs on "
            "the first batch were checked against float32",
            name,
        )
        return
    logger.info(
        "lenetish: %s trains in float32, not bfloat16: %s; precision='bf16-mixed' asks for "
        "bfloat16 anyway",
        name,
        problem,
    )
    plan.precision = "32"
    if plan.eager is not None:
        plan.eager.settings = dataclasses.replace(plan.eager.settings, precision="32")
