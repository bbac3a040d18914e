"""Tests of lenetish._pickle_scan: explaining a refused checkpoint, bounded on hostile files."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import pytest

from lenetish import CheckpointError, load_checkpoint
from lenetish._pickle_scan import (
    MAX_DEPTH,
    MAX_GLOBALS,
    MAX_PICKLE_BYTES,
    MAX_STEPS,
    is_raw_pickle,
    refused_callbacks_message,
    scan,
)

# GLOBAL, EMPTY_TUPLE, REDUCE: a NumPy scalar, which torch.load(weights_only=True) refuses
REFUSED = b"cnumpy.core.multiarray\nscalar\n)R"
SCALAR = "numpy.core.multiarray.scalar"


def text(value: str) -> bytes:
    """BINUNICODE of ``value``."""
    data = value.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def in_callbacks(body: bytes, key: str = "tests.Cb") -> bytes:
    """A pickle of ``{'callbacks': {key: <what body pushes>}}``, as torch.save writes one."""
    return b"\x80\x02}" + text("callbacks") + b"}" + text(key) + body + b"ss."


def checkpoint(path: Path, data: bytes, *, deflate: bool = False) -> Path:
    """A torch.save zip file at ``path`` whose pickle is ``data``."""
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method) as archive:
        archive.writestr("archive/data.pkl", data)
        archive.writestr("archive/version", "3\n")
    return path


def shared_lists(levels: int) -> bytes:
    """Lists each holding the one before twice (by memo reference): 2**levels paths."""
    body = b"]" + REFUSED + b"q\x00a"  # [scalar, L1, L2, ...], L(i) = [L(i-1), L(i-1)]
    for level in range(1, levels + 1):
        before = bytes([level - 1])
        body += b"]q" + bytes([level]) + b"(h" + before + b"h" + before + b"ea"
    return in_callbacks(body)


def shared_tuples(levels: int) -> bytes:
    """The pushes of T(i) = (T(i-1), T(i-1)) from T(0), a NumPy scalar: 2**levels paths."""
    doublings = (
        b"h" + bytes([level - 1]) + b"\x86q" + bytes([level]) for level in range(1, levels + 1)
    )
    return REFUSED + b"q\x00" + b"".join(doublings)


def test_a_structure_shared_two_to_the_sixty_ways_is_walked_once(tmp_path: Path) -> None:
    """Lists sharing one another 2**60 ways cost their size; the refusal names the callback."""
    path = checkpoint(tmp_path / "shared.pt", shared_lists(60))
    found = scan(path)
    assert found.gave_up is None and found.found == 1 and found.steps < 1_000
    assert found.places == [(("callbacks", "tests.Cb", 0), SCALAR)]
    with pytest.raises(CheckpointError, match=r"callback 'tests.Cb' holds a NumPy scalar"):
        load_checkpoint(path)


def test_a_dict_key_of_exponentially_shared_tuples_is_never_hashed(tmp_path: Path) -> None:
    """A dict keyed by a tuple of 2**60 paths is read without hashing the key."""
    path = checkpoint(tmp_path / "key.pt", in_callbacks(b"}" + shared_tuples(60) + b"Ns"))
    found = scan(path)
    assert found.gave_up is None and found.found == 1 and found.steps < 1_000
    assert found.places == [(("callbacks", "tests.Cb", *[0] * 60), SCALAR)]


def test_a_list_holding_itself_is_walked_once(tmp_path: Path) -> None:
    """A list appended to itself a thousand times is entered once."""
    body = b"]q\x00(" + b"h\x00" * 1_000 + REFUSED + b"e"
    found = scan(checkpoint(tmp_path / "self.pt", in_callbacks(body)))
    assert found.places == [(("callbacks", "tests.Cb", 1_000), SCALAR)]
    assert found.steps < 2_100  # about 1,000 opcodes and 1,000 references, not 1,000 squared


def test_a_memo_index_of_two_billion_is_read(tmp_path: Path) -> None:
    """LONG_BINPUT 2**31 - 1 (which makes pickle allocate 32 GB) is read in a few steps."""
    body = b"(Nr" + struct.pack("<I", 2**31 - 1) + REFUSED + b"t"
    found = scan(checkpoint(tmp_path / "memo.pt", in_callbacks(body)))
    assert found.places == [(("callbacks", "tests.Cb", 1), SCALAR)] and found.steps < 50


def test_a_pickle_over_the_step_budget_is_given_up_within_it(tmp_path: Path) -> None:
    """A pickle of more opcodes than MAX_STEPS stops at the budget; the refusal is general."""
    body = b"(" + REFUSED + b"]" * MAX_STEPS + b"t"
    path = checkpoint(tmp_path / "long.pt", in_callbacks(body))
    found = scan(path)
    assert found.gave_up == f"over the budget of {MAX_STEPS} steps"
    assert found.steps <= MAX_STEPS and found.places == []
    with pytest.raises(CheckpointError, match=r"was refused: it holds objects other than"):
        load_checkpoint(path)


def test_references_past_the_step_budget_are_given_up_within_it(tmp_path: Path) -> None:
    """A short pickle whose walk would follow more references than the budget stops there."""
    body = b"]q\x00(" + b"h\x00" * (MAX_STEPS // 2 + 1) + b"e"
    found = scan(checkpoint(tmp_path / "wide.pt", in_callbacks(body)))
    assert found.gave_up == f"over the budget of {MAX_STEPS} steps"
    assert found.steps <= MAX_STEPS


def test_a_deflated_pickle_past_the_byte_budget_is_not_unpacked(tmp_path: Path) -> None:
    """A 12 KB zip whose pickle inflates past MAX_PICKLE_BYTES is given up unread."""
    body = b"(" + REFUSED + b"]" * MAX_PICKLE_BYTES + b"t"
    path = checkpoint(tmp_path / "bomb.pt", in_callbacks(body), deflate=True)
    assert path.stat().st_size < 64 * 1024
    found = scan(path)
    assert found.gave_up == f"its pickle is over {MAX_PICKLE_BYTES} bytes"
    assert found.steps == 0


def test_a_zip_header_that_understates_its_pickle_is_read_no_further(tmp_path: Path) -> None:
    """A central directory claiming 100 bytes for a 5 MB pickle: at most 100 are inflated."""
    body = b"(" + REFUSED + b"]" * (MAX_PICKLE_BYTES + 1) + b"t"
    path = checkpoint(tmp_path / "lies.pt", in_callbacks(body), deflate=True)
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")  # the central directory entry of archive/data.pkl
    data[entry + 24 : entry + 28] = struct.pack("<I", 100)  # its uncompressed size
    path.write_bytes(bytes(data))
    found = scan(path)
    assert found.gave_up is not None and found.steps == 0


def test_a_structure_nested_past_max_depth_is_not_entered(tmp_path: Path) -> None:
    """A refused object nested deeper than MAX_DEPTH is not looked for: no places."""
    levels = MAX_DEPTH + 10
    body = b"]" * levels + REFUSED + b"a" * levels
    path = checkpoint(tmp_path / "deep.pt", in_callbacks(body))
    found = scan(path)
    assert found.gave_up is None and found.found == 0
    assert refused_callbacks_message("checkpoint", path) is None


def test_a_pickle_naming_too_many_globals_is_given_up(tmp_path: Path) -> None:
    """More than MAX_GLOBALS different globals are not all put to torch."""
    names = b"".join(b"cm%d\nn\n" % index for index in range(MAX_GLOBALS + 1))
    found = scan(checkpoint(tmp_path / "globals.pt", in_callbacks(b"(" + names + b"t")))
    assert found.gave_up == f"it names over {MAX_GLOBALS} different globals"


def test_a_declared_length_past_the_file_is_given_up_before_reading(tmp_path: Path) -> None:
    """BINBYTES8 of 2**40 bytes in a 300-byte file stops the scan at that opcode."""
    body = b"(" + REFUSED + b"\x8e" + struct.pack("<Q", 2**40) + b"xt"
    found = scan(checkpoint(tmp_path / "length.pt", in_callbacks(body)))
    assert found.gave_up == "not a pickle this scan follows (ValueError)"
    assert found.steps < 20


def test_a_long_callback_key_is_shown_short(tmp_path: Path) -> None:
    """A megabyte-long state key is cut in the refusal message."""
    path = checkpoint(tmp_path / "key.pt", in_callbacks(REFUSED, key="k" * 1_000_000))
    message = refused_callbacks_message("checkpoint", path)
    assert message is not None and len(message) < 2_000
    assert f"callback '{'k' * 60}'... holds a NumPy scalar" in message


def test_a_raw_pickle_longer_than_the_budget_is_called_one(tmp_path: Path) -> None:
    """A raw pickle whose first STOP lies past MAX_STEPS opcodes is still named a pickle."""
    path = tmp_path / "raw.pkl"
    path.write_bytes(b"\x80\x02" + b"N0" * MAX_STEPS + b"N.")
    assert is_raw_pickle(path)


def test_bytes_that_are_no_pickle_are_not_called_one(tmp_path: Path) -> None:
    """Garbage is not a raw pickle (its refusal says damaged, not refused)."""
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"\x00garbage" * 10)
    assert not is_raw_pickle(path)
