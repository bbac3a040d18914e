"""Channels-last for ``.view`` networks: their own forward, with ``.view`` run as ``.reshape``.

Most MNIST networks flatten with ``x.view(-1, 1200)`` (the seed blog's class, pytorch/examples'
``Net``). ``view`` needs memory in NCHW order, so such a network cannot take channels-last
activations and loses the fastest convolutions. ``reshape`` gives the same values (on an NCHW
tensor it *is* ``view``; on a channels-last one it copies into that order). So
:class:`ReshapeTwin` runs the network's own call (its hooks and ``forward``) under a
:class:`~torch.overrides.TorchFunctionMode` that turns each shape ``view`` into ``reshape``.
The mode is active only in the thread running the network, for the length of its call (torch
keeps the mode stack per thread), and nothing is traced or rewritten, so the forward runs as
written: its Python, its ``self.training`` branches, its hooks.

The twin is used only where a check shows the network's outputs unchanged, channels-last and
through the twin, against its own layout (:func:`lenetish.layout.layout_verdict` with
:func:`twin_channels_last` or :func:`twin_strict_channels_last` as the layout), and never for
a compiled network. A fit runs the twin in place of the network's call
(:func:`lenetish.layout.set_compiled_forward`) and takes it away when it ends; ``predict``
and ``evaluate`` run it on their private copies. The network object is left as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from lenetish.layout import (
    compiled_forward,
    module_channels_last,
    runs_members,
    set_compiled_forward,
    strict_channels_last,
)

__all__ = ["ReshapeTwin", "install_twin", "twin_channels_last", "twin_strict_channels_last"]


def _reinterprets_bits(args: Sequence[Any], kwargs: Mapping[str, Any]) -> bool:
    """Whether a ``view`` call is ``view(dtype)``: a reinterpretation, not a shape."""
    return "dtype" in kwargs or (len(args) == 2 and isinstance(args[1], torch.dtype))


class _ViewAsReshape(TorchFunctionMode):
    """Tensor ``.view(shape)`` calls become ``.reshape(shape)`` while the mode is active."""

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func is torch.Tensor.view and not _reinterprets_bits(args, kwargs):
            func = torch.Tensor.reshape
        return func(*args, **kwargs)


class ReshapeTwin:
    """Calls a network as ``network(...)`` would, with ``.view`` run as ``.reshape``.

    Args:
        network: the module whose call (forward hooks and ``forward``) the twin runs.

    Example:
        >>> import torch.nn.functional as F
        >>> class ViewNet(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.conv = torch.nn.Conv2d(1, 4, 3)
        ...     def forward(self, x):
        ...         return F.relu(self.conv(x)).view(-1, 4 * 26 * 26)
        >>> model = ViewNet()
        >>> images = torch.rand(2, 1, 28, 28).contiguous(memory_format=torch.channels_last)
        >>> model.to(memory_format=torch.channels_last)  # doctest: +ELLIPSIS
        ViewNet(...)
        >>> ReshapeTwin(model).forward(images).shape  # model(images) would raise
        torch.Size([2, 2704])
    """

    def __init__(self, network: nn.Module) -> None:
        self.network = network

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The network's call, hooks included, under the view-as-reshape mode."""
        with _ViewAsReshape():
            # _call_impl is what network(...) runs when nothing replaces its call; calling
            # network(...) here would come back to this twin.
            return self.network._call_impl(*args, **kwargs)  # type: ignore[no-untyped-call]


def install_twin(module: nn.Module) -> None:
    """Make ``module(...)`` run through its :class:`ReshapeTwin` (undo: ``set_compiled_forward``).

    Raises:
        RuntimeError: the module is compiled (its call is compiled code already).
    """
    if compiled_forward(module) is not None:
        raise RuntimeError("it is compiled, so its call cannot run through a reshape twin")
    if runs_members(module):  # a stack's fit runs its members' own calls, not the stack's
        raise RuntimeError("it runs other networks, whose calls a reshape twin would not reach")
    # The bound method is not a submodule: the module's state_dict is unchanged.
    set_compiled_forward(module, ReshapeTwin(module).forward)


def twin_channels_last(module: nn.Module) -> None:
    """How a fit lays out a ``.view`` network: channels-last, called through its twin."""
    install_twin(module)
    module_channels_last(module)


def twin_strict_channels_last(module: nn.Module) -> None:
    """How ``predict`` lays out a ``.view`` network's copy: strict channels-last, its twin."""
    install_twin(module)
    strict_channels_last(module)
