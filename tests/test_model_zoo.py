"""User-style networks (tests/zoo_models.py) through every path; each passes or names its error.

The matrix is models x paths (fit with each execution option, resume, evaluate, predict,
ModelStack, export, 2-process fits); :func:`_expected` says which cells must refuse, with
which error and message. Every model is also checked to be left as found (weight strides, type,
compiled state, train/eval mode of every submodule) by ``fit``, ``evaluate`` and ``predict``,
and ``predict`` from 8 threads at once on one train-mode model.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file
from torch import Tensor, nn

from lenetish import (
    LenetishError,
    ModelCheckpoint,
    ModelStack,
    Trainer,
    UnsupportedModelError,
    evaluate,
    export_model,
    load_weights,
    predict,
)
from lenetish.saving.export import EXPORT_FORMATS
from tests.test_distributed import TORCHRUN, _run
from tests.training_helpers import rows_without_seconds
from tests.zoo_models import ZOO, build

Batches = list[tuple[Tensor, Tensor]]
Expected = tuple[type[LenetishError], str] | None

MODELS = list(ZOO)
#: Models whose forward returns something other than one tensor of class scores.
NOT_A_TENSOR = {"tuple": "tuple", "dict": "dict"}
#: Every model but ResNet-18, which is too slow for the paths that train k copies.
SMALL = [name for name in MODELS if name != "resnet18"]
#: MODELS with ResNet-18 marked slow, for the paths where it costs most: checkpoints of its 11M
#: parameters written and loaded, or six fits and predictions in a row (8-11 s on 2 busy cores).
MODELS_HEAVY_RESNET_SLOW = [
    pytest.param(name, marks=pytest.mark.slow) if name == "resnet18" else name for name in MODELS
]
FIT_OPTIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "bf16_mixed": {"precision": "bf16-mixed"},
    "channels_last_true": {"channels_last": True},
    "channels_last_false": {"channels_last": False},
    "channels_last_auto": {"channels_last": "auto"},
    "deterministic": {"deterministic": True},
}
#: The 2-process fits: NAME (channels_last="auto") or NAME@channels_last (True); the run
#: that must fail goes last, as a failed fit leaves its process unable to wait for the other.
DISTRIBUTED = [
    "blog",
    "batchnorm",
    "float64_buffer",
    "examples@channels_last",
    "blog@channels_last",
]


def _expected(name: str, path: str) -> Expected:
    """The named error the cell (model ``name``, ``path``) must raise, or None if it must pass."""
    if name in NOT_A_TENSOR and path not in ("export_safetensors", "export_state_dict"):
        # A weights-only export never runs the model; everything else needs one tensor.
        return (
            UnsupportedModelError,
            rf"returned a {NOT_A_TENSOR[name]}\b.*return only that from forward",
        )
    # A plain fit runs the blog's .view network through its reshape twin; a stack and a
    # multi-process fit (laid out before the first batch) cannot.
    if name == "blog" and path.endswith(("stack_channels_last_true", "@channels_last")):
        return UnsupportedModelError, r"\.reshape|torch\.flatten"
    return None


def _outcome(name: str, path: str) -> AbstractContextManager[Any]:
    """``pytest.raises`` of the cell's expected error, or a context that expects nothing."""
    expected = _expected(name, path)
    if expected is None:
        return nullcontext()
    error, message = expected
    return pytest.raises(error, match=message)


def _batches(name: str, *, seed: int = 0) -> Batches:
    """Normalised random images with labels: 64 in batches of 16 (ResNet-18: 8 in 4s)."""
    count, size = (8, 4) if name == "resnet18" else (64, 16)
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(count, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (count,), generator=generator)
    return [(images[i : i + size], labels[i : i + size]) for i in range(0, count, size)]


def _trainer(model: nn.Module, **options: Any) -> Trainer:
    """A quiet one-epoch CPU trainer."""
    return Trainer(model, **{"epochs": 1, "device": "cpu", "progress": False, **options})


def _raw_pixels(count: int = 6) -> Tensor:
    """uint8 ``(count, 28, 28)`` images: a bright bar on noise (what predict takes)."""
    generator = torch.Generator().manual_seed(3)
    images = torch.randint(0, 40, (count, 28, 28), generator=generator, dtype=torch.uint8)
    for index in range(count):
        images[index, 4 + 3 * index : 7 + 3 * index, 6:22] = 255
    return images


def _snapshot(model: nn.Module) -> dict[str, Any]:
    """What must be as found after a call: type, compiled state, modes, tensor layouts."""
    tensors = itertools.chain(model.named_parameters(), model.named_buffers())
    return {
        "type": type(model),
        "compiled": getattr(model, "_compiled_call_impl", None),
        "modes": [(name, m.training) for name, m in model.named_modules()],
        "tensors": {name: (t.stride(), t.dtype, t.device) for name, t in tensors},
    }


def _reference(model: nn.Module, images: Tensor) -> Tensor:
    """The model's own eval-mode fp32 outputs on ``images`` (its mode restored)."""
    mode = model.training
    try:
        with torch.no_grad():
            return model.eval()(images)
    finally:
        model.train(mode)


# ---- fits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("option", list(FIT_OPTIONS))
@pytest.mark.parametrize("name", MODELS)
def test_fit(name: str, option: str) -> None:
    """fit() with each execution option trains the model or names what to change."""
    model = build(name)
    with _outcome(name, f"fit_{option}"):
        history = _trainer(model, **FIT_OPTIONS[option]).fit(_batches(name))
        assert [row["epoch"] for row in history] == [1]
        assert np.isfinite(history[-1]["loss"])


@pytest.mark.parametrize("name", ["mlp", pytest.param("blog", marks=pytest.mark.slow)])
def test_fit_compiled(name: str) -> None:
    """fit(compile=True) trains, and leaves the user's model uncompiled afterwards."""
    model = build(name)
    before = _snapshot(model)
    history = _trainer(model, compile=True).fit(_batches(name))
    assert np.isfinite(history[-1]["loss"])
    assert _snapshot(model) == before  # compiled state included: None again


@pytest.mark.parametrize("name", MODELS_HEAVY_RESNET_SLOW)
def test_resume_from_last_checkpoint(name: str, tmp_path: Path) -> None:
    """A fit resumed from ModelCheckpoint's last.pt keeps epoch 1 and runs epoch 2."""
    batches = _batches(name)
    with _outcome(name, "resume"):
        saver = ModelCheckpoint(tmp_path, monitor="val_loss")
        first = _trainer(build(name), callbacks=[saver]).fit(batches, batches[:1])
        assert (tmp_path / "last.pt").is_file()
        saver = ModelCheckpoint(tmp_path, monitor="val_loss")  # as the docs resume it
        resumed = _trainer(build(name, seed=1), epochs=2, callbacks=[saver])
        history = resumed.fit(batches, batches[:1], resume=tmp_path / "last.pt")
        assert [row["epoch"] for row in history] == [1, 2]
        assert history[0]["val_loss"] == first[0]["val_loss"]
        assert np.isfinite(history[-1]["loss"])


# ---- evaluate and predict -------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_evaluate(name: str) -> None:
    """evaluate() scores every sample of the loader."""
    batches = _batches(name)
    with _outcome(name, "evaluate"):
        result = evaluate(build(name), batches)
        assert result.total == sum(len(labels) for _, labels in batches)
        assert np.isfinite(result.loss)


def _png_files(folder: Path) -> list[Path]:
    """Two digit-like PNGs (a '1' and a '0', dark on light, larger than 28x28)."""
    one = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(one).line([(32, 8), (32, 56)], fill=0, width=7)
    zero = Image.new("L", (48, 64), 255)
    ImageDraw.Draw(zero).ellipse([8, 8, 40, 56], outline=0, width=6)
    paths = [folder / "one.png", folder / "zero.png"]
    for image, path in zip([one, zero], paths, strict=True):
        image.save(path)
    return paths


@pytest.mark.parametrize("kind", ["tensor", "numpy", "png"])
@pytest.mark.parametrize("name", MODELS)
def test_predict(name: str, kind: str, tmp_path: Path) -> None:
    """predict() on a tensor, a numpy array and PNG files gives one distribution per image."""
    inputs: Any = {
        "tensor": lambda: _raw_pixels(),
        "numpy": lambda: _raw_pixels().unsqueeze(1).numpy(),
        "png": lambda: [str(path) for path in _png_files(tmp_path)],
    }[kind]()
    with _outcome(name, f"predict_{kind}"):
        model = build(name)
        prediction = predict(model, inputs)
        count = len(inputs)
        assert prediction.labels.shape == (count,)
        assert prediction.probabilities.shape == (count, 10)
        torch.testing.assert_close(prediction.probabilities.sum(1), torch.ones(count))
        if name == "hooked":  # the user's hook ran, and kept a real tensor
            assert model.activations["fc"].shape == (count, 10)  # type: ignore[index]


# ---- ModelStack -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SMALL)
def test_stack_fit_and_evaluate(name: str) -> None:
    """A ModelStack of two copies trains and evaluates member by member."""
    stack = ModelStack(ZOO[name], 2)
    batches = _batches(name)
    with _outcome(name, "stack"):
        history = _trainer(stack).fit(batches)
        assert {"loss/0", "loss/1"} <= set(history[-1])
        result = evaluate(stack, batches)
        assert result.total == 64 and len(result.member_accuracy) == 2


@pytest.mark.parametrize("name", ["blog", "mlp", "tuple"])
def test_stack_fit_channels_last_true(name: str) -> None:
    """A stack fit with channels_last=True trains, or names the members' own problem."""
    with _outcome(name, "stack_channels_last_true"):
        history = _trainer(ModelStack(ZOO[name], 2), channels_last=True).fit(_batches(name))
        assert np.isfinite(history[-1]["loss"])


# ---- export ---------------------------------------------------------------------------------


_SLOW_EXPORTS = {("resnet18", "torchscript"), ("resnet18", "onnx")}


def _run_exported(path: Path, format: str, name: str, images: Tensor) -> Tensor:
    """Run the exported file with its own runtime (or load it into a fresh network)."""
    if format == "safetensors":
        return _reference(load_weights(build(name, seed=1), path), images)
    if format == "state_dict":
        fresh = build(name, seed=1)
        fresh.load_state_dict(torch.load(path, weights_only=True))
        return _reference(fresh, images)
    if format == "pt2":
        return torch.export.load(path).module()(images)  # type: ignore[no-any-return]
    if format == "torchscript":
        return torch.jit.load(str(path))(images)  # type: ignore[no-any-return]
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(str(path))
    (outputs,) = session.run(None, {"images": images.numpy()})
    return torch.from_numpy(outputs)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize(
    ("name", "format"),
    [
        pytest.param(
            name,
            format,
            id=f"{name}-{format}",
            # tracing ResNet-18 to TorchScript or ONNX takes 3-8 s; pt2 covers its graph
            marks=[pytest.mark.slow] if (name, format) in _SLOW_EXPORTS else [],
        )
        for name in MODELS
        for format in EXPORT_FORMATS
    ],
)
def test_export(name: str, format: str, tmp_path: Path) -> None:
    """export_model writes a file whose own runtime gives the model's outputs."""
    model = build(name).train()
    images = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    before = _snapshot(model)
    with _outcome(name, f"export_{format}"):
        path = export_model(model, tmp_path / f"model{EXPORT_FORMATS[format]}", format=format)
        outputs = _run_exported(path, format, name, images)
        if name not in NOT_A_TENSOR:
            torch.testing.assert_close(outputs, _reference(model, images), rtol=1e-4, atol=1e-4)
    assert _snapshot(model) == before


# ---- the user's model is left as found ------------------------------------------------------


@pytest.mark.parametrize("name", MODELS_HEAVY_RESNET_SLOW)
def test_model_left_as_found(name: str) -> None:
    """fit, evaluate and predict leave weight strides, type, compiled state and modes as found."""
    model = build(name)
    batches = _batches(name)
    calls = [
        ("fit_defaults", lambda: _trainer(model).fit(batches), False),
        ("fit_defaults", lambda: _trainer(model).fit(batches), True),
        ("fit_channels_last_true", lambda: _trainer(model, channels_last=True).fit(batches), False),
        ("evaluate", lambda: evaluate(model, batches), True),
        ("predict_tensor", lambda: predict(model, _raw_pixels()), True),
        ("predict_tensor", lambda: predict(model, _raw_pixels()), False),
    ]
    for path, call, mode in calls:
        model.train(mode)
        before = _snapshot(model)
        with _outcome(name, path):
            call()
        assert _snapshot(model) == before, path


@pytest.mark.parametrize("call", ["fit", "evaluate", "predict"])
def test_frozen_submodule_mode_left_as_found(call: str) -> None:
    """A training model with one BatchNorm frozen in eval mode gets both modes back."""
    model = build("batchnorm").train()
    model.features[1].eval()
    before = _snapshot(model)
    batches = _batches("batchnorm")
    {
        "fit": lambda: _trainer(model).fit(batches),
        "evaluate": lambda: evaluate(model, batches),
        "predict": lambda: predict(model, _raw_pixels()),
    }[call]()
    assert _snapshot(model)["modes"] == before["modes"]


def test_auto_layout_trains_a_view_model_through_its_reshape_twin(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """channels_last='auto' trains the blog's .view network channels-last and says how."""
    with caplog.at_level(logging.INFO, logger="lenetish"):
        _trainer(build("blog")).fit(_batches("blog"))
    lines = [r.getMessage() for r in caplog.records if "channels-last" in r.getMessage()]
    assert len(lines) == 1 and ".view run as .reshape" in lines[0], caplog.text


@pytest.mark.parametrize("name", MODELS)
def test_predict_from_eight_threads(name: str) -> None:
    """8 threads predicting with one train-mode model get its eval-mode result; it stays so."""
    model = build(name)
    images = _raw_pixels(8)
    with _outcome(name, "threads"):
        reference = predict(model.eval(), images).probabilities
    model.train()
    start = threading.Barrier(8)

    def one(_: int) -> Tensor | BaseException:
        start.wait()
        try:
            return predict(model, images).probabilities
        except LenetishError as error:
            return error

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    for result in results:
        expected = _expected(name, "threads")
        if expected is None:
            assert isinstance(result, Tensor), result
            torch.testing.assert_close(result, reference)
        else:
            assert isinstance(result, expected[0]) and re.search(expected[1], str(result))
    assert all(m.training for m in model.modules())


# ---- two processes --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def zoo_two_ranks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One 2-process Gloo run training each model of DISTRIBUTED for an epoch; its folder."""
    out = tmp_path_factory.mktemp("zoo_two_ranks")
    result = _run([*TORCHRUN, "-m", "tests.zoo_models", str(out), *DISTRIBUTED])
    assert result.returncode == 0, result.stderr[-4000:]
    yield out


@pytest.mark.slow
@pytest.mark.parametrize("spec", DISTRIBUTED)
def test_two_process_fit(spec: str, zoo_two_ranks: Path) -> None:
    """A 2-process fit ends with identical weights and History on both ranks, or names why not."""
    name, at, option = spec.partition("@")
    expected = _expected(name, f"distributed{at}{option}")
    if expected is not None:
        for rank in (0, 1):
            error_file = zoo_two_ranks / f"{spec}-error{rank}.json"
            assert error_file.is_file(), f"rank {rank} did not raise {expected[0].__name__}"
            failure = json.loads(error_file.read_text())
            assert failure["type"] == expected[0].__name__, failure
            assert re.search(expected[1], failure["message"]), failure
        return
    for rank in (0, 1):
        error_file = zoo_two_ranks / f"{spec}-error{rank}.json"
        assert not error_file.exists(), error_file.read_text()
    first = load_file(zoo_two_ranks / f"{spec}-rank0.safetensors")
    second = load_file(zoo_two_ranks / f"{spec}-rank1.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)
    rows = [rows_without_seconds(zoo_two_ranks / f"{spec}-history{rank}.json") for rank in (0, 1)]
    assert rows[0] == rows[1] and len(rows[0]) == 1
