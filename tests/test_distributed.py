"""Tests of lenetish.distributed and of data-parallel fits: 2 CPU processes under torchrun."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from lenetish import (
    CheckpointError,
    DistributedError,
    InvalidArgumentError,
    MNISTConvNet,
    ModelCheckpoint,
    Trainer,
)
from lenetish.distributed import (
    DistributedEnv,
    distributed_env,
    exit_together,
    init_distributed,
    is_main_process,
    rank,
    shard_batches,
    world_size,
)
from lenetish.distributed.strategies import DataParallel
from lenetish.saving.checkpoint import load_checkpoint, save_checkpoint
from tests.conftest import write_fake_mnist
from tests.training_helpers import digit_batches, rows_without_seconds

REPO = Path(__file__).parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
SCRIPT = ["-m", "tests.distributed_script"]
LAUNCH = {"MASTER_ADDR": "localhost", "MASTER_PORT": "29500", "RANK": "1", "LOCAL_RANK": "1"}


def _run(command: list[str], *, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run ``command``; a hang fails the test through the timeout instead of blocking CI."""
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=240)


def _max_difference(first: Path, second: Path) -> float:
    """The largest absolute difference between two safetensors files' tensors."""
    a, b = load_file(first), load_file(second)
    assert a.keys() == b.keys()
    return max(float((a[name] - b[name]).abs().max()) for name in a)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-process run of tests/distributed_script.py (2 epochs), its output folder."""
    out = tmp_path_factory.mktemp("two_ranks")
    result = _run([*TORCHRUN, *SCRIPT, str(out)])
    assert result.returncode == 0, result.stderr
    return out


def test_distributed_env_is_none_in_a_single_process() -> None:
    """Without WORLD_SIZE, or with WORLD_SIZE=1, there is no distributed run."""
    assert distributed_env({}) is None
    assert distributed_env({"WORLD_SIZE": "1"}) is None


def test_distributed_env_reads_torchrun_variables() -> None:
    """RANK, LOCAL_RANK and WORLD_SIZE become a DistributedEnv."""
    env = distributed_env({**LAUNCH, "WORLD_SIZE": "4"})
    assert env == DistributedEnv(rank=1, local_rank=1, world_size=4)
    assert not env.is_main


def test_distributed_env_names_missing_variables() -> None:
    """WORLD_SIZE without the other torchrun variables says how to launch."""
    with pytest.raises(DistributedError, match=r"RANK, LOCAL_RANK.* not; start the script with"):
        distributed_env({"WORLD_SIZE": "2", "MASTER_ADDR": "x", "MASTER_PORT": "1"})


def test_distributed_env_refuses_non_integers() -> None:
    """Malformed launch variables are reported as such."""
    with pytest.raises(DistributedError, match="must be integers"):
        distributed_env({**LAUNCH, "WORLD_SIZE": "two"})


def test_distributed_env_refuses_a_rank_outside_the_world() -> None:
    """RANK must be below WORLD_SIZE."""
    with pytest.raises(DistributedError, match=r"RANK=3 is outside 0\.\.1"):
        distributed_env({**LAUNCH, "RANK": "3", "WORLD_SIZE": "2"})


def test_single_process_defaults() -> None:
    """Without a process group: rank 0 of 1, the main process, nothing to initialise."""
    assert (rank(), world_size(), is_main_process()) == (0, 1, True)
    assert init_distributed(torch.device("cpu")) is None


def test_shard_batches_refuses_what_it_cannot_split() -> None:
    """A plain list of batches cannot be shared between processes."""
    env = DistributedEnv(rank=0, local_rank=0, world_size=2)
    with pytest.raises(InvalidArgumentError, match=r"training batches are a list.*make_loaders"):
        shard_batches(digit_batches(), env, role="training")


def test_shard_batches_keeps_a_distributed_sampler_loader() -> None:
    """A DataLoader with a DistributedSampler is already this rank's shard."""
    dataset = TensorDataset(torch.zeros(8, 1, 28, 28), torch.zeros(8, dtype=torch.long))
    loader = DataLoader(dataset, sampler=DistributedSampler(dataset, num_replicas=2, rank=0))
    env = DistributedEnv(rank=0, local_rank=0, world_size=2)
    assert shard_batches(loader, env, role="training") is loader


def test_fit_sets_the_epoch_of_a_distributed_sampler() -> None:
    """The trainer tells a DataLoader's DistributedSampler each epoch, for a new shuffle."""
    dataset = TensorDataset(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0)
    loader = DataLoader(dataset, batch_size=4, sampler=sampler)
    Trainer(MNISTConvNet(), epochs=3, device="cpu", progress=False).fit(loader)
    assert sampler.epoch == 2


def test_other_ranks_do_not_write_checkpoints(tmp_path: Path) -> None:
    """save_checkpoint writes nothing outside rank 0."""

    class RankOneTrainer(Trainer):
        @property
        def is_main_process(self) -> bool:
            return False

    RankOneTrainer(MNISTConvNet(), device="cpu", progress=False).save_checkpoint(
        tmp_path / "last.pt"
    )
    assert not (tmp_path / "last.pt").exists()


def test_resume_refuses_another_number_of_processes(tmp_path: Path) -> None:
    """A checkpoint of a 2-process run cannot resume in 1 process."""
    trainer = Trainer(MNISTConvNet(), epochs=2, device="cpu", progress=False)
    trainer.callbacks.append(ModelCheckpoint(tmp_path))
    trainer.fit(digit_batches())
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    save_checkpoint(tmp_path / "two.pt", {**checkpoint, "world_size": 2})
    with pytest.raises(CheckpointError, match=r"run of 2 process.*has 1.*nproc_per_node=2"):
        Trainer(MNISTConvNet(), epochs=2, device="cpu").fit(
            digit_batches(), resume=tmp_path / "two.pt"
        )


@pytest.mark.slow
def test_both_ranks_end_with_identical_weights(two_ranks: Path) -> None:
    """After a 2-process fit, both processes hold exactly the same weights and History."""
    assert _max_difference(two_ranks / "rank0.safetensors", two_ranks / "rank1.safetensors") == 0
    assert rows_without_seconds(two_ranks / "history0.json") == rows_without_seconds(
        two_ranks / "history1.json"
    )


@pytest.mark.slow
def test_unseeded_ranks_start_from_rank_zero_and_agree(tmp_path: Path) -> None:
    """Without seeds, processes that built different weights still end identical."""
    result = _run([*TORCHRUN, *SCRIPT, str(tmp_path), "--unseeded", "--augment", "--epochs", "1"])
    assert result.returncode == 0, result.stderr
    assert _max_difference(tmp_path / "rank0.safetensors", tmp_path / "rank1.safetensors") == 0


@pytest.mark.slow
def test_two_ranks_follow_the_single_process_curve(two_ranks: Path, tmp_path: Path) -> None:
    """2 processes sharing each batch train like 1 process with the same global batch."""
    result = _run([sys.executable, *SCRIPT, str(tmp_path)])
    assert result.returncode == 0, result.stderr
    single = rows_without_seconds(tmp_path / "history0.json")
    shared = rows_without_seconds(two_ranks / "history0.json")
    assert len(single) == len(shared) == 2
    for one, two in zip(single, shared, strict=True):
        assert one.keys() == two.keys()
        for key in one:
            assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-5), key
    assert _max_difference(tmp_path / "rank0.safetensors", two_ranks / "rank0.safetensors") < 1e-4


@pytest.mark.slow
def test_rank_zero_only_callbacks_run_in_rank_zero_alone(two_ranks: Path) -> None:
    """A callback with rank_zero_only runs in rank 0's process and not in rank 1's."""
    assert (two_ranks / "calls0.txt").read_text() == "1\n2\n"
    assert not (two_ranks / "calls1.txt").exists()


@pytest.mark.slow
def test_a_failing_rank_ends_the_job_with_its_error(tmp_path: Path) -> None:
    """An exception in rank 1 ends both processes (no hang) and names the error."""
    result = _run([*TORCHRUN, *SCRIPT, str(tmp_path), "--fail-at-step", "3", "--on-rank", "1"])
    assert result.returncode != 0
    assert "RuntimeError: injected failure on rank 1" in result.stderr
    assert not (tmp_path / "rank0.safetensors").exists()


@pytest.mark.slow
def test_ranks_given_data_of_different_sizes_are_refused_by_name(tmp_path: Path) -> None:
    """Rank 1 with 64 more training images: both ranks raise DistributedError, no C++ abort."""
    result = _run([*TORCHRUN, *SCRIPT, str(tmp_path), "--extra-on-rank-one", "64"])
    assert result.returncode != 0
    assert "DistributedError: the 2 processes were given training data of different sizes" in (
        result.stderr
    )
    assert "terminate called" not in result.stderr
    assert not (tmp_path / "rank0.safetensors").exists()


@pytest.mark.slow
def test_a_stop_requested_by_one_rank_stops_every_rank(tmp_path: Path) -> None:
    """StopTraining raised in rank 1 alone stops both processes at the same check."""
    options = ["--stop-at-step", "9", "--epochs", "3", "--stop-check-every", "2"]
    result = _run([*TORCHRUN, *SCRIPT, str(tmp_path), *options])
    assert result.returncode == 0, result.stderr
    assert len(rows_without_seconds(tmp_path / "history0.json")) == 1  # step 9 is in epoch 2
    assert _max_difference(tmp_path / "rank0.safetensors", tmp_path / "rank1.safetensors") == 0


@pytest.mark.slow
def test_a_stop_between_checks_takes_effect_at_the_epoch_end(tmp_path: Path) -> None:
    """With no check inside the epoch left, both processes stop when the epoch ends."""
    options = ["--stop-at-step", "9", "--epochs", "3", "--stop-check-every", "100"]
    result = _run([*TORCHRUN, *SCRIPT, str(tmp_path), *options])
    assert result.returncode == 0, result.stderr
    assert len(rows_without_seconds(tmp_path / "history0.json")) == 2
    assert _max_difference(tmp_path / "rank0.safetensors", tmp_path / "rank1.safetensors") == 0


@pytest.mark.slow
def test_a_distributed_epoch_blocks_on_no_collective_per_step(tmp_path: Path) -> None:
    """Per epoch: 2 blocking all-reduces (the scores) and 1 non-blocking stop check per 8 steps."""
    options = ["--count-collectives", "--num-train", "1088", "--epochs", "2"]
    result = _run([*TORCHRUN, *SCRIPT, str(tmp_path), *options])
    assert result.returncode == 0, result.stderr
    for process in (0, 1):
        epochs = json.loads((tmp_path / f"collectives{process}.json").read_text())
        assert len(epochs) == 2
        for epoch in epochs:
            assert epoch["steps"] == 32
            assert epoch.get("blocking", 0) == 2  # training and validation scores
            assert epoch.get("non_blocking", 0) == 32 // DataParallel.stop_check_every


@pytest.mark.slow
def test_distributed_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    """With augmentation, 1 epoch then a resumed 2nd equals 2 epochs straight (2 processes)."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    options = ["--augment", "--checkpoints"]
    runs = [(straight, []), (resumed, ["--stop-after-epoch", "1"]), (resumed, ["--resume"])]
    for out, extra in runs:
        result = _run([*TORCHRUN, *SCRIPT, str(out), *options, *extra])
        assert result.returncode == 0, result.stderr
    assert _max_difference(straight / "rank0.safetensors", resumed / "rank0.safetensors") == 0
    assert rows_without_seconds(straight / "history0.json") == rows_without_seconds(
        resumed / "history0.json"
    )


@pytest.mark.slow
def test_cli_train_under_torchrun(tmp_path: Path) -> None:
    """``torchrun -m lenetish train`` trains on 2 processes; rank 0 alone reports and writes."""
    data = write_fake_mnist(tmp_path / "data", num_train=200, num_test=40)
    command = ["-m", "lenetish", "train", "--data", str(data), "--no-download", "--epochs", "2"]
    options = ["--device", "cpu", "--val-size", "40", "--out", str(tmp_path / "run")]
    result = _run([*TORCHRUN, *command, *options], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("test accuracy") == 1
    assert result.stdout.count("epoch=2 ") == 1
    written = sorted(path.name for path in (tmp_path / "run").iterdir())
    assert written == ["history.csv", "history.json", "last.pt", "model.safetensors"]
    assert load_checkpoint(tmp_path / "run" / "last.pt")["world_size"] == 2


_LOAD = "import torch\ntorch.set_num_threads(2)\nx = torch.randn(600, 600)\nwhile True: x @ x\n"


@pytest.mark.slow
def test_repeated_torchrun_trains_all_exit_cleanly_under_load(tmp_path: Path) -> None:
    """Five 2-process CLI runs beside a busy CPU all exit 0 (no rank aborts at exit)."""
    data = write_fake_mnist(tmp_path / "data", num_train=120, num_test=20)
    command = ["-m", "lenetish", "train", "--data", str(data), "--no-download", "--epochs", "1"]
    load = subprocess.Popen([sys.executable, "-c", _LOAD])
    try:
        for run in range(5):
            options = ["--device", "cpu", "--val-size", "20", "--out", str(tmp_path / f"r{run}")]
            result = _run([*TORCHRUN, *command, *options], cwd=tmp_path)
            assert result.returncode == 0, f"run {run}: {result.stderr[-2000:]}"
    finally:
        load.kill()
        load.wait()


def test_a_group_that_cannot_form_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """A launch whose rendezvous address is unusable fails with the rank and the reason."""
    for name, value in {**LAUNCH, "WORLD_SIZE": "2", "MASTER_PORT": "not-a-port"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(DistributedError, match="rank 1 could not join the gloo process group"):
        init_distributed(torch.device("cpu"))
    assert world_size() == 1


def test_exit_together_without_a_process_group_returns() -> None:
    """In a single process there is no one to wait for: the caller exits normally."""
    assert exit_together(0) is None
