"""What a trial run changes, captured and put back: a model's tensors and a loader's shuffling.

:func:`lenetish.lr_find` trains the real model for a while and must leave no trace: a
:class:`ModelSnapshot` holds the model's parameters, gradients, buffers, train/eval modes and
the records a fit writes onto it; a :class:`LoaderSnapshot` holds the states of the generators
a training loader shuffles with and its epoch counter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lenetish.data.identity import MODEL_ATTRIBUTE
from lenetish.losses import OUTPUT_KIND_ATTRIBUTE
from lenetish.training._loader_rng import loader_generators

__all__ = ["FIT_RECORDS", "LoaderSnapshot", "ModelSnapshot"]

# What a fit writes onto the model it trains (its output kind, its dataset): a trial fit
# writes them too, and a model that was never really trained must not claim either.
FIT_RECORDS = (OUTPUT_KIND_ATTRIBUTE, MODEL_ATTRIBUTE)
_MISSING = object()


@dataclass
class ModelSnapshot:
    """A model's parameters, gradients, buffers, modes and fit records, to put back."""

    model: nn.Module
    home: torch.device | None  # where the parameters were, when the model is to go back
    parameters: list[tuple[str, Tensor, Tensor | None]]
    buffers: list[tuple[str, Tensor]]
    modes: list[tuple[nn.Module, bool]]
    records: dict[str, object]

    @classmethod
    def of(cls, model: nn.Module, *, move_back: bool = False) -> ModelSnapshot:
        """Copy what ``model`` holds now (``move_back``: also its device, to return it there)."""
        first = next(model.parameters(), None) if move_back else None
        with torch.no_grad():
            return cls(
                model,
                None if first is None else first.device,
                [
                    (name, p.detach().clone(), None if p.grad is None else p.grad.clone())
                    for name, p in model.named_parameters()
                ],
                # every buffer, persistent or not (a state_dict would miss the latter)
                [(name, b.detach().clone()) for name, b in model.named_buffers()],
                [(module, module.training) for module in model.modules()],
                {name: getattr(model, name, _MISSING) for name in FIT_RECORDS},
            )

    def restore(self) -> None:
        """Put the copied values back into the model's own tensors, and its modes and records."""
        model = self.model
        if self.home is not None:
            model.to(self.home)
        with torch.no_grad():
            # copy_ into the live tensors: the optimizer holds these very parameters
            for name, value, grad in self.parameters:
                parameter = model.get_parameter(name)
                parameter.copy_(value)
                parameter.grad = grad
            for name, value in self.buffers:
                owner, _, leaf = name.rpartition(".")
                module = model.get_submodule(owner)
                buffer = getattr(module, leaf, None)
                if isinstance(buffer, Tensor) and buffer.shape == value.shape:
                    buffer.copy_(value)
                else:  # the model replaced the buffer meanwhile: put the old one back
                    setattr(module, leaf, value)
        for module, training in self.modes:
            module.training = training
        for name, record in self.records.items():
            if record is _MISSING:
                if hasattr(model, name):
                    delattr(model, name)
            else:
                setattr(model, name, record)


@dataclass
class LoaderSnapshot:
    """The states of a loader's own generators and its epoch counter, to put back."""

    generators: list[tuple[torch.Generator, Tensor]]
    epochs: list[tuple[Any, int]]

    @classmethod
    def of(cls, loader: object) -> LoaderSnapshot:
        """Copy the states of ``loader``'s generators (and its samplers') and its epoch."""
        found = loader_generators(loader)
        generators = [(g, g.get_state()) for g in found.generators.values()]
        # A lenetish loader (or a DistributedSampler) counts epochs to seed its shuffle.
        epochs = []
        for holder in (loader, getattr(loader, "sampler", None)):
            epoch = getattr(holder, "epoch", None)
            if callable(getattr(holder, "set_epoch", None)) and isinstance(epoch, int):
                epochs.append((holder, epoch))
        return cls(generators, epochs)

    def restore(self) -> None:
        """Put the generators' states and the epoch counter back."""
        for generator, state in self.generators:
            generator.set_state(state)
        for holder, epoch in self.epochs:
            holder.set_epoch(epoch)
