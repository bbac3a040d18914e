"""How ``evaluate`` and ``predict`` run models: device, eval mode, precision and weight layout.

With ``precision="auto"`` (their default) the models run the way the hardware is fastest at:
bfloat16 autocast where the device computes bf16 natively, and on the CPU the 4-d (conv)
weights in channels-last layout, which oneDNN's convolutions read without a conversion (the
measured gain is on :doc:`/speed`). ``precision="32"`` is the plain fp32 NCHW path. These
speed-ups apply as they are only to networks that declare ``lenetish_fast_path`` (lenetish's
own, measured); any other model gets channels-last only after its outputs were shown
unchanged on the first batch, and float32 under ``"auto"`` (see :mod:`lenetish.layout`). The
models run as private copies, so the caller's models are never changed, even while another
thread uses them.
"""

from __future__ import annotations

import itertools
import logging
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lenetish._device import Precision, ResolvedPrecision, resolve_precision, scoring
from lenetish._reshape_twin import twin_strict_channels_last
from lenetish.errors import InvalidArgumentError
from lenetish.layout import declares_fast_path, layout_verdict, private_copy, strict_channels_last

__all__ = [
    "InferencePlan",
    "ModelOrModels",
    "as_model_list",
    "first_images",
    "inference",
    "model_device",
    "plan_inference",
    "tta_views",
]

logger = logging.getLogger("lenetish")

ModelOrModels = nn.Module | Sequence[nn.Module]

#: Images per forward pass when ``batch_size`` is not given: on the CPU the activations of
#: large batches fall out of cache (measured with ``benchmarks/predict_speed.py
#: --batch-sizes``, figures on the speed page); a GPU wants large batches.
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
    device: torch.device,
    precision: Precision,
    batch_size: int | None = None,
    models: Sequence[nn.Module] = (),
) -> InferencePlan:
    """Resolve ``precision`` (and the layout and batch size that go with it) for ``device``.

    ``"auto"`` uses bfloat16 only when every model declares ``lenetish_fast_path`` (its
    predictions were measured under bf16, as lenetish's own networks' were); any other
    model runs in float32, said once per model in a log line.

    Raises:
        InvalidArgumentError: an unknown precision, or ``"16-mixed"`` off CUDA.

    Example:
        >>> plan = plan_inference(torch.device("cpu"), "32")
        >>> plan.precision, plan.channels_last, plan.batch_size
        ('32', False, 512)
    """
    resolved = resolve_precision(precision, device)
    unmeasured = [model for model in models if not declares_fast_path(model)]
    if precision == "auto" and resolved != "32" and unmeasured:
        _tell_once(
            unmeasured,
            "runs in float32: precision='auto' uses bfloat16 only for networks measured "
            "with it (a class attribute lenetish_fast_path = True); pass "
            "precision='bf16-mixed' to use it anyway",
        )
        resolved = "32"
    channels_last = device.type == "cpu" and (precision == "auto" or resolved != "32")
    default = CPU_BATCH_SIZE if device.type == "cpu" else GPU_BATCH_SIZE
    return InferencePlan(device, resolved, channels_last, batch_size or default)


# Models already told about (one log line per model object and message, not per call).
_TOLD: weakref.WeakKeyDictionary[nn.Module, set[str]] = weakref.WeakKeyDictionary()


def _tell_once(models: Sequence[nn.Module], message: str) -> None:
    for model in models:
        told = _TOLD.setdefault(model, set())
        if message not in told:
            told.add(message)
            logger.info("lenetish: %s %s", type(model).__name__, message)


def _runner(model: nn.Module, plan: InferencePlan, sample: Tensor | None) -> nn.Module | None:
    """A private eval-mode copy of ``model`` on the plan's device, laid out by the plan.

    ``None`` when the model cannot be copied (it then runs itself, in its own layout).
    """
    try:
        runner = private_copy(model).to(plan.device)
    except Exception as exc:  # such a model still runs, in place
        _tell_once(
            [model],
            f"cannot be copied ({type(exc).__name__}), so it runs itself, switched to eval "
            "mode for the call: do not share it between threads during predict/evaluate",
        )
        return None
    if not plan.channels_last:
        return runner
    if declares_fast_path(model):
        strict_channels_last(runner)
        return runner
    if sample is None:
        _tell_once([model], "keeps its own layout, not channels-last: was not checked (no batch)")
        return runner
    images = sample.to(plan.device)
    problem = layout_verdict(model, images, strict_channels_last)
    if problem is None:
        strict_channels_last(runner)
    elif layout_verdict(model, images, twin_strict_channels_last) is None:  # a .view network
        twin_strict_channels_last(runner)
        _tell_once([model], "runs channels-last with .view run as .reshape")
    else:
        _tell_once([model], f"keeps its own layout, not channels-last: {problem}")
    return runner


@contextmanager
def inference(
    models: list[nn.Module], plan: InferencePlan, sample: Tensor | None = None
) -> Iterator[list[nn.Module]]:
    """The models to run, in eval mode on the plan's device, under inference mode and autocast.

    Each is a private copy (see :func:`lenetish.layout.private_copy`), so the caller's
    models are never touched: their weights, layout, device and train/eval mode stay as
    they were, and two threads (or a fit and a callback) can share a model. Channels-last
    weights are given to the networks that declare ``lenetish_fast_path`` and to any other
    whose outputs :func:`lenetish.layout.layout_verdict` shows unchanged on ``sample`` (the
    first batch). A model that cannot be copied runs itself, switched to eval mode for the
    block and back afterwards.
    """
    runners = [_runner(model, plan, sample) for model in models]
    in_place = [model for model, runner in zip(models, runners, strict=True) if runner is None]
    for model in in_place:
        model.to(plan.device)
    with scoring(in_place, plan.device, plan.precision):  # the copies are in eval mode already
        yield [m if r is None else r for m, r in zip(models, runners, strict=True)]


def first_images(
    loader: Iterable[tuple[Tensor, Tensor]],
) -> tuple[Iterator[tuple[Tensor, Tensor]], Tensor | None]:
    """The batches of ``loader`` (an iterator that still yields all of them) and the first images.

    The first batch's images are the sample the layout check runs on; ``None`` when the
    loader is empty or does not yield tensors.
    """
    batches = iter(loader)
    first = next(batches, None)
    if first is None:
        return batches, None
    images = first[0] if isinstance(first, (tuple, list)) and first else None
    return itertools.chain([first], batches), images if isinstance(images, Tensor) else None


def tta_views(images: Tensor, tta: bool) -> list[Tensor]:
    """The batch ``(B, C, H, W)``, plus with ``tta`` four copies shifted by one pixel.

    The shifts are up, down, left and right. MNIST-family digits sit inside a black border,
    so rolling by one pixel only moves black pixels round the edge.
    """
    if not tta:
        return [images]
    shifted = [torch.roll(images, shifts=step, dims=dim) for dim in (-2, -1) for step in (-1, 1)]
    return [images, *shifted]
