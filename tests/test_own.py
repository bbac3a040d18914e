"""Tests of lenetish.data.own: image folders, arrays and Datasets as lenetish data."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image, ImageDraw
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lenetish import (
    DatasetInfo,
    InvalidArgumentError,
    Trainer,
    evaluate,
    load_weights,
    make_loaders,
    predict,
    save_weights,
)
from lenetish.data import load_split, make_test_loader
from lenetish.data.own import hold_out
from lenetish.errors import DatasetNotFoundError, InputShapeError, InvalidInputError
from lenetish.evaluation.prepare import resize

SHAPES = ("circle", "cross", "dash", "square")


def _shape(kind: str, rng: random.Random) -> Image.Image:
    """One dark shape on a light background: a size of its own, grey or RGB."""
    size = (rng.randrange(24, 80), rng.randrange(24, 80))
    rgb = rng.random() < 0.5
    image = Image.new("RGB" if rgb else "L", size, (240, 230, 220) if rgb else 235)
    ink: Any = (rng.randrange(90), rng.randrange(90), rng.randrange(90)) if rgb else 40
    draw, side = ImageDraw.Draw(image), min(size)
    x, y, r, width = size[0] / 2, size[1] / 2, side * rng.uniform(0.25, 0.4), max(2, side // 12)
    if kind == "circle":
        draw.ellipse((x - r, y - r, x + r, y + r), outline=ink, width=width)
    elif kind == "square":
        draw.rectangle((x - r, y - r, x + r, y + r), outline=ink, width=width)
    elif kind == "cross":
        draw.line((x - r, y - r, x + r, y + r), fill=ink, width=width)
        draw.line((x - r, y + r, x + r, y - r), fill=ink, width=width)
    else:
        draw.line((x - r, y, x + r, y), fill=ink, width=width)
    return image


def write_shapes(root: Path, per_class: int, seed: int = 0) -> Path:
    """A folder of class sub-folders of PNG shapes, of varied sizes, RGB among them."""
    rng = random.Random(seed)
    for kind in SHAPES:
        (root / kind).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            _shape(kind, rng).save(root / kind / f"{kind}-{index}.png")
    return root


def _tree(root: Path) -> list[tuple[str, int]]:
    """Every path under ``root`` with its size (0 for folders): the tree as it stands."""
    return sorted(
        (str(p.relative_to(root)), p.stat().st_size if p.is_file() else 0) for p in root.rglob("*")
    )


class ShapeNet(nn.Module):
    """A user's network in pytorch/examples' style: ``.view``, raw logits, four classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 8, 3), nn.Conv2d(8, 16, 3)
        self.fc1, self.fc2 = nn.Linear(16 * 5 * 5, 32), nn.Linear(32, len(SHAPES))

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.view(-1, 16 * 5 * 5))))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A training folder of 4 classes x 40 shapes."""
    return write_shapes(tmp_path_factory.mktemp("own") / "shapes", per_class=40)


@pytest.fixture(scope="module")
def trained(shapes: Path) -> nn.Module:
    """ShapeNet trained on the shapes folder through make_loaders."""
    torch.manual_seed(0)
    model = ShapeNet()
    loaders = make_loaders(shapes, batch_size=16, val_size=0.1)
    Trainer(model, epochs=12, lr=3e-3, device="cpu", progress=False).fit(loaders.train, loaders.val)
    return model


def test_an_image_folder_trains_and_predicts_files_as_its_training_images(
    trained: nn.Module, tmp_path: Path
) -> None:
    """predict(model, paths) without dataset= prepares files as training did, with the names."""
    fresh = sorted(write_shapes(tmp_path / "fresh", per_class=10, seed=7).rglob("*.png"))
    truth = torch.tensor([SHAPES.index(path.parent.name) for path in fresh])
    prediction = predict(trained, [str(path) for path in fresh])
    info = make_loaders(fresh[0].parent.parent.parent / "fresh", batch_size=8).info
    pictures = torch.stack([resize(Image.open(path)) for path in fresh]).float() / 255
    recorded = trained.lenetish_dataset  # type: ignore[attr-defined]
    prepared = ((pictures - recorded.mean) / recorded.std).unsqueeze(1)
    by_hand = predict(trained, prepared, normalized=True, precision="32")
    assert prediction.classes == SHAPES == info.classes
    assert torch.equal(prediction.labels, by_hand.labels)
    assert (prediction.labels == truth).float().mean().item() > 0.6  # it learned the shapes


def test_an_image_folder_records_statistics_names_and_preparation(shapes: Path) -> None:
    """The loaders' record: the training pixels' mean and std, the folder names, 'resize'."""
    loaders = make_loaders(shapes, batch_size=32)
    pictures = torch.cat([images for images, _ in loaders.train])
    assert loaders.info.classes == SHAPES and loaders.info.preparation == "resize"
    assert abs(pictures.mean().item()) < 1e-3 and abs(pictures.std().item() - 1) < 1e-2
    assert (loaders.train.num_samples, loaders.test.num_samples) == (128, 32)
    assert loaders.source is not None and loaders.source.kind == "images"


def _half_a_download(url: str, *, download_root: str, filename: str, md5: str) -> None:
    """A download that writes part of its file, then loses the network."""
    Path(download_root, filename).write_bytes(b"\x1f\x8b half a file")
    raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>")


def test_reading_an_image_folder_or_a_missing_path_leaves_the_tree_as_it_was(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """make_loaders, load_split, make_test_loader, train_stack and lenetish train write nothing."""
    from lenetish import train_stack
    from lenetish.cli import main

    monkeypatch.setattr(
        torchvision.datasets.utils, "download_and_extract_archive", _half_a_download
    )
    before = _tree(shapes)
    make_loaders(shapes)
    load_split(shapes, train=False)
    make_test_loader(shapes)
    train_stack("seed-adam", shapes, seeds=[0, 1], epochs=1, device="cpu", progress=False)
    assert (
        main(["train", "--data", str(shapes), "--epochs", "1", "--quiet", "--device", "cpu"]) == 0
    )
    assert _tree(shapes) == before
    missing = tmp_path / "nowhere" / "mnist"
    for attempt in (lambda: make_loaders(missing), lambda: load_split(missing)):
        with pytest.raises(DatasetNotFoundError, match="download failed"):
            attempt()
    assert main(["train", "--data", str(missing), "--epochs", "1", "--device", "cpu"]) != 0
    assert list(tmp_path.iterdir()) == []


def test_a_stack_trains_on_an_image_folder_with_one_output_per_class(shapes: Path) -> None:
    """train_stack on a four-class folder builds four-output members that know the names."""
    from lenetish import train_stack

    trained = train_stack("seed-adam", shapes, seeds=[0, 1], epochs=1, device="cpu", progress=False)
    (member, _) = trained.stack.unstack()
    assert member.fc2.out_features == len(SHAPES)  # type: ignore[union-attr]
    assert predict(member, torch.zeros(1, 28, 28)).classes == SHAPES


def test_train_and_test_folders_are_used_as_given(tmp_path: Path) -> None:
    """root/train and root/test become the two splits, nothing held out."""
    write_shapes(tmp_path / "train", per_class=5)
    write_shapes(tmp_path / "test", per_class=2, seed=3)
    loaders = make_loaders(tmp_path, batch_size=8)
    assert (loaders.train.num_samples, loaders.test.num_samples) == (20, 8)


def test_weights_keep_the_record_so_a_loaded_model_predicts_files_alike(
    trained: nn.Module, shapes: Path, tmp_path: Path
) -> None:
    """save_weights/load_model carry the preparation and names: the same labels on files."""
    save_weights(trained, tmp_path / "shapes.safetensors")
    loaded = load_weights(ShapeNet(), tmp_path / "shapes.safetensors")
    paths = [str(path) for path in sorted(shapes.rglob("*.png"))[:20]]
    assert torch.equal(predict(loaded, paths).labels, predict(trained, paths).labels)
    assert predict(loaded, paths).classes == SHAPES


def test_arrays_hold_out_a_fifth_of_each_class() -> None:
    """(images, labels) arrays: the test split is a fixed fifth of every class."""
    pictures = torch.randint(0, 256, (100, 1, 28, 28), dtype=torch.uint8)
    labels = torch.arange(100) % 4
    loaders = make_loaders((pictures.numpy(), labels.numpy()), batch_size=10)
    test_labels = torch.cat([batch_labels for _, batch_labels in loaders.test])
    assert torch.bincount(test_labels).tolist() == [5, 5, 5, 5]
    assert loaders.info.classes == ("0", "1", "2", "3") and loaders.source is not None
    assert str(loaders.source) == "the arrays given"


def test_a_mapping_of_splits_and_float_pixels_are_taken() -> None:
    """{'train': ..., 'test': ...} gives both splits; floats in [0, 1] are taken as pixels."""
    train = (torch.rand(30, 28, 28), torch.arange(30) % 3)
    test = (torch.rand(6, 28, 28), torch.arange(6) % 3)
    loaders = make_loaders({"train": train, "test": test}, batch_size=6, classes=["a", "b", "c"])
    assert (loaders.train.num_samples, loaders.test.num_samples) == (30, 6)
    assert loaders.info.classes == ("a", "b", "c")


class Pictures(Dataset[tuple[Image.Image, int]]):
    """A user's Dataset of PIL images with torchvision's ``classes`` attribute."""

    classes: ClassVar[list[str]] = ["dark", "light"]

    def __len__(self) -> int:
        return 20

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return Image.new("RGB", (40 + index, 30), (20, 20, 20) if index % 2 else (220,) * 3), (
            1 - index % 2
        )


def test_a_dataset_of_pil_images_is_decoded_once_with_its_class_names() -> None:
    """A map-style Dataset of (PIL image, label) items gives a TensorLoader and the names."""
    loaders = make_loaders(Pictures(), batch_size=4)
    assert loaders.info.classes == ("dark", "light")
    assert loaders.train.num_samples + loaders.test.num_samples == 20


def test_torchvision_image_folder_is_taken_as_a_dataset(shapes: Path) -> None:
    """Torchvision's ImageFolder without a transform reads like the folder itself."""
    direct = make_loaders(shapes, batch_size=64)
    through = make_loaders(torchvision.datasets.ImageFolder(str(shapes)), batch_size=64)
    assert through.info.classes == direct.info.classes
    assert through.train.num_samples == direct.train.num_samples


def test_a_fit_on_a_plain_dataloader_says_the_model_will_not_know_its_data(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One WARNING at fit time names make_loaders and data_info; predict warns again."""
    data = TensorDataset(torch.randn(16, 1, 28, 28), torch.randint(0, 4, (16,)))
    model = ShapeNet()
    with caplog.at_level(logging.WARNING, logger="lenetish"):
        Trainer(model, epochs=1, device="cpu", progress=False).fit(DataLoader(data, batch_size=8))
        fitted = [r.message for r in caplog.records if "records no dataset" in r.message]
        predict(model, torch.zeros(2, 28, 28))
    assert len(fitted) == 1 and "make_loaders(" in fitted[0] and "trainer.data_info" in fitted[0]
    assert any("trained on data that records no dataset" in r.message for r in caplog.records)


def test_a_fit_given_data_info_predicts_with_it() -> None:
    """trainer.data_info set for a plain loader: predict uses its names and preparation."""
    info = DatasetInfo("custom", "", 0.5, 0.25, SHAPES, "resize")
    data = TensorDataset(torch.randn(16, 1, 28, 28), torch.randint(0, 4, (16,)))
    model = ShapeNet()
    trainer = Trainer(model, epochs=1, device="cpu", progress=False)
    trainer.data_info = info
    trainer.fit(DataLoader(data, batch_size=8))
    assert predict(model, Image.new("L", (50, 30), 200)).classes == SHAPES


def test_hold_out_keeps_a_class_of_one() -> None:
    """A class with one sample stays in training; the held-out part is fixed."""
    kept, held = hold_out(torch.tensor([0, 0, 0, 0, 0, 1]))
    assert 5 in kept.tolist() and len(held) == 1
    assert torch.equal(held, hold_out(torch.tensor([0, 0, 0, 0, 0, 1]))[1])


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        ({"train": None}, InvalidArgumentError, "exactly the keys 'train' and 'test'"),
        ((torch.zeros(5, 32, 32), torch.zeros(5)), InputShapeError, r"resize them to 28x28"),
        ((torch.zeros(5, 3, 28, 28), torch.zeros(5)), InputShapeError, "convert colour to grey"),
        ((torch.full((5, 28, 28), 2.0), torch.zeros(5)), InvalidInputError, r"outside \[0, 1\]"),
        ((torch.zeros(5, 28, 28), torch.zeros(4)), InputShapeError, "one class index per"),
        ((torch.rand(5, 28, 28), torch.zeros(5)), InvalidInputError, "integer class indices"),
        ((torch.rand(5, 28, 28), -torch.ones(5).long()), InvalidInputError, "start at 0"),
        ((torch.rand(2, 28, 28), torch.arange(2)), InvalidInputError, "too few pictures"),
        ((torch.zeros(9, 28, 28), torch.arange(9) % 3), InvalidInputError, "all of one value"),
    ],
)
def test_wrong_data_is_refused_with_the_fix(data: Any, error: type[Exception], match: str) -> None:
    """Data of the wrong shape, kind or range raises a named error saying what to do."""
    with pytest.raises(error, match=match):
        make_loaders(data)


def test_a_folder_of_one_class_is_refused(tmp_path: Path) -> None:
    """A single class sub-folder is no classification data: InvalidArgumentError."""
    (tmp_path / "only").mkdir()
    Image.new("L", (30, 30), 9).save(tmp_path / "only" / "a.png")
    with pytest.raises(InvalidArgumentError, match="needs a sub-folder per class"):
        make_loaders(tmp_path)


def test_a_test_folder_with_unknown_classes_is_refused(tmp_path: Path) -> None:
    """test/ naming a class train/ lacks is refused before anything is decoded."""
    write_shapes(tmp_path / "train", per_class=2)
    write_shapes(tmp_path / "test", per_class=1)
    (tmp_path / "test" / "star").mkdir()
    Image.new("L", (30, 30), 9).save(tmp_path / "test" / "star" / "s.png")
    with pytest.raises(InvalidArgumentError, match=r"classes the training folder lacks \(star\)"):
        make_loaders(tmp_path)


def test_evaluate_counts_the_classes_the_model_gives(trained: nn.Module, shapes: Path) -> None:
    """Evaluate without num_classes sizes the confusion matrix by the model's outputs."""
    result = evaluate(trained, make_loaders(shapes, batch_size=32).test)
    assert result.confusion.shape == (4, 4)
