"""Tests of lenetish.cli.run_settings: a resume's recorded settings are checked, not trusted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lenetish import CheckpointError, load_checkpoint
from lenetish.cli import main
from lenetish.cli.run_settings import recorded_settings
from lenetish.saving.checkpoint import save_checkpoint

KEY = "lenetish.cli.train._RunSettings"
GOOD = {"recipe": "seed-adam", "batch_size": 20, "epochs": 1, "lr": 0.001}


def _checkpoint(**settings: object) -> dict[str, Any]:
    return {"callbacks": {KEY: {**GOOD, **settings}}}


def test_settings_a_run_records_are_returned() -> None:
    """A recorded recipe, batch size, epochs and lr (None too) come back as they were."""
    assert recorded_settings(_checkpoint(), "c.pt", "_RunSettings") == GOOD
    assert recorded_settings(_checkpoint(lr=None), "c.pt", "_RunSettings") == {**GOOD, "lr": None}
    assert recorded_settings({"callbacks": {}}, "c.pt", "_RunSettings") is None


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("recipe", 5, r"setting recipe is 5, not a recipe name"),
        ("recipe", {"a": 1}, r"setting recipe is \{'a': 1\}, not a recipe name"),
        ("recipe", "", r"setting recipe is '', not a recipe name"),
        ("batch_size", "20", r"setting batch_size is '20', not an integer from 1 to "),
        ("batch_size", -5, r"setting batch_size is -5, not an integer from 1"),
        ("batch_size", True, r"setting batch_size is True, not an integer"),
        ("epochs", 2.5, r"setting epochs is 2.5, not an integer"),
        ("epochs", 10**30, r"setting epochs is 10{30}, not an integer from 1 to 9,007,"),
        ("lr", "fast", r"setting lr is 'fast', not a positive finite number"),
        ("lr", [1], r"setting lr is \[1\], not a positive finite number"),
        ("lr", float("nan"), r"setting lr is nan, not a positive finite number"),
        ("lr", -0.1, r"setting lr is -0.1, not a positive finite number"),
    ],
)
def test_a_malformed_setting_is_named(setting: str, value: object, expected: str) -> None:
    """A recorded value a run never writes is a CheckpointError naming the setting and value."""
    with pytest.raises(CheckpointError, match=rf"c.pt is damaged: its recorded run {expected}"):
        recorded_settings(_checkpoint(**{setting: value}), "c.pt", "_RunSettings")


@pytest.mark.parametrize(
    ("checkpoint", "expected"),
    [
        ({"callbacks": [1, 2]}, r"its callbacks are a list, not a dictionary; resume from "),
        ({"callbacks": {KEY: [1]}}, r"its run settings are a list, not a dictionary; resume"),
    ],
)
def test_settings_that_are_not_a_dictionary_are_named(
    checkpoint: dict[str, Any], expected: str
) -> None:
    """Callback states or run settings that are no dictionary are a CheckpointError."""
    with pytest.raises(CheckpointError, match=rf"c.pt is damaged: {expected}"):
        recorded_settings(checkpoint, "c.pt", "_RunSettings")


def _set_callbacks_to_a_list(state: dict[str, Any]) -> None:
    state["callbacks"] = [1, 2]


def _set_recipe_to_a_dict(state: dict[str, Any]) -> None:
    state["callbacks"][KEY]["recipe"] = {"a": 1}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_set_callbacks_to_a_list, "its callbacks are a list, not a dictionary"),
        (_set_recipe_to_a_dict, "its recorded run setting recipe is {'a': 1}, not a recipe name"),
    ],
)
def test_train_resume_with_malformed_settings_is_one_error_line(
    fake_mnist: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: Callable[[dict[str, Any]], None],
    expected: str,
) -> None:
    """`train --resume` of an altered checkpoint exits 1 with a named error, not AttributeError."""
    common = ["train", "--data", str(fake_mnist), "--batch-size", "20", "--device", "cpu"]
    run = tmp_path / "run"
    assert main([*common, "--recipe", "seed-adam", "--epochs", "1", "--out", str(run)]) == 0
    state = load_checkpoint(run / "last.pt")
    change(state)
    save_checkpoint(tmp_path / "altered.pt", state)
    capsys.readouterr()
    resume = ["--resume", str(tmp_path / "altered.pt"), "--out", str(tmp_path / "again")]
    assert main([*common, *resume]) == 1
    error = capsys.readouterr().err
    assert f"lenetish: error: {tmp_path / 'altered.pt'} is damaged: {expected}" in error
    assert "unexpected" not in error and "start a new run" in error
