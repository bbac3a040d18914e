"""A pickle's opcodes run on inert stand-ins, within a budget: nothing imported, run or hashed.

:class:`Interpreter` is pickle's stack machine over the opcodes :func:`pickletools.genops`
reads, for a file that may be hostile. Every global is a :class:`Global` and what it would
build a :class:`Stub` that records its arguments; dicts and sets are kept as lists of their
entries (:class:`Pairs`, :class:`Items`), so no key is ever hashed or compared (a key of
exponentially shared tuples, or thousands of keys of one hash, cost nothing); the memo is a
dict, so a memo index of two billion allocates nothing. Each opcode spends a step of a
:class:`Budget` of :data:`MAX_STEPS`, and at most :data:`MAX_GLOBALS` different globals may be
named; past either, or at anything this machine does not follow, :class:`GiveUp` is raised.
"""

from __future__ import annotations

import pickletools
from typing import Any

__all__ = [
    "MAX_GLOBALS",
    "MAX_STEPS",
    "Budget",
    "GiveUp",
    "Global",
    "Interpreter",
    "Items",
    "Pairs",
    "Stub",
]

MAX_STEPS = 50_000
"""Steps of one scan: opcodes read plus references followed; a 10-epoch checkpoint takes 3,500."""

MAX_GLOBALS = 1_000
"""How many different globals a pickle may name; a checkpoint names about 10."""


class GiveUp(Exception):
    """The scan stops: over a budget, or not a pickle this interpreter follows."""


class Budget:
    """Counts steps; :meth:`spend` raises :class:`GiveUp` past :data:`MAX_STEPS`."""

    def __init__(self) -> None:
        self.steps = 0

    def spend(self, count: int = 1) -> None:
        if self.steps + count > MAX_STEPS:
            raise GiveUp(f"over the budget of {MAX_STEPS} steps")
        self.steps += count


class Global:
    """A global the pickle names (``module.name``); nothing is imported."""

    def __init__(self, name: str) -> None:
        self.name = name


class Stub:
    """Stands for an object a global would build; it records its arguments and runs nothing."""

    def __init__(self, name: str, *parts: Any) -> None:
        self.name = name
        self.parts: list[Any] = list(parts)  # the arguments, then any state or items set on it


class Pairs(list[tuple[Any, Any]]):
    """A dict's entries in order: its keys are kept, never hashed or compared."""


class Items(list[Any]):
    """A set's or frozenset's elements, never hashed."""


_CONSTANTS = frozenset(
    {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT"}
    | {"STRING", "BINSTRING", "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8"}
    | {"BYTEARRAY8", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"}
)
_FIXED = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}
_GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_EMPTY = {"EMPTY_LIST": list, "EMPTY_TUPLE": tuple, "EMPTY_DICT": Pairs, "EMPTY_SET": Items}


class Interpreter:
    """Runs a pickle's opcodes on inert stand-ins: pickle's stack machine, without hashing."""

    def __init__(self, data: bytes, budget: Budget) -> None:
        self.data, self.budget = data, budget
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}
        self.globals: set[tuple[str, str]] = set()  # (module, name) of each global named

    def run(self) -> Any:
        """The loaded structure (raises :class:`GiveUp`)."""
        try:
            for opcode, arg, position in pickletools.genops(self.data):
                self.budget.spend()
                if opcode.name == "STOP":
                    return self.pop()
                self.step(opcode.name, arg, position or 0)  # genops reads bytes: a position
        except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError) as exc:
            raise GiveUp(f"not a pickle this scan follows ({type(exc).__name__})") from exc
        raise GiveUp("no STOP opcode")  # unreachable: genops raises first

    def pop(self) -> Any:
        if not self.stack or (self.marks and self.marks[-1] >= len(self.stack)):
            raise GiveUp("the pickle pops more than it pushed")
        return self.stack.pop()

    def pop_mark(self) -> list[Any]:
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def step(self, name: str, arg: Any, position: int) -> None:
        stack = self.stack
        if name in _CONSTANTS:
            stack.append(arg)
        elif name in _FIXED:
            stack.append(_FIXED[name])
        elif name in _EMPTY:
            stack.append(_EMPTY[name]())
        elif name in _GETS:
            stack.append(self.memo[arg])
        elif name in _PUTS:
            self.memo[arg] = stack[-1]
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = stack[-1]
        elif name == "MARK":
            self.marks.append(len(stack))
        elif name == "POP":
            if self.marks and self.marks[-1] == len(stack):
                self.marks.pop()  # as pickle does: a POP right after a MARK drops the mark
            else:
                self.pop()
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "DUP":
            stack.append(stack[-1])
        elif name not in ("PROTO", "FRAME"):
            self.build(name, position)

    def build(self, name: str, position: int) -> None:
        """The opcodes that build containers and objects, or add to them."""
        stack = self.stack
        if name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            items = [self.pop() for _ in range(int(name[-1]))]
            stack.append(tuple(reversed(items)))
        elif name in ("TUPLE", "LIST", "DICT", "FROZENSET"):
            items = self.pop_mark()
            if name == "DICT":
                stack.append(Pairs(zip(items[::2], items[1::2], strict=True)))
            else:
                stack.append({"TUPLE": tuple, "LIST": list, "FROZENSET": Items}[name](items))
        elif name in ("APPEND", "APPENDS", "ADDITEMS"):
            items = [self.pop()] if name == "APPEND" else self.pop_mark()
            self.add(stack[-1], items, name)
        elif name in ("SETITEM", "SETITEMS"):
            flat = [self.pop(), self.pop()][::-1] if name == "SETITEM" else self.pop_mark()
            pairs = list(zip(flat[::2], flat[1::2], strict=True))
            self.set_items(stack[-1], pairs)
        elif name == "BUILD":
            state = self.pop()
            self.stub(stack[-1]).parts.append(state)
        elif name in ("GLOBAL", "INST"):
            qualified = self.named_global(position)
            if name == "GLOBAL":
                stack.append(Global(qualified))
            else:
                stack.append(Stub(qualified, tuple(self.pop_mark()), Pairs()))
        elif name == "STACK_GLOBAL":
            global_name, module = self.pop(), self.pop()
            if not (isinstance(module, str) and isinstance(global_name, str)):
                raise GiveUp("STACK_GLOBAL of something other than two strings")
            self.named((module, global_name))
            stack.append(Global(f"{module}.{global_name}"))
        else:
            self.call(name)

    def call(self, name: str) -> None:
        """The opcodes that would call a global: each makes a stand-in of its arguments."""
        if name in ("REDUCE", "NEWOBJ"):
            args = self.pop()
            made = self.instance(self.pop(), args, Pairs())
        elif name == "NEWOBJ_EX":
            kwargs, args = self.pop(), self.pop()
            made = self.instance(self.pop(), args, kwargs)
        elif name == "OBJ":
            items = self.pop_mark()
            if not items:
                raise GiveUp("OBJ without a class")
            made = self.instance(items[0], tuple(items[1:]), Pairs())
        elif name in ("PERSID", "BINPERSID"):
            if name == "BINPERSID":
                self.pop()
            made = Stub("")  # a tensor's storage: its bytes are not read
        else:  # EXT1/2/4 (the copyreg registry) and out-of-band buffers: torch has neither
            raise GiveUp(f"the opcode {name}")
        self.stack.append(made)

    @staticmethod
    def instance(made_by: Any, *parts: Any) -> Stub:
        if not isinstance(made_by, Global):
            raise GiveUp("a call of something that is not a global")
        return Stub(made_by.name, *parts)

    @staticmethod
    def stub(target: Any) -> Stub:
        if not isinstance(target, Stub):
            raise GiveUp("state set on an object that is not a global's")
        return target

    @staticmethod
    def add(target: Any, items: list[Any], name: str) -> None:
        if name == "ADDITEMS":
            if not isinstance(target, Items):
                raise GiveUp("ADDITEMS on an object that is not a set")
            target.extend(items)
        elif type(target) is list:
            target.extend(items)
        elif isinstance(target, Stub):  # its append() or extend(): recorded, never run
            target.parts.append(items[0] if name == "APPEND" else items)
        else:
            raise GiveUp(f"{name} on an object that is not a list")

    @staticmethod
    def set_items(target: Any, pairs: list[tuple[Any, Any]]) -> None:
        if isinstance(target, Pairs):
            target.extend(pairs)
        else:  # a global's __setitem__, recorded, never run
            Interpreter.stub(target).parts.extend(Pairs([pair]) for pair in pairs)

    def named_global(self, position: int) -> str:
        """``module.name`` of the GLOBAL or INST at ``position``, read as pickle reads it."""
        data = self.data
        end = data.index(b"\n", position + 1)
        module = data[position + 1 : end].decode("utf-8")
        name = data[end + 1 : data.index(b"\n", end + 1)].decode("utf-8")
        self.named((module, name))
        return f"{module}.{name}"

    def named(self, pair: tuple[str, str]) -> None:
        """Record a global the pickle names; torch is asked about each, so they are counted."""
        self.globals.add(pair)
        if len(self.globals) > MAX_GLOBALS:
            raise GiveUp(f"it names over {MAX_GLOBALS} different globals")
