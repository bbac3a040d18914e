"""Tests of lenetish.data and lenetish.data.sources: finding, verifying and batching MNIST data."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision.datasets
from torch.utils.data import DataLoader

from lenetish import (
    DATASETS,
    DatasetCorruptError,
    DatasetNotFoundError,
    DeviceUnavailableError,
    InvalidArgumentError,
    TensorLoader,
    default_root,
    load_split,
    make_loaders,
    write_idx,
)
from lenetish.data import DataSource
from lenetish.data.sources import BUNDLED_MNIST_SHA256, bundled_mnist, resolve_source
from tests.conftest import FILE_NAMES, write_fake_mnist


def forbid_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any download fail the test."""

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("download attempted")

    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", forbidden)
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", forbidden)


def partial_bundle(folder: Path, *names: str) -> Path:
    """Copy some of the bundled MNIST files into ``folder`` (a stand-in bundled folder)."""
    folder.mkdir()
    for name in names:
        shutil.copy(bundled_mnist() / name, folder / name)
    return folder


def test_finds_raw_files_directly_in_root(fake_mnist: Path) -> None:
    """The four raw idx files directly in root are found and read."""
    images, labels = load_split(fake_mnist, download=False)
    assert images.shape == (60, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (60,) and labels.dtype == torch.int64


def test_finds_gzip_files(tmp_path: Path) -> None:
    """Gzip-compressed idx files are read like raw ones."""
    write_fake_mnist(tmp_path, gz=True)
    images, _ = load_split(tmp_path, train=False, download=False)
    assert images.shape == (20, 28, 28)


@pytest.mark.parametrize("layout", ["MNIST/raw", "mnist"])
def test_finds_torchvision_and_named_layouts(tmp_path: Path, layout: str) -> None:
    """Files in torchvision's root/MNIST/raw or in root/mnist are found."""
    write_fake_mnist(tmp_path / layout)
    assert load_split(tmp_path, download=False)[0].shape[0] == 60


def test_root_defaults_to_environment_variable(
    fake_mnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without root, $LENETISH_DATA is where the files are looked for."""
    monkeypatch.setenv("LENETISH_DATA", str(fake_mnist))
    assert default_root() == fake_mnist
    assert load_split(download=False)[1].shape == (60,)


def test_root_defaults_to_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without root or $LENETISH_DATA, the folder is lenetish under the user's cache."""
    monkeypatch.delenv("LENETISH_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_root() == tmp_path / "lenetish"


def test_missing_files_without_download_name_folders_and_files(tmp_path: Path) -> None:
    """Absent files with download=False list the folders searched and the files needed."""
    with pytest.raises(DatasetNotFoundError, match="download=False") as caught:
        load_split(tmp_path, download=False)
    message = str(caught.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "train-labels-idx1-ubyte" in message
    assert "LENETISH_DATA" in message


def test_failed_download_raises_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A download that fails (no network) becomes DatasetNotFoundError with the cause."""

    def no_network(url: str, **kwargs: Any) -> None:
        raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", no_network)
    expected = r"download failed: could not download train-images-idx3-ubyte.gz: .*resolution"
    with pytest.raises(DatasetNotFoundError, match=expected):
        load_split(tmp_path, download=True)


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_download_uses_torchvision_and_its_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dataset: str
) -> None:
    """Missing files come from torchvision's mirrors and sums, into root/<Name>/raw."""
    calls: list[str] = []

    def fake_download(url: str, *, download_root: str, filename: str, md5: str) -> None:
        calls.append(url)
        write_fake_mnist(Path(download_root))

    name = DATASETS[dataset].torchvision_name
    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", fake_download)
    images, _ = load_split(tmp_path, dataset=dataset, download=True)
    mirror = getattr(torchvision.datasets, name).mirrors[0]
    assert calls == [f"{mirror}train-images-idx3-ubyte.gz", f"{mirror}train-labels-idx1-ubyte.gz"]
    assert images.shape == (60, 28, 28)
    assert (tmp_path / name / "raw" / FILE_NAMES["train_images"]).exists()


def test_the_test_split_downloads_only_its_own_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scoring on Fashion-MNIST fetches the two t10k files, not the 30 MB of training images."""
    fetched: list[str] = []

    def fake_download(url: str, *, download_root: str, filename: str, md5: str) -> None:
        fetched.append(filename)
        write_fake_mnist(Path(download_root))

    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", fake_download)
    load_split(tmp_path, dataset="fashion-mnist", train=False, download=True)
    assert fetched == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_present_files_are_not_downloaded(
    fake_mnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the files are found, nothing is downloaded."""
    forbid_downloads(monkeypatch)
    load_split(fake_mnist, download=True)


def test_image_label_count_mismatch_is_refused(fake_mnist: Path) -> None:
    """Image and label files of different lengths raise DatasetCorruptError naming both."""
    write_idx(fake_mnist / FILE_NAMES["train_labels"], torch.zeros(59, dtype=torch.uint8))
    with pytest.raises(DatasetCorruptError, match=r"holds 60 images but .* holds 59 labels"):
        load_split(fake_mnist, download=False)


def test_corrupt_file_is_reported_through_make_loaders(fake_mnist: Path) -> None:
    """A truncated file reached through make_loaders raises DatasetCorruptError naming it."""
    path = fake_mnist / FILE_NAMES["test_images"]
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DatasetCorruptError, match="t10k-images-idx3-ubyte is truncated"):
        make_loaders(fake_mnist, download=False)


def test_unknown_dataset_is_refused(fake_mnist: Path) -> None:
    """An unknown dataset name lists the supported ones."""
    with pytest.raises(InvalidArgumentError, match=r"dataset='cifar10'.*fashion-mnist, kmnist"):
        make_loaders(fake_mnist, dataset="cifar10")


@pytest.mark.parametrize("name", ["batch_size", "eval_batch_size"])
@pytest.mark.parametrize("value", [0, -3, 2.5, True])
def test_non_positive_batch_sizes_are_refused(fake_mnist: Path, name: str, value: Any) -> None:
    """batch_size and eval_batch_size must be positive integers."""
    with pytest.raises(InvalidArgumentError, match=f"{name} must be a positive integer"):
        make_loaders(fake_mnist, download=False, **{name: value})


@pytest.mark.parametrize("val_size", [-1, 60, 1.0, -0.5, "10"])
def test_val_size_outside_range_is_refused(fake_mnist: Path, val_size: Any) -> None:
    """val_size must leave training samples: a count below N or a fraction below 1."""
    with pytest.raises(InvalidArgumentError, match="val_size"):
        make_loaders(fake_mnist, val_size=val_size, download=False)


def test_subset_keeps_the_first_training_samples(fake_mnist: Path) -> None:
    """subset=N keeps the first N training samples, before the validation split."""
    loaders = make_loaders(fake_mnist, subset=30, val_size=10, download=False)
    assert isinstance(loaders.train, TensorLoader) and isinstance(loaders.val, TensorLoader)
    assert (loaders.train.num_samples, loaders.val.num_samples) == (20, 10)
    with pytest.raises(InvalidArgumentError, match="subset must be a positive integer, got 0"):
        make_loaders(fake_mnist, subset=0, download=False)


def test_negative_num_workers_is_refused(fake_mnist: Path) -> None:
    """num_workers must be zero or more."""
    with pytest.raises(InvalidArgumentError, match="num_workers must be an integer >= 0"):
        make_loaders(fake_mnist, num_workers=-1, download=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_gpu_is_refused(fake_mnist: Path) -> None:
    """Asking for CUDA on a machine without it raises DeviceUnavailableError."""
    with pytest.raises(DeviceUnavailableError, match="no CUDA GPU"):
        make_loaders(fake_mnist, device="cuda", download=False)


def test_batches_are_normalised_float_images_and_int64_labels(fake_mnist: Path) -> None:
    """Batches are float32 (B, 1, 28, 28) normalised with MNIST's constants, int64 labels."""
    loaders = make_loaders(fake_mnist, batch_size=16, download=False)
    images, labels = next(iter(loaders.test))
    assert images.shape == (16, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (16,) and labels.dtype == torch.int64
    raw, _ = load_split(fake_mnist, train=False, download=False)
    expected = (raw[:16].float() / 255 - 0.1307) / 0.3081
    torch.testing.assert_close(images[:, 0], expected)


def test_lengths_count_batches_and_samples(fake_mnist: Path) -> None:
    """len(loader) is the number of batches; num_samples the number of samples."""
    loaders = make_loaders(fake_mnist, batch_size=25, val_size=10, download=False)
    assert isinstance(loaders.train, TensorLoader) and isinstance(loaders.val, TensorLoader)
    assert (loaders.train.num_samples, len(loaders.train)) == (50, 2)
    assert (loaders.val.num_samples, len(loaders.val)) == (10, 1)
    assert loaders.info.mean == DATASETS["mnist"].mean


def test_val_split_is_disjoint_deterministic_and_seeded(fake_mnist: Path) -> None:
    """The validation split is carved from train, fixed by the seed, disjoint from train."""

    def split_of(seed: int) -> tuple[set[int], set[int]]:
        loaders = make_loaders(fake_mnist, val_size=0.25, seed=seed, download=False)
        assert isinstance(loaders.train, TensorLoader) and isinstance(loaders.val, TensorLoader)
        return (
            {hash(row.numpy().tobytes()) for row in loaders.train.images},
            {hash(row.numpy().tobytes()) for row in loaders.val.images},
        )

    train, val = split_of(0)
    assert len(val) == 15 and not train & val
    assert split_of(0) == (train, val)
    assert split_of(1) != (train, val)


def test_no_val_split_gives_none(fake_mnist: Path) -> None:
    """val_size=0 gives no validation loader and the whole training split."""
    loaders = make_loaders(fake_mnist, download=False)
    assert loaders.val is None
    assert isinstance(loaders.train, TensorLoader) and loaders.train.num_samples == 60


def test_train_order_is_seeded_and_changes_every_epoch(fake_mnist: Path) -> None:
    """Same seed, same order; a new epoch draws a new order; set_epoch replays one."""

    def epoch_labels(loader: Any) -> list[int]:
        return torch.cat([labels for _, labels in loader]).tolist()

    first = make_loaders(fake_mnist, batch_size=7, seed=3, download=False).train
    second = make_loaders(fake_mnist, batch_size=7, seed=3, download=False).train
    epoch0 = epoch_labels(first)
    assert epoch_labels(second) == epoch0
    assert epoch_labels(first) != epoch0
    first.set_epoch(0)
    assert epoch_labels(first) == epoch0


def test_test_loader_is_never_shuffled(fake_mnist: Path) -> None:
    """The test loader yields the file's order every time."""
    loaders = make_loaders(fake_mnist, batch_size=6, download=False)
    _, raw_labels = load_split(fake_mnist, train=False, download=False)
    for _ in range(2):
        assert torch.cat([labels for _, labels in loaders.test]).tolist() == raw_labels.tolist()


def test_transform_falls_back_to_a_dataloader(fake_mnist: Path) -> None:
    """A torchvision transform gets a standard DataLoader fed with PIL images."""
    from torchvision import transforms

    loaders = make_loaders(
        fake_mnist,
        batch_size=8,
        val_size=12,
        transform=transforms.ToTensor(),
        target_transform=lambda label: label + 100,
        download=False,
    )
    assert isinstance(loaders.train, DataLoader) and isinstance(loaders.val, DataLoader)
    images, labels = next(iter(loaders.train))
    assert images.shape == (8, 1, 28, 28) and 0.0 <= float(images.min()) <= float(images.max())
    assert float(images.max()) <= 1.0 and int(labels.min()) >= 100
    assert len(loaders.train.dataset) == 48  # type: ignore[arg-type]


def test_dataset_is_shared_by_mnist_family_members(tmp_path: Path) -> None:
    """fashion-mnist reads its own folder and carries its own normalisation."""
    write_fake_mnist(tmp_path / "FashionMNIST" / "raw")
    loaders = make_loaders(tmp_path, dataset="fashion-mnist", download=False)
    assert loaders.info.mean == pytest.approx(0.2860)
    assert loaders.info.classes[9] == "Ankle boot"
    with pytest.raises(DatasetNotFoundError, match="kmnist train files not found"):
        make_loaders(tmp_path, dataset="kmnist", download=False)


def test_real_mnist_has_the_canonical_counts(real_mnist: Path) -> None:
    """Real MNIST gives 60,000 / 10,000 samples and the canonical train label counts."""
    loaders = make_loaders(real_mnist, download=False)
    assert isinstance(loaders.train, TensorLoader) and isinstance(loaders.test, TensorLoader)
    assert (loaders.train.num_samples, loaders.test.num_samples) == (60_000, 10_000)
    counts = torch.bincount(loaders.train.labels, minlength=10).tolist()
    assert counts == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_make_test_loader_equals_the_test_loader_of_make_loaders(fake_mnist: Path) -> None:
    """make_test_loader gives the same batches as make_loaders(...).test."""
    from lenetish.data import make_test_loader

    alone = make_test_loader(fake_mnist, batch_size=7, download=False)
    together = make_loaders(fake_mnist, eval_batch_size=7, download=False).test
    for (a_images, a_labels), (b_images, b_labels) in zip(alone, together, strict=True):
        assert torch.equal(a_images, b_images) and torch.equal(a_labels, b_labels)


def test_bundled_files_match_their_recorded_sums() -> None:
    """The bundled folder holds exactly the four MNIST files, with the SHA-256 sums in the code."""
    folder = bundled_mnist()
    assert sorted(path.name for path in folder.iterdir()) == sorted(BUNDLED_MNIST_SHA256)
    for name, expected in BUNDLED_MNIST_SHA256.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == expected


def test_mnist_without_root_reads_the_bundled_copy_offline(
    no_data_folders: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without root, $LENETISH_DATA or cached files, MNIST comes from the bundled copy."""
    forbid_downloads(monkeypatch)
    images, labels = load_split(train=False)
    assert images.shape == (10_000, 28, 28)
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]


def test_make_loaders_records_the_bundled_source(no_data_folders: Path) -> None:
    """make_loaders without root says in Loaders.source that it read the bundled copy."""
    loaders = make_loaders(subset=100)
    assert loaders.source == DataSource("bundled", bundled_mnist())
    assert str(loaders.source).startswith("the copy bundled with lenetish (")


def test_source_is_logged_once_at_info(
    no_data_folders: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """make_loaders logs where its data came from once, at INFO."""
    with caplog.at_level(logging.INFO, logger="lenetish.data"):
        make_loaders(subset=100)
    messages = [record.getMessage() for record in caplog.records if "data:" in record.getMessage()]
    assert messages == [f"mnist data: the copy bundled with lenetish ({bundled_mnist()})"]


def test_environment_folder_comes_before_cache_and_bundle(
    no_data_folders: Path, fake_mnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$LENETISH_DATA holding MNIST is used before the cache folder and the bundled copy."""
    write_fake_mnist(no_data_folders / "MNIST" / "raw", num_train=30)
    monkeypatch.setenv("LENETISH_DATA", str(fake_mnist))
    loaders = make_loaders()
    assert loaders.source == DataSource("environment", fake_mnist)
    assert isinstance(loaders.train, TensorLoader) and loaders.train.num_samples == 60


def test_cache_folder_holding_mnist_comes_before_the_bundle(no_data_folders: Path) -> None:
    """A user cache folder holding MNIST (e.g. an earlier download) is used before the bundle."""
    write_fake_mnist(no_data_folders / "MNIST" / "raw")
    loaders = make_loaders()
    assert loaders.source == DataSource("cache", no_data_folders)
    assert isinstance(loaders.train, TensorLoader) and loaders.train.num_samples == 60


def test_folders_without_all_four_files_give_way_to_the_bundle(
    no_data_folders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty $LENETISH_DATA and a cache missing one MNIST file give way to the bundle."""
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("LENETISH_DATA", str(tmp_path / "empty"))
    write_fake_mnist(no_data_folders / "MNIST" / "raw")
    (no_data_folders / "MNIST" / "raw" / FILE_NAMES["test_labels"]).unlink()
    assert resolve_source(None, DATASETS["mnist"]).kind == "bundled"


def test_root_comes_before_every_other_source(
    no_data_folders: Path, fake_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A root folder is used even when $LENETISH_DATA and the cache folder hold MNIST."""
    monkeypatch.setenv("LENETISH_DATA", str(write_fake_mnist(tmp_path / "env")))
    write_fake_mnist(no_data_folders / "MNIST" / "raw")
    assert resolve_source(fake_mnist, DATASETS["mnist"]) == DataSource("root", fake_mnist)


def test_other_datasets_still_download_into_the_cache_folder(
    no_data_folders: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fashion-MNIST without root is downloaded from torchvision's mirrors into the cache."""

    def fake_download(url: str, *, download_root: str, filename: str, md5: str) -> None:
        write_fake_mnist(Path(download_root))

    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", fake_download)
    loaders = make_loaders(dataset="fashion-mnist")
    assert loaders.source == DataSource("cache", no_data_folders)
    assert (no_data_folders / "FashionMNIST" / "raw" / FILE_NAMES["train_images"]).exists()


def test_mnist_root_without_files_points_at_the_bundle(tmp_path: Path) -> None:
    """A root without MNIST files says that leaving root out uses the bundled copy."""
    with pytest.raises(DatasetNotFoundError, match="leave root/--data out to use the MNIST copy"):
        load_split(tmp_path, download=False)


def test_corrupt_bundled_file_asks_for_a_reinstall(
    no_data_folders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A damaged bundled file (a corrupted copy here) raises DatasetCorruptError naming it."""
    copy = partial_bundle(
        tmp_path / "bundle", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"
    )
    damaged = copy / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(damaged.read_bytes())
    data[100] ^= 0xFF
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr("lenetish.data.sources.bundled_mnist", lambda: copy)
    with pytest.raises(
        DatasetCorruptError,
        match=r"t10k-labels-idx1-ubyte\.gz is damaged: its SHA-256 is .* reinstall lenetish",
    ):
        load_split(train=False)


def test_incomplete_bundle_asks_for_a_reinstall(
    no_data_folders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bundled folder missing a split's files raises DatasetNotFoundError naming them."""
    copy = partial_bundle(tmp_path / "bundle", "t10k-labels-idx1-ubyte.gz")
    monkeypatch.setattr("lenetish.data.sources.bundled_mnist", lambda: copy)
    with pytest.raises(
        DatasetNotFoundError,
        match=r"incomplete: .* lacks t10k-images-idx3-ubyte\.gz.*reinstall lenetish",
    ):
        load_split(train=False)


def test_unknown_file_in_the_bundle_is_refused(
    no_data_folders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file in the bundled folder that lenetish never shipped raises DatasetCorruptError."""
    copy = partial_bundle(tmp_path / "bundle", "t10k-labels-idx1-ubyte.gz")
    write_idx(copy / FILE_NAMES["test_images"], torch.zeros(3, 28, 28, dtype=torch.uint8))
    monkeypatch.setattr("lenetish.data.sources.bundled_mnist", lambda: copy)
    with pytest.raises(DatasetCorruptError, match="is not one of the files bundled with lenetish"):
        load_split(train=False)


def test_shared_copy_still_works_as_a_data_folder(shared_mnist: Path, real_mnist: Path) -> None:
    """The MNIST copy beside the repository still works as root (--data) and equals the bundle."""
    images, labels = load_split(shared_mnist, train=False, download=False)
    bundled_images, bundled_labels = load_split(real_mnist, train=False, download=False)
    assert torch.equal(images, bundled_images) and torch.equal(labels, bundled_labels)


def test_training_transform_is_not_applied_to_test_batches(fake_mnist: Path) -> None:
    """transform= augments training batches only; two passes over the test loader agree."""
    import torchvision.transforms as T

    augment = T.Compose([T.RandomRotation(40), T.ToTensor(), T.Normalize((0.1307,), (0.3081,))])
    loaders = make_loaders(fake_mnist, transform=augment, batch_size=20, download=False)
    first, second = list(loaders.test), list(loaders.test)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, second, strict=True))
    images, _ = load_split(fake_mnist, train=False)
    expected = (images[:20].float() / 255 - 0.1307) / 0.3081
    torch.testing.assert_close(first[0][0][:, 0], expected)


def test_eval_transform_is_applied_to_validation_and_test(fake_mnist: Path) -> None:
    """eval_transform= converts the validation and test images (and not the training ones)."""
    calls: list[str] = []

    def mark(image: Any) -> torch.Tensor:
        calls.append("eval")
        return torch.zeros(1, 28, 28)

    loaders = make_loaders(fake_mnist, eval_transform=mark, val_size=5, download=False)
    assert loaders.val is not None and isinstance(loaders.train, TensorLoader)
    batch = next(iter(loaders.test))[0]
    list(loaders.val)
    assert float(batch.abs().sum()) == 0 and len(calls) == 25


@pytest.fixture
def no_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """HOME unset, no $XDG_CACHE_HOME or $LENETISH_DATA, and no passwd entry for the user."""
    import pwd

    def no_entry(uid: int) -> Any:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    for name in ("HOME", "XDG_CACHE_HOME", "LENETISH_DATA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(pwd, "getpwuid", no_entry)


def test_bundled_mnist_needs_no_home_folder(no_home: None) -> None:
    """Without HOME or a passwd entry, MNIST still loads from the bundled copy."""
    loaders = make_loaders(batch_size=1000)
    assert loaders.source.kind == "bundled" and loaders.test.num_samples == 10_000


def test_a_dataset_to_download_without_a_home_folder_is_named(no_home: None) -> None:
    """Fashion-MNIST with no home folder to cache it in says to set LENETISH_DATA or --data."""
    with pytest.raises(DatasetNotFoundError, match=r"HOME is not set .* set LENETISH_DATA"):
        make_loaders(dataset="fashion-mnist", download=False)


def test_default_root_without_a_home_folder_is_named(no_home: None) -> None:
    """default_root() with no home folder is a DatasetNotFoundError, not a RuntimeError."""
    with pytest.raises(DatasetNotFoundError, match=r"no user cache folder"):
        default_root()


def test_a_data_folder_that_cannot_be_searched_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An unsearchable $LENETISH_DATA (here: a name too long) is named, not a raw OSError."""
    monkeypatch.setenv("LENETISH_DATA", str(tmp_path / ("x" * 300)))
    with pytest.raises(DatasetNotFoundError, match=r"cannot be searched .*File name too long"):
        make_loaders(download=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders whatever their permissions")
def test_an_unreadable_data_folder_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A $LENETISH_DATA without read permission is named, not a raw PermissionError."""
    locked = tmp_path / "locked"
    (locked / "inner").mkdir(parents=True)
    locked.chmod(0)
    monkeypatch.setenv("LENETISH_DATA", str(locked / "inner"))
    try:
        with pytest.raises(DatasetNotFoundError, match=r"cannot be searched .*Permission denied"):
            make_loaders(download=False)
    finally:
        locked.chmod(0o700)


def test_an_unsearchable_data_folder_is_named_whatever_the_user(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A PermissionError while looking for the files (as for a non-root user) is named."""
    real_stat = Path.stat

    def denied(self: Path, **kwargs: Any) -> Any:
        if "locked" in self.parts:
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, **kwargs)

    monkeypatch.setenv("LENETISH_DATA", str(tmp_path / "locked"))
    monkeypatch.setattr(Path, "stat", denied)
    with pytest.raises(
        DatasetNotFoundError, match=r"locked/MNIST/raw cannot be searched .*Permission denied"
    ):
        make_loaders(download=False)
