"""Tests of lenetish.saving.checkpoint: atomic writes, safe loads, weights and RNG states."""

from __future__ import annotations

import errno
import os
import pickle
import random
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from lenetish import (
    CheckpointError,
    MNISTConvNet,
    MNISTWideNet,
    load_checkpoint,
    load_weights,
    save_weights,
)
from lenetish._atomic import remove_stale_temporaries, unsafe_kind
from lenetish.saving.checkpoint import (
    atomic_write,
    capture_rng_state,
    restore_rng_state,
    save_checkpoint,
)
from lenetish.saving.weightfiles import load_model
from tests.full_disk import fill_disk_after
from tests.training_helpers import digit_batches, quick_trainer, run_script, weights_equal


def _trained_checkpoint(path: Path) -> dict[str, Any]:
    trainer = quick_trainer(epochs=1)
    trainer.fit(digit_batches(10, 10))
    trainer.save_checkpoint(path)
    return trainer.checkpoint_state()


def test_checkpoint_holds_the_full_training_state(tmp_path: Path) -> None:
    """A checkpoint holds model, optimizer, epoch, step, callbacks and RNG states."""
    _trained_checkpoint(tmp_path / "c.pt")
    checkpoint = load_checkpoint(tmp_path / "c.pt")
    assert checkpoint["epoch"] == 1 and checkpoint["global_step"] == 1
    assert set(checkpoint["model"]) == set(MNISTConvNet().state_dict())
    assert checkpoint["optimizer"]["state"] and "lenetish.History" in checkpoint["callbacks"]
    assert {"python", "numpy", "torch", "cuda"} <= set(checkpoint["rng"])


def test_checkpoint_loads_with_weights_only(tmp_path: Path) -> None:
    """The file loads with plain torch.load(weights_only=True)."""
    _trained_checkpoint(tmp_path / "c.pt")
    assert torch.load(tmp_path / "c.pt", weights_only=True)["epoch"] == 1


def test_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    """After a save only the target file is in the folder."""
    _trained_checkpoint(tmp_path / "c.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_full_disk_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ENOSPC during a write raises CheckpointError and leaves the old file intact."""
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"marker": 1})
    before = path.read_bytes()

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(CheckpointError, match=r"No space left on device.*left as it was"):
        save_checkpoint(path, {"marker": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_missing_checkpoint_is_named(tmp_path: Path) -> None:
    """Loading a checkpoint that does not exist raises CheckpointError naming it."""
    with pytest.raises(CheckpointError, match=r"nothing\.pt does not exist"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_truncated_checkpoint_is_refused(tmp_path: Path) -> None:
    """A checkpoint cut short raises CheckpointError, not a zip or pickle error."""
    path = tmp_path / "c.pt"
    _trained_checkpoint(path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        load_checkpoint(path)


class CodeRunningPayload:
    """An object whose unpickling creates ``marker``: the side effect a loader must prevent."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_is_refused_and_never_runs(tmp_path: Path) -> None:
    """A file whose unpickling would run code is refused, and the code does not run."""
    marker = tmp_path / "ran"

    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "model": CodeRunningPayload(marker)}, path)
    with pytest.raises(CheckpointError, match="refused: it holds objects other than tensors"):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_plain_pickle_file_is_refused(tmp_path: Path) -> None:
    """A raw pickle (not torch's format) carrying code is refused too."""
    marker = tmp_path / "ran"

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(CodeRunningPayload(marker)))
    with pytest.raises(CheckpointError, match=r"evil.pkl (was refused|is damaged)"):
        load_checkpoint(path)
    assert not marker.exists()


def test_newer_format_version_is_refused(tmp_path: Path) -> None:
    """A checkpoint from a newer format version asks for an upgrade."""
    path = tmp_path / "c.pt"
    state = _trained_checkpoint(path)
    save_checkpoint(path, {**state, "format_version": 99})
    with pytest.raises(CheckpointError, match=r"format version 99, newer .* upgrade lenetish"):
        load_checkpoint(path)


def test_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    """A safe file without the checkpoint keys is not taken for a checkpoint."""
    path = tmp_path / "weights.pt"
    torch.save(MNISTConvNet().state_dict(), path)
    with pytest.raises(CheckpointError, match="not a lenetish training checkpoint"):
        load_checkpoint(path)


def test_weights_round_trip_as_safetensors(tmp_path: Path) -> None:
    """save_weights then load_weights restores every tensor exactly."""
    torch.manual_seed(1)
    model = MNISTConvNet()
    save_weights(model, tmp_path / "m.safetensors")
    loaded = load_weights(MNISTConvNet(), tmp_path / "m.safetensors")
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True)
    )


def test_weights_load_from_a_full_checkpoint(tmp_path: Path) -> None:
    """load_weights also takes the model out of a training checkpoint."""
    state = _trained_checkpoint(tmp_path / "c.pt")
    model = load_weights(MNISTConvNet(), tmp_path / "c.pt")
    assert torch.equal(model.fc2.bias, state["model"]["fc2.bias"])


def test_architecture_mismatch_names_the_layers(tmp_path: Path) -> None:
    """Weights of another architecture raise CheckpointError naming the mismatched layers."""
    save_weights(MNISTConvNet(hidden=64), tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match=r"fc1.weight \(64, 1200\) vs \(200, 1200\)"):
        load_weights(MNISTConvNet(), tmp_path / "m.safetensors")


def test_missing_and_unexpected_layers_are_named(tmp_path: Path) -> None:
    """Layers absent from or extra to the model are listed."""
    weights = MNISTConvNet().state_dict()
    weights["extra.weight"] = weights.pop("fc2.weight")

    save_file(weights, str(tmp_path / "m.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing: fc2.weight; unexpected: extra.weight"):
        load_weights(MNISTConvNet(), tmp_path / "m.safetensors")


def test_damaged_safetensors_is_refused(tmp_path: Path) -> None:
    """A damaged safetensors file raises CheckpointError."""
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(CheckpointError, match="is damaged"):
        load_weights(MNISTConvNet(), path)


def test_rng_state_round_trip() -> None:
    """Restoring a captured RNG state replays Python, NumPy and torch draws."""
    state = capture_rng_state()
    first = (random.random(), float(np.random.rand()), torch.rand(2).tolist())
    restore_rng_state(state)
    assert (random.random(), float(np.random.rand()), torch.rand(2).tolist()) == first


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path: Path) -> None:
    """Killed at random steps or inside a checkpoint write, a run resumes to the same weights."""
    straight = tmp_path / "straight"
    assert run_script(straight, "--epochs", "3").returncode == 0
    moments = [("--kill-at-step", str(step)) for step in random.Random(7).sample(range(5, 12), 2)]
    moments.append(("--kill-in-save", "2"))  # dies while writing epoch 2's checkpoint
    for index, (option, value) in enumerate(moments):
        crashed = tmp_path / f"crashed-{index}"
        killed = run_script(crashed, "--epochs", "3", option, value)
        assert killed.returncode == -9, killed.stderr
        last = crashed / "ckpt" / "last.pt"
        assert load_checkpoint(last)["epoch"] >= 1  # the last complete checkpoint loads
        resumed = run_script(crashed, "--epochs", "3", "--resume")
        assert resumed.returncode == 0, resumed.stderr
        assert weights_equal(straight / "final.safetensors", crashed / "final.safetensors")


@pytest.mark.slow
def test_kill_inside_a_write_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    """A SIGKILL between writing the temporary file and renaming it keeps last.pt as it was."""
    crashed = tmp_path / "crashed"
    assert run_script(crashed, "--epochs", "3", "--kill-in-save", "2").returncode == -9
    assert load_checkpoint(crashed / "ckpt" / "last.pt")["epoch"] == 1
    leftovers = [p.name for p in (crashed / "ckpt").iterdir() if p.name != "last.pt"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".last.pt.")


def test_load_model_rebuilds_the_saved_network(tmp_path: Path) -> None:
    """load_model reads the class from the file and returns that network, in eval mode."""
    save_weights(MNISTWideNet(), tmp_path / "wide.safetensors")
    model = load_model(tmp_path / "wide.safetensors")
    assert isinstance(model, MNISTWideNet) and not model.training


def test_load_model_refuses_an_unknown_network(tmp_path: Path) -> None:
    """A file naming a network lenetish does not know raises CheckpointError."""
    save_file({"w": torch.zeros(1)}, str(tmp_path / "x.safetensors"), metadata={"model": "Alien"})
    with pytest.raises(CheckpointError, match="holds a Alien, which lenetish cannot rebuild"):
        load_model(tmp_path / "x.safetensors")


def test_load_model_refuses_a_damaged_weights_file(tmp_path: Path) -> None:
    """A damaged safetensors file raises CheckpointError before any network is built."""
    (tmp_path / "x.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    with pytest.raises(CheckpointError, match=r"x.safetensors is damaged"):
        load_model(tmp_path / "x.safetensors")


def test_full_disk_inside_torch_save_is_named_and_cleaned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC from the file torch.save writes to raises CheckpointError, leaving no temp file."""
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"marker": 1})
    before = path.read_bytes()
    fill_disk_after(monkeypatch, room=4096)
    with pytest.raises(CheckpointError, match=r"No space left on device.*free some space"):
        save_checkpoint(path, {"marker": 2, "weights": torch.zeros(100_000)})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_unserialisable_object_is_named_and_cleaned(tmp_path: Path) -> None:
    """An object torch.save cannot pickle raises CheckpointError and leaves no temp file."""
    with pytest.raises(CheckpointError, match=r"c\.pt: the object cannot be serialised"):
        save_checkpoint(tmp_path / "c.pt", {"callback": lambda: None})
    assert list(tmp_path.iterdir()) == []


def test_interrupted_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    """A KeyboardInterrupt inside a write propagates and removes the temporary file."""

    def interrupted(handle: IO[bytes]) -> None:
        handle.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "c.pt", interrupted)
    assert list(tmp_path.iterdir()) == []


_KILLED_WRITER = """
import os, signal, sys
from lenetish.saving.checkpoint import atomic_write

def die(handle):
    handle.write(b"half a checkpoint")
    handle.flush()
    os.kill(os.getpid(), signal.SIGKILL)

atomic_write(sys.argv[1], die)
"""


def test_orphan_of_a_killed_writer_is_removed_by_the_next_write(tmp_path: Path) -> None:
    """A temp file left by a SIGKILLed process is deleted when the folder is next written."""
    killed = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(tmp_path / "last.pt")])
    assert killed.returncode == -signal.SIGKILL
    (orphan,) = tmp_path.iterdir()
    assert orphan.name.startswith(".last.pt.") and orphan.name.endswith(".tmp")
    save_checkpoint(tmp_path / "best.pt", {"marker": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


def test_temporary_file_of_a_live_process_is_kept(tmp_path: Path) -> None:
    """A temp file named with the id of a running process is never removed."""
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as live:
        try:
            in_progress = tmp_path / f".last.pt.{live.pid}.0123abcd.tmp"
            in_progress.write_bytes(b"being written")
            save_checkpoint(tmp_path / "best.pt", {"marker": 1})
            assert in_progress.exists()
        finally:
            live.kill()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_pickle_refusal_says_what_is_accepted(tmp_path: Path, protocol: int) -> None:
    """The refusal of a raw pickle names what lenetish loads and never advises weights_only."""
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}, protocol=protocol))
    with pytest.raises(CheckpointError, match=r"refused.*model weights as \.safetensors") as info:
        load_checkpoint(path)
    assert "weights_only" not in str(info.value)


def test_a_users_own_temporary_file_is_kept(tmp_path: Path) -> None:
    """A hidden .tmp file not named the way lenetish names its own survives a write."""
    dead_pid = 2**22 + 1  # above the largest pid Linux allows: no process has it
    users = tmp_path / f".notes.{dead_pid}.tmp"
    users.write_text("mine")
    save_checkpoint(tmp_path / "best.pt", {"marker": 1})
    assert users.read_text() == "mine"


def test_garbage_is_called_damaged_without_torchs_advice(tmp_path: Path) -> None:
    """Bytes that are no pickle are called damaged, without torch's weights_only advice."""
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="is damaged or truncated") as info:
        load_checkpoint(path)
    assert "weights_only" not in str(info.value)


def test_symlinked_target_is_refused_and_its_target_kept(tmp_path: Path) -> None:
    """A symbolic link at the path is refused; the file it points to is never written."""
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    (tmp_path / "run").mkdir()
    link = tmp_path / "run" / "last.pt"
    link.symlink_to(outside)
    with pytest.raises(CheckpointError, match=r"last\.pt: it is a symbolic link \(to .*outside"):
        save_checkpoint(link, {"marker": 1})
    assert outside.read_text() == "precious" and link.is_symlink()
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["last.pt"]


def test_fifo_at_the_target_is_refused(tmp_path: Path) -> None:
    """A FIFO at the path is refused and left in place, not replaced by a file."""
    fifo = tmp_path / "last.pt"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match=r"it is a FIFO \(named pipe\).*pick another path"):
        save_checkpoint(fifo, {"marker": 1})
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_folder_at_the_target_is_refused(tmp_path: Path) -> None:
    """A folder at the path is refused by name, with no temporary file left beside it."""
    (tmp_path / "last.pt").mkdir()
    with pytest.raises(CheckpointError, match=r"last\.pt: it is a folder; lenetish replaces only"):
        save_checkpoint(tmp_path / "last.pt", {"marker": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_device_is_recognised_without_being_opened() -> None:
    """/dev/null is named a device (looked at with lstat, never opened or replaced)."""
    assert unsafe_kind("/dev/null") == "a device"


_HOLD_LOCK = """
import fcntl, sys, time
handle = open(sys.argv[1], "ab")
fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_temporary_locked_by_a_writer_in_another_pid_namespace_is_kept(tmp_path: Path) -> None:
    """A temporary whose writer holds its lock is kept, whatever namespace the writer is in."""
    foreign = tmp_path / ".last.pt.lenetish-0123456789abcdef.tmp"
    foreign.write_bytes(b"being written")
    os.utime(foreign, (1_000_000_000, 1_000_000_000))  # old: only the lock can protect it
    command = [sys.executable, "-c", _HOLD_LOCK, str(foreign), "60"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
            save_checkpoint(tmp_path / "best.pt", {"marker": 1})
            assert foreign.read_bytes() == b"being written"
        finally:
            holder.kill()


def test_temporary_whose_lock_holder_ended_is_removed(tmp_path: Path) -> None:
    """A temporary whose writer has ended (its lock is free) is removed at the next write."""
    orphan = tmp_path / ".last.pt.lenetish-0123456789abcdef.tmp"
    orphan.write_bytes(b"half a checkpoint")
    subprocess.run([sys.executable, "-c", _HOLD_LOCK, str(orphan), "0"], check=True)
    assert remove_stale_temporaries(tmp_path) == [orphan]
    assert not orphan.exists()


_SLOW_WRITER = """
import sys, time
from lenetish.saving.checkpoint import atomic_write

def slow(handle):
    handle.write(b"half")
    handle.flush()
    print("writing", flush=True)
    time.sleep(60)

atomic_write(sys.argv[1], slow)
"""


def test_writer_holds_a_lock_on_its_temporary_while_writing(tmp_path: Path) -> None:
    """While atomic_write runs, its temporary is flocked, so a cleanup leaves it alone."""
    fcntl = pytest.importorskip("fcntl")
    command = [sys.executable, "-c", _SLOW_WRITER, str(tmp_path / "last.pt")]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as writer:
        try:
            assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
            (temporary,) = tmp_path.iterdir()
            with temporary.open("rb") as handle, pytest.raises(BlockingIOError):
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            assert remove_stale_temporaries(tmp_path) == [] and temporary.exists()
        finally:
            writer.kill()


@pytest.mark.parametrize(
    "name",
    [
        ".settings.json.4242.tmp",
        ".history.json.4242.tmp",
        ".last.pt.4242.0123abcd.tmp",
        ".m.onnx.4242.tmp.onnx",
        ".m.onnx.4242.tmp.onnx.data",
    ],
)
def test_a_file_named_like_an_earlier_versions_temporary_survives_a_write(
    tmp_path: Path, name: str
) -> None:
    """A user's file named like an earlier version's temporary, however old, is never deleted."""
    users = tmp_path / name
    users.write_text("mine")
    os.utime(users, (1_000_000_000, 1_000_000_000))  # unchanged since 2001, its lock free
    save_checkpoint(tmp_path / "best.pt", {"marker": 1})
    assert users.read_text() == "mine"


def test_a_temporary_of_another_user_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lenetish-named temporary whose owner is not this user is never deleted (not by root)."""
    orphan = tmp_path / ".last.pt.lenetish-0123456789abcdef.tmp"
    orphan.write_bytes(b"half a checkpoint")
    monkeypatch.setattr(os, "geteuid", lambda: orphan.stat().st_uid + 1)
    assert remove_stale_temporaries(tmp_path) == [] and orphan.exists()


def test_a_temporary_name_with_a_second_link_is_kept(tmp_path: Path) -> None:
    """A lenetish-named file that is also linked elsewhere (a user's file) is never deleted."""
    kept = tmp_path / "notes.txt"
    kept.write_text("mine")
    alias = tmp_path / ".last.pt.lenetish-0123456789abcdef.tmp"
    os.link(kept, alias)
    assert remove_stale_temporaries(tmp_path) == [] and alias.read_text() == "mine"


def test_temporary_removed_before_its_writer_locked_it_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If a cleanup deletes a new temporary before its writer locks it, the writer starts over."""
    fcntl = pytest.importorskip("fcntl")
    real_flock, calls = fcntl.flock, []

    def cleaner_first(descriptor: int, operation: int) -> None:
        if not calls:  # as a cleanup in another process would, between create and lock
            (first,) = tmp_path.glob(".c.pt.lenetish-*.tmp")
            first.unlink()
        calls.append(operation)
        real_flock(descriptor, operation)

    monkeypatch.setattr(fcntl, "flock", cleaner_first)
    atomic_write(tmp_path / "c.pt", lambda handle: handle.write(b"whole"))
    assert (tmp_path / "c.pt").read_bytes() == b"whole" and len(calls) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_own_temporary_is_kept_where_locks_do_not_conflict_within_a_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cleanup never removes a temporary its own process is writing (as on NFS's locks)."""
    fcntl = pytest.importorskip("fcntl")
    monkeypatch.setattr(fcntl, "flock", lambda descriptor, operation: None)  # always granted
    removed: list[Path] = []

    def write_and_clean(handle: IO[bytes]) -> None:
        handle.write(b"whole")
        removed.extend(remove_stale_temporaries(tmp_path))  # e.g. another thread's write

    atomic_write(tmp_path / "c.pt", write_and_clean)
    assert removed == [] and (tmp_path / "c.pt").read_bytes() == b"whole"


def _name_of(size: int) -> str:
    """A file name of ``size`` bytes in UTF-8, mostly two-byte characters: é...é.png."""
    return "é" * ((size - 4) // 2) + "x" * ((size - 4) % 2) + ".png"


@pytest.mark.parametrize("size", [244, 255])
def test_a_long_non_ascii_name_within_the_limit_is_written(tmp_path: Path, size: int) -> None:
    """A legal name of 244 or 255 UTF-8 bytes is written; its temporary's name is cut to fit."""
    target = tmp_path / _name_of(size)
    temporaries: list[str] = []

    def write(handle: IO[bytes]) -> None:
        temporaries.extend(p.name for p in tmp_path.iterdir())
        handle.write(b"picture")

    atomic_write(target, write)
    assert len(os.fsencode(target.name)) == size and target.read_bytes() == b"picture"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    (temporary,) = temporaries
    assert len(os.fsencode(temporary)) <= 255 and temporary.startswith(".éé")
    assert temporary.endswith(".tmp") and ".lenetish-" in temporary


def test_an_orphan_with_a_cut_name_is_cleaned(tmp_path: Path) -> None:
    """The temporary of a long name, left by a writer that ended, is removed by the next write."""
    target = tmp_path / _name_of(255)
    orphans: list[Path] = []

    def interrupted(handle: IO[bytes]) -> None:
        orphans.extend(tmp_path.iterdir())
        os.link(orphans[0], tmp_path / "kept")  # survives the writer's own cleanup
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, interrupted)
    (tmp_path / "kept").rename(orphans[0])  # as a SIGKILL leaves it: one link, its lock free
    assert remove_stale_temporaries(tmp_path) == orphans


def test_a_name_longer_than_the_file_system_allows_is_named(tmp_path: Path) -> None:
    """A 256-byte name is refused before anything is written, saying its size and the limit."""
    with pytest.raises(CheckpointError, match=r"name is 256 bytes long .* more than the 255 .*"):
        atomic_write(tmp_path / "run" / _name_of(256), lambda handle: handle.write(b"x"))
    assert list(tmp_path.iterdir()) == []


def test_the_name_limit_is_the_file_systems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limit is what pathconf says for the folder (here 64), counting the temporary's room."""
    asked: list[str] = []

    def pathconf(path: object, name: str) -> int:
        asked.append(name)
        return 64

    monkeypatch.setattr(os, "pathconf", pathconf)
    atomic_write(tmp_path / ("a" * 64), lambda handle: handle.write(b"x"))
    with pytest.raises(CheckpointError, match=r"name is 65 bytes long .* more than the 64 "):
        atomic_write(tmp_path / ("a" * 65), lambda handle: handle.write(b"x"))
    assert set(asked) == {"PC_NAME_MAX"} and [p.name for p in tmp_path.iterdir()] == ["a" * 64]
