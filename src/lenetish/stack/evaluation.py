"""Scoring a :class:`~lenetish.ModelStack`: every member, their mean and spread, the ensemble.

:func:`~lenetish.evaluate` hands a stack to :func:`evaluate_stack`, which runs the members
together over the loader once and returns a :class:`StackEvalResult`: the ensemble's scores
(the mean of the members' probabilities) in the fields every :class:`~lenetish.EvalResult`
has, plus each member's accuracy and loss.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from lenetish._checks import check_positive_int
from lenetish._device import DeviceLike, Precision, resolve_device
from lenetish.data.identity import check_loader_dataset
from lenetish.evaluation import register_stack_type
from lenetish.evaluation.inference import (
    first_images,
    inference,
    model_device,
    plan_inference,
    tta_views,
)
from lenetish.evaluation.scores import EvalResult, ScoreTally
from lenetish.losses import (
    OutputKind,
    check_outputs_setting,
    recorded_output_kind,
    resolve_output_kind,
    scored_log_probabilities,
)
from lenetish.stack.model import ModelStack

__all__ = ["StackEvalResult", "evaluate_stack", "member_log_probabilities"]


@dataclass(frozen=True)
class StackEvalResult(EvalResult):
    """Scores of a :class:`~lenetish.ModelStack`: the ensemble's, and each member's.

    ``loss``, ``accuracy``, ``correct``, ``total``, ``per_class_accuracy`` and ``confusion``
    are the ensemble's (the mean of the members' probabilities), as for a list of models.

    Attributes:
        member_accuracy: each member's accuracy, in the stack's order.
        member_loss: each member's mean negative log-likelihood.
        mean_accuracy: the members' mean accuracy.
        std_accuracy: the members' sample standard deviation of accuracy (0 for one member).

    Example:
        >>> from lenetish import MNISTConvNet, ModelStack, TensorLoader, evaluate
        >>> stack = ModelStack(MNISTConvNet, 3)  # three untrained members
        >>> images, labels = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
        >>> result = evaluate(stack, TensorLoader(images, labels, batch_size=8))
        >>> type(result).__name__, len(result.member_accuracy), result.total
        ('StackEvalResult', 3, 16)
    """

    member_accuracy: tuple[float, ...]
    member_loss: tuple[float, ...]
    mean_accuracy: float
    std_accuracy: float


def member_log_probabilities(
    stack: ModelStack, images: Tensor, kind: OutputKind, *, tta: bool = False
) -> Tensor:
    """Each member's log-probabilities ``(k, B, classes)`` (averaged over TTA views).

    With ``tta``, the batch and four copies shifted by one pixel (up, down, left, right) are
    scored and each member's probabilities averaged over the five views.
    """
    per_view = [
        scored_log_probabilities(raw.flatten(0, 1), kind).reshape(raw.shape)
        for raw in (stack(view) for view in tta_views(images, tta))
    ]
    if len(per_view) == 1:
        return per_view[0]
    return torch.logsumexp(torch.stack(per_view), dim=0) - math.log(len(per_view))


def evaluate_stack(
    stack: ModelStack,
    loader: Iterable[tuple[Tensor, Tensor]],
    *,
    device: DeviceLike | None = None,
    num_classes: int | None = None,
    tta: bool = False,
    outputs: OutputKind | Literal["auto"] = "auto",
    precision: Precision = "auto",
) -> StackEvalResult:
    """Score every member of ``stack`` and their ensemble over ``loader`` in one pass.

    :func:`~lenetish.evaluate` calls this for a stack; the arguments are the same.

    Args:
        stack: the stack to score.
        loader: any iterable of ``(images, labels)`` batches.
        device: where to run (``None``: where the stack's parameters are).
        num_classes: the number of classes (the size of the confusion matrix); ``None``
            (the default): as many as the model gives scores per image.
        tta: also score copies shifted by one pixel in each direction and average each
            member's probabilities over them.
        outputs: what the members return (``"auto"``: decided from the first batch).
        precision: as for :func:`~lenetish.evaluate`: ``"auto"``, ``"32"``,
            ``"bf16-mixed"`` or ``"16-mixed"``.

    Returns:
        The ensemble's scores and each member's accuracy and loss.

    Raises:
        InvalidArgumentError: ``loader`` yielded no samples, or an argument is invalid.
        DatasetMismatchError: the loader's data is not the dataset the stack recorded.

    Example:
        >>> from lenetish import MNISTConvNet, ModelStack, evaluate
        >>> batch = (torch.zeros(4, 1, 28, 28), torch.tensor([0, 1, 2, 3]))
        >>> result = evaluate(ModelStack(MNISTConvNet, 3), [batch])
        >>> len(result.member_accuracy), result.total
        (3, 4)
    """
    check_outputs_setting(outputs)
    if num_classes is not None:
        check_positive_int("num_classes", num_classes)
    check_loader_dataset([stack], loader)
    target = model_device(stack) if device is None else resolve_device(device)
    plan = plan_inference(target, precision, models=[stack])
    tally = ScoreTally(target, num_classes)
    member_loss = torch.zeros(stack.k, dtype=torch.float64, device=target)
    member_correct = torch.zeros(stack.k, dtype=torch.int64, device=target)
    kind: OutputKind | None = recorded_output_kind(stack) if outputs == "auto" else outputs
    batches, sample = first_images(loader)
    with inference([stack], plan, sample) as (runner,):
        assert isinstance(runner, ModelStack)  # a private copy of the stack
        stack = runner
        for images, labels in batches:
            images = images.to(target, non_blocking=True)
            labels = labels.to(target, non_blocking=True)
            if kind is None:  # decided once, on the first batch
                kind = resolve_output_kind("auto", stack(images).flatten(0, 1), who="ModelStack")
            members = member_log_probabilities(stack, images, kind, tta=tta)
            picked = members.gather(2, labels.expand(stack.k, -1).unsqueeze(2))
            member_loss -= picked.squeeze(2).double().sum(dim=1)
            member_correct += (members.argmax(dim=2) == labels).sum(dim=1)
            tally.add(torch.logsumexp(members, dim=0) - math.log(stack.k), labels)
    ensemble = tally.scores()  # raises if the loader yielded nothing
    accuracies = (member_correct.double() / tally.seen).tolist()
    return StackEvalResult(
        **ensemble,
        member_accuracy=tuple(accuracies),
        member_loss=tuple((member_loss / tally.seen).tolist()),
        mean_accuracy=statistics.fmean(accuracies),
        std_accuracy=statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
    )


register_stack_type(ModelStack, evaluate_stack)
