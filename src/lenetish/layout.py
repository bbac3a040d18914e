"""Whether a model may run channels-last (NHWC): declared by its class, or checked on a batch.

Channels-last lets oneDNN and cuDNN pick their fastest convolutions, and for a network that
only convolves, pools and flattens with ``torch.flatten`` the values are the same up to
rounding. A network that flattens with ``.view`` (the seed blog's, and most MNIST code on the
web) cannot take channels-last activations, and one that reads a tensor's memory directly can
give other numbers. So the layout is an automatic speed-up only where it is shown to keep the
model's results:

* a network class declares it with ``lenetish_fast_path = True`` (lenetish's own do; the
  declaration counts only on the class that defines ``forward``, so a subclass with its own
  ``forward`` must declare it again), or
* :func:`channels_last_problem` runs a copy of the model in eval mode on a few images of a
  real batch in both layouts and compares the outputs; the verdict is kept per model, and
  found again when its structure changes (a submodule replaced, a forward hook added).

Otherwise the model runs in its own layout and the caller logs one line saying why.
"""

from __future__ import annotations

import copy
import sys
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "CHECK_IMAGES",
    "FAST_PATH_ATTRIBUTE",
    "Convert",
    "LayoutRecord",
    "channels_last_problem",
    "compiled_forward",
    "declares_fast_path",
    "layout_verdict",
    "match_optimizer_layout",
    "module_channels_last",
    "private_copy",
    "record_layout",
    "restore_layout",
    "set_compiled_forward",
    "strict_channels_last",
]

#: The class attribute a network sets to say that it runs channels-last and under bf16
#: autocast with the same results (lenetish's own networks, measured).
FAST_PATH_ATTRIBUTE = "lenetish_fast_path"

#: Images of the first batch that the layout check runs (enough to exercise every layer).
CHECK_IMAGES = 8

Convert = Callable[[nn.Module], None]

_VerdictKey = tuple[Convert, tuple[object, ...]]


class _Structure:
    """What a layout verdict depends on besides the weights' values, to tell when it changed.

    The structure of a model, not its weights, decides its verdict; but a user may change
    the structure after a first fit or predict (replace a submodule, add a forward hook,
    assign another ``forward``), and a verdict for the old structure would then be applied
    to the new one. So a verdict is kept with this record of every submodule (name, class,
    identity), its ``forward`` function, its forward hooks and the shapes and dtypes of its
    own parameters and buffers, plus torch's global forward hooks; it is reused only while
    the record is unchanged.

    Objects are recorded by ``id`` and watched through weak references: an id is equal
    only while its object lives (a replaced submodule that was freed could leave its id to
    the new one), so a dead reference also counts as a change. An object that takes no weak
    reference is held instead, which keeps its id from being reused.
    """

    def __init__(self, model: nn.Module) -> None:
        ids: list[object] = [_hook_ids(torch.nn.modules.module, "_global")]
        self._watched: list[weakref.ref[Any]] = []
        self._held: list[object] = []
        for name, module in model.named_modules(remove_duplicate=False):
            forward = vars(module).get("forward", getattr(type(module), "forward", None))
            ids.append((name, id(type(module)), self._watch(module), self._watch(forward)))
            ids.append(_hook_ids(module))
            own = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
            ids.extend((key, tuple(tensor.shape), str(tensor.dtype)) for key, tensor in own)
        self.ids = tuple(ids)  # ints, names and shapes: compared without any module's __eq__

    def _watch(self, value: object) -> int:
        try:
            self._watched.append(weakref.ref(value))
        except TypeError:  # e.g. a method-wrapper: held, so its id stays its own
            self._held.append(value)
        return id(value)

    def matches(self, other: _Structure) -> bool:
        """Whether ``other`` (the model as it is now) has the structure recorded here."""
        return self.ids == other.ids and all(ref() is not None for ref in self._watched)


# torch keeps forward hooks in dicts keyed by the id of their handle, a new id for every
# registration: a module's in these attributes, the global ones (register_module_forward_hook)
# under the same names with "_global" in front, in torch.nn.modules.module.
_HOOK_TABLES = ("_forward_hooks", "_forward_pre_hooks")


def _hook_ids(owner: object, prefix: str = "") -> tuple[tuple[object, ...], ...]:
    """The handle ids of the forward hooks ``owner`` holds (``prefix``: before their names)."""
    tables = [getattr(owner, prefix + name, None) for name in _HOOK_TABLES]
    return tuple(tuple(table) if isinstance(table, dict) else () for table in tables)


# Verdicts per model object, kept with the structure they were found for: None
# (channels-last keeps its outputs) or the reason it does not, per convert and kind of sample.
_VERDICTS: weakref.WeakKeyDictionary[
    nn.Module, tuple[_Structure, dict[_VerdictKey, str | None]]
] = weakref.WeakKeyDictionary()


_DELEGATES: dict[type[nn.Module], Callable[[Any], nn.Module]] = {}


def declares_fast_path(model: nn.Module) -> bool:
    """Whether ``model``'s class declares ``lenetish_fast_path = True`` where ``forward`` is.

    A :class:`~lenetish.ModelStack` declares it when its members' network does.

    Example:
        >>> from lenetish.layout import declares_fast_path
        >>> from lenetish import MNISTConvNet
        >>> declares_fast_path(MNISTConvNet())
        True
        >>> declares_fast_path(torch.nn.Linear(2, 2))
        False
    """
    for model_type, inner in _DELEGATES.items():  # a ModelStack answers for its members
        if isinstance(model, model_type):
            return declares_fast_path(inner(model))
    for klass in type(model).__mro__:
        if "forward" in vars(klass):
            return vars(klass).get(FAST_PATH_ATTRIBUTE, False) is True
    return False


def runs_members(model: nn.Module) -> bool:
    """Whether ``model`` is of a kind that runs other networks (a registered stack type)."""
    return any(isinstance(model, model_type) for model_type in _DELEGATES)


def delegate_fast_path(model_type: type[nn.Module], inner: Callable[[Any], nn.Module]) -> None:
    """Let models of ``model_type`` declare the fast path when ``inner(model)`` does.

    The stack package registers :class:`~lenetish.ModelStack` here (its members' network
    decides), so that this module needs no import of it.
    """
    _DELEGATES[model_type] = inner


def _tensors(output: object) -> Iterator[Tensor]:
    """The tensors of a forward pass's result (a tensor, or nested tuples, lists and dicts)."""
    if isinstance(output, Tensor):
        yield output
    elif isinstance(output, (tuple, list)):
        for item in output:
            yield from _tensors(item)
    elif isinstance(output, dict):
        for item in output.values():
            yield from _tensors(item)


def _same_outputs(reference: object, candidate: object) -> str | None:
    """``None`` if ``candidate`` equals ``reference`` up to float rounding, else how it differs."""
    expected, got = list(_tensors(reference)), list(_tensors(candidate))
    if [a.shape for a in expected] != [b.shape for b in got]:
        return "its outputs have another structure or shape channels-last"
    for a, b in zip(expected, got, strict=True):
        a, b = a.detach().double(), b.detach().double()
        scale = max(1.0, float(a.abs().max())) if a.numel() else 1.0
        if not torch.allclose(a, b, rtol=1e-3, atol=1e-4 * scale, equal_nan=True):
            gap = float((a - b).abs().nan_to_num(nan=float("inf")).max())
            return f"its outputs change channels-last (largest difference {gap:.3g})"
    return None


def _first_line(exc: BaseException) -> str:
    """``Type: message``, the message cut to its first line and before any parenthesis."""
    text = str(exc).strip().splitlines()
    first = text[0].split(" (")[0][:120] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def module_channels_last(model: nn.Module) -> None:
    """``model.to(memory_format=torch.channels_last)``: how a fit lays out its model.

    A tensor whose strides already pass the channels-last test (a weight with one input
    channel) keeps them.

    Example:
        >>> from lenetish.layout import module_channels_last
        >>> conv = torch.nn.Conv2d(2, 4, 3)
        >>> module_channels_last(conv)
        >>> conv.weight.is_contiguous(memory_format=torch.channels_last)
        True
    """
    model.to(memory_format=torch.channels_last)


def strict_channels_last(model: nn.Module) -> None:
    """Give every 4-d parameter explicit channels-last strides: how inference lays out a copy.

    The strides are compared, not ``is_contiguous(memory_format=...)``: a weight with one
    input channel (a first convolution) passes both checks, yet only explicit channels-last
    strides make the convolution produce channels-last output (measured: max-pooling its
    NCHW output took half of ``predict``'s time).

    Example:
        >>> from lenetish.layout import strict_channels_last
        >>> first = torch.nn.Conv2d(1, 4, 3)  # one input channel: ambiguous strides
        >>> strict_channels_last(first)
        >>> first.weight.stride()
        (9, 1, 3, 1)
    """
    for parameter in model.parameters():
        if parameter.dim() == 4:
            converted = parameter.data.to(memory_format=torch.channels_last)
            if converted.stride() != parameter.data.stride():
                parameter.data = converted


def channels_last_problem(
    model: nn.Module, sample: Tensor, convert: Convert = module_channels_last
) -> str | None:
    """Why ``model`` cannot run channels-last on batches like ``sample`` (``None``: it can).

    Runs a private copy of the model in eval mode, without gradients and with the random
    state put back afterwards, on the first :data:`CHECK_IMAGES` images of ``sample`` in its
    own layout and then laid out by ``convert`` with channels-last input, and compares the
    outputs within float32 rounding. The model itself is not touched.

    Args:
        model: the network (or stack) to check.
        sample: a batch ``(N, C, H, W)`` as the model will see it.
        convert: lays a model out channels-last, as the caller will
            (:func:`module_channels_last` or :func:`strict_channels_last`).

    Returns:
        ``None``, or a short reason (the error channels-last raised, or how the outputs
        differ) for the log line or error message.

    Raises:
        Exception: whatever the model's forward raises in its own layout (eval mode): that
            is the model's own error, which the caller's first real step would raise too.

    Example:
        >>> from lenetish.layout import channels_last_problem
        >>> from lenetish import MNISTConvNet
        >>> channels_last_problem(MNISTConvNet(), torch.rand(4, 1, 28, 28)) is None
        True
        >>> class ViewNet(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.conv = torch.nn.Conv2d(2, 4, 3)
        ...     def forward(self, x):
        ...         return self.conv(x).view(-1, 4 * 26 * 26)
        >>> print(channels_last_problem(ViewNet(), torch.rand(4, 2, 28, 28)))  # doctest: +ELLIPSIS
        its forward raises RuntimeError: view size is not compatible ... on channels-last input
    """
    if sample.dim() != 4:
        return f"its inputs are {sample.dim()}-dimensional, not images (N, C, H, W)"
    try:
        twin = private_copy(model)
    except Exception as exc:  # any failure to copy means "cannot check"
        return f"it cannot be copied for the check ({_first_line(exc)})"
    images = sample[:CHECK_IMAGES].detach()
    cuda = [images.device] if images.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda), torch.no_grad():
        # Explicit NCHW strides: .contiguous() keeps the channels-last strides of a tensor
        # with one channel, which is both "contiguous" and "channels-last contiguous".
        reference = twin(images.clone(memory_format=torch.contiguous_format))  # may raise
        try:
            convert(twin)
            candidate = twin(images.contiguous(memory_format=torch.channels_last))
        except Exception as exc:  # the reason goes into the log line
            return f"its forward raises {_first_line(exc)} on channels-last input"
    return _same_outputs(reference, candidate)


def layout_verdict(
    model: nn.Module, sample: Tensor, convert: Convert = module_channels_last
) -> str | None:
    """:func:`channels_last_problem`, run once per model object, ``convert`` and kind of sample.

    A model whose class declares ``lenetish_fast_path`` is not checked. The verdict is kept
    while the model's structure stays as it was (its submodules, their ``forward``, forward
    hooks and parameter shapes) and samples have the same image shape, dtype and device
    type; a model changed after its first check is checked again.

    Example:
        >>> from lenetish.layout import layout_verdict
        >>> from lenetish import MNISTConvNet
        >>> layout_verdict(MNISTConvNet(), torch.rand(2, 1, 28, 28)) is None  # declared
        True
    """
    if declares_fast_path(model):
        return None
    structure = _Structure(model)
    kept = _VERDICTS.get(model)
    if kept is None or not kept[0].matches(structure):
        kept = _VERDICTS[model] = (structure, {})
    # The image size, dtype and device type pick the kernels, so they are part of the key.
    key = (convert, (tuple(sample.shape[1:]), str(sample.dtype), sample.device.type))
    verdicts = kept[1]
    if key not in verdicts:
        verdicts[key] = channels_last_problem(model, sample, convert)
    return verdicts[key]


def _compiled_wrapper_class() -> type | None:
    # torch.compile(model) returns an OptimizedModule; only present once dynamo was imported.
    module = sys.modules.get("torch._dynamo.eval_frame")
    return getattr(module, "OptimizedModule", None) if module is not None else None


def private_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` that runs eagerly, in eval mode, sharing nothing with it.

    A compiled model's copy runs its plain ``forward`` (a compiled wrapper would call the
    original module, not the copy); the outputs are the same.

    Raises:
        Exception: whatever ``copy.deepcopy`` raises for a model that cannot be copied.

    Example:
        >>> from lenetish.layout import private_copy
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout()).train()
        >>> twin = private_copy(model)
        >>> twin.training, model.training, twin[0].weight is model[0].weight
        (False, True, False)
    """
    wrapper = _compiled_wrapper_class()
    if wrapper is not None and isinstance(model, wrapper):
        wrapped = getattr(model, "_orig_mod")  # noqa: B009 - the network torch.compile wrapped
        model = wrapped if isinstance(wrapped, nn.Module) else model
    twin = copy.deepcopy(model)
    for module in twin.modules():
        if compiled_forward(module) is not None:
            set_compiled_forward(module, None)  # Module.compile()'s: calls the original
    return twin.eval()


# torch has no public way to read or undo Module.compile(): it stores the compiled call in
# the module's own attribute _compiled_call_impl (None when not compiled). These two
# functions are the only places lenetish touches it.
_COMPILED_CALL = "_compiled_call_impl"


def compiled_forward(module: nn.Module) -> Callable[..., Any] | None:
    """What :meth:`torch.nn.Module.compile` set on ``module`` (``None``: not compiled)."""
    compiled = vars(module).get(_COMPILED_CALL)
    return compiled if callable(compiled) else None


def set_compiled_forward(module: nn.Module, compiled: Callable[..., Any] | None) -> None:
    """Put back (or, with ``None``, remove) what :meth:`torch.nn.Module.compile` set."""
    setattr(module, _COMPILED_CALL, compiled)


LayoutRecord = list[tuple[Tensor, tuple[int, ...]]]


def record_layout(model: nn.Module) -> LayoutRecord:
    """Every parameter's and buffer's strides, for :func:`restore_layout`."""
    tensors = [*model.parameters(), *model.buffers()]
    return [(tensor, tensor.stride()) for tensor in tensors]


def _relaid(value: Tensor, stride: tuple[int, ...]) -> Tensor:
    laid_out = torch.empty_strided(value.shape, stride, dtype=value.dtype, device=value.device)
    return laid_out.copy_(value)


def restore_layout(record: LayoutRecord) -> None:
    """Give every recorded tensor (and a parameter's gradient) its recorded strides again.

    The values are kept; only their order in memory changes back, so a user's model leaves
    a fit laid out as it came (``safetensors`` refuses some channels-last tensors).
    """
    for tensor, stride in record:
        if tensor.stride() != stride:
            tensor.data = _relaid(tensor.data, stride)
        grad = tensor.grad
        if grad is not None and grad.shape == tensor.shape and grad.stride() != stride:
            tensor.grad = _relaid(grad, stride)


def match_optimizer_layout(optimizer: torch.optim.Optimizer) -> None:
    """Lay out every per-parameter optimizer state tensor like its parameter.

    Fused and foreach optimizers read a state tensor in memory order, so a moment saved from
    a channels-last fit and restored into a contiguous one (or the reverse) would update the
    wrong elements, and so would any strided view a checkpoint holds, of any number of
    dimensions (a 1-D moment with stride 2 included). Values are kept; only their memory
    order changes.
    """
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            state = optimizer.state.get(parameter)
            if not state:
                continue
            for key, value in list(state.items()):
                if (
                    isinstance(value, Tensor)
                    and value.shape == parameter.shape
                    and value.stride() != parameter.stride()
                ):
                    state[key] = _relaid(value, parameter.stride())
