"""The ``lenetish`` command line: ``train``, ``evaluate``, ``predict``, ``img``, ``export``.

Exit status: 0 on success, 2 on usage errors (argparse, and options that contradict each other
or would destroy earlier work), 1 on any other error, reported as one line (``--debug`` shows
the full traceback instead), 130 when interrupted (Ctrl-C) and 143 when terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from lenetish.catalog import DATASETS, EXPORT_FORMATS, OPTIMIZERS, PRECISIONS
from lenetish.cli.output import UsageError, check_stdout, flush_stdout, silence_stdout, warn
from lenetish.cli.serve import add_serve_parser
from lenetish.cli.signals import Terminated, sigterm_interrupts
from lenetish.errors import LenetishError
from lenetish.recipes import RECIPES

# Nothing above imports torch: ``lenetish --help`` and usage errors answer at once, and a
# command imports what it needs when it runs (``lenetish.cli.commands``).

__all__ = ["build_parser", "main", "run"]

_EXAMPLES = {
    "train": "examples:\n  lenetish train --epochs 5 --out runs/a\n"
    "  lenetish train --epochs 5 --out runs/a --resume runs/a/last.pt  # continue after Ctrl-C\n"
    "  lenetish train --recipe seed-adam --epochs 10 --out runs/s --resume runs/s/last.pt\n"
    "      # extends a finished 5-epoch seed-adam run (one-cycle recipes cannot be extended)\n"
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
    available = _cuda_device_count() if kind == "cuda" else 1
    if index >= available:
        have = (
            f"this machine has {available} CUDA device(s)" if kind == "cuda" else f"{kind}:0 only"
        )
        raise argparse.ArgumentTypeError(f"{text!r} does not exist: {have}")
    return text


def _cuda_device_count() -> int:
    import torch  # only when a CUDA index is given: ``--help`` must not wait for torch

    return torch.cuda.device_count()


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="data folder (default: $LENETISH_DATA or ~/.cache/lenetish if they hold the "
        "dataset, else for MNIST the copy bundled with lenetish): idx files raw or .gz, or "
        "class sub-folders of images (train/ and test/ ones, or a fifth held out for testing)",
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
        default=None,
        choices=list(RECIPES),
        help="training configuration (default: default; with --resume: the checkpoint's); "
        "the options below override it",
    )
    train.add_argument(
        "--epochs",
        type=_int_option(1, MAX_EPOCHS),
        default=None,
        help="total epochs (default: the recipe's; with --resume: the checkpoint's run's)",
    )
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
    train.add_argument("--optimizer", default=None, choices=OPTIMIZERS)
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
        choices=PRECISIONS,
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
    export.add_argument(
        "--out",
        metavar="FILE",
        help="default: next to CKPT with the format's suffix (NAME.export.safetensors when "
        "CKPT is already NAME.safetensors)",
    )
    add_serve_parser(commands)
    return parser


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


def _interrupted_line(args: argparse.Namespace) -> str:
    """The one line printed when a command is interrupted, with how to resume a training."""
    checkpoint = Path(args.out) / "last.pt" if getattr(args, "out", None) else None
    if args.command == "train" and checkpoint is not None and checkpoint.is_file():
        return f"interrupted; resume with --resume {checkpoint}"
    if args.command == "serve":  # the requests in flight were answered first
        return "server stopped"
    return "interrupted"


def _run_command(args: argparse.Namespace) -> None:
    """Import the commands (and torch) now, then run the one ``args`` name."""
    if args.command == "serve":  # its stack (FastAPI, uvicorn) loads only here
        from lenetish.cli.serve import serve_command

        serve_command(args)
        return
    import torch

    from lenetish.cli.commands import HANDLERS

    with torch.inference_mode(args.command in ("predict", "img")):
        HANDLERS[args.command](args)


def run() -> None:
    """The ``lenetish`` console command: :func:`main`, then exit with its status.

    Under ``torchrun`` the ranks leave together (see
    :func:`lenetish.distributed.exit_together`).
    """
    status = main()
    from lenetish.distributed import exit_together  # torch is loaded by now, if ever

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
        check_stdout()  # closed: refused before the work, whose results it could not show
        with sigterm_interrupts():
            _run_command(args)
        flush_stdout()  # a closed pipe or a full disk shows up here, not at interpreter exit
    except BrokenPipeError:
        # The reader went away (``lenetish ... | head``): stop quietly, as Unix tools do.
        silence_stdout()
        return 0
    except KeyboardInterrupt as exc:
        if args.debug:
            raise
        with contextlib.suppress(LenetishError):
            flush_stdout()
        warn(_interrupted_line(args))
        return 143 if isinstance(exc, Terminated) else 130
    except Exception as exc:
        if args.debug:
            raise
        kind = "" if isinstance(exc, LenetishError) else f"unexpected {type(exc).__name__}: "
        hint = "" if isinstance(exc, LenetishError) else " (run with --debug for details)"
        # Messages may quote names from files: escaped (see lenetish._text), on one line.
        warn(f"error{_rank_label()}: {kind}{str(exc).replace(chr(10), ' ')}{hint}")
        return 2 if isinstance(exc, UsageError) else 1
    return 0
