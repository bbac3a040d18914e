"""Tests of lenetish.callbacks.checkpointing: ModelCheckpoint."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

from lenetish import (
    Callback,
    CheckpointError,
    EarlyStopping,
    InvalidArgumentError,
    ModelCheckpoint,
    TerminateOnNaN,
    Trainer,
    TrainState,
    load_checkpoint,
)
from lenetish.saving.checkpoint import save_checkpoint
from tests.training_helpers import Scripted, digit_batches, quick_trainer


def test_model_checkpoint_auto_mode_refuses_an_unknown_name(tmp_path: Path) -> None:
    """ModelCheckpoint(save_best=True) with mode='auto' on an unknown name asks for mode=."""
    saver = ModelCheckpoint(tmp_path, monitor="accuracy_gap", save_best=True)
    with pytest.raises(InvalidArgumentError, match=r"ModelCheckpoint\(mode='auto'\).*mode='max'"):
        quick_trainer(callbacks=[saver]).fit(digit_batches(10, 10))


def test_model_checkpoint_without_best_or_top_k_ignores_the_monitors_direction(
    tmp_path: Path,
) -> None:
    """A ModelCheckpoint writing only last.pt never asks for the direction of its monitor."""
    saver = ModelCheckpoint(tmp_path, monitor="accuracy_gap")
    quick_trainer(callbacks=[saver]).fit(digit_batches(10, 10))
    assert saver.last_path.exists()


def test_last_checkpoint_holds_the_final_epoch_after_an_early_stop(tmp_path: Path) -> None:
    """every_n_epochs=3 and a stop after epoch 4: last.pt holds epoch 4, not 3."""
    stopper = EarlyStopping("score", mode="min", patience=3)
    saver = ModelCheckpoint(tmp_path, every_n_epochs=3)
    scripted = Scripted([1, 2, 3, 4, 5, 6])
    history = quick_trainer(epochs=6, callbacks=[scripted, stopper, saver]).fit(
        digit_batches(10, 10)
    )
    assert load_checkpoint(saver.last_path)["epoch"] == len(history) == 4


def test_a_reused_checkpoint_keeps_a_better_best_across_fits(tmp_path: Path) -> None:
    """A second fit whose epochs are all worse does not replace best.pt."""
    saver = ModelCheckpoint(tmp_path, monitor="score", mode="min", save_best=True)
    trainer = quick_trainer(epochs=2, callbacks=[Scripted([2, 1]), saver])
    trainer.fit(digit_batches(10, 10))
    assert load_checkpoint(saver.best_path)["epoch"] == 2
    quick_trainer(epochs=2, callbacks=[Scripted([5, 4]), saver]).fit(digit_batches(10, 10))
    assert saver.watch.best == 1
    assert (
        load_checkpoint(saver.best_path)["callbacks"]["lenetish.History"]["rows"][-1]["score"] == 1
    )


def test_reset_best_starts_every_fit_afresh(tmp_path: Path) -> None:
    """With reset_best=True a second fit's best replaces the first fit's."""
    saver = ModelCheckpoint(tmp_path, monitor="score", mode="min", save_best=True, reset_best=True)
    quick_trainer(epochs=1, callbacks=[Scripted([1]), saver]).fit(digit_batches(10, 10))
    quick_trainer(epochs=1, callbacks=[Scripted([5]), saver]).fit(digit_batches(10, 10))
    assert saver.watch.best == 5


def test_save_top_k_keeps_the_k_best_files_named_by_the_template(tmp_path: Path) -> None:
    """save_top_k=2 keeps the two best epochs' files, named from the template."""
    saver = ModelCheckpoint(
        tmp_path, monitor="score", mode="min", save_top_k=2, filename="{epoch:02d}-{score:.1f}.pt"
    )
    quick_trainer(epochs=4, callbacks=[Scripted([3, 1, 2, 4]), saver]).fit(digit_batches(10, 10))
    kept = sorted(path.name for path in tmp_path.glob("0*.pt"))
    assert kept == ["02-1.0.pt", "03-2.0.pt"]
    assert load_checkpoint(tmp_path / "02-1.0.pt")["epoch"] == 2


def test_a_filename_naming_an_unknown_metric_is_refused(tmp_path: Path) -> None:
    """A top-k template that names a metric the epoch lacks says which metrics there are."""
    saver = ModelCheckpoint(tmp_path, monitor="loss", save_top_k=1, filename="{val_f1}.pt")
    with pytest.raises(InvalidArgumentError, match=r"filename='\{val_f1\}.pt' does not fit"):
        quick_trainer(callbacks=[saver]).fit(digit_batches(10, 10))


def test_model_checkpoint_writes_last_and_best(tmp_path: Path) -> None:
    """last.pt follows the latest epoch; best.pt the best monitored one."""
    saver = ModelCheckpoint(tmp_path, monitor="score", mode="min", save_best=True)
    quick_trainer(epochs=3, callbacks=[Scripted([2, 1, 3]), saver]).fit(digit_batches(10, 10))
    assert load_checkpoint(saver.last_path)["epoch"] == 3
    assert load_checkpoint(saver.best_path)["epoch"] == 2


def test_model_checkpoint_every_n_epochs(tmp_path: Path) -> None:
    """every_n_epochs spaces last.pt writes out, and the final epoch is always saved."""
    written: list[int] = []

    class Spy(Callback):
        order = 2000
        reads_metrics = True

        def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
            path = tmp_path / "last.pt"
            if path.exists():
                written.append(load_checkpoint(path)["epoch"])

    saver = ModelCheckpoint(tmp_path, every_n_epochs=2)
    quick_trainer(epochs=5, callbacks=[saver, Spy()]).fit(digit_batches(10, 10))
    assert written == [2, 2, 4, 5]


def test_model_checkpoint_runs_after_other_callbacks(tmp_path: Path) -> None:
    """The checkpoint holds the History row of the epoch it was written at."""
    saver = ModelCheckpoint(tmp_path)
    quick_trainer(epochs=2, callbacks=[saver]).fit(digit_batches(10, 10))
    assert len(load_checkpoint(saver.last_path)["callbacks"]["lenetish.History"]["rows"]) == 2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"every_n_epochs": 0}, "every_n_epochs must be a positive integer"),
        ({"save_last": False}, "save_best and save_last are both False"),
        ({"mode": "sideways"}, "mode must be 'auto', 'min' or 'max'"),
        ({"save_top_k": -3}, r"save_top_k must be an integer >= -1 \(-1 keeps every"),
        ({"every_n_steps": 0}, "every_n_steps must be a positive integer, got 0"),
        (
            {"every_n_steps": 5, "save_last": False, "save_best": True},
            "every_n_steps writes last.pt, but save_last=False",
        ),
        ({"baseline": math.nan}, "baseline must be a finite number or None, got nan"),
        ({"filename": "../{epoch}.pt"}, r"filename='\.\./\{epoch\}\.pt' holds a path separator"),
        ({"filename": "{epoch}\\x.pt"}, r"holds a path separator or a NUL.*pick the sub-folder"),
    ],
)
def test_model_checkpoint_settings_are_checked(
    tmp_path: Path, arguments: dict[str, Any], message: str
) -> None:
    """Bad ModelCheckpoint settings raise InvalidArgumentError naming the argument."""
    with pytest.raises(InvalidArgumentError, match=message):
        ModelCheckpoint(tmp_path, **arguments)


def test_model_checkpoint_keeps_the_last_good_file_when_training_diverges(
    tmp_path: Path,
) -> None:
    """A run that diverges in epoch 2 is stopped by TerminateOnNaN; epoch 1's file loads."""
    saver, guard = ModelCheckpoint(tmp_path), TerminateOnNaN()
    explode = lambda opt: torch.optim.lr_scheduler.LambdaLR(  # noqa: E731
        opt, lambda epoch: 1.0 if epoch < 1 else 1e14
    )
    trainer = quick_trainer(
        epochs=3, optimizer="sgd", lr=0.01, scheduler=explode, callbacks=[guard, saver]
    )
    trainer.fit(digit_batches(40, 10))
    assert guard.stopped_at_step is not None and guard.stopped_at_step > 4
    checkpoint = load_checkpoint(saver.last_path)
    assert checkpoint["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in checkpoint["model"].values())


def test_model_checkpoint_skips_a_non_finite_epoch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An epoch whose loss is NaN (stop requested in its last batch) is not saved."""
    saver = ModelCheckpoint(tmp_path)
    with caplog.at_level("WARNING", "lenetish"):
        quick_trainer(epochs=1, optimizer="sgd", lr=1e15, callbacks=[saver]).fit(
            digit_batches(40, 10)
        )
    assert not saver.last_path.exists()
    assert "non-finite loss; not saving" in caplog.text


def test_checkpoint_written_before_a_failing_callback_stays_intact(tmp_path: Path) -> None:
    """A user callback that raises in epoch 2 propagates; epoch 1's checkpoint still loads."""

    class Faulty(Callback):
        def on_batch_end(self, trainer: Trainer, state: TrainState, output: object) -> None:
            if state.epoch == 1:
                raise RuntimeError("user bug")

    saver = ModelCheckpoint(tmp_path)
    with pytest.raises(RuntimeError, match="user bug"):
        quick_trainer(epochs=3, callbacks=[Faulty(), saver]).fit(digit_batches(20, 10))
    assert load_checkpoint(saver.last_path)["epoch"] == 1


def test_a_top_k_filename_without_the_epoch_that_collides_is_refused(tmp_path: Path) -> None:
    """Two kept epochs mapping to one file would make the files disagree with the list."""
    saver = ModelCheckpoint(
        tmp_path, monitor="score", mode="min", save_top_k=2, filename="best-{score:.0f}.pt"
    )
    with pytest.raises(InvalidArgumentError, match=r"gives 'best-3.pt' for epoch 2 too"):
        quick_trainer(epochs=3, callbacks=[Scripted([3.1, 2.9, 1.0]), saver]).fit(
            digit_batches(10, 10)
        )


@pytest.mark.parametrize(
    ("values", "mode", "k", "kept"),
    [
        ([math.nan, 8, 7, 5], "min", 1, ["04.pt"]),
        ([math.nan, 5, 7, 8], "max", 1, ["04.pt"]),
        ([8, math.nan, 7, 5], "min", 2, ["03.pt", "04.pt"]),
        ([5, math.nan, 7, 8], "max", 2, ["03.pt", "04.pt"]),
    ],
)
def test_a_nan_value_ranks_worst_in_the_top_k_and_its_file_is_pruned(
    tmp_path: Path, values: list[float], mode: Any, k: int, kept: list[str]
) -> None:
    """NaN is the worst value in either mode: better epochs displace it and delete its file."""
    saver = ModelCheckpoint(
        tmp_path,
        monitor="score",
        mode=mode,
        save_top_k=k,
        save_last=False,
        filename="{epoch:02d}.pt",
    )
    quick_trainer(epochs=4, callbacks=[Scripted(values), saver]).fit(digit_batches(10, 10))
    assert sorted(path.name for path in tmp_path.glob("*.pt")) == kept
    assert sorted(name for _, name in saver.top) == kept
    assert not any(math.isnan(value) for value, _ in saver.top)


def test_a_top_k_file_holds_its_own_epoch_in_the_saved_state(tmp_path: Path) -> None:
    """The checkpoint's ModelCheckpoint state already counts the epoch it was written for."""
    saver = ModelCheckpoint(
        tmp_path, monitor="score", mode="min", save_best=True, save_top_k=2, filename="{epoch}.pt"
    )
    quick_trainer(epochs=2, callbacks=[Scripted([5, 3]), saver]).fit(digit_batches(10, 10))
    state = load_checkpoint(tmp_path / "2.pt")["callbacks"][saver.state_key]
    assert (state["best"], state["best_epoch"]) == (3, 2)
    assert [name for _, name in state["top"]] == ["2.pt", "1.pt"]


def test_resuming_from_a_top_k_file_keeps_a_better_best(tmp_path: Path) -> None:
    """A fit resumed from epoch 2's top-k file does not replace best.pt with a worse epoch 3."""

    def saver() -> ModelCheckpoint:
        return ModelCheckpoint(
            tmp_path,
            monitor="score",
            mode="min",
            save_best=True,
            save_top_k=2,
            filename="{epoch}.pt",
        )

    quick_trainer(epochs=2, callbacks=[Scripted([5, 3]), saver()]).fit(digit_batches(10, 10))
    resumed = saver()
    quick_trainer(epochs=3, callbacks=[Scripted([5, 3, 4]), resumed]).fit(
        digit_batches(10, 10), resume=tmp_path / "2.pt"
    )
    assert load_checkpoint(resumed.best_path)["epoch"] == 2
    assert (resumed.watch.best, resumed.watch.best_epoch) == (3, 2)
    assert [name for _, name in resumed.top] == ["2.pt", "3.pt"]
    assert not (tmp_path / "1.pt").exists()


def spy_saves(trainer: Trainer) -> list[tuple[str, int, bool]]:
    """Record (file name, global step, inside an epoch) of every save_checkpoint call."""
    saves: list[tuple[str, int, bool]] = []
    save = trainer.save_checkpoint

    def recording(path: Any) -> None:
        saves.append(
            (Path(path).name, trainer.state.global_step, trainer.state.progress is not None)
        )
        save(path)

    trainer.save_checkpoint = recording  # type: ignore[method-assign]
    return saves


@pytest.mark.parametrize(
    ("every_n_steps", "batches", "epochs", "steps"),
    [
        (16, 64, 2, [16, 32, 48, 64, 80, 96, 112, 128]),  # Lightning's numbers
        (15, 5, 10, [15, 30, 45]),  # Keras' save_freq=15: in epochs 3, 6 and 9
    ],
)
def test_ckpt_every_n_train_steps(
    tmp_path: Path, every_n_steps: int, batches: int, epochs: int, steps: list[int]
) -> None:
    """Lightning every_n_train_steps / Keras save_freq: last.pt every N optimizer steps."""
    saver = ModelCheckpoint(tmp_path, every_n_steps=every_n_steps, every_n_epochs=100)
    trainer = quick_trainer(epochs=epochs, callbacks=[saver])
    saves = spy_saves(trainer)
    trainer.fit(digit_batches(batches, 1))
    assert [step for name, step, inside in saves if inside] == steps
    assert {name for name, _, _ in saves} == {"last.pt"}


def test_a_step_checkpoint_resumes_inside_its_epoch(tmp_path: Path) -> None:
    """A fit that crashes after the step-6 save resumes from last.pt inside epoch 2."""

    class Crash(Callback):
        def on_batch_start(self, trainer: Trainer, state: TrainState) -> None:
            if state.global_step == 7:
                raise RuntimeError("power cut")

    saver = ModelCheckpoint(tmp_path, every_n_steps=3)
    with pytest.raises(RuntimeError, match="power cut"):
        quick_trainer(epochs=2, callbacks=[Crash(), saver]).fit(digit_batches(40, 10))
    assert load_checkpoint(saver.last_path)["mid_epoch"]["batches_done"] == 2
    resumed = quick_trainer(epochs=2, callbacks=[ModelCheckpoint(tmp_path, every_n_steps=3)])
    history = resumed.fit(digit_batches(40, 10), resume=saver.last_path)
    assert len(history) == 2 and resumed.state.global_step == 8


def test_model_checkpoint_topk_all(tmp_path: Path) -> None:
    """Lightning save_top_k=-1 (ignite n_saved=None) keeps every epoch's file, ranked."""
    saver = ModelCheckpoint(
        tmp_path, monitor="epoch", mode="max", save_top_k=-1, filename="{epoch}.pt"
    )
    quick_trainer(epochs=3, callbacks=[saver]).fit(digit_batches(10, 10))
    assert sorted(path.name for path in tmp_path.glob("?.pt")) == ["1.pt", "2.pt", "3.pt"]
    assert saver.top == [(3, "3.pt"), (2, "2.pt"), (1, "1.pt")]


@pytest.mark.parametrize(
    ("latest_on_tie", "top_k_writes", "best_writes"), [(True, 4, 4), (False, 3, 2)]
)
def test_greater_or_equal(
    tmp_path: Path, latest_on_tie: bool, top_k_writes: int, best_writes: int
) -> None:
    """As ignite greater_or_equal: scores 1, 2, 2, 2, each tie saved as the latest file."""
    saver = ModelCheckpoint(
        tmp_path,
        monitor="score",
        mode="max",
        save_best=True,
        save_last=False,
        save_top_k=2,
        filename="{epoch}.pt",
        latest_on_tie=latest_on_tie,
    )
    trainer = quick_trainer(epochs=4, callbacks=[Scripted([1, 2, 2, 2]), saver])
    saves = spy_saves(trainer)
    trainer.fit(digit_batches(10, 10))
    names = [name for name, _, _ in saves]
    assert len(names) - names.count("best.pt") == top_k_writes
    assert names.count("best.pt") == best_writes
    kept = ["3.pt", "4.pt"] if latest_on_tie else ["2.pt", "3.pt"]
    assert sorted(path.name for path in tmp_path.glob("?.pt")) == kept
    assert load_checkpoint(saver.best_path)["epoch"] == (4 if latest_on_tie else 2)


@pytest.mark.parametrize(
    ("monitor", "mode", "baseline", "saved"),
    [
        ("val_accuracy", "max", -0.01, True),  # Keras case 11
        ("val_loss", "auto", None, True),  # case 12
        ("val_loss", "min", 0.0, False),  # case 13: no loss beats 0
        ("val_loss", "auto", 0.0, False),  # case 14
    ],
)
def test_model_checkpoint_initial_value_threshold(
    tmp_path: Path, monitor: str, mode: Any, baseline: float | None, saved: bool
) -> None:
    """Keras initial_value_threshold: best.pt is written only for an epoch beating baseline."""
    saver = ModelCheckpoint(
        tmp_path, monitor=monitor, mode=mode, save_best=True, save_last=False, baseline=baseline
    )
    quick_trainer(callbacks=[saver]).fit(digit_batches(10, 10), digit_batches(10, 10))
    assert saver.best_path.exists() == saved


def test_reset_best_starts_again_from_the_baseline(tmp_path: Path) -> None:
    """A reset_best ModelCheckpoint forgets the last fit's best but keeps its baseline."""
    saver = ModelCheckpoint(
        tmp_path, monitor="score", mode="min", save_best=True, reset_best=True, baseline=2.0
    )
    quick_trainer(epochs=1, callbacks=[Scripted([1.0]), saver]).fit(digit_batches(10, 10))
    saver.best_path.unlink()
    quick_trainer(epochs=1, callbacks=[Scripted([3.0]), saver]).fit(digit_batches(10, 10))
    assert not saver.best_path.exists() and saver.watch.best == 2.0


@pytest.mark.parametrize(
    ("template", "values", "insert", "name"),
    [
        ("{epoch:03d}-{acc}.pt", {"epoch": 3, "acc": 0.03}, True, "epoch=003-acc=0.03.pt"),
        ("{epoch:03d}-{epoch_test:03d}", {"epoch": 3, "epoch_test": 3}, True,
         "epoch=003-epoch_test=003"),
        ("{epoch}_{val/loss:.5f}", {"epoch": 4, "val/loss": 0.03}, True,
         "epoch=4_val/loss=0.03000"),
        ("epoch={epoch:03d}-val_acc={val/acc}", {"epoch": 3, "val/acc": 0.03}, False,
         "epoch=003-val_acc=0.03"),
        ("{{braces}}-{step}", {"step": 7}, True, "{braces}-step=7"),
    ],
)  # fmt: skip
def test_model_checkpoint_format_checkpoint_name(
    tmp_path: Path, template: str, values: dict[str, float], insert: bool, name: str
) -> None:
    """Lightning auto_insert_metric_name writes each template field as name=value."""
    saver = ModelCheckpoint(tmp_path, filename=template, auto_insert_metric_name=insert)
    assert saver.format_filename(values) == name


def test_auto_insert_metric_name_names_the_top_k_files(tmp_path: Path) -> None:
    """The kept files of a fit are named epoch=...-score=...; step is in the template's fields."""
    saver = ModelCheckpoint(
        tmp_path,
        monitor="score",
        mode="min",
        save_top_k=1,
        filename="{epoch}-{step}-{score:.1f}.pt",
        auto_insert_metric_name=True,
    )
    quick_trainer(epochs=2, callbacks=[Scripted([2, 1]), saver]).fit(digit_batches(20, 10))
    assert [path.name for path in tmp_path.glob("epoch=*")] == ["epoch=2-step=4-score=1.0.pt"]


def test_save_last_overwrites_last_pt_of_an_earlier_fit(tmp_path: Path) -> None:
    """A second fit into the folder overwrites last.pt (Lightning would write last-v1.ckpt)."""
    quick_trainer(epochs=2, callbacks=[ModelCheckpoint(tmp_path)]).fit(digit_batches(10, 10))
    quick_trainer(epochs=1, callbacks=[ModelCheckpoint(tmp_path)]).fit(digit_batches(10, 10))
    assert [path.name for path in tmp_path.iterdir()] == ["last.pt"]
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1


def test_best_and_top_k_consider_validated_epochs_only(tmp_path: Path) -> None:
    """With validation_freq=2 a val_loss monitor ranks epochs 2 and 4; last.pt follows epoch 5."""
    saver = ModelCheckpoint(tmp_path, save_best=True, save_top_k=-1, filename="{epoch}.pt")
    trainer = quick_trainer(epochs=5, validation_freq=2, callbacks=[saver])
    trainer.fit(digit_batches(10, 10), digit_batches(10, 10))
    assert sorted(name for _, name in saver.top) == ["2.pt", "4.pt"]
    assert load_checkpoint(saver.best_path)["epoch"] in (2, 4)
    assert load_checkpoint(saver.last_path)["epoch"] == 5


def test_a_step_with_a_non_finite_loss_is_not_saved(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """every_n_steps skips a step whose loss is NaN, keeping the last good last.pt."""
    good = digit_batches(20, 10)
    broken = [good[0], (torch.full_like(good[1][0], math.nan), good[1][1])]
    saver = ModelCheckpoint(tmp_path, every_n_steps=1, every_n_epochs=5)
    with caplog.at_level("WARNING", "lenetish"):
        quick_trainer(epochs=2, callbacks=[saver]).fit(broken)
    assert "step 2 has a non-finite loss; not saving" in caplog.text
    assert load_checkpoint(saver.last_path)["mid_epoch"]["batches_done"] == 1


def _crafted_top_k_checkpoint(run: Path, name: str, *, legacy_key: bool = False) -> Path:
    """One epoch's checkpoint whose ModelCheckpoint state lists ``name`` as its worst top-k."""
    saver = ModelCheckpoint(run, monitor="score", mode="min", save_top_k=1, filename="{epoch}.pt")
    quick_trainer(epochs=1, callbacks=[Scripted([5]), saver]).fit(digit_batches(10, 10))
    state = load_checkpoint(saver.last_path)
    callbacks = state["callbacks"]
    saved = callbacks.pop(saver.state_key)
    saved["top"] = [[1e9, name]]  # the worst value: the next epoch displaces it
    callbacks["ModelCheckpoint" if legacy_key else saver.state_key] = saved
    save_checkpoint(run / "crafted.pt", state)
    return run / "crafted.pt"


@pytest.mark.parametrize("legacy_key", [False, True])
@pytest.mark.parametrize("kind", ["parent", "absolute"])
def test_a_resumed_top_k_list_naming_a_file_outside_the_folder_is_refused(
    tmp_path: Path, legacy_key: bool, kind: str
) -> None:
    """A checkpoint whose top-k list names a file outside the folder is refused; it survives."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    run = tmp_path / "run"
    name = "../victim.txt" if kind == "parent" else str(victim)
    crafted = _crafted_top_k_checkpoint(run, name, legacy_key=legacy_key)
    saver = ModelCheckpoint(run, monitor="score", mode="min", save_top_k=1, filename="{epoch}.pt")
    with pytest.raises(
        CheckpointError, match=r"top-k list names .*victim\.txt.*nothing was deleted"
    ):
        quick_trainer(epochs=3, callbacks=[Scripted([5, 4, 3]), saver]).fit(
            digit_batches(10, 10), resume=crafted
        )
    assert victim.read_text() == "precious"


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../victim.txt", "holds a path separator"),
        ("/tmp/victim.txt", "holds a path separator"),
        ("..\\victim.txt", "holds a path separator"),
        ("victim\0.pt", "holds a NUL character"),
        ("..", "names no file"),
        ("", "names no file"),
        (7, "is not a string"),
    ],
)
def test_load_state_dict_refuses_a_top_k_entry_that_is_no_file_of_the_folder(
    tmp_path: Path, name: object, problem: str
) -> None:
    """load_state_dict refuses a top-k name outside the folder and keeps its earlier list."""
    saver = ModelCheckpoint(tmp_path, monitor="score", mode="min", save_top_k=2)
    saver.top = [(1.0, "kept.pt")]
    state = {"best": 1.0, "best_epoch": 1, "top": [[2.0, "fine.pt"], [3.0, name]]}
    with pytest.raises(CheckpointError, match=rf"top-k list names .*, which {problem}"):
        saver.load_state_dict(state)
    assert saver.top == [(1.0, "kept.pt")]


def test_a_displaced_top_k_name_outside_the_folder_is_never_deleted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Even a top list set by hand to name ../victim.txt never deletes that file."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    saver = ModelCheckpoint(
        tmp_path / "run", monitor="score", mode="min", save_top_k=1, filename="{epoch}.pt"
    )

    class Plant(Callback):
        def on_epoch_start(self, trainer: Trainer, state: TrainState) -> None:
            saver.top = [(1e9, "../victim.txt")]

    with caplog.at_level("WARNING", "lenetish"):
        quick_trainer(epochs=1, callbacks=[Plant(), Scripted([5]), saver]).fit(
            digit_batches(10, 10)
        )
    assert victim.read_text() == "precious"
    assert "not deleting the displaced top-k file '../victim.txt'" in caplog.text


def test_a_top_k_template_that_names_no_file_is_refused(tmp_path: Path) -> None:
    """A template whose epoch's name is '..' is refused before anything is written."""
    saver = ModelCheckpoint(tmp_path, monitor="score", mode="min", save_top_k=1, filename="..")
    with pytest.raises(InvalidArgumentError, match=r"gives '\.\.' for epoch 1, which names no"):
        quick_trainer(epochs=1, callbacks=[Scripted([5]), saver]).fit(digit_batches(10, 10))


def test_a_metric_name_with_a_slash_written_into_a_top_k_name_is_refused(tmp_path: Path) -> None:
    """auto_insert_metric_name with a metric 'val/score' would name a sub-folder: refused."""

    class SlashScore(Callback):
        order = -10

        def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
            state.metrics["val/score"] = 1.0

    saver = ModelCheckpoint(
        tmp_path,
        monitor="loss",
        save_top_k=1,
        filename="{epoch}-{val/score}.pt",
        auto_insert_metric_name=True,
    )
    with pytest.raises(InvalidArgumentError, match=r"'epoch=1-val/score=1.0.pt' for epoch 1"):
        quick_trainer(epochs=1, callbacks=[SlashScore(), saver]).fit(digit_batches(10, 10))


def test_lightning_model_checkpoint_keeps_the_checkpoint_it_resumed_from(tmp_path: Path) -> None:
    """A top-k file a fit resumed from stays on disk when a better epoch displaces it."""

    def saver() -> ModelCheckpoint:
        return ModelCheckpoint(
            tmp_path, monitor="score", mode="min", save_top_k=1, filename="{epoch}.pt"
        )

    quick_trainer(epochs=2, callbacks=[Scripted([2, 1]), saver()]).fit(digit_batches(10, 10))
    resumed_from = tmp_path / "2.pt"
    assert resumed_from.exists() and not (tmp_path / "1.pt").exists()
    resumed = saver()
    quick_trainer(epochs=3, callbacks=[Scripted([2, 1, 0.5]), resumed]).fit(
        digit_batches(10, 10), resume=resumed_from
    )
    assert resumed.top == [(0.5, "3.pt")] and resumed_from.exists()
