"""Run one documentation page's Python blocks in order in a fresh interpreter, as a reader would.

Used by tests/test_docs_snippets.py: ``python tests/docs_snippet_runner.py BLOCKS.json``, where
the JSON file holds a list of blocks ``{"where": "page.rst:12", "kind": "python" | "pycon",
"code": ..., "expected": str | null}``. All blocks of a page share one namespace, starting
empty: only the imports the page shows are there. A ``python`` block is executed; when the page
shows its output (``expected``), what it prints must match (``...`` matches anything). A
``pycon`` block (``>>>`` lines) is checked like a doctest. The first failure is printed with its
page and line, and the exit status is 1.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import json
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


def main(path: str) -> int:
    """Run the blocks listed in the JSON file ``path``; 0 if all pass, 1 at the first failure."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    for block in json.loads(Path(path).read_text()):
        run = run_python if block["kind"] == "python" else run_pycon
        failure = run(block, namespace)
        if failure is not None:
            print(failure, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
