"""``lenetish train``: a recipe, the command line's overrides, a fit, its files and its report."""

from __future__ import annotations

import argparse
import contextlib
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from lenetish.callbacks import Callback, CSVLogger, History, ModelCheckpoint, TerminateOnNaN
from lenetish.cli.folders import check_run_folder, run_folder
from lenetish.cli.output import UsageError, flush_stdout, say
from lenetish.cli.run_settings import recorded_settings
from lenetish.cli.signals import raise_pending, signals_at_batch_ends
from lenetish.data import make_loaders
from lenetish.data.identity import remember_dataset
from lenetish.distributed import distributed_env
from lenetish.errors import LenetishError
from lenetish.evaluation import evaluate
from lenetish.recipes import get_recipe
from lenetish.saving.checkpoint import load_checkpoint, save_weights

__all__ = ["train_command"]


def train_command(args: argparse.Namespace) -> None:
    """Run ``lenetish train`` as ``args`` say (under torchrun, rank 0 writes the files)."""
    env = distributed_env()
    reports = env is None or env.is_main  # under torchrun, rank 0 reports and writes files
    out = Path(args.out) if args.out else None
    with contextlib.ExitStack() as stack:
        if out is not None:
            # Only the writing process locks; every process checks, so all refuse alike.
            stack.enter_context(run_folder(out, locks=reports))
            check_run_folder(out, resume=args.resume, overwrite=args.overwrite, delete=reports)
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
    recorded = saved or {}
    for key in ("batch_size", "epochs"):  # a resumed run continues as it started
        if key not in overrides and key in recorded:
            overrides[key] = recorded[key]
    name = args.recipe or recorded.get("recipe") or "default"
    recipe = replace(get_recipe(name), **overrides)  # type: ignore[arg-type]
    loaders = make_loaders(
        args.data,
        dataset=args.dataset,
        batch_size=recipe.batch_size,
        val_size=args.val_size,
        device=args.device,
        download=not args.no_download,
        seed=args.seed,
        subset=recipe.train_images,
    )
    torch.manual_seed(args.seed)
    model = recipe.build_model(len(loaders.info.classes))
    remember_dataset(model, loaders.info)
    guard, run_settings = TerminateOnNaN(), _RunSettings()
    callbacks: list[Callback] = [guard, run_settings, _StopAtBatchEnd()]
    if out is not None:
        callbacks += [CSVLogger(out / "history.csv"), ModelCheckpoint(out)]
    if reports and not args.quiet:
        callbacks.append(_EpochRows())
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
        "epochs": recipe.epochs,
        "lr": trainer.lr,
    }
    if reports and not args.quiet:
        # The description is the recipe's own; say what the command line changed in it.
        changed = ", ".join(f"{key}={value}" for key, value in overrides.items())
        say(
            f"recipe {recipe.name}: {recipe.description}"
            + (f" ({changed})" if changed else "")
            + f"; data: {loaders.info.name} from {loaders.source}"
        )
    flush_stdout()  # a reader (e.g. `| head -1`) sees the header before training starts
    with signals_at_batch_ends():
        history = trainer.fit(loaders.train, loaders.val, resume=args.resume)
    if not reports:
        return
    diverged = _divergence(guard, history, model)
    if out is not None:  # the files are safe before anything more is printed
        history.to_json(out / "history.json")  # strict JSON, atomically, like checkpoints
        if diverged is None:
            save_weights(model, out / "model.safetensors", dataset=loaders.info)
    if diverged is not None:
        kept = "" if out is None else f"; the last good checkpoint, if any, is {out / 'last.pt'}"
        raise _DivergedError(
            f"training diverged: {diverged}, so no weights were written{kept}; "
            "try a lower --lr or another --recipe"
        )
    result = evaluate(model, loaders.test)
    say(f"test accuracy {result.accuracy:.2%} ({result.correct}/{result.total})")


class _DivergedError(LenetishError, ArithmeticError):
    """The loss or the weights became NaN or infinite; no weights were written."""


class _StopAtBatchEnd(Callback):
    """Raise a signal recorded during the fit at the next batch or epoch boundary."""

    order = -1000

    def on_batch_end(self, trainer: Any, state: Any, output: Any) -> None:
        """Raise the pending interrupt, if any."""
        raise_pending()

    def on_epoch_start(self, trainer: Any, state: Any) -> None:
        """Raise the pending interrupt, if any."""
        raise_pending()


class _EpochRows(Callback):
    """Print each epoch's row when the epoch ends, flushed: a file or a pipe sees it then.

    It reads the epoch's final metrics (validation included) after the progress bar has closed
    its line and the checkpoint is written; a resumed run first prints the restored epochs.
    """

    order = 1100  # after ModelCheckpoint (1000): a row printed is an epoch saved
    reads_metrics = True
    rank_zero_only = True

    def on_fit_start(self, trainer: Any, state: Any) -> None:
        """Print the rows a resumed run's checkpoint restored."""
        for row in trainer.history:
            say(_row_line(row))

    def on_epoch_end(self, trainer: Any, state: Any) -> None:
        """Print this epoch's row."""
        say(_row_line(state.metrics))


class _RunSettings(Callback):
    """Keeps the command line's recipe, batch size, epochs and lr in checkpoints, for --resume."""

    def __init__(self) -> None:
        self.settings: dict[str, Any] = {}

    def state_dict(self) -> dict[str, Any]:
        """The settings this run trains with."""
        return dict(self.settings)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Keep this run's settings: they were compared with ``state`` before the fit."""


def _saved_settings(checkpoint: str) -> dict[str, Any] | None:
    """The settings a CLI run recorded in ``checkpoint``, checked, or None (e.g. an API run)."""
    return recorded_settings(load_checkpoint(checkpoint), checkpoint, _RunSettings.__name__)


def _check_resumed_settings(args: argparse.Namespace, saved: dict[str, Any] | None) -> None:
    """Refuse options that would change a resumed run (it keeps its checkpoint's settings)."""
    if saved is None:
        if args.lr is not None:
            raise UsageError(
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
            raise UsageError(
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


def _row_line(row: dict[str, float]) -> str:
    """One History row as the command prints it: ``epoch=1 loss=0.1234 ...``."""
    return " ".join(_format_metric(key, value) for key, value in row.items())


def _format_metric(key: str, value: float) -> str:
    return f"{key}={value:.4f}" if isinstance(value, float) else f"{key}={value}"
