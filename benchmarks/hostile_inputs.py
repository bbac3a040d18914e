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
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
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
    CheckpointError,
    DatasetCorruptError,
    InvalidImageError,
    InvalidInputError,
    MNISTConvNet,
    ModelCheckpoint,
    Trainer,
    export_model,
    load_checkpoint,
    read_idx,
    write_idx,
)
from lenetish.checkpoint import atomic_write, save_checkpoint
from lenetish.inputs import prepare_inputs, printable_path

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
from lenetish.checkpoint import atomic_write
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


def main() -> None:
    """Run the cases (optionally those matching ``-k``) and print the tally."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="run only cases whose name contains this")
    args = parser.parse_args()
    chosen = [(name, run) for name, run in CASES if args.k in name]
    handled = 0
    missed: list[str] = []
    for name, run in chosen:
        with tempfile.TemporaryDirectory(prefix="hostile-") as folder:
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
