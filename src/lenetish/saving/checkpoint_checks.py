"""Checking a training checkpoint's contents against the trainer before anything is restored.

``torch.load(weights_only=True)`` guarantees that a checkpoint holds only tensors and plain
containers, not that they make sense: an optimizer state of the wrong shape makes the fused
Adam kernels write past their buffers, a random-generator state can be a stride-0 view that
expands to gigabytes, and a counter can be a string or 10^30. Values are checked too, since
they train silently wrong: an Adam ``step`` of -1, NaN or 1.5, a negative second moment, NaN
weights or moments, a negative or non-finite learning rate (also a schedule's ``initial_lr``,
``max_lr`` or ``min_lr`` beside it; each resumes to NaN or diverging weights), and
random-generator states that the generators themselves would refuse (each is tried on a
generator of its own, so the process's streams are untouched). :func:`check_training_checkpoint`
refuses all of that with a :class:`~lenetish.CheckpointError` naming the field, so that
restoring never allocates more than the model and the optimizer already hold.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from lenetish.errors import CheckpointError

__all__ = ["check_optimizer_state", "check_training_checkpoint", "extra_param_groups"]

MAX_COUNT = 2**53  # epochs, steps and seeds beyond this are damage, not training
_REQUIRED = ("model", "optimizer", "epoch", "global_step", "callbacks", "rng")
_PYTHON_STATE_LENGTH = 625  # Mersenne Twister: 624 words and a position
_NUMPY_KEYS = 624
_CUDA_STATE_BYTES = 1024  # a CUDA generator's state is 16 bytes; far more is not one
_MT_POSITION_MAX = 624  # a Mersenne Twister's position runs from 0 to its 624 words
#: Optimizer state that is a running mean of squares: a negative value makes the step NaN.
_NON_NEGATIVE_STATE = frozenset({"exp_avg_sq", "max_exp_avg_sq", "square_avg", "sum", "acc_delta"})
#: Hyperparameters that no optimizer takes below zero (a negative lr climbs the loss).
_NON_NEGATIVE_HYPERPARAMETERS = frozenset({"lr", "eps", "weight_decay", "momentum", "dampening"})
#: Learning rates a param group holds: its own, and those the schedulers write beside it
#: (one-cycle's peak and ends, every scheduler's initial_lr), read again by a resumed schedule.
_LEARNING_RATES = frozenset({"lr", "initial_lr", "max_lr", "min_lr"})


class _Refusal(Exception):
    """A field of the checkpoint and what is wrong with it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")


def check_training_checkpoint(
    checkpoint: Mapping[str, Any], *, model: nn.Module, optimizer: Optimizer | None, source: str
) -> None:
    """Refuse a checkpoint whose fields do not fit ``model`` and ``optimizer``.

    Args:
        checkpoint: what :func:`~lenetish.load_checkpoint` returned.
        model: the network it will be loaded into.
        optimizer: the optimizer it will be loaded into; ``None`` leaves the optimizer's
            state to :func:`check_optimizer_state` later (once callbacks have added the
            parameter groups it holds, see :func:`extra_param_groups`).
        source: the checkpoint's name, for the message.

    Raises:
        CheckpointError: a field is missing, of the wrong type, out of range, or a tensor of
            the wrong shape, dtype or layout; the message names the field.

    Example:
        >>> from lenetish import MNISTConvNet
        >>> net = MNISTConvNet()
        >>> adam = torch.optim.Adam(net.parameters())
        >>> check_training_checkpoint({"epoch": "3"}, model=net, optimizer=adam, source="c.pt")
        Traceback (most recent call last):
        ...
        lenetish.errors.CheckpointError: c.pt is damaged: model is missing; ...
    """
    try:
        for key in _REQUIRED:
            if key not in checkpoint:
                raise _Refusal(key, "is missing")
        for key in ("epoch", "global_step"):
            _count(checkpoint[key], key, low=0)
        for key in ("epochs_planned", "world_size"):
            if key in checkpoint:
                _count(checkpoint[key], key, low=1)
        if "rank_seed" in checkpoint:
            _count(checkpoint["rank_seed"], "rank_seed", low=0)
        if not _check_model(checkpoint["model"], model):
            return  # another architecture: load_model_state names the layers that differ
        if optimizer is not None:
            _check_optimizer(checkpoint["optimizer"], optimizer)
        _check_scaler(checkpoint.get("scaler"))
        _check_callbacks(checkpoint["callbacks"])
        _check_rng(checkpoint["rng"])
        if checkpoint.get("mid_epoch") is not None:
            _check_mid_epoch(checkpoint["mid_epoch"])
        stream = checkpoint.get("stream")
        if isinstance(stream, Mapping) and "rng" in stream:  # steps_per_epoch's pass
            _check_rng(stream["rng"], "stream.rng")
    except _Refusal as refusal:
        raise _damaged(source, refusal) from None


def _damaged(source: str, refusal: _Refusal) -> CheckpointError:
    return CheckpointError(
        f"{source} is damaged: {refusal}; resume from another checkpoint (e.g. best.pt or "
        "an earlier copy), or start a new run"
    )


def check_optimizer_state(saved: object, optimizer: Optimizer, *, source: str) -> None:
    """Refuse a checkpoint's optimizer state that does not fit ``optimizer``.

    The part :func:`check_training_checkpoint` checks when given the optimizer.

    Raises:
        CheckpointError: its groups, parameters or values do not fit, naming the field.
    """
    try:
        _check_optimizer(saved, optimizer)
    except _Refusal as refusal:
        raise _damaged(source, refusal) from None


def extra_param_groups(saved: object, optimizer: Optimizer) -> int:
    """How many more parameter groups a saved optimizer state holds than ``optimizer``.

    A callback may add groups during a fit (``optimizer.add_param_group`` in a fine-tuning
    callback's ``on_fit_start``), so a resumed fit's fresh optimizer can have fewer than its
    checkpoint; 0 when the state has no more (or is no state at all: the checks say so).

    Example:
        >>> weight = torch.nn.Parameter(torch.zeros(2))
        >>> saved = {"state": {}, "param_groups": [{"params": [0]}, {"params": [1]}]}
        >>> extra_param_groups(saved, torch.optim.SGD([weight], lr=0.1))
        1
    """
    groups = saved.get("param_groups") if isinstance(saved, Mapping) else None
    if not isinstance(groups, list):
        return 0
    return max(0, len(groups) - len(optimizer.param_groups))


def _count(value: object, field: str, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Refusal(field, f"must be an integer, not {type(value).__name__}")
    if not low <= value <= MAX_COUNT:
        raise _Refusal(field, f"is {value}, outside {low}..2**53")
    return value


def _mapping(value: object, field: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise _Refusal(field, f"must be a dictionary, not {type(value).__name__}")
    return value


def _plain_tensor(value: object, field: str) -> Tensor:
    """A dense CPU-restorable tensor, not a view wider than its storage."""
    if not isinstance(value, Tensor):
        raise _Refusal(field, f"must be a tensor, not {type(value).__name__}")
    if value.layout != torch.strided or value.is_meta or value.is_quantized:
        raise _Refusal(field, f"must be a dense tensor, not {value.layout}")
    if value.numel() > max(1, value.untyped_storage().nbytes() // max(1, value.element_size())):
        raise _Refusal(field, "is a view larger than its storage (e.g. an expanded tensor)")
    return value


def _check_model(weights: object, model: nn.Module) -> bool:
    """Check the weights' types; return whether their names and shapes fit ``model``."""
    weights = _mapping(weights, "model")
    expected = model.state_dict()
    for name, value in weights.items():
        if not isinstance(name, str):
            raise _Refusal("model", f"has a key {name!r} that is not a layer name")
        tensor = _plain_tensor(value, f"model[{name!r}]")
        if name in expected and tensor.dtype.is_floating_point != (
            expected[name].dtype.is_floating_point
        ):
            raise _Refusal(f"model[{name!r}]", f"has dtype {tensor.dtype}")
        _finite(tensor, f"model[{name!r}]")
    return set(weights) == set(expected) and all(
        weights[name].shape == expected[name].shape for name in expected
    )


def _check_optimizer(saved: object, optimizer: Optimizer) -> None:
    if saved is None:
        return
    saved = _mapping(saved, "optimizer")
    groups, state = saved.get("param_groups"), _mapping(saved.get("state"), "optimizer.state")
    if not isinstance(groups, list) or len(groups) != len(optimizer.param_groups):
        count = len(groups) if isinstance(groups, list) else "no list of"
        raise _Refusal(
            "optimizer.param_groups",
            f"has {count} groups where this optimizer has {len(optimizer.param_groups)}",
        )
    shapes: dict[int, torch.Size] = {}
    for index, (group, ours) in enumerate(zip(groups, optimizer.param_groups, strict=True)):
        field = f"optimizer.param_groups[{index}]"
        group = _mapping(group, field)
        params = group.get("params")
        if not isinstance(params, list) or len(params) != len(ours["params"]):
            raise _Refusal(f"{field}.params", f"does not list {len(ours['params'])} parameters")
        for param_id, parameter in zip(params, ours["params"], strict=True):
            if isinstance(param_id, bool) or not isinstance(param_id, int) or param_id in shapes:
                raise _Refusal(f"{field}.params", f"has a bad or repeated id {param_id!r}")
            shapes[param_id] = parameter.shape
        for key, value in group.items():
            if key != "params":
                _check_hyperparameter(value, f"{field}.{key}")
                if key in _NON_NEGATIVE_HYPERPARAMETERS:
                    _non_negative(value, f"{field}.{key}")
                if key in _LEARNING_RATES:
                    _learning_rate(value, f"{field}.{key}", peak=key == "max_lr")
                if key == "betas":
                    _check_betas(value, f"{field}.betas")
    for param_id, entry in state.items():
        if param_id not in shapes:
            raise _Refusal("optimizer.state", f"has an entry for unknown parameter {param_id!r}")
        for key, value in _mapping(entry, f"optimizer.state[{param_id}]").items():
            field = f"optimizer.state[{param_id}][{key!r}]"
            _check_state_value(value, field, shapes[param_id])
            if key == "step":
                _check_step(value, field)
            elif key in _NON_NEGATIVE_STATE:
                _non_negative(value, field)


def _check_hyperparameter(value: object, field: str) -> None:
    """A learning rate, beta, flag...: a finite number, a small tensor, a string or None."""
    if isinstance(value, Tensor):
        if _plain_tensor(value, field).numel() != 1:
            raise _Refusal(field, f"must be one number, not a tensor of shape {tuple(value.shape)}")
    elif isinstance(value, (tuple, list)):
        if len(value) > 8:
            raise _Refusal(field, f"has {len(value)} values")
        for item in value:
            _check_hyperparameter(item, field)
    elif isinstance(value, float) and not math.isfinite(value):
        raise _Refusal(field, f"is {value}")
    elif value is not None and not isinstance(value, (bool, int, float, str)):
        raise _Refusal(field, f"has an unexpected {type(value).__name__}")


def _check_state_value(value: object, field: str, shape: torch.Size) -> None:
    """Per-parameter state: a number, a one-element tensor (a step) or the parameter's shape."""
    if isinstance(value, Tensor):
        tensor = _plain_tensor(value, field)
        if tensor.numel() != 1 and tensor.shape != shape:
            raise _Refusal(field, f"has shape {tuple(tensor.shape)}, the parameter {tuple(shape)}")
        if not (tensor.dtype.is_floating_point or tensor.numel() == 1):
            raise _Refusal(field, f"has dtype {tensor.dtype}")
        _finite(tensor, field)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise _Refusal(field, f"is {value}")
    else:
        raise _Refusal(field, f"has an unexpected {type(value).__name__}")


def _finite(tensor: Tensor, field: str) -> None:
    """A floating-point tensor must hold no NaN or infinity (one would spread to every weight)."""
    if (tensor.dtype.is_floating_point or tensor.dtype.is_complex) and not bool(
        torch.isfinite(tensor).all()
    ):
        raise _Refusal(field, "holds NaN or infinite values")


def _number(value: object, field: str) -> float:
    """One number: a Python int or float, or a one-element tensor."""
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.dtype.is_complex:
            raise _Refusal(field, f"must be one number, not a tensor of shape {tuple(value.shape)}")
        return float(value.item())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Refusal(field, f"must be a number, not {type(value).__name__}")
    return float(value)


def _check_step(value: object, field: str) -> None:
    """A step counter: a whole number from 0 to 2**53 (Adam divides by 1 - beta**step)."""
    step = _number(value, field)
    if not (math.isfinite(step) and 0 <= step <= MAX_COUNT and step == math.floor(step)):
        raise _Refusal(field, f"is {step:g}, not a whole number of steps from 0 to 2**53")


def _non_negative(value: object, field: str) -> None:
    """A value (a number, or every element of a tensor) that must not be below zero."""
    if isinstance(value, Tensor):
        if value.is_floating_point() and value.numel() and bool((value < 0).any()):
            raise _Refusal(field, f"holds negative values (down to {float(value.min()):g})")
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        raise _Refusal(field, f"is {value:g}; it must not be negative")


def _learning_rate(value: object, field: str, *, peak: bool) -> None:
    """A learning rate: a finite number >= 0 (schedules reach 0), > 0 for a schedule's peak.

    A zero peak would make a one-cycle schedule train nothing; a negative rate climbs the loss.
    """
    rate = _number(value, field)
    if not math.isfinite(rate) or rate < 0 or (peak and rate == 0):
        bound = "> 0 (the peak of its schedule)" if peak else ">= 0"
        raise _Refusal(field, f"is {rate:g}; a learning rate must be a finite number {bound}")


def _check_betas(value: object, field: str) -> None:
    """Adam's betas: two decay rates in [0, 1)."""
    betas = value if isinstance(value, (tuple, list)) else [value]
    for beta in betas:
        number = _number(beta, field)
        if not 0 <= number < 1:
            raise _Refusal(field, f"holds {number:g}; each beta must be in [0, 1)")


def _check_scaler(scaler: object) -> None:
    if scaler is None:
        return
    for key, value in _mapping(scaler, "scaler").items():
        if not isinstance(value, (int, float, bool)) and value is not None:
            raise _Refusal(f"scaler[{key!r}]", f"has an unexpected {type(value).__name__}")


def _check_callbacks(callbacks: object) -> None:
    for key, state in _mapping(callbacks, "callbacks").items():
        if not isinstance(key, str):
            raise _Refusal("callbacks", f"has a key {key!r} that is not a name")
        _mapping(state, f"callbacks[{key!r}]")


def _check_rng(rng: object, field: str = "rng") -> None:
    rng = _mapping(rng, field)
    for key in ("python", "numpy", "torch", "cuda"):
        if key not in rng:
            raise _Refusal(f"{field}.{key}", "is missing")
    python = rng["python"]
    if not (
        isinstance(python, (tuple, list))
        and len(python) == 3
        and isinstance(python[1], (tuple, list))
        and len(python[1]) == _PYTHON_STATE_LENGTH
        and all(isinstance(word, int) and 0 <= word < 2**32 for word in python[1])
        and (python[2] is None or isinstance(python[2], float))
    ):
        raise _Refusal(f"{field}.python", "is not a state of Python's random module")
    _check_python_state(python, f"{field}.python")
    numpy = _mapping(rng["numpy"], f"{field}.numpy")
    keys = _plain_tensor(numpy.get("keys"), f"{field}.numpy.keys")
    if keys.shape != (_NUMPY_KEYS,) or keys.dtype != torch.int64:
        raise _Refusal(f"{field}.numpy.keys", f"must be {_NUMPY_KEYS} int64 words")
    if bool((keys < 0).any()) or bool((keys >= 2**32).any()) or not bool(keys.any()):
        raise _Refusal(f"{field}.numpy.keys", "are not the words of a Mersenne Twister state")
    position = _count(numpy.get("position"), f"{field}.numpy.position", low=0)
    if position > _MT_POSITION_MAX:
        raise _Refusal(f"{field}.numpy.position", f"is {position}, outside 0..624")
    if numpy.get("has_gauss") not in (0, 1) or not isinstance(
        numpy.get("cached_gaussian"), (int, float)
    ):
        raise _Refusal(f"{field}.numpy", "has a bad Gaussian cache")
    _check_numpy_state(keys, position, numpy, f"{field}.numpy")
    state = _plain_tensor(rng["torch"], f"{field}.torch")
    expected = torch.get_rng_state()
    if state.shape != expected.shape or state.dtype != expected.dtype:
        raise _Refusal(f"{field}.torch", f"must be {expected.numel()} bytes")
    try:  # on a generator of its own: the process's stream is not touched
        torch.Generator().set_state(state)
    except RuntimeError as exc:
        raise _Refusal(f"{field}.torch", f"is not a generator state ({exc})") from None
    cuda = rng["cuda"]
    if not isinstance(cuda, (list, tuple)) or len(cuda) > 1024:
        raise _Refusal(f"{field}.cuda", "must be a list of generator states")
    for index, device_state in enumerate(cuda):
        tensor = _plain_tensor(device_state, f"{field}.cuda[{index}]")
        if tensor.dtype != torch.uint8 or tensor.dim() != 1 or tensor.numel() > _CUDA_STATE_BYTES:
            raise _Refusal(f"{field}.cuda[{index}]", "is not a CUDA generator state")


def _check_python_state(python: Any, field: str) -> None:
    """Python's generator state, tried on a generator of its own (``random.setstate`` rules)."""
    words = python[1]
    if not any(words[:-1]):
        raise _Refusal(field, "is all zeros, which no generator reaches")
    try:
        random.Random().setstate((python[0], tuple(words), python[2]))
    except (TypeError, ValueError, OverflowError) as exc:
        raise _Refusal(field, f"is not a state of Python's random module ({exc})") from None


def _check_numpy_state(keys: Tensor, position: int, numpy: Mapping[Any, Any], field: str) -> None:
    """NumPy's legacy generator state, tried on a generator of its own."""
    state = ("MT19937", keys.numpy().astype(np.uint32), position, numpy["has_gauss"])
    try:
        np.random.RandomState().set_state((*state, float(numpy["cached_gaussian"])))
    except (TypeError, ValueError, OverflowError) as exc:
        raise _Refusal(field, f"is not a state of NumPy's generator ({exc})") from None


def _check_mid_epoch(mid_epoch: object) -> None:
    """The part of a checkpoint written inside an epoch (see ``lenetish.training.resume``)."""
    mid_epoch = _mapping(mid_epoch, "mid_epoch")
    for key in ("batches_done", "rng", "score", "metrics", "logged"):
        if key not in mid_epoch:
            raise _Refusal(f"mid_epoch.{key}", "is missing")
    _count(mid_epoch["batches_done"], "mid_epoch.batches_done", low=0)
    if "validated_at" in mid_epoch:
        _count(mid_epoch["validated_at"], "mid_epoch.validated_at", low=0)
    _check_rng(mid_epoch["rng"], "mid_epoch.rng")
    for key in ("score", "metrics"):  # their contents are checked as they load
        for name, value in _mapping(mid_epoch[key], f"mid_epoch.{key}").items():
            if isinstance(value, Tensor):
                _plain_tensor(value, f"mid_epoch.{key}[{name!r}]")
    for name, value in _mapping(mid_epoch["logged"], "mid_epoch.logged").items():
        field = f"mid_epoch.logged[{name!r}]"
        if not isinstance(name, str):
            raise _Refusal("mid_epoch.logged", f"has a key {name!r} that is not a name")
        if isinstance(value, Tensor):
            if _plain_tensor(value, field).numel() != 1:
                raise _Refusal(field, "must hold one number")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Refusal(field, f"must be a number, not {type(value).__name__}")
