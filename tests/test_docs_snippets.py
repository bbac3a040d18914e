"""Tests that every code block of the user pages runs as printed, with only what the page shows.

What is run, and why:

* Every page's blocks run in page order, one interpreter per page (tests/docs_snippet_runner.py),
  in an empty working folder, with an empty HOME and no ``LENETISH_DATA``: only the imports the
  page shows exist, MNIST comes from the copy bundled with lenetish. The few files a page says
  are the reader's own (``my_digit.png``) or downloads (the Fashion-MNIST files) are put in
  that folder first. Afterwards no empty folder may be left behind.
* Python blocks (``code-block:: python`` and ``>>>`` blocks, ``code-block:: pycon``) share one
  namespace, and a ``text`` block captioned "Output" right after a Python block is the output
  it must print. A ``literalinclude`` of one function (``:pyobject:``) runs as a Python block
  too, so the page must show the imports the function needs. The pages in ``NOT_RUN`` (the
  serving page, whose blocks need a running server) are the exception, each with its reason.
* Shell blocks (``bash``, ``console``, ``shell``, ``sh``): each command line runs with bash, in
  the same folder and in page order with the Python blocks: ``lenetish ...`` through the
  installed console script, ``python`` as this interpreter; ``cd`` and ``export`` change the
  folder and the environment of the lines after them. The lines that cannot run here are
  declared in ``SKIPPED``, each with its reason (a server, a GPU, several processes, the
  network, ...); an entry that matches no line fails. ``pip install`` lines are not run, only
  checked to install this checkout (``.``, ``".[extra]"``, ``-e``, or the wheel built from it).
  Every ``lenetish ...`` command, run or not, must also be accepted by the argument parser
  (tests/test_docs_commands.py runs the quickstart's and the resume examples on tiny data).
  The examples page runs in a copy of ``examples/`` with ``LENETISH_EXAMPLE_SUBSET`` set, as
  that page says its tests do.
* Other ``literalinclude`` blocks show whole files that run elsewhere (the examples are run by
  tests/test_examples.py, docs/make_figures.py by ``.ci/run``); ``text``, ``json`` and ``toml``
  blocks are output or file contents, and are not run.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import metadata
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
# Pages that train on the full MNIST training set for an epoch or more (in Python, or with
# `lenetish train` and the example scripts on the command line).
SLOW_PAGES = {
    "quickstart.rst",
    "training.rst",
    "distributed.rst",
    "fashion.rst",
    "cli.rst",
    "examples.rst",
    "index.rst",
    "install.rst",
}
# Pages whose Python blocks are not run here, and why (their own tests run them).
NOT_RUN = {
    "serving.rst": "its blocks talk to a running server, or start one that serves until it is "
    "stopped; tests/test_serve_*.py run the server and its clients",
}
_SEVERAL = "starts several processes; tests/test_distributed.py runs torchrun with 2 CPU processes"
_RECORD = (
    "the record of a measurement, run from a checkout on the reader's MNIST folder: minutes to "
    "hours of training each (the pages' results tables hold what they printed)"
)
_VENV = (
    "creates or activates a virtual environment; these commands run in the one lenetish is "
    "installed in"
)
# The shell lines of the user pages that are not run here: (page, pattern the line matches,
# reason). Every entry must match a line of its page.
SKIPPED: list[tuple[str, str, str]] = [
    ("serving.rst", r"^lenetish serve\b", "serves until it is stopped (tests/test_serve_*.py)"),
    ("serving.rst", r"^curl ", "talks to a running server (tests/test_serve_*.py)"),
    ("distributed.rst", r"^(srun )?torchrun ", _SEVERAL),
    ("distributed.rst", r"^head_node=\$\(scontrol ", "needs a SLURM allocation of several nodes"),
    ("examples.rst", r"^torchrun ", _SEVERAL),
    ("benchmarks.rst", r"^torchrun ", _SEVERAL),
    ("gpu.rst", r"^nvidia-smi$", "needs an NVIDIA GPU and its driver"),
    ("install.rst", r"^python -m pip install --upgrade pip$", "downloads pip (the network)"),
    (
        "install.rst",
        r"--index-url https://download\.pytorch\.org/",
        "PyTorch's index (the network)",
    ),
    (
        "data.rst",
        r"^export LENETISH_DATA=/data/fashion-mnist$|--dataset fashion-mnist --no-download$",
        "Fashion-MNIST is not bundled: a download (the network) or the reader's own copy at "
        "/data/fashion-mnist; fashion.rst runs the same steps on a copy",
    ),
    ("index.rst", r"^python3 -m venv ", _VENV),
    ("install.rst", r"^python3 -m venv |^source \.venv/bin/activate$", _VENV),
    ("install.rst", r"^pytest ", "the test suite, of which this test is a part"),
    (
        "install.rst",
        r"^bash \.ci/run$",
        "CI itself: fresh virtual environments from the package index, then the whole suite",
    ),
    (
        "install.rst",
        r"^sphinx-build ",
        "builds this documentation from a checkout's docs/ folder, as .ci/run does",
    ),
    ("accuracy.rst", r"\bpython benchmarks/|^OMP_NUM_THREADS=1 lenetish train --seed 0 ", _RECORD),
    ("benchmarks.rst", r"\bpython benchmarks/|^cd benchmarks && python ", _RECORD),
]
# Where a page's commands run: the examples page's in a checkout's examples/ folder, with the
# training-set cut its introduction names (the tests use it to check every example in seconds).
EXAMPLES_PAGE_SUBSET = "2000"
DIRECTIVE = re.compile(r"^(\s*)\.\. ([\w-]+)::\s*(.*)$")
PYTHON = {"python", "python3", "py"}
SHELL = {"bash", "sh", "shell", "console"}


@dataclass(frozen=True)
class Block:
    """One directive block of a page: where it starts, its directive, argument, options, text.

    ``code_line`` is the page line (1-based) of the first line of ``code``.
    """

    page: str
    line: int
    directive: str
    language: str
    options: dict[str, str]
    code: str
    code_line: int = 0


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
        start = index + 1  # the 0-based index of body[0]
        while body and (option := re.match(r"\s*:([\w-]+):\s*(.*)$", body[0])):
            options[option[1]] = option[2]
            body, start = body[1:], start + 1
        while body and not body[0].strip():
            body, start = body[1:], start + 1
        code = "\n".join(body).strip("\n")
        shift = min((len(x) - len(x.lstrip()) for x in code.splitlines() if x.strip()), default=0)
        code = "\n".join(x[shift:] for x in code.splitlines())
        blocks.append(Block(page, index + 1, match[2], match[3].strip(), options, code, start + 1))
    return blocks


def blocks_of(page: str) -> list[Block]:
    """The directive blocks of ``docs/PAGE``."""
    return page_blocks(page, (DOCS / page).read_text())


def is_code(block: Block, languages: set[str]) -> bool:
    """Whether ``block`` is a code-block in one of ``languages``."""
    return block.directive in ("code-block", "code", "sourcecode") and block.language in languages


def command_lines(block: Block) -> list[tuple[int, str]]:
    """A shell block's command lines with their page lines (continuations joined, no comments)."""
    found: list[tuple[int, str]] = []
    pending: list[str] = []
    first = 0
    for number, line in enumerate(block.code.splitlines(), block.code_line):
        if not pending:
            first = number
        pending.append(line.rstrip().removesuffix("\\").strip())
        if line.rstrip().endswith("\\"):
            continue
        command = " ".join(part for part in pending if part)
        pending = []
        if command and not command.startswith("#"):
            found.append((first, command))
    return found


def skip_reason(page: str, command: str) -> str | None:
    """Why ``command`` of ``page`` is not run here (its SKIPPED entry), or None."""
    command = re.sub(r"\s+#.*$", "", command)  # the patterns see the command, not its comment
    for skipped_page, pattern, reason in SKIPPED:
        if skipped_page == page and re.search(pattern, command):
            return reason
    return None


def is_pip(command: str) -> bool:
    """Whether ``command`` runs pip."""
    words = shlex.split(command, comments=True)
    return words[:1] == ["pip"] or words[1:3] == ["-m", "pip"]


def page_commands(page: str) -> list[tuple[int, str]]:
    """The shell command lines of ``page`` (with their lines) that are run here."""
    return [
        (number, command)
        for block in blocks_of(page)
        if is_code(block, SHELL)
        for number, command in command_lines(block)
        if not is_pip(command) and skip_reason(page, command) is None
    ]


def function_source(block: Block) -> str:
    """The source of the function a ``literalinclude`` with ``:pyobject:`` shows."""
    path = DOCS / block.language
    tree = ast.parse(path.read_text())
    name = block.options["pyobject"]
    found = next(
        node
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name
    )
    start = min([found.lineno, *(d.lineno for d in found.decorator_list)])
    lines = path.read_text().splitlines()[start - 1 : found.end_lineno]
    return "\n".join(lines)


def runnable(blocks: list[Block]) -> list[dict[str, object]]:
    """The Python and shell blocks of ``blocks`` in the runner's form, in page order.

    A python block's ``expected`` output is the ``text`` block captioned "Output" after it; a
    ``literalinclude`` with ``:pyobject:`` is a python block of that function's source. The
    shell blocks of pages whose Python blocks are in ``NOT_RUN`` are not run either.
    """
    found: list[dict[str, object]] = []
    for index, block in enumerate(blocks):
        where = f"{block.page}:{block.line}"
        if block.directive == "literalinclude" and "pyobject" in block.options:
            found.append(
                {"where": where, "kind": "python", "code": function_source(block), "expected": None}
            )
            continue
        if is_code(block, SHELL) and block.page not in NOT_RUN:
            for number, command in command_lines(block):
                if not is_pip(command) and skip_reason(block.page, command) is None:
                    shell = {"where": f"{block.page}:{number}", "kind": "shell", "code": command}
                    found.append({**shell, "expected": None})
            continue
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
                "where": where,
                "kind": "pycon" if block.language == "pycon" else "python",
                "code": block.code,
                "expected": after.code if shown and block.language != "pycon" else None,
            }
        )
    return found


def write_own_images(folder: Path) -> None:
    """The reader's own image file the pages use: a test digit as dark ink on white paper."""
    from PIL import Image

    images, labels = load_split(train=False)
    index = int((labels == 2).nonzero()[0])
    picture = Image.fromarray(255 - images[index].numpy()).resize((140, 140))
    picture.convert("RGB").save(folder / "my_digit.png")


def prepare_sandbox(page: str, sandbox: Path) -> dict[str, str]:
    """Fill a page's empty working folder with what the page says the reader has; its env."""
    for name in ("home", "tmp"):
        (sandbox / name).mkdir()
    work = sandbox / "work"
    work.mkdir()
    write_own_images(work)
    env = {k: v for k, v in os.environ.items() if k not in ("LENETISH_DATA", "XDG_CACHE_HOME")}
    if page == "fashion.rst":
        if not SHARED_FASHION.is_dir():
            pytest.skip(f"no Fashion-MNIST copy at {SHARED_FASHION} (this page downloads it)")
        (work / "fashion-mnist").mkdir()
        for path in SHARED_FASHION.glob("*-ubyte.gz"):
            (work / "fashion-mnist" / path.name).symlink_to(path)
    if page == "examples.rst":  # run from the root of a checkout, as the page says
        ignored = shutil.ignore_patterns("__pycache__", "runs", "*.egg-info")
        shutil.copytree(ROOT / "examples", work / "examples", ignore=ignored)
        env["LENETISH_EXAMPLE_SUBSET"] = EXAMPLES_PAGE_SUBSET
    # `lenetish` is this environment's console script, `python` this interpreter.
    bin_folder = str(Path(sys.executable).parent)
    env.update(
        HOME=str(sandbox / "home"),
        TMPDIR=str(sandbox / "tmp"),
        MPLBACKEND="Agg",
        MPLCONFIGDIR=str(sandbox / "tmp" / "matplotlib"),
        PYTHONPATH=str(ROOT / "src"),
        PATH=os.pathsep.join([bin_folder, env.get("PATH", "")]),
    )
    env.pop("CI", None)  # the progress lines a reader's terminal would not show either way
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
        timeout=1800,
    )
    return "" if done.returncode == 0 else done.stderr[-6000:]


def empty_folders(folder: Path) -> list[str]:
    """The empty folders under ``folder`` (relative paths)."""
    return sorted(
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_dir() and not path.is_symlink() and not any(path.iterdir())
    )


RUN_PAGES = [p for p in USER_PAGES if runnable(blocks_of(p)) and p not in NOT_RUN]


@pytest.mark.parametrize(
    "page",
    [pytest.param(p, marks=[pytest.mark.slow] if p in SLOW_PAGES else []) for p in RUN_PAGES],
)
def test_page_runs_as_printed(page: str, tmp_path: Path) -> None:
    """A page's Python blocks and shell commands run in order and print what it shows."""
    env = prepare_sandbox(page, tmp_path)
    failure = run_blocks(runnable(blocks_of(page)), tmp_path, env)
    assert not failure, failure
    assert empty_folders(tmp_path / "work") == []
    assert not (tmp_path / "home" / ".cache" / "lenetish").exists()


def test_every_skipped_shell_line_is_on_its_page() -> None:
    """Each SKIPPED entry matches a command line of its page (none is left over)."""
    commands = {
        page: [c for b in blocks_of(page) if is_code(b, SHELL) for _, c in command_lines(b)]
        for page in USER_PAGES
    }
    unused = [
        (page, pattern)
        for page, pattern, reason in SKIPPED
        if not any(skip_reason(page, command) == reason for command in commands.get(page, []))
    ]
    assert unused == []


def test_slow_pages_are_the_ones_that_train() -> None:
    """A page whose commands run `lenetish train` or an example script is marked slow."""
    training = {
        page
        for page in RUN_PAGES
        for _, command in page_commands(page)
        if re.search(r"\blenetish train\b|^python (examples/|-m logit_digits)", command)
    }
    assert training <= SLOW_PAGES


CHECKOUT_TARGET = re.compile(r"\.(\[(?P<extras>[\w,-]+)\])?|dist/lenetish-\*\.whl")


def checkout_install_problem(command: str) -> str | None:
    """Why the pip line ``command`` does not install this checkout as the pages mean, or None.

    It may install ``.`` or ``".[extra,...]"`` (``-e`` for an editable install), build a wheel
    of ``.`` (``pip wheel --no-deps -w dist .``) or install that wheel
    (``dist/lenetish-*.whl``); extras must be the project's.
    """
    words = shlex.split(command, comments=True)
    words = words[words.index("pip") + 1 :]
    if words[:1] not in (["install"], ["wheel"]):
        return f"runs pip {words[:1]}, neither install nor wheel"
    targets, rest = [], words[1:]
    while rest:
        word, rest = rest[0], rest[1:]
        if word in ("-e", "--editable", "--no-deps"):
            continue
        if word in ("-w", "--wheel-dir") and rest:
            rest = rest[1:]
            continue
        if word.startswith("-"):
            return f"passes {word}, which a checkout install does not need"
        targets.append(word)
    if not targets:
        return "installs nothing"
    extras = set(metadata("lenetish").get_all("Provides-Extra") or [])
    for target in targets:
        match = CHECKOUT_TARGET.fullmatch(target)
        if match is None:
            return f"installs {target!r}, not this checkout (lenetish is not on PyPI)"
        unknown = set((match["extras"] or "").split(",")) - extras - {""}
        if unknown:
            return f"names extras {sorted(unknown)} that pyproject.toml does not define"
    return None


PIP_LINES = [
    (page, command)
    for page in USER_PAGES
    for block in blocks_of(page)
    if is_code(block, SHELL)
    for _, command in command_lines(block)
    if is_pip(command) and skip_reason(page, command) is None
]


# pip lines known to be wrong, each with what it should be; an entry fails once its line is right.
WRONG_PIP_LINES: dict[tuple[str, str], str] = {}


@pytest.mark.parametrize(
    ("page", "command"),
    [
        pytest.param(
            page,
            command,
            marks=[pytest.mark.xfail(strict=True, reason=WRONG_PIP_LINES[page, command])]
            if (page, command) in WRONG_PIP_LINES
            else [],
        )
        for page, command in PIP_LINES
    ],
    ids=[f"{p}: {c}" for p, c in PIP_LINES],
)
def test_page_pip_line_installs_the_checkout(page: str, command: str) -> None:
    """Each pip line a page shows installs this checkout (or its wheel), with real extras."""
    assert checkout_install_problem(command) is None, f"{page}: {command}"


def test_pip_lines_other_than_the_checkout_are_refused() -> None:
    """The published form and other packages are not checkout installs; the checkout forms are."""
    assert checkout_install_problem('pip install "lenetish[serve]"') is not None
    assert checkout_install_problem("pip install torch --index-url https://x") is not None
    assert checkout_install_problem('pip install -e ".[nope]"') is not None
    assert checkout_install_problem('pip install -e ".[dev]"') is None
    assert checkout_install_problem("pip wheel --no-deps -w dist .") is None


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


def test_runner_runs_shell_lines_in_order_keeping_cd_and_export(tmp_path: Path) -> None:
    """Shell lines run with bash in page order; cd and export hold; a failure names its line."""
    page = (
        ".. code-block:: bash\n\n   mkdir -p sub\n   cd sub\n   export GREETING=hi\n"
        '   test "$GREETING" = hi && touch here\n\n'
        ".. code-block:: python\n\n   from pathlib import Path\n   assert Path('here').exists()\n\n"
        ".. code-block:: bash\n\n   # a comment\n   false \\\n      --flag\n"
    )
    (tmp_path / "work").mkdir()
    failure = run_blocks(runnable(page_blocks("x.rst", page)), tmp_path, dict(os.environ))
    assert "x.rst:16: `false --flag` exited with status 1" in failure
    assert (tmp_path / "work" / "sub" / "here").exists()
