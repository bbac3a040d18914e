"""The ``lenetish`` command line: ``train``, ``evaluate``, ``predict``, ``img``, ``export``.

Exit status: 0 on success, 2 on usage errors (argparse, and options that contradict each other
or would destroy earlier work), 1 on any other error, reported as one line (``--debug`` shows
the full traceback instead), 130 when interrupted (Ctrl-C) and 143 when terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from lenetish.callbacks import Callback, CSVLogger, History, ModelCheckpoint, TerminateOnNaN
from lenetish.checkpoint import load_checkpoint, save_weights
from lenetish.cli_models import is_weights_path, label_text, model_test_loader
from lenetish.data import DATASETS, make_loaders, read_split
from lenetish.distributed import distributed_env, exit_together
from lenetish.errors import InvalidArgumentError, LenetishError, MissingDependencyError
from lenetish.evaluation import evaluate, predict
from lenetish.export import EXPORT_FORMATS, export_model
from lenetish.identity import dataset_for_models, remember_dataset
from lenetish.inputs import IMAGE_SUFFIXES, prepare_files, printable_path
from lenetish.plots import plot_confusion, plot_digits
from lenetish.prepare import preparation_for
from lenetish.pretrained import pretrained
from lenetish.recipes import RECIPES, get_recipe
from lenetish.weightfiles import load_model

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["build_parser", "main", "run"]

_EXAMPLES = {
    "train": "examples:\n  lenetish train --epochs 5 --out runs/a\n"
    "  lenetish train --epochs 10 --out runs/a --resume runs/a/last.pt\n"
    "  lenetish train --dataset fashion-mnist --data ~/fashion --out runs/f\n"
    "  torchrun --nproc_per_node=2 -m lenetish train --out runs/b",
    "evaluate": "examples:\n  lenetish evaluate runs/a/last.pt --plot cm.png\n"
    "  lenetish evaluate runs/f/model.safetensors --data ~/fashion   # its dataset is recorded\n"
    "  lenetish evaluate mnist_model.pkl          # a plain state dict (the blog's file)",
    "predict": "examples:\n  lenetish predict runs/a/model.safetensors --sample 4\n"
    "  lenetish predict runs/a/model.safetensors my_digit.png more_digits/\n"
    "  lenetish predict my_digit.png          # with the shipped 'default' weights",
    "img": "examples:\n  lenetish img --count 25 --out digits.png",
    "export": "examples:\n  lenetish export runs/a/last.pt --format onnx --out model.onnx\n"
    "  lenetish export runs/a/last.pt --format state_dict --out mnist_model.pkl",
}


#: Inclusive ranges of the command line's numeric options, checked at parse time (exit 2).
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 65_536
MAX_PICTURES = 1_000  # img --count, predict --sample: digits drawn in one picture
MAX_SEED = 2**32 - 1  # every generator lenetish seeds (numpy's included) takes 32 bits
MAX_LR = 10.0  # no optimizer here trains with more; larger values only diverge


def _int_option(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type=`` that accepts integers in ``[low, high]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid integer: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value}")
        return value

    return parse


def _lr_option(text: str) -> float:
    """An argparse ``type=`` for ``--lr``: a finite number in ``(0, MAX_LR]``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not (math.isfinite(value) and 0 < value <= MAX_LR):
        raise argparse.ArgumentTypeError(
            f"must be a finite number above 0 and at most {MAX_LR:g}, got {text}"
        )
    return value


def _device_option(text: str) -> str:
    """An argparse ``type=`` for ``--device``: checks the index of ``cpu:N``, ``cuda:N``, ``mps:N``.

    Names without an index (and unknown names) are left to the library, which explains them.
    """
    match = re.fullmatch(r"(cpu|cuda|mps):(.*)", text.strip())
    if match is None:
        return text
    kind, index_text = match.groups()
    if not index_text.isdigit():
        raise argparse.ArgumentTypeError(
            f"{text!r}: the device index must be a whole number >= 0, e.g. {kind}:0"
        )
    index = int(index_text)
    available = torch.cuda.device_count() if kind == "cuda" else 1
    if index >= available:
        have = (
            f"this machine has {available} CUDA device(s)" if kind == "cuda" else f"{kind}:0 only"
        )
        raise argparse.ArgumentTypeError(f"{text!r} does not exist: {have}")
    return text


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="data folder (default: $LENETISH_DATA or ~/.cache/lenetish if they hold the "
        "dataset, else for MNIST the copy bundled with lenetish); idx files raw or .gz",
    )
    parser.add_argument(
        "--dataset",
        default="auto",
        choices=["auto", *sorted(DATASETS)],
        help="auto (default): what the model file records, else what the data files are "
        "(recognised by content); a name that contradicts either is an error",
    )
    parser.add_argument("--no-download", action="store_true", help="never download data")


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str
) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        help=help,
        description=help,
        epilog=_EXAMPLES[name],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``lenetish`` command."""
    parser = argparse.ArgumentParser(
        prog="lenetish", description="Train and use LeNet-like CNNs on MNIST and its family."
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = _command(
        commands, "train", "train a network with a recipe and report its test accuracy"
    )
    _add_data_options(train)
    train.add_argument(
        "--recipe",
        default="default",
        choices=list(RECIPES),
        help="training configuration (default: default); the options below override it",
    )
    train.add_argument("--epochs", type=_int_option(1, MAX_EPOCHS), default=None)
    train.add_argument(
        "--batch-size",
        type=_int_option(1, MAX_BATCH_SIZE),
        default=None,
        help="with --resume: must equal the checkpoint's (the default)",
    )
    train.add_argument(
        "--lr",
        type=_lr_option,
        default=None,
        help=f"learning rate, above 0 and at most {MAX_LR:g}; with --resume: must equal the "
        "checkpoint's (the default)",
    )
    train.add_argument("--optimizer", default=None, choices=["adam", "sgd"])
    train.add_argument(
        "--val-size",
        type=_int_option(0, 10**9),
        default=0,
        help="training samples held out for validation (default: 0)",
    )
    train.add_argument(
        "--device", type=_device_option, default="auto", help="auto, cpu, cuda, cuda:N or mps"
    )
    train.add_argument(
        "--precision",
        default=None,
        choices=["auto", "32", "bf16-mixed", "16-mixed"],
        help="auto: bfloat16 autocast where the device has native bf16, else 32",
    )
    train.add_argument("--seed", type=_int_option(0, MAX_SEED), default=0)
    train.add_argument(
        "--out",
        metavar="DIR",
        help="write last.pt (resumable, every epoch), "
        "model.safetensors, history.json and history.csv here",
    )
    reuse = train.add_mutually_exclusive_group()
    reuse.add_argument(
        "--resume",
        metavar="CKPT",
        help="continue from a last.pt checkpoint (--out may then hold a run already)",
    )
    reuse.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh in an --out folder that holds a run: its run files are deleted",
    )
    train.add_argument("--quiet", action="store_true", help="print only the final accuracy")

    evaluate_cmd = _command(commands, "evaluate", "score a trained model on the test set")
    evaluate_cmd.add_argument(
        "checkpoint", metavar="CKPT", help="last.pt, .safetensors, or a plain state dict"
    )
    _add_data_options(evaluate_cmd)
    evaluate_cmd.add_argument("--device", type=_device_option, default="auto")
    evaluate_cmd.add_argument(
        "--plot",
        metavar="PNG",
        default="confusion.png",
        help="confusion-matrix picture (default: confusion.png)",
    )

    predict_cmd = _command(commands, "predict", "classify test digits or your own images")
    predict_cmd.add_argument(
        "paths",
        nargs="*",
        metavar="[CKPT] IMAGE",
        help="a weights file (.pt, .safetensors, a plain state dict under any name; default: "
        "the shipped weights, see --weights), "
        "then image files or folders of them (PNG, JPEG, ...)",
    )
    predict_cmd.add_argument(
        "--weights",
        metavar="NAME",
        default=None,
        help="without CKPT: which shipped weights (default: default; see "
        "lenetish.available_pretrained())",
    )
    _add_data_options(predict_cmd)
    predict_cmd.add_argument(
        "--sample",
        type=_int_option(1, MAX_PICTURES),
        default=4,
        help="without IMAGE: how many random test digits (default: 4)",
    )
    predict_cmd.add_argument(
        "--seed", type=_int_option(0, MAX_SEED), default=None, help="seed of the sample"
    )
    predict_cmd.add_argument(
        "--plot",
        metavar="PNG",
        default="predictions.png",
        help="without IMAGE: picture of the sample (default: predictions.png)",
    )
    predict_cmd.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out images that cannot be read or are blank (each named on stderr)",
    )

    img = _command(commands, "img", "draw a grid of training digits with their labels")
    _add_data_options(img)
    img.add_argument("--count", type=_int_option(1, MAX_PICTURES), default=16)
    img.add_argument(
        "--seed", type=_int_option(0, MAX_SEED), default=None, help="seed of the random choice"
    )
    img.add_argument("--out", metavar="PNG", default="digits.png")

    export = _command(commands, "export", "write a trained model for use elsewhere")
    export.add_argument(
        "checkpoint", metavar="CKPT", help="last.pt, .safetensors, or a plain state dict"
    )
    export.add_argument("--format", required=True, choices=sorted(EXPORT_FORMATS))
    export.add_argument("--out", metavar="FILE", help="default: next to CKPT")
    return parser


def _train(args: argparse.Namespace) -> None:
    env = distributed_env()
    reports = env is None or env.is_main  # under torchrun, rank 0 reports and writes files
    out = Path(args.out) if args.out else None
    with contextlib.ExitStack() as stack:
        if out is not None:
            # Only the writing process locks; every process checks, so all refuse alike.
            stack.enter_context(_run_folder(out, locks=reports))
            _check_run_folder(out, resume=args.resume, overwrite=args.overwrite, delete=reports)
        _train_into(args, out, reports=reports)


def _train_into(args: argparse.Namespace, out: Path | None, *, reports: bool) -> None:
    """Train as ``args`` say, writing into ``out`` (already checked and locked)."""
    saved = None if args.resume is None else _saved_settings(args.resume)
    if saved is not None:
        _check_resumed_settings(args, saved)
    overrides: dict[str, object] = {
        key: value
        for key, value in (
            ("epochs", args.epochs),
            ("batch_size", args.batch_size),
            ("lr", args.lr),
            ("optimizer", args.optimizer),
            ("precision", args.precision),
        )
        if value is not None
    }
    if "optimizer" in overrides and "lr" not in overrides:
        overrides["lr"] = None  # the new optimizer's own default
    if saved is not None and "batch_size" not in overrides:
        overrides["batch_size"] = saved["batch_size"]  # the run continues as it started
    recipe = replace(get_recipe(args.recipe), **overrides)  # type: ignore[arg-type]
    loaders = make_loaders(
        args.data,
        dataset=args.dataset,
        batch_size=recipe.batch_size,
        val_size=args.val_size,
        device=args.device,
        download=not args.no_download,
        seed=args.seed,
    )
    torch.manual_seed(args.seed)
    model = recipe.build_model()
    remember_dataset(model, loaders.info)
    guard, run_settings = TerminateOnNaN(), _RunSettings()
    callbacks: list[Callback] = [guard, run_settings, _StopAtBatchEnd()]
    if out is not None:
        callbacks += [CSVLogger(out / "history.csv"), ModelCheckpoint(out)]
    trainer = recipe.build_trainer(
        model,
        device=args.device,
        seed=args.seed,
        callbacks=callbacks,
        progress=False if args.quiet else None,
    )
    trainer.data_info = loaders.info  # checkpoints record the dataset
    # Checking the loss waits for the device: free on the CPU, spaced out elsewhere.
    guard.check_every = 1 if trainer.device.type == "cpu" else 20
    run_settings.settings = {
        "recipe": recipe.name,
        "batch_size": recipe.batch_size,
        "lr": trainer.lr,
    }
    if reports and not args.quiet:
        # The description is the recipe's own; say what the command line changed in it.
        changed = ", ".join(f"{key}={value}" for key, value in overrides.items())
        print(
            f"recipe {recipe.name}: {recipe.description}"
            + (f" ({changed})" if changed else "")
            + f"; data: {loaders.info.name} from {loaders.source}"
        )
    _flush_stdout()  # a reader (e.g. `| head -1`) sees the header before training starts
    with _signals_at_batch_ends():
        history = trainer.fit(loaders.train, loaders.val, resume=args.resume)
    if not reports:
        return
    diverged = _divergence(guard, history, model)
    if out is not None:  # the files are safe before anything more is printed
        _write_history_json(history, out / "history.json")
        if diverged is None:
            save_weights(model, out / "model.safetensors", dataset=loaders.info)
    if diverged is not None:
        kept = "" if out is None else f"; the last good checkpoint, if any, is {out / 'last.pt'}"
        raise _DivergedError(
            f"training diverged: {diverged}, so no weights were written{kept}; "
            "try a lower --lr or another --recipe"
        )
    result = evaluate(model, loaders.test)
    if not args.quiet:
        for row in history:
            _say(" ".join(_format_metric(key, value) for key, value in row.items()))
    _say(f"test accuracy {result.accuracy:.2%} ({result.correct}/{result.total})")


#: What makes a folder "hold a run": ``train --out`` refuses it without --resume/--overwrite.
RUN_FILES = ("last.pt", "best.pt", "model.safetensors", "history.json", "history.csv")
LOCK_NAME = ".lenetish.lock"


class _UsageError(InvalidArgumentError):
    """Options that contradict each other or would destroy earlier work (exit status 2)."""


class _FolderBusyError(LenetishError, RuntimeError):
    """Another live process holds the lock of the ``--out`` folder."""


class _DivergedError(LenetishError, ArithmeticError):
    """The loss or the weights became NaN or infinite; no weights were written."""


class _Terminated(KeyboardInterrupt):
    """Raised by the CLI's SIGTERM handler, so SIGTERM ends a run the way Ctrl-C does."""


class _Signals:
    """A signal that arrived while a fit was running, kept for the next batch boundary.

    Raising at an arbitrary bytecode can land inside ``torch.save`` (a checkpoint write),
    where torch turns the interrupt into a ``RuntimeError``; during a fit the handler only
    records the signal and :class:`_StopAtBatchEnd` raises it between batches. A second
    signal, or one outside a fit, raises at once.
    """

    deferring = False
    pending: type[KeyboardInterrupt] | None = None


def _on_signal(signum: int, frame: FrameType | None) -> None:
    kind = _Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    if _Signals.deferring and _Signals.pending is None:
        _Signals.pending = kind
        return
    raise kind


class _StopAtBatchEnd(Callback):
    """Raise a signal recorded during the fit at the next batch or epoch boundary."""

    order = -1000

    def on_batch_end(self, trainer: Any, state: Any, output: Any) -> None:
        """Raise the pending interrupt, if any."""
        _raise_pending()

    def on_epoch_start(self, trainer: Any, state: Any) -> None:
        """Raise the pending interrupt, if any."""
        _raise_pending()


def _raise_pending() -> None:
    pending, _Signals.pending = _Signals.pending, None
    if pending is not None:
        raise pending


@contextlib.contextmanager
def _signals_at_batch_ends() -> Iterator[None]:
    """During a fit, SIGINT and SIGTERM take effect between batches (see :class:`_Signals`)."""
    _Signals.deferring, _Signals.pending = True, None
    try:
        yield
    finally:
        _Signals.deferring = False
    _raise_pending()  # a signal during the last epoch's end


class _RunSettings(Callback):
    """Keeps the command line's recipe, batch size and lr in checkpoints, for --resume checks."""

    def __init__(self) -> None:
        self.settings: dict[str, Any] = {}

    def state_dict(self) -> dict[str, Any]:
        """The settings this run trains with."""
        return dict(self.settings)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Keep this run's settings: they were compared with ``state`` before the fit."""


def _make_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InvalidArgumentError(
            f"--out {out} is a file, but a folder is needed there; give the name of a folder "
            "(it is created if missing)"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidArgumentError(
            f"--out folder {out} cannot be created ({exc.strerror or exc}); pick a folder you "
            "can write to"
        ) from exc


@contextlib.contextmanager
def _run_folder(out: Path, *, locks: bool) -> Iterator[None]:
    """Create ``out`` if needed and, when ``locks``, hold its lock file meanwhile.

    The lock file records the holder's pid. A lock left by a process that has died (an
    advisory ``flock``, released by the kernel when its holder ends) is taken over.
    """
    _make_folder(out)
    if not locks or fcntl is None:  # Windows has no flock; the folder is not locked there
        yield
        return
    lock = out / LOCK_NAME
    handle = _take_lock(lock)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        handle.close()


def _take_lock(lock: Path) -> io.TextIOWrapper:
    assert fcntl is not None
    while True:
        try:
            handle = open(lock, "a+")  # noqa: SIM115 (held open until the run ends)
        except OSError as exc:
            raise InvalidArgumentError(
                f"--out folder {lock.parent} is not writable ({exc.strerror or exc}); pick a "
                "folder you can write to"
            ) from exc
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            handle.close()
            raise _FolderBusyError(
                f"--out folder {lock.parent} is in use by another lenetish process (pid "
                f"{owner}), which holds its lock file {lock}; wait for that run to end, or "
                "pick another --out folder"
            ) from None
        try:
            same = os.stat(lock).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:  # else the holder removed the file as we opened it: try again
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
            return handle
        handle.close()


def _check_run_folder(out: Path, *, resume: str | None, overwrite: bool, delete: bool) -> None:
    """Refuse an ``--out`` folder holding a run, unless resuming; with --overwrite, empty it."""
    present = [name for name in RUN_FILES if (out / name).exists()]
    if not present or resume is not None:
        return
    if not overwrite:
        continue_it = (
            f"continue it with --resume {out / 'last.pt'}, " if "last.pt" in present else ""
        )
        raise _UsageError(
            f"--out folder {out} already holds a run ({', '.join(present)}); {continue_it}"
            "start afresh with --overwrite (deletes those files), or pick another --out folder"
        )
    if delete:
        for name in present:
            (out / name).unlink()


def _saved_settings(checkpoint: str) -> dict[str, Any] | None:
    """The settings a CLI run recorded in ``checkpoint``, or None (e.g. a Python API run)."""
    for key, state in load_checkpoint(checkpoint).get("callbacks", {}).items():
        if str(key).rsplit(".", 1)[-1] == _RunSettings.__name__ and isinstance(state, dict):
            return state
    return None


def _check_resumed_settings(args: argparse.Namespace, saved: dict[str, Any] | None) -> None:
    """Refuse options that would change a resumed run (it keeps its checkpoint's settings)."""
    if saved is None:
        if args.lr is not None:
            raise _UsageError(
                f"--lr cannot be used with --resume {args.resume}: a resumed run keeps the "
                "learning rate stored in its checkpoint; drop --lr, or start a new run"
            )
        return
    given = (
        ("--recipe", "recipe", args.recipe),
        ("--batch-size", "batch_size", args.batch_size),
        ("--lr", "lr", args.lr),
    )
    for option, key, value in given:
        if value is not None and key in saved and value != saved[key]:
            raise _UsageError(
                f"{option} {value} differs from the {saved[key]} that {args.resume} was trained "
                f"with; a resumed run keeps its settings: drop {option} (or give "
                f"{saved[key]}), or start a new run"
            )


def _divergence(guard: TerminateOnNaN, history: History, model: torch.nn.Module) -> str | None:
    """Why the trained weights cannot be trusted (a non-finite loss or weights), or None."""
    if guard.stopped_at_step is not None:
        return f"the loss became NaN or infinite at step {guard.stopped_at_step}"
    if len(history) and not math.isfinite(history[-1].get("loss", 0.0)):
        return f"the loss of epoch {history[-1].get('epoch')} is {history[-1]['loss']}"
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        return "the weights became NaN or infinite"
    return None


def _write_history_json(history: History, path: Path) -> None:
    """Write the rows as strict JSON (NaN and infinities as ``null``), atomically."""
    rows = [
        {
            key: None if isinstance(v, float) and not math.isfinite(v) else v
            for key, v in row.items()
        }
        for row in history
    ]
    _write_text_atomically(path, json.dumps(rows, indent=2, allow_nan=False) + "\n")


def _write_text_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def _say(text: str) -> None:
    """Print a line now; if the reader has gone away (``| head``), drop all further output."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        _silence_stdout()


def _flush_stdout() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()


def _format_metric(key: str, value: float) -> str:
    return f"{key}={value:.4f}" if isinstance(value, float) else f"{key}={value}"


def _evaluate(args: argparse.Namespace) -> None:
    _check_output_file(args.plot, "--plot")
    model = load_model(args.checkpoint)
    test, info = model_test_loader(
        model, args.checkpoint, data=args.data, dataset=args.dataset,
        download=not args.no_download, device=args.device,
    )  # fmt: skip
    result = evaluate(model, test, num_classes=len(info.classes))
    print(
        f"test accuracy {result.accuracy:.2%} ({result.correct}/{result.total}), "
        f"loss {result.loss:.4f}"
    )
    classes = info.classes
    print(f"dataset {info.name}")
    print("class        accuracy")
    for name, accuracy in zip(classes, result.per_class_accuracy, strict=True):
        print(f"{name:<12} {accuracy:.2%}")
    _picture(lambda: plot_confusion(result.confusion, args.plot, classes=classes), "--plot")


def _picture(draw: Callable[[], Path], option: str) -> None:
    """Draw a picture; without matplotlib, say so on stderr instead of failing the command."""
    try:
        with _writing(option):
            path = draw()
    except MissingDependencyError as exc:
        print(f"lenetish: no picture: {exc}", file=sys.stderr)
        return
    print(f"picture written to {path}")


def _check_output_file(name: str, option: str) -> None:
    """Refuse an output file path that cannot be written, before any work is done."""
    path = Path(name)
    if path.is_dir():
        raise InvalidArgumentError(
            f"{option} {path} is a folder, but a file name is needed there, e.g. "
            f"{path / 'picture.png'}"
        )
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the nearest existing folder: the rest is created
    if not folder.is_dir():
        raise InvalidArgumentError(
            f"{option} {path} cannot be written: {folder} is a file, not a folder; pick "
            "another path"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InvalidArgumentError(
            f"{option} {path} cannot be written: the folder {folder} is not writable; pick a "
            "folder you can write to"
        )


@contextlib.contextmanager
def _writing(option: str) -> Iterator[None]:
    """Turn an operating-system error while writing ``option``'s file into a named error."""
    try:
        yield
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise InvalidArgumentError(
            f"{option}{where} cannot be written ({exc.strerror or exc}); pick a path you can "
            "write to"
        ) from exc


def _generator(seed: int | None) -> torch.Generator:
    """A generator seeded with ``seed``, or from system entropy when it is None."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def _image_files(names: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            files.append(path)
    return files


def _predict(args: argparse.Namespace) -> None:
    paths = list(args.paths)
    source = f"the shipped weights {args.weights or 'default'!r}"
    if paths and is_weights_path(paths[0]):
        if args.weights is not None:
            raise InvalidArgumentError(
                f"--weights {args.weights} picks shipped weights, but {paths[0]} was given too; "
                "drop one of them"
            )
        source = paths.pop(0)
        model = load_model(source)
    else:
        model = pretrained(args.weights or "default")
    if paths:
        info = dataset_for_models([model], args.dataset)
        files, pictures, skipped = prepare_files(
            _image_files(paths), prepare=preparation_for(info), skip_bad=args.skip_bad
        )
        for message in skipped:
            print(f"lenetish: skipped {message}", file=sys.stderr)
        prediction = predict(model, pictures, dataset=info)
        for file, name, confidence in zip(
            files, prediction.names, prediction.confidence.tolist(), strict=True
        ):
            print(f"{printable_path(file)}: {name} (probability {confidence:.3f})")
        return
    _check_output_file(args.plot, "--plot")
    test, info = model_test_loader(
        model, source, data=args.data, dataset=args.dataset,
        download=not args.no_download,
    )  # fmt: skip
    chosen = torch.randperm(test.num_samples, generator=_generator(args.seed))[: args.sample]
    images, labels = test.images[chosen], test.labels[chosen]
    predicted = model.eval()(images).argmax(dim=1)
    print(f"actual:    {label_text(labels.tolist(), info.classes)}")
    print(f"predicted: {label_text(predicted.tolist(), info.classes)}")
    _picture(
        lambda: plot_digits(
            images,
            args.plot,
            labels=labels,
            predicted=predicted,
            title="actual / predicted",
            classes=info.classes,
        ),
        "--plot",
    )


def _img(args: argparse.Namespace) -> None:
    _check_output_file(args.out, "--out")
    images, labels, info = read_split(
        args.data, dataset=args.dataset, download=not args.no_download
    )
    chosen = torch.randperm(len(labels), generator=_generator(args.seed))[: args.count]
    digits = info.name in ("mnist", "custom") and info.classes == DATASETS["mnist"].classes
    title = "training digits" if digits else f"training images ({info.name})"
    with _writing("--out"):
        path = plot_digits(
            images[chosen], args.out, labels=labels[chosen], title=title, classes=info.classes
        )
    print(f"picture written to {path}")


def _export(args: argparse.Namespace) -> None:
    checkpoint = Path(args.checkpoint)
    out = Path(args.out or checkpoint.with_name(checkpoint.stem + EXPORT_FORMATS[args.format]))
    if out.resolve() == checkpoint.resolve() or (
        out.exists() and checkpoint.exists() and os.path.samefile(out, checkpoint)
    ):
        raise _UsageError(
            f"--out {out} is the checkpoint being exported, which the export would replace; "
            "give another --out file"
        )
    _check_output_file(str(out), "--out")
    model = load_model(args.checkpoint)
    with _writing("--out"):
        written = export_model(model, out, format=args.format)
    print(f"exported to {written}")


_HANDLERS = {
    "train": _train,
    "evaluate": _evaluate,
    "predict": _predict,
    "img": _img,
    "export": _export,
}


def _silence_stdout() -> None:
    """Point stdout at /dev/null so flushing it at exit cannot raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass  # stdout is not a real file (e.g. captured by a test): nothing to flush


def _rank_label() -> str:
    """`` on rank R`` under torchrun with several processes, else empty."""
    world_size, rank = os.environ.get("WORLD_SIZE", "1"), os.environ.get("RANK")
    return f" on rank {rank}" if rank is not None and world_size not in ("", "1") else ""


def _replace_unprintable() -> None:
    """Print names that are not valid in the output's encoding with replacement characters.

    A file name with bytes invalid in UTF-8 reaches Python as lone surrogates, which a strict
    stream refuses to print after the work is done.
    """
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            with contextlib.suppress(ValueError, io.UnsupportedOperation):
                stream.reconfigure(errors="replace")


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While running, SIGTERM and SIGINT end the command (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_signal), signal.signal(signal.SIGINT, _on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])


def _interrupted_line(args: argparse.Namespace) -> str:
    """The one line printed when a command is interrupted, with how to resume a training."""
    checkpoint = Path(args.out) / "last.pt" if getattr(args, "out", None) else None
    if args.command == "train" and checkpoint is not None and checkpoint.is_file():
        return f"lenetish: interrupted; resume with --resume {checkpoint}"
    return "lenetish: interrupted"


def run() -> None:
    """The ``lenetish`` console command: :func:`main`, then exit with its status.

    Under ``torchrun`` the ranks leave together (see
    :func:`lenetish.distributed.exit_together`).
    """
    status = main()
    exit_together(status)
    raise SystemExit(status)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lenetish`` command with ``argv`` (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success (also when the reader of the output went away), 1 on an
        error, 2 on a usage error, 130 when interrupted (SIGINT), 143 when terminated (SIGTERM).
    """
    _replace_unprintable()
    args = build_parser().parse_args(argv)
    try:
        with _sigterm_interrupts(), torch.inference_mode(args.command in ("predict", "img")):
            _HANDLERS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows up here rather than at interpreter exit
    except BrokenPipeError:
        # The reader went away (``lenetish ... | head``): stop quietly, as Unix tools do.
        _silence_stdout()
        return 0
    except KeyboardInterrupt as exc:
        if args.debug:
            raise
        _flush_stdout()
        print(_interrupted_line(args), file=sys.stderr)
        return 143 if isinstance(exc, _Terminated) else 130
    except Exception as exc:
        if args.debug:
            raise
        kind = "" if isinstance(exc, LenetishError) else f"unexpected {type(exc).__name__}: "
        hint = "" if isinstance(exc, LenetishError) else " (run with --debug for details)"
        where = _rank_label()
        print(f"lenetish: error{where}: {kind}{exc}{hint}".replace("\n", " "), file=sys.stderr)
        return 2 if isinstance(exc, _UsageError) else 1
    return 0
