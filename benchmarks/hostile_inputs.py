"""Benchmark: the hostile-input matrix; one line per case, then cases tried / cases handled.

Each case is a small function registered with ``@case("area: what is tried")``. It gets a fresh
scratch folder, does one hostile or careless thing to lenetish, and returns a short note on
how it was handled, or raises :class:`NotHandled` saying what went wrong. Any other exception
counts as not handled. To add cases, append functions with the decorator (any module area);
the order here is the order they run and print in.

Resource cases run the hostile input in a fresh interpreter, read its peak resident memory
with ``resource.getrusage``, and require it to stay within 300 MB of the same interpreter
handling a valid file, and the error to be a named :class:`~lenetish.errors.LenetishError`.

Usage::

    python benchmarks/hostile_inputs.py            # every case
    python benchmarks/hostile_inputs.py -k export  # cases whose name contains "export"
"""

from __future__ import annotations

import argparse
import datetime
import errno
import gzip
import io
import json
import os
import pickle
import re
import shlex
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

import lenetish._atomic
from lenetish import (
    DATASETS,
    Callback,
    CheckpointError,
    DatasetCorruptError,
    DatasetNotFoundError,
    History,
    InvalidArgumentError,
    InvalidImageError,
    InvalidInputError,
    MNISTConvNet,
    ModelCheckpoint,
    OutputFileError,
    Trainer,
    TrainerBusyError,
    UnsupportedModelError,
    export_model,
    load_checkpoint,
    load_model,
    load_weights,
    plot_digits,
    predict,
    read_idx,
    save_weights,
    write_idx,
)
from lenetish.evaluation.inputs import prepare_inputs, printable_path
from lenetish.evaluation.prepare import mnistify
from lenetish.saving.checkpoint import atomic_write, save_checkpoint

MEMORY_MARGIN_MB = 300  # a resource case may use at most this much more than a valid file
CaseFunction = Callable[[Path], str]
CASES: list[tuple[str, CaseFunction]] = []


class NotHandled(Exception):
    """The case was not handled as it should be (the message says what happened)."""


def case(name: str) -> Callable[[CaseFunction], CaseFunction]:
    """Register a case function under ``name`` (run in registration order)."""

    def register(function: CaseFunction) -> CaseFunction:
        CASES.append((name, function))
        return function

    return register


def expect(error: type[BaseException], pattern: str, action: Callable[[], object]) -> str:
    """Run ``action``; it must raise ``error`` with a message matching ``pattern``."""
    try:
        action()
    except error as exc:
        if not re.search(pattern, str(exc)):
            raise NotHandled(f"{type(exc).__name__} without {pattern!r}: {exc}") from exc
        return f"{type(exc).__name__}: {str(exc)[:90]}"
    raise NotHandled(f"no {error.__name__} was raised")


def only_files(folder: Path, *names: str) -> None:
    """The folder must hold exactly ``names``: no hidden or temporary files."""
    found = sorted(p.name for p in folder.iterdir())
    if found != sorted(names):
        raise NotHandled(f"{folder.name} holds {found}, expected {sorted(names)}")


# --- measuring a snippet in a fresh interpreter -------------------------------------------

_WRAPPER = """
import json, resource
from lenetish.errors import LenetishError
outcome = "ok"
try:
{body}
except LenetishError as exc:
    outcome = f"{{type(exc).__name__}}: {{exc}}"
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"peak_mb": peak_mb, "outcome": outcome}}))
"""

# Linux carries the peak RSS over fork and exec (a child's count starts at its parent's size
# at the fork), so the snippet runs as the grandchild of a small launcher: it then counts from
# the launcher's ~10 MB, not from the size of the process that asked for the measurement.
_LAUNCHER = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"


def _run_in_group(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` in a new session; on timeout the whole group (grandchild too) dies."""
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def measure(body: str, *, timeout: float = 120) -> tuple[float, str]:
    """Peak RSS (MiB) and outcome (``ok`` or the named error) of ``body`` in a new Python."""
    code = _WRAPPER.format(body=textwrap.indent(textwrap.dedent(body), "    "))
    try:
        done = _run_in_group([sys.executable, "-c", _LAUNCHER, sys.executable, "-c", code], timeout)
    except subprocess.TimeoutExpired as exc:
        raise NotHandled(f"still running after {timeout:.0f} s") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise NotHandled(f"exit {done.returncode}: {last}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return float(report["peak_mb"]), str(report["outcome"])


def within_memory(body: str, baseline: str, pattern: str) -> str:
    """``body`` must fail with a named error matching ``pattern``, in bounded memory."""
    base_mb, base_outcome = measure(baseline)
    if base_outcome != "ok":
        raise NotHandled(f"the valid input failed: {base_outcome}")
    started = time.perf_counter()
    peak_mb, outcome = measure(body)
    seconds = time.perf_counter() - started
    if not re.search(pattern, outcome):
        raise NotHandled(f"outcome {outcome[:120]!r} does not match {pattern!r}")
    if peak_mb > base_mb + MEMORY_MARGIN_MB:
        raise NotHandled(f"peak {peak_mb:.0f} MB vs {base_mb:.0f} MB for a valid file")
    return f"{outcome[:60]}... peak {peak_mb:.0f} MB (valid {base_mb:.0f} MB), {seconds:.1f} s"


# --- idx files ----------------------------------------------------------------------------


def idx_header(*dims: int) -> bytes:
    """The header of a uint8 idx file with ``dims``."""
    return bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


@cache
def gzip_zeros(count: int) -> bytes:
    """Gzip members (64 MiB each) that decompress to ``count`` zero bytes."""
    chunk = 64 * 2**20
    member = gzip.compress(bytes(chunk), compresslevel=9)
    whole, rest = divmod(count, chunk)
    return member * whole + (gzip.compress(bytes(rest)) if rest else b"")


def valid_mnist_sized(folder: Path) -> Path:
    """A valid gzip idx file the size of MNIST's training images."""
    path = folder / "valid-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_header(60000, 28, 28)) + gzip_zeros(60000 * 28 * 28))
    return path


def read_snippet(path: Path) -> str:
    """Code that reads ``path`` with read_idx."""
    return f"from lenetish import read_idx\nread_idx({str(path)!r})"


@case("idx: 2 MB gzip, 2 GiB after the declared data")
def idx_bomb_after_data(work: Path) -> str:
    """A file whose header is right but whose stream goes on for 2 GiB."""
    valid = valid_mnist_sized(work)
    bomb = work / "bomb-idx3-ubyte.gz"
    bomb.write_bytes(valid.read_bytes() + gzip_zeros(2 * 2**30))
    return within_memory(
        read_snippet(bomb), read_snippet(valid), r"^DatasetCorruptError: .*longer than its header"
    )


@case("idx: gzip whose header declares 2.3 GB")
def idx_bomb_huge_header(work: Path) -> str:
    """A header declaring 3,000,000 images, followed by 2 GiB of zeros."""
    bomb = work / "huge-idx3-ubyte.gz"
    bomb.write_bytes(gzip.compress(idx_header(3_000_000, 28, 28)) + gzip_zeros(2 * 2**30))
    return within_memory(
        read_snippet(bomb),
        read_snippet(valid_mnist_sized(work)),
        r"^DatasetCorruptError: .*declares shape \(3000000, 28, 28\)",
    )


@case("idx: dimensions multiplying to 2**64")
def idx_dims_wrap(work: Path) -> str:
    """A header whose product wraps to 0 in 64-bit arithmetic."""
    path = work / "wraps"
    path.write_bytes(idx_header(2**16, 2**16, 2**16, 2**16))
    return expect(DatasetCorruptError, "declares shape", lambda: read_idx(path))


@case("idx: dimensions past the size limit")
def idx_dims_huge(work: Path) -> str:
    """A header declaring (2**32 - 1)**3 values, with no data."""
    path = work / "huge"
    path.write_bytes(idx_header(2**32 - 1, 2**32 - 1, 2**32 - 1))
    return expect(DatasetCorruptError, "more than the", lambda: read_idx(path))


@case("idx: a FIFO in place of the file")
def idx_fifo(work: Path) -> str:
    """A named pipe with no writer (reading it would block forever)."""
    fifo = work / "train-images-idx3-ubyte"
    os.mkfifo(fifo)
    _, outcome = measure(read_snippet(fifo), timeout=60)
    if not outcome.startswith("DatasetCorruptError") or "FIFO" not in outcome:
        raise NotHandled(outcome)
    return outcome[:100]


@case("idx: a character device in place of the file")
def idx_device(work: Path) -> str:
    """/dev/null, which reads as empty."""
    return expect(DatasetCorruptError, "character device", lambda: read_idx("/dev/null"))


@case("idx: a directory in place of the file")
def idx_directory(work: Path) -> str:
    """A folder where the idx file should be."""
    return expect(DatasetCorruptError, "is a directory", lambda: read_idx(work))


# --- writes: checkpoints and exports ------------------------------------------------------


class FullDiskFile(io.FileIO):
    """A real file that accepts ``room`` bytes, then fails every write with ENOSPC."""

    def __init__(self, name: Any, mode: str, room: int) -> None:
        super().__init__(name, mode)
        self.room = room

    def write(self, data: Any) -> int:
        """Write what fits, then raise ``OSError(ENOSPC)``."""
        size = memoryview(data).nbytes
        if size > self.room:
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= size
        return super().write(data)


@contextmanager
def full_disk(room: int = 4096) -> Iterator[None]:
    """Within the block, the files lenetish writes atomically fill up after ``room`` bytes."""

    def full_open(name: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "b" in mode and any(flag in mode for flag in "wxa"):
            return FullDiskFile(name, mode.replace("b", ""), room)
        return open(name, mode, *args, **kwargs)

    setattr(lenetish._atomic, "open", full_open)  # noqa: B010  (shadows the builtin)
    try:
        yield
    finally:
        delattr(lenetish._atomic, "open")


@case("checkpoint: full disk inside torch.save")
def save_full_disk(work: Path) -> str:
    """ENOSPC from the file torch.save writes to."""
    with full_disk():
        note = expect(
            CheckpointError,
            "No space left",
            lambda: save_checkpoint(work / "c.pt", {"weights": torch.zeros(100_000)}),
        )
    only_files(work)
    return note


@case("checkpoint: an object that cannot be serialised")
def save_unserialisable(work: Path) -> str:
    """A lambda inside the state."""
    note = expect(
        CheckpointError,
        "cannot be serialised",
        lambda: save_checkpoint(work / "c.pt", {"f": lambda: None}),
    )
    only_files(work)
    return note


_KILLED_WRITER = """
import os, signal, sys
from lenetish.saving.checkpoint import atomic_write
def die(handle):
    handle.write(b"half")
    handle.flush()
    os.kill(os.getpid(), signal.SIGKILL)
atomic_write(sys.argv[1], die)
"""


@case("checkpoint: SIGKILL inside a write, then another write")
def save_sigkill_orphan(work: Path) -> str:
    """The orphan temp file of a killed writer goes at the next write to the folder."""
    killed = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(work / "last.pt")])
    if killed.returncode != -signal.SIGKILL:
        raise NotHandled(f"the writer exited {killed.returncode} instead of being killed")
    orphans = [p.name for p in work.iterdir()]
    save_checkpoint(work / "best.pt", {"marker": 1})
    only_files(work, "best.pt")
    return f"removed {orphans}"


@case("checkpoint: a live writer's temp file")
def save_live_temp_kept(work: Path) -> str:
    """A temp file named with a running process's id is left alone."""
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as live:
        try:
            in_progress = work / f".last.pt.{live.pid}.0123abcd.tmp"
            in_progress.write_bytes(b"being written")
            save_checkpoint(work / "best.pt", {"marker": 1})
            if not in_progress.exists():
                raise NotHandled("a live process's temporary file was removed")
        finally:
            live.kill()
    return "kept"


@case("checkpoint: Ctrl-C inside a write")
def save_interrupted(work: Path) -> str:
    """KeyboardInterrupt while the temp file is half written."""

    def interrupted(handle: Any) -> None:
        handle.write(b"half")
        raise KeyboardInterrupt

    try:
        atomic_write(work / "c.pt", interrupted)
    except KeyboardInterrupt:
        only_files(work)
        return "KeyboardInterrupt, no file left"
    raise NotHandled("the interrupt was swallowed")


@case("checkpoint: raw pickle refused without weights_only advice")
def load_raw_pickle(work: Path) -> str:
    """A plain pickle file offered as a checkpoint."""
    path = work / "model.pkl"
    path.write_bytes(pickle.dumps({"weights": [1.0]}))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        note = expect(CheckpointError, r"refused.*\.safetensors", lambda: load_checkpoint(path))
    if "weights_only" in note:
        raise NotHandled("the message mentions weights_only")
    return note


@case("export: ONNX moved to another folder still runs")
def export_onnx_moved(work: Path) -> str:
    """The ONNX file must carry its weights."""
    try:
        import onnxruntime  # type: ignore[import-untyped]
    except ImportError:
        return "skipped: onnxruntime is not installed (the file is still checked)"
    model = MNISTConvNet().eval()
    exported = export_model(model, work / "made" / "m.onnx", format="onnx")
    only_files(work / "made", "m.onnx")
    moved = shutil.move(exported, work / "moved.onnx")
    shutil.rmtree(work / "made")
    images = torch.rand(5, 1, 28, 28)
    (outputs,) = onnxruntime.InferenceSession(str(moved)).run(None, {"images": images.numpy()})
    if not torch.allclose(torch.from_numpy(outputs), model(images), atol=1e-4):
        raise NotHandled("the moved file gives other outputs")
    return "self-contained, same outputs"


@case("export: full disk, every format")
def export_full_disk(work: Path) -> str:
    """ENOSPC while writing safetensors, TorchScript and ONNX files."""
    for format in ("safetensors", "torchscript", "onnx"):
        with full_disk():
            write = partial(export_model, MNISTConvNet(), work / f"m.{format}", format=format)
            expect(CheckpointError, "No space left", write)
        only_files(work)
    return "CheckpointError, no file left, for safetensors, torchscript, onnx"


@case("export: pt2 on a full disk")
def export_pt2_full_disk(work: Path) -> str:
    """An export in the pt2 format once aborted the process with a C++ backtrace."""
    script = f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
        import hostile_inputs as matrix
        from lenetish import MNISTConvNet, export_model
        with matrix.full_disk():
            export_model(MNISTConvNet(), {str(work / "m.pt2")!r}, format="pt2")
    """
    _, outcome = measure(script, timeout=300)
    if not re.match(r"CheckpointError: .*No space left", outcome):
        raise NotHandled(outcome)
    only_files(work)
    return outcome[:100]


# --- images -------------------------------------------------------------------------------


def grey_digit() -> np.ndarray:
    """An 8-bit dark digit with a mid-grey stroke on white."""
    pixels = np.full((200, 120), 255, dtype=np.uint8)
    pixels[20:170, 30:45] = 10
    pixels[150:170, 30:90] = 10
    pixels[20:170, 60:70] = 128
    return pixels


@case("images: 16-bit greyscale PNG")
def image_sixteen_bit(work: Path) -> str:
    """A 16-bit PNG must give the digit its 8-bit version gives (scaled, not clamped)."""
    pixels = grey_digit()
    Image.fromarray(pixels.astype(np.uint16) * 257).save(work / "deep.png")
    mnist = DATASETS["mnist"]
    wide = prepare_inputs(work / "deep.png", mnist)
    if not torch.equal(wide, prepare_inputs(Image.fromarray(pixels), mnist)):
        raise NotHandled("the 16-bit image is prepared differently from its 8-bit version")
    return "same input as the 8-bit image"


@case("images: one blank image among 301 files")
def image_blank_in_batch(work: Path) -> str:
    """The error must name the blank file."""
    paths = []
    for index in range(301):
        path = work / f"digit-{index:03d}.png"
        Image.fromarray(grey_digit() if index != 150 else np.full((40, 40), 255, np.uint8)).save(
            path
        )
        paths.append(path)
    mnist = DATASETS["mnist"]
    return expect(InvalidInputError, r"digit-150\.png", lambda: prepare_inputs(paths, mnist))


@case("images: non-UTF-8 file name in messages")
def image_non_utf8_name(work: Path) -> str:
    """The error for such a file can be printed to a UTF-8 stream."""
    missing = work / os.fsdecode(b"\xff.png")
    note = expect(
        InvalidImageError, "does not exist", lambda: prepare_inputs(missing, DATASETS["mnist"])
    )
    note.encode("utf-8")
    return f"{note}; printable_path gives {printable_path(missing.name)!r}"


# --- resuming from checkpoints that load but do not fit -----------------------------------


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(20, 1, 28, 28, generator=generator)
    return [(images[i : i + 10], torch.arange(10)) for i in (0, 10)]


def _trainer(epochs: int = 1, **options: Any) -> Trainer:
    return Trainer(MNISTConvNet(), epochs=epochs, device="cpu", progress=False, **options)


def _damaged_checkpoint(work: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """A real one-epoch checkpoint (fused Adam) with ``change`` applied to its contents."""
    _trainer(callbacks=[ModelCheckpoint(work)]).fit(_batches())
    state = load_checkpoint(work / "last.pt")
    change(state)
    save_checkpoint(work / "damaged.pt", state)
    return work / "damaged.pt"


def _resume_refused(work: Path, change: Callable[[dict[str, Any]], None], pattern: str) -> str:
    damaged = _damaged_checkpoint(work, change)
    return expect(
        CheckpointError, pattern, lambda: _trainer(epochs=2).fit(_batches(), resume=damaged)
    )


_RESUME = """
import torch
from lenetish import MNISTConvNet, Trainer
images = torch.rand(20, 1, 28, 28, generator=torch.Generator().manual_seed(0))
batches = [(images[i : i + 10], torch.arange(10)) for i in (0, 10)]
Trainer(MNISTConvNet(), epochs=2, device="cpu", progress=False).fit(batches, resume={!r})
"""


@case("restore: an Adam moment of the wrong shape (fused kernel)")
def restore_wrong_adam_shape(work: Path) -> str:
    """It used to make the fused Adam write past its buffer and segfault."""

    def change(state: dict[str, Any]) -> None:
        state["optimizer"]["state"][0]["exp_avg"] = torch.zeros(3)

    peak, outcome = measure(_RESUME.format(str(_damaged_checkpoint(work, change))))
    if not re.search(r"CheckpointError: .*exp_avg", outcome):
        raise NotHandled(f"outcome {outcome[:120]!r}")
    return f"{outcome[:90]}... (peak {peak:.0f} MB, no crash)"


@case("restore: a stride-0 RNG state of 2 GiB in a small file")
def restore_expanded_rng(work: Path) -> str:
    """Refused before set_rng_state could expand it, within 300 MB of a valid resume."""

    def change(state: dict[str, Any]) -> None:
        state["rng"]["torch"] = torch.zeros(1, dtype=torch.uint8).expand(2**31)

    damaged = _damaged_checkpoint(work, change)
    return within_memory(
        _RESUME.format(str(damaged)), _RESUME.format(str(work / "last.pt")), r"rng\.torch"
    )


@case("restore: a string epoch")
def restore_string_epoch(work: Path) -> str:
    """A damaged counter is named, not an unexpected TypeError."""
    return _resume_refused(work, lambda s: s.__setitem__("epoch", "3"), "epoch must be an int")


@case("restore: a negative epoch, and one of 10**30")
def restore_epoch_out_of_range(work: Path) -> str:
    """Counters out of range are named."""
    _resume_refused(work, lambda s: s.__setitem__("epoch", -5), "epoch is -5")
    return _resume_refused(work, lambda s: s.__setitem__("epoch", 10**30), "outside 0..2")


@case("restore: no rng")
def restore_missing_rng(work: Path) -> str:
    """A missing field is named, not an unexpected KeyError."""
    return _resume_refused(work, lambda s: s.pop("rng"), "rng is missing")


@case("restore: an empty param_groups")
def restore_empty_groups(work: Path) -> str:
    """An optimizer state for no groups is named."""
    change = _set_optimizer_groups_empty
    return _resume_refused(work, change, "has 0 groups")


def _set_optimizer_groups_empty(state: dict[str, Any]) -> None:
    state["optimizer"]["param_groups"] = []


@case("restore: model=[1, 2, 3]")
def restore_model_list(work: Path) -> str:
    """A model that is not a dictionary of tensors is named."""
    return _resume_refused(work, lambda s: s.__setitem__("model", [1, 2, 3]), "must be a dict")


@case("restore: History rows that are not rows")
def restore_bad_history(work: Path) -> str:
    """A callback state that does not load is named with its callback."""

    def change(state: dict[str, Any]) -> None:
        state["callbacks"]["lenetish.History"] = {"rows": ["x"]}

    return _resume_refused(work, change, "callback lenetish.History does not load")


# --- the command line ---------------------------------------------------------------------


def _cli(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lenetish", *arguments],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


@case("cli: export onto its own input")
def cli_export_onto_input(work: Path) -> str:
    """`export X.pt --out X.pt` would replace the checkpoint with an ONNX file."""
    _trainer(callbacks=[ModelCheckpoint(work)]).fit(_batches())
    done = _cli("export", "last.pt", "--format", "onnx", "--out", "./last.pt", cwd=work)
    if done.returncode != 2 or "is the checkpoint being exported" not in done.stderr:
        raise NotHandled(f"exit {done.returncode}: {done.stderr.strip()[-120:]}")
    return f"exit 2: {done.stderr.strip()[:90]}"


@case("cli: negative counts and seeds beyond 64 bits")
def cli_values_out_of_range(work: Path) -> str:
    """Refused at parse time with exit 2, not drawn as 59,999 digits."""
    notes = []
    for arguments in (
        ["img", "--count", "-1"],
        ["predict", "--sample", "-3"],
        ["train", "--seed", str(2**70)],
    ):
        done = _cli(*arguments, cwd=work)
        if done.returncode != 2:
            raise NotHandled(f"{' '.join(arguments)}: exit {done.returncode}")
        notes.append(done.stderr.strip().splitlines()[-1][:40])
    return "; ".join(notes)


def _tiny_mnist(folder: Path) -> Path:
    """Random digits in MNIST's four idx files (60 training, 20 test images)."""
    folder.mkdir()
    generator = torch.Generator().manual_seed(0)
    for split, count in (("train", 60), ("t10k", 20)):
        images = torch.randint(0, 256, (count, 28, 28), dtype=torch.uint8, generator=generator)
        write_idx(folder / f"{split}-images-idx3-ubyte", images)
        write_idx(
            folder / f"{split}-labels-idx1-ubyte", torch.arange(count, dtype=torch.uint8) % 10
        )
    return folder


@case("cli: train --out into a folder that holds a run")
def cli_reused_out_folder(work: Path) -> str:
    """The second run is refused (exit 2) instead of replacing the first one's files."""
    data = _tiny_mnist(work / "data")
    command = ["train", "--data", str(data), "--no-download", "--epochs", "1", "--out", "run"]
    first = _cli(*command, "--device", "cpu", "--val-size", "20", cwd=work)
    if first.returncode != 0:
        raise NotHandled(f"the first run failed: {first.stderr.strip()[-120:]}")
    second = _cli(*command, "--device", "cpu", "--val-size", "20", cwd=work)
    if second.returncode != 2 or "--overwrite" not in second.stderr:
        raise NotHandled(f"second run: exit {second.returncode}: {second.stderr.strip()[-120:]}")
    return f"exit 2: {second.stderr.strip().splitlines()[-1][:90]}"


# --- issue 27: writes never go through a link or over a device, a FIFO or a folder ----------


def _outside(work: Path) -> Path:
    """A file outside the folder being written, whose contents must survive."""
    target = work / "outside" / "precious.txt"
    target.parent.mkdir()
    target.write_text("precious")
    return target


def _untouched(target: Path) -> None:
    if target.read_text() != "precious":
        raise NotHandled(f"{target} was written through a link")


@case("writes: a checkpoint path that is a symlink to a file elsewhere")
def write_through_symlink(work: Path) -> str:
    """save_checkpoint must not truncate the link's target."""
    target = _outside(work)
    (work / "last.pt").symlink_to(target)
    note = expect(
        CheckpointError, "symbolic link", lambda: save_checkpoint(work / "last.pt", {"a": 1})
    )
    _untouched(target)
    return note


@case("writes: a dangling symlink where the weights go")
def write_dangling_symlink(work: Path) -> str:
    """A link to a missing file: nothing may be created at its target."""
    (work / "model.safetensors").symlink_to(work / "elsewhere" / "created.bin")
    note = expect(
        CheckpointError,
        "symbolic link",
        lambda: save_weights(MNISTConvNet(), work / "model.safetensors"),
    )
    if (work / "elsewhere").exists():
        raise NotHandled("the link's target folder was created")
    return note


@case("writes: a FIFO where an export goes")
def write_over_fifo(work: Path) -> str:
    """Writing must neither block on the FIFO nor replace it."""
    os.mkfifo(work / "m.onnx")
    note = expect(
        CheckpointError,
        "FIFO",
        lambda: export_model(MNISTConvNet(), work / "m.onnx", format="safetensors"),
    )
    if not stat.S_ISFIFO(os.lstat(work / "m.onnx").st_mode):
        raise NotHandled("the FIFO was replaced")
    return note


@case("writes: a folder where a checkpoint goes")
def write_over_folder(work: Path) -> str:
    """A folder at the path is refused, not replaced or written into."""
    (work / "last.pt").mkdir()
    note = expect(CheckpointError, "folder", lambda: save_checkpoint(work / "last.pt", {"a": 1}))
    if list((work / "last.pt").iterdir()):
        raise NotHandled("something was written into the folder")
    return note


@case("writes: an export to a link to /dev/null")
def write_link_to_device(work: Path) -> str:
    """Run as root, `export --out /dev/null` replaced the device; a link to it is refused."""
    (work / "null.pt").symlink_to("/dev/null")
    note = expect(
        CheckpointError,
        "symbolic link",
        lambda: export_model(MNISTConvNet(), work / "null.pt", format="state_dict"),
    )
    if not stat.S_ISCHR(os.stat("/dev/null").st_mode):
        raise NotHandled("/dev/null is no longer a device")
    return note


@case("writes: a picture through a symlink")
def write_picture_through_link(work: Path) -> str:
    """plot_digits goes through the one writer too: OutputFileError, target untouched."""
    target = _outside(work)
    (work / "grid.png").symlink_to(target)
    images = torch.zeros(4, 1, 28, 28)
    note = expect(OutputFileError, "symbolic link", lambda: plot_digits(images, work / "grid.png"))
    _untouched(target)
    return note


@case("writes: history.json onto a FIFO, history.csv through a link")
def write_history_unsafe(work: Path) -> str:
    """History.to_json / to_csv refuse a FIFO and a link (OutputFileError)."""
    target = _outside(work)
    os.mkfifo(work / "history.json")
    (work / "history.csv").symlink_to(target)
    history = History([{"epoch": 1, "loss": 0.5}])
    expect(OutputFileError, "FIFO", lambda: history.to_json(work / "history.json"))
    note = expect(OutputFileError, "symbolic link", lambda: history.to_csv(work / "history.csv"))
    _untouched(target)
    return note


@case("writes: write_idx through a symlink")
def write_idx_through_link(work: Path) -> str:
    """The one writer writes idx files as well."""
    target = _outside(work)
    (work / "t10k-labels-idx1-ubyte").symlink_to(target)
    labels = torch.zeros(3, dtype=torch.uint8)
    note = expect(
        OutputFileError,
        "symbolic link",
        lambda: write_idx(work / "t10k-labels-idx1-ubyte", labels),
    )
    _untouched(target)
    return note


@case("writes: full disk at history.json keeps the earlier file")
def write_history_full_disk(work: Path) -> str:
    """ENOSPC: OutputFileError, the earlier history.json intact, no temporary left."""
    path = work / "history.json"
    History([{"epoch": 1, "loss": 0.5}]).to_json(path)
    before = path.read_bytes()
    rows = [{"epoch": e, "loss": 0.5} for e in range(1, 2000)]
    with full_disk(room=64):
        note = expect(OutputFileError, "No space left", lambda: History(rows).to_json(path))
    if path.read_bytes() != before:
        raise NotHandled("the earlier history.json changed")
    only_files(work, "history.json")
    return note


@case("writes: full disk at a picture keeps the earlier picture")
def write_picture_full_disk(work: Path) -> str:
    """`img --out pic.png` on a full disk used to leave an unreadable fragment."""
    path = work / "pic.png"
    plot_digits(torch.zeros(4, 1, 28, 28), path)
    before = path.read_bytes()
    with full_disk(room=512):
        note = expect(
            OutputFileError, "No space left", lambda: plot_digits(torch.ones(4, 1, 28, 28), path)
        )
    if path.read_bytes() != before:
        raise NotHandled("the earlier picture changed")
    only_files(work, "pic.png")
    return note


@case("writes: full disk at history.csv leaves no torn row")
def write_csv_full_disk(work: Path) -> str:
    """history.csv is written whole or not at all."""
    path = work / "history.csv"
    History([{"epoch": 1, "loss": 0.5}]).to_csv(path)
    before = path.read_bytes()
    rows = [{"epoch": e, "loss": 0.5} for e in range(1, 2000)]
    with full_disk(room=64):
        note = expect(OutputFileError, "No space left", lambda: History(rows).to_csv(path))
    if path.read_bytes() != before:
        raise NotHandled("history.csv was rewritten in place")
    return note


@case("writes: the device check refuses /dev/null as an output file")
def write_device_check(work: Path) -> str:
    """The command line's check names a device before any work (nothing is written)."""
    from lenetish.cli.output import check_output_file

    return expect(
        InvalidArgumentError, "is a device", lambda: check_output_file("/dev/null", "--out")
    )


# --- issue 27: temporaries are removed only when their writer provably ended ---------------

_HOLD_LOCK = """
import fcntl, os, sys, time
descriptor = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o666)
os.write(descriptor, b"being written elsewhere")
fcntl.flock(descriptor, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


@case("temporaries: another container's writer holds its temporary locked")
def temporary_locked_elsewhere(work: Path) -> str:
    """A locked temporary (a writer this PID namespace cannot see) is never deleted."""
    foreign = work / ".last.pt.lenetish-0123456789abcdef.tmp"
    with subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(foreign)], stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout is not None
            if holder.stdout.readline().strip() != "locked":
                raise NotHandled("the lock holder did not start")
            save_checkpoint(work / "best.pt", {"marker": 1})
            if not foreign.exists():
                raise NotHandled("a temporary locked by a live writer was deleted")
        finally:
            holder.kill()
    return "kept while locked"


@case("temporaries: one whose lock holder ended is removed")
def temporary_of_ended_writer(work: Path) -> str:
    """The lock is free, so its writer ended: the next write removes it."""
    orphan = work / ".last.pt.lenetish-fedcba9876543210.tmp"
    orphan.write_bytes(b"half")
    save_checkpoint(work / "best.pt", {"marker": 1})
    only_files(work, "best.pt")
    return "removed"


@case("temporaries: a user's own .notes.123.tmp is kept")
def temporary_of_a_user(work: Path) -> str:
    """Only names the writer makes are ever taken for its temporaries."""
    (work / ".notes.123.tmp").write_text("mine")
    save_checkpoint(work / "best.pt", {"marker": 1})
    only_files(work, ".notes.123.tmp", "best.pt")
    return "kept"


@case("temporaries: an old-style one with a pid of another namespace, fresh")
def temporary_legacy_fresh(work: Path) -> str:
    """A pid that does not exist here proves nothing: a fresh one is kept."""
    legacy = work / ".last.pt.999999999.0123abcd.tmp"
    legacy.write_bytes(b"another container")
    save_checkpoint(work / "best.pt", {"marker": 1})
    if not legacy.exists():
        raise NotHandled("deleted by pid alone")
    return "kept"


@case("temporaries: a user's .settings.json.4242.tmp left unchanged for four hours")
def temporary_legacy_stale(work: Path) -> str:
    """A name like an earlier version's temporary proves nothing, however old: it is kept."""
    users = work / ".settings.json.4242.tmp"
    users.write_bytes(b"mine")
    old = time.time() - 4 * 3600
    os.utime(users, (old, old))
    save_checkpoint(work / "best.pt", {"marker": 1})
    only_files(work, ".settings.json.4242.tmp", "best.pt")
    return "kept"


# --- issue 27: the command line's run folder and outputs ------------------------------------


@case("cli: train --out D with D/.lenetish.lock a symlink to a file elsewhere")
def cli_lock_symlink(work: Path) -> str:
    """`open(lock, "a+")` used to truncate the link's target and write a pid into it."""
    data = _tiny_mnist(work / "data")
    target = _outside(work)
    (work / "run").mkdir()
    (work / "run" / ".lenetish.lock").symlink_to(target)
    done = _cli("train", "--data", str(data), "--device", "cpu", "--out", "run", cwd=work)
    _untouched(target)
    if done.returncode != 1 or "symbolic link" not in done.stderr:
        raise NotHandled(f"exit {done.returncode}: {done.stderr.strip()[-120:]}")
    return f"exit 1: {done.stderr.strip()[:90]}"


@case("cli: train --out D with D/.lenetish.lock a FIFO")
def cli_lock_fifo(work: Path) -> str:
    """Opening a FIFO as the lock would block; it is refused at once."""
    data = _tiny_mnist(work / "data")
    (work / "run").mkdir()
    os.mkfifo(work / "run" / ".lenetish.lock")
    done = _cli("train", "--data", str(data), "--device", "cpu", "--out", "run", cwd=work)
    if done.returncode != 1 or "FIFO" not in done.stderr:
        raise NotHandled(f"exit {done.returncode}: {done.stderr.strip()[-120:]}")
    return f"exit 1: {done.stderr.strip()[:90]}"


@case("cli: train --out D with D/last.pt a symlink, refused before training")
def cli_run_file_symlink(work: Path) -> str:
    """A link where a run file goes is refused before the first epoch."""
    data = _tiny_mnist(work / "data")
    target = _outside(work)
    (work / "run").mkdir()
    (work / "run" / "last.pt").symlink_to(target)
    done = _cli("train", "--data", str(data), "--device", "cpu", "--out", "run", cwd=work)
    _untouched(target)
    if done.returncode != 1 or "symbolic link" not in done.stderr or "epoch" in done.stdout:
        raise NotHandled(f"exit {done.returncode}: {done.stderr.strip()[-120:]}")
    return f"exit 1: {done.stderr.strip()[:90]}"


@case("cli: --overwrite when model.safetensors is a folder")
def cli_overwrite_folder(work: Path) -> str:
    """Named in one line (exit 1), nothing deleted."""
    data = _tiny_mnist(work / "data")
    (work / "run" / "model.safetensors").mkdir(parents=True)
    (work / "run" / "last.pt").write_bytes(b"earlier run")
    command = ["train", "--data", str(data), "--device", "cpu", "--out", "run", "--overwrite"]
    done = _cli(*command, cwd=work)
    if done.returncode != 1 or "a folder at" not in done.stderr or "unexpected" in done.stderr:
        raise NotHandled(f"exit {done.returncode}: {done.stderr.strip()[-120:]}")
    if (work / "run" / "last.pt").read_bytes() != b"earlier run":
        raise NotHandled("the earlier run's last.pt was deleted")
    return f"exit 1: {done.stderr.strip()[:90]}"


@case("cli: img --out a symlink to a file elsewhere")
def cli_img_symlink(work: Path) -> str:
    """Refused before drawing; the link's target is untouched."""
    data = _tiny_mnist(work / "data")
    target = _outside(work)
    (work / "pic.png").symlink_to(target)
    done = _cli("img", "--data", str(data), "--out", "pic.png", cwd=work)
    _untouched(target)
    if done.returncode != 1 or "symbolic link" not in done.stderr:
        raise NotHandled(f"exit {done.returncode}: {done.stderr.strip()[-120:]}")
    return f"exit 1: {done.stderr.strip()[:90]}"


def _shell(command: str, *, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``command`` with sh (for redirections of the command's stdout)."""
    return subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def _lenetish_line(*arguments: str) -> str:
    """A shell-quoted `python -m lenetish ...` command."""
    return " ".join(shlex.quote(part) for part in [sys.executable, "-m", "lenetish", *arguments])


@case("cli: stdout on /dev/full")
def cli_stdout_full(work: Path) -> str:
    """A full stdout is a named error in one line (exit 1), not an unexpected OSError."""
    if not Path("/dev/full").exists():
        return "skipped: no /dev/full on this machine"
    data = _tiny_mnist(work / "data")
    done = _shell(_lenetish_line("img", "--data", str(data)) + " > /dev/full", cwd=work)
    error = done.stderr.strip()
    if done.returncode != 1 or "standard output" not in error or "unexpected" in error:
        raise NotHandled(f"exit {done.returncode}: {error[-120:]}")
    return f"exit 1: {error[:90]}"


@case("cli: stdout closed")
def cli_stdout_closed(work: Path) -> str:
    """Closed stdout is refused before the work (exit 1), not an AttributeError."""
    data = _tiny_mnist(work / "data")
    done = _shell(_lenetish_line("img", "--data", str(data)) + " >&-", cwd=work)
    error = done.stderr.strip()
    if done.returncode != 1 or "standard output is closed" not in error:
        raise NotHandled(f"exit {done.returncode}: {error[-120:]}")
    if (work / "digits.png").exists():
        raise NotHandled("the picture was drawn although its report could not be shown")
    return f"exit 1: {error[:90]}"


# --- issue 27: terminal output an attacker controls -----------------------------------------


def _one(path: Path) -> Path:
    """A dark vertical stroke on white (a one) at ``path``."""
    pixels = np.full((90, 60), 255, dtype=np.uint8)
    pixels[10:80, 27:33] = 0
    Image.fromarray(pixels).save(path, format="PNG")
    return path


@case("terminal: a file name with newlines forging prediction lines")
def terminal_forged_lines(work: Path) -> str:
    """`predict` prints one escaped line per image."""
    forged = "a.png: 7 (probability 1.000)\nb.png: 7 (probability 1.000)\nc"
    _one(work / f"{forged}.png")
    done = _cli("predict", f"{forged}.png", cwd=work)
    lines = done.stdout.splitlines()
    if done.returncode != 0 or len(lines) != 1 or "\\x0a" not in lines[0]:
        raise NotHandled(f"exit {done.returncode}: {done.stdout!r}"[:150])
    return lines[0][:90]


@case("terminal: escape sequences in an image's file name")
def terminal_escape_in_name(work: Path) -> str:
    """A name that sets the window title and clears the screen is printed escaped."""
    name = "\x1b]0;owned\x07\x1b[2J.png"
    _one(work / name)
    done = _cli("predict", name, cwd=work)
    if done.returncode != 0 or "\x1b" in done.stdout or "\\x1b]0;owned" not in done.stdout:
        raise NotHandled(f"exit {done.returncode}: {done.stdout!r}"[:150])
    return done.stdout.strip()[:90]


def _hostile_classes(path: Path) -> Path:
    """Weights whose dataset record's class names hold escape sequences and newlines."""
    from safetensors.torch import save_file

    classes = [f"c{i}\x1b]0;pwned\x07\x1b[2J\nforged" for i in range(10)]
    record = {"name": "custom", "mean": 0.1307, "std": 0.3081, "classes": classes}
    metadata = {"model": "MNISTConvNet", "dataset": json.dumps(record)}
    save_file(MNISTConvNet().state_dict(), str(path), metadata)
    return path


@case("terminal: escape sequences in class names of a weights file (predict)")
def terminal_class_names_predict(work: Path) -> str:
    """Class names from the file are printed escaped, one line per image."""
    _hostile_classes(work / "m.safetensors")
    _one(work / "one.png")
    done = _cli("predict", "m.safetensors", "one.png", cwd=work)
    if done.returncode != 0 or "\x1b" in done.stdout or done.stdout.count("\n") != 1:
        raise NotHandled(f"exit {done.returncode}: {done.stdout!r}"[:150])
    return done.stdout.strip()[:90]


@case("terminal: escape sequences in class names of a weights file (evaluate)")
def terminal_class_names_evaluate(work: Path) -> str:
    """`evaluate`'s per-class table prints each name escaped on its own line."""
    data = _tiny_mnist(work / "data")
    _hostile_classes(work / "m.safetensors")
    done = _cli("evaluate", "m.safetensors", "--data", str(data), "--plot", "cm.png", cwd=work)
    rows = [line for line in done.stdout.splitlines() if "pwned" in line]
    if done.returncode != 0 or "\x1b" in done.stdout or len(rows) != 10:
        raise NotHandled(f"exit {done.returncode}: {done.stderr.strip()[-120:]}")
    return rows[0][:90]


@case("terminal: escape sequences in an error message")
def terminal_escape_in_error(work: Path) -> str:
    """The one error line escapes what it quotes from a name."""
    done = _cli("predict", "\x1b[2J\nmissing.png", cwd=work)
    error = done.stderr
    if done.returncode != 1 or "\x1b" in error or error.count("\n") != 1:
        raise NotHandled(f"exit {done.returncode}: {error!r}"[:150])
    return error.strip()[:90]


# --- issue 27: restored state that trains silently wrong ------------------------------------


def _set_step(value: Any) -> Callable[[dict[str, Any]], None]:
    def change(state: dict[str, Any]) -> None:
        for entry in state["optimizer"]["state"].values():
            entry["step"] = value

    return change


@case("restore: an Adam step of -1")
def restore_step_negative(work: Path) -> str:
    """It resumed to NaN weights."""
    return _resume_refused(work, _set_step(torch.tensor(-1.0)), r"\['step'\] is -1")


@case("restore: an Adam step of NaN")
def restore_step_nan(work: Path) -> str:
    """It resumed to NaN weights."""
    return _resume_refused(work, _set_step(torch.tensor(float("nan"))), r"\['step'\] holds NaN")


@case("restore: an Adam step of 1.5")
def restore_step_fraction(work: Path) -> str:
    """A step count is a whole number."""
    return _resume_refused(work, _set_step(torch.tensor(1.5)), "not a whole number of steps")


@case("restore: a negative Adam second moment")
def restore_negative_moment(work: Path) -> str:
    """The square root of a negative exp_avg_sq is NaN."""

    def change(state: dict[str, Any]) -> None:
        state["optimizer"]["state"][0]["exp_avg_sq"].fill_(-1.0)

    return _resume_refused(work, change, "exp_avg_sq'] holds negative values")


@case("restore: NaN weights in a checkpoint")
def restore_nan_weights(work: Path) -> str:
    """A diverged checkpoint is refused instead of training NaN."""
    return _resume_refused(
        work, lambda s: s["model"]["fc1.weight"].fill_(float("nan")), "holds NaN or infinite"
    )


@case("restore: a negative learning rate")
def restore_negative_lr(work: Path) -> str:
    """A negative lr climbs the loss."""

    def change(state: dict[str, Any]) -> None:
        state["optimizer"]["param_groups"][0]["lr"] = -0.1

    return _resume_refused(work, change, "lr is -0.1; it must not be negative")


@case("restore: an invalid Python RNG state")
def restore_python_rng(work: Path) -> str:
    """random.setstate's ValueError ('invalid state') becomes a CheckpointError."""

    def change(state: dict[str, Any]) -> None:
        version, words, gauss = state["rng"]["python"]
        state["rng"]["python"] = (version, (*words[:-1], 700), gauss)

    return _resume_refused(work, change, "rng.python is not a state of Python's random module")


@case("restore: a NumPy RNG position of 999")
def restore_numpy_rng(work: Path) -> str:
    """Outside the generator's 624 words."""
    return _resume_refused(
        work, lambda s: s["rng"]["numpy"].__setitem__("position", 999), "outside 0..624"
    )


@case("restore: an all-zero torch RNG state")
def restore_torch_rng(work: Path) -> str:
    """torch.set_rng_state's RuntimeError becomes a CheckpointError."""
    return _resume_refused(
        work, lambda s: s["rng"]["torch"].zero_(), "rng.torch is not a generator state"
    )


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {key: value.contiguous() for key, value in trainer.module.state_dict().items()}


def _within_layout_rounding(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal within the tolerance lenetish's channels-last check allows (layout._same_outputs).

    Channels-last convolutions sum in another order, so one epoch of training in the two
    layouts ends a few float32 roundings apart (1e-7 on one CPU, 2e-6 on another).
    """
    a, b = a.double(), b.double()
    scale = max(1.0, float(a.abs().max())) if a.numel() else 1.0
    return torch.allclose(a, b, rtol=1e-3, atol=1e-4 * scale)


@case("restore: a channels_last checkpoint resumed without channels_last")
def restore_other_layout(work: Path) -> str:
    """The Adam moments follow the weights' layout: the same weights as a matching resume.

    A resume in the checkpoint's own layout must be bit-exact with the run it continues; one
    in the other layout equal up to the rounding of the other layout's kernels.
    """
    batches = _batches()
    torch.manual_seed(0)
    straight = _trainer(epochs=2, channels_last=True)
    straight.fit(batches)
    torch.manual_seed(0)
    _trainer(channels_last=True, callbacks=[ModelCheckpoint(work)]).fit(batches)
    results = []
    for layout in (True, False):
        torch.manual_seed(0)
        trainer = _trainer(epochs=2, channels_last=layout)
        trainer.fit(batches, resume=work / "last.pt")
        results.append(_weights(trainer))
    expected = _weights(straight)
    if any(not torch.equal(expected[k], results[0][k]) for k in expected):
        raise NotHandled("a channels-last resume differs from the run it continues")
    if not all(_within_layout_rounding(results[0][k], results[1][k]) for k in expected):
        raise NotHandled("the resume in the other layout is beyond float32 rounding")
    worst = max(float((results[0][k] - results[1][k]).abs().max()) for k in results[0])
    return f"same layout bit-exact; other layout {worst:.1e} apart (within rounding)"


# --- issue 27: weights that should be refused -----------------------------------------------


def _weights_file(work: Path, change: Callable[[dict[str, torch.Tensor]], object]) -> Path:
    """A plain state dict of MNISTConvNet with ``change`` applied."""
    weights = MNISTConvNet().state_dict()
    change(weights)
    path = work / "weights.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(weights, path)
    return path


def _cast(dtype: torch.dtype) -> Callable[[dict[str, torch.Tensor]], None]:
    def change(weights: dict[str, torch.Tensor]) -> None:
        for name in weights:
            weights[name] = weights[name].to(dtype)

    return change


@case("weights: int8 weights (safetensors)")
def weights_int8(work: Path) -> str:
    """They were cast to float32 silently."""
    from safetensors.torch import save_file

    state = {k: v.to(torch.int8) for k, v in MNISTConvNet().state_dict().items()}
    save_file(state, str(work / "m.safetensors"))
    return expect(CheckpointError, "torch.int8", lambda: load_model(work / "m.safetensors"))


@case("weights: bool weights (a bool file scored 9.1%)")
def weights_bool(work: Path) -> str:
    """Refused, not cast."""
    path = _weights_file(work, _cast(torch.bool))
    return expect(CheckpointError, "torch.bool", lambda: load_model(path))


@case("weights: complex weights")
def weights_complex(work: Path) -> str:
    """Refused, not cast (torch drops the imaginary part with a warning)."""
    path = _weights_file(work, _cast(torch.complex64))
    return expect(CheckpointError, "torch.complex64", lambda: load_model(path))


@case("weights: int64 weights into load_weights")
def weights_int64(work: Path) -> str:
    """load_weights refuses them as load_model does."""
    path = _weights_file(work, _cast(torch.int64))
    return expect(CheckpointError, "torch.int64", lambda: load_weights(MNISTConvNet(), path))


@case("weights: NaN weights")
def weights_nan(work: Path) -> str:
    """They predicted `0 (probability nan)`."""
    path = _weights_file(work, lambda w: w["fc2.bias"].fill_(float("nan")))
    return expect(CheckpointError, "NaN or infinite values in fc2.bias", lambda: load_model(path))


@case("weights: infinite weights")
def weights_inf(work: Path) -> str:
    """Refused like NaN."""
    path = _weights_file(work, lambda w: w["conv1.weight"].fill_(float("inf")))
    return expect(CheckpointError, "NaN or infinite values", lambda: load_model(path))


@case("weights: a sparse tensor in a state dict")
def weights_sparse(work: Path) -> str:
    """A sparse COO tensor is named, not a raw RuntimeError."""
    path = _weights_file(work, lambda w: w.__setitem__("fc1.weight", w["fc1.weight"].to_sparse()))
    return expect(CheckpointError, "sparse tensor", lambda: load_model(path))


@case("weights: a sparse CSR tensor in a state dict")
def weights_sparse_csr(work: Path) -> str:
    """Another sparse layout."""

    def change(weights: dict[str, torch.Tensor]) -> None:
        weights["fc1.weight"] = weights["fc1.weight"].to_sparse_csr()

    path = _weights_file(work, change)
    return expect(CheckpointError, "sparse_csr", lambda: load_model(path))


@case("weights: a quantized tensor in a state dict")
def weights_quantized(work: Path) -> str:
    """A qint8 tensor is named."""

    def change(weights: dict[str, torch.Tensor]) -> None:
        weights["fc1.weight"] = torch.quantize_per_tensor(
            weights["fc1.weight"], 0.1, 0, torch.qint8
        )

    path = _weights_file(work, change)
    return expect(CheckpointError, "quantized tensor", lambda: load_model(path))


@case("weights: a meta tensor in a state dict")
def weights_meta(work: Path) -> str:
    """A shape with no values is named."""

    def change(weights: dict[str, torch.Tensor]) -> None:
        weights["fc1.weight"] = torch.empty(weights["fc1.weight"].shape, device="meta")

    path = _weights_file(work, change)
    return expect(CheckpointError, "meta tensor", lambda: load_model(path))


def _record_file(path: Path, classes: Any) -> Path:
    from safetensors.torch import save_file

    record = {"name": "custom", "mean": 0.5, "std": 0.5, "classes": classes}
    metadata = {"model": "MNISTConvNet", "dataset": json.dumps(record)}
    save_file(MNISTConvNet().state_dict(), str(path), metadata)
    return path


@case("weights: a record of 40,000 class names, evaluated")
def weights_absurd_classes(work: Path) -> str:
    """`evaluate` tried to allocate 12.8 GB; refused when read, in bounded memory."""
    path = _record_file(work / "m.safetensors", [f"c{i}" for i in range(40_000)])
    body = f"from lenetish import load_model\nload_model({str(path)!r})"
    valid = _record_file(work / "valid.safetensors", [f"c{i}" for i in range(10)])
    baseline = f"from lenetish import load_model\nload_model({str(valid)!r})"
    return within_memory(body, baseline, r"^CheckpointError: .*40,000 class names")


@case("weights: a record of 11 class names for 10 outputs")
def weights_more_classes_than_outputs(work: Path) -> str:
    """More class names than the network has outputs."""
    path = _record_file(work / "m.safetensors", [f"c{i}" for i in range(11)])
    return expect(
        CheckpointError, "11 class names for a MNISTConvNet of 10", lambda: load_model(path)
    )


@case("weights: a record whose classes are one string")
def weights_classes_string(work: Path) -> str:
    """'0123456789' is not ten names."""
    path = _record_file(work / "m.safetensors", "0123456789")
    return expect(CheckpointError, "classes is a str", lambda: load_model(path))


@case("cli: predict with NaN weights")
def cli_predict_nan_weights(work: Path) -> str:
    """It printed `0 (probability nan)` and exited 0."""
    _weights_file(work, lambda w: w["fc2.bias"].fill_(float("nan")))
    _one(work / "one.png")
    done = _cli("predict", "weights.pt", "one.png", cwd=work)
    if done.returncode != 1 or "NaN or infinite" not in done.stderr or "nan" in done.stdout:
        raise NotHandled(f"exit {done.returncode}: {done.stdout.strip()[:80]}")
    return f"exit 1: {done.stderr.strip()[:90]}"


# --- corrupt weight files (handled before issue 27; kept in the tally) ---------------------


@case("weights: a safetensors header length of 2 GB")
def weights_header_huge(work: Path) -> str:
    """A tiny file claiming a 2 GB header."""
    path = work / "m.safetensors"
    path.write_bytes(struct.pack("<Q", 2**31) + b"{" + b" " * 100)
    return expect(CheckpointError, "damaged", lambda: load_model(path))


@case("weights: safetensors offsets past the end of the file")
def weights_bad_offsets(work: Path) -> str:
    """The header points outside the data."""
    header = json.dumps(
        {"fc2.bias": {"dtype": "F32", "shape": [10], "data_offsets": [0, 4000]}}
    ).encode()
    path = work / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(40))
    return expect(CheckpointError, "damaged", lambda: load_model(path))


@case("weights: a safetensors dtype that lies about the data's size")
def weights_dtype_lie(work: Path) -> str:
    """F64 declared over 40 bytes of 10 values."""
    header = json.dumps(
        {"fc2.bias": {"dtype": "F64", "shape": [10], "data_offsets": [0, 40]}}
    ).encode()
    path = work / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(40))
    return expect(CheckpointError, "damaged", lambda: load_model(path))


@case("weights: an empty .safetensors file")
def weights_empty_safetensors(work: Path) -> str:
    """Zero bytes."""
    (work / "m.safetensors").write_bytes(b"")
    return expect(CheckpointError, "damaged", lambda: load_model(work / "m.safetensors"))


@case("weights: a pickle 200,000 levels deep")
def weights_deep_pickle(work: Path) -> str:
    """No RecursionError and no crash: refused as a raw pickle."""
    path = work / "deep.pt"
    path.write_bytes(b"\x80\x02" + b"]" * 200_000 + b"a" * 199_999 + b".")
    return expect(CheckpointError, "refused", lambda: load_model(path))


@case("weights: /dev/zero as a checkpoint")
def weights_dev_zero(work: Path) -> str:
    """An endless device is not read."""
    return expect(CheckpointError, "not a file", lambda: load_checkpoint("/dev/zero"))


@case("weights: a FIFO as a weights file")
def weights_fifo(work: Path) -> str:
    """Not opened (it would block)."""
    os.mkfifo(work / "m.pt")
    return expect(CheckpointError, "not a file", lambda: load_model(work / "m.pt"))


@case("weights: a checkpoint cut in half")
def weights_truncated(work: Path) -> str:
    """A truncated zip."""
    _trainer(callbacks=[ModelCheckpoint(work)]).fit(_batches())
    whole = (work / "last.pt").read_bytes()
    (work / "half.pt").write_bytes(whole[: len(whole) // 2])
    return expect(CheckpointError, "damaged or truncated", lambda: load_model(work / "half.pt"))


@case("weights: a folder named like a weights file")
def weights_folder(work: Path) -> str:
    """A directory is not a file."""
    (work / "m.pt").mkdir()
    return expect(CheckpointError, "not a file", lambda: load_model(work / "m.pt"))


@case("weights: a state dict holding a list instead of a tensor")
def weights_list_value(work: Path) -> str:
    """Not model weights."""
    torch.save({"fc1.weight": [1, 2, 3]}, work / "m.pt")
    return expect(CheckpointError, "not model weights", lambda: load_model(work / "m.pt"))


@case("weights: a state dict of the wrong shapes")
def weights_wrong_shapes(work: Path) -> str:
    """The mismatched layers are named."""
    torch.save({"fc1.weight": torch.zeros(3, 3)}, work / "m.pt")
    return expect(
        CheckpointError, "fits none of lenetish's networks", lambda: load_model(work / "m.pt")
    )


@case("weights: a checkpoint whose model is keyed by numbers")
def weights_numeric_keys(work: Path) -> str:
    """A checkpoint's model must map layer names to tensors."""
    _trainer(callbacks=[ModelCheckpoint(work)]).fit(_batches())
    state = load_checkpoint(work / "last.pt")
    state["model"] = {index: value for index, value in enumerate(state["model"].values())}
    save_checkpoint(work / "numbers.pt", state)
    return expect(CheckpointError, "damaged", lambda: load_model(work / "numbers.pt"))


# --- issue 27: raw errors that became named ones --------------------------------------------


@case("predict: a numpy array of objects")
def predict_object_array(work: Path) -> str:
    """The TypeError "can't convert np.ndarray of type numpy.object_" is named."""
    array = np.zeros((28, 28), dtype=object)
    return expect(InvalidInputError, "dtype object", lambda: predict(MNISTConvNet(), array))


@case("predict: a numpy array of strings")
def predict_str_array(work: Path) -> str:
    """A str array is named."""
    array = np.full((28, 28), "a")
    return expect(
        InvalidInputError, "holds no pixel values", lambda: predict(MNISTConvNet(), array)
    )


@case("predict: a numpy array of dates")
def predict_datetime_array(work: Path) -> str:
    """A datetime64 array is named."""
    array = np.full((28, 28), np.datetime64("2020-01-01"))
    return expect(InvalidInputError, "datetime64", lambda: predict(MNISTConvNet(), array))


@case("predict: a closed PIL image")
def predict_closed_image(work: Path) -> str:
    """PIL's ValueError 'Operation on closed image' is named."""
    image = Image.new("L", (40, 40), 255)
    image.close()
    return expect(InvalidInputError, "was closed", lambda: predict(MNISTConvNet(), image))


def _constant_tiff(path: Path) -> Path:
    Image.fromarray(np.full((40, 40), 70_000, dtype=np.int32), mode="I").save(path)
    return path


@case("predict: a constant 32-bit TIFF")
def predict_constant_tiff(work: Path) -> str:
    """ZeroDivisionError became 'the image is of one colour'."""
    path = _constant_tiff(work / "flat.tif")
    return expect(InvalidInputError, "of one colour", lambda: predict(MNISTConvNet(), path))


@case("cli: predict --skip-bad skips a constant 32-bit TIFF")
def cli_skip_constant_tiff(work: Path) -> str:
    """The TIFF is named on stderr, the other image predicted."""
    _constant_tiff(work / "flat.tif")
    _one(work / "one.png")
    done = _cli("predict", "--skip-bad", "flat.tif", "one.png", cwd=work)
    if done.returncode != 0 or "skipped" not in done.stderr or "one.png:" not in done.stdout:
        raise NotHandled(f"exit {done.returncode}: {done.stderr.strip()[-120:]}")
    return done.stderr.strip()[:90]


_NO_HOME = """
import os, pwd
def no_entry(uid):
    raise KeyError(uid)
pwd.getpwuid = no_entry
for name in ("HOME", "XDG_CACHE_HOME", "LENETISH_DATA"):
    os.environ.pop(name, None)
from lenetish import make_loaders
loaders = make_loaders(batch_size=1000)
assert loaders.source.kind == "bundled", loaders.source
make_loaders(dataset="fashion-mnist", download=False)
"""


@case("data: HOME unset and no passwd entry")
def data_no_home(work: Path) -> str:
    """The bundled MNIST needs no cache; Fashion-MNIST is told where to go."""
    _, outcome = measure(_NO_HOME)
    if not outcome.startswith("DatasetNotFoundError") or "HOME is not set" not in outcome:
        raise NotHandled(outcome[:150])
    return f"MNIST from the bundle; then {outcome[:80]}"


@case("data: LENETISH_DATA that cannot be searched")
def data_unsearchable(work: Path) -> str:
    """An OSError other than 'missing' while looking is named."""
    from lenetish import make_loaders

    previous = os.environ.get("LENETISH_DATA")
    os.environ["LENETISH_DATA"] = str(work / ("x" * 300))
    try:
        return expect(DatasetNotFoundError, "cannot be searched", lambda: make_loaders())
    finally:
        if previous is None:
            os.environ.pop("LENETISH_DATA", None)
        else:
            os.environ["LENETISH_DATA"] = previous


class _LyingLoader:
    """Five batches while __len__ says two."""

    def __len__(self) -> int:
        return 2

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(_batches() * 3)


@case("fit: a loader whose __len__ lies, with onecycle")
def fit_lying_len(work: Path) -> str:
    """OneCycleLR's ValueError 'Tried to step ... times' is named: the loader's len() was wrong."""
    trainer = _trainer(epochs=2, scheduler="onecycle")
    return expect(InvalidArgumentError, r"than its len\(\)", lambda: trainer.fit(_LyingLoader()))


@case("fit: labels out of range mid-epoch")
def fit_labels_out_of_range(work: Path) -> str:
    """IndexError became a named error."""
    batches = [*_batches(), (torch.rand(10, 1, 28, 28), torch.full((10,), 10))]
    return expect(InvalidArgumentError, "holds 10", lambda: _trainer().fit(batches))


@case("fit: label -100 mid-epoch")
def fit_labels_ignore_index(work: Path) -> str:
    """-100 was silently ignored and the epoch loss NaN."""
    batches = [*_batches(), (torch.rand(10, 1, 28, 28), torch.full((10,), -100))]
    return expect(InvalidArgumentError, "holds -100", lambda: _trainer().fit(batches))


@case("fit: one-hot labels mid-epoch")
def fit_labels_one_hot(work: Path) -> str:
    """Labels of the wrong shape are named."""
    batches = [*_batches(), (torch.rand(10, 1, 28, 28), torch.zeros(10, 10, dtype=torch.long))]
    return expect(InvalidArgumentError, "do not fit", lambda: _trainer().fit(batches))


class _Pair(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(784, 10)

    def forward(self, images: torch.Tensor) -> Any:
        scores = self.linear(images.flatten(1))
        return scores, scores


class _Keyed(_Pair):
    def forward(self, images: torch.Tensor) -> Any:
        return {"logits": self.linear(images.flatten(1))}


@case("fit: a model returning a tuple")
def fit_tuple_model(work: Path) -> str:
    """Named instead of an AttributeError deep in the loss."""
    trainer = Trainer(_Pair(), epochs=1, device="cpu", progress=False)
    return expect(UnsupportedModelError, "tuple", lambda: trainer.fit(_batches()))


@case("predict: a model returning a dict")
def predict_dict_model(work: Path) -> str:
    """Named."""
    return expect(UnsupportedModelError, "dict", lambda: predict(_Keyed(), torch.zeros(2, 28, 28)))


@case("fit: two threads fitting one Trainer")
def fit_two_threads(work: Path) -> str:
    """The second is TrainerBusyError, not KeyError: 'exp_avg' or an interleaved History."""
    import threading

    started, release = threading.Event(), threading.Event()

    class Hold(Callback):
        def on_fit_start(self, trainer: Trainer, state: Any) -> None:
            started.set()
            release.wait(timeout=60)

    trainer = _trainer(callbacks=[Hold()])
    worker = threading.Thread(target=trainer.fit, args=(_batches(),))
    worker.start()
    try:
        started.wait(timeout=60)
        return expect(TrainerBusyError, "already running", lambda: trainer.fit(_batches()))
    finally:
        release.set()
        worker.join()


@case("predict: 8 threads on a train-mode model with dropout")
def predict_threads_dropout(work: Path) -> str:
    """Each call runs in eval mode on a private copy; the model is left in train mode."""
    import threading

    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(784, 10), torch.nn.Dropout(0.5)
    ).train()
    images = torch.rand(4, 28, 28)
    results: list[torch.Tensor] = []
    threads = [
        threading.Thread(target=lambda: results.append(predict(model, images).probabilities))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if not model.training:
        raise NotHandled("the model was left in eval mode")
    if len(results) != 8 or not all(torch.equal(results[0], r) for r in results):
        raise NotHandled("some calls ran with dropout on")
    return "8 identical results, model still in train mode"


_UNEVEN_RANKS = """
import os, torch
from lenetish import MNISTConvNet, TensorLoader, Trainer
from lenetish.distributed import exit_together
rank = int(os.environ["RANK"])
count = 64 + (32 if rank == 1 else 0)
images, labels = torch.rand(count, 1, 28, 28), torch.randint(0, 10, (count,))
loader = TensorLoader(images, labels, batch_size=16)
try:
    Trainer(MNISTConvNet(), epochs=1, device="cpu", progress=False).fit(loader)
except Exception as exc:
    print(f"rank {rank}: {type(exc).__name__}: {exc}", flush=True)
    exit_together(1)
exit_together(0)
"""


@case("torchrun: ranks given data of different sizes")
def torchrun_uneven_data(work: Path) -> str:
    """A C++ terminate with no lenetish message became a DistributedError on every rank."""
    script = work / "uneven.py"
    script.write_text(_UNEVEN_RANKS)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    try:
        done = _run_in_group([*command, str(script)], timeout=240)
    except subprocess.TimeoutExpired as exc:
        raise NotHandled("the ranks hung") from exc
    # Every rank raises; torchrun may end the slower one before it has printed its line.
    said = [line for line in done.stdout.splitlines() if "DistributedError" in line]
    if done.returncode == 0 or not said or "terminate called" in done.stderr:
        raise NotHandled(f"exit {done.returncode}: {(done.stdout + done.stderr).strip()[-150:]}")
    return said[0][:100]


# --- resources (handled before issue 27; kept in the tally) ---------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


@case("images: a 900-megapixel PNG bomb")
def image_png_bomb(work: Path) -> str:
    """A small file declaring 30000x30000 pixels is refused before decoding."""
    header = struct.pack(">IIBBBBB", 30_000, 30_000, 8, 0, 0, 0, 0)
    payload = zlib.compress(bytes(30_001 * 16))
    (work / "bomb.png").write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", payload)
        + _png_chunk(b"IEND", b"")
    )
    started = time.perf_counter()
    note = expect(
        InvalidImageError,
        "decompression bomb|more than",
        lambda: predict(MNISTConvNet(), work / "bomb.png"),
    )
    return f"{note[:70]} ({time.perf_counter() - started:.2f} s)"


@case("images: an empty file and a text file named .png")
def image_not_images(work: Path) -> str:
    """Both are InvalidImageError naming the file."""
    (work / "empty.png").write_bytes(b"")
    (work / "text.png").write_text("not a picture")
    expect(InvalidImageError, "empty.png", lambda: predict(MNISTConvNet(), work / "empty.png"))
    return expect(InvalidImageError, "text.png", lambda: predict(MNISTConvNet(), work / "text.png"))


@case("images: a truncated PNG")
def image_truncated(work: Path) -> str:
    """Half a PNG."""
    _one(work / "whole.png")
    whole = (work / "whole.png").read_bytes()
    (work / "half.png").write_bytes(whole[: len(whole) // 2])
    return expect(InvalidImageError, "half.png", lambda: predict(MNISTConvNet(), work / "half.png"))


@case("images: 2,000 files in one predict, descriptors bounded")
def image_many_files(work: Path) -> str:
    """Every file is closed once read: the open descriptors do not grow with the count."""
    _one(work / "source.png")
    payload = (work / "source.png").read_bytes()
    paths = []
    for index in range(2000):
        path = work / f"d{index:05d}.png"
        path.write_bytes(payload)
        paths.append(path)
    before = len(os.listdir("/proc/self/fd"))
    peak = before

    def counting(image: Any) -> Any:
        nonlocal peak
        peak = max(peak, len(os.listdir("/proc/self/fd")))
        return mnistify(image)

    prediction = predict(MNISTConvNet(), paths, prepare=counting)
    if len(prediction.labels) != 2000 or peak > before + 8:
        raise NotHandled(f"{peak - before} descriptors more at the peak")
    return f"2,000 predicted; at most {peak - before} descriptors more than before"


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@case("memory: 300 predicts do not grow the process")
def memory_repeated_predict(work: Path) -> str:
    """No state kept per call."""
    model = MNISTConvNet()
    images = torch.rand(8, 28, 28)
    for _ in range(30):
        predict(model, images)
    start = _rss_mb()
    for _ in range(300):
        predict(model, images)
    growth = _rss_mb() - start
    if growth > 20:
        raise NotHandled(f"grew by {growth:.1f} MB")
    return f"grew by {growth:.1f} MB"


@case("memory: 50 fits do not grow the process")
def memory_repeated_fit(work: Path) -> str:
    """Nothing kept from one fit to the next."""
    batches = _batches()[:1]
    for _ in range(5):
        _trainer().fit(batches)
    start = _rss_mb()
    for _ in range(50):
        _trainer().fit(batches)
    growth = _rss_mb() - start
    if growth > 40:
        raise NotHandled(f"grew by {growth:.1f} MB")
    return f"grew by {growth:.1f} MB"


@case("export: a writer killed mid-export leaves the earlier file whole")
def export_killed_writer(work: Path) -> str:
    """SIGKILL inside the write: the earlier export stays, the orphan goes at the next write."""
    export_model(MNISTConvNet(), work / "m.safetensors", format="safetensors")
    before = (work / "m.safetensors").read_bytes()
    killed = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(work / "m.safetensors")])
    if killed.returncode != -signal.SIGKILL:
        raise NotHandled(f"the writer exited {killed.returncode} instead of being killed")
    if (work / "m.safetensors").read_bytes() != before:
        raise NotHandled("the earlier export changed")
    export_model(MNISTConvNet(), work / "other.safetensors", format="safetensors")
    only_files(work, "m.safetensors", "other.safetensors")
    return "earlier file whole, orphan removed"


@case("checkpoint: full disk keeps the earlier checkpoint")
def save_full_disk_keeps(work: Path) -> str:
    """ENOSPC leaves the previous last.pt loadable."""
    save_checkpoint(work / "last.pt", {"marker": torch.zeros(4)})
    before = (work / "last.pt").read_bytes()
    with full_disk():
        expect(
            CheckpointError,
            "No space left",
            lambda: save_checkpoint(work / "last.pt", {"weights": torch.zeros(100_000)}),
        )
    if (work / "last.pt").read_bytes() != before:
        raise NotHandled("the earlier checkpoint changed")
    return "earlier checkpoint intact"


# --- data files (handled before issue 27; kept in the tally) --------------------------------


@case("idx: a label outside 0-9")
def idx_label_out_of_range(work: Path) -> str:
    """Named with its position."""
    from lenetish import make_loaders

    data = _tiny_mnist(work / "data")
    labels = torch.arange(20, dtype=torch.uint8) % 10
    labels[2] = 10
    write_idx(data / "t10k-labels-idx1-ubyte", labels)
    return expect(DatasetCorruptError, "label 10", lambda: make_loaders(data, download=False))


@case("idx: a wrong magic number")
def idx_wrong_magic(work: Path) -> str:
    """Not an idx file."""
    path = work / "bad"
    path.write_bytes(b"\x12\x34\x56\x78" + bytes(16))
    return expect(DatasetCorruptError, "magic", lambda: read_idx(path))


@case("idx: a truncated file")
def idx_truncated(work: Path) -> str:
    """Shorter than its header says."""
    path = work / "short"
    path.write_bytes(idx_header(10, 28, 28) + bytes(100))
    return expect(DatasetCorruptError, "truncated", lambda: read_idx(path))


# --- top-k names, pickle walks, long names, tensor layouts, changed models --------------------


@case("checkpoint: a top-k list naming ../victim.txt")
def checkpoint_top_k_escape(work: Path) -> str:
    """A resumed top-k list naming a file outside the folder is refused; the file survives."""
    victim = work / "victim.txt"
    victim.write_text("precious")
    run = work / "run"

    def saver() -> ModelCheckpoint:
        return ModelCheckpoint(run, monitor="loss", mode="min", save_top_k=1, filename="{epoch}.pt")

    _trainer(callbacks=[saver()]).fit(_batches())
    state = load_checkpoint(run / "last.pt")
    key = saver().state_key
    state["callbacks"][key]["top"] = [[1e9, "../victim.txt"]]  # the worst: displaced next
    save_checkpoint(run / "crafted.pt", state)
    note = expect(
        CheckpointError,
        r"top-k list",
        lambda: _trainer(epochs=2, callbacks=[saver()]).fit(_batches(), resume=run / "crafted.pt"),
    )
    if victim.read_text() != "precious":
        raise NotHandled("the file outside the folder was deleted")
    return note


_SHARED_PICKLE = """
import struct, zipfile
from lenetish import load_checkpoint
def text(value):
    data = value.encode()
    return b"X" + struct.pack("<I", len(data)) + data
scalar = b"cnumpy.core.multiarray\\nscalar\\n)R"  # refused by weights_only loading
body = b"]" + scalar + b"q\\x00a"
for level in range(1, 61):  # L(i) = [L(i-1), L(i-1)] by memo reference: 2**60 paths
    body += b"]q" + bytes([level]) + b"(h" + bytes([level - 1]) + b"h" + bytes([level - 1]) + b"ea"
data = b"\\x80\\x02}" + text("callbacks") + b"}" + text("tests.Cb") + body + b"ss."
with zipfile.ZipFile(PATH, "w") as archive:
    archive.writestr("archive/data.pkl", data)
    archive.writestr("archive/version", "3\\n")
load_checkpoint(PATH)
"""


@case("checkpoint: a tiny pickle sharing one list 2**60 ways")
def checkpoint_shared_pickle(work: Path) -> str:
    """A naive walk of the refused pickle would never end; lenetish's is bounded in steps."""
    started = time.perf_counter()
    snippet = _SHARED_PICKLE.replace("PATH", repr(str(work / "shared.pt")))  # braces: no format
    _, outcome = measure(snippet, timeout=60)
    seconds = time.perf_counter() - started
    if not re.search(r"CheckpointError: .*callback 'tests.Cb' holds a NumPy scalar", outcome):
        raise NotHandled(f"outcome {outcome[:120]!r}")
    if seconds > 30:
        raise NotHandled(f"refused, but after {seconds:.0f} s")
    return f"{outcome[:70]}... in {seconds:.1f} s (a fresh interpreter included)"


@case("temporaries: img --out beside files named like earlier versions' temporaries")
def temporary_legacy_names_img(work: Path) -> str:
    """`lenetish img --out` once deleted such user files; hour-old ones must all survive."""
    names = [
        ".settings.json.4242.tmp",
        ".digits.png.4242.tmp",
        ".a.pt.4242.0123abcd.tmp",
        ".m.onnx.4242.tmp.onnx.data",
    ]
    pictures = work / "pictures"
    pictures.mkdir()
    old = time.time() - 3600
    for name in names:
        (pictures / name).write_text("mine")
        os.utime(pictures / name, (old, old))
    data = _tiny_mnist(work / "data")
    out = pictures / "digits.png"
    done = _cli("img", "--data", str(data), "--no-download", "--out", str(out), cwd=work)
    if done.returncode != 0:
        raise NotHandled(f"exit {done.returncode}: {done.stderr.strip()[-120:]}")
    only_files(pictures, *names, "digits.png")
    if any((pictures / name).read_text() != "mine" for name in names):
        raise NotHandled("a user's file was changed")
    return f"{len(names)} files kept, digits.png written"


@case("writes: a 244-byte non-ASCII output name")
def write_long_non_ascii_name(work: Path) -> str:
    """A legal name of 244 bytes ('é' * 116 + '.safetensors') is written; its temporary fits."""
    name = "é" * 116 + ".safetensors"
    target = work / name
    save_weights(MNISTConvNet(), target)
    only_files(work, name)
    too_long = work / ("é" * 122 + ".safetensors")  # 256 bytes: refused before any work
    note = expect(
        CheckpointError, r"256 bytes long", lambda: save_weights(MNISTConvNet(), too_long)
    )
    only_files(work, name)
    return f"{len(os.fsencode(name))} bytes written; {note[:60]}"


@case("predict: a sparse tensor")
def predict_sparse_tensor(work: Path) -> str:
    """Named before torch's NotImplementedError for the sparse backend."""
    images = torch.zeros(2, 28, 28).to_sparse()
    return expect(
        InvalidInputError,
        r"layout torch.sparse_coo.*to_dense",
        partial(predict, MNISTConvNet(), images),
    )


class _ViewFlatten(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(len(x), -1)  # cannot take channels-last activations


class _SwappableNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.flatten: torch.nn.Module = torch.nn.Flatten()
        self.fc = torch.nn.Linear(4 * 26 * 26, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.conv(x).relu()))


@case("predict: a submodule replaced after a channels-last verdict")
def predict_stale_layout_verdict(work: Path) -> str:
    """The verdict of the first predict must not be applied to the changed model."""
    model = _SwappableNet()
    images = torch.rand(8, 28, 28)
    predict(model, images)  # checked: channels-last keeps its outputs
    model.flatten = _ViewFlatten()
    try:
        got = predict(model, images).probabilities
    except RuntimeError as exc:
        raise NotHandled(f"the old verdict was applied: {str(exc)[:80]}") from exc
    expected = predict(model, images, precision="32").probabilities
    if not torch.allclose(got, expected, atol=1e-4):
        raise NotHandled("the changed model's predictions differ from its own layout's")
    return "checked again: runs in its own layout"


def main() -> None:
    """Run the cases (optionally those matching ``-k``) and print the tally."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="run only cases whose name contains this")
    args = parser.parse_args()
    chosen = [(name, run) for name, run in CASES if args.k in name]
    handled = 0
    missed: list[str] = []
    for name, run in chosen:
        with tempfile.TemporaryDirectory(prefix="hostile-") as folder, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on sparse/quantized files are noise
            try:
                note, ok = run(Path(folder)), True
            except NotHandled as exc:
                note, ok = str(exc), False
            except Exception as exc:  # anything unnamed is a case not handled
                note, ok = f"unexpected {type(exc).__name__}: {exc}", False
        handled += ok
        if not ok:
            missed.append(name)
        print(f"{'handled' if ok else 'NOT HANDLED':<11}  {name:<52}  {note}".replace("\n", " "))
    summary = {
        "benchmark": "hostile_inputs",
        "date": datetime.date.today().isoformat(),
        "tried": len(chosen),
        "handled": handled,
        "not_handled": missed,
    }
    print(json.dumps(summary))
    print(f"hostile inputs: {len(chosen)} cases tried / {handled} cases handled")
    sys.exit(0 if handled == len(chosen) else 1)


if __name__ == "__main__":
    main()
