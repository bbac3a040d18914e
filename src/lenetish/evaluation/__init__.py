"""Measuring and using a trained model: ``evaluate`` over a loader, ``predict`` on any input.

Both accept one model or a list of models (an ensemble: the mean of their probabilities) and
run private eval-mode copies under :func:`torch.inference_mode`: the caller's models are left
exactly as they were (see :mod:`lenetish.evaluation.inference`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, overload

import torch
from torch import Tensor, nn

from lenetish._checks import as_class_labels, check_positive_int
from lenetish._device import DeviceLike, Precision, resolve_device
from lenetish.data.identity import (
    DatasetInfo,
    check_loader_dataset,
    dataset_for_models,
    recorded_dataset,
)
from lenetish.evaluation.inference import (
    ModelOrModels,
    as_model_list,
    first_images,
    inference,
    model_device,
    plan_inference,
    tta_views,
)
from lenetish.evaluation.inputs import prepare_images
from lenetish.evaluation.prepare import Preparation
from lenetish.evaluation.scores import EvalResult, Prediction, ScoreTally
from lenetish.layout import CHECK_IMAGES
from lenetish.losses import (
    OutputKind,
    check_outputs_setting,
    class_scores,
    recorded_output_kind,
    resolve_output_kind,
    scored_log_probabilities,
)

if TYPE_CHECKING:
    from lenetish.stack.evaluation import StackEvalResult
    from lenetish.stack.model import ModelStack

__all__ = ["EvalResult", "Prediction", "ScoreTally", "evaluate", "predict"]

logger = logging.getLogger(__name__)


# Model types whose outputs are (members, B, C), each with its own evaluation: the stack
# package registers ModelStack (register_stack_type), so this module needs no import of it.
_STACKS: dict[type[nn.Module], Callable[..., Any]] = {}


def register_stack_type(model_type: type[nn.Module], evaluate_stack: Callable[..., Any]) -> None:
    """Let :func:`evaluate` hand models of ``model_type`` to ``evaluate_stack``.

    Their outputs are read as ``(members, B, C)`` by :func:`predict` too.
    """
    _STACKS[model_type] = evaluate_stack


class _Ensemble:
    """Models whose outputs are turned into log-probabilities, each by its own output kind."""

    def __init__(self, models: list[nn.Module], outputs: OutputKind | Literal["auto"]) -> None:
        check_outputs_setting(outputs)
        self.models = models
        self.outputs = outputs
        self.stacked = [isinstance(model, tuple(_STACKS)) for model in models]
        # What a fit recorded on each model (its loss's detection) is used under "auto".
        self.kinds: list[OutputKind | None] = [
            recorded_output_kind(model) if outputs == "auto" else None for model in models
        ]

    def log_probabilities(self, images: Tensor, tta: bool = False) -> Tensor:
        """Log of the mean probabilities over models (and shifted views), ``(B, classes)``."""
        outputs: list[Tensor] = []
        for index, model in enumerate(self.models):
            for view in tta_views(images, tta):
                raw = class_scores(model(view), who=type(model).__name__)  # made fp32 below
                is_stack = self.stacked[index]  # (k, B, C): k members' outputs
                rows = raw.flatten(0, 1) if is_stack else raw
                kind = self.kinds[index]
                if kind is None:  # decided once per model, on its first batch
                    kind = resolve_output_kind(self.outputs, rows, who=type(model).__name__)
                    self.kinds[index] = kind
                if is_stack:
                    outputs.extend(scored_log_probabilities(rows, kind).reshape(raw.shape))
                else:
                    outputs.append(scored_log_probabilities(raw, kind))
        if len(outputs) == 1:
            return outputs[0]
        stacked = torch.stack(outputs)  # (models * views, B, C)
        return torch.logsumexp(stacked, dim=0) - math.log(len(outputs))


@overload
def evaluate(
    model: ModelStack[Any],
    loader: Iterable[tuple[Tensor, Tensor]],
    *,
    device: DeviceLike | None = None,
    num_classes: int | None = None,
    tta: bool = False,
    outputs: OutputKind | Literal["auto"] = "auto",
    precision: Precision = "auto",
) -> StackEvalResult: ...


@overload
def evaluate(
    model: ModelOrModels,
    loader: Iterable[tuple[Tensor, Tensor]],
    *,
    device: DeviceLike | None = None,
    num_classes: int | None = None,
    tta: bool = False,
    outputs: OutputKind | Literal["auto"] = "auto",
    precision: Precision = "auto",
) -> EvalResult: ...


def evaluate(
    model: ModelOrModels,
    loader: Iterable[tuple[Tensor, Tensor]],
    *,
    device: DeviceLike | None = None,
    num_classes: int | None = None,
    tta: bool = False,
    outputs: OutputKind | Literal["auto"] = "auto",
    precision: Precision = "auto",
) -> EvalResult:
    """Score a model (or an ensemble) over every batch of ``loader``.

    The models may return log-probabilities (as :class:`~lenetish.MNISTConvNet` does),
    probabilities or logits: see ``outputs``.

    Args:
        model: a network, a list of networks whose probabilities are averaged, or a
            :class:`~lenetish.ModelStack` (scored member by member and as an ensemble).
        loader: any iterable of ``(images, labels)`` batches.
        device: where to run (``None``: where the first model's parameters are).
        num_classes: the number of classes (the size of the confusion matrix); ``None``
            (the default): as many as the model gives scores per image.
        tta: test-time augmentation: also score copies shifted by one pixel in each
            direction and average the probabilities.
        outputs: what the models return: ``"log_probabilities"`` (lenetish's networks),
            ``"probabilities"``, ``"logits"``, or ``"auto"`` to decide from each model's first
            batch (logged at INFO). The loss is the negative log-likelihood of the resulting
            probabilities, so it is never negative.
        precision: ``"auto"`` (bfloat16 autocast where the device computes bf16 natively,
            and channels-last conv weights on the CPU: several times faster, and the same
            prediction for at least 99.9% of the MNIST test images), ``"32"`` (plain fp32,
            the exact numbers of earlier versions), ``"bf16-mixed"`` or ``"16-mixed"``
            (CUDA).

    Returns:
        The :class:`EvalResult`; for a :class:`~lenetish.ModelStack`, a
        :class:`~lenetish.StackEvalResult` (the ensemble's scores, plus each
        member's accuracy and loss, their mean and standard deviation).

    Raises:
        InvalidArgumentError: ``loader`` yielded no samples, ``model`` is not a model, or
            ``precision`` is unknown (or ``"16-mixed"`` off CUDA).
        DatasetMismatchError: the loader's data (a :class:`~lenetish.TensorLoader` knows its
            dataset) is not the dataset the model's weights file recorded.

    Example:
        >>> from lenetish import MNISTConvNet
        >>> batch = (torch.zeros(4, 1, 28, 28), torch.tensor([0, 1, 2, 3]))
        >>> result = evaluate(MNISTConvNet(), [batch])
        >>> result.total, result.confusion.shape
        (4, torch.Size([10, 10]))
    """
    evaluate_stack = next((run for kind, run in _STACKS.items() if isinstance(model, kind)), None)
    if evaluate_stack is not None:  # every member, their mean and spread, the ensemble
        result: EvalResult = evaluate_stack(
            model,
            loader,
            device=device,
            num_classes=num_classes,
            tta=tta,
            outputs=outputs,
            precision=precision,
        )
        return result
    models = as_model_list(model)
    check_loader_dataset(models, loader)
    ensemble = _Ensemble(models, outputs)
    if num_classes is not None:
        check_positive_int("num_classes", num_classes)
    target = model_device(models[0]) if device is None else resolve_device(device)
    plan = plan_inference(target, precision, models=models)
    tally = ScoreTally(target, num_classes)
    batches, sample = first_images(loader)
    with inference(models, plan, sample) as runners:
        ensemble.models = runners
        for images, labels in batches:
            images = images.to(target, non_blocking=True)
            labels = as_class_labels(labels.to(target, non_blocking=True))
            tally.add(ensemble.log_probabilities(images, tta), labels)
    return EvalResult(**tally.scores())


def _say_if_unrecorded(models: list[nn.Module], dataset: str | DatasetInfo) -> None:
    """Warn when a model lenetish trained knows no dataset and none was named."""
    if not (isinstance(dataset, str) and dataset == "auto"):
        return
    unknown = [
        m for m in models if recorded_dataset(m) is None and recorded_output_kind(m) is not None
    ]
    if unknown:
        logger.warning(
            "lenetish: the %s was trained on data that records no dataset; predicting with "
            "MNIST's normalisation, digit preparation and digit names. Pass dataset= (e.g. "
            "the loaders' info) and prepare= if that is not what it was trained on",
            type(unknown[0]).__name__,
        )


def predict(
    model: ModelOrModels,
    inputs: Any,
    *,
    device: DeviceLike | None = None,
    batch_size: int | None = None,
    dataset: str | DatasetInfo = "auto",
    tta: bool = False,
    outputs: OutputKind | Literal["auto"] = "auto",
    normalized: bool = False,
    prepare: Preparation | None = None,
    precision: Precision = "auto",
) -> Prediction:
    """Classify images with a model, or with an ensemble (the mean of its probabilities).

    Args:
        model: a network (returning log-probabilities, probabilities or logits), or a list.
        inputs: a tensor or numpy array ``(28, 28)``, ``(N, 28, 28)`` or ``(N, 1, 28, 28)``
            of raw pixels, uint8 (0-255) or float (0-1), light on dark as in the dataset; a
            PIL image or an image file path (any size, either polarity, EXIF orientation
            applied: prepared the way the dataset's images were made); or a list mixing these.
        device: where to run (``None``: where the first model's parameters are).
        batch_size: images per forward pass (``None``: 512 on the CPU, where larger
            batches fall out of cache, 4096 on a GPU).
        dataset: the dataset the model was trained on, whose normalisation, preparation and
            class names are used: ``"auto"`` (what the model's weights file recorded, see
            :func:`~lenetish.load_model`; MNIST when nothing is recorded), a name,
            or a :class:`~lenetish.DatasetInfo` such as ``loaders.info``.
        tta: also classify copies shifted by one pixel in each direction and average.
        outputs: what the models return (see :func:`evaluate`); probabilities always sum
            to 1, whatever the model's last layer.
        normalized: float tensors and arrays are already normalised (e.g. batches from
            :func:`~lenetish.make_loaders`): they are used as they are.
        prepare: your own preparation of PIL images and image files: a function from a PIL
            image to a ``(28, 28)`` picture of raw pixels, uint8 or float in ``[0, 1]``
            (default: the dataset's, see :mod:`lenetish.evaluation.prepare`).
        precision: as for :func:`evaluate`: ``"auto"`` is the fast path, ``"32"`` plain
            fp32. uint8 images are converted to float one batch at a time either way.

    Returns:
        The :class:`Prediction`.

    Raises:
        InputShapeError: a tensor or array has the wrong rank or size.
        InvalidInputError: the batch is empty, holds NaN/Inf, has an unsupported dtype, or
            holds float values outside ``[0, 1]`` without ``normalized=True`` (the message
            gives the range seen), or is a sparse, nested or meta-device tensor.
        InvalidImageError: a file is missing, not an image, or too large.
        InvalidArgumentError: ``batch_size``, ``dataset`` or ``precision`` is invalid.
        DatasetMismatchError: ``dataset`` contradicts what the model's weights file recorded.

    Example:
        >>> from lenetish import MNISTConvNet
        >>> prediction = predict(MNISTConvNet(), torch.zeros(3, 28, 28, dtype=torch.uint8))
        >>> prediction.labels.shape, prediction.probabilities.shape
        (torch.Size([3]), torch.Size([3, 10]))
    """
    models = as_model_list(model)
    ensemble = _Ensemble(models, outputs)
    if batch_size is not None:
        check_positive_int("batch_size", batch_size)
    info = dataset_for_models(models, dataset)
    _say_if_unrecorded(models, dataset)
    target = model_device(models[0]) if device is None else resolve_device(device)
    plan = plan_inference(target, precision, batch_size, models=models)
    images = prepare_images(inputs, info, normalized=normalized, prepare=prepare)
    step = plan.batch_size
    sample = images.batch(0, min(len(images), CHECK_IMAGES), target)
    with inference(models, plan, sample) as runners:
        ensemble.models = runners
        chunks = [
            ensemble.log_probabilities(images.batch(start, start + step, target), tta)
            for start in range(0, len(images), step)
        ]
    probabilities = torch.cat(chunks).exp().cpu()
    return Prediction(
        labels=probabilities.argmax(dim=1), probabilities=probabilities, classes=info.classes
    )
