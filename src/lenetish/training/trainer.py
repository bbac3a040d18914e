"""The ``Trainer``: settings kept as given and seams to override; ``fit`` runs a fit's plan.

What exists only during one fit is built by ``lenetish.training._plan.build_plan`` and run by
``lenetish.training._loop`` (which :mod:`lenetish.training.resume` serves).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim import Optimizer

from lenetish._checks import DEFAULT_LR, check_trainer_settings
from lenetish._device import (
    Deterministic,
    DeviceLike,
    Precision,
    check_deterministic,
    resolve_device,
    resolve_precision,
)
from lenetish.callbacks import Callback, History
from lenetish.callbacks.base import check_callbacks
from lenetish.callbacks.defaults import renew_history, with_defaults
from lenetish.callbacks.schedules import SchedulerFactory
from lenetish.catalog import OptimizerName, SchedulerName
from lenetish.data.identity import DatasetInfo
from lenetish.distributed.strategies import ParallelStrategy, SingleProcess
from lenetish.errors import InvalidArgumentError, NotFittedError, TrainerBusyError
from lenetish.losses import Criterion, LossFunction, LossName, check_class_weight
from lenetish.metrics import LoggedValue, MetricLike, MetricSet, check_logged
from lenetish.saving.checkpoint import save_checkpoint
from lenetish.training._loader_rng import remember_loader
from lenetish.training._loop import Batch, fit_once, predict_batches, validate_alone
from lenetish.training._plan import FitPlan, deprecated_criterion, record_logged
from lenetish.training.limits import BatchLimit, LoopLimits
from lenetish.training.optimizer_config import OptimizerConfig, build_optimizer
from lenetish.training.resume import checkpoint_state
from lenetish.training.state import BatchOutput, TrainState

#: How ``Trainer.log`` combines an epoch's values of one name.
Reduce = Literal["last", "mean"]

__all__ = ["BatchOutput", "TrainState", "Trainer"]  # the first two live in lenetish.training.state

OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]


class Trainer:
    """Train a classifier, with callbacks at every step and your own loss and metrics.

    The defaults are the seed blog post's (Adam at PyTorch's default lr, negative
    log-likelihood); logits or probabilities are detected on the first batch. Override
    :meth:`training_step`, :meth:`validation_step` or :meth:`configure_optimizers` to change
    a step. Each argument is kept under its own name (``optimizer`` and ``scheduler`` as
    ``optimizer_spec`` and ``scheduler_spec``) and read when :meth:`fit` starts.

    Args:
        model: the network, e.g. :class:`~lenetish.MNISTConvNet`.
        optimizer: ``"adam"``, ``"sgd"`` (with ``momentum``), or a callable that takes the
            model's parameters and returns an optimizer (then ``lr`` must be ``None``).
        lr: learning rate (default: 1e-3 for Adam, 0.1 for SGD, the seed's values).
        epochs: passes over the training data (``None``: as many as ``max_steps`` needs).
        min_epochs: whole epochs no stop request cuts short (Lightning's): an earlier one
            (early stopping, a Timer, ``StopTraining``) is held, logged once.
        validation_freq: validate every this many epochs (Keras' ``validation_freq``).
        scheduler: ``None``; ``"onecycle"`` (one cycle up to the optimizer's own lr,
            stepped every batch); ``"step"`` (x0.7 after every epoch); or a callable that
            takes the optimizer and returns a scheduler stepped after every epoch.
        momentum: SGD momentum.
        weight_decay: L2 weight decay of the built-in optimizers.
        callbacks: extra :class:`~lenetish.Callback` objects; a :class:`~lenetish.History`
            is always added (pass your own to keep a reference).
        device: ``"auto"`` picks CUDA, then MPS, then the CPU.
        precision: ``"32"`` (the seed's), ``"bf16-mixed"``, ``"16-mixed"`` (CUDA, with a
            gradient scaler), or ``"auto"``: ``"bf16-mixed"`` where the device computes
            bfloat16 natively, else ``"32"`` (the resolved value is ``trainer.precision``,
            the setting ``trainer.precision_spec``). Under ``"auto"`` a network that does
            not declare ``lenetish_fast_path`` gets bfloat16 only if its first batch's
            outputs are unchanged by it (the rule is on the speed page); otherwise the fit
            runs in float32 (``trainer.precision`` says ``"32"``), with one log line.
        channels_last: run the fit channels-last (NHWC, fastest for convolutions).
            ``"auto"``: for networks declaring ``lenetish_fast_path`` (lenetish's) and any
            model whose outputs a first-batch check finds unchanged (else one log line says
            why not); ``True`` insists, ``False`` never. The model's layout is restored.
        cuda_graphs: experimental: on CUDA, capture the whole training step as a CUDA graph
            when that is safe (:func:`lenetish.training.cuda_graph.capture_blockers`).
        compile: compile the forward pass with :func:`torch.compile` for each fit (the
            model is left uncompiled afterwards, as it came).
        grad_clip_norm: clip the global gradient norm to this value before each step.
        augment: applied to every training batch on the device before the forward pass,
            e.g. :class:`~lenetish.RandomAffine` (validation batches are left alone).
        label_smoothing: mix this much of a uniform target into the training loss.
        loss: ``"auto"``, ``"nll"``, ``"cross_entropy"``, or a callable ``(outputs,
            targets) -> scalar`` (see :class:`lenetish.losses.Criterion`).
        metrics: ``{name: function (outputs, targets) -> value, or an object with
            update/compute/reset}``; History gets ``name`` (and ``val_name``).
        seed: seed Python, NumPy and torch when :meth:`fit` starts (not the model's initial
            weights: call :func:`~lenetish.seed_everything` before building it for that).
        deterministic: use PyTorch's deterministic algorithms during :meth:`fit`: ``True``
            raises where an operation has none, ``"warn"`` (Lightning's) warns there and goes
            on (``torch.use_deterministic_algorithms(True, warn_only=True)``).
        progress: show a progress bar (``None``: in a terminal or a Jupyter notebook, not
            under ``CI=true``; elsewhere a plain line now and then).
        accumulate_grad_batches: micro-batches whose gradients make one optimizer step
            (Lightning's; fastai's ``GradientAccumulation``); see
            :mod:`lenetish.training.limits`.
        max_steps: stop after this many optimizer steps (with ``epochs=None``, epochs open).
        limit_train_batches: training batches per epoch: an int, or a fraction of ``len``.
        limit_val_batches: validation batches per validation: an int, or a fraction.
        fast_dev_run: ``True`` or N: one epoch of N training and validation batches that
            writes no files (no checkpoint, CSV or TensorBoard callback runs).
        num_sanity_val_steps: validation batches run before the first epoch (2), so a
            broken ``validation_step`` fails at once; 0 turns it off.
        class_weight: one weight per class for the training loss (Keras'): each sample's
            loss is multiplied by its class's weight, the mean taken over the batch.
            Batches may also be ``(images, labels, weights)`` (per-sample weights, Keras'
            ``sample_weight``); validation losses are never weighted.
        val_check_interval: also validate inside each epoch, every N training batches (an
            int) or every fraction of it (a float), as Lightning does; each validation
            reaches ``on_validation_end``, :attr:`History.validations
            <lenetish.History.validations>` and the ``val_*`` monitors.
        overfit_batches: train on the loader's first N batches (or fraction), the same ones
            every epoch, and validate on N batches (Lightning's): a quick check that the
            network can learn at all.
        steps_per_epoch: train this many batches per epoch, the loader's iterator going on
            across epochs (Keras'); a new pass of the loader begins where one ends.

    Attributes:
        history: the :class:`~lenetish.History` of the latest fit.
        state: where the current (or last) fit stands (:class:`~lenetish.TrainState`).
        should_stop: set it (or raise ``StopTraining``) from a hook to end the fit.
        data_info: the training data's dataset (e.g. ``loaders.info``, or a lenetish
            loader's); the fit attaches it to the model and checkpoints record it.

    Under ``torchrun`` a fit is data-parallel (:doc:`/distributed`): ``self.model`` is
    the ``DistributedDataParallel`` wrapper then, :attr:`module` always the network.

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
        epochs: int | None = 5,
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
        deterministic: Deterministic = False,
        progress: bool | None = None,
        accumulate_grad_batches: int = 1,
        max_steps: int | None = None,
        limit_train_batches: BatchLimit = None,
        limit_val_batches: BatchLimit = None,
        fast_dev_run: bool | int = False,
        num_sanity_val_steps: int = 2,
        class_weight: Sequence[float] | Tensor | None = None,
        val_check_interval: BatchLimit = None,
        overfit_batches: BatchLimit = None,
        steps_per_epoch: int | None = None,
    ) -> None:
        check_trainer_settings(
            optimizer, lr, epochs, scheduler, momentum, weight_decay, grad_clip_norm,
            label_smoothing, augment, channels_last, min_epochs, validation_freq,
        )  # fmt: skip
        check_callbacks(callbacks)
        check_deterministic(deterministic)
        self.limits = LoopLimits(
            accumulate_grad_batches, max_steps, limit_train_batches, limit_val_batches,
            fast_dev_run, num_sanity_val_steps, val_check_interval, overfit_batches,
            steps_per_epoch,
        )  # fmt: skip
        if epochs is None and max_steps is None:
            raise InvalidArgumentError(
                "epochs=None leaves the fit open, so it needs max_steps to end; give "
                "epochs or max_steps"
            )
        self.class_weight = check_class_weight(class_weight, loss)
        Criterion(loss, label_smoothing)  # refuses an unknown loss now, not at fit()
        self.device = resolve_device(device)
        self.precision_spec: Precision = precision
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
        self.callbacks, self.history, self._history_given = with_defaults(callbacks, progress)
        self.should_stop = False
        self.state = TrainState(epochs=epochs or 0)
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
        """The optimizer of the current (or last) fit (every hook can read it).

        Raises:
            NotFittedError: no fit has started yet.
        """
        if self._plan is None:
            raise NotFittedError(
                "trainer.optimizer exists once fit() has started; read it in a hook or after fit()"
            )
        return self._plan.optimizer

    @property
    def criterion(self) -> Criterion:
        """The loss of the current (or last) fit; deprecated, and removed in lenetish 0.3.

        Reading it warns (``FutureWarning``). Call :meth:`compute_loss` for a batch's loss as
        the fit computes it, or read ``trainer.loss`` for the setting.

        Raises:
            NotFittedError: no fit has started yet (each fit builds its own loss).
        """
        return deprecated_criterion(self._plan)

    @property
    def fit_callbacks(self) -> tuple[Callback, ...]:
        """The current (or last) fit's callbacks, schedules included, in their hooks' order."""
        return () if self._plan is None else tuple(self._plan.callbacks)

    @property
    def world_size(self) -> int:
        """The number of processes of the current (or last) fit (1 unless distributed)."""
        return self._parallel.world_size

    @property
    def is_main_process(self) -> bool:
        """Whether this process writes checkpoints and logs (rank 0, or the only one)."""
        return self._parallel.is_main

    def configure_optimizers(self) -> OptimizerConfig:
        """Build the optimizer from the constructor's settings (override to customise).

        An override may return an optimizer, ``(optimizer, scheduler)`` or Lightning's dict
        (see :mod:`lenetish.training.optimizer_config`); a returned scheduler is stepped
        every epoch (or step) and resumes like ``scheduler=``.

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
        return build_optimizer(
            self.optimizer_spec, self.model.parameters(), lr=self.lr, momentum=self.momentum,
            weight_decay=self.weight_decay, device=self.device,
        )  # fmt: skip

    def training_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
        """Forward one training batch and return its loss (still attached) and outputs.

        The Trainer runs it under the fit's autocast, after ``augment``, and does the
        backward pass and the optimizer step itself. Call :meth:`compute_loss` to keep the
        ``loss`` and ``label_smoothing`` settings.

        Args:
            images: the batch on the training device, ``(B, 1, 28, 28)`` for lenetish's
                loaders (channels-last when the fit runs channels-last).
            labels: the batch's class indices on the training device, ``(B,)``.

        Returns:
            The loss to minimise (attached to the graph), the outputs and the labels.
        """
        outputs = self.model(images)
        return BatchOutput(self.compute_loss(outputs, labels), outputs, labels)

    def validation_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
        """Forward one validation batch (under inference mode, model in eval mode).

        Override it with :meth:`training_step` when a validation batch needs the same
        treatment; its loss has no label smoothing. The batches' losses and accuracies
        become ``val_loss`` and ``val_accuracy``.

        Args:
            images: the validation batch's images on the training device.
            labels: the validation batch's class indices on the training device.
        """
        outputs = self.model(images)
        return BatchOutput(self.compute_loss(outputs, labels, smoothing=False), outputs, labels)

    def predict_step(self, images: Tensor) -> Tensor:
        """The outputs of one batch for :meth:`predict` (override to return something else)."""
        return self.model(images)  # type: ignore[no-any-return]

    def validate(self, val: Iterable[Batch]) -> dict[str, float]:
        """Score ``val`` as the last fit's validation did (Lightning's ``trainer.validate``).

        Runs :meth:`validation_step` in eval and inference mode with the fit's loss and
        metrics, in the model's own layout; no hook runs, and what ``validation_step`` logs
        with :meth:`log` is returned with the metrics (as Lightning's does).

        Returns:
            ``val_loss``, ``val_accuracy``, ``val_<name>`` of each of the trainer's metrics,
            and the values ``validation_step`` logged (means over the batches by default).

        Raises:
            NotFittedError: no fit has run (its loss decides what the outputs are).
            InvalidArgumentError: ``val`` yields no samples or batches of another form.

        Example:
            >>> from lenetish import MNISTConvNet
            >>> batches = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))]
            >>> trainer = Trainer(MNISTConvNet(), epochs=1, device="cpu", progress=False)
            >>> _ = trainer.fit(batches)
            >>> sorted(trainer.validate(batches))
            ['val_accuracy', 'val_loss']
        """
        if self._plan is None:
            raise NotFittedError(
                "trainer.validate() scores with a fit's loss and metrics; call fit() first, or "
                "use lenetish.evaluate(model, loader)"
            )
        return validate_alone(self, self._plan, val)

    def predict(self, batches: Iterable[Any]) -> Tensor:
        """:meth:`predict_step` of every batch, concatenated (Lightning's ``trainer.predict``).

        A batch is the images, or a tuple whose first item they are (labels are ignored).
        Runs in eval and inference mode under the trainer's precision, on its device.

        Example:
            >>> from lenetish import MNISTConvNet
            >>> trainer = Trainer(MNISTConvNet(), device="cpu")
            >>> trainer.predict([torch.randn(4, 1, 28, 28), torch.randn(2, 1, 28, 28)]).shape
            torch.Size([6, 10])
        """
        return predict_batches(self, batches)

    def compute_loss(self, outputs: Tensor, targets: Tensor, *, smoothing: bool = True) -> Tensor:
        """The trainer's ``loss`` of a batch (with ``label_smoothing`` unless told not to).

        Call it from your own :meth:`training_step` to keep both settings (a step that
        does not is warned about once per fit).
        """
        if self._plan is None:  # outside a fit: the configured loss, detecting afresh
            return Criterion(self.loss, self.label_smoothing)(outputs, targets, smoothing=smoothing)
        return self._plan.criterion(outputs, targets, smoothing=smoothing)

    def log(self, name: str, value: LoggedValue, *, reduce: Reduce | None = None) -> None:
        """Record ``value`` as this epoch's ``name`` metric.

        Call it from ``training_step``, ``validation_step`` or a hook during an epoch: the
        value lands in the epoch's History row, the loggers and the monitors. It is one real
        number: a Python or NumPy number (``np.float32``...), or a one-element tensor or array
        (a tensor is read at the epoch end); NaN is kept. ``reduce="mean"`` keeps the mean of
        the epoch's values weighted by their batches' sizes, ``"last"`` the last value; the
        default is ``"mean"`` during validation (Lightning's) and ``"last"`` elsewhere.

        Raises:
            InvalidArgumentError: ``name`` is a built-in metric, ``value`` is not one number
                (a string, a bool, a tensor of several elements: log ``value.mean()``), or
                ``reduce`` is unknown.
        """
        checked = check_logged(name, value, computed=self.metrics)
        record_logged(self._plan, name, checked, reduce)

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything needed to resume this fit exactly, as plain containers and tensors.

        Raises:
            CheckpointError: a callback's state holds an object ``torch.load(weights_only=
                True)`` refuses (named, with the callback); NumPy values are converted.
        """
        return checkpoint_state(self, self._plan)

    def save_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`checkpoint_state` atomically to ``path`` (a temporary file, renamed).

        Between epochs it holds the finished epochs; while an epoch's batches run (e.g.
        every N steps from ``on_batch_end``) it holds that epoch as unfinished, and a fit
        resumed from it goes on bit-identically (:mod:`lenetish.training.resume` says when).
        Only rank 0 of a distributed fit writes.

        Raises:
            CheckpointError: a callback's state would not load back, or the file could not
                be written (nothing is written then).
        """
        if self.is_main_process:
            save_checkpoint(path, self.checkpoint_state())

    def fit(
        self,
        train: Iterable[Batch],
        val: Iterable[Batch] | None = None,
        *,
        resume: str | os.PathLike[str] | None = None,
    ) -> History:
        """Train for ``epochs`` epochs over ``train``, validating on ``val`` after each one.

        Each call builds a fresh optimizer (and schedule): a second ``fit`` continues from
        the model's weights, not from the optimizer's moments; to continue a fit exactly,
        pass a checkpoint of it as ``resume``.

        Args:
            train: a re-iterable of ``(images, labels)`` batches (a lenetish loader, a
                ``DataLoader``, a list); one with ``set_epoch`` is told each epoch's index.
            val: batches for validation, or ``None``.
            resume: a checkpoint written by this trainer's configuration (see
                :class:`~lenetish.ModelCheckpoint`); it goes on up to ``epochs`` in all.

        Returns:
            The :class:`~lenetish.History`, one row per epoch (resumed epochs included).

        Raises:
            CheckpointError: ``resume`` cannot be loaded or continued here (another number
                of processes, ``epochs`` already trained, an epoch this fit cannot continue).
            InvalidArgumentError: ``scheduler='onecycle'`` without ``len(train)``, two
                callbacks share a ``state_key``, batches that cannot be split (distributed).
            DistributedError: a distributed launch is incomplete or cannot connect.
            TrainerBusyError: this trainer is already fitting (another thread, or a hook).
        """
        if not self._fitting.acquire(blocking=False):
            raise TrainerBusyError(
                "this Trainer is already running a fit (in another thread, or fit() was called "
                "from one of its hooks); give each thread a Trainer and a model of its own"
            )
        try:
            if not self._history_given:  # each fit returns a History of its own
                self.callbacks, self.history = renew_history(self.callbacks, self.history)
            remember_loader(self, train)  # its generators, for exact checkpoints
            return fit_once(self, train, val, resume, adopt=self._adopt)
        finally:
            self._fitting.release()

    def _adopt(self, parallel: ParallelStrategy, plan: FitPlan | None) -> None:
        """Take the fit's parallel strategy, then its plan, as the fit builds them."""
        self._parallel, self._plan = parallel, plan
