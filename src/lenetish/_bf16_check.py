"""Whether a network lenetish did not write computes the same under bfloat16 autocast.

``precision="auto"`` trains lenetish's own networks (which declare ``lenetish_fast_path``)
under bfloat16 autocast where the device computes it natively, because they were measured
so. Any other network gets it only if this check passes on the first training batch: the
network's parameters and buffers are float32 (a float64 or integer path would be changed
by autocast), and on up to :data:`SAMPLE_IMAGES` images of the batch, run once in float32
and once under bfloat16 autocast on a private eval-mode copy, the outputs are finite and,
read as probabilities (a softmax of each row), differ by at most :data:`TOLERANCE`, and
pick the same class for at least :data:`AGREEMENT` of the images. Otherwise the fit trains
in float32, with one log line saying why.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lenetish._device import autocast
from lenetish.layout import private_copy

__all__ = ["AGREEMENT", "SAMPLE_IMAGES", "TOLERANCE", "bf16_problem"]

#: The most a probability may move between float32 and bfloat16 (absolute).
TOLERANCE = 0.05
#: The share of images whose predicted class must stay the same.
AGREEMENT = 0.9
#: Images of the first batch the check runs on.
SAMPLE_IMAGES = 16


def bf16_problem(model: nn.Module, images: Tensor) -> str | None:
    """Why ``model`` should not train under bfloat16 autocast, or ``None`` when it may.

    Args:
        model: the network (not changed: the check runs on a private eval-mode copy, with
            gradients off and the random state put back).
        images: the first training batch, on the training device.

    Example:
        >>> from lenetish._bf16_check import bf16_problem
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
        >>> bf16_problem(net, torch.rand(4, 1, 28, 28)) is None
        True
        >>> bf16_problem(net.double(), torch.rand(4, 1, 28, 28).double())
        'its parameters or buffers hold torch.float64 values, which autocast would change'
    """
    kinds = {t.dtype for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()}
    other = sorted(str(kind) for kind in kinds - {torch.float32})
    if other:
        held = ", ".join(other)
        return f"its parameters or buffers hold {held} values, which autocast would change"
    if not images.is_floating_point():
        return f"its inputs are {images.dtype}, not floating point"
    sample = images[:SAMPLE_IMAGES]
    copy = private_copy(model)
    devices = [images.device] if images.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        reference = copy(sample)
        with autocast(images.device, "bf16-mixed"):
            low = copy(sample)
    if not isinstance(reference, Tensor) or not reference.is_floating_point():
        return "its outputs are not a floating-point tensor"
    if reference.dtype == torch.float64:
        return "its outputs are float64"
    if reference.dim() != 2 or tuple(low.shape) != tuple(reference.shape):
        return f"its outputs of shape {tuple(reference.shape)} are not (batch, classes)"
    low = low.float()
    if not torch.isfinite(low).all():
        return "its outputs under bfloat16 are not all finite"
    moved = float((reference.float().softmax(1) - low.softmax(1)).abs().max())
    same = float((reference.argmax(1) == low.argmax(1)).float().mean())
    if moved > TOLERANCE or same < AGREEMENT:
        return (
            f"under bfloat16 its probabilities moved by up to {moved:.3f} (at most {TOLERANCE} "
            f"is accepted) and {same:.0%} of the predicted classes stayed"
        )
    return None
