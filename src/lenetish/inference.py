"""How ``evaluate`` and ``predict`` run models: device, eval mode, precision and weight layout.

With ``precision="auto"`` (their default) the models run the way the hardware is fastest at:
bfloat16 autocast where the device computes bf16 natively, and on the CPU the 4-d (conv)
weights in channels-last layout, which oneDNN's convolutions read without a conversion (2.5x
the images per second on a 2-core Zen 4 in fp32, about 7x with bf16). ``precision="32"`` is
the plain fp32 NCHW path, exactly as before. Everything is restored afterwards: each model's
train/eval mode and its weights' layout.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lenetish._device import Precision, ResolvedPrecision, autocast, resolve_precision
from lenetish.errors import InvalidArgumentError

__all__ = [
    "InferencePlan",
    "ModelOrModels",
    "as_model_list",
    "inference",
    "model_device",
    "plan_inference",
    "tta_views",
]

ModelOrModels = nn.Module | Sequence[nn.Module]

#: Images per forward pass when ``batch_size`` is not given: on the CPU the activations of
#: large batches fall out of cache (on a 2-core Zen 4 with bf16, 256 ran at 0.84x, 1,000 at
#: 1.06x and 4,096 at 0.50x the speed of 512: ``benchmarks/predict_speed.py --batch-sizes``);
#: a GPU wants large batches.
CPU_BATCH_SIZE = 512
GPU_BATCH_SIZE = 4096


def as_model_list(model_or_models: ModelOrModels) -> list[nn.Module]:
    """One model, or an ensemble's list, as a non-empty list of modules.

    Raises:
        InvalidArgumentError: it is neither a module nor a non-empty list of modules.
    """
    models = [model_or_models] if isinstance(model_or_models, nn.Module) else list(model_or_models)
    if not models or not all(isinstance(m, nn.Module) for m in models):
        raise InvalidArgumentError(
            "pass a torch.nn.Module or a non-empty list of them (an ensemble)"
        )
    return models


def model_device(model: nn.Module) -> torch.device:
    """Where ``model``'s first parameter is (the CPU for a model without parameters)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@dataclass(frozen=True)
class InferencePlan:
    """How a call of ``evaluate`` or ``predict`` runs its models.

    Attributes:
        device: where the models run.
        precision: the resolved precision (``"32"``, ``"bf16-mixed"``, ``"16-mixed"``).
        channels_last: conv weights in channels-last layout during the call.
        batch_size: images per forward pass.
    """

    device: torch.device
    precision: ResolvedPrecision
    channels_last: bool
    batch_size: int


def plan_inference(
    device: torch.device, precision: Precision, batch_size: int | None = None
) -> InferencePlan:
    """Resolve ``precision`` (and the layout and batch size that go with it) for ``device``.

    Raises:
        InvalidArgumentError: an unknown precision, or ``"16-mixed"`` off CUDA.

    Example:
        >>> plan = plan_inference(torch.device("cpu"), "32")
        >>> plan.precision, plan.channels_last, plan.batch_size
        ('32', False, 512)
    """
    resolved = resolve_precision(precision, device)
    channels_last = device.type == "cpu" and (precision == "auto" or resolved != "32")
    default = CPU_BATCH_SIZE if device.type == "cpu" else GPU_BATCH_SIZE
    return InferencePlan(device, resolved, channels_last, batch_size or default)


def _channels_last_weights(models: list[nn.Module]) -> list[tuple[nn.Parameter, Tensor]]:
    """Give every 4-d parameter channels-last strides; return what to put back.

    The strides are compared, not ``is_contiguous(memory_format=...)``: a weight with one
    input channel (a first convolution) passes both checks, yet only explicit channels-last
    strides make the convolution produce channels-last output (measured: max-pooling its
    NCHW output took half of ``predict``'s time).
    """
    originals = []
    for model in models:
        for parameter in model.parameters():
            if parameter.dim() != 4:
                continue
            converted = parameter.data.to(memory_format=torch.channels_last)
            if converted.stride() != parameter.data.stride():
                originals.append((parameter, parameter.data))
                parameter.data = converted
    return originals


@contextmanager
def inference(models: list[nn.Module], plan: InferencePlan) -> Iterator[None]:
    """Models on the plan's device in eval mode, under inference mode and its autocast.

    Their train/eval modes and weight layouts are restored afterwards (the device is not:
    the models stay where they were moved).
    """
    modes = [model.training for model in models]
    for model in models:
        model.to(plan.device).eval()
    originals = _channels_last_weights(models) if plan.channels_last else []
    try:
        with torch.inference_mode(), autocast(plan.device, plan.precision):
            yield
    finally:
        for parameter, original in originals:
            parameter.data = original
        for model, mode in zip(models, modes, strict=True):
            model.train(mode)


def tta_views(images: Tensor, tta: bool) -> list[Tensor]:
    """The batch ``(B, C, H, W)``, plus with ``tta`` four copies shifted by one pixel.

    The shifts are up, down, left and right. MNIST-family digits sit inside a black border,
    so rolling by one pixel only moves black pixels round the edge.
    """
    if not tta:
        return [images]
    shifted = [torch.roll(images, shifts=step, dims=dim) for dim in (-2, -1) for step in (-1, 1)]
    return [images, *shifted]
