"""Fitting a :class:`~lenetish.ModelStack` with the Trainer: refusals and per-member scores.

The Trainer calls :func:`prepare_stack_fit` once per fit and the epoch loop asks
:func:`fit_score` for its running scores; for a plain network both change nothing. For a
stack, the loss is the sum of the members' losses (:class:`~lenetish.losses.Criterion` with
``members`` set), History gets the members' mean (``loss``, ``accuracy``, each metric) and
each member's value (``loss/0``, ``accuracy/0``...), and settings that would couple the
members are refused.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.func import functional_call
from torch.optim.lr_scheduler import ReduceLROnPlateau

from lenetish._checks import is_overridden
from lenetish.callbacks.base import Callback
from lenetish.callbacks.schedules import LRSchedule
from lenetish.data.loaders import TensorLoader
from lenetish.errors import InvalidArgumentError
from lenetish.losses import Criterion, class_scores
from lenetish.metrics import MetricLike, MetricSet, RunningScore
from lenetish.stack.model import ModelStack
from lenetish.training._plan import FitKind, StepChoice, register_fit_kind
from lenetish.training.state import BatchOutput, TrainState
from lenetish.training.step import EagerStep, TrainingStep

if TYPE_CHECKING:
    from lenetish.training.trainer import Trainer

__all__ = [
    "MemberByMemberStep",
    "StackFit",
    "StackLoader",
    "StackMetricSet",
    "StackScore",
]


class StackFit(FitKind):
    """How the Trainer fits a :class:`~lenetish.ModelStack` (registered for it on import).

    The loss is the sum of the members' losses, scores and metrics are kept per member,
    settings that would couple the members are refused, and on the CPU the members train
    one after another inside a step (:class:`MemberByMemberStep`) when nothing needs the
    whole loss first.

    Args:
        model: the stack being fitted.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        assert isinstance(model, ModelStack)
        self.stack = model
        self.members = model.k

    def check(self, trainer: Trainer) -> None:
        """Refuse ``grad_clip_norm`` (one global norm would couple the members).

        Raises:
            InvalidArgumentError: ``grad_clip_norm`` is set.
        """
        if trainer.grad_clip_norm is not None:
            raise InvalidArgumentError(
                "grad_clip_norm clips the global gradient norm, which would couple the members "
                "of a ModelStack; leave grad_clip_norm=None to train a stack"
            )

    def metric_set(self, metrics: Mapping[str, MetricLike], device: torch.device) -> MetricSet:
        """The user's metrics for each member (reported as their mean and per member)."""
        return StackMetricSet(metrics, device, self.stack.k)

    def running_score(
        self, device: torch.device, criterion: Criterion, *, smoothing: bool
    ) -> RunningScore:
        """Each member's loss and accuracy, and their mean."""
        return StackScore(device, self.stack.k, criterion, smoothing=smoothing)

    def callbacks(self) -> list[Callback]:
        """A guard that refuses a plateau schedule (it would set every member's lr)."""
        return [_PlateauGuard()]

    def step(self, chosen: TrainingStep, eager: EagerStep, plan: StepChoice) -> TrainingStep | None:
        """:class:`MemberByMemberStep` where it gives the same updates, else ``None``."""
        stack, trainer = self.stack, plan.trainer
        usable = (
            chosen is eager
            and not stack.vectorised
            and eager.scaler is None
            and not is_overridden(trainer, "training_step")
            and not trainer.compile
            and not any(is_overridden(c, "on_before_backward") for c in plan.callbacks)
        )
        return MemberByMemberStep(eager, stack, plan.criterion) if usable else None


class _PlateauGuard(Callback):
    """Refuses a plateau schedule (built in LRSchedule.on_fit_start, order -50) for a stack."""

    order = -49

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        """Raise if a ReduceLROnPlateau would set every member's lr from one metric."""
        for callback in trainer.fit_callbacks:
            if isinstance(callback, LRSchedule) and isinstance(
                callback.scheduler, ReduceLROnPlateau
            ):
                raise InvalidArgumentError(
                    "ReduceLROnPlateau reads one metric and sets the lr of every member of a "
                    "ModelStack from it, coupling them; use a schedule that reads no metric "
                    "(scheduler='step', 'onecycle', or an LRSchedule without monitor)"
                )


class StackScore(RunningScore):
    """Each member's loss and correct predictions, kept on the device: one sync when read.

    Args:
        device: where the sums live.
        members: the number of members.
        criterion: the trainer's loss, which gives each member's loss.
        smoothing: whether the losses include label smoothing (training, not validation).

    Example:
        >>> from lenetish.losses import Criterion
        >>> from lenetish.stack.fitting import StackScore
        >>> score = StackScore(torch.device("cpu"), 2, Criterion("nll"), smoothing=False)
        >>> outputs = torch.tensor([[[0.0, -9.0]], [[-9.0, 0.0]]])  # member 0 right, 1 wrong
        >>> score.add(torch.tensor(9.0), outputs, torch.tensor([0]))
        >>> metrics = score.metrics()
        >>> metrics["accuracy"], metrics["accuracy/0"], metrics["loss/1"]
        (0.5, 1.0, 9.0)
    """

    def __init__(
        self, device: torch.device, members: int, criterion: Criterion, *, smoothing: bool
    ) -> None:
        super().__init__(device)
        self.criterion, self.smoothing = criterion, smoothing
        self._loss_sums = torch.zeros(members, dtype=torch.float64, device=device)
        self._correct = torch.zeros(members, dtype=torch.int64, device=device)
        self._seen = 0

    @property
    def correct(self) -> int:
        """The members' total of correct predictions so far (waits for the device)."""
        return int(self._correct.sum())

    def add(self, summed_loss: Tensor, outputs: Tensor, targets: Tensor) -> None:
        """Count one batch: outputs ``(members, B, C)``, labels ``(B,)`` or ``(members, B)``."""
        del summed_loss  # the sum over members; each member's loss is computed again here
        count = int(targets.shape[-1])
        with torch.no_grad():
            losses = self.criterion.member_losses(outputs, targets, smoothing=self.smoothing)
            self._loss_sums += losses.double() * count
            self._correct += (outputs.argmax(dim=-1) == targets).sum(dim=-1)
        self._seen += count

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """The members' mean ``{prefix}loss``/``accuracy``, then ``{prefix}loss/0``..."""
        if not self._seen:
            return {}
        losses = (self._loss_sums / self._seen).tolist()
        accuracies = (self._correct.double() / self._seen).tolist()
        return {
            f"{prefix}loss": sum(losses) / len(losses),
            f"{prefix}accuracy": sum(accuracies) / len(accuracies),
            **{f"{prefix}loss/{i}": value for i, value in enumerate(losses)},
            **{f"{prefix}accuracy/{i}": value for i, value in enumerate(accuracies)},
        }

    def all_reduce(self) -> None:
        """Sum every process's counts (a collective: call it on every rank)."""
        seen = torch.tensor([float(self._seen)], dtype=torch.float64, device=self._loss_sums.device)
        totals = torch.cat([self._loss_sums, self._correct.double(), seen])
        dist.all_reduce(totals)
        members = self._loss_sums.shape[0]
        self._loss_sums = totals[:members]
        self._correct = totals[members : 2 * members].round().long()
        self._seen = int(totals[-1].item())


class StackMetricSet(MetricSet):
    """The user's metrics for each member of a stack, reported as their mean and per member.

    Args:
        metrics: ``{name: function or object}``, as for :class:`~lenetish.metrics.MetricSet`.
        device: where the running sums live.
        members: the number of members (each gets its own copy of every metric object).
    """

    def __init__(
        self, metrics: Mapping[str, MetricLike], device: torch.device, members: int
    ) -> None:
        self.sets = [MetricSet(metrics, device) for _ in range(members)]
        super().__init__({}, device)

    def reset(self) -> None:
        """Start a new epoch."""
        for metric_set in self.sets:
            metric_set.reset()

    def update(self, outputs: Tensor, targets: Tensor) -> None:
        """Add one batch of stacked outputs ``(members, B, C)``."""
        per_member = targets.expand(outputs.shape[0], -1) if targets.dim() == 1 else targets
        for metric_set, member_outputs, member_targets in zip(
            self.sets, outputs, per_member, strict=True
        ):
            metric_set.update(member_outputs, member_targets)

    def compute(self, prefix: str = "") -> dict[str, float]:
        """``{prefix + name: mean over members}`` and ``{prefix + name/i: member i's}``."""
        values = [metric_set.compute(prefix) for metric_set in self.sets]
        result = {name: math.fsum(v[name] for v in values) / len(values) for name in values[0]}
        for index, member_values in enumerate(values):
            result.update({f"{name}/{index}": value for name, value in member_values.items()})
        return result

    def all_reduce(self) -> None:
        """Sum the functions' totals over every process."""
        for metric_set in self.sets:
            metric_set.all_reduce()

    def state_dict(self) -> dict[str, Any]:
        """Each member's running sums, for a checkpoint written mid-epoch."""
        return {"sets": [metric_set.state_dict() for metric_set in self.sets]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict` (as many members, the same metrics).

        Raises:
            KeyError: a field is missing.
            ValueError: another number of members, or a member's state does not fit.
        """
        saved = state["sets"]
        if not isinstance(saved, list) or len(saved) != len(self.sets):
            raise ValueError(f"sets must be a list of {len(self.sets)} member states")
        for metric_set, member_state in zip(self.sets, saved, strict=True):
            metric_set.load_state_dict(member_state)


class StackLoader:
    """Training batches giving each member of a stack its own seeded order (one gather a step).

    Member ``i`` visits the samples of ``loader`` in the order a copy of ``loader`` with
    ``seed=seeds[i]`` would, so it sees the batches of its own sequential fit. Each batch is
    one gather of the members' parts, in member order: images ``(k * n, ...)`` and labels
    ``(k, n)``. Train a ``ModelStack(..., inputs="split")`` on it; validate on ordinary
    loaders (every member scores the whole batch).

    Args:
        loader: a shuffling :class:`~lenetish.TensorLoader` (e.g. ``loaders.train``).
        seeds: one data-order seed per member, e.g. ``stack.seeds``.

    Raises:
        InvalidArgumentError: ``loader`` is not a shuffling single-process TensorLoader, or
            ``seeds`` is empty.

    Example:
        >>> from lenetish import TensorLoader
        >>> plain = TensorLoader(torch.zeros(6, 1, 28, 28), torch.arange(6), batch_size=3,
        ...                      shuffle=True)
        >>> images, labels = next(iter(StackLoader(plain, [0, 1])))
        >>> images.shape, labels.shape
        (torch.Size([6, 1, 28, 28]), torch.Size([2, 3]))
    """

    def __init__(self, loader: TensorLoader, seeds: Sequence[int]) -> None:
        if not isinstance(loader, TensorLoader) or not loader.shuffle or loader.world_size > 1:
            raise InvalidArgumentError(
                "StackLoader needs a shuffling single-process TensorLoader (such as "
                f"make_loaders(...).train), got {loader!r}"
            )
        if not seeds:
            raise InvalidArgumentError("seeds is empty: give one data-order seed per member")
        self.loader, self.seeds = loader, tuple(seeds)
        self.members = [
            TensorLoader(
                loader.images,
                loader.labels,
                batch_size=loader.batch_size,
                shuffle=True,
                seed=seed,
                drop_last=loader.drop_last,
            )
            for seed in self.seeds
        ]
        self.info = loader.info
        self._epoch = loader.epoch

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration yield epoch ``epoch`` (for resuming a run exactly)."""
        self._epoch = epoch

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch, self._epoch = self._epoch, self._epoch + 1
        device = self.loader.device
        orders = torch.stack([member.order(epoch) for member in self.members]).to(device)
        size, total = self.loader.batch_size, self.loader.num_samples
        for batch in range(len(self)):
            start = batch * size
            end = total if batch == len(self) - 1 and not self.loader.drop_last else start + size
            index = orders[:, start:end]  # (k, n)
            yield self.loader.images[index.flatten()], self.loader.labels[index]


class MemberByMemberStep:
    """A stack's training step that runs each member's forward and backward in turn.

    Same gradients and updates as the all-members step (each member's gradient is its own
    either way), but a member's activations are used while they are still in the CPU's
    caches. Used on the CPU for the Trainer's own ``training_step`` when no callback
    overrides ``on_before_backward`` (which must see the whole loss before any backward).

    Args:
        eager: the fit's eager step (its optimizer, settings and hooks are used).
        stack: the stack being trained.
        criterion: the trainer's loss.

    Example:
        One SGD step of a stack of two networks, outside a Trainer:

        >>> from lenetish import BatchOutput, MNISTConvNet, ModelStack
        >>> from lenetish.losses import Criterion
        >>> from lenetish.stack.fitting import MemberByMemberStep
        >>> from lenetish.training.step import EagerStep, StepSettings
        >>> stack = ModelStack(MNISTConvNet, 2)
        >>> criterion = Criterion("nll")
        >>> criterion.members = 2  # the loss of a batch is the sum of the members' losses
        >>> def forward(images, labels):
        ...     outputs = stack(images)
        ...     return BatchOutput(criterion(outputs, labels), outputs, labels)
        >>> optimizer = torch.optim.SGD(stack.parameters(), lr=0.1)
        >>> settings = StepSettings(torch.device("cpu"), "32")
        >>> eager = EagerStep(stack, optimizer, forward, settings, lambda hook, *args: None)
        >>> step = MemberByMemberStep(eager, stack, criterion)
        >>> output = step(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))
        >>> output.logits.shape  # (members, batch, classes)
        torch.Size([2, 8, 10])
    """

    def __init__(self, eager: EagerStep, stack: ModelStack, criterion: Criterion) -> None:
        self.eager, self.stack, self.criterion = eager, stack, criterion
        self.scaler = eager.scaler

    def __call__(
        self, images: Tensor, labels: Tensor, *, scale: float = 1.0, update: bool = True
    ) -> BatchOutput:
        """Run one optimizer step of every member on ``(images, labels)``.

        Gradient accumulation is refused for a stack fit, so ``scale`` and ``update`` are
        always the defaults here.
        """
        eager, stack = self.eager, self.stack
        if eager.settings.augment is not None:
            images = eager.settings.augment(images)
        inputs = stack.member_inputs(images)
        targets = labels if labels.dim() == 2 else labels.expand(stack.k, -1)
        eager.optimizer.zero_grad(set_to_none=False)
        parameters = dict(stack.stacked.named_parameters())
        for parameter in parameters.values():
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
        buffers = dict(stack.stacked.named_buffers())
        losses, outputs = [], []
        for index in range(stack.k):
            member: dict[str, Tensor] = {name: b[index] for name, b in buffers.items()}
            for name, parameter in parameters.items():
                leaf = parameter.detach()[index].requires_grad_(parameter.requires_grad)
                leaf.grad = parameter.grad[index] if parameter.grad is not None else None
                member[name] = leaf  # its gradient accumulates into the stacked .grad
            with eager.settings.autocast(cache_enabled=False):
                output = class_scores(
                    functional_call(stack.stacked, member, (inputs[index],)),
                    who=type(stack.stacked).__name__,
                )
                loss = self.criterion.member_losses(output[None], targets[index][None])[0]
            torch.autograd.backward(loss)
            losses.append(loss.detach())
            outputs.append(output.detach())
        self.criterion.smoothing_used = True  # member_losses applied label_smoothing
        total = torch.stack(losses).sum()
        eager.call_hook("on_before_optimizer_step", eager.optimizer)
        eager.optimizer.step()
        return BatchOutput(total, torch.stack(outputs), labels)


register_fit_kind(ModelStack, StackFit)
