"""Tests of lenetish.cli.serve: the ``lenetish serve`` command's options, start line and stops."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import lenetish.serve
from lenetish import MNISTWideNet, save_weights
from lenetish.cli import main


def test_serve_help_lists_its_options_and_examples(capsys: pytest.CaptureFixture[str]) -> None:
    """`lenetish serve --help` shows the loopback default and examples."""
    with pytest.raises(SystemExit) as done:
        main(["serve", "--help"])
    help_text = capsys.readouterr().out
    assert done.value.code == 0
    assert "default: 127.0.0.1, loopback" in help_text
    assert "examples:" in help_text and "--no-batching" in help_text


def test_a_port_out_of_range_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """--port 70000 exits with status 2 before anything loads."""
    with pytest.raises(SystemExit) as done:
        main(["serve", "--port", "70000"])
    assert done.value.code == 2
    assert "must be from 0 to 65535, got 70000" in capsys.readouterr().err


def test_weights_file_and_shipped_name_together_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """WEIGHTS and --weights both given is a one-line error, status 1."""
    assert main(["serve", str(tmp_path / "model.safetensors"), "--weights", "best"]) == 1
    assert "drop one of them" in capsys.readouterr().err


def test_a_file_that_is_no_weights_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An image given as WEIGHTS is refused with a pointer to --weights."""
    picture = tmp_path / "digit.png"
    picture.write_bytes(b"\x89PNG")
    assert main(["serve", str(picture)]) == 1
    assert "is not a weights file" in capsys.readouterr().err


def test_a_weights_file_is_served_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`lenetish serve WEIGHTS` serves that file's network; /health names the file."""
    path = tmp_path / "wide.safetensors"
    save_weights(MNISTWideNet(), path)
    served: list[tuple[Any, str]] = []
    monkeypatch.setattr(
        lenetish.serve, "run_server", lambda app, sock, what, say: served.append((app, what))
    )
    assert main(["serve", str(path), "--port", "0"]) == 0
    app, what = served[0]
    with TestClient(app, base_url="http://localhost") as client:
        health = client.get("/health").json()
    assert (what, health["model"], health["weights"]) == (
        f"MNISTWideNet ({path})",
        "MNISTWideNet",
        str(path),
    )


def test_connection_and_host_options_reach_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """--allow-host adds to the default names; --max-connections and --api-docs are kept."""
    served: list[Any] = []
    monkeypatch.setattr(
        lenetish.serve, "run_server", lambda app, sock, what, say: served.append(app)
    )
    options = ["--allow-host", "digits.lan", "--max-connections", "64", "--api-docs"]
    assert main(["serve", "--port", "0", *options]) == 0
    settings = served[0].state.settings
    assert settings.host_names == ("localhost", "127.0.0.1", "[::1]", "digits.lan")
    assert (settings.max_connections, settings.api_docs) == (64, True)


def test_the_command_line_loads_no_serving_stack() -> None:
    """`import lenetish.cli` (for --help) loads neither FastAPI, uvicorn nor torch."""
    code = (
        "import sys, lenetish.cli; "
        "print(sorted({'fastapi', 'uvicorn', 'torch'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


def test_without_the_extra_the_command_names_it() -> None:
    """With uvicorn missing, `lenetish serve` fails in one line naming lenetish[serve]."""
    code = (
        "import sys; sys.modules['uvicorn'] = None; from lenetish.cli import main; "
        "sys.exit(main(['serve', '--port', '0']))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr == (
        "lenetish: error: lenetish serve needs FastAPI, uvicorn and python-multipart (uvicorn "
        "is missing): pip install 'lenetish[serve]' (in a lenetish checkout: pip install "
        "'.[serve]')\n"
    )


@pytest.mark.slow
@pytest.mark.parametrize(("stop", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_the_server_says_where_it_listens_and_stops_cleanly(
    tmp_path: Path, stop: signal.Signals, status: int
) -> None:
    """`lenetish serve --port 0` prints its loopback URL, answers, and stops on the signal."""
    process = subprocess.Popen(
        [sys.executable, "-m", "lenetish", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "loopback: only this machine can connect" in line, line
        url = line.split(" at ", 1)[1].split()[0]
        with urllib.request.urlopen(url + "health", timeout=60) as answer:
            assert json.load(answer)["model"] == "MNISTConvNet"
        process.send_signal(stop)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert (process.returncode, err) == (status, "lenetish: server stopped\n")
