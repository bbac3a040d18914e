"""What a model's outputs are (log-probabilities, probabilities or logits) and the loss on them.

The seed network ends in ``log_softmax``; most PyTorch networks return raw logits. Treating
logits as log-probabilities trains on a loss that goes negative and reports "probabilities"
that do not sum to 1, so lenetish never assumes: :func:`output_kind` looks at a batch of
outputs once, and :func:`log_probabilities` turns any kind into log-probabilities.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lenetish.errors import InvalidArgumentError, UnsupportedModelError

__all__ = [
    "LOSSES",
    "OUTPUT_KINDS",
    "OUTPUT_KIND_ATTRIBUTE",
    "Criterion",
    "LossFunction",
    "LossName",
    "OutputKind",
    "check_outputs_setting",
    "check_targets",
    "class_scores",
    "log_probabilities",
    "output_kind",
    "recorded_output_kind",
    "remember_output_kind",
    "resolve_output_kind",
    "smoothed_nll",
]

logger = logging.getLogger("lenetish")

OutputKind = Literal["log_probabilities", "probabilities", "logits"]
OUTPUT_KINDS: tuple[OutputKind, ...] = get_args(OutputKind)
LossName = Literal["auto", "nll", "cross_entropy"]
LOSSES: tuple[LossName, ...] = get_args(LossName)
LossFunction = Callable[[Tensor, Tensor], Tensor]

_TOLERANCE = 1e-3  # bf16 log_softmax rows sum to 1 within a few 1e-3


def class_scores(output: object, *, who: str) -> Tensor:
    """``output`` itself when it is one tensor of class scores, as lenetish needs.

    Args:
        output: what a model's forward pass returned.
        who: the model's name, for the message.

    Raises:
        UnsupportedModelError: a tuple, a dict or anything but a tensor; the message says
            what to return instead.

    Example:
        >>> class_scores(torch.zeros(2, 10), who="Net").shape
        torch.Size([2, 10])
        >>> class_scores({"logits": torch.zeros(2, 10)}, who="Net")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        lenetish.errors.UnsupportedModelError: Net returned a dict (keys 'logits'); ...
    """
    if isinstance(output, Tensor):
        return output
    what = type(output).__name__
    if isinstance(output, dict):
        what += " (keys " + ", ".join(repr(key) for key in list(output)[:5]) + ")"
    raise UnsupportedModelError(
        f"{who} returned a {what}; lenetish needs one tensor of class scores (batch, "
        "classes): return only that from forward, wrap the model in a Module whose forward "
        "picks it (e.g. return self.net(x)['logits']), or, for training, override "
        "Trainer.training_step and validation_step to pick it"
    )


#: The attribute a fit sets on the model it trained: the output kind its loss detected.
OUTPUT_KIND_ATTRIBUTE = "lenetish_outputs"


def remember_output_kind(model: nn.Module, kind: OutputKind | None) -> None:
    """Make ``model`` carry what its outputs are (read back by :func:`recorded_output_kind`)."""
    if kind is not None:
        setattr(model, OUTPUT_KIND_ATTRIBUTE, kind)


def recorded_output_kind(model: nn.Module) -> OutputKind | None:
    """The output kind a fit recorded on ``model`` (``None`` when it was not trained here).

    Example:
        >>> from lenetish import MNISTConvNet, Trainer
        >>> model = MNISTConvNet()
        >>> batches = [(torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,)))]
        >>> _ = Trainer(model, epochs=1, device="cpu").fit(batches)
        >>> recorded_output_kind(model)
        'log_probabilities'
    """
    kind = getattr(model, OUTPUT_KIND_ATTRIBUTE, None)
    return kind if kind in OUTPUT_KINDS else None


def check_targets(outputs: Tensor, targets: Tensor) -> None:
    """Refuse labels that do not fit a batch of class scores ``(B, classes)``.

    The shape is always checked; the values (each a class index in ``0..classes-1``) when
    the labels are on the CPU, where reading them costs no device synchronisation. Without
    the check, an out-of-range label raises a bare ``IndexError`` mid-epoch, and ``-100``
    (the losses' ignore index) is silently skipped.

    Raises:
        InvalidArgumentError: the labels' shape or values do not fit ``outputs``.

    Example:
        >>> check_targets(torch.zeros(2, 10), torch.tensor([3, 10]))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        lenetish.errors.InvalidArgumentError: labels must be class indices 0..9 ...
    """
    if outputs.dim() != 2:
        return  # not a classifier's (B, classes): the loss says what it needs
    if tuple(targets.shape) != (outputs.shape[0],):
        raise InvalidArgumentError(
            f"labels of shape {tuple(targets.shape)} do not fit the model's outputs "
            f"{tuple(outputs.shape)}: a batch of B images needs B class indices, shape (B,) "
            "(one-hot or soft labels need a loss callable of your own)"
        )
    if targets.device.type == "cpu" and targets.numel():
        low, high = int(targets.min()), int(targets.max())
        classes = outputs.shape[1]
        if low < 0 or high >= classes:
            raise InvalidArgumentError(
                f"labels must be class indices 0..{classes - 1} for a model with {classes} "
                f"outputs, but this batch holds {low if low < 0 else high}; check the "
                "dataset's labels (or the model's num_classes)"
            )


def output_kind(outputs: Tensor) -> OutputKind:
    """Say what a batch of classifier outputs ``(B, classes)`` holds (one device sync).

    Rows whose ``logsumexp`` is 0 (all entries <= 0) are log-probabilities; rows of
    non-negative entries summing to 1 are probabilities; anything else is logits.

    Args:
        outputs: a batch of outputs, ``(B, classes)``.

    Returns:
        ``"log_probabilities"``, ``"probabilities"`` or ``"logits"``.

    Example:
        >>> from lenetish.losses import output_kind
        >>> logits = torch.tensor([[2.0, -1.0, 0.5]])
        >>> output_kind(logits), output_kind(logits.log_softmax(1)), output_kind(logits.softmax(1))
        ('logits', 'log_probabilities', 'probabilities')
    """
    rows = outputs.detach().float().reshape(outputs.shape[0], -1)
    # bf16/fp16 softmax rows sum to 1 only within their precision (a few 1e-3 in bf16).
    precision = 16 * torch.finfo(outputs.dtype).eps if outputs.is_floating_point() else 0.0
    tolerance = max(_TOLERANCE, precision) * max(1.0, rows.shape[1] / 10)
    if bool((rows <= tolerance).all() and (rows.logsumexp(dim=1).abs() < tolerance).all()):
        return "log_probabilities"
    if bool((rows >= 0).all() and ((rows.sum(dim=1) - 1).abs() < tolerance).all()):
        return "probabilities"
    return "logits"


def resolve_output_kind(outputs: OutputKind | str, batch: Tensor, *, who: str) -> OutputKind:
    """``outputs`` itself, or for ``"auto"`` what :func:`output_kind` finds in ``batch``.

    Raises:
        InvalidArgumentError: ``outputs`` is neither ``"auto"`` nor a kind.
    """
    check_outputs_setting(outputs)
    kind = output_kind(batch)
    if outputs == "auto":
        logger.info("lenetish: %s treats the model's outputs as %s", who, kind)
        return kind
    if kind != outputs:
        warnings.warn(
            f"{who}: the outputs were declared {outputs} but look like {kind}; the loss can go "
            "negative and probabilities need not sum to 1; declare what the model returns, "
            "or use 'auto'",
            UserWarning,
            stacklevel=3,
        )
    return outputs  # type: ignore[return-value]  # checked against OUTPUT_KINDS


def check_outputs_setting(outputs: object) -> None:
    """Refuse an ``outputs=`` setting that is neither ``"auto"`` nor an output kind.

    Raises:
        InvalidArgumentError: naming the accepted values.
    """
    if outputs != "auto" and outputs not in OUTPUT_KINDS:
        raise InvalidArgumentError(
            f"outputs={outputs!r} is not supported; use 'auto' or one of {', '.join(OUTPUT_KINDS)}"
        )


def log_probabilities(outputs: Tensor, kind: OutputKind) -> Tensor:
    """Log-probabilities ``(B, classes)`` (float32) from outputs of the given kind.

    Args:
        outputs: a model's outputs ``(B, classes)``.
        kind: what they are: ``"log_probabilities"``, ``"probabilities"`` or ``"logits"``
            (see :func:`output_kind`).

    Returns:
        ``log_softmax`` of logits, the logarithm of probabilities (clamped away from 0), or
        the log-probabilities themselves, as float32.

    Example:
        >>> from lenetish.losses import log_probabilities
        >>> logits = torch.tensor([[2.0, -1.0, 0.5]])
        >>> log_probabilities(logits, "logits").exp().sum().item()
        1.0
    """
    outputs = outputs.float()
    if kind == "logits":
        return outputs.log_softmax(dim=1)
    if kind == "probabilities":
        return outputs.clamp_min(torch.finfo(torch.float32).tiny).log()
    return outputs


def scored_log_probabilities(outputs: Tensor, kind: OutputKind) -> Tensor:
    """:func:`log_probabilities` whose exponentials sum to 1, whatever precision made them.

    A forward pass under bfloat16 autocast can return log-probabilities rounded to 8 bits of
    mantissa: taken as they are, a row's probabilities sum to anything in about 0.99-1.01 and
    confidences round to exactly 1.0. Outputs of less than float32 precision are therefore
    renormalised in float32 (``log_softmax``); float32 and float64 ones are used as they are,
    so ``precision="32"`` keeps the exact numbers of a plain loop.

    Example:
        >>> from lenetish.losses import scored_log_probabilities
        >>> rounded = torch.tensor([[0.0, -5.0, -9.0]]).bfloat16()  # sums to 1.0068 as exp
        >>> total = scored_log_probabilities(rounded, "log_probabilities").exp().sum().item()
        >>> abs(total - 1.0) < 1e-6
        True
    """
    scores = log_probabilities(outputs, kind)
    rounded = outputs.dtype not in (torch.float32, torch.float64)
    return scores.log_softmax(dim=1) if rounded and kind != "logits" else scores


def check_class_weight(
    class_weight: Sequence[float] | Tensor | None, loss: object
) -> Tensor | None:
    """``class_weight`` as a float32 tensor ``(classes,)``, checked; ``None`` stays ``None``.

    Raises:
        InvalidArgumentError: weights that are not finite non-negative numbers, fewer than
            two, all zero, or given with a loss callable (which cannot take them).

    Example:
        >>> check_class_weight([1, 2.5], "auto")
        tensor([1.0000, 2.5000])
    """
    if class_weight is None:
        return None
    if callable(loss):
        raise InvalidArgumentError(
            "class_weight applies to the built-in losses only; with your own loss callable, "
            "weight the classes inside it"
        )
    try:
        weights = torch.as_tensor(class_weight, dtype=torch.float32).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InvalidArgumentError(
            f"class_weight must be a sequence of numbers, one per class, got {class_weight!r}"
        ) from exc
    if (
        weights.dim() != 1
        or len(weights) < 2
        or not bool(torch.isfinite(weights).all())
        or bool((weights < 0).any())
        or not bool((weights > 0).any())
    ):
        raise InvalidArgumentError(
            f"class_weight must hold one finite weight >= 0 per class (at least two, not all "
            f"zero), got {class_weight!r}"
        )
    return weights


def smoothed_nll(
    log_probs: Tensor, targets: Tensor, smoothing: float = 0.0, weights: Tensor | None = None
) -> Tensor:
    """Mean negative log-likelihood, mixed with ``smoothing`` of a uniform target.

    ``(1 - s) * NLL + s * mean(-log p)``, which is ``F.cross_entropy(logits,
    label_smoothing=s)`` when ``log_probs = log_softmax(logits)``.

    Args:
        log_probs: log-probabilities ``(B, classes)``.
        targets: the class indices ``(B,)``.
        smoothing: the share ``s`` of the uniform target (0: the plain NLL).
        weights: each sample's weight ``(B,)``: the mean of weight times loss is returned
            (Keras' ``sample_weight``, not ``nll_loss``'s division by the weights' sum).

    Returns:
        The mean loss over the batch, a scalar.

    Example:
        >>> import torch.nn.functional as F
        >>> from lenetish.losses import smoothed_nll
        >>> logits = torch.tensor([[2.0, -1.0, 0.5]])
        >>> target = torch.tensor([0])
        >>> a = smoothed_nll(logits.log_softmax(1), target, 0.1)
        >>> b = F.cross_entropy(logits, target, label_smoothing=0.1)
        >>> bool(torch.isclose(a, b))
        True
    """
    if weights is not None:
        per_sample = F.nll_loss(log_probs, targets, reduction="none")
        if smoothing:
            per_sample = (1 - smoothing) * per_sample - smoothing * log_probs.mean(dim=1)
        return (per_sample * weights.to(per_sample.dtype)).mean()
    loss = F.nll_loss(log_probs, targets)
    if smoothing:
        uniform = -log_probs.float().mean(dim=1).mean()
        loss = (1 - smoothing) * loss + smoothing * uniform
    return loss


class Criterion:
    """The Trainer's loss: a built-in one on detected outputs, or the user's callable.

    Args:
        loss: ``"auto"`` (decide from the first training batch: log-probabilities get the
            negative log-likelihood, probabilities and logits are turned into
            log-probabilities first, which makes it the cross-entropy), ``"nll"`` (outputs are
            log-probabilities, the seed's), ``"cross_entropy"`` (outputs are logits), or a
            callable ``(outputs, targets) -> scalar``.
        label_smoothing: mix this much of a uniform target into the built-in losses.

    Raises:
        InvalidArgumentError: ``loss`` is unknown, or label smoothing is asked of a callable.

    Attributes:
        kind: what the model's outputs are, once known (``None`` before the first batch of a
            fit with ``loss="auto"``, and for a callable loss).
        members: ``None``, or for a :class:`~lenetish.ModelStack`'s fit its number of
            members: outputs are then ``(members, B, classes)`` and the loss is the sum of the
            members' losses (see :meth:`member_losses`).

    Example:
        >>> from lenetish.losses import Criterion
        >>> criterion = Criterion("auto", label_smoothing=0.1)
        >>> logits = torch.tensor([[2.0, -1.0, 0.5]])  # raw scores, not log-probabilities
        >>> loss = criterion(logits, torch.tensor([0]), smoothing=False)
        >>> criterion.kind, round(loss.item(), 4)  # detected, so the loss is the cross-entropy
        ('logits', 0.2413)
    """

    def __init__(self, loss: LossName | LossFunction, label_smoothing: float = 0.0) -> None:
        if isinstance(loss, str) and loss not in LOSSES:
            raise InvalidArgumentError(
                f"loss={loss!r} is not supported; use one of {', '.join(LOSSES)} or a callable "
                "(outputs, targets) -> loss"
            )
        if not isinstance(loss, str) and not callable(loss):
            raise InvalidArgumentError(f"loss must be a name or a callable, got {loss!r}")
        if callable(loss) and label_smoothing:
            raise InvalidArgumentError(
                "label_smoothing applies to the built-in losses only; with your own loss "
                "callable, smooth the targets inside it and leave label_smoothing at 0"
            )
        self.loss = loss
        self.label_smoothing = label_smoothing
        self.kind: OutputKind | None = None
        self.smoothing_used = False
        self.members: int | None = None
        self.class_weight: Tensor | None = None  # set by the fit (training losses only)
        self.batch_weights: Tensor | None = None  # this training batch's (x, y, w) weights
        self.reset()

    def reset(self) -> None:
        """Forget the detected output kind (a new fit decides again)."""
        self.kind = None
        self.smoothing_used = False

    def __call__(self, outputs: Tensor, targets: Tensor, *, smoothing: bool = True) -> Tensor:
        """The mean loss of a batch; ``smoothing=False`` for validation.

        For a stack (``members`` set), the sum of the members' mean losses.
        """
        outputs = class_scores(outputs, who="the model")
        self.smoothing_used |= smoothing and bool(self.label_smoothing)
        if self.members is not None:
            return self.member_losses(outputs, targets, smoothing=smoothing).sum()
        return self._mean_loss(outputs, targets, smoothing)

    def member_losses(self, outputs: Tensor, targets: Tensor, *, smoothing: bool = True) -> Tensor:
        """Each member's mean loss ``(members,)`` from stacked outputs ``(members, B, classes)``.

        Args:
            outputs: a :class:`~lenetish.ModelStack`'s outputs.
            targets: ``(B,)`` labels shared by the members, or ``(members, B)``.
            smoothing: apply ``label_smoothing`` (``False`` for validation).

        Raises:
            InvalidArgumentError: ``outputs`` is not 3-dimensional.
        """
        if outputs.dim() != 3:
            raise InvalidArgumentError(
                f"a stack's outputs are (members, batch, classes), got shape "
                f"{tuple(outputs.shape)}: train a ModelStack, or a plain network on its own"
            )
        if tuple(targets.shape) not in ((outputs.shape[1],), tuple(outputs.shape[:2])):
            raise InvalidArgumentError(
                f"labels of shape {tuple(targets.shape)} do not fit the stack's outputs "
                f"{tuple(outputs.shape)}: a StackLoader's (members, batch) labels need "
                "ModelStack(inputs='split'), and a split stack needs a StackLoader"
            )
        if self.kind is None and not callable(self.loss):
            self._detect(outputs.flatten(0, 1))
        per_member = targets.expand(outputs.shape[0], -1) if targets.dim() == 1 else targets
        return torch.stack(
            [self._mean_loss(o, t, smoothing) for o, t in zip(outputs, per_member, strict=True)]
        )

    def _weights(self, targets: Tensor) -> Tensor | None:
        """Each training sample's weight: its class's times its own (``None``: unweighted)."""
        weights = None
        if self.class_weight is not None:
            table = self.class_weight.to(targets.device)
            # Read on the CPU only, where it costs no device synchronisation.
            if targets.device.type == "cpu" and len(targets) and int(targets.max()) >= len(table):
                raise InvalidArgumentError(
                    f"class_weight has {len(table)} weights, but a label is "
                    f"{int(targets.max())}; give one weight per class"
                )
            weights = table[targets]
        if self.batch_weights is not None:
            own = self.batch_weights.to(targets.device, torch.float32)
            weights = own if weights is None else weights * own
        return weights

    def _mean_loss(self, outputs: Tensor, targets: Tensor, smoothing: bool) -> Tensor:
        if callable(self.loss):
            if self.batch_weights is not None and smoothing:
                raise InvalidArgumentError(
                    "the batches hold sample weights (images, labels, weights), but your loss "
                    "callable takes (outputs, targets); weight the samples in a training_step "
                    "of your own, or yield (images, labels) batches"
                )
            return self.loss(outputs, targets)
        check_targets(outputs, targets)
        kind = self.kind if self.kind is not None else self._detect(outputs)
        amount = self.label_smoothing if smoothing else 0.0
        weights = self._weights(targets) if smoothing else None  # training losses only
        return smoothed_nll(log_probabilities(outputs, kind), targets, amount, weights)

    def _detect(self, outputs: Tensor) -> OutputKind:
        """Fix the output kind from a first batch (a declared one is checked, not trusted)."""
        declared = {"nll": "log_probabilities", "cross_entropy": "logits"}.get(str(self.loss))
        self.kind = resolve_output_kind(declared or "auto", outputs, who=f"loss={self.loss!r}")
        return self.kind

    def warn_if_smoothing_dropped(self) -> None:
        """After a fit's first step: warn if label smoothing was set but never applied.

        That happens when a subclass's ``training_step`` computes its own loss instead of
        calling ``Trainer.compute_loss``.
        """
        if self.label_smoothing and not self.smoothing_used and not callable(self.loss):
            warnings.warn(
                f"label_smoothing={self.label_smoothing} is not applied: your training_step "
                "computes its own loss; call self.compute_loss(outputs, targets) in it to keep "
                "the setting, or leave label_smoothing at 0",
                UserWarning,
                stacklevel=2,
            )
