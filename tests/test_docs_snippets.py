"""Tests that every code block of the user pages runs as printed, with only what the page shows.

What is run, and why:

* Python blocks (``code-block:: python`` and ``>>>`` blocks, ``code-block:: pycon``) of a page
  run in order in one fresh interpreter (tests/docs_snippet_runner.py), in an empty working
  folder, with an empty HOME and no ``LENETISH_DATA``: only the imports the page shows exist,
  MNIST comes from the copy bundled with lenetish, and a ``text`` block right after a Python
  block is the output it must print. The few files a page says are the reader's own
  (``my_digit.png``...) or downloads (the Fashion-MNIST files) are put in that folder first.
  Afterwards no empty folder may be left behind. The pages in ``NOT_RUN`` (the serving page,
  whose blocks need a running server) are the exception, each with its reason.
* Shell blocks: every ``lenetish ...`` command must be accepted by the real argument parser
  (tests/test_docs_commands.py also runs the quickstart's and the resume examples on tiny
  data), and every ``python -c ...`` check runs. Other shell lines (``pip install``,
  ``torchrun``, ``cd``, ``export``) are not run: they install packages, start several
  processes or change the shell; ``.ci/run`` installs the project the way the pages say.
* ``literalinclude`` blocks show files that run elsewhere (the examples are run by
  tests/test_examples.py, docs/make_figures.py by ``.ci/run``); ``text``, ``json`` and
  ``toml`` blocks are output or file contents, and are not run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from lenetish import load_split
from lenetish.cli import build_parser
from tests.conftest import SHARED_FASHION
from tests.test_docs_commands import lenetish_commands

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RUNNER = Path(__file__).with_name("docs_snippet_runner.py")
# The user pages: every page but the API reference (docs/api.rst, docs/api/) and the changelog.
USER_PAGES = sorted(
    path.name for path in DOCS.glob("*.rst") if path.name not in ("api.rst", "changelog.rst")
)
# Pages whose Python blocks train on the full MNIST training set for an epoch or more.
SLOW_PAGES = {"quickstart.rst", "training.rst", "distributed.rst", "fashion.rst"}
# Pages whose Python blocks are not run here, and why (their own tests run them).
NOT_RUN = {
    "serving.rst": "its blocks talk to a running server, or start one that serves until it is "
    "stopped; tests/test_serve_*.py run the server and its clients",
}
DIRECTIVE = re.compile(r"^(\s*)\.\. ([\w-]+)::\s*(.*)$")
PYTHON = {"python", "python3", "py"}
SHELL = {"bash", "sh", "shell", "console"}


@dataclass(frozen=True)
class Block:
    """One directive block of a page: where it starts, its directive, argument, options, text."""

    page: str
    line: int
    directive: str
    language: str
    options: dict[str, str]
    code: str


def page_blocks(page: str, text: str) -> list[Block]:
    """The directive blocks (code-block, literalinclude, doctest...) of an rst page, in order."""
    lines = text.splitlines()
    blocks = []
    for index, line in enumerate(lines):
        match = DIRECTIVE.match(line)
        if not match:
            continue
        indent = len(match[1])
        body: list[str] = []
        for following in lines[index + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following)
        options = {}
        while body and (option := re.match(r"\s*:([\w-]+):\s*(.*)$", body[0])):
            options[option[1]] = option[2]
            body = body[1:]
        code = "\n".join(body).strip("\n")
        shift = min((len(x) - len(x.lstrip()) for x in code.splitlines() if x.strip()), default=0)
        code = "\n".join(x[shift:] for x in code.splitlines())
        blocks.append(Block(page, index + 1, match[2], match[3].strip(), options, code))
    return blocks


def blocks_of(page: str) -> list[Block]:
    """The directive blocks of ``docs/PAGE``."""
    return page_blocks(page, (DOCS / page).read_text())


def is_code(block: Block, languages: set[str]) -> bool:
    """Whether ``block`` is a code-block in one of ``languages``."""
    return block.directive in ("code-block", "code", "sourcecode") and block.language in languages


def runnable(blocks: list[Block]) -> list[dict[str, object]]:
    """The Python blocks of ``blocks`` in the runner's form.

    A python block's ``expected`` output is the ``text`` block captioned "Output" after it.
    """
    found: list[dict[str, object]] = []
    for index, block in enumerate(blocks):
        if not is_code(block, PYTHON | {"pycon"}):
            continue
        after = blocks[index + 1] if index + 1 < len(blocks) else None
        shown = (
            after is not None
            and is_code(after, {"text"})
            and after.options.get("caption", "").startswith("Output")
        )
        found.append(
            {
                "where": f"{block.page}:{block.line}",
                "kind": "pycon" if block.language == "pycon" else "python",
                "code": block.code,
                "expected": after.code if shown and block.language != "pycon" else None,
            }
        )
    return found


def write_own_images(folder: Path) -> None:
    """The reader's own image files the pages use: test digits as dark ink on white paper."""
    from PIL import Image

    images, labels = load_split(train=False)
    for name, digit in (("my_digit.png", 2), ("my_three.png", 3), ("photo_of_a_seven.jpg", 7)):
        index = int((labels == digit).nonzero()[0])
        picture = Image.fromarray(255 - images[index].numpy()).resize((140, 140))
        picture.convert("RGB").save(folder / name)


def prepare_sandbox(page: str, sandbox: Path) -> dict[str, str]:
    """Fill a page's empty working folder with what the page says the reader has; its env."""
    for name in ("home", "tmp"):
        (sandbox / name).mkdir()
    work = sandbox / "work"
    work.mkdir()
    write_own_images(work)
    if page == "fashion.rst":
        if not SHARED_FASHION.is_dir():
            pytest.skip(f"no Fashion-MNIST copy at {SHARED_FASHION} (this page downloads it)")
        (work / "fashion-mnist").mkdir()
        for path in SHARED_FASHION.glob("*-ubyte.gz"):
            (work / "fashion-mnist" / path.name).symlink_to(path)
    env = {k: v for k, v in os.environ.items() if k not in ("LENETISH_DATA", "XDG_CACHE_HOME")}
    env.update(
        HOME=str(sandbox / "home"),
        TMPDIR=str(sandbox / "tmp"),
        MPLBACKEND="Agg",
        MPLCONFIGDIR=str(sandbox / "tmp" / "matplotlib"),
        PYTHONPATH=str(ROOT / "src"),
    )
    return env


def run_blocks(blocks: list[dict[str, object]], sandbox: Path, env: dict[str, str]) -> str:
    """Run ``blocks`` in a fresh interpreter in ``sandbox/work``; return its stderr if it fails."""
    listing = sandbox / "blocks.json"
    listing.write_text(json.dumps(blocks))
    done = subprocess.run(
        [sys.executable, str(RUNNER), str(listing)],
        cwd=sandbox / "work",
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return "" if done.returncode == 0 else done.stderr[-6000:]


def empty_folders(folder: Path) -> list[str]:
    """The empty folders under ``folder`` (relative paths)."""
    return sorted(
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_dir() and not path.is_symlink() and not any(path.iterdir())
    )


PYTHON_PAGES = [p for p in USER_PAGES if runnable(blocks_of(p)) and p not in NOT_RUN]


@pytest.mark.parametrize(
    "page",
    [pytest.param(p, marks=[pytest.mark.slow] if p in SLOW_PAGES else []) for p in PYTHON_PAGES],
)
def test_page_python_runs_as_printed(page: str, tmp_path: Path) -> None:
    """A page's Python blocks run in order in a fresh interpreter and print what it shows."""
    env = prepare_sandbox(page, tmp_path)
    failure = run_blocks(runnable(blocks_of(page)), tmp_path, env)
    assert not failure, failure
    assert empty_folders(tmp_path / "work") == []
    assert not (tmp_path / "home" / ".cache" / "lenetish").exists()


def test_user_pages_hide_no_setup() -> None:
    """No user page has Sphinx doctest directives: setup, code and output are all shown."""
    hidden = [
        f"{block.page}:{block.line} {block.directive}"
        for page in USER_PAGES
        for block in blocks_of(page)
        if block.directive in ("testsetup", "testcleanup", "testcode", "testoutput", "doctest")
    ]
    assert hidden == []


def test_user_pages_have_no_bare_doctest_paragraphs() -> None:
    """Every ``>>>`` line on a user page sits in a ``pycon`` code block, so it is run here."""
    bare = []
    for page in USER_PAGES:
        inside = {
            line
            for block in blocks_of(page)
            if is_code(block, {"pycon"})
            for line in block.code.splitlines()
        }
        for number, line in enumerate((DOCS / page).read_text().splitlines(), 1):
            if line.lstrip().startswith(">>>") and line.strip() not in {x.strip() for x in inside}:
                bare.append(f"{page}:{number}")
    assert bare == []


def shell_lines(page: str) -> list[str]:
    """The lines of a page's shell blocks (continuations joined, comments kept)."""
    lines: list[str] = []
    for block in blocks_of(page):
        if is_code(block, SHELL):
            lines += block.code.replace("\\\n", " ").splitlines()
    return lines


DOCUMENTED_COMMANDS = [
    (page, arguments) for page in USER_PAGES for arguments in lenetish_commands(shell_lines(page))
]


@pytest.mark.parametrize(
    ("page", "arguments"),
    DOCUMENTED_COMMANDS,
    ids=[f"{page}: {' '.join(arguments)}" for page, arguments in DOCUMENTED_COMMANDS],
)
def test_page_lenetish_command_parses(page: str, arguments: list[str]) -> None:
    """Each `lenetish ...` command in a page's shell blocks is accepted by the argument parser."""
    if "--help" in arguments:
        with pytest.raises(SystemExit) as exit_status, contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(arguments)
        assert exit_status.value.code == 0
    else:
        assert build_parser().parse_args(arguments).command == arguments[0]


CHECKS = [
    (page, line.strip())
    for page in USER_PAGES
    for line in shell_lines(page)
    if line.strip().startswith("python -c ")
]


@pytest.mark.parametrize(("page", "line"), CHECKS, ids=[line for _, line in CHECKS])
def test_page_python_check_runs(page: str, line: str, tmp_path: Path) -> None:
    """Each ``python -c ...`` check a page tells the reader to run succeeds here."""
    arguments = shlex.split(line, comments=True)
    done = subprocess.run(
        [sys.executable, *arguments[1:]], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_runner_reports_wrong_output(tmp_path: Path) -> None:
    """The runner fails a block that prints something other than the output the page shows."""
    blocks = runnable(
        page_blocks(
            "x.rst",
            ".. code-block:: python\n\n   print(1 + 1)\n\n"
            ".. code-block:: text\n   :caption: Output\n\n   3\n",
        )
    )
    (tmp_path / "work").mkdir()
    assert "but the block printed" in run_blocks(blocks, tmp_path, dict(os.environ))


def test_runner_shares_a_namespace_and_checks_pycon(tmp_path: Path) -> None:
    """Later blocks see earlier names; a ``>>>`` line that shows the wrong value fails."""
    page = (
        ".. code-block:: python\n\n   x = 2\n\n"
        ".. code-block:: pycon\n\n   >>> x * 3\n   6\n\n"
        ".. code-block:: pycon\n\n   >>> x + 1\n   4\n"
    )
    (tmp_path / "work").mkdir()
    failure = run_blocks(runnable(page_blocks("x.rst", page)), tmp_path, dict(os.environ))
    assert "x.rst:10" in failure and "x.rst:5" not in failure
