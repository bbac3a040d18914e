"""Tests of prepare and the input contract of predict: preparation, EXIF, value ranges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lenetish import DATASETS, InvalidInputError, load_split, predict, pretrained
from lenetish.evaluation.prepare import fashionify, mnistify


def _phone_photo(digit: np.ndarray, path: Path) -> None:
    """Save a digit as a phone does: pixels stored turned, an EXIF tag saying how to view them."""
    upright = Image.fromarray(255 - digit).resize((112, 112))  # dark ink on white paper
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # turned a quarter anticlockwise
    exif = stored.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    stored.save(path, exif=exif)


def test_exif_rotated_digits_are_predicted_as_upright(real_mnist: Path, tmp_path: Path) -> None:
    """40 test digits saved rotated with an EXIF tag get the labels of their upright copies."""
    images, _ = load_split(real_mnist, train=False)
    rotated, upright = [], []
    for index in range(40):
        _phone_photo(images[index].numpy(), tmp_path / f"r{index}.jpg")
        Image.fromarray(255 - images[index].numpy()).resize((112, 112)).save(
            tmp_path / f"u{index}.png"
        )
        rotated.append(tmp_path / f"r{index}.jpg")
        upright.append(tmp_path / f"u{index}.png")
    model = pretrained("default")
    assert predict(model, rotated).labels.tolist() == predict(model, upright).labels.tolist()


def test_fashion_pngs_score_like_tensors(fashion_model: torch.nn.Module, tmp_path: Path) -> None:
    """200 Fashion test images as PNG files score within 3 points of the same tensors."""
    images, labels = load_split(
        Path(__file__).parents[2] / "shared/datasets/fashion-mnist", train=False, download=False
    )
    paths = []
    for index in range(200):
        Image.fromarray(images[index].numpy()).save(tmp_path / f"{index}.png")
        paths.append(tmp_path / f"{index}.png")
    by_path = predict(fashion_model, paths).labels
    by_tensor = predict(fashion_model, images[:200]).labels
    path_score = float((by_path == labels[:200]).float().mean())
    tensor_score = float((by_tensor == labels[:200]).float().mean())
    assert tensor_score > 0.6 and abs(path_score - tensor_score) <= 0.03


def test_fashionify_fits_a_large_light_photo() -> None:
    """A garment photographed dark on white, 4x larger, comes back close to its 28x28 original."""
    garment = np.zeros((28, 28), dtype=np.uint8)
    garment[:, 8:20] = 180  # as in the dataset, the longest side spans the 28 pixels
    photo = Image.fromarray(255 - garment).resize((112, 112), Image.Resampling.NEAREST)
    prepared = fashionify(photo).float()
    assert prepared.shape == (28, 28)
    assert float((prepared - torch.from_numpy(garment).float()).abs().mean()) < 12


def test_fashionify_keeps_a_28x28_picture() -> None:
    """A 28x28 light-on-dark picture keeps every pixel."""
    picture = np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8)
    picture[0], picture[-1], picture[:, 0], picture[:, -1] = 0, 0, 0, 0
    assert torch.equal(fashionify(Image.fromarray(picture)), torch.from_numpy(picture))


def test_fashionify_refuses_a_blank_image() -> None:
    """An image of one colour has nothing to classify."""
    with pytest.raises(InvalidInputError, match="one colour: there is nothing in it"):
        fashionify(Image.new("L", (50, 50), 255))


def test_own_preparation_is_used() -> None:
    """prepare= replaces the dataset's preparation for PIL images."""
    calls = []

    def mine(image: object) -> np.ndarray:
        calls.append(image)
        return np.zeros((28, 28), dtype=np.uint8)

    from lenetish import MNISTConvNet

    predict(MNISTConvNet(), Image.new("L", (40, 40)), prepare=mine)
    assert len(calls) == 1


def test_own_preparation_of_the_wrong_size_is_named() -> None:
    """A preparation returning a picture that is not 28x28 is refused, saying so."""
    from lenetish import MNISTConvNet

    with pytest.raises(InvalidInputError, match=r"preparation of a PIL image failed.*\(10, 10\)"):
        predict(MNISTConvNet(), Image.new("L", (40, 40)), prepare=lambda image: np.zeros((10, 10)))


def test_digit_preparation_is_the_mnist_one() -> None:
    """MNIST and KMNIST models get mnistify, Fashion-MNIST models fashionify."""
    from lenetish.evaluation.prepare import preparation_for

    assert preparation_for(DATASETS["kmnist"]) is mnistify
    assert preparation_for(DATASETS["fashion-mnist"]) is fashionify


@pytest.mark.parametrize(
    ("batch", "seen"),
    [
        # Pixels from exactly 0 to 1 (not random ones: the range in the message is fixed).
        (
            (torch.linspace(0, 1, 3136).reshape(4, 28, 28) - 0.1307) / 0.3081,
            r"range from -0.42\d* to 2.8\d*",
        ),
        (torch.linspace(0, 1, 3136).reshape(4, 28, 28) * 255, r"range from 0 to 255"),
    ],
)
def test_out_of_range_floats_are_refused(batch: torch.Tensor, seen: str) -> None:
    """A normalised batch or 0-255 floats raise InvalidInputError naming the range and the fix."""
    from lenetish import MNISTConvNet

    torch.manual_seed(0)
    with pytest.raises(
        InvalidInputError,
        match=rf"raw pixels in \[0, 1\], but these {seen}; "
        r"pass normalized=True",
    ):
        predict(MNISTConvNet(), batch)


def test_normalized_batches_are_used_as_they_are() -> None:
    """normalized=True takes a make_loaders-style batch unchanged: same labels as the model."""
    from lenetish import MNISTConvNet

    torch.manual_seed(0)
    model = MNISTConvNet().eval()
    batch = (torch.rand(8, 1, 28, 28) - 0.1307) / 0.3081
    expected = model(batch).argmax(dim=1)
    assert torch.equal(predict(model, batch, normalized=True, precision="32").labels, expected)


def test_uint8_marked_normalized_is_refused() -> None:
    """uint8 pixels with normalized=True contradict each other and are refused."""
    from lenetish import MNISTConvNet

    with pytest.raises(
        InvalidInputError,
        match=r"uint8 images are raw 0-255 pixels, but "
        r"normalized=True",
    ):
        predict(MNISTConvNet(), torch.zeros(1, 28, 28, dtype=torch.uint8), normalized=True)
