"""Tests of lenetish._inert_pickle: a pickle run on stand-ins, within a budget."""

from __future__ import annotations

import collections
import pickle
import pickletools

import pytest

from lenetish._inert_pickle import MAX_STEPS, Budget, GiveUp, Interpreter, Pairs, Stub


def run(data: bytes) -> object:
    """What the interpreter loads from ``data``."""
    return Interpreter(data, Budget()).run()


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_plain_containers_load_with_dicts_as_their_entries(protocol: int) -> None:
    """Lists, tuples and scalars load as themselves; a dict as its (key, value) entries."""
    loaded = run(pickle.dumps({"a": [1, 2.5, None], (1, "b"): (True, "x")}, protocol=protocol))
    assert loaded == Pairs([("a", [1, 2.5, None]), ((1, "b"), (True, "x"))])


def test_a_global_becomes_a_stub_of_its_arguments_and_items() -> None:
    """An OrderedDict is a stub named collections.OrderedDict holding its items, nothing built."""
    loaded = run(pickle.dumps(collections.OrderedDict(a=1), protocol=2))
    assert isinstance(loaded, Stub) and loaded.name == "collections.OrderedDict"
    assert Pairs([("a", 1)]) in loaded.parts


def test_every_opcode_spends_one_step() -> None:
    """The budget counts exactly the opcodes read."""
    data = pickle.dumps({"a": list(range(100))}, protocol=2)
    budget = Budget()
    Interpreter(data, budget).run()
    assert budget.steps == sum(1 for _ in pickletools.genops(data))


def test_opcodes_past_max_steps_give_up() -> None:
    """A pickle of more than MAX_STEPS opcodes stops at the budget."""
    budget = Budget()
    with pytest.raises(GiveUp, match=rf"over the budget of {MAX_STEPS} steps"):
        Interpreter(b"\x80\x02" + b"N0" * MAX_STEPS + b"N.", budget).run()
    assert budget.steps == MAX_STEPS


def test_the_copyreg_extension_opcodes_give_up() -> None:
    """EXT1 (a global from copyreg's registry, which torch never writes) stops the scan."""
    with pytest.raises(GiveUp, match="the opcode EXT1"):
        run(b"\x80\x02\x82\x01.")
