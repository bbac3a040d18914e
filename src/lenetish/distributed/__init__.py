"""Data-parallel training under torchrun: the launch environment, the process group, shards.

What a process needs to know and do to train with others: read torchrun's variables
(:func:`distributed_env`), join or leave the group (:func:`init_distributed`,
:func:`exit_together`), its :func:`rank` and the :func:`world_size`, and its part of the
batches (:func:`shard_batches`). How the Trainer's loop uses them is
:mod:`lenetish.distributed.strategies`'s job.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar, cast, runtime_checkable

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from lenetish.errors import DistributedError, InvalidArgumentError

__all__ = [
    "DistributedEnv",
    "Shardable",
    "distributed_env",
    "exit_together",
    "init_distributed",
    "is_main_process",
    "note_fit_failure",
    "rank",
    "shard_batches",
    "world_size",
]


BatchesT = TypeVar("BatchesT")


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


def note_fit_failure() -> None:
    """Record that this process's fit failed mid-way: :func:`exit_together` skips its barrier.

    The other ranks may be inside one of the fit's collectives, so a barrier could hang.

    Example:
        In a fit's error handler (not run here: it changes how this process exits):

        >>> from lenetish.distributed import note_fit_failure
        >>> note_fit_failure()  # doctest: +SKIP
    """
    _Exit.fit_failed = True


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
