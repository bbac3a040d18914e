"""How the Trainer's loop runs: in one process, or data-parallel with others (a strategy).

The loop calls the same five methods either way (:class:`SingleProcess` makes them no-ops):
``wrap`` the model, ``shard`` the loaders, ``seed_epoch`` the random streams, ``reduce`` the
running scores, and ``agree_to_stop``. Under several processes a stop requested by one
process is agreed on without a blocking collective per step: every
:attr:`DataParallel.stop_check_every` steps each process starts a non-blocking all-reduce of
its stop flag and reads the result one step later, and every epoch ends with one blocking
agreement. So every process stops at the same check, and no process waits on another inside
an epoch except through DDP's own gradient all-reduce. The launch environment and the process
group are :mod:`lenetish.distributed`'s.
"""

from __future__ import annotations

import logging
from typing import Protocol

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from lenetish.distributed import (
    BatchesT,
    DistributedEnv,
    Role,
    init_distributed,
    note_fit_failure,
    shard_batches,
)
from lenetish.errors import DistributedError

__all__ = ["DataParallel", "ParallelStrategy", "Reducible", "SingleProcess", "parallel_strategy"]

logger = logging.getLogger("lenetish")


class Reducible(Protocol):
    """Running sums that can replace themselves by their sums over all processes."""

    def all_reduce(self) -> None:
        """Sum over every process of the group (a collective call)."""
        ...


class ParallelStrategy(Protocol):
    """What the Trainer's loop asks of the way it runs: one process, or data-parallel.

    :class:`SingleProcess` and :class:`DataParallel` are the two implementations;
    :func:`parallel_strategy` picks one for the process it runs in.

    Attributes:
        world_size: the number of processes training together.
        rank: this process's index among them.
        rank_seed: the base seed every process derives its per-epoch random stream from.

    Example:
        >>> from lenetish.distributed.strategies import ParallelStrategy, parallel_strategy
        >>> strategy: ParallelStrategy = parallel_strategy(torch.device("cpu"))
        >>> strategy.world_size, strategy.rank, strategy.is_main
        (1, 0, True)
    """

    world_size: int
    rank: int
    rank_seed: int

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and prints (rank 0)."""
        ...

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model the loop trains (DDP's wrapper, or the model itself)."""
        ...

    def shard(self, batches: BatchesT, *, role: Role) -> BatchesT:
        """This process's share of ``batches``."""
        ...

    def agree_on_seed(self, seed: int | None) -> None:
        """Fix :attr:`rank_seed`, the base of every process's per-epoch random stream."""
        ...

    def seed_epoch(self, epoch: int) -> None:
        """Seed this process's random stream for ``epoch``."""
        ...

    def reduce(self, score: Reducible) -> None:
        """Turn this process's running sums into the sums of all processes."""
        ...

    def agree_to_stop(self, requested: bool, *, epoch_end: bool = False) -> bool:
        """Whether every process stops here, given this process's own request."""
        ...

    def note_failure(self) -> None:
        """The fit raised in this process: do not wait for the others when it exits."""
        ...


class SingleProcess:
    """The strategy of a one-process fit: every method is a no-op or returns its input.

    Example:
        >>> from lenetish.distributed.strategies import SingleProcess
        >>> strategy = SingleProcess()
        >>> strategy.world_size, strategy.agree_to_stop(True)
        (1, True)
    """

    world_size = 1
    rank = 0

    def __init__(self) -> None:
        self.rank_seed = 0

    @property
    def is_main(self) -> bool:
        """Always true, since the only process writes the files."""
        return True

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model itself."""
        return model

    def shard(self, batches: BatchesT, *, role: Role) -> BatchesT:
        """All of ``batches``."""
        return batches

    def agree_on_seed(self, seed: int | None) -> None:
        """Nothing to agree on: the fit's own seeding governs the one random stream."""

    def seed_epoch(self, epoch: int) -> None:
        """Nothing: one process keeps one continuous random stream."""

    def reduce(self, score: Reducible) -> None:
        """Nothing: the sums are already complete."""

    def agree_to_stop(self, requested: bool, *, epoch_end: bool = False) -> bool:
        """This process's own request."""
        return requested

    def note_failure(self) -> None:
        """Nothing: there are no other processes to meet."""


class DataParallel:
    """The strategy of a ``torchrun`` fit: DDP, a shard per process, agreed stops.

    Args:
        env: this process's place in the run.
        device: the device this process trains on.

    Attributes:
        stop_check_every: steps between the non-blocking stop checks within an epoch (a
            stop requested by one process takes effect on every process at most this many
            steps plus one later, at the same step on all; every epoch end checks too).

    Example:
        :func:`parallel_strategy` builds one under ``torchrun``; here, the strategy of rank 1
        in a run of two processes, which trains on its own half of every batch:

        >>> from lenetish.distributed import DistributedEnv
        >>> from lenetish.distributed.strategies import DataParallel
        >>> strategy = DataParallel(DistributedEnv(1, 1, 2), torch.device("cpu"))
        >>> strategy.is_main, strategy.stop_check_every
        (False, 8)
        >>> loader = TensorLoader(torch.zeros(8, 1, 28, 28), torch.arange(8), batch_size=2)
        >>> [labels.tolist() for _, labels in strategy.shard(loader, role="training")]
        [[1], [3], [5], [7]]
    """

    stop_check_every: int = 8

    def __init__(self, env: DistributedEnv, device: torch.device) -> None:
        self.env = env
        self.world_size = env.world_size
        self.rank = env.rank
        self.device = device
        self.rank_seed = 0
        self._steps = 0
        self._pending: tuple[dist.Work, torch.Tensor] | None = None

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0."""
        return self.env.is_main

    def wrap(self, model: nn.Module) -> nn.Module:
        """Wrap ``model`` in DDP, which copies rank 0's weights and buffers to every rank."""
        device_ids = None if self.device.type != "cuda" else [self.device]
        logger.info(
            "lenetish: rank %d of %d trains data-parallel on %s",
            self.rank,
            self.world_size,
            self.device,
        )
        return DistributedDataParallel(model, device_ids=device_ids)

    def shard(self, batches: BatchesT, *, role: Role) -> BatchesT:
        """This rank's part of ``batches`` (see :func:`~lenetish.distributed.shard_batches`).

        Args:
            batches: the loader every process was given.
            role: ``"training"`` or ``"validation"``, for the error message.

        Returns:
            The batches this process trains (or validates) on.

        Raises:
            DistributedError: the processes' shards have different numbers of batches (they
                were given different data); every process raises it, before any step.
        """
        part = shard_batches(batches, self.env, role=role)
        self._check_same_length(part, role)
        return part

    def _check_same_length(self, part: object, role: Role) -> None:
        """Refuse shards of different lengths: DDP would wait forever, or abort in C++.

        One blocking all-reduce of ``(len, -len)`` (``-1`` for a loader without a length):
        every rank learns the longest and the shortest shard, so all refuse together.
        """
        if not dist.is_initialized():
            return  # no group to compare with (a strategy built by hand, as in the example)
        try:
            count = len(part)  # type: ignore[arg-type]
        except TypeError:
            count = -1
        value = torch.tensor([count, -count], dtype=torch.int64, device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        most, fewest = int(value[0]), -int(value[1])
        if most != fewest:
            raise DistributedError(
                f"the {self.world_size} processes were given {role} data of different sizes: "
                f"rank {self.rank} has {count} {role} batches per epoch, the others between "
                f"{fewest} and {most}; every process must load the same data (the same files "
                "and make_loaders settings: the same --data, LENETISH_DATA and options on every "
                "machine), since each trains an equal share of every batch"
            )

    def agree_on_seed(self, seed: int | None) -> None:
        """Use ``seed``, or without one rank 0's random draw, as every rank's base seed."""
        if seed is None:
            draw = int(torch.randint(0, 2**31, ()))  # from the CPU stream, on every rank
            carrier = torch.tensor(draw, dtype=torch.int64, device=self.device)
            dist.broadcast(carrier, src=0)
            seed = int(carrier.item())
        self.rank_seed = seed

    def seed_epoch(self, epoch: int) -> None:
        """Seed this rank's stream from (base seed, epoch, rank).

        Each rank draws its own augmentations; seeding per (epoch, rank) keeps them
        different across ranks and reproducible when resuming at an epoch boundary.
        """
        mixed = (self.rank_seed * 1_000_003 + epoch) * 65_537 + self.rank
        torch.manual_seed(mixed % 2**63)  # manual_seed takes at most 64 bits

    def reduce(self, score: Reducible) -> None:
        """Sum the running sums over every rank (one all-reduce)."""
        score.all_reduce()

    def agree_to_stop(self, requested: bool, *, epoch_end: bool = False) -> bool:
        """Whether any rank asked to stop, decided at the same step on every rank.

        Within an epoch (called before each batch) this starts a non-blocking all-reduce of
        the flag every :attr:`stop_check_every` calls and reads it on the next call; at an
        epoch end it waits for one blocking all-reduce.
        """
        pending = self._finish_pending()
        if epoch_end:
            self._steps = 0
            return self._any_rank(requested or pending, blocking=True)
        if pending:
            return True
        self._steps += 1
        if self._steps % self.stop_check_every == 0:
            self._any_rank(requested, blocking=False)
        return False

    def note_failure(self) -> None:
        """Skip the exit barrier: the other ranks may be inside one of the fit's collectives."""
        note_fit_failure()

    def _any_rank(self, flag: bool, *, blocking: bool) -> bool:
        value = torch.tensor(int(flag), dtype=torch.int32, device=self.device)
        work = dist.all_reduce(value, op=dist.ReduceOp.MAX, async_op=not blocking)
        if blocking:
            return bool(value.item())
        assert work is not None
        self._pending = (work, value)
        return False

    def _finish_pending(self) -> bool:
        if self._pending is None:
            return False
        work, value = self._pending
        self._pending = None
        work.wait()
        return bool(value.item())


def parallel_strategy(device: torch.device) -> ParallelStrategy:
    """The strategy for this process: data-parallel under ``torchrun``, else single-process.

    Joins the run's process group (see :func:`~lenetish.distributed.init_distributed`) when
    there is one.

    Args:
        device: the device this process trains on.

    Returns:
        A :class:`DataParallel` or a :class:`SingleProcess`.

    Raises:
        DistributedError: the launch variables are incomplete, or the group cannot form.

    Example:
        >>> from lenetish.distributed.strategies import parallel_strategy
        >>> type(parallel_strategy(torch.device("cpu"))).__name__
        'SingleProcess'
    """
    env = init_distributed(device)
    return SingleProcess() if env is None else DataParallel(env, device)
