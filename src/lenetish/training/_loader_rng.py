"""The generators a training loader shuffles with: found, captured for a checkpoint, put back.

A ``DataLoader(..., generator=g)``, or a sampler given a generator of its own
(``RandomSampler(data, generator=g)``, also inside a ``BatchSampler``), draws its order from
that generator rather than from torch's global one, so the global random states a checkpoint
holds do not replay it. The loader draws from it when each epoch's iterator is made (its
workers' seed, then the sampler's permutation), so a checkpoint records every such
generator's state as of the start of the epoch it resumes: the state when it was written
between epochs, the state before the epoch's iterator was made when it was written inside
one (:class:`~lenetish.training.state.EpochProgress` keeps it). A resumed fit puts the states
back before its first epoch's iterator is made.

Samplers of torch's own are understood (their randomness is a ``generator`` or torch's global
generator, or, for ``DistributedSampler``, a seed and the epoch). Another sampler without a
``generator`` attribute may draw from a generator lenetish cannot see: a checkpoint is still
written, with one warning per fit naming the loader and the sampler, since refusing would
also stop the many samplers that draw nothing at random. ``persistent_workers=True`` draws
its workers' seed in a loader's first epoch only, so a fit resumed after its first epoch
draws once more than the interrupted one did; that is logged when resuming.
"""

from __future__ import annotations

import logging
import warnings
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.utils.data import BatchSampler

from lenetish.errors import CheckpointError

if TYPE_CHECKING:
    from lenetish.training.trainer import Trainer

__all__ = [
    "LoaderGenerators",
    "capture_loader_rng",
    "check_loader_rng",
    "loader_generators",
    "remember_loader",
    "restore_loader_rng",
    "warn_unseen_randomness",
]

logger = logging.getLogger("lenetish")

_MAX_DEPTH = 8  # samplers wrapping samplers; deeper than this is a cycle, not a design


@dataclass
class LoaderGenerators:
    """The generators one fit's training loader draws its order from.

    Attributes:
        loader: the loader's description, for messages (its class, and its sampler's).
        generators: each generator by where it sits, e.g. ``"generator"`` or
            ``"batch_sampler.sampler.generator"`` (one shared generator is listed once).
        hidden: where a sampler sits whose randomness lenetish cannot see.
        persistent_workers: the loader keeps its worker processes between epochs.
        warned: the warning about ``hidden`` was given in this fit.
    """

    loader: str
    generators: dict[str, torch.Generator] = field(default_factory=dict)
    hidden: list[str] = field(default_factory=list)
    persistent_workers: bool = False
    warned: bool = False


# The training loader of each trainer's current (or last) fit.
_FOUND: weakref.WeakKeyDictionary[Trainer, LoaderGenerators] = weakref.WeakKeyDictionary()


def loader_generators(loader: object) -> LoaderGenerators:
    """Find the generators ``loader`` (and its samplers) shuffle with.

    Example:
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> data = TensorDataset(torch.zeros(4, 1))
        >>> found = loader_generators(
        ...     DataLoader(data, shuffle=True, generator=torch.Generator().manual_seed(1)))
        >>> list(found.generators), found.hidden
        (['generator'], [])
    """
    found = LoaderGenerators(_describe(loader))
    found.persistent_workers = bool(getattr(loader, "persistent_workers", False)) and bool(
        getattr(loader, "num_workers", 0)
    )
    _walk(loader, "", found, {id(loader)}, depth=0)
    return found


def _describe(loader: object) -> str:
    """The loader's class, with its sampler's (``DataLoader with RandomSampler``)."""
    batches = getattr(loader, "batch_sampler", None)
    sampler = batches.sampler if isinstance(batches, BatchSampler) else batches
    sampler = getattr(loader, "sampler", None) if sampler is None else sampler
    with_sampler = "" if sampler is None else f" with {type(sampler).__name__}"
    return f"{type(loader).__name__}{with_sampler}"


def _is_torch_sampler(sampler: object) -> bool:
    """Whether ``sampler`` is one of torch's own, whose randomness is known."""
    return type(sampler).__module__.startswith("torch.utils.data")


def _walk(item: object, path: str, found: LoaderGenerators, seen: set[int], depth: int) -> None:
    generator = getattr(item, "generator", None)
    if isinstance(generator, torch.Generator) and all(
        known is not generator for known in found.generators.values()
    ):
        found.generators[f"{path}generator"] = generator
    if depth >= _MAX_DEPTH:
        return
    for name in ("sampler", "batch_sampler"):
        child = getattr(item, name, None)
        if (
            not hasattr(type(child), "__iter__")  # samplers are iterables of indices
            or type(child).__module__ == "builtins"  # a list or range of indices draws nothing
            or isinstance(child, Tensor)
            or id(child) in seen
        ):
            continue
        seen.add(id(child))
        if not _is_torch_sampler(child) and not hasattr(child, "generator"):
            found.hidden.append(f"{path}{name} ({type(child).__name__})")
        _walk(child, f"{path}{name}.", found, seen, depth + 1)


def remember_loader(trainer: Trainer, loader: object) -> None:
    """Record the generators of the training loader ``trainer`` is about to fit on."""
    _FOUND[trainer] = loader_generators(loader)


def capture_loader_rng(trainer: Trainer) -> dict[str, Tensor]:
    """The current states of the generators of ``trainer``'s training loader, by place."""
    found = _FOUND.get(trainer)
    if found is None:
        return {}
    return {place: generator.get_state() for place, generator in found.generators.items()}


def warn_unseen_randomness(trainer: Trainer) -> None:
    """Warn, once per fit, that a checkpoint cannot capture a sampler's own randomness."""
    found = _FOUND.get(trainer)
    if found is None or not found.hidden or found.warned:
        return
    found.warned = True
    warnings.warn(
        f"the training loader ({found.loader}) has a sampler lenetish does not know "
        f"({', '.join(found.hidden)}) with no `generator` attribute: if it draws from a "
        "generator of its own, a fit resumed from this checkpoint draws another batch order "
        "than an uninterrupted run. Keep its torch.Generator in a `generator` attribute (or "
        "let it draw from torch's global generator) and it resumes exactly",
        UserWarning,
        stacklevel=4,
    )


def check_loader_rng(
    trainer: Trainer, saved: object, source: str, *, epoch: int
) -> dict[str, Tensor] | None:
    """The saved loader states that fit this fit's loader, or ``None`` when none can be used.

    A checkpoint without the states (from an earlier lenetish), or with the states of
    other generators, is logged: the resumed epochs then draw another batch order. So is a
    resume after the first epoch (index ``epoch`` > 0) with persistent workers.

    Raises:
        CheckpointError: a saved state is not a state of the generator it is for.
    """
    found = _FOUND.get(trainer)
    if found is None:
        return None
    if found.persistent_workers and epoch > 0:
        logger.warning(
            "resuming with %s of persistent_workers=True: its workers' seed is drawn in a "
            "loader's first epoch only, so the resumed fit draws once more than the "
            "interrupted one and its batch order is not bit-identical (use "
            "persistent_workers=False for an exact resume)",
            found.loader,
        )
    if saved is None:
        if found.generators:
            logger.warning(
                "%s holds no state of the training loader's generators (%s; it was written by "
                "an earlier lenetish), so the resumed epochs draw another batch order than an "
                "uninterrupted run",
                source,
                ", ".join(found.generators),
            )
        return None
    if not isinstance(saved, dict) or not all(isinstance(key, str) for key in saved):
        raise CheckpointError(
            f"{source} is damaged: loader_rng must map places to generator states, not "
            f"{type(saved).__name__}; resume from another checkpoint, or start a new run"
        )
    if set(saved) != set(found.generators):
        logger.warning(
            "%s holds the states of the loader generators %s, but this fit's training loader "
            "(%s) has %s, so the resumed epochs draw another batch order; resume with the "
            "training loader of the run that wrote it (the same sampler and generator=)",
            source,
            sorted(saved) or "none",
            found.loader,
            sorted(found.generators) or "none",
        )
        return None
    for place, state in saved.items():
        _check_state(state, found.generators[place], f"{source} is damaged: loader_rng[{place!r}]")
    return saved


def _check_state(state: object, generator: torch.Generator, field: str) -> None:
    """Refuse ``state`` unless ``generator``'s kind of generator takes it (tried on a copy)."""
    expected = generator.get_state()
    problem = None
    if not isinstance(state, Tensor) or state.is_sparse or state.is_meta:
        problem = f"is a {type(state).__name__}, not a generator state"
    elif (state.dtype, state.shape) != (expected.dtype, expected.shape):
        shape = tuple(state.shape)
        problem = f"is a {state.dtype} tensor of shape {shape}, not {expected.numel()} bytes"
    else:
        try:  # on a generator of its own: the loader's is untouched
            torch.Generator(device=generator.device).set_state(state)
        except RuntimeError as exc:
            problem = f"is not a generator state ({exc})"
    if problem is not None:
        raise CheckpointError(
            f"{field} {problem}; resume from another checkpoint, or start a new run"
        )


def restore_loader_rng(trainer: Trainer, states: dict[str, Any]) -> None:
    """Put back states :func:`check_loader_rng` accepted into the training loader's generators."""
    found = _FOUND.get(trainer)
    if found is None:
        return
    for place, state in states.items():
        found.generators[place].set_state(state)
