"""Data-parallel training under torchrun: environment, process group, and the loop's strategy.

The Trainer's loop trains through a strategy object, in one process or in several.
The loop calls the same five methods either way (:class:`SingleProcess` makes them no-ops):
``wrap`` the model, ``shard`` the loaders, ``seed_epoch`` the random streams, ``reduce`` the
running scores, and ``agree_to_stop``. Under several processes a stop requested by one
process is agreed on without a blocking collective per step: every
:attr:`DataParallel.stop_check_every` steps each process starts a non-blocking all-reduce of
its stop flag and reads the result one step later, and every epoch ends with one blocking
agreement. So every process stops at the same check, and no process waits on another inside
an epoch except through DDP's own gradient all-reduce.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar, cast, runtime_checkable

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from lenetish.errors import DistributedError, InvalidArgumentError

__all__ = [
    "DataParallel",
    "DistributedEnv",
    "ParallelStrategy",
    "Reducible",
    "Shardable",
    "SingleProcess",
    "distributed_env",
    "exit_together",
    "init_distributed",
    "is_main_process",
    "parallel_strategy",
    "rank",
    "shard_batches",
    "world_size",
]

logger = logging.getLogger("lenetish")

BatchesT = TypeVar("BatchesT")


class Reducible(Protocol):
    """Running sums that can replace themselves by their sums over all processes."""

    def all_reduce(self) -> None:
        """Sum over every process of the group (a collective call)."""
        ...


Role = Literal["training", "validation"]

_TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedEnv:
    """Where this process sits in a multi-process run.

    Attributes:
        rank: this process's index among all processes, ``0 .. world_size - 1``.
        local_rank: its index on this machine (the GPU it drives).
        world_size: the number of processes in the run.

    Example:
        >>> from lenetish.distributed import DistributedEnv
        >>> env = DistributedEnv(rank=1, local_rank=1, world_size=2)
        >>> env.is_main  # only rank 0 writes files
        False
    """

    rank: int
    local_rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that writes files and prints progress."""
        return self.rank == 0


def distributed_env(environ: Mapping[str, str] | None = None) -> DistributedEnv | None:
    """Read the variables ``torchrun`` sets; ``None`` when this is a single-process run.

    Args:
        environ: the environment to read (default: ``os.environ``).

    Returns:
        The :class:`DistributedEnv`, or ``None`` when ``WORLD_SIZE`` is unset or 1.

    Raises:
        DistributedError: ``WORLD_SIZE`` is above 1 but the other variables are missing or
            malformed (the script was not started by ``torchrun``).

    Example:
        >>> from lenetish.distributed import distributed_env
        >>> distributed_env({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1",
        ...                  "MASTER_ADDR": "localhost", "MASTER_PORT": "29500"})
        DistributedEnv(rank=1, local_rank=1, world_size=2)
        >>> distributed_env({}) is None
        True
    """
    environ = os.environ if environ is None else environ
    try:
        size = int(environ.get("WORLD_SIZE", "1"))
        if size <= 1:
            return None
        missing = [name for name in _TORCHRUN_VARIABLES if name not in environ]
        if missing:
            raise DistributedError(
                f"WORLD_SIZE={size} is set but {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not; start the script with "
                "'torchrun --nproc_per_node=N ...', or unset WORLD_SIZE to train in one process"
            )
        env = DistributedEnv(int(environ["RANK"]), int(environ["LOCAL_RANK"]), size)
    except ValueError as exc:
        raise DistributedError(
            f"WORLD_SIZE, RANK and LOCAL_RANK must be integers (torchrun sets them); got {exc}"
        ) from exc
    if not 0 <= env.rank < size:
        raise DistributedError(f"RANK={env.rank} is outside 0..{size - 1} (WORLD_SIZE={size})")
    return env


def init_distributed(device: torch.device) -> DistributedEnv | None:
    """Join the run's process group (once), or return ``None`` in a single-process run.

    Under ``torchrun`` the group is created with NCCL for CUDA devices and Gloo otherwise,
    and destroyed when the process exits. A group you created yourself (e.g. with
    ``torch.multiprocessing.spawn``) is used as it is.

    Args:
        device: the device this process trains on.

    Returns:
        This process's :class:`DistributedEnv`, or ``None``.

    Raises:
        DistributedError: the launch variables are incomplete, or the group cannot form.

    Example:
        >>> from lenetish.distributed import init_distributed
        >>> init_distributed(torch.device("cpu")) is None  # not started by torchrun
        True
    """
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() <= 1:
            return None
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return DistributedEnv(dist.get_rank(), local, dist.get_world_size())
    env = distributed_env()
    if env is None:
        return None
    if not dist.is_available():
        raise DistributedError("this build of torch has no torch.distributed support")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, rank=env.rank, world_size=env.world_size)
    except (RuntimeError, ValueError) as exc:
        raise DistributedError(
            f"rank {env.rank} could not join the {backend} process group of {env.world_size} "
            f"processes: {exc}"
        ) from exc
    atexit.register(_destroy_process_group)
    return env


class _Exit:
    """Whether this process may meet the others at exit (not if its fit failed mid-way)."""

    fit_failed = False


def exit_together(status: int) -> None:
    """End a ``torchrun`` process with ``status`` once every rank has got here.

    Tearing the process group down while a peer is still closing its connections can make
    Gloo's threads abort a process that did all its work ("terminate called without an
    active exception", exit -6). So the ranks meet in a barrier (unless this rank failed:
    then torchrun ends the others), flush their output, and leave with ``os._exit``, which
    skips the C++ teardown.
    Without a process group this returns and the caller exits normally.

    Args:
        status: the exit status of this process.

    Example:
        The end of a training script that ``torchrun`` starts, ``main`` returning the
        script's exit status; outside ``torchrun`` the call returns and ``sys.exit`` ends the
        script as usual:

        >>> import sys
        >>> from lenetish.distributed import exit_together
        >>> def finish(status: int) -> None:
        ...     exit_together(status)  # under torchrun, the process ends here
        ...     sys.exit(status)
        >>> exit_together(0)  # no process group in this process: nothing to wait for
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    if status == 0 and not _Exit.fit_failed:  # a failing rank never waits: torchrun ends all
        with contextlib.suppress(RuntimeError, ValueError):
            dist.barrier()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)


def _destroy_process_group() -> None:
    """Leave the group together: wait for every rank, then destroy it.

    A rank that destroys its group (closing its connections) while another is still working
    can make that rank's communication threads abort the process at exit. So ranks first
    meet in a barrier, unless this rank's fit failed: the others may then be inside a
    collective of the fit, and torchrun ends them once this process exits.
    """
    if not dist.is_initialized():
        return
    if not _Exit.fit_failed:
        with contextlib.suppress(RuntimeError, ValueError):
            dist.barrier()
    dist.destroy_process_group()


def rank() -> int:
    """This process's rank.

    Returns:
        The rank in the running process group, or 0 without one.

    Example:
        >>> from lenetish.distributed import rank
        >>> rank()  # a single process; under torchrun 0, 1, ... in each process
        0
    """
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """The number of processes training together.

    Returns:
        The size of the running process group, or 1 without one.

    Example:
        >>> from lenetish.distributed import world_size
        >>> world_size()  # a single process; under torchrun --nproc_per_node=4, 4
        1
    """
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """Whether this process should print and write files.

    Call it after :meth:`Trainer.fit <lenetish.Trainer.fit>` (which joins the process group)
    to keep the other processes of a ``torchrun`` job from repeating the main one's output.

    Returns:
        True in rank 0 of a process group, and in a single-process run.

    Example:
        >>> is_main_process()
        True
    """
    return rank() == 0


@runtime_checkable
class Shardable(Protocol):
    """A loader that can hand each process its own part (as :class:`~lenetish.TensorLoader`)."""

    def shard(self, rank: int, world_size: int) -> object:
        """The batches of process ``rank`` out of ``world_size``."""
        ...


def shard_batches(batches: BatchesT, env: DistributedEnv, *, role: Role) -> BatchesT:
    """This rank's part of ``batches``: every rank gets the same number of batches.

    A loader with a ``shard(rank, world_size)`` method (a :class:`~lenetish.TensorLoader`)
    is split by it; a ``DataLoader`` whose sampler is a ``DistributedSampler`` is already a
    shard.

    Args:
        batches: the loader every process was given.
        env: this process's place in the run.
        role: ``"training"`` or ``"validation"``, for the error message.

    Returns:
        The batches this process should train (or validate) on.

    Raises:
        InvalidArgumentError: ``batches`` is anything else, which cannot be split safely.

    Example:
        Rank 1 of 2 gets half of every batch of 2, so the same number of batches as rank 0:

        >>> from lenetish.distributed import DistributedEnv, shard_batches
        >>> loader = TensorLoader(torch.zeros(8, 1, 28, 28), torch.arange(8), batch_size=2)
        >>> part = shard_batches(loader, DistributedEnv(1, 1, 2), role="training")
        >>> len(loader), len(part), [labels.tolist() for _, labels in part]
        (4, 4, [[1], [3], [5], [7]])
    """
    if isinstance(batches, Shardable):
        return cast(BatchesT, batches.shard(env.rank, env.world_size))
    if isinstance(batches, DataLoader) and isinstance(batches.sampler, DistributedSampler):
        return batches
    raise InvalidArgumentError(
        f"the {role} batches are a {type(batches).__name__}, which lenetish cannot split "
        f"between {env.world_size} processes; pass a loader from make_loaders, or a "
        "DataLoader with a torch.utils.data.DistributedSampler"
    )


class ParallelStrategy(Protocol):
    """What the Trainer's loop asks of the way it runs: one process, or data-parallel.

    :class:`SingleProcess` and :class:`DataParallel` are the two implementations;
    :func:`parallel_strategy` picks one for the process it runs in.

    Attributes:
        world_size: the number of processes training together.
        rank: this process's index among them.
        rank_seed: the base seed every process derives its per-epoch random stream from.

    Example:
        >>> from lenetish.distributed import ParallelStrategy, parallel_strategy
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
        >>> from lenetish.distributed import SingleProcess
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

        >>> from lenetish.distributed import DataParallel, DistributedEnv
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
        """This rank's part of ``batches`` (see :func:`shard_batches`).

        Args:
            batches: the loader every process was given.
            role: ``"training"`` or ``"validation"``, for the error message.

        Returns:
            The batches this process trains (or validates) on.
        """
        return shard_batches(batches, self.env, role=role)

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
        _Exit.fit_failed = True

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

    Joins the run's process group (see :func:`init_distributed`) when there is one.

    Args:
        device: the device this process trains on.

    Returns:
        A :class:`DataParallel` or a :class:`SingleProcess`.

    Raises:
        DistributedError: the launch variables are incomplete, or the group cannot form.

    Example:
        >>> from lenetish.distributed import parallel_strategy
        >>> type(parallel_strategy(torch.device("cpu"))).__name__
        'SingleProcess'
    """
    env = init_distributed(device)
    return SingleProcess() if env is None else DataParallel(env, device)
