"""Tests of lenetish.training.callback_states: what a resume says about callbacks' states."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import pytest

from lenetish import Callback, ModelCheckpoint
from lenetish.cli import main
from tests.training_helpers import digit_batches, quick_trainer


def test_resuming_into_another_folder_is_one_log_line_and_no_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A ModelCheckpoint of a new folder starts fresh with one WARNING line, no UserWarning."""
    first, second = tmp_path / "a", tmp_path / "b"
    quick_trainer(callbacks=[ModelCheckpoint(first)]).fit(digit_batches(20, 10))
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, "lenetish"):
        warnings.simplefilter("error", UserWarning)  # any warning of the resume fails the test
        trainer = quick_trainer(epochs=2, callbacks=[ModelCheckpoint(second)])
        trainer.fit(digit_batches(20, 10), resume=first / "last.pt")
    said = [r.message for r in caplog.records if "ModelCheckpoint" in r.message]
    assert said == [
        f"lenetish.ModelCheckpoint starts fresh: {first / 'last.pt'} holds the state of one "
        f"with folder={first}, and this fit's has folder={second} (a state carries over only "
        "to a callback with the same settings)"
    ]
    assert (second / "last.pt").is_file()


class Counter(Callback):
    """A callback with a state, keyed like the built-ins: ``tests.Counter[name]``."""

    def __init__(self, name: str) -> None:
        self.state_key = f"tests.Counter[{name}]"

    def state_dict(self) -> dict[str, Any]:
        return {"count": 1}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore."""


def test_two_candidates_of_one_kind_are_each_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """When two saved states of one kind could match, neither is guessed: both are reported."""
    saver = ModelCheckpoint(tmp_path)
    quick_trainer(callbacks=[Counter("a"), Counter("b"), saver]).fit(digit_batches(20, 10))
    resumed = quick_trainer(epochs=2, callbacks=[Counter("c"), ModelCheckpoint(tmp_path)])
    with (
        warnings.catch_warnings(record=True) as caught,
        caplog.at_level(logging.WARNING, "lenetish"),
    ):
        warnings.simplefilter("always")
        resumed.fit(digit_batches(20, 10), resume=tmp_path / "last.pt")
    dropped = sorted(str(w.message).split("'")[1] for w in caught if "dropped" in str(w.message))
    assert dropped == ["tests.Counter[a]", "tests.Counter[b]"]
    assert "no state for callback tests.Counter[c]; it starts fresh" in caplog.text


def test_train_resume_into_another_out_folder_prints_no_raw_warning(
    fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`train --resume a/last.pt --out b` trains on, with no UserWarning raised."""
    common = ["train", "--data", str(fake_mnist), "--batch-size", "20", "--device", "cpu"]
    first, second = tmp_path / "a", tmp_path / "b"
    assert main([*common, "--recipe", "seed-adam", "--epochs", "1", "--out", str(first)]) == 0
    resume = ["--resume", str(first / "last.pt"), "--epochs", "2", "--out", str(second)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert main([*common, *resume]) == 0
    assert "UserWarning" not in capsys.readouterr().err
