"""Run one documentation page's code blocks in order in a fresh interpreter, as a reader would.

Used by tests/test_docs_snippets.py: ``python tests/docs_snippet_runner.py BLOCKS.json``, where
the JSON file holds a list of blocks ``{"where": "page.rst:12", "kind": "python" | "pycon" |
"shell", "code": ..., "expected": str | null}``. All Python blocks of a page share one
namespace, starting empty: only the imports the page shows are there. A ``python`` block is
executed; when the page shows its output (``expected``), what it prints must match (``...``
matches anything). A ``pycon`` block (``>>>`` lines) is checked like a doctest. A ``shell``
block is one command line, run by bash in the current folder with this process's environment;
it must exit with status 0. ``cd DIR`` and ``export NAME=VALUE`` change that folder and that
environment for the blocks after them, as in a terminal. The first failure is printed with its
page and line, and the exit status is 1.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import json
import os
import re
import shlex
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


class _Tee(io.StringIO):
    """Collects what a block prints and passes it on to the real stdout."""

    def write(self, text: str) -> int:
        sys.__stdout__.write(text)  # type: ignore[union-attr]
        return super().write(text)


def run_python(block: dict[str, Any], namespace: dict[str, Any]) -> str | None:
    """Execute a python block; return a failure message or None."""
    printed = _Tee()
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(block["code"], block["where"], "exec"), namespace)
    except BaseException:
        return f"{block['where']}: the block raised\n{traceback.format_exc()}"
    expected = block.get("expected")
    if expected is not None:
        checker = doctest.OutputChecker()
        got = printed.getvalue()
        if not checker.check_output(expected.rstrip() + "\n", got, OPTIONS):
            return f"{block['where']}: the page shows\n{expected}\nbut the block printed\n{got}"
    return None


def run_pycon(block: dict[str, Any], namespace: dict[str, Any]) -> str | None:
    """Check a ``>>>`` block as a doctest in the shared namespace; return a failure or None."""
    page, _, line = block["where"].rpartition(":")
    test = doctest.DocTestParser().get_doctest(block["code"], namespace, page, page, int(line))
    report = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    result = runner.run(test, out=report.write, clear_globs=False)
    namespace.update(test.globs)
    if result.failed:
        return (
            f"{block['where']}: the >>> lines do not give what the page shows\n{report.getvalue()}"
        )
    return None


def run_shell(block: dict[str, Any], namespace: dict[str, Any]) -> str | None:
    """Run one command line with bash (``cd``, ``export``: here); return a failure or None."""
    command = block["code"]
    words = shlex.split(command, comments=True)
    if words[:1] == ["cd"] and len(words) == 2:
        os.chdir(os.path.expanduser(words[1]))
        return None
    if words[:1] == ["export"] and all(re.fullmatch(r"[A-Za-z_]\w*=.*", w) for w in words[1:]):
        for word in words[1:]:
            name, _, value = word.partition("=")
            os.environ[name] = os.path.expandvars(os.path.expanduser(value))
        return None
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        capture_output=True,
        text=True,
        timeout=900,
    )
    sys.__stdout__.write(done.stdout)  # type: ignore[union-attr]
    if done.returncode != 0:
        return (
            f"{block['where']}: `{command}` exited with status {done.returncode} in "
            f"{os.getcwd()}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        )
    return None


RUNNERS = {"python": run_python, "pycon": run_pycon, "shell": run_shell}


def main(path: str) -> int:
    """Run the blocks listed in the JSON file ``path``; 0 if all pass, 1 at the first failure."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    for block in json.loads(Path(path).read_text()):
        failure = RUNNERS[block["kind"]](block, namespace)
        if failure is not None:
            print(failure, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
