"""Tests of lenetish.cli.output: output file names checked before the work, by their bytes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lenetish import InvalidArgumentError
from lenetish.cli import main
from lenetish.cli.output import check_output_file


def test_img_writes_a_244_byte_non_ascii_name(
    fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`img --out` with a legal 244-byte UTF-8 name writes it (its temporary name is cut)."""
    out = tmp_path / ("é" * 120 + ".png")
    assert len(os.fsencode(out.name)) == 244
    assert main(["img", "--data", str(fake_mnist), "--count", "4", "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert [p.name for p in tmp_path.iterdir() if p.name != "data"] == [out.name]


def test_a_name_of_255_bytes_passes_the_check(tmp_path: Path) -> None:
    """A name exactly at the file system's limit (255 bytes here) is accepted up front."""
    check_output_file(str(tmp_path / ("é" * 125 + "x.png")), "--out")


def test_a_name_longer_than_the_file_system_allows_is_refused_up_front(
    fake_mnist: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 256-byte --out name is one error line naming its size and the limit, before any work."""
    out = tmp_path / "pictures" / ("é" * 126 + ".png")
    with pytest.raises(InvalidArgumentError, match=r"--out .* name is 256 bytes long .* 255"):
        check_output_file(str(out), "--out")
    assert main(["img", "--data", str(fake_mnist), "--out", str(out)]) == 1
    assert "pick a shorter name" in capsys.readouterr().err
    assert not (tmp_path / "pictures").exists()
