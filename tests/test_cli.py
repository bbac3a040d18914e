"""Tests of lenetish.cli: the ``lenetish`` command line."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lenetish import (
    Callback,
    History,
    MNISTConvNet,
    Trainer,
    TrainState,
    available_pretrained,
    load_checkpoint,
    load_split,
    load_weights,
    make_loaders,
    save_weights,
)
from lenetish.cli import main
from tests.full_disk import fill_disk_after


def short_training(data: Path, out: Path, *extra: str) -> list[str]:
    """Arguments of a short `lenetish train` (batch 20, CPU) writing into ``out``."""
    return [
        "train",
        "--data",
        str(data),
        "--batch-size",
        "20",
        "--device",
        "cpu",
        "--out",
        str(out),
        *extra,
    ]


def test_train_reports_accuracy_and_writes_outputs(
    fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lenetish train` prints epochs and accuracy and writes checkpoint, weights, history."""
    out = tmp_path / "run"
    status = main(short_training(fake_mnist, out, "--epochs", "2", "--val-size", "10"))
    printed = capsys.readouterr().out
    assert status == 0
    assert "epoch=2" in printed and "val_accuracy=" in printed
    assert "test accuracy" in printed and "/20)" in printed
    load_weights(MNISTConvNet(), out / "model.safetensors")
    assert load_checkpoint(out / "last.pt")["epoch"] == 2
    assert len(json.loads((out / "history.json").read_text())) == 2
    assert len(History.from_csv(out / "history.csv")) == 2


def test_train_resumes_from_a_checkpoint(
    fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lenetish train --resume last.pt` continues to the requested number of epochs."""
    out = tmp_path / "run"
    common = short_training(fake_mnist, out, "--recipe", "seed-adam")
    assert main([*common, "--epochs", "1"]) == 0
    assert main([*common, "--epochs", "3", "--resume", str(out / "last.pt")]) == 0
    assert [row["epoch"] for row in History.from_json(out / "history.json")] == [1, 2, 3]


def test_extending_a_one_cycle_run_is_refused_clearly(
    fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A one-cycle run planned for 1 epoch cannot be resumed to 3: one clear error line."""
    out = tmp_path / "run"
    common = short_training(fake_mnist, out)
    assert main([*common, "--epochs", "1"]) == 0
    capsys.readouterr()
    assert main([*common, "--epochs", "3", "--resume", str(out / "last.pt")]) == 1
    assert "planned for 1 epochs with the one-cycle schedule" in capsys.readouterr().err


def test_missing_data_is_one_line_and_exit_status_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Missing data gives exit status 1 and a single 'lenetish: error:' line."""
    status = main(["train", "--data", str(tmp_path), "--no-download", "--device", "cpu"])
    error = capsys.readouterr().err
    assert status == 1
    assert error.startswith("lenetish: error: mnist train files not found")
    assert error.count("\n") == 1


def test_python_dash_m_runs_the_command() -> None:
    """`python -m lenetish --help` lists the train command."""
    result = subprocess.run(
        [sys.executable, "-m", "lenetish", "--help"], capture_output=True, text=True, check=True
    )
    assert "train" in result.stdout


@pytest.fixture
def trained_run(fake_mnist: Path, tmp_path: Path) -> Path:
    """A folder holding last.pt and model.safetensors from a short run on synthetic digits."""
    out = tmp_path / "run"
    assert main(short_training(fake_mnist, out, "--epochs", "2", "--quiet")) == 0
    return out


def test_evaluate_prints_per_class_table_and_writes_confusion(
    trained_run: Path, fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lenetish evaluate CKPT` prints accuracy and a per-class table and draws the matrix."""
    capsys.readouterr()
    plot = tmp_path / "cm.png"
    assert (
        main(
            [
                "evaluate",
                str(trained_run / "last.pt"),
                "--data",
                str(fake_mnist),
                "--device",
                "cpu",
                "--plot",
                str(plot),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "/20)" in printed
    assert len(re.findall(r"^\d\s+\d+\.\d\d%$", printed, flags=re.MULTILINE)) == 10
    assert plot.exists()


def test_predict_sample_prints_actual_and_predicted(
    trained_run: Path, fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without images, `lenetish predict` shows N test digits like the seed, and a grid."""
    capsys.readouterr()
    plot = tmp_path / "p.png"
    assert (
        main(
            [
                "predict",
                str(trained_run / "model.safetensors"),
                "--data",
                str(fake_mnist),
                "--sample",
                "5",
                "--seed",
                "1",
                "--plot",
                str(plot),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    actual = re.search(r"actual: +\[([\d, ]+)\]", printed)
    predicted = re.search(r"predicted: \[([\d, ]+)\]", printed)
    assert actual and predicted and len(actual.group(1).split(",")) == 5
    assert plot.exists()


def test_img_draws_training_digits(
    fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lenetish img` writes a grid of training digits."""
    out = tmp_path / "digits.png"
    assert main(["img", "--data", str(fake_mnist), "--count", "9", "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_img_out_keeps_user_files_named_like_old_temporaries(
    fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lenetish img --out` into a folder never deletes hour-old files named like temporaries."""
    names = [".settings.json.4242.tmp", ".digits.png.4242.tmp", ".a.pt.4242.0123abcd.tmp"]
    for name in names:
        (tmp_path / name).write_text("mine")
        os.utime(tmp_path / name, (1_000_000_000, 1_000_000_000))
    out = tmp_path / "digits.png"
    assert main(["img", "--data", str(fake_mnist), "--count", "9", "--out", str(out)]) == 0
    assert all((tmp_path / name).read_text() == "mine" for name in names)


@pytest.mark.parametrize("format", ["safetensors", "pt2", "onnx"])
def test_export_writes_next_to_the_checkpoint(
    trained_run: Path, format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lenetish export CKPT --format F` writes the file beside CKPT by default."""
    assert main(["export", str(trained_run / "last.pt"), "--format", format]) == 0
    assert "exported to" in capsys.readouterr().out
    assert len(list(trained_run.glob(f"last.*{format if format != 'safetensors' else 'safe'}*")))


def test_usage_error_exits_with_two(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown option is a usage error: exit status 2."""
    with pytest.raises(SystemExit) as caught:
        main(["train", "--epochs"])
    assert caught.value.code == 2


def test_unexpected_error_is_one_line_and_debug_shows_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A non-lenetish error is one line suggesting --debug; with --debug it propagates."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("lenetish.cli.commands.read_split", broken)
    assert main(["img", "--data", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert (
        error == "lenetish: error: unexpected RuntimeError: disk on fire (run with --debug "
        "for details)\n"
    )
    with pytest.raises(RuntimeError, match="disk on fire"):
        main(["--debug", "img", "--data", str(tmp_path)])


def test_every_command_has_help_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    """`lenetish COMMAND --help` exits 0 and shows examples."""
    for command in ("train", "evaluate", "predict", "img", "export"):
        with pytest.raises(SystemExit) as caught:
            main([command, "--help"])
        assert caught.value.code == 0
        assert "examples:" in capsys.readouterr().out


def test_predict_on_a_folder_of_drawn_digits(
    real_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """PNG digits, dark ink on white at arbitrary sizes and offsets, get sensible labels."""
    loaders = make_loaders(real_mnist, subset=12_000, download=False, seed=0)
    torch.manual_seed(0)
    model = MNISTConvNet()
    Trainer(model, epochs=1, device="cpu", progress=False).fit(loaders.train)
    save_weights(model, tmp_path / "model.safetensors")
    images, labels = load_split(real_mnist, train=False, download=False)
    folder = tmp_path / "drawn"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(30):
        scale = int(rng.integers(2, 6))
        digit = Image.fromarray(255 - images[index].numpy()).resize((28 * scale, 28 * scale))
        canvas = Image.new(
            "L", (28 * scale + int(rng.integers(0, 80)), 28 * scale + int(rng.integers(0, 80))), 255
        )
        canvas.paste(digit, (int(rng.integers(0, 40)), int(rng.integers(0, 40))))
        canvas.convert("RGB").save(folder / f"{index:02d}-{int(labels[index])}.png")
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "model.safetensors"), str(folder)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 30
    right = sum(
        Path(line.split(":")[0]).stem.split("-")[1] == line.split(": ")[1][0] for line in lines
    )
    assert right >= 27


def _corrupt_copy(fake_mnist: Path) -> Path:
    path = fake_mnist / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:20])
    return fake_mnist


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (lambda d, t: ["train", "--data", str(t), "--no-download"], "train files not found"),
        (lambda d, t: ["train", "--data", str(_corrupt_copy(d))], "is truncated"),
        (lambda d, t: ["train", "--data", str(d), "--device", "tpu"], "device='tpu' is not"),
        (lambda d, t: ["evaluate", str(t / "missing.pt"), "--data", str(d)], "does not exist"),
        (lambda d, t: ["predict", str(_not_a_checkpoint(t)), "x.png"], "is damaged or truncated"),
        (lambda d, t: ["export", str(t / "missing.pt"), "--format", "onnx"], "does not exist"),
    ],
)
def test_bad_inputs_are_one_line_with_status_one(
    fake_mnist: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    arguments: object,
    message: str,
) -> None:
    """Each bad input on the command line gives one `lenetish: error:` line and status 1."""
    assert main(arguments(fake_mnist, tmp_path)) == 1  # type: ignore[operator]
    error = capsys.readouterr().err
    assert error.startswith("lenetish: error: ") and error.count("\n") == 1
    assert message in error


def _not_a_checkpoint(folder: Path) -> Path:
    path = folder / "garbage.pt"
    path.write_bytes(b"\x00garbage" * 10)
    return path


def test_bad_image_on_the_command_line_is_one_line(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A non-image file given to predict is reported in one line with status 1."""
    (tmp_path / "notes.png").write_text("hello")
    capsys.readouterr()
    assert (
        main(["predict", str(trained_run / "model.safetensors"), str(tmp_path / "notes.png")]) == 1
    )
    assert "is not an image file" in capsys.readouterr().err


def test_train_with_a_named_recipe(
    fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lenetish train --recipe seed-sgd` says which recipe it trains and uses its optimizer."""
    out = tmp_path / "sgd"
    assert (
        main(
            [
                "train",
                "--recipe",
                "seed-sgd",
                "--epochs",
                "1",
                "--data",
                str(fake_mnist),
                "--device",
                "cpu",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "recipe seed-sgd:" in capsys.readouterr().out
    assert load_checkpoint(out / "last.pt")["optimizer_class"] == "SGD"


def test_train_says_which_recipe_settings_the_options_changed(
    fake_mnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The recipe line names the settings the command line overrode, e.g. (epochs=1)."""
    options = ["--epochs", "1", "--batch-size", "32", "--data", str(fake_mnist)]
    assert main(["train", *options, "--device", "cpu"]) == 0
    first_line = capsys.readouterr().out.splitlines()[0]
    assert first_line.startswith("recipe default: ")
    assert "(epochs=1, batch_size=32); data: " in first_line


def test_train_names_its_data_source_in_the_first_line(
    fake_mnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first line of `lenetish train` ends with where the data came from."""
    options = ["--epochs", "1", "--batch-size", "32", "--data", str(fake_mnist)]
    assert main(["train", *options, "--device", "cpu"]) == 0
    first_line = capsys.readouterr().out.splitlines()[0]
    assert first_line.endswith(f"; data: custom from the folder given ({fake_mnist})")


@pytest.mark.parametrize("name", available_pretrained())
def test_predict_without_a_checkpoint_uses_the_shipped_weights(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lenetish predict IMAGE --weights NAME` classifies with the shipped weights NAME."""
    pixels = np.full((90, 60), 255, dtype=np.uint8)
    pixels[10:80, 27:33] = 0  # a dark vertical stroke: a one
    Image.fromarray(pixels).save(tmp_path / "one.png")
    assert main(["predict", str(tmp_path / "one.png"), "--weights", name]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'one.png'}: 1 (probability")


def test_predict_with_unknown_shipped_weights_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--weights NAME` for weights that are not shipped is a one-line error listing them."""
    assert main(["predict", str(tmp_path / "one.png"), "--weights", "huge"]) == 1
    error = capsys.readouterr().err
    assert "no pretrained weights called 'huge'; shipped: " in error and "default" in error


def test_predict_with_a_checkpoint_and_shipped_weights_is_an_error(
    trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint and `--weights NAME` together are refused: only one network is used."""
    checkpoint = str(trained_run / "model.safetensors")
    assert main(["predict", checkpoint, str(tmp_path / "one.png"), "--weights", "best"]) == 1
    assert "--weights best picks shipped weights, but " in capsys.readouterr().err


def test_errors_under_torchrun_name_the_rank(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a process started by torchrun, the one-line error says which rank failed."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["evaluate", str(tmp_path / "missing.pt"), "--data", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith("lenetish: error on rank 1: ")


def test_a_closed_pipe_ends_quietly(fake_mnist: Path, tmp_path: Path) -> None:
    """``lenetish ... | head -1`` stops without an error message when head exits."""
    command = [sys.executable, "-m", "lenetish", "predict", "--data", str(fake_mnist)]
    options = ["--sample", "20", "--plot", str(tmp_path / "p.png")]
    reader = subprocess.Popen(
        [*command, *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path
    )
    assert reader.stdout is not None and reader.stderr is not None
    reader.stdout.close()  # as head does after its first line
    error = reader.stderr.read().decode()
    reader.wait(timeout=120)
    assert "BrokenPipeError" not in error
    assert "lenetish: error" not in error


def _img_with_stdout(fake_mnist: Path, tmp_path: Path, redirect: str) -> tuple[int, str]:
    """`lenetish img` run by the shell with stdout redirected as ``redirect``: status, stderr."""
    command = [sys.executable, "-m", "lenetish", "img", "--data", str(fake_mnist)]
    arguments = " ".join(f"'{part}'" for part in [*command, "--out", str(tmp_path / "d.png")])
    done = subprocess.run(
        ["sh", "-c", f"exec {arguments} {redirect}"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    return done.returncode, done.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_stdout_on_a_full_device_is_a_named_error(fake_mnist: Path, tmp_path: Path) -> None:
    """Output to /dev/full ends with one `lenetish: error` line naming stdout, exit 1."""
    status, error = _img_with_stdout(fake_mnist, tmp_path, "> /dev/full")
    assert status == 1
    assert error.count("\n") == 1 and "unexpected" not in error
    assert re.match(r"lenetish: error: could not write to standard output \(No space left", error)


def test_closed_stdout_is_refused_before_the_work(fake_mnist: Path, tmp_path: Path) -> None:
    """With stdout closed the command says so in one line and exits 1, writing nothing."""
    status, error = _img_with_stdout(fake_mnist, tmp_path, ">&-")
    assert status == 1 and "unexpected" not in error
    assert error.startswith("lenetish: error: standard output is closed")
    assert not (tmp_path / "d.png").exists()


# ---- issue 15: outputs never clobbered, signals, value ranges ------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["img", "--count", "-1"], "argument --count: must be from 1 to 1000, got -1"),
        (["predict", "--sample", "-3"], "argument --sample: must be from 1 to 1000, got -3"),
        (["train", "--epochs", "0"], "argument --epochs: must be from 1 to 100000, got 0"),
        (["train", "--batch-size", "0"], "argument --batch-size: must be from 1 to"),
        (["train", "--val-size", "-1"], "argument --val-size: must be from 0 to"),
        (["train", "--seed", str(2**64)], "argument --seed: must be from 0 to 4294967295"),
        (["img", "--seed", "-1"], "argument --seed: must be from 0 to 4294967295, got -1"),
        (["train", "--lr", "1e300"], "argument --lr: must be a finite number above 0 and at most"),
        (["train", "--lr", "nan"], "argument --lr: must be a finite number above 0"),
        (["train", "--lr", "-1"], "argument --lr: must be a finite number above 0"),
        (["train", "--device", "cpu:99"], "argument --device: 'cpu:99' does not exist"),
        (["evaluate", "x.pt", "--device", "cuda:99"], "'cuda:99' does not exist: this machine"),
        (["train", "--device", "cuda:-1"], "the device index must be a whole number >= 0"),
    ],
)
def test_out_of_range_values_are_usage_errors(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A count, seed, lr or device index out of range stops at parsing: exit 2 and its range."""
    with pytest.raises(SystemExit) as caught:
        main(arguments)
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_train_refuses_an_out_folder_holding_a_run(
    trained_run: Path, fake_mnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`train --out D` where D holds a run exits 2 and says how to resume or overwrite."""
    before = (trained_run / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(short_training(fake_mnist, trained_run, "--epochs", "1")) == 2
    error = capsys.readouterr().err
    assert f"--out folder {trained_run} already holds a run (last.pt, model.safetensors" in error
    assert f"--resume {trained_run / 'last.pt'}" in error and "--overwrite" in error
    assert (trained_run / "model.safetensors").read_bytes() == before


def test_train_overwrite_starts_a_new_run_in_the_folder(
    trained_run: Path, fake_mnist: Path
) -> None:
    """`train --overwrite` deletes the old run's files and trains afresh."""
    assert main(short_training(fake_mnist, trained_run, "--epochs", "1", "--overwrite")) == 0
    assert len(json.loads((trained_run / "history.json").read_text())) == 1
    assert not (trained_run / ".lenetish.lock").exists()


def test_overwrite_with_a_folder_at_model_safetensors_is_named(
    trained_run: Path, fake_mnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--overwrite` where model.safetensors is a folder is refused in one line, nothing deleted."""
    (trained_run / "model.safetensors").unlink()
    (trained_run / "model.safetensors").mkdir()
    before = (trained_run / "last.pt").read_bytes()
    capsys.readouterr()
    assert main(short_training(fake_mnist, trained_run, "--epochs", "1", "--overwrite")) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "unexpected" not in error
    assert f"has a folder at {trained_run / 'model.safetensors'}" in error
    assert (trained_run / "model.safetensors").is_dir()
    assert (trained_run / "last.pt").read_bytes() == before


def test_overwrite_and_resume_together_are_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--overwrite` would delete what `--resume` continues: the pair is refused at parsing."""
    with pytest.raises(SystemExit) as caught:
        main(["train", "--resume", "a/last.pt", "--overwrite"])
    assert caught.value.code == 2
    assert "not allowed with argument --resume" in capsys.readouterr().err


def test_train_refuses_a_folder_locked_by_a_live_process(
    fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """While another process holds D's lock file, `train --out D` exits 1 naming the lock."""
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".lenetish.lock", "w") as lock:
        lock.write("4242\n")
        lock.flush()
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(short_training(fake_mnist, out, "--epochs", "1")) == 1
    error = capsys.readouterr().err
    assert "is in use by another lenetish process (pid 4242)" in error
    assert str(out / ".lenetish.lock") in error
    assert not (out / "last.pt").exists()


def test_train_takes_over_the_stale_lock_of_a_dead_process(
    fake_mnist: Path, tmp_path: Path
) -> None:
    """A lock file left by a process that has ended does not block the next run."""
    pytest.importorskip("fcntl")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lenetish.lock").write_text(f"{dead.pid}\n")
    assert main(short_training(fake_mnist, out, "--epochs", "1", "--quiet")) == 0
    assert (out / "model.safetensors").exists()
    assert not (out / ".lenetish.lock").exists()


def test_train_refuses_a_file_as_out_folder(
    fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`train --out FILE` is a one-line error saying a folder is needed."""
    (tmp_path / "notes.txt").write_text("keep me")
    assert main(short_training(fake_mnist, tmp_path / "notes.txt", "--epochs", "1")) == 1
    assert "notes.txt is a file, but a folder is needed there" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.fixture
def unwritable_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder this process cannot create files in (a read-only one, or /sys for root)."""
    if os.geteuid() == 0:  # root writes through file modes, but not into sysfs
        yield Path("/sys")
        return
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    yield folder
    folder.chmod(0o700)


def test_train_refuses_an_out_folder_it_cannot_create(
    fake_mnist: Path, unwritable_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An `--out` folder that cannot be created is a one-line error before any training."""
    out = unwritable_folder / "lenetish-run"
    assert main(short_training(fake_mnist, out, "--epochs", "1")) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"lenetish: error: --out folder {out} cannot be created (")


def test_img_refuses_an_unwritable_out_file(
    fake_mnist: Path, unwritable_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`img --out` inside a folder that cannot be written is a named one-line error."""
    out = unwritable_folder / "lenetish-pictures" / "digits.png"
    assert main(["img", "--data", str(fake_mnist), "--out", str(out)]) == 1
    error = capsys.readouterr().err
    assert error.startswith("lenetish: error: --out ") and "cannot be written" in error
    assert "unexpected" not in error


def test_evaluate_refuses_a_folder_as_plot(
    trained_run: Path, fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`evaluate --plot FOLDER` is refused before evaluating: a file name is needed."""
    checkpoint = str(trained_run / "last.pt")
    assert main(["evaluate", checkpoint, "--data", str(fake_mnist), "--plot", str(tmp_path)]) == 1
    assert f"--plot {tmp_path} is a folder, but a file name is needed" in capsys.readouterr().err


def test_exporting_a_safetensors_file_as_safetensors_gets_its_own_name(
    trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`export model.safetensors --format safetensors` without --out writes NAME.export.*."""
    weights = trained_run / "model.safetensors"
    before = weights.read_bytes()
    assert main(["export", str(weights), "--format", "safetensors"]) == 0
    assert (trained_run / "model.export.safetensors").is_file()
    assert weights.read_bytes() == before and "exported to" in capsys.readouterr().out


def test_export_refuses_to_write_over_its_input(
    trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`export X --out X` (the same file, however spelled) exits 2 and leaves X intact."""
    checkpoint = trained_run / "last.pt"
    before = checkpoint.read_bytes()
    same = trained_run / ".." / trained_run.name / "last.pt"
    assert main(["export", str(checkpoint), "--format", "onnx", "--out", str(same)]) == 2
    assert "is the checkpoint being exported" in capsys.readouterr().err
    assert checkpoint.read_bytes() == before


def test_resume_refuses_a_different_lr(
    trained_run: Path, fake_mnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--resume` with an `--lr` other than the checkpoint's exits 2 instead of ignoring it."""
    capsys.readouterr()
    resume = ["--resume", str(trained_run / "last.pt"), "--epochs", "3", "--lr", "0.5"]
    assert main(short_training(fake_mnist, trained_run, *resume)) == 2
    error = capsys.readouterr().err
    assert "--lr 0.5 differs from the 0.003 that " in error and "drop --lr" in error


def test_resume_keeps_the_checkpoints_batch_size(
    fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without `--batch-size`, a resumed run uses its checkpoint's, not the recipe's default."""
    out = tmp_path / "run"
    common = ["train", "--data", str(fake_mnist), "--device", "cpu", "--out", str(out)]
    assert main([*common, "--recipe", "seed-adam", "--epochs", "1", "--batch-size", "20"]) == 0
    capsys.readouterr()
    resume = ["--recipe", "seed-adam", "--epochs", "2", "--resume", str(out / "last.pt")]
    assert main([*common, *resume]) == 0
    assert "batch_size=20" in capsys.readouterr().out.splitlines()[0]
    assert load_checkpoint(out / "last.pt")["global_step"] == 6  # 60 digits, 3 batches an epoch


def test_resume_alone_finishes_an_interrupted_run(
    fake_mnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--resume` without --recipe/--epochs continues with the checkpoint's (one-cycle too)."""
    out = tmp_path / "run"
    common = short_training(fake_mnist, out)

    def interrupt_in_epoch_two(self: Callback, trainer: Trainer, state: TrainState) -> None:
        if state.epoch == 1:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr("lenetish.cli.train._StopAtBatchEnd.on_epoch_start", interrupt_in_epoch_two)
        assert main([*common, "--recipe", "seed-adam", "--epochs", "3"]) == 130
    assert main([*common, "--resume", str(out / "last.pt")]) == 0
    assert [row["epoch"] for row in History.from_json(out / "history.json")] == [1, 2, 3]


def test_resume_refuses_another_recipe_than_the_checkpoints(
    trained_run: Path, fake_mnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --recipe other than the one the checkpoint recorded is a usage error (exit 2)."""
    capsys.readouterr()
    resume = ["--resume", str(trained_run / "last.pt"), "--recipe", "seed-sgd"]
    assert main(short_training(fake_mnist, trained_run, *resume)) == 2
    assert "--recipe seed-sgd differs from the default that" in capsys.readouterr().err


@pytest.fixture
def diverging(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the loss NaN from the last batch of epoch 1 on, as a far too large lr does."""
    original = Trainer.training_step

    def poisoned(self: Trainer, images: torch.Tensor, labels: torch.Tensor) -> object:
        output = original(self, images, labels)
        if self.state.global_step < 2:  # 60 digits in batches of 20: steps 0, 1, 2 per epoch
            return output
        return dataclasses.replace(output, loss=output.loss * float("nan"))

    monkeypatch.setattr(Trainer, "training_step", poisoned)


def test_a_diverged_run_writes_no_weights_and_exits_one(
    fake_mnist: Path, tmp_path: Path, diverging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run whose loss becomes NaN stops, writes no weights and says so in one line."""
    out = tmp_path / "run"
    assert main(short_training(fake_mnist, out, "--epochs", "3")) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("lenetish: error: training diverged: the loss became NaN")
    assert "test accuracy" not in captured.out
    assert not (out / "model.safetensors").exists() and not (out / "last.pt").exists()


def test_a_diverged_history_is_strict_json(
    fake_mnist: Path, tmp_path: Path, diverging: None
) -> None:
    """history.json of a diverged run is valid JSON: the non-finite loss is null."""
    out = tmp_path / "run"
    assert main(short_training(fake_mnist, out, "--epochs", "1")) == 1
    rows = json.loads(
        (out / "history.json").read_text(), parse_constant=lambda name: pytest.fail(name)
    )
    assert rows[0]["loss"] is None


def _one(path: Path) -> Path:
    """Draw a dark vertical stroke (a one) on white at ``path``."""
    pixels = np.full((90, 60), 255, dtype=np.uint8)
    pixels[10:80, 27:33] = 0
    Image.fromarray(pixels).save(path, format="PNG")
    return path


def test_non_utf8_file_names_are_printed_with_their_bytes_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file name with a byte invalid in UTF-8 is printed with that byte escaped."""
    name = _one(tmp_path / os.fsdecode(b"one-\xff.png"))
    assert main(["predict", str(name)]) == 0
    assert "one-\\xff.png: 1 (probability" in capsys.readouterr().out


def test_a_file_name_with_newlines_cannot_forge_prediction_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A name holding newlines and fake results prints as one escaped line."""
    forged = "a.png: 7 (probability 1.000)\nb.png: 7 (probability 1.000)\nc.png"
    name = _one(tmp_path / f"{forged}.png")
    assert main(["predict", str(name)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "\\x0ab.png" in lines[0]
    assert re.search(r"\\x0ac\.png\.png: \d \(probability [\d.]+\)$", lines[0])


def test_escape_sequences_in_file_names_are_not_sent_to_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A name that would set the window title and clear the screen is printed escaped."""
    name = _one(tmp_path / "\x1b]0;owned\x07\x1b[2J.png")
    assert main(["predict", str(name)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b]0;owned\\x07\\x1b[2J.png" in out


def test_escape_sequences_in_error_messages_are_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An error naming a missing file with an escape sequence prints it escaped, on one line."""
    assert main(["predict", str(tmp_path / "\x1b[2J\nmissing.png")]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and err.count("\n") == 1 and "\\x1b[2J\\x0amissing.png" in err


def test_skip_bad_skips_a_constant_32_bit_tiff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`predict --skip-bad` leaves out a TIFF of one 32-bit value, naming it on stderr."""
    flat = tmp_path / "flat.tif"
    Image.fromarray(np.full((40, 40), 70_000, dtype=np.int32), mode="I").save(flat)
    one = _one(tmp_path / "one.png")
    assert main(["predict", "--skip-bad", str(flat), str(one)]) == 0
    captured = capsys.readouterr()
    assert "flat.tif: the image is of one colour" in captured.err
    assert captured.out.count("\n") == 1 and "one.png: 1 (probability" in captured.out


def _hostile_classes(path: Path) -> Path:
    """Weights whose dataset record has class names holding escape sequences and newlines."""
    from safetensors.torch import save_file

    classes = [f"c{i}\x1b]0;pwned\x07\nforged" for i in range(10)]
    record = {"name": "custom", "mean": 0.1307, "std": 0.3081, "classes": classes}
    metadata = {"model": "MNISTConvNet", "dataset": json.dumps(record)}
    save_file(MNISTConvNet().state_dict(), str(path), metadata)
    return path


def test_class_names_from_a_weights_file_are_escaped_by_predict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`predict` prints a file's class names escaped, one line per image."""
    weights = _hostile_classes(tmp_path / "m.safetensors")
    image = _one(tmp_path / "one.png")
    assert main(["predict", str(weights), str(image)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and out.count("\n") == 1 and "\\x1b]0;pwned\\x07\\x0aforged" in out


def test_class_names_from_a_weights_file_are_escaped_by_evaluate(
    fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`evaluate` prints a file's class names escaped: one line per class."""
    weights = _hostile_classes(tmp_path / "m.safetensors")
    plot = str(tmp_path / "cm.png")
    assert main(["evaluate", str(weights), "--data", str(fake_mnist), "--plot", plot]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert sum("\\x1b]0;pwned" in line for line in out.splitlines()) == 10


def test_class_names_from_a_weights_file_are_escaped_by_predict_sample(
    fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`predict --sample` prints a file's class names escaped in its two lines."""
    weights = _hostile_classes(tmp_path / "m.safetensors")
    plot = str(tmp_path / "p.png")
    arguments = ["predict", str(weights), "--data", str(fake_mnist), "--plot", plot]
    assert main([*arguments, "--sample", "2", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and out.splitlines()[0].startswith("actual:    ['c")
    assert len([line for line in out.splitlines() if "pwned" in line]) == 2


def _start_training(fake_mnist: Path, out: Path) -> subprocess.Popen[str]:
    """A long `lenetish train` subprocess, returned once its first checkpoint is written."""
    command = [sys.executable, "-m", "lenetish", *short_training(fake_mnist, out)]
    process = subprocess.Popen(
        [*command, "--recipe", "seed-adam", "--epochs", "100000", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (out / "last.pt").exists():
        assert process.poll() is None and time.monotonic() < deadline, "training did not start"
        time.sleep(0.05)
    return process


@pytest.mark.slow
@pytest.mark.parametrize(("sent", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_ends_training_with_one_line_and_a_resumable_checkpoint(
    fake_mnist: Path, tmp_path: Path, sent: signal.Signals, status: int
) -> None:
    """SIGINT (exit 130) or SIGTERM (exit 143) mid-run: one line naming the checkpoint."""
    out = tmp_path / "run"
    process = _start_training(fake_mnist, out)
    try:
        process.send_signal(sent)
        _, error = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == status
    assert error.strip().splitlines()[-1] == (
        f"lenetish: interrupted; resume with --resume {out / 'last.pt'}"
    )
    assert "Traceback" not in error
    assert load_checkpoint(out / "last.pt")["epoch"] >= 1
    assert not (out / ".lenetish.lock").exists()


@pytest.mark.slow
def test_train_into_a_closed_pipe_writes_its_files_and_exits_zero(
    fake_mnist: Path, tmp_path: Path
) -> None:
    """`lenetish train ... | head -1`: the run finishes, writes its files and ends quietly."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "lenetish", *short_training(fake_mnist, out)]
    process = subprocess.Popen(
        [*command, "--recipe", "seed-adam", "--epochs", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline().startswith("recipe seed-adam")
    process.stdout.close()  # as head -1 does
    error = process.stderr.read()
    assert process.wait(timeout=120) == 0
    assert "Traceback" not in error and "lenetish: error" not in error
    load_weights(MNISTConvNet(), out / "model.safetensors")
    assert len(json.loads((out / "history.json").read_text())) == 3


@pytest.mark.slow
def test_train_through_a_pipe_prints_each_epochs_row_when_the_epoch_ends(
    fake_mnist: Path, tmp_path: Path
) -> None:
    """Into a pipe, epoch 1's row comes before epoch 2's first progress line, each row once."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "lenetish", *short_training(fake_mnist, out)]
    # A progress line (stderr) after every batch; stdout and stderr share one pipe, so the
    # order of the lines read is the order the process wrote them in: no timing involved.
    environment = {**os.environ, "LENETISH_PROGRESS_EVERY": "0"}
    environment.pop("CI", None)
    done = subprocess.run(
        [*command, "--recipe", "seed-adam", "--epochs", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    rows = [index for index, line in enumerate(lines) if line.startswith("epoch=")]
    progress = {
        epoch: [index for index, line in enumerate(lines) if line.startswith(f"epoch {epoch}/2:")]
        for epoch in (1, 2)
    }
    assert [lines[index].split()[0] for index in rows] == ["epoch=1", "epoch=2"]
    assert progress[1] and progress[2]
    assert max(progress[1]) < rows[0] < min(progress[2])  # printed when epoch 1 ended
    assert max(progress[2]) < rows[1]
    assert lines[-1].startswith("test accuracy ")


def test_predict_names_a_bad_image_and_skip_bad_predicts_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A blank image among files is named (exit 1); with --skip-bad the others are predicted."""
    pixels = np.full((90, 60), 255, dtype=np.uint8)
    pixels[10:80, 27:33] = 0
    Image.fromarray(pixels).save(tmp_path / "one.png")
    Image.fromarray(np.full((40, 40), 255, dtype=np.uint8)).save(tmp_path / "blank.png")
    assert main(["predict", str(tmp_path)]) == 1
    assert "blank.png" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{tmp_path / 'one.png'}: 1 (probability")
    assert "lenetish: skipped" in captured.err and "blank.png" in captured.err


def test_fashion_model_is_used_with_fashions_settings(
    fashion_model: torch.nn.Module,
    shared_fashion: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A model saved after Fashion training is evaluated and predicted without --dataset."""
    from lenetish import save_weights

    save_weights(fashion_model, tmp_path / "model.safetensors")
    weights = str(tmp_path / "model.safetensors")
    plot = str(tmp_path / "cm.png")
    assert main(["evaluate", weights, "--data", str(shared_fashion), "--plot", plot]) == 0
    out = capsys.readouterr().out
    accuracy = float(re.search(r"test accuracy ([\d.]+)%", out).group(1))  # type: ignore[union-attr]
    assert "dataset fashion-mnist" in out and "Ankle boot" in out and accuracy > 60
    plot = str(tmp_path / "p.png")
    options = ["--data", str(shared_fashion), "--sample", "4", "--plot", plot]
    assert main(["predict", weights, *options]) == 0
    assert "'" in capsys.readouterr().out.splitlines()[0]  # class names, not digits


def test_fashion_model_refuses_a_contradicting_dataset(
    fashion_model: torch.nn.Module, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dataset mnist with a model that records fashion-mnist is an error."""
    from lenetish import save_weights

    save_weights(fashion_model, tmp_path / "model.safetensors")
    code = main(["evaluate", str(tmp_path / "model.safetensors"), "--dataset", "mnist"])
    assert code == 1
    assert "was trained on fashion-mnist, but dataset='mnist'" in capsys.readouterr().err


def test_fashion_model_refuses_mnist_files(
    fashion_model: torch.nn.Module,
    real_mnist: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A Fashion model evaluated on a --data folder of MNIST files names both datasets."""
    from lenetish import save_weights

    save_weights(fashion_model, tmp_path / "model.safetensors")
    code = main(["evaluate", str(tmp_path / "model.safetensors"), "--data", str(real_mnist)])
    assert code == 1
    error = capsys.readouterr().err
    assert re.search(r"trained on fashion-mnist \(its file records it\).*canonical mnist", error)


def test_training_records_the_dataset_for_evaluate(
    fake_mnist: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Train --out on (pretend) Fashion files records it; evaluate then names Fashion's classes."""
    from lenetish.data.identity import LABEL_SHA256, label_digest
    from tests.conftest import synthetic_digits

    digests = (
        label_digest(synthetic_digits(60, seed=1)[1]),
        label_digest(synthetic_digits(20, seed=2)[1]),
    )
    monkeypatch.setitem(LABEL_SHA256, "fashion-mnist", digests)
    out = tmp_path / "run"
    train = ["train", "--epochs", "1", "--data", str(fake_mnist), "--out", str(out), "--quiet"]
    assert main([*train, "--device", "cpu"]) == 0
    plot = str(tmp_path / "cm.png")
    for weights in ("model.safetensors", "last.pt"):
        assert (
            main(["evaluate", str(out / weights), "--data", str(fake_mnist), "--plot", plot]) == 0
        )
        assert "T-shirt/top" in capsys.readouterr().out


def test_blog_weights_are_evaluated_and_predicted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The blog's torch.save(model.state_dict(), 'mnist_model.pkl') works with the CLI."""
    from lenetish import pretrained
    from tests.blog_net import Net

    blog = Net()
    blog.load_state_dict(pretrained("default").state_dict())
    torch.save(blog.state_dict(), tmp_path / "mnist_model.pkl")
    weights = str(tmp_path / "mnist_model.pkl")
    assert main(["evaluate", weights, "--plot", str(tmp_path / "cm.png")]) == 0
    accuracy = float(re.search(r"test accuracy ([\d.]+)%", capsys.readouterr().out).group(1))  # type: ignore[union-attr]
    assert accuracy > 98
    assert main(["predict", weights, "--sample", "4", "--plot", str(tmp_path / "p.png")]) == 0
    assert capsys.readouterr().out.startswith("actual:")


def test_exported_state_dict_loads_into_the_blog_class(tmp_path: Path) -> None:
    """Export --format state_dict writes a file the blog's class loads with torch.load."""
    from lenetish import pretrained, save_weights
    from tests.blog_net import Net

    save_weights(pretrained("default"), tmp_path / "m.safetensors")
    out = tmp_path / "mnist_model.pkl"
    assert (
        main(
            ["export", str(tmp_path / "m.safetensors"), "--format", "state_dict", "--out", str(out)]
        )
        == 0
    )
    blog = Net()
    blog.load_state_dict(torch.load(out))
    torch.testing.assert_close(blog.fc2.bias, pretrained("default").fc2.bias)


def test_an_image_named_like_no_weights_is_not_taken_for_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Predict still treats a PNG as an image, and a .pkl state dict as weights."""
    pixels = np.full((60, 60), 255, dtype=np.uint8)
    pixels[10:50, 28:32] = 0
    Image.fromarray(pixels).save(tmp_path / "one.png")
    assert main(["predict", str(tmp_path / "one.png")]) == 0
    assert "one.png: 1 (probability" in capsys.readouterr().out


def test_train_refuses_a_symlinked_lock_and_leaves_its_target(
    fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A symbolic link at D/.lenetish.lock is refused; the file outside D it names is unchanged."""
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lenetish.lock").symlink_to(outside)
    assert main(short_training(fake_mnist, out, "--epochs", "1")) == 1
    error = capsys.readouterr().err
    assert f"has a symbolic link (to {outside}) where its lock file" in error
    assert outside.read_text() == "precious\n" and (out / ".lenetish.lock").is_symlink()
    assert not (out / "last.pt").exists()


def test_train_refuses_a_symlinked_run_file_before_training(
    fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A link at D/history.csv is refused before any epoch, and its target is unchanged."""
    outside = tmp_path / "outside.csv"
    outside.write_text("precious\n")
    out = tmp_path / "run"
    out.mkdir()
    (out / "history.csv").symlink_to(outside)
    assert main(short_training(fake_mnist, out, "--epochs", "1")) == 1
    error = capsys.readouterr().err
    assert f"has a symbolic link (to {outside}) at {out / 'history.csv'}" in error
    assert outside.read_text() == "precious\n" and not (out / "last.pt").exists()


def test_img_refuses_a_symlinked_out_and_leaves_its_target(
    fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`img --out LINK` is refused before drawing; the file the link names is unchanged."""
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    link = tmp_path / "digits.png"
    link.symlink_to(outside)
    assert main(["img", "--data", str(fake_mnist), "--out", str(link)]) == 1
    error = capsys.readouterr().err
    assert f"--out {link} is a symbolic link (to {outside}); lenetish writes only" in error
    assert outside.read_text() == "precious\n" and link.is_symlink()


def test_export_refuses_a_fifo_as_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`export --out FIFO` is refused, and the FIFO is left in place, not replaced by a file."""
    save_weights(MNISTConvNet(), tmp_path / "m.safetensors")
    fifo = tmp_path / "exported.pt"
    os.mkfifo(fifo)
    command = ["export", str(tmp_path / "m.safetensors"), "--format", "state_dict"]
    assert main([*command, "--out", str(fifo)]) == 1
    assert f"--out {fifo} is a FIFO (named pipe)" in capsys.readouterr().err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_train_names_a_full_disk_at_history_json(
    fake_mnist: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A disk that fills while history.json is written is a named error, with no file left."""
    fill_disk_after(monkeypatch, room=8, only="history.json")
    out = tmp_path / "run"
    assert main(short_training(fake_mnist, out, "--epochs", "1", "--quiet")) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"lenetish: error: could not write {out / 'history.json'}: [Errno 28]")
    assert "free some space and try again" in error and "unexpected" not in error
    assert sorted(p.name for p in out.iterdir()) == ["history.csv", "last.pt"]


def test_train_through_a_pipe_shows_progress_inside_the_epoch(
    fake_mnist: Path, tmp_path: Path
) -> None:
    """`lenetish train | cat`: plain progress lines with rate and time left inside epoch 1."""
    command = [sys.executable, "-m", "lenetish", *short_training(fake_mnist, tmp_path / "run")]
    environment = {k: v for k, v in os.environ.items() if k != "CI"}
    environment["LENETISH_PROGRESS_EVERY"] = "0"  # a line at every batch, for the test
    done = subprocess.run(
        [*command, "--epochs", "1"], capture_output=True, text=True, env=environment, timeout=300
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("epoch 1/1: ")]
    assert lines and lines[0].startswith("epoch 1/1: 1/3 batches, ") and "s left" in lines[0]
