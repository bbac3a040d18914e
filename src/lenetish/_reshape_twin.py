"""A traced twin of a network with ``.reshape`` for ``.view``: channels-last for ``.view`` nets.

Most MNIST networks flatten with ``x.view(-1, 1200)`` (the seed blog's class, pytorch/examples'
``Net``). ``view`` needs memory in NCHW order, so such a network cannot take channels-last
activations, and loses the fastest convolutions. ``reshape`` gives the same values (on an NCHW
tensor it *is* ``view``; on a channels-last one it copies into that order). So
:func:`reshape_twin` traces the network with :mod:`torch.fx` and swaps each tensor ``view``
for ``reshape``; the twin calls the network's own submodules and parameters, so training the
twin trains the network. The twin is used only where it is the same program as the network:

* tracing must succeed, and give the same graph in training and in eval mode (a forward that
  reads ``self.training``, e.g. ``F.dropout(x, training=self.training)``, or branches on
  anything fixed at trace time, is refused);
* the network has no forward hooks of its own and is not compiled (the twin would skip them);
* and the caller still checks the twin's outputs channels-last against the network's own
  (:func:`lenetish.layout.layout_verdict`) before using it.

The network object itself is never changed: a fit runs the twin in place of its forward
(:func:`lenetish.layout.set_compiled_forward`, with the twin's bound ``forward``, which is
not a submodule, so the network's ``state_dict`` is unchanged) and takes it away when it ends.
"""

from __future__ import annotations

import torch
from torch import nn

from lenetish.layout import compiled_forward

__all__ = ["ReshapeTwin", "reshape_twin"]


class ReshapeTwin(nn.Module):
    """A network's traced forward with ``view`` as ``reshape``, sharing its submodules.

    Attributes:
        graph_module: the traced program (a :class:`torch.fx.GraphModule`).
        views: how many ``view`` calls became ``reshape``.
    """

    def __init__(self, graph_module: torch.fx.GraphModule, views: int) -> None:
        super().__init__()
        self.graph_module = graph_module
        self.views = views

    def forward(self, *args: object, **kwargs: object) -> object:
        """The network's forward, with ``reshape`` for ``view``."""
        return self.graph_module(*args, **kwargs)


def _trace(model: nn.Module, training: bool) -> torch.fx.GraphModule:
    """``model`` traced in training or eval mode (its modes put back)."""
    modes = [module.training for module in model.modules()]
    try:
        model.train(training)
        return torch.fx.symbolic_trace(model)
    finally:
        for module, mode in zip(model.modules(), modes, strict=True):
            module.training = mode


def _has_hooks(model: nn.Module) -> bool:
    """Whether ``model`` itself has forward hooks, which a traced program would not run."""
    hooks = ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs")
    return any(bool(getattr(model, name, None)) for name in hooks)


def _views_as_reshape(graph_module: torch.fx.GraphModule) -> int:
    """Turn every ``.view(...)`` method call on a tensor into ``.reshape(...)``; count them.

    A ``view`` whose first argument is a dtype (a reinterpretation of bits, not a shape) is
    left alone, and so the network is refused by the caller if that is the only one.
    """
    changed = 0
    for node in graph_module.graph.nodes:
        if node.op != "call_method" or node.target != "view":
            continue
        if len(node.args) > 1 and isinstance(node.args[1], torch.dtype):
            continue
        node.target = "reshape"
        changed += 1
    if changed:
        graph_module.graph.lint()
        graph_module.recompile()
    return changed


def reshape_twin(model: nn.Module) -> tuple[ReshapeTwin | None, str]:
    """A :class:`ReshapeTwin` of ``model``, or ``None`` and why there is none.

    Args:
        model: the user's network (left as it is: modes put back, nothing assigned).

    Returns:
        ``(twin, "")``, or ``(None, reason)`` for the log line.

    Example:
        >>> import torch.nn.functional as F
        >>> class ViewNet(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.conv = torch.nn.Conv2d(1, 4, 3)
        ...     def forward(self, x):
        ...         return F.relu(self.conv(x)).view(-1, 4 * 26 * 26)
        >>> model = ViewNet()
        >>> twin, _ = reshape_twin(model)
        >>> images = torch.rand(2, 1, 28, 28)
        >>> bool(torch.equal(twin(images), model(images))), twin.views
        (True, 1)
        >>> twin.graph_module.conv is model.conv  # the network's own layer, not a copy
        True
    """
    if compiled_forward(model) is not None:
        return None, "it is compiled"
    if _has_hooks(model):
        return None, "it has forward hooks of its own"
    try:
        training, evaluating = _trace(model, True), _trace(model, False)
    except Exception as exc:  # any Python the tracer cannot follow: step aside
        first = str(exc).strip().splitlines()[0][:100] if str(exc).strip() else ""
        return None, f"torch.fx cannot trace it ({type(exc).__name__}: {first})"
    if training.code != evaluating.code:
        return None, "its traced forward differs between training and eval mode"
    views = _views_as_reshape(training)
    if not views:
        return None, "it has no tensor .view call to rewrite"
    return ReshapeTwin(training, views), ""
