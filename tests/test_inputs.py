"""Tests of lenetish.evaluation.inputs and predict: every input kind and every bad input."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from lenetish import (
    DATASETS,
    InputShapeError,
    InvalidArgumentError,
    InvalidImageError,
    InvalidInputError,
    MNISTConvNet,
    predict,
)
from lenetish.evaluation.inputs import mnistify, mnistify_files, prepare_inputs, printable_path

MNIST = DATASETS["mnist"]


def _digit_on_white(width: int = 120, height: int = 200) -> Image.Image:
    """A dark vertical stroke with a foot, on a white background, off centre."""
    pixels = np.full((height, width), 255, dtype=np.uint8)
    pixels[20:170, 30:45] = 10  # the stem
    pixels[150:170, 30:90] = 10  # the foot
    return Image.fromarray(pixels, mode="L")


def test_tensor_shapes_become_a_normalised_batch() -> None:
    """(28, 28), (N, 28, 28) and (N, 1, 28, 28) tensors become (N, 1, 28, 28) normalised."""
    single = torch.full((28, 28), 255, dtype=torch.uint8)
    assert prepare_inputs(single, MNIST).shape == (1, 1, 28, 28)
    assert prepare_inputs(torch.zeros(3, 28, 28), MNIST).shape == (3, 1, 28, 28)
    batch = prepare_inputs(torch.ones(2, 1, 28, 28), MNIST)
    torch.testing.assert_close(batch, torch.full((2, 1, 28, 28), (1 - 0.1307) / 0.3081))


def test_uint8_and_float_inputs_agree() -> None:
    """uint8 0-255 and float 0-1 versions of the same image give the same input."""
    pixels = torch.randint(0, 256, (2, 28, 28), dtype=torch.uint8)
    torch.testing.assert_close(
        prepare_inputs(pixels, MNIST), prepare_inputs(pixels.float() / 255, MNIST)
    )


def test_numpy_arrays_are_accepted() -> None:
    """A numpy array is read like a tensor."""
    assert prepare_inputs(np.zeros((4, 28, 28), dtype=np.uint8), MNIST).shape == (4, 1, 28, 28)


def test_pil_image_and_file_path_are_prepared_like_mnist(tmp_path: Path) -> None:
    """A PIL image and the same image saved as PNG give the same MNIST-style input."""
    image = _digit_on_white()
    image.save(tmp_path / "digit.png")
    from_pil = prepare_inputs(image, MNIST)
    from_file = prepare_inputs(str(tmp_path / "digit.png"), MNIST)
    assert from_pil.shape == (1, 1, 28, 28)
    torch.testing.assert_close(from_pil, from_file)


def test_a_list_mixes_input_kinds(tmp_path: Path) -> None:
    """A list of a tensor, an array, a PIL image and a path is one batch in that order."""
    _digit_on_white().save(tmp_path / "d.png")
    inputs = [
        torch.zeros(28, 28),
        np.zeros((2, 28, 28), np.uint8),
        _digit_on_white(),
        tmp_path / "d.png",
    ]
    assert prepare_inputs(inputs, MNIST).shape == (5, 1, 28, 28)


def test_mnistify_inverts_crops_scales_and_centres() -> None:
    """Dark ink on white becomes white ink on black, within 20x20, centred by mass."""
    digit = mnistify(_digit_on_white()).float()
    assert digit.shape == (28, 28)
    assert digit[0].max() == 0 and digit[:, 0].max() == 0  # black background
    rows, columns = torch.nonzero(digit > 0, as_tuple=True)
    assert int(rows.max() - rows.min()) + 1 <= 20 and int(columns.max() - columns.min()) + 1 <= 20
    grid_y, grid_x = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    centre = ((grid_y * digit).sum() / digit.sum(), (grid_x * digit).sum() / digit.sum())
    assert abs(float(centre[0]) - 14) < 1.0 and abs(float(centre[1]) - 14) < 1.0


def test_mnistify_keeps_the_aspect_ratio() -> None:
    """A tall thin stroke stays tall and thin: 20 pixels high, a few wide."""
    pixels = np.zeros((300, 300), dtype=np.uint8)
    pixels[50:250, 140:160] = 255  # 200 x 20, white on black
    digit = mnistify(Image.fromarray(pixels))
    rows, columns = torch.nonzero(digit > 64, as_tuple=True)
    assert int(rows.max() - rows.min()) + 1 == 20
    assert 1 <= int(columns.max() - columns.min()) + 1 <= 3


def test_mnistify_puts_transparent_backgrounds_on_white() -> None:
    """An RGBA drawing with a transparent background reads as dark ink on white."""
    rgba = np.zeros((60, 60, 4), dtype=np.uint8)
    rgba[10:50, 25:35] = (0, 0, 0, 255)  # opaque black stroke, the rest transparent
    digit = mnistify(Image.fromarray(rgba, mode="RGBA"))
    assert digit[14, 14] > 200 and digit[0, 0] == 0


def test_blank_image_is_refused() -> None:
    """An image of one colour raises InvalidInputError."""
    with pytest.raises(InvalidInputError, match="one colour: there is no digit"):
        mnistify(Image.new("L", (40, 40), 255))


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((784,), r"\(784,\)"),
        ((2, 2, 1, 28, 28), r"\(2, 2, 1, 28, 28\)"),
        ((2, 32, 32), r"\(2, 32, 32\)"),
    ],
)
def test_wrong_rank_or_size_is_refused(shape: tuple[int, ...], expected: str) -> None:
    """A tensor of the wrong rank or size raises InputShapeError with its shape."""
    with pytest.raises(InputShapeError, match=rf"expected images of shape.*got {expected}"):
        prepare_inputs(torch.zeros(shape), MNIST)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_and_inf_are_refused(bad: float) -> None:
    """NaN or infinite pixels raise InvalidInputError."""
    images = torch.zeros(2, 28, 28)
    images[1, 3, 3] = bad
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        prepare_inputs(images, MNIST)


def test_unsupported_dtype_is_refused() -> None:
    """Integer pixels other than uint8 raise InvalidInputError naming the dtype."""
    with pytest.raises(InvalidInputError, match=r"dtype torch.int64 are not supported"):
        prepare_inputs(torch.zeros(28, 28, dtype=torch.int64), MNIST)


@pytest.mark.parametrize("empty", [torch.zeros(0, 28, 28), []])
def test_empty_batch_is_refused(empty: object) -> None:
    """An empty tensor or an empty list raises InvalidInputError."""
    with pytest.raises(InvalidInputError, match="the batch is empty"):
        prepare_inputs(empty, MNIST)


def _sparse_coo() -> torch.Tensor:
    return torch.zeros(2, 28, 28).to_sparse()


def _sparse_csr() -> torch.Tensor:
    return torch.zeros(28, 28).to_sparse_csr()


def _meta() -> torch.Tensor:
    return torch.zeros(2, 28, 28, device="meta")


def _nested() -> torch.Tensor:
    return torch.nested.nested_tensor([torch.zeros(28, 28), torch.zeros(28, 28)])


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch: sparse CSR and nested are beta
@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_sparse_coo, r"layout torch.sparse_coo, not a dense one; .*images.to_dense\(\)"),
        (_sparse_csr, r"layout torch.sparse_csr, not a dense one; pass a dense CPU or GPU"),
        (_meta, r"a meta tensor of shape \(2, 28, 28\): .*no pixel values; pass a dense"),
        (_nested, r"a nested tensor .*; pass a dense \(N, 28, 28\) tensor, e.g. torch.stack"),
    ],
)
def test_sparse_meta_and_nested_tensors_are_refused(
    make: Callable[[], torch.Tensor], expected: str
) -> None:
    """A sparse, meta or nested tensor is named, not torch's NotImplementedError."""
    with pytest.raises(InvalidInputError, match=expected):
        predict(MNISTConvNet(), make())
    with pytest.raises(InvalidInputError, match=expected):
        prepare_inputs([torch.zeros(28, 28), make()], MNIST)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    """A path that does not exist raises InvalidImageError naming it."""
    with pytest.raises(InvalidImageError, match=r"nope.png does not exist"):
        prepare_inputs(tmp_path / "nope.png", MNIST)


def test_non_image_file_is_refused(tmp_path: Path) -> None:
    """A file that is not an image raises InvalidImageError."""
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(InvalidImageError, match=r"notes.png is not an image file"):
        prepare_inputs(tmp_path / "notes.png", MNIST)


def test_huge_image_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An image above the pixel limit is refused before it is decoded."""
    monkeypatch.setattr("lenetish._images.MAX_PIXELS", 1000)
    Image.new("L", (100, 100)).save(tmp_path / "big.png")
    with pytest.raises(InvalidImageError, match=r"100x100 pixels, more than the 1,000"):
        prepare_inputs(tmp_path / "big.png", MNIST)


def test_unknown_input_type_is_refused() -> None:
    """Something that is no image at all raises InvalidInputError naming its type."""
    with pytest.raises(InvalidInputError, match="cannot predict on a dict"):
        prepare_inputs({"image": 1}, MNIST)


def test_predict_returns_labels_and_probabilities() -> None:
    """Predict gives int64 labels (N,) and probability rows summing to one."""
    torch.manual_seed(0)
    prediction = predict(MNISTConvNet(), torch.rand(5, 28, 28))
    assert prediction.labels.dtype == torch.int64 and prediction.labels.shape == (5,)
    torch.testing.assert_close(prediction.probabilities.sum(dim=1), torch.ones(5))
    assert torch.equal(prediction.labels, prediction.probabilities.argmax(dim=1))
    assert torch.equal(prediction.confidence, prediction.probabilities.max(dim=1).values)


def test_predict_with_a_list_of_models_averages_probabilities() -> None:
    """An ensemble's probabilities are the mean of its members'."""
    torch.manual_seed(0)
    models = [MNISTConvNet(), MNISTConvNet()]
    images = torch.rand(4, 28, 28)
    members = [predict(model, images).probabilities for model in models]
    torch.testing.assert_close(predict(models, images).probabilities, (members[0] + members[1]) / 2)


def test_predict_restores_the_training_mode() -> None:
    """A model in training mode is back in training mode after predict."""
    model = MNISTConvNet(dropout=0.5).train()
    predict(model, torch.rand(2, 28, 28))
    assert model.training


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"dataset": "emnist"}, "dataset='emnist' is not supported"),
    ],
)
def test_predict_settings_are_checked(options: dict[str, object], message: str) -> None:
    """Bad predict settings raise InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError, match=message):
        predict(MNISTConvNet(), torch.rand(1, 28, 28), **options)  # type: ignore[arg-type]


def test_predict_refuses_something_that_is_not_a_model() -> None:
    """A list that holds no models raises InvalidArgumentError."""
    with pytest.raises(InvalidArgumentError, match="a non-empty list of them"):
        predict([], torch.rand(1, 28, 28))


@settings(max_examples=20, deadline=None)
@given(count=st.integers(2, 60), split=st.integers(1, 59), batch_size=st.integers(1, 64))
def test_batch_prediction_equals_its_parts(count: int, split: int, batch_size: int) -> None:
    """Predicting a batch equals predicting its two parts and concatenating."""
    split = min(split, count - 1)
    torch.manual_seed(count)
    model = MNISTConvNet()
    images = torch.rand(count, 28, 28)
    whole = predict(model, images, batch_size=batch_size, precision="32")
    parts = [
        predict(model, images[:split], precision="32"),
        predict(model, images[split:], precision="32"),
    ]
    joined = torch.cat([part.probabilities for part in parts])
    torch.testing.assert_close(whole.probabilities, joined, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(whole.probabilities.sum(dim=1), torch.ones(count))
    top2 = whole.probabilities.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-4  # labels can only differ on near-ties
    assert torch.equal(whole.labels[clear], torch.cat([p.labels for p in parts])[clear])


def test_predict_with_tta_still_sums_to_one() -> None:
    """Test-time augmentation gives probability rows that sum to one."""
    torch.manual_seed(0)
    prediction = predict(MNISTConvNet(), torch.rand(3, 28, 28), tta=True)
    torch.testing.assert_close(prediction.probabilities.sum(dim=1), torch.ones(3))


def _grey_digit() -> np.ndarray:
    """An 8-bit dark digit with a mid-grey stroke on white: three grey levels, not two."""
    pixels = np.asarray(_digit_on_white()).copy()
    pixels[20:170, 60:70] = 128
    return pixels


def test_sixteen_bit_png_is_scaled_not_clamped(tmp_path: Path) -> None:
    """A 16-bit greyscale PNG (mode I;16) gives the digit its 8-bit version gives."""
    pixels = _grey_digit()
    Image.fromarray(pixels.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as opened:
        assert opened.mode in ("I;16", "I")
    eight_bit = prepare_inputs(Image.fromarray(pixels, mode="L"), MNIST)
    torch.testing.assert_close(prepare_inputs(tmp_path / "deep.png", MNIST), eight_bit)


def test_thirty_two_bit_image_in_the_sixteen_bit_range_is_scaled() -> None:
    """A mode I image holding 16-bit values is scaled like a 16-bit one."""
    pixels = _grey_digit()
    wide = Image.fromarray(pixels.astype(np.int32) * 257, mode="I")
    eight_bit = prepare_inputs(Image.fromarray(pixels, mode="L"), MNIST)
    torch.testing.assert_close(prepare_inputs(wide, MNIST), eight_bit)


def _folder_with_one_blank(folder: Path, count: int = 5) -> list[Path]:
    paths = []
    for index in range(count):
        path = folder / f"digit-{index:03d}.png"
        (Image.new("L", (40, 40), 255) if index == 3 else _digit_on_white()).save(path)
        paths.append(path)
    return paths


def test_blank_image_in_a_batch_of_paths_names_its_file(tmp_path: Path) -> None:
    """One blank image among many files raises InvalidInputError naming that file."""
    paths = _folder_with_one_blank(tmp_path)
    with pytest.raises(InvalidInputError, match=r"digit-003\.png: the image is of one colour"):
        prepare_inputs(paths, MNIST)


def test_mnistify_files_skips_bad_files_and_says_which(tmp_path: Path) -> None:
    """With skip_bad, the good files are prepared and the bad one is reported by name."""
    paths = _folder_with_one_blank(tmp_path)
    (tmp_path / "digit-004.png").write_text("not a picture")
    kept, digits, skipped = mnistify_files(paths, skip_bad=True)
    assert [p.name for p in kept] == ["digit-000.png", "digit-001.png", "digit-002.png"]
    assert digits.shape == (3, 28, 28) and digits.dtype == torch.uint8
    assert [message.split(":")[0].split("/")[-1] for message in skipped] == [
        "digit-003.png",
        "digit-004.png is not an image file PIL can read",
    ]


def test_mnistify_files_without_skip_bad_raises_naming_the_file(tmp_path: Path) -> None:
    """Without skip_bad, the first bad file raises an error naming it."""
    with pytest.raises(InvalidInputError, match=r"digit-003\.png: the image is of one colour"):
        mnistify_files(_folder_with_one_blank(tmp_path))


def test_non_utf8_file_name_is_printable() -> None:
    """A file name with bytes that are not UTF-8 shows each such byte as an escape."""
    name = os.fsdecode(b"digit-\xff\xfe.png")
    assert printable_path(name) == "digit-\\xff\\xfe.png"


def test_error_naming_a_non_utf8_file_can_be_printed(tmp_path: Path) -> None:
    """The error for a missing non-UTF-8 file name encodes as UTF-8 without failing."""
    missing = tmp_path / os.fsdecode(b"\xff.png")
    with pytest.raises(InvalidImageError, match=r"\\xff\.png does not exist") as info:
        prepare_inputs(missing, MNIST)
    str(info.value).encode("utf-8")


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("\x1b]0;title\x07.png", "\\x1b]0;title\\x07.png"),
        ("a\nb.png", "a\\x0ab.png"),
        ("\u202egnp.exe", "\\u202egnp.exe"),
        ("tab\there.png", "tab\\x09here.png"),
    ],
    ids=["escape-sequence", "newline", "right-to-left-override", "tab"],
)
def test_control_characters_in_file_names_are_escaped(name: str, shown: str) -> None:
    """Escape sequences, newlines and format characters in a name are shown as escapes."""
    assert printable_path(name) == shown


def test_printable_path_keeps_letters_and_is_idempotent() -> None:
    """Letters of any script stay; escaping an escaped name changes nothing more."""
    assert printable_path("Ñandú-数字.png") == "Ñandú-数字.png"
    once = printable_path("x\x1b.png")
    assert printable_path(once) == once


def test_an_error_naming_a_file_with_a_newline_is_one_line(tmp_path: Path) -> None:
    """The error for a missing file whose name holds a newline names it on one line."""
    with pytest.raises(InvalidImageError, match=r"a\\x0ab\.png does not exist") as info:
        prepare_inputs(tmp_path / "a\nb.png", MNIST)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((28, 28), dtype=object),
        np.full((28, 28), "a"),
        np.full((28, 28), b"a"),
        np.full((28, 28), np.datetime64("2020-01-01")),
        np.full((28, 28), np.timedelta64(1, "s")),
        np.zeros((28, 28), dtype=[("grey", "u1")]),
    ],
    ids=["object", "str", "bytes", "datetime", "timedelta", "structured"],
)
def test_arrays_of_non_numbers_are_refused_by_name(array: np.ndarray) -> None:
    """Object, string, date and structured arrays are an InvalidInputError naming the dtype."""
    with pytest.raises(InvalidInputError, match=r"numpy array of dtype .* holds no pixel values"):
        prepare_inputs(array, MNIST)


def test_a_closed_pil_image_is_refused_by_name() -> None:
    """A PIL image closed before predict is an InvalidInputError saying it was closed."""
    image = Image.new("L", (40, 40), 255)
    image.close()
    with pytest.raises(InvalidInputError, match=r"the PIL image was closed.*keep it open"):
        prepare_inputs(image, MNIST)


def _constant_tiff(path: Path, value: int) -> Path:
    """A 32-bit greyscale (mode I) TIFF holding ``value`` everywhere."""
    Image.fromarray(np.full((40, 40), value, dtype=np.int32), mode="I").save(path)
    return path


@pytest.mark.parametrize("value", [70_000, -5])
def test_a_constant_32_bit_tiff_is_a_blank_image(tmp_path: Path, value: int) -> None:
    """A TIFF of one 32-bit value outside 0..65535 is refused as one colour, no division by 0."""
    path = _constant_tiff(tmp_path / "flat.tif", value)
    with pytest.raises(InvalidInputError, match=r"flat\.tif: the image is of one colour"):
        prepare_inputs(path, MNIST)


def test_skip_bad_skips_a_constant_32_bit_tiff(tmp_path: Path) -> None:
    """With skip_bad, a constant 32-bit TIFF is left out and named, the rest prepared."""
    flat = _constant_tiff(tmp_path / "flat.tif", 70_000)
    pixels = np.full((60, 40), 255, dtype=np.uint8)
    pixels[5:55, 18:23] = 0
    Image.fromarray(pixels).save(tmp_path / "one.png")
    kept, digits, skipped = mnistify_files([flat, tmp_path / "one.png"], skip_bad=True)
    assert [p.name for p in kept] == ["one.png"] and digits.shape == (1, 28, 28)
    assert len(skipped) == 1 and "flat.tif: the image is of one colour" in skipped[0]


def test_a_read_only_array_is_predicted_without_a_warning(recwarn: pytest.WarningsRecorder) -> None:
    """A read-only array (np.frombuffer) needs no torch "not writable" warning."""
    pixels = np.frombuffer(bytes(2 * 28 * 28), dtype=np.uint8).reshape(2, 28, 28)
    assert not pixels.flags.writeable
    predict(MNISTConvNet(), pixels)
    assert not [w for w in recwarn if "not writable" in str(w.message)]
