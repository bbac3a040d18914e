"""Shared fixtures: tiny synthetic MNIST-style idx files and the real MNIST bundled in lenetish."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from lenetish.data.idx import write_idx
from lenetish.data.sources import bundled_mnist

# The serve tests need the serve extra (FastAPI, uvicorn); a machine without it (the bare GPU
# machine of benchmarks/gpu_check.py) collects the other tests and leaves these out.
collect_ignore_glob = [] if importlib.util.find_spec("fastapi") else ["test_serve_*.py"]

# A copy beside the repository (gzip idx files and SHA256SUMS); optional, only as a --data folder.
SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist"
# Fashion-MNIST beside the repository (never committed here); tests that need it skip without it.
SHARED_FASHION = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "fashion-mnist"

FILE_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

FakeMnist = Callable[..., Path]


def synthetic_digits(count: int, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``count`` uint8 28x28 images whose bright row band encodes their label 0-9."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 10
    images = torch.randint(0, 40, (count, 28, 28), generator=generator, dtype=torch.uint8)
    for index, label in enumerate(labels.tolist()):
        images[index, 2 + 2 * label : 4 + 2 * label, 4:24] = 255
    return images, labels.to(torch.uint8)


def write_fake_mnist(
    folder: Path, *, num_train: int = 60, num_test: int = 20, gz: bool = False
) -> Path:
    """Write the four canonical idx files with synthetic digits into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    train_images, train_labels = synthetic_digits(num_train, seed=1)
    test_images, test_labels = synthetic_digits(num_test, seed=2)
    write_idx(folder / (FILE_NAMES["train_images"] + suffix), train_images)
    write_idx(folder / (FILE_NAMES["train_labels"] + suffix), train_labels)
    write_idx(folder / (FILE_NAMES["test_images"] + suffix), test_images)
    write_idx(folder / (FILE_NAMES["test_labels"] + suffix), test_labels)
    return folder


@pytest.fixture
def fake_mnist(tmp_path: Path) -> Path:
    """A folder holding tiny synthetic raw idx files (60 train, 20 test) directly in it."""
    return write_fake_mnist(tmp_path / "data")


@pytest.fixture
def real_mnist() -> Path:
    """The folder of the real MNIST files bundled with lenetish (always present)."""
    return bundled_mnist()


@pytest.fixture
def shared_mnist() -> Path:
    """The MNIST copy beside the repository; the test is skipped when it is absent."""
    if not (SHARED_MNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"no MNIST copy at {SHARED_MNIST} (optional: the tests use the bundled one)")
    return SHARED_MNIST


@pytest.fixture
def shared_fashion() -> Path:
    """The Fashion-MNIST copy beside the repository; the test is skipped when it is absent."""
    if not (SHARED_FASHION / "t10k-labels-idx1-ubyte.gz").exists():
        pytest.skip(f"no Fashion-MNIST copy at {SHARED_FASHION} (it is not part of the repository)")
    return SHARED_FASHION


@pytest.fixture(scope="session")
def fashion_model() -> torch.nn.Module:
    """An MNISTConvNet trained for one pass over 4,000 Fashion-MNIST images (about 75% correct).

    It carries Fashion-MNIST's dataset record, as a model loaded from a lenetish file does.
    """
    if not (SHARED_FASHION / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"no Fashion-MNIST copy at {SHARED_FASHION} (it is not part of the repository)")
    from lenetish import MNISTConvNet, make_loaders
    from lenetish.data.identity import remember_dataset

    loaders = make_loaders(SHARED_FASHION, subset=4_000, batch_size=100, download=False)
    torch.manual_seed(0)
    model = MNISTConvNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for images, labels in loaders.train:
        optimizer.zero_grad()
        torch.nn.functional.nll_loss(model(images), labels).backward()
        optimizer.step()
    remember_dataset(model, loaders.info)
    return model.eval()


@pytest.fixture
def no_data_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No $LENETISH_DATA and an empty user cache folder (returned), as on a fresh machine."""
    monkeypatch.delenv("LENETISH_DATA", raising=False)
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache / "lenetish"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` when torch sees no CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
