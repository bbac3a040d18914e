"""Tests of lenetish.saving.weightfiles: weights files of every kind, told apart by content."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open

from lenetish import (
    DATASETS,
    CheckpointError,
    MNISTConvNet,
    MNISTWideNet,
    ModelCheckpoint,
    export_model,
    load_checkpoint,
    load_weights,
    save_weights,
)
from lenetish.data.identity import recorded_dataset
from lenetish.saving.checkpoint import save_checkpoint
from lenetish.saving.weightfiles import load_model, read_weights, saved_dataset
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


@pytest.mark.parametrize("dtype", [torch.int8, torch.bool, torch.complex64, torch.int64])
def test_non_floating_weights_are_refused_not_cast(tmp_path: Path, dtype: torch.dtype) -> None:
    """int8, bool, int64 and complex weights are refused instead of cast to float32."""
    from safetensors.torch import save_file

    path = tmp_path / "m.safetensors"
    save_file({k: v.to(dtype) for k, v in MNISTConvNet().state_dict().items()}, str(path))
    with pytest.raises(CheckpointError, match=rf"weights of another kind .*\({dtype}, the model"):
        load_model(path)


def test_non_floating_plain_state_dict_is_refused_by_load_weights(tmp_path: Path) -> None:
    """A torch.save'd bool state dict is refused by load_weights too, naming the layer."""
    torch.save({k: v.bool() for k, v in MNISTConvNet().state_dict().items()}, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"conv1.weight \(torch.bool, the model's"):
        load_weights(MNISTConvNet(), tmp_path / "m.pt")


def test_half_precision_weights_still_load(tmp_path: Path) -> None:
    """float16 weights are floating point: they load (into float32 parameters)."""
    net = MNISTConvNet()
    torch.save({k: v.half() for k, v in net.state_dict().items()}, tmp_path / "m.pt")
    assert load_model(tmp_path / "m.pt").fc2.weight.dtype == torch.float32


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused(tmp_path: Path, value: float) -> None:
    """A weights file with NaN or infinite weights is refused, naming the layer."""
    weights = MNISTConvNet().state_dict()
    weights["fc2.bias"][3] = value
    path = tmp_path / "m.pt"
    torch.save(weights, path)
    with pytest.raises(CheckpointError, match=r"NaN or infinite values in fc2.bias"):
        load_model(path)


@pytest.mark.parametrize(
    ("convert", "kind"),
    [
        (lambda t: t.to_sparse(), r"a sparse tensor \(torch.sparse_coo\)"),
        (lambda t: t.to_sparse_csr(), r"a sparse tensor \(torch.sparse_csr\)"),
        (lambda t: torch.quantize_per_tensor(t, 0.1, 0, torch.qint8), "a quantized tensor"),
        (lambda t: torch.empty(t.shape, device="meta"), "a meta tensor"),
    ],
    ids=["sparse-coo", "sparse-csr", "quantized", "meta"],
)
@pytest.mark.filterwarnings("ignore")
def test_sparse_quantized_and_meta_tensors_are_refused(
    tmp_path: Path, convert: Any, kind: str
) -> None:
    """A state dict holding a sparse, quantized or meta tensor is a CheckpointError."""
    weights = MNISTConvNet().state_dict()
    weights["fc1.weight"] = convert(weights["fc1.weight"])
    torch.save(weights, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=rf"holds fc1.weight as {kind}"):
        load_model(tmp_path / "m.pt")


def _with_classes(path: Path, count: int) -> Path:
    """A safetensors file of MNISTConvNet whose dataset record holds ``count`` class names."""
    from safetensors.torch import save_file

    record = {"name": "custom", "mean": 0.5, "std": 0.5, "classes": [f"c{i}" for i in range(count)]}
    metadata = {"model": "MNISTConvNet", "dataset": json.dumps(record)}
    save_file(MNISTConvNet().state_dict(), str(path), metadata)
    return path


def test_a_record_of_more_classes_than_outputs_is_refused(tmp_path: Path) -> None:
    """A record of 11 class names for a network of 10 outputs is refused."""
    path = _with_classes(tmp_path / "m.safetensors", 11)
    with pytest.raises(CheckpointError, match=r"records 11 class names for a MNISTConvNet of 10"):
        load_model(path)


def test_an_absurd_class_count_is_refused_before_any_allocation(tmp_path: Path) -> None:
    """40,000 class names (a 12.8 GB confusion matrix) are refused when the file is read."""
    path = _with_classes(tmp_path / "m.safetensors", 40_000)
    with pytest.raises(CheckpointError, match=r"40,000 class names .* more than the 1,000"):
        saved_dataset(path)


def test_a_record_whose_classes_are_a_string_is_refused(tmp_path: Path) -> None:
    """A record whose classes are one string (not a list of names) is damaged."""
    from safetensors.torch import save_file

    record = {"name": "custom", "mean": 0.5, "std": 0.5, "classes": "0123456789"}
    path = tmp_path / "m.safetensors"
    save_file(MNISTConvNet().state_dict(), str(path), {"dataset": json.dumps(record)})
    with pytest.raises(CheckpointError, match=r"damaged dataset record .*classes is a str"):
        saved_dataset(path)


def test_a_checkpoint_whose_model_is_not_keyed_by_names_is_damaged(tmp_path: Path) -> None:
    """A checkpoint whose model maps numbers to tensors is a CheckpointError, not a TypeError."""
    quick_trainer(epochs=1, callbacks=[ModelCheckpoint(tmp_path)]).fit(digit_batches(20, 10))
    state = load_checkpoint(tmp_path / "last.pt")
    state["model"] = dict(enumerate(state["model"].values()))
    save_checkpoint(tmp_path / "numbers.pt", state)
    with pytest.raises(CheckpointError, match=r"numbers.pt is damaged: its model is not a dict"):
        load_model(tmp_path / "numbers.pt")
