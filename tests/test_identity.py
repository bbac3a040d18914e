"""Tests of identity: datasets recognised by content, and what a model was trained on."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from lenetish import (
    DATASETS,
    CheckpointError,
    DatasetInfo,
    DatasetMismatchError,
    InvalidArgumentError,
    MNISTConvNet,
    load_split,
    make_loaders,
    predict,
)
from lenetish.data.identity import (
    LABEL_SHA256,
    label_digest,
    remember_dataset,
    resolve_dataset,
)
from tests.conftest import synthetic_digits, write_fake_mnist


def pretend_fashion(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the fake files' label digests those of Fashion-MNIST (train and test)."""
    _, train = synthetic_digits(60, seed=1)
    _, test = synthetic_digits(20, seed=2)
    digests = (label_digest(train), label_digest(test))
    monkeypatch.setitem(LABEL_SHA256, "fashion-mnist", digests)


def test_fashion_files_under_auto_get_fashions_settings(shared_fashion: Path) -> None:
    """The real Fashion-MNIST files are recognised: normalisation and class names follow."""
    images, labels = load_split(shared_fashion, train=False, download=False)
    loaders = make_loaders(shared_fashion, subset=100, download=False)
    assert loaders.info.name == "fashion-mnist" and loaders.info.mean == pytest.approx(0.2860)
    assert loaders.info.classes[0] == "T-shirt/top" and len(labels) == 10_000
    batch = next(iter(loaders.test))[0]
    expected = (images[:200].float() / 255 - 0.2860) / 0.3530
    torch.testing.assert_close(batch[:, 0], expected)


def test_fashion_files_as_mnist_are_refused(shared_fashion: Path) -> None:
    """Real Fashion-MNIST files loaded with dataset='mnist' raise DatasetMismatchError."""
    with pytest.raises(
        DatasetMismatchError,
        match=r"are the canonical fashion-mnist files.*"
        r"dataset='mnist' was asked for; pass dataset='fashion-mnist'",
    ):
        make_loaders(shared_fashion, dataset="mnist", download=False)


def test_mnist_files_as_fashion_are_refused(real_mnist: Path) -> None:
    """The bundled MNIST files loaded as fashion-mnist raise DatasetMismatchError."""
    with pytest.raises(DatasetMismatchError, match=r"canonical mnist files.*'fashion-mnist'"):
        load_split(real_mnist, dataset="fashion-mnist", train=False, download=False)


def test_injected_digests_identify_tiny_files(
    fake_mnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files whose label digests are a dataset's are taken for it (tiny files, known digests)."""
    pretend_fashion(monkeypatch)
    assert make_loaders(fake_mnist, download=False).info.name == "fashion-mnist"
    with pytest.raises(DatasetMismatchError, match="canonical fashion-mnist files"):
        make_loaders(fake_mnist, dataset="kmnist", download=False)


def test_unknown_files_get_mnist_settings_and_a_log_line(
    fake_mnist: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Unrecognised files under auto get MNIST's normalisation and digit names, logged."""
    with caplog.at_level(logging.INFO, logger="lenetish"):
        info = make_loaders(fake_mnist, download=False).info
    assert (info.name, info.mean, info.classes) == ("custom", 0.1307, DATASETS["mnist"].classes)
    assert any("not the canonical MNIST" in r.getMessage() for r in caplog.records)


def test_unknown_files_take_explicit_settings(fake_mnist: Path) -> None:
    """mean=, std= and classes= set the normalisation and names of a user's own files."""
    names = [f"c{i}" for i in range(10)]
    loaders = make_loaders(fake_mnist, mean=0.5, std=0.25, classes=names, download=False)
    assert (loaders.info.mean, loaders.info.std, loaders.info.classes[3]) == (0.5, 0.25, "c3")
    images, _ = load_split(fake_mnist, train=False, download=False)
    torch.testing.assert_close(next(iter(loaders.test))[0][:, 0], (images / 255 - 0.5) / 0.25)


def test_an_explicit_dataset_is_kept_for_unknown_files(fake_mnist: Path) -> None:
    """dataset='fashion-mnist' on files of no recognised dataset keeps Fashion's settings."""
    assert make_loaders(fake_mnist, dataset="fashion-mnist").info.name == "fashion-mnist"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"mean": float("nan")}, r"mean must be a finite number, got nan"),
        ({"std": 0.0}, r"std must be above 0, got 0.0"),
        ({"classes": "0123456789"}, r"classes must be a sequence of at least two names"),
    ],
)
def test_bad_settings_are_refused(
    fake_mnist: Path, options: dict[str, object], message: str
) -> None:
    """A non-finite mean, a std of 0 or classes that are not names are refused."""
    with pytest.raises(InvalidArgumentError, match=message):
        make_loaders(fake_mnist, download=False, **options)  # type: ignore[arg-type]


def test_mixed_datasets_in_one_folder_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training labels of one dataset and test labels of another are refused."""
    write_fake_mnist(tmp_path)
    _, train = synthetic_digits(60, seed=1)
    _, test = synthetic_digits(20, seed=2)
    monkeypatch.setitem(LABEL_SHA256, "fashion-mnist", (label_digest(train), "0" * 64))
    monkeypatch.setitem(LABEL_SHA256, "kmnist", ("0" * 64, label_digest(test)))
    with pytest.raises(
        DatasetMismatchError,
        match=r"mix datasets: the training labels are "
        r"fashion-mnist's and the test labels kmnist's",
    ):
        make_loaders(tmp_path, download=False)


def test_two_dataset_folders_make_auto_ask(tmp_path: Path) -> None:
    """A root holding MNIST/raw and FashionMNIST/raw makes dataset='auto' ask which one."""
    write_fake_mnist(tmp_path / "MNIST" / "raw")
    write_fake_mnist(tmp_path / "FashionMNIST" / "raw")
    with pytest.raises(InvalidArgumentError, match=r"several datasets \(mnist, fashion-mnist\)"):
        make_loaders(tmp_path, download=False)
    assert make_loaders(tmp_path, dataset="fashion-mnist").info.name == "fashion-mnist"


def test_a_dataset_subfolder_is_found_under_auto(tmp_path: Path) -> None:
    """Under auto, files in root/FashionMNIST/raw are found (and read with Fashion's settings)."""
    write_fake_mnist(tmp_path / "FashionMNIST" / "raw")
    images, _ = load_split(tmp_path, download=False)
    assert images.shape == (60, 28, 28)


def test_record_round_trip() -> None:
    """DatasetInfo.record() and from_record() give back the same settings."""
    info = DATASETS["kmnist"]
    assert DatasetInfo.from_record(info.record()) == info


def test_damaged_record_is_refused() -> None:
    """A dataset record with a std of 0 is refused as damaged."""
    record = {**DATASETS["mnist"].record(), "std": 0}
    with pytest.raises(CheckpointError, match=r"damaged dataset record \(mean 0.1307, std 0.0"):
        DatasetInfo.from_record(record)


def test_record_missing_a_value_is_refused() -> None:
    """A dataset record without its class names is refused as damaged."""
    with pytest.raises(CheckpointError, match=r"damaged dataset record \(KeyError"):
        DatasetInfo.from_record({"name": "mnist", "mean": 0.1, "std": 0.3})


def test_explicit_dataset_contradicting_the_model_is_refused() -> None:
    """predict(dataset='mnist') on a model that records fashion-mnist is refused."""
    model = MNISTConvNet()
    remember_dataset(model, DATASETS["fashion-mnist"])
    with pytest.raises(
        DatasetMismatchError,
        match=r"trained on fashion-mnist, but "
        r"dataset='mnist' was asked for",
    ):
        predict(model, torch.zeros(1, 28, 28, dtype=torch.uint8), dataset="mnist")


def test_ensemble_of_different_datasets_is_refused() -> None:
    """An ensemble whose members record different datasets is refused."""
    models = [MNISTConvNet(), MNISTConvNet()]
    remember_dataset(models[0], DATASETS["fashion-mnist"])
    remember_dataset(models[1], DATASETS["mnist"])
    with pytest.raises(DatasetMismatchError, match=r"different datasets \(fashion-mnist, mnist\)"):
        predict(models, torch.zeros(1, 28, 28, dtype=torch.uint8))


def test_auto_uses_the_models_record() -> None:
    """Predict's default dataset='auto' uses what the model records (class names included)."""
    model = MNISTConvNet()
    remember_dataset(model, DATASETS["fashion-mnist"])
    prediction = predict(model, torch.zeros(2, 28, 28, dtype=torch.uint8))
    assert prediction.classes == DATASETS["fashion-mnist"].classes
    assert prediction.names[0] in DATASETS["fashion-mnist"].classes


def test_unknown_dataset_name_lists_auto() -> None:
    """An unknown dataset name is refused with the choices, 'auto' among them."""
    with pytest.raises(
        InvalidArgumentError, match=r"dataset='emnist' is not supported; use 'auto'"
    ):
        resolve_dataset("emnist", None)


def test_a_record_keeps_the_preparation_and_refuses_an_unknown_one() -> None:
    """DatasetInfo.record/from_record round-trip 'resize'; a made-up preparation is damage."""
    info = DatasetInfo("custom", "", 0.5, 0.2, ("a", "b"), "resize")
    assert DatasetInfo.from_record(info.record()) == info
    assert "preparation" not in DATASETS["mnist"].record()  # older readers see no change
    with pytest.raises(CheckpointError, match="preparation 'sharpen', which is none of"):
        DatasetInfo.from_record({**info.record(), "preparation": "sharpen"})


def test_the_image_preparation_defaults_by_dataset_name() -> None:
    """Without a recorded preparation: fashionify, mnistify, or resize for one's own data."""
    assert DATASETS["fashion-mnist"].image_preparation == "fashionify"
    assert DATASETS["kmnist"].image_preparation == "mnistify"
    assert DatasetInfo("custom", "", 0.5, 0.2, ("a", "b")).image_preparation == "resize"


def test_own_idx_files_record_the_digit_preparation(fake_mnist: Path) -> None:
    """Idx files that are none of the known datasets are MNIST-style: mnistify is recorded."""
    assert make_loaders(fake_mnist, download=False).info.preparation == "mnistify"
