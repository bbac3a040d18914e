"""The other commands of ``lenetish``: ``evaluate``, ``predict``, ``img`` and ``export``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from lenetish.catalog import DATASETS, EXPORT_FORMATS
from lenetish.cli.models import is_weights_path, label_text, model_test_loader
from lenetish.cli.output import UsageError, check_output_file, say, warn, writing
from lenetish.cli.train import train_command
from lenetish.data import read_split
from lenetish.data.identity import dataset_for_models
from lenetish.errors import InvalidArgumentError, MissingDependencyError
from lenetish.evaluation import evaluate, predict
from lenetish.evaluation.inputs import IMAGE_SUFFIXES, prepare_files, printable_path
from lenetish.evaluation.prepare import preparation_for
from lenetish.plots import plot_confusion, plot_digits
from lenetish.saving.export import export_model
from lenetish.saving.weightfiles import load_model
from lenetish.shipped import pretrained

__all__ = ["HANDLERS"]


def evaluate_command(args: argparse.Namespace) -> None:
    check_output_file(args.plot, "--plot")
    model = load_model(args.checkpoint)
    test, info = model_test_loader(
        model, args.checkpoint, data=args.data, dataset=args.dataset,
        download=not args.no_download, device=args.device,
    )  # fmt: skip
    result = evaluate(model, test, num_classes=len(info.classes))
    say(
        f"test accuracy {result.accuracy:.2%} ({result.correct}/{result.total}), "
        f"loss {result.loss:.4f}"
    )
    classes = info.classes
    say(f"dataset {info.name}")  # say() escapes what the weights file put in names
    say("class        accuracy")
    for name, accuracy in zip(classes, result.per_class_accuracy, strict=True):
        say(f"{name:<12} {accuracy:.2%}")
    _picture(lambda: plot_confusion(result.confusion, args.plot, classes=classes), "--plot")


def _picture(draw: Callable[[], Path], option: str) -> None:
    """Draw a picture; without matplotlib, say so on stderr instead of failing the command."""
    try:
        with writing(option):
            path = draw()
    except MissingDependencyError as exc:
        warn(f"no picture: {exc}")
        return
    say(f"picture written to {path}")


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


def predict_command(args: argparse.Namespace) -> None:
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
            warn(f"skipped {message}")
        prediction = predict(model, pictures, dataset=info)
        for file, name, confidence in zip(
            files, prediction.names, prediction.confidence.tolist(), strict=True
        ):
            say(f"{printable_path(file)}: {printable_path(name)} (probability {confidence:.3f})")
        return
    check_output_file(args.plot, "--plot")
    test, info = model_test_loader(
        model, source, data=args.data, dataset=args.dataset,
        download=not args.no_download,
    )  # fmt: skip
    chosen = torch.randperm(test.num_samples, generator=_generator(args.seed))[: args.sample]
    images, labels = test.images[chosen], test.labels[chosen]
    predicted = model.eval()(images).argmax(dim=1)
    say(f"actual:    {label_text(labels.tolist(), info.classes)}")
    say(f"predicted: {label_text(predicted.tolist(), info.classes)}")
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


def img_command(args: argparse.Namespace) -> None:
    check_output_file(args.out, "--out")
    images, labels, info = read_split(
        args.data, dataset=args.dataset, download=not args.no_download
    )
    chosen = torch.randperm(len(labels), generator=_generator(args.seed))[: args.count]
    digits = info.name in ("mnist", "custom") and info.classes == DATASETS["mnist"].classes
    title = "training digits" if digits else f"training images ({info.name})"
    with writing("--out"):
        path = plot_digits(
            images[chosen], args.out, labels=labels[chosen], title=title, classes=info.classes
        )
    say(f"picture written to {path}")


def export_command(args: argparse.Namespace) -> None:
    checkpoint = Path(args.checkpoint)
    suffix = EXPORT_FORMATS[args.format]
    out = Path(args.out or checkpoint.with_name(checkpoint.stem + suffix))
    if not args.out and out.name == checkpoint.name:  # X.safetensors to safetensors
        out = checkpoint.with_name(f"{checkpoint.stem}.export{suffix}")
    if out.resolve() == checkpoint.resolve() or (
        out.exists() and checkpoint.exists() and os.path.samefile(out, checkpoint)
    ):
        raise UsageError(
            f"--out {out} is the checkpoint being exported, which the export would replace; "
            "give another --out file"
        )
    check_output_file(str(out), "--out")
    model = load_model(args.checkpoint)
    with writing("--out"):
        written = export_model(model, out, format=args.format)
    say(f"exported to {written}")


#: The function that runs each command, given its parsed arguments.
HANDLERS: dict[str, Callable[[argparse.Namespace], None]] = {
    "train": train_command,
    "evaluate": evaluate_command,
    "predict": predict_command,
    "img": img_command,
    "export": export_command,
}
