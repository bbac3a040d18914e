"""Tests of lenetish.shipped: the weights shipped in the package."""

from __future__ import annotations

import hashlib
import sys
from importlib import resources
from pathlib import Path

import pytest

from lenetish import (
    CheckpointError,
    InvalidArgumentError,
    available_pretrained,
    evaluate,
    make_loaders,
    pretrained,
    pretrained_info,
)

SHIPPED = available_pretrained()


def test_the_default_and_best_weights_are_shipped() -> None:
    """The package holds the default and best recipes' weights (`lenetish predict` uses them)."""
    assert {"default", "best"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_have_their_record(name: str) -> None:
    """Each shipped file has its recipe, seed, accuracy and matching SHA-256 recorded."""
    info = pretrained_info(name)
    assert info["recipe"] == name and isinstance(info["seed"], int)
    assert 0.99 < info["test_accuracy"] <= 1.0
    payload = (resources.files("lenetish") / "weights" / f"{name}.safetensors").read_bytes()
    assert hashlib.sha256(payload).hexdigest() == info["sha256"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_reach_their_recorded_accuracy(name: str, real_mnist: Path) -> None:
    """Loaded, each shipped network scores its recorded test accuracy on real MNIST."""
    model = pretrained(name)
    test = make_loaders(real_mnist, download=False, eval_batch_size=2000).test
    result = evaluate(model, test)
    assert result.accuracy == pytest.approx(pretrained_info(name)["test_accuracy"], abs=2e-4)


def test_a_damaged_file_is_caught_by_its_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """Weights whose SHA-256 differs from the record raise CheckpointError."""
    real = pretrained_info("default")
    module = sys.modules["lenetish.shipped"]
    monkeypatch.setattr(
        module, "pretrained_info", lambda name="default": {**real, "sha256": "0" * 64}
    )
    with pytest.raises(CheckpointError, match=r"have SHA-256 .* not the recorded 0000"):
        pretrained("default")


def test_unknown_weights_are_refused() -> None:
    """Asking for weights that are not shipped lists the shipped ones."""
    with pytest.raises(InvalidArgumentError, match="no pretrained weights called 'huge'"):
        pretrained("huge")


def test_shipped_weights_record_mnist() -> None:
    """The shipped networks carry MNIST's dataset record (predict needs no dataset=)."""
    from lenetish.data.identity import recorded_dataset

    recorded = recorded_dataset(pretrained("default"))
    assert recorded is not None and recorded.name == "mnist"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{", "JSONDecodeError"),
        ("[1, 2]", "a list, not a dictionary"),
        ('{"seed": 0}', "no recipe"),
    ],
    ids=["not-json", "a-list", "no-recipe"],
)
def test_a_damaged_record_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, problem: str
) -> None:
    """A shipped record that is not JSON, or lacks its recipe, is a CheckpointError."""
    (tmp_path / "default.json").write_text(text)
    monkeypatch.setattr(sys.modules["lenetish.shipped"], "_folder", lambda: tmp_path)
    with pytest.raises(CheckpointError, match=rf"shipped weights 'default' .* damaged \({problem}"):
        pretrained("default")


def test_a_record_naming_an_unknown_recipe_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A record whose recipe lenetish does not have is a CheckpointError, not a KeyError."""
    real = pretrained_info("default")
    module = sys.modules["lenetish.shipped"]
    monkeypatch.setattr(module, "pretrained_info", lambda name="default": {**real, "recipe": "x"})
    with pytest.raises(CheckpointError, match=r"damaged \(an unknown recipe 'x'\)"):
        pretrained("default")
