"""The ``lenetish`` command line: ``train``, ``evaluate``, ``predict``, ``img``, ``export``.

Exit status: 0 on success, 2 on usage errors (argparse), 1 on any other error, reported as
one line (``--debug`` shows the full traceback instead).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import torch

from lenetish.checkpoint import load_model, save_weights
from lenetish.data import DATASETS, load_split, make_loaders, make_test_loader
from lenetish.distributed import distributed_env
from lenetish.errors import InvalidArgumentError, LenetishError, MissingDependencyError
from lenetish.evaluation import evaluate, predict
from lenetish.export import EXPORT_FORMATS, export_model
from lenetish.inputs import IMAGE_SUFFIXES
from lenetish.loaders import TensorLoader
from lenetish.loggers import CSVLogger
from lenetish.monitors import ModelCheckpoint
from lenetish.plots import plot_confusion, plot_digits
from lenetish.pretrained import pretrained
from lenetish.recipes import RECIPES, get_recipe

__all__ = ["build_parser", "main"]

_EXAMPLES = {
    "train": "examples:\n  lenetish train --data ~/mnist --epochs 5 --out runs/a\n"
    "  lenetish train --data ~/mnist --epochs 10 --out runs/a --resume runs/a/last.pt\n"
    "  torchrun --nproc_per_node=2 -m lenetish train --data ~/mnist --out runs/b",
    "evaluate": "examples:\n  lenetish evaluate runs/a/last.pt --data ~/mnist --plot cm.png",
    "predict": "examples:\n  lenetish predict runs/a/model.safetensors --data ~/mnist --sample 4\n"
    "  lenetish predict runs/a/model.safetensors my_digit.png more_digits/\n"
    "  lenetish predict my_digit.png          # with the shipped 'default' weights",
    "img": "examples:\n  lenetish img --data ~/mnist --count 25 --out digits.png",
    "export": "examples:\n  lenetish export runs/a/last.pt --format onnx --out model.onnx",
}


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="data folder (default: $LENETISH_DATA "
        "or ~/.cache/lenetish); the idx files may be raw or .gz",
    )
    parser.add_argument("--dataset", default="mnist", choices=sorted(DATASETS))
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
    train.add_argument("--epochs", type=int, default=None)
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--lr", type=float, default=None, help="learning rate")
    train.add_argument("--optimizer", default=None, choices=["adam", "sgd"])
    train.add_argument(
        "--val-size",
        type=int,
        default=0,
        help="training samples held out for validation (default: 0)",
    )
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    train.add_argument(
        "--precision",
        default=None,
        choices=["auto", "32", "bf16-mixed", "16-mixed"],
        help="auto: bfloat16 autocast where the device has native bf16, else 32",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--out",
        metavar="DIR",
        help="write last.pt (resumable, every epoch), "
        "model.safetensors, history.json and history.csv here",
    )
    train.add_argument("--resume", metavar="CKPT", help="continue from a last.pt checkpoint")
    train.add_argument("--quiet", action="store_true", help="print only the final accuracy")

    evaluate_cmd = _command(commands, "evaluate", "score a trained model on the test set")
    evaluate_cmd.add_argument("checkpoint", metavar="CKPT", help="last.pt or .safetensors")
    _add_data_options(evaluate_cmd)
    evaluate_cmd.add_argument("--device", default="auto")
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
        help="a checkpoint (.pt, .safetensors; default: the shipped weights, see --weights), "
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
        type=int,
        default=4,
        help="without IMAGE: how many random test digits (default: 4)",
    )
    predict_cmd.add_argument("--seed", type=int, default=None, help="seed of the sample")
    predict_cmd.add_argument(
        "--plot",
        metavar="PNG",
        default="predictions.png",
        help="without IMAGE: picture of the sample (default: predictions.png)",
    )

    img = _command(commands, "img", "draw a grid of training digits with their labels")
    _add_data_options(img)
    img.add_argument("--count", type=int, default=16)
    img.add_argument("--seed", type=int, default=None, help="seed of the random choice")
    img.add_argument("--out", metavar="PNG", default="digits.png")

    export = _command(commands, "export", "write a trained model for use elsewhere")
    export.add_argument("checkpoint", metavar="CKPT", help="last.pt or .safetensors")
    export.add_argument("--format", required=True, choices=sorted(EXPORT_FORMATS))
    export.add_argument("--out", metavar="FILE", help="default: next to CKPT")
    return parser


def _test_loader(args: argparse.Namespace, *, device: str | None = None) -> TensorLoader:
    return make_test_loader(
        args.data,
        dataset=args.dataset,
        download=not args.no_download,
        device=device,
        batch_size=2000,
    )


def _train(args: argparse.Namespace) -> None:
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
    out = Path(args.out) if args.out else None
    callbacks = [] if out is None else [CSVLogger(out / "history.csv"), ModelCheckpoint(out)]
    trainer = recipe.build_trainer(
        model,
        device=args.device,
        seed=args.seed,
        callbacks=callbacks,
        progress=False if args.quiet else None,
    )
    env = distributed_env()
    reports = env is None or env.is_main  # under torchrun, rank 0 reports and writes files
    if reports and not args.quiet:
        # The description is the recipe's own; say what the command line changed in it.
        changed = ", ".join(f"{key}={value}" for key, value in overrides.items())
        print(
            f"recipe {recipe.name}: {recipe.description}"
            + (f" ({changed})" if changed else "")
            + f"; data: {args.dataset} from {loaders.source}"
        )
    history = trainer.fit(loaders.train, loaders.val, resume=args.resume)
    if not reports:
        return
    if not args.quiet:
        for row in history:
            print(" ".join(_format_metric(key, value) for key, value in row.items()))
    result = evaluate(model, loaders.test)
    print(f"test accuracy {result.accuracy:.2%} ({result.correct}/{result.total})")
    if out is not None:
        save_weights(model, out / "model.safetensors")
        history.to_json(out / "history.json")


def _format_metric(key: str, value: float) -> str:
    return f"{key}={value:.4f}" if isinstance(value, float) else f"{key}={value}"


def _evaluate(args: argparse.Namespace) -> None:
    model = load_model(args.checkpoint)
    test = _test_loader(args, device=args.device)
    result = evaluate(model, test)
    print(
        f"test accuracy {result.accuracy:.2%} ({result.correct}/{result.total}), "
        f"loss {result.loss:.4f}"
    )
    classes = DATASETS[args.dataset].classes
    print("class        accuracy")
    for name, accuracy in zip(classes, result.per_class_accuracy, strict=True):
        print(f"{name:<12} {accuracy:.2%}")
    _picture(lambda: plot_confusion(result.confusion, args.plot, classes=classes))


def _picture(draw: Callable[[], Path]) -> None:
    """Draw a picture; without matplotlib, say so on stderr instead of failing the command."""
    try:
        path = draw()
    except MissingDependencyError as exc:
        print(f"lenetish: no picture: {exc}", file=sys.stderr)
        return
    print(f"picture written to {path}")


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
    if paths and Path(paths[0]).suffix in WEIGHT_SUFFIXES:
        if args.weights is not None:
            raise InvalidArgumentError(
                f"--weights {args.weights} picks shipped weights, but {paths[0]} was given too; "
                "drop one of them"
            )
        model = load_model(paths.pop(0))
    else:
        model = pretrained(args.weights or "default")
    if paths:
        files = _image_files(paths)
        prediction = predict(model, [str(f) for f in files], dataset=args.dataset)
        for file, label, confidence in zip(
            files, prediction.labels.tolist(), prediction.confidence.tolist(), strict=True
        ):
            print(f"{file}: {DATASETS[args.dataset].classes[label]} (probability {confidence:.3f})")
        return
    test = _test_loader(args)
    chosen = torch.randperm(test.num_samples, generator=_generator(args.seed))[: args.sample]
    images, labels = test.images[chosen], test.labels[chosen]
    predicted = model.eval()(images).argmax(dim=1)
    print(f"actual:    {labels.tolist()}")
    print(f"predicted: {predicted.tolist()}")
    _picture(
        lambda: plot_digits(
            images, args.plot, labels=labels, predicted=predicted, title="actual / predicted"
        )
    )


def _img(args: argparse.Namespace) -> None:
    images, labels = load_split(args.data, dataset=args.dataset, download=not args.no_download)
    chosen = torch.randperm(len(labels), generator=_generator(args.seed))[: args.count]
    path = plot_digits(images[chosen], args.out, labels=labels[chosen], title="training digits")
    print(f"picture written to {path}")


def _export(args: argparse.Namespace) -> None:
    model = load_model(args.checkpoint)
    checkpoint = Path(args.checkpoint)
    out = args.out or checkpoint.with_name(checkpoint.stem + EXPORT_FORMATS[args.format])
    print(f"exported to {export_model(model, out, format=args.format)}")


WEIGHT_SUFFIXES = (".pt", ".pth", ".safetensors")

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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lenetish`` command with ``argv`` (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 1 on an error (usage errors exit with 2).
    """
    args = build_parser().parse_args(argv)
    try:
        with torch.inference_mode(args.command in ("predict", "img")):
            _HANDLERS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows up here rather than at interpreter exit
    except BrokenPipeError:
        # The reader went away (``lenetish ... | head``): stop quietly, as Unix tools do.
        _silence_stdout()
        return 1
    except Exception as exc:
        if args.debug:
            raise
        kind = "" if isinstance(exc, LenetishError) else f"unexpected {type(exc).__name__}: "
        hint = "" if isinstance(exc, LenetishError) else " (run with --debug for details)"
        where = _rank_label()
        print(f"lenetish: error{where}: {kind}{exc}{hint}".replace("\n", " "), file=sys.stderr)
        return 1
    return 0
