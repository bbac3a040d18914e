"""The ``Trainer``: its settings, its seams, the fit loop, hook dispatch and exact resume."""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer

from lenetish._checks import DEFAULT_LR, check_epoch_settings, check_trainer_settings
from lenetish._device import (
    DeviceLike,
    Precision,
    deterministic_algorithms,
    resolve_device,
    resolve_precision,
    seed_everything,
)
from lenetish.callbacks import Callback, History, ProgressBar
from lenetish.callbacks.base import check_callbacks
from lenetish.callbacks.schedules import SchedulerFactory
from lenetish.data.identity import DatasetInfo, remember_dataset
from lenetish.distributed.strategies import ParallelStrategy, SingleProcess, parallel_strategy
from lenetish.errors import NotFittedError, TrainerBusyError
from lenetish.losses import Criterion, LossFunction, LossName
from lenetish.metrics import MetricLike, MetricSet, check_logged
from lenetish.saving.checkpoint import load_checkpoint, save_checkpoint
from lenetish.training._layout_plan import (
    ModelAsFound,
    check_channels_last_setting,
    restore_model,
)
from lenetish.training._loop import Batch, run_fit
from lenetish.training._plan import FitPlan, batch_count, build_plan, check_reiterable
from lenetish.training.optimizer_config import OptimizerConfig
from lenetish.training.resume import checkpoint_state
from lenetish.training.state import BatchOutput, TrainState

__all__ = ["BatchOutput", "TrainState", "Trainer"]  # the first two live in lenetish.training.state

logger = logging.getLogger("lenetish")

OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]
OptimizerName = Literal["adam", "sgd"]
SchedulerName = Literal["onecycle", "step"]


class Trainer:
    """Train a classifier, with callbacks at every step and your own loss and metrics.

    The defaults reproduce the seed blog post: Adam with PyTorch's default learning rate,
    negative log-likelihood on the model's log-probabilities, the loader's batch size. A
    model that returns logits or probabilities is detected on the first batch
    (``loss="auto"``). Subclass it and override :meth:`training_step`,
    :meth:`validation_step` or :meth:`configure_optimizers` to change what a step does.

    Args:
        model: the network, e.g. :class:`~lenetish.MNISTConvNet`.
        optimizer: ``"adam"``, ``"sgd"`` (with ``momentum``), or a callable that takes the
            model's parameters and returns an optimizer (then ``lr`` must be ``None``).
        lr: learning rate (default: 1e-3 for Adam, 0.1 for SGD, the seed's values).
        epochs: passes over the training data.
        min_epochs: whole epochs no stop request cuts short (Lightning's): an earlier one
            (early stopping, a Timer, ``StopTraining``) is held, logged once. 0 holds none.
        validation_freq: validate every this many epochs (Keras' ``validation_freq``,
            Lightning's ``check_val_every_n_epoch``).
        scheduler: ``None``; ``"onecycle"`` (one-cycle up to the optimizer's own lr,
            whatever built it: ``lr``, a callable, an overridden
            :meth:`configure_optimizers`; stepped every batch);
            ``"step"`` (multiply by 0.7 after every epoch); or a callable that takes the
            optimizer and returns a scheduler stepped after every epoch (use the
            :class:`~lenetish.LRSchedule` callback for other intervals).
        momentum: SGD momentum.
        weight_decay: L2 weight decay of the built-in optimizers.
        callbacks: extra :class:`~lenetish.Callback` objects; a :class:`~lenetish.History`
            is always added (pass your own to keep a reference).
        device: ``"auto"`` picks CUDA, then MPS, then the CPU.
        precision: ``"32"`` (the seed's), ``"bf16-mixed"`` (CPU or CUDA), ``"16-mixed"``
            (CUDA only, with a gradient scaler), or ``"auto"``: ``"bf16-mixed"`` where the
            device computes bfloat16 natively (recent GPUs; CPUs with AMX or AVX-512 BF16),
            else ``"32"``. The resolved value is in ``trainer.precision``.
        channels_last: run convolution weights and image batches channels-last (NHWC),
            which the CPU and GPU convolution libraries run fastest, during :meth:`fit`.
            ``"auto"``: for networks that declare ``lenetish_fast_path`` (lenetish's own),
            and for any other model once a check on the first batch showed its outputs the
            same in both layouts (a model that flattens with ``.view`` cannot take it: it
            then trains in its own layout, said in one log line). ``True`` insists (a model
            that cannot take it is a named error), ``False`` never. The values are the same
            up to floating-point rounding, and the model's own layout is restored after the
            fit.
        cuda_graphs: experimental (off until tested on a real GPU): on CUDA, capture the
            whole training step as a CUDA graph when that is safe (see
            :func:`lenetish.training.cuda_graph.capture_blockers`); each fit logs which step it uses
            and why.
        compile: compile the model's forward pass with :func:`torch.compile` for each fit
            (the model is left uncompiled afterwards, as it came).
        grad_clip_norm: clip the global gradient norm to this value before each step.
        augment: applied to every training batch on the device before the forward pass,
            e.g. :class:`~lenetish.RandomAffine` (validation batches are left alone).
        label_smoothing: mix this much of a uniform target into the training loss
            (``(1 - s) * NLL + s * mean negative log-probability``); 0 is the seed's loss.
        loss: ``"auto"`` (from the first training batch: log-probabilities get the
            negative log-likelihood, logits and probabilities the cross-entropy; logged
            once), ``"nll"``, ``"cross_entropy"``, or a callable ``(outputs, targets) ->
            scalar``; see :class:`lenetish.losses.Criterion`.
        metrics: ``{name: metric}``, each a function ``(outputs, targets) -> value`` (averaged
            over an epoch's samples) or an object with ``update``/``compute``/``reset`` (a
            torchmetrics ``Metric``); History gets ``name`` and, with validation,
            ``val_name``.
        seed: seed Python, NumPy and torch at the start of :meth:`fit`. The model was built
            before the trainer, so this does not seed its initial weights: call
            :func:`~lenetish.seed_everything` before building it for that.
        deterministic: use PyTorch's deterministic algorithms during :meth:`fit`.
        progress: show a progress bar (``None``: in a terminal or a Jupyter notebook, not
            under ``CI=true``).

    Attributes:
        history: the :class:`~lenetish.History` of the latest fit.
        data_info: the dataset the training data comes from: set by the caller (e.g.
            ``loaders.info``), and replaced by :meth:`fit` with a lenetish loader's ``info``
            (which describes the data that fit trains on). The fit attaches it to the model
            too, so :func:`~lenetish.predict` and :func:`~lenetish.evaluate` prepare inputs
            as that data was made; checkpoints record it.

    Under ``torchrun`` with several processes, :meth:`fit` trains data-parallel (see
    :doc:`/distributed`): ``self.model`` is the ``DistributedDataParallel`` wrapper during
    the fit and :attr:`module` is always the network itself.

    Raises:
        InvalidArgumentError: a setting is unknown or out of range.
        DeviceUnavailableError: ``device`` is not present on this machine.

    Example:
        >>> from lenetish import MNISTConvNet
        >>> batches = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))]
        >>> history = Trainer(MNISTConvNet(), epochs=2, device="cpu").fit(batches)
        >>> [row["epoch"] for row in history]
        [1, 2]
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        optimizer: OptimizerName | OptimizerFactory = "adam",
        lr: float | None = None,
        epochs: int = 5,
        min_epochs: int = 0,
        validation_freq: int = 1,
        scheduler: SchedulerName | SchedulerFactory | None = None,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        callbacks: Sequence[Callback] = (),
        device: DeviceLike = "auto",
        precision: Precision = "32",
        channels_last: bool | Literal["auto"] = "auto",
        cuda_graphs: bool = False,
        compile: bool = False,
        grad_clip_norm: float | None = None,
        augment: Callable[[Tensor], Tensor] | None = None,
        label_smoothing: float = 0.0,
        loss: LossName | LossFunction = "auto",
        metrics: Mapping[str, MetricLike] | None = None,
        seed: int | None = None,
        deterministic: bool = False,
        progress: bool | None = None,
    ) -> None:
        check_trainer_settings(
            optimizer, lr, epochs, scheduler, momentum, weight_decay, grad_clip_norm,
            label_smoothing, augment,
        )  # fmt: skip
        check_callbacks(callbacks)
        check_epoch_settings(epochs, min_epochs, validation_freq)
        check_channels_last_setting(channels_last)
        Criterion(loss, label_smoothing)  # refuses an unknown loss now, not at fit()
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.metrics: dict[str, MetricLike] = dict(metrics or {})
        MetricSet(self.metrics, self.device)  # refuses a non-metric now
        self.model = model.to(self.device)
        self.optimizer_spec, self.scheduler_spec = optimizer, scheduler
        self.lr = DEFAULT_LR[optimizer] if isinstance(optimizer, str) and lr is None else lr
        self.epochs, self.min_epochs, self.validation_freq = epochs, min_epochs, validation_freq
        self.momentum, self.weight_decay = momentum, weight_decay
        self.channels_last, self.cuda_graphs, self.compile = channels_last, cuda_graphs, compile
        self.grad_clip_norm, self.augment = grad_clip_norm, augment
        self.loss, self.label_smoothing = loss, label_smoothing
        self.seed, self.deterministic = seed, deterministic
        self.history = next((c for c in callbacks if isinstance(c, History)), History())
        self._history_given = self.history in callbacks
        extra: list[Callback] = [] if self._history_given else [self.history]
        if not any(isinstance(c, ProgressBar) for c in callbacks):
            extra.append(ProgressBar(enabled=progress))
        self.callbacks: list[Callback] = [*callbacks, *extra]
        self.should_stop = False
        self.state = TrainState(epochs=epochs)
        self.data_info: DatasetInfo | None = None
        self._parallel: ParallelStrategy = SingleProcess()  # the current (or last) fit's
        self._plan: FitPlan | None = None  # the current (or last) fit's (see _plan.FitPlan)
        self._fitting = threading.Lock()  # one fit at a time (two would share the optimizer)

    @property
    def module(self) -> nn.Module:
        """The network being trained (``self.model`` without its DDP wrapper, if any)."""
        if isinstance(self.model, DistributedDataParallel):
            return self.model.module  # type: ignore[no-any-return]
        return self.model

    @property
    def optimizer(self) -> Optimizer:
        """The optimizer of the current (or last) fit, e.g. for an lr callback.

        It exists from the start of :meth:`fit` (every hook can read it); before the first
        fit, reading it raises :class:`~lenetish.NotFittedError`.
        """
        if self._plan is None:
            raise NotFittedError(
                "trainer.optimizer exists once fit() has started (configure_optimizers builds "
                "it); read it inside a callback hook or after fit()"
            )
        return self._plan.optimizer

    @property
    def fit_callbacks(self) -> tuple[Callback, ...]:
        """The callbacks of the current (or last) fit in the order their hooks run.

        The trainer's ``callbacks``, its built-in schedule, a scheduler returned by
        :meth:`configure_optimizers`, sorted by ``order`` (empty before the first fit).
        """
        return () if self._plan is None else tuple(self._plan.callbacks)

    @property
    def world_size(self) -> int:
        """The number of processes of the current (or last) fit (1 unless distributed)."""
        return self._parallel.world_size

    @property
    def is_main_process(self) -> bool:
        """Whether this process writes checkpoints and logs (rank 0, or the only one)."""
        return self._parallel.is_main

    # ---- seams for subclasses -------------------------------------------------------------

    def configure_optimizers(self) -> OptimizerConfig:
        """Build the optimizer from the constructor's settings (override to customise).

        An override may return an optimizer, ``(optimizer, scheduler)``, or Lightning's
        ``{"optimizer": ..., "lr_scheduler": scheduler or {"scheduler": ..., "interval":
        "epoch" or "step", "monitor": ...}}``; a returned scheduler is stepped every epoch
        (or step) and resumes like ``scheduler=`` (see :mod:`lenetish.training.optimizer_config`).

        Example:
            >>> from lenetish import MNISTConvNet
            >>> class SGDTrainer(Trainer):
            ...     def configure_optimizers(self):
            ...         optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05)
            ...         return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, 1, 0.5)
            >>> batches = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))]
            >>> history = SGDTrainer(MNISTConvNet(), epochs=2, device="cpu").fit(batches)
            >>> [round(row["lr"], 3) for row in history]
            [0.05, 0.025]
        """
        parameters = self.model.parameters()
        if callable(self.optimizer_spec):
            return self.optimizer_spec(parameters)
        lr = float(self.lr or 0.0)
        if self.optimizer_spec == "sgd":
            return torch.optim.SGD(
                parameters, lr=lr, momentum=self.momentum, weight_decay=self.weight_decay
            )
        # One fused kernel for the whole update: on this CPU about 1.8x faster than the loop.
        fused = self.device.type in ("cuda", "cpu")
        return torch.optim.Adam(parameters, lr=lr, weight_decay=self.weight_decay, fused=fused)

    def training_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
        """Forward one training batch and return its loss (still attached) and outputs.

        Override it to change what a step computes; the Trainer runs it under the fit's
        autocast, after ``augment``, and does the backward pass and the optimizer step
        itself. Call :meth:`compute_loss` to keep the ``loss`` and ``label_smoothing``
        settings.

        Args:
            images: the batch's images on the training device, ``(B, 1, 28, 28)`` for the
                lenetish loaders (channels-last when the fit runs channels-last).
            labels: the batch's class indices on the training device, ``(B,)``.

        Returns:
            The loss to minimise (a scalar attached to the graph), the model's outputs and
            the labels.
        """
        outputs = self.model(images)
        return BatchOutput(self.compute_loss(outputs, labels), outputs, labels)

    def validation_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
        """Forward one validation batch (under inference mode, model in eval mode).

        Override it together with :meth:`training_step` when a validation batch needs the
        same special treatment; its loss is computed without label smoothing.

        Args:
            images: the validation batch's images on the training device.
            labels: the validation batch's class indices on the training device.

        Returns:
            The batch's loss, the model's outputs and the labels; the loss and accuracy of
            all the batches become ``val_loss`` and ``val_accuracy``.
        """
        outputs = self.model(images)
        return BatchOutput(self.compute_loss(outputs, labels, smoothing=False), outputs, labels)

    def compute_loss(self, outputs: Tensor, targets: Tensor, *, smoothing: bool = True) -> Tensor:
        """The trainer's ``loss`` of a batch (with ``label_smoothing`` unless told not to).

        Call it from your own :meth:`training_step` to keep the loss setting and label
        smoothing; a ``training_step`` that does not is warned about once per fit.
        """
        if self._plan is None:  # outside a fit: the configured loss, detecting afresh
            return Criterion(self.loss, self.label_smoothing)(outputs, targets, smoothing=smoothing)
        return self._plan.criterion(outputs, targets, smoothing=smoothing)

    def log(self, name: str, value: float | Tensor) -> None:
        """Record ``value`` as this epoch's ``name`` metric (the last value logged wins).

        Call it from ``training_step`` or any hook during an epoch; the value lands in the
        epoch's History row, the loggers, and what monitors read (see :doc:`/training`).
        A tensor is read once, when the epoch ends.

        Raises:
            InvalidArgumentError: ``name`` is a built-in metric, or ``value`` not a number.
        """
        check_logged(name, value, computed=self.metrics)
        if self._plan is None or not self._plan.logging_open:
            warnings.warn(
                f"trainer.log({name!r}, ...) outside an epoch is dropped: log from "
                "training_step or a hook between on_epoch_start and the on_epoch_end of "
                "callbacks with reads_metrics=False",
                UserWarning,
                stacklevel=2,
            )
            return
        self._plan.logged[name] = value.detach() if isinstance(value, Tensor) else value

    # ---- checkpoints ----------------------------------------------------------------------

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything needed to resume this fit exactly, as plain containers and tensors.

        Each callback's ``state_dict()`` is made loadable under ``torch.load(weights_only=True)``:
        NumPy scalars become Python numbers, NumPy arrays tensors.

        Raises:
            CheckpointError: a callback's state holds another object that loading would refuse
                (a ``collections.deque``, say); the message names the callback's class, its
                ``state_key`` and where the object sits.
        """
        return checkpoint_state(self, self._plan)

    def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`checkpoint_state` atomically to ``path`` (a temporary file, renamed).

        Called between epochs (``on_epoch_end``, as :class:`~lenetish.ModelCheckpoint` does,
        or after :meth:`fit`), the checkpoint holds the epochs finished so far. Called while an
        epoch's training batches run (from ``on_epoch_start`` to the last batch's
        ``on_batch_end``, e.g. every N steps from ``on_batch_end``), it holds that epoch as
        unfinished: how many of its batches were done, the random state at the epoch's start
        and at the save, and its running loss, accuracy, metrics and ``trainer.log`` values. A
        fit resumed from it runs that epoch again from ``on_epoch_start``, draws the batches
        in the same order, skips the ones already trained (no hooks run for them), puts the
        random state of the save back and goes on, so its weights and History are
        bit-identical to an uninterrupted run (with ``precision="32"`` and deterministic
        kernels). Training those batches a second time could not be.

        That holds when it is called from ``on_batch_end`` by a callback that runs after the
        others with state (a higher ``order``; the built-in schedules and :class:`~lenetish.EMA`
        run early), or from ``on_epoch_start``. From inside a step (``on_before_backward``,
        ``on_before_optimizer_step``) the batch is trained again, with another random state.
        Metric objects (``update``/``compute``/``reset``) save no state, so a resumed
        epoch's value of theirs counts only the batches after the resume; a run of several
        processes resumes from rank 0's random state. Both are logged when resuming.

        In a distributed fit only rank 0 writes; on the other ranks this does nothing.

        Raises:
            CheckpointError: a callback's state could not be loaded back (see
                :meth:`checkpoint_state`), or the file could not be written; nothing is
                written then.
        """
        if self.is_main_process:
            save_checkpoint(path, self.checkpoint_state())

    # ---- the fit loop ---------------------------------------------------------------------

    def fit(
        self,
        train: Iterable[Batch],
        val: Iterable[Batch] | None = None,
        *,
        resume: str | os.PathLike[str] | None = None,
    ) -> History:
        """Train for ``epochs`` epochs over ``train``, validating on ``val`` after each one.

        Each call is a fit of its own: it builds a fresh optimizer (and schedule) with
        :meth:`configure_optimizers`, so a second ``fit`` continues from the model's weights
        but not from the optimizer's moments or the schedule's position; to continue a fit
        exactly, save a checkpoint and pass it as ``resume``.

        Args:
            train: any re-iterable of ``(images, labels)`` batches: a lenetish loader, a
                ``DataLoader``, a list of tensor pairs. A loader with ``set_epoch`` (as
                lenetish's are) is told each epoch's index, so its order is reproducible.
            val: batches for validation, or ``None``.
            resume: a checkpoint written by this trainer's configuration (see
                :class:`~lenetish.ModelCheckpoint`); training continues exactly where it
                stopped, up to ``epochs`` in all.

        Returns:
            The :class:`~lenetish.History`, one row per epoch (resumed epochs included).

        Raises:
            CheckpointError: ``resume`` cannot be loaded (for a callback state that loading
                refuses, the message names the callback), was written by a run with another
                number of processes, has already trained more than ``epochs`` epochs
                (``epochs`` is the total, so the resumed fit would train nothing), or was
                written inside an epoch that does not fit this fit (``epochs`` does not reach
                it, the training loader has fewer batches than were done, or its running score
                does not load under these ``metrics=``).
            InvalidArgumentError: ``scheduler='onecycle'`` with a loader that has no length,
                two callbacks share a ``state_key``, or, in a distributed fit, batches that
                cannot be split between processes.
            DistributedError: a distributed launch is incomplete or cannot connect.
            TrainerBusyError: this trainer is already fitting (another thread, or a hook of
                its own fit).
        """
        if not self._fitting.acquire(blocking=False):
            raise TrainerBusyError(
                "this Trainer is already running a fit (in another thread, or fit() was called "
                "from one of its own hooks); one Trainer runs one fit at a time: give each "
                "thread a Trainer and a model of its own"
            )
        try:
            return self._fit(train, val, resume)
        finally:
            self._fitting.release()

    def _fit(
        self,
        train: Iterable[Batch],
        val: Iterable[Batch] | None,
        resume: str | os.PathLike[str] | None,
    ) -> History:
        """:meth:`fit`'s work, run while the trainer's fit lock is held."""
        check_reiterable(train=train, val=val)
        checkpoint = None if resume is None else load_checkpoint(resume)
        self._parallel = parallel = parallel_strategy(self.device)
        self._remember_data(train)
        train = parallel.shard(train, role="training")
        val = None if val is None else parallel.shard(val, role="validation")
        steps_per_epoch = batch_count(train)
        self.state = TrainState(
            epochs=self.epochs,
            steps_per_epoch=steps_per_epoch,
            resumed=checkpoint is not None,
            validating=val is not None,
            validation_freq=self.validation_freq,
            min_epochs=self.min_epochs,
        )
        self.should_stop = False
        if not self._history_given:  # each fit returns a History of its own
            fresh = History()
            self.callbacks = [fresh if c is self.history else c for c in self.callbacks]
            self.history = fresh
        as_found = ModelAsFound.of(self.module)
        self._plan = None
        try:
            with deterministic_algorithms(self.deterministic):
                if checkpoint is None and self.seed is not None:
                    seed_everything(self.seed)
                self._plan = build_plan(self, parallel, steps_per_epoch)
                run_fit(self, self._plan, train, val, checkpoint, source=str(resume))
        finally:  # layout, compilation and mode as they came
            restore_model(
                self.module, as_found, None if self._plan is None else self._plan.optimizer
            )
        return self.history

    def _remember_data(self, train: Iterable[Batch]) -> None:
        """Record the training data's dataset on the trainer and the model.

        What a lenetish loader knows (``train.info``: it describes the data of this fit), else
        ``data_info``; the model then carries it, so :func:`~lenetish.predict` and
        :func:`~lenetish.evaluate` prepare inputs the way this data was made without
        ``dataset=``.
        """
        from_loader = getattr(train, "info", None)
        known = from_loader if isinstance(from_loader, DatasetInfo) else self.data_info
        if isinstance(known, DatasetInfo):
            self.data_info = known
            remember_dataset(self.module, known)
