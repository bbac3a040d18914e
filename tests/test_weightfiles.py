"""Tests of lenetish.weightfiles: weights files of every kind, told apart by content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from lenetish import (
    DATASETS,
    CheckpointError,
    MNISTConvNet,
    MNISTWideNet,
    export_model,
    load_weights,
    save_weights,
)
from lenetish.identity import recorded_dataset
from lenetish.weightfiles import load_model, read_weights, saved_dataset
from tests.blog_net import Net
from tests.training_helpers import digit_batches, quick_trainer


def test_blog_state_dict_loads_as_mnistconvnet(tmp_path: Path) -> None:
    """The blog's torch.save(model.state_dict(), 'mnist_model.pkl') rebuilds an MNISTConvNet."""
    torch.manual_seed(3)
    blog = Net()
    torch.save(blog.state_dict(), tmp_path / "mnist_model.pkl")
    model = load_model(tmp_path / "mnist_model.pkl")
    images = torch.randn(4, 1, 28, 28)
    assert isinstance(model, MNISTConvNet)
    torch.testing.assert_close(model(images), blog(images))


def test_load_weights_takes_a_plain_state_dict(tmp_path: Path) -> None:
    """load_weights reads a plain state dict under any name into the model given."""
    torch.save(Net().state_dict(), tmp_path / "weights.bin")
    assert load_weights(MNISTConvNet(), tmp_path / "weights.bin").fc2.bias.shape == (10,)


def test_wide_state_dict_is_matched_to_its_network(tmp_path: Path) -> None:
    """A plain state dict of an MNISTWideNet is rebuilt as one, by names and shapes."""
    torch.save(MNISTWideNet().state_dict(), tmp_path / "wide.pth")
    assert isinstance(load_model(tmp_path / "wide.pth"), MNISTWideNet)


def test_ddp_prefixes_are_removed(tmp_path: Path) -> None:
    """A state dict saved from a DistributedDataParallel wrapper (module.*) loads too."""
    weights = {f"module.{k}": v for k, v in Net().state_dict().items()}
    torch.save(weights, tmp_path / "ddp.pt")
    assert isinstance(load_model(tmp_path / "ddp.pt"), MNISTConvNet)


def test_state_dict_of_no_known_network_names_the_keys(tmp_path: Path) -> None:
    """A state dict that fits no network names the mismatched keys of the closest one."""
    weights = Net().state_dict()
    weights["head.weight"] = weights.pop("fc2.weight")
    torch.save(weights, tmp_path / "other.pt")
    with pytest.raises(
        CheckpointError,
        match=r"fits none of lenetish's networks .*against "
        r"MNISTConvNet: missing: fc2.weight; unexpected: head.weight",
    ):
        load_model(tmp_path / "other.pt")


def test_other_content_is_named(tmp_path: Path) -> None:
    """A safe file holding no weights says what it holds."""
    torch.save({"epochs": 3, "note": "hello"}, tmp_path / "notes.pt")
    with pytest.raises(
        CheckpointError,
        match=r"holds a dict with the keys epochs, note, not "
        r"model weights",
    ):
        read_weights(tmp_path / "notes.pt")


def test_missing_weights_file_is_named(tmp_path: Path) -> None:
    """A weights file that does not exist is named."""
    with pytest.raises(CheckpointError, match=r"weights file .*gone.pkl does not exist"):
        load_model(tmp_path / "gone.pkl")


def test_safetensors_records_the_dataset(tmp_path: Path) -> None:
    """save_weights(dataset=...) records name, normalisation and classes; load_model reads them."""
    save_weights(MNISTConvNet(), tmp_path / "m.safetensors", dataset=DATASETS["fashion-mnist"])
    with safe_open(str(tmp_path / "m.safetensors"), framework="pt") as handle:
        record = json.loads(handle.metadata()["dataset"])
    assert record["name"] == "fashion-mnist" and record["classes"][9] == "Ankle boot"
    assert recorded_dataset(load_model(tmp_path / "m.safetensors")) == DATASETS["fashion-mnist"]


def test_damaged_dataset_record_is_refused(tmp_path: Path) -> None:
    """A safetensors file whose dataset record is not JSON is refused as damaged."""
    from safetensors.torch import save_file

    save_file(MNISTConvNet().state_dict(), str(tmp_path / "m.safetensors"), {"dataset": "{"})
    with pytest.raises(CheckpointError, match=r"damaged dataset record"):
        saved_dataset(tmp_path / "m.safetensors")


def test_checkpoint_records_the_trainers_dataset(tmp_path: Path) -> None:
    """A training checkpoint records trainer.data_info; load_model gives it to the network."""
    trainer = quick_trainer(epochs=1)
    trainer.data_info = DATASETS["kmnist"]
    trainer.fit(digit_batches(10, 10))
    trainer.save_checkpoint(tmp_path / "last.pt")
    assert recorded_dataset(load_model(tmp_path / "last.pt")) == DATASETS["kmnist"]


def test_exported_state_dict_loads_into_the_blog_class(tmp_path: Path) -> None:
    """A state_dict export loads with the blog's model.load_state_dict(torch.load(path))."""
    torch.manual_seed(5)
    model = MNISTConvNet()
    path = export_model(model, tmp_path / "mnist_model.pkl", format="state_dict")
    blog = Net()
    blog.load_state_dict(torch.load(path))
    images = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(blog(images), model(images))
