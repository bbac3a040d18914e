"""Data-parallel training under torchrun: the launch environment, the process group, ranks."""

from __future__ import annotations

import atexit
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar, cast

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from lenetish.errors import DistributedError, InvalidArgumentError
from lenetish.evaluation import RunningScore
from lenetish.loaders import TensorLoader

__all__ = [
    "DistributedEnv",
    "all_reduce_score",
    "any_rank",
    "broadcast_int",
    "distributed_env",
    "init_distributed",
    "is_main_process",
    "rank",
    "shard_batches",
    "world_size",
]

BatchesT = TypeVar("BatchesT")

_TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedEnv:
    """Where this process sits in a multi-process run.

    Attributes:
        rank: this process's index among all processes, ``0 .. world_size - 1``.
        local_rank: its index on this machine (the GPU it drives).
        world_size: the number of processes in the run.
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


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    """This process's rank.

    Returns:
        The rank in the running process group, or 0 without one.
    """
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """The number of processes training together.

    Returns:
        The size of the running process group, or 1 without one.
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


def shard_batches(batches: BatchesT, env: DistributedEnv, *, role: str) -> BatchesT:
    """This rank's part of ``batches``: every rank gets the same number of batches.

    A :class:`~lenetish.TensorLoader` is split by :meth:`~lenetish.TensorLoader.shard`; a
    ``DataLoader`` whose sampler is a ``DistributedSampler`` is already a shard.

    Args:
        batches: the loader every process was given.
        env: this process's place in the run.
        role: ``"training"`` or ``"validation"``, for the error message.

    Returns:
        The batches this process should train (or validate) on.

    Raises:
        InvalidArgumentError: ``batches`` is anything else, which cannot be split safely.
    """
    if isinstance(batches, TensorLoader):
        return cast(BatchesT, batches.shard(env.rank, env.world_size))
    if isinstance(batches, DataLoader) and isinstance(batches.sampler, DistributedSampler):
        return batches
    raise InvalidArgumentError(
        f"the {role} batches are a {type(batches).__name__}, which lenetish cannot split "
        f"between {env.world_size} processes; pass a loader from make_loaders, or a "
        "DataLoader with a torch.utils.data.DistributedSampler"
    )


def all_reduce_score(score: RunningScore) -> None:
    """Replace a rank's running sums by the sums over all ranks (in place).

    Args:
        score: this rank's sums, on the device of the process group's backend.
    """
    totals = torch.stack(
        [
            score.loss_sum.double(),
            score.correct.double(),
            torch.tensor(float(score.seen), dtype=torch.float64, device=score.loss_sum.device),
        ]
    )
    dist.all_reduce(totals)
    loss_sum, correct, seen = totals.unbind()
    score.loss_sum = loss_sum
    score.correct = correct.round().long()
    score.seen = int(seen.item())


def any_rank(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` is true on at least one rank (every rank gets the same answer).

    Args:
        flag: this rank's value.
        device: where the backend exchanges tensors (CUDA for NCCL, the CPU for Gloo).

    Returns:
        The logical or of ``flag`` over all ranks.
    """
    value = torch.tensor(int(flag), dtype=torch.int32, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def broadcast_int(value: int, device: torch.device) -> int:
    """Rank 0's ``value``, on every rank.

    Args:
        value: this rank's value (only rank 0's matters).
        device: where the backend exchanges tensors (CUDA for NCCL, the CPU for Gloo).

    Returns:
        Rank 0's value.
    """
    carrier = torch.tensor(value, dtype=torch.int64, device=device)
    dist.broadcast(carrier, src=0)
    return int(carrier.item())
