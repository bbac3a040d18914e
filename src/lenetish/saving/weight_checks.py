"""Checks on weights before they load: values a model cannot take, records that cannot fit.

:func:`check_weight_values` refuses non-finite or absurd values, :func:`check_record_fits`
a dataset record with another number of classes than the model's outputs, and
:func:`refuse_unusual_tensors` tensors that are not plain dense ones (sparse, quantised...).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from lenetish.data.identity import DatasetInfo
from lenetish.errors import CheckpointError

__all__ = ["check_record_fits", "check_weight_values", "refuse_unusual_tensors"]


def _tensor_kind(tensor: Tensor) -> str | None:
    """What makes ``tensor`` unusable as a weight (sparse, quantized, meta), or None."""
    if tensor.is_meta:
        return "a meta tensor (a shape with no values)"
    if tensor.is_quantized:
        return f"a quantized tensor ({tensor.dtype})"
    if tensor.layout != torch.strided:
        return f"a sparse tensor ({tensor.layout})"
    return None


def refuse_unusual_tensors(tensors: Mapping[str, Tensor], source: Path) -> None:
    """Refuse sparse, quantized and meta tensors: weights are dense tensors with values."""
    for name, tensor in tensors.items():
        kind = _tensor_kind(tensor)
        if kind is not None:
            raise CheckpointError(
                f"weights file {source} holds {name} as {kind}; lenetish loads dense weights "
                "only: where the file was made, save dense values (tensor.to_dense(), "
                "tensor.dequantize(), or the weights of a model that holds real values)"
            )


def check_weight_values(model: nn.Module, tensors: Mapping[str, Tensor], *, source: str) -> None:
    """Refuse weights that would be cast to the model's floating point, or are not finite.

    ``load_state_dict`` copies int8, bool or complex tensors into float parameters without a
    word (a bool file scores 9%), and NaN weights predict ``nan`` probabilities.

    Args:
        model: the network the weights are for.
        tensors: its state dict, as read from the file (names and shapes already fit).
        source: the file, for the message.

    Raises:
        CheckpointError: a floating-point parameter has a non-floating (integer, bool,
            complex) tensor in the file, or the reverse, or a tensor holds NaN or infinity.

    Example:
        >>> from lenetish import MNISTConvNet
        >>> from lenetish.saving.weight_checks import check_weight_values
        >>> net = MNISTConvNet()
        >>> weights = {k: v.bool() for k, v in net.state_dict().items()}
        >>> check_weight_values(net, weights, source="m.pt")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        lenetish.errors.CheckpointError: m.pt holds weights of another kind than the model's: ...
    """
    expected = model.state_dict()
    cast = [
        f"{name} ({tensor.dtype}, the model's {expected[name].dtype})"
        for name, tensor in tensors.items()
        if name in expected
        and (
            tensor.dtype.is_complex
            or tensor.dtype.is_floating_point != expected[name].dtype.is_floating_point
        )
    ]
    if cast:
        raise CheckpointError(
            f"{source} holds weights of another kind than the model's: {', '.join(cast[:4])}"
            f"{' ...' if len(cast) > 4 else ''}; lenetish does not cast integer, bool or "
            "complex weights to floating point (it would silently change the network): where "
            "the file was made, save the model's own floating-point weights (save_weights, or "
            "torch.save(model.state_dict(), path)) and load that file"
        )
    broken = [
        name
        for name, tensor in tensors.items()
        if tensor.dtype.is_floating_point and not bool(torch.isfinite(tensor).all())
    ]
    if broken:
        raise CheckpointError(
            f"{source} holds NaN or infinite values in {', '.join(broken[:4])}"
            f"{' ...' if len(broken) > 4 else ''}; a network with them predicts nothing "
            "meaningful (the training that wrote them diverged): load an earlier checkpoint, "
            "or train again"
        )


def _output_count(model: nn.Module) -> int | None:
    """The number of outputs of ``model`` if its last layer with weights is a Linear one."""
    last = None
    for module in model.modules():
        if any(True for _ in module.parameters(recurse=False)):
            last = module
    return last.out_features if isinstance(last, nn.Linear) else None


def check_record_fits(model: nn.Module, dataset: DatasetInfo | None, *, source: str) -> None:
    """Refuse a dataset record with more class names than ``model`` has outputs.

    Raises:
        CheckpointError: the record names more classes than the model's last (Linear) layer
            has outputs; the scores would be read for classes the network cannot predict.
    """
    outputs = _output_count(model)
    if dataset is not None and outputs is not None and len(dataset.classes) > outputs:
        raise CheckpointError(
            f"{source} records {len(dataset.classes):,} class names for a "
            f"{type(model).__name__} of {outputs} outputs: its dataset record is damaged; "
            "pass dataset= (or --dataset) to say what the model was trained on"
        )
