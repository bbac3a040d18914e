"""Tests of checkpoint_checks: damaged checkpoints are refused before any restore."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from lenetish import CheckpointError, ModelCheckpoint
from lenetish.saving.checkpoint import load_checkpoint, save_checkpoint
from tests.training_helpers import digit_batches, quick_trainer

REPO = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint after one epoch of the default (fused Adam) trainer."""
    folder = tmp_path_factory.mktemp("good")
    quick_trainer(epochs=1, callbacks=[ModelCheckpoint(folder)]).fit(digit_batches(20, 10))
    return folder / "last.pt"


def _damaged(good: Path, folder: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of ``good`` with ``change`` applied to its contents."""
    state = load_checkpoint(good)
    change(state)
    save_checkpoint(folder / "damaged.pt", state)
    return folder / "damaged.pt"


def _first_param_state(state: dict[str, Any]) -> dict[str, Any]:
    return state["optimizer"]["state"][0]  # type: ignore[no-any-return]


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change that sets ``state[a][b]...`` (keys separated by dots) to ``value``."""

    def change(state: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            state = state[int(key) if key.isdigit() else key]
        state[int(last) if last.isdigit() else last] = value

    return change


def _delete(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda state: state.pop(key)


def _python_state(
    state: dict[str, Any], *, position: int | None = None, version: int | None = None
) -> tuple[Any, ...]:
    """The checkpoint's Python RNG state with its position or version replaced."""
    saved_version, words, gauss = state["rng"]["python"]
    words = list(words)
    if position is not None:
        words[-1] = position
    return (saved_version if version is None else version, tuple(words), gauss)


def _mid_epoch(state: dict[str, Any]) -> dict[str, Any]:
    """A mid-epoch record whose RNG state has a Python position past its 624 words."""
    rng = dict(state["rng"], python=_python_state(state, position=700))
    return {"batches_done": 1, "rng": rng, "score": {}, "metrics": {}, "logged": {}}


CASES = [
    ("a string epoch", _set("epoch", "3"), "epoch must be an integer, not str"),
    ("a negative epoch", _set("epoch", -5), r"epoch is -5, outside 0\.\.2\*\*53"),
    ("an epoch of 10^30", _set("epoch", 10**30), "epoch is 1000000000000000000000000000000"),
    ("a float global step", _set("global_step", 1.5), "global_step must be an integer"),
    ("no rng", _delete("rng"), "rng is missing"),
    ("a model that is a list", _set("model", [1, 2, 3]), "model must be a dictionary, not list"),
    (
        "no optimizer groups",
        _set("optimizer.param_groups", []),
        r"optimizer.param_groups has 0 groups where this optimizer has 1",
    ),
    (
        "an Adam moment of the wrong shape",
        lambda state: _first_param_state(state).__setitem__("exp_avg", torch.zeros(3)),
        r"optimizer.state\[0\]\['exp_avg'\] has shape \(3,\), the parameter \(24, 1, 3, 3\)",
    ),
    (
        "an infinite learning rate",
        _set("optimizer.param_groups.0.lr", float("inf")),
        r"optimizer.param_groups\[0\].lr is inf",
    ),
    (
        "a Python RNG state of the wrong length",
        _set("rng.python", (3, (1, 2, 3), None)),
        "rng.python is not a state of Python's random module",
    ),
    (
        "a torch RNG state of the wrong size",
        _set("rng.torch", torch.zeros(10, dtype=torch.uint8)),
        "rng.torch must be 5056 bytes",
    ),
    (
        "an expanded (stride-0) RNG state",
        _set("rng.torch", torch.zeros(1, dtype=torch.uint8).expand(5056)),
        "rng.torch is a view larger than its storage",
    ),
    (
        "an Adam step of -1",
        lambda state: _first_param_state(state).__setitem__("step", torch.tensor(-1.0)),
        r"optimizer.state\[0\]\['step'\] is -1, not a whole number of steps",
    ),
    (
        "an Adam step of NaN",
        lambda state: _first_param_state(state).__setitem__("step", torch.tensor(float("nan"))),
        r"optimizer.state\[0\]\['step'\] holds NaN or infinite values",
    ),
    (
        "an Adam step that is not a whole number",
        lambda state: _first_param_state(state).__setitem__("step", torch.tensor(1.5)),
        r"optimizer.state\[0\]\['step'\] is 1.5, not a whole number",
    ),
    (
        "an Adam step that is a negative Python int",
        lambda state: _first_param_state(state).__setitem__("step", -1),
        r"\['step'\] is -1",
    ),
    (
        "a negative Adam second moment",
        lambda state: _first_param_state(state)["exp_avg_sq"].fill_(-1.0),
        r"optimizer.state\[0\]\['exp_avg_sq'\] holds negative values",
    ),
    (
        "a NaN Adam moment",
        lambda state: _first_param_state(state)["exp_avg"].fill_(float("nan")),
        r"optimizer.state\[0\]\['exp_avg'\] holds NaN or infinite values",
    ),
    (
        "a negative learning rate",
        _set("optimizer.param_groups.0.lr", -0.1),
        r"optimizer.param_groups\[0\].lr is -0.1; it must not be negative",
    ),
    (
        "a NaN learning rate tensor",
        _set("optimizer.param_groups.0.lr", torch.tensor(float("nan"))),
        r"optimizer.param_groups\[0\].lr is nan; a learning rate must be a finite number >= 0",
    ),
    (
        "a negative initial_lr of a schedule",
        _set("optimizer.param_groups.0.initial_lr", -0.001),
        r"optimizer.param_groups\[0\].initial_lr is -0.001; a learning rate must be",
    ),
    (
        "a zero one-cycle peak",
        _set("optimizer.param_groups.0.max_lr", 0.0),
        r"optimizer.param_groups\[0\].max_lr is 0; a learning rate must be a finite number > 0",
    ),
    (
        "an Adam beta of 1.5",
        _set("optimizer.param_groups.0.betas", (1.5, 0.999)),
        r"optimizer.param_groups\[0\].betas holds 1.5; each beta must be in \[0, 1\)",
    ),
    (
        "NaN weights",
        lambda state: state["model"]["fc1.weight"].fill_(float("nan")),
        r"model\['fc1.weight'\] holds NaN or infinite values",
    ),
    (
        "a Python RNG position past its 624 words",
        lambda state: _set("rng.python", _python_state(state, position=700))(state),
        r"rng.python is not a state of Python's random module \(invalid state\)",
    ),
    (
        "an all-zero Python RNG state",
        _set("rng.python", (3, (0,) * 625, None)),
        "rng.python is all zeros",
    ),
    (
        "a Python RNG state of version 99",
        lambda state: _set("rng.python", _python_state(state, version=99))(state),
        r"rng.python is not a state of Python's random module \(state with version 99",
    ),
    (
        "a NumPy RNG position past its 624 words",
        _set("rng.numpy.position", 999),
        r"rng.numpy.position is 999, outside 0\.\.624",
    ),
    (
        "NumPy RNG words outside 32 bits",
        lambda state: state["rng"]["numpy"]["keys"].fill_(-1),
        "rng.numpy.keys are not the words of a Mersenne Twister state",
    ),
    (
        "an all-zero torch RNG state",
        lambda state: state["rng"]["torch"].zero_(),
        r"rng.torch is not a generator state \(Invalid mt19937 state\)",
    ),
    (
        "an invalid Python RNG state inside an epoch",
        lambda state: state.__setitem__("mid_epoch", _mid_epoch(state)),
        r"mid_epoch.rng.python is not a state of Python's random module",
    ),
    (
        "History rows that are not rows",
        lambda state: state["callbacks"].__setitem__("lenetish.History", {"rows": ["x"]}),
        "state of callback lenetish.History does not load",
    ),
]


@pytest.mark.parametrize(
    ("change", "message"), [case[1:] for case in CASES], ids=[c[0] for c in CASES]
)
def test_a_damaged_checkpoint_is_refused_naming_the_field(
    good_checkpoint: Path, tmp_path: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    """Each kind of damage raises CheckpointError naming the field, before any state moves."""
    damaged = _damaged(good_checkpoint, tmp_path, change)
    trainer = quick_trainer(epochs=2)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    with pytest.raises(CheckpointError, match=message):
        trainer.fit(digit_batches(20, 10), resume=damaged)
    if "History" not in message:  # callbacks load last, after the weights
        assert all(
            torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True)
        )


def test_the_trainers_own_checkpoint_passes_the_checks(good_checkpoint: Path) -> None:
    """What the trainer writes resumes: the checks refuse damage, not real checkpoints."""
    history = quick_trainer(epochs=2).fit(digit_batches(20, 10), resume=good_checkpoint)
    assert [row["epoch"] for row in history] == [1, 2]


_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    from lenetish import CheckpointError
    from tests.training_helpers import digit_batches, quick_trainer
    try:
        quick_trainer(epochs=2).fit(digit_batches(20, 10), resume=sys.argv[1])
        print("resumed")
    except CheckpointError as error:
        print("refused:", error)
    print("peak_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """
)


def _resume_in_subprocess(checkpoint: Path) -> tuple[str, int]:
    """Resume from ``checkpoint`` in a fresh process: its output and peak memory (kB)."""
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(checkpoint)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr  # no segmentation fault, no abort
    peak = int(result.stdout.split("peak_kb")[-1])
    return result.stdout, peak


@pytest.mark.slow
def test_a_wrong_fused_adam_state_is_refused_without_a_crash(
    good_checkpoint: Path, tmp_path: Path
) -> None:
    """An Adam moment of the wrong shape no longer reaches the fused kernel (it segfaulted)."""
    damaged = _damaged(
        good_checkpoint,
        tmp_path,
        lambda state: _first_param_state(state).__setitem__("exp_avg_sq", torch.zeros(2)),
    )
    output, _ = _resume_in_subprocess(damaged)
    assert "refused:" in output and "exp_avg_sq" in output


@pytest.mark.slow
def test_an_expanded_rng_state_costs_no_memory(good_checkpoint: Path, tmp_path: Path) -> None:
    """A 2**31-byte stride-0 RNG view in a small file is refused within 300 MB of a good one."""
    damaged = _damaged(
        good_checkpoint,
        tmp_path,
        _set("rng.torch", torch.zeros(1, dtype=torch.uint8).expand(2**31)),
    )
    assert damaged.stat().st_size < 10 * 2**20
    _, good_peak = _resume_in_subprocess(good_checkpoint)
    output, damaged_peak = _resume_in_subprocess(damaged)
    assert "refused:" in output and "rng.torch" in output
    assert damaged_peak - good_peak < 300 * 1024
