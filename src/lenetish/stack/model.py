"""ModelStack: k independently initialised copies of one network, run and trained together.

Every parameter and buffer of the members is stacked along a new first dimension of size
``k`` (batch-norm statistics included, so each member keeps its own), and one forward pass
runs every member on the batch, returning ``(k, N, ...)``. The loss of a stack is the sum of
its members' losses, so each member's gradient is exactly its own and an element-wise
optimizer (SGD, Adam, weight decay) updates each member as if it were trained alone.

How the members run is chosen per device (``execution="auto"``): on CUDA, vectorised with
:func:`torch.func.vmap` of :func:`torch.func.functional_call`; on the CPU, one member after
another inside the same forward pass, each on its own slice of the stacked tensors (measured
faster there: see ``benchmarks/stack_speed.py``). Both give the same results.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, Literal, get_args

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from typing_extensions import TypeVar

from lenetish._checks import check_positive_int
from lenetish.data.identity import recorded_dataset, remember_dataset
from lenetish.errors import InvalidArgumentError
from lenetish.layout import delegate_fast_path
from lenetish.losses import class_scores, recorded_output_kind, remember_output_kind

__all__ = ["EXECUTIONS", "Execution", "Inputs", "Member", "ModelStack"]

Execution = Literal["auto", "vmap", "loop"]
EXECUTIONS: tuple[Execution, ...] = get_args(Execution)
Inputs = Literal["shared", "split"]

#: The members' network class: ``ModelStack(MNISTConvNet, 3).unstack()`` is typed
#: ``list[MNISTConvNet]``.
Member = TypeVar("Member", bound=nn.Module, default=nn.Module)


def _stacked_layout(value: Tensor, memory_format: torch.memory_format) -> Tensor:
    """``value`` (k, ...) laid out so that each member's slice is laid out as a plain network's.

    A slice gets the strides ``slice.to(memory_format=...)`` would give it (as ``Module.to``
    does to the 4- and 5-dimensional tensors of one network).
    """
    if value.dim() - 1 not in (4, 5):
        return value
    strides = value[0].to(memory_format=memory_format).stride()
    laid_out = torch.empty_strided(
        value.shape, (value[0].numel(), *strides), dtype=value.dtype, device=value.device
    )
    return laid_out.copy_(value)


class ModelStack(nn.Module, Generic[Member]):
    """``k`` copies of a network, each initialised under its own seed, run together.

    Train it with the same :class:`~lenetish.Trainer` as one network: the loss is the sum of
    the members' losses, History rows hold the mean (``loss``, ``accuracy``) and each
    member's values (``loss/0``, ``accuracy/0``...), and :func:`~lenetish.evaluate` reports
    every member's accuracy, their mean and spread, and the ensemble's accuracy.

    Args:
        factory: builds one member, e.g. ``MNISTConvNet`` or ``lambda: MNISTConvNet(hidden=
            100)``; it is called ``k`` times, member ``i`` under ``torch.manual_seed(seeds[i])``
            (the caller's random state is left as it was).
        k: the number of members.
        seeds: one seed per member (default ``0, 1, ..., k-1``).
        execution: ``"auto"`` (vectorised on CUDA, members in turn on the CPU), ``"vmap"`` or
            ``"loop"``; the results are the same.
        inputs: ``"shared"``: every member runs on the whole batch; ``"split"``: in training
            mode a batch holds one equal part per member, in member order (what a
            :class:`~lenetish.StackLoader` yields: each member its own data order), while in
            eval mode every member still runs on the whole batch.

    Attributes:
        k: the number of members.
        seeds: the members' seeds.
        stacked: the members' common structure, holding the stacked parameters and buffers
            (``(k, ...)`` each); run it through :meth:`forward`, never directly.

    Raises:
        InvalidArgumentError: ``factory`` is not callable or does not build an
            ``nn.Module``, ``k`` is not a positive integer, ``seeds`` does not hold ``k``
            integers, ``execution`` or ``inputs`` is unknown, or the members differ in
            structure.

    Example:
        >>> from lenetish import MNISTConvNet
        >>> stack = ModelStack(MNISTConvNet, 3)
        >>> stack(torch.zeros(5, 1, 28, 28)).shape
        torch.Size([3, 5, 10])
        >>> first = stack.unstack()[0]  # an ordinary MNISTConvNet
        >>> torch.equal(first(torch.zeros(1, 1, 28, 28)), stack(torch.zeros(1, 1, 28, 28))[0])
        True
    """

    def __init__(
        self,
        factory: Callable[[], Member],
        k: int,
        *,
        seeds: Sequence[int] | None = None,
        execution: Execution = "auto",
        inputs: Inputs = "shared",
    ) -> None:
        super().__init__()
        if not callable(factory):
            raise InvalidArgumentError(
                f"factory must be a callable that builds a network, got {factory!r}"
            )
        check_positive_int("k", k)
        chosen = list(range(k)) if seeds is None else list(seeds)
        if len(chosen) != k or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in chosen
        ):
            raise InvalidArgumentError(
                f"seeds must hold k={k} integers (one per member), got {seeds!r}"
            )
        if execution not in EXECUTIONS:
            raise InvalidArgumentError(
                f"execution={execution!r} is not supported; use one of {', '.join(EXECUTIONS)}"
            )
        if inputs not in ("shared", "split"):
            raise InvalidArgumentError(
                f"inputs={inputs!r} is not supported; use 'shared' or 'split'"
            )
        members = [self._build(factory, seed) for seed in chosen]
        self.k, self.seeds, self.execution, self.inputs = k, tuple(chosen), execution, inputs
        self.stacked = copy.deepcopy(members[0])
        for name, value in self._stacked_values(members).items():
            owner, _, attribute = name.rpartition(".")
            module = self.stacked.get_submodule(owner)
            if isinstance(getattr(module, attribute), nn.Parameter):
                value = nn.Parameter(value, requires_grad=getattr(module, attribute).requires_grad)
            setattr(module, attribute, value)
        self.train(members[0].training)

    @staticmethod
    def _build(factory: Callable[[], Member], seed: int) -> Member:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            member = factory()
        if not isinstance(member, nn.Module):
            raise InvalidArgumentError(
                f"factory must build a torch.nn.Module, got {type(member).__name__}"
            )
        return member

    @staticmethod
    def _stacked_values(members: Sequence[nn.Module]) -> dict[str, Tensor]:
        """Every parameter and buffer of the members, stacked; the members must match."""
        tensors = [{**dict(m.named_parameters()), **dict(m.named_buffers())} for m in members]
        shapes = {name: value.shape for name, value in tensors[0].items()}
        for index, named in enumerate(tensors[1:], start=1):
            if {name: value.shape for name, value in named.items()} != shapes:
                raise InvalidArgumentError(
                    f"member {index} has other parameters or shapes than member 0: the "
                    "factory must build the same network each time"
                )
        return {
            name: torch.stack([named[name].detach() for named in tensors]).contiguous()
            for name in shapes
        }

    def member_tensors(self, index: int) -> dict[str, Tensor]:
        """Member ``index``'s parameters and buffers: views into the stacked tensors."""
        return {name: value[index] for name, value in self._named_tensors()}

    def _named_tensors(self) -> Iterator[tuple[str, Tensor]]:
        yield from self.stacked.named_parameters()
        yield from self.stacked.named_buffers()

    @property
    def vectorised(self) -> bool:
        """Whether :meth:`forward` runs the members with ``vmap`` (else in turn)."""
        if self.execution != "auto":
            return self.execution == "vmap"
        parameter = next(self.stacked.parameters(), None)
        return parameter is not None and parameter.device.type == "cuda"

    def forward(self, inputs: Tensor) -> Tensor:
        """Run every member on ``inputs`` ``(N, ...)``; returns ``(k, N, ...)``.

        With ``inputs="split"`` in training mode, member ``i`` runs on the ``i``-th of ``k``
        equal parts of ``inputs`` ``(k * n, ...)`` and the result is ``(k, n, ...)``.

        Raises:
            InvalidArgumentError: a split batch does not divide into ``k`` equal parts.
            UnsupportedModelError: the members return a tuple or a dict, not one tensor.
        """
        split = self.inputs == "split" and self.training
        batches = self.member_inputs(inputs)
        if self.vectorised:
            names = [name for name, _ in self._named_tensors()]
            values = tuple(value for _, value in self._named_tensors())

            def one(member: tuple[Tensor, ...], batch: Tensor) -> Tensor:
                result = functional_call(
                    self.stacked, dict(zip(names, member, strict=True)), (batch,)
                )
                return class_scores(result, who=type(self.stacked).__name__)

            if split:
                parts = inputs.reshape(self.k, -1, *inputs.shape[1:])
                return vmap(one, in_dims=(0, 0), randomness="different")(values, parts)
            run = vmap(one, in_dims=(0, None), randomness="different")
            return run(values, inputs)
        # One unbind per tensor: its backward stacks the members' gradients once (indexing
        # each member would scatter every gradient into a full-size zero tensor).
        slices = {name: value.unbind(0) for name, value in self._named_tensors()}
        outputs = [
            class_scores(
                functional_call(
                    self.stacked, {name: parts[i] for name, parts in slices.items()}, (batches[i],)
                ),
                who=type(self.stacked).__name__,
            )
            for i in range(self.k)
        ]
        return torch.stack(outputs)

    def member_inputs(self, inputs: Tensor) -> list[Tensor]:
        """What each member runs on: its part of a split training batch, else the batch.

        Raises:
            InvalidArgumentError: a split batch does not divide into ``k`` equal parts.
        """
        if not (self.inputs == "split" and self.training):
            return [inputs] * self.k
        if inputs.shape[0] % self.k:
            raise InvalidArgumentError(
                f"a batch of {inputs.shape[0]} cannot be split between {self.k} members: with "
                "inputs='split' train on a StackLoader, which gives each member its own part"
            )
        return list(inputs.chunk(self.k))

    def to(self, *args: Any, **kwargs: Any) -> ModelStack[Member]:
        """Like :meth:`torch.nn.Module.to`; ``memory_format`` applies to each member's slice.

        Returns:
            The stack itself.
        """
        memory_format = kwargs.pop("memory_format", None)
        if args or kwargs:
            super().to(*args, **kwargs)
        if memory_format is not None:
            with torch.no_grad():
                for parameter in self.stacked.parameters():
                    parameter.data = _stacked_layout(parameter.data, memory_format)
        return self

    def unstack(self) -> list[Member]:
        """The ``k`` members as ordinary networks (copies; training does not reach them).

        Returns:
            ``k`` modules of the factory's class, member ``i`` holding the stack's weights
            and buffers of slice ``i``, in the stack's training mode, each carrying what a
            fit recorded on the stack (its dataset and output kind), so ``predict`` on a
            member prepares inputs and names classes as the stack would.

        Example:
            >>> from lenetish import MNISTConvNet
            >>> [type(m).__name__ for m in ModelStack(MNISTConvNet, 2).unstack()]
            ['MNISTConvNet', 'MNISTConvNet']
        """
        members: list[Member] = []
        for index in range(self.k):
            member = copy.deepcopy(self.stacked)
            for name, value in self.member_tensors(index).items():
                owner, _, attribute = name.rpartition(".")
                module = member.get_submodule(owner)
                copied = value.detach().clone(memory_format=torch.contiguous_format)
                if isinstance(getattr(module, attribute), nn.Parameter):
                    copied = nn.Parameter(
                        copied, requires_grad=getattr(module, attribute).requires_grad
                    )
                setattr(module, attribute, copied)
            remember_dataset(member, recorded_dataset(self))
            remember_output_kind(member, recorded_output_kind(self))
            members.append(member.train(self.training))
        return members

    def extra_repr(self) -> str:
        """``k``, the seeds and the execution, shown by ``repr``."""
        return (
            f"k={self.k}, seeds={self.seeds}, execution={self.execution!r}, inputs={self.inputs!r}"
        )


delegate_fast_path(ModelStack, lambda stack: stack.stacked)  # its members' network decides
