"""Tests that the commands in the docs, the README and ``--help`` run and do what the pages say."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lenetish import get_recipe, load_checkpoint
from lenetish.cli import build_parser, main
from tests.conftest import write_fake_mnist

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = (ROOT / "docs" / "quickstart.rst").read_text()
CLI_PAGE = (ROOT / "docs" / "cli.rst").read_text()
README = (ROOT / "README.md").read_text()
COMMANDS = ("train", "evaluate", "predict", "img", "export")
DATA_OPTIONS_SECTION = "Data options"

# Appended to a documented command so that it runs in seconds on tiny synthetic data (argparse
# keeps the last value of a repeated option, so these override the page's own values).
SMALL_TRAINING = ["--epochs", "1", "--batch-size", "20", "--device", "cpu"]


def code_blocks(rst: str, language: str) -> list[list[str]]:
    """The lines of each ``.. code-block:: LANGUAGE`` in ``rst``, unindented."""
    blocks: list[list[str]] = []
    lines = rst.splitlines()
    for index, line in enumerate(lines):
        if line.strip() != f".. code-block:: {language}":
            continue
        body: list[str] = []
        for following in lines[index + 1 :]:
            if following.strip() and not following.startswith(" "):
                break
            body.append(following)
        text = "\n".join(body).strip("\n")
        indent = min(len(x) - len(x.lstrip()) for x in text.splitlines() if x.strip())
        blocks.append([x[indent:] for x in text.splitlines() if not x.lstrip().startswith(":")])
    return blocks


def markdown_blocks(markdown: str, language: str) -> list[list[str]]:
    """The lines of each fenced ``` block of ``language`` in ``markdown``."""
    pattern = re.compile(rf"^```{language}\n(.*?)^```", re.MULTILINE | re.DOTALL)
    return [match.group(1).splitlines() for match in pattern.finditer(markdown)]


def lenetish_commands(lines: list[str]) -> list[list[str]]:
    """The argument lists of the ``lenetish`` commands in shell ``lines`` (comments dropped).

    ``lenetish ARGS``, ``python -m lenetish ARGS`` and ``torchrun ... -m lenetish ARGS`` all
    count, also after ``&&`` or environment assignments; continuation lines are joined.
    """
    script = "\n".join(lines).replace("\\\n", " ")
    commands: list[list[str]] = []
    for line in script.splitlines():
        tokens = shlex.split(line, comments=True)
        segments: list[list[str]] = [[]]
        for token in tokens:
            if token in ("&&", "||", ";", "|"):
                segments.append([])
            else:
                segments[-1].append(token)
        for segment in segments:
            while segment and re.fullmatch(r"[A-Z_]+=.*", segment[0]):
                segment = segment[1:]  # an environment assignment before the command
            if segment[:1] == ["lenetish"]:
                commands.append(segment[1:])
            elif "-m" in segment[:-1] and segment[segment.index("-m") + 1] == "lenetish":
                commands.append(segment[segment.index("-m") + 2 :])
    return commands


def epilog_lines(command: str) -> list[str]:
    """The example lines of ``lenetish COMMAND --help`` (comment-only lines dropped)."""
    epilog = subparsers()[command].epilog or ""
    return [line for line in epilog.splitlines()[1:] if not line.strip().startswith("#")]


def subparsers() -> dict[str, argparse.ArgumentParser]:
    """The parser of each ``lenetish`` command."""
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("lenetish has no commands")


def option_value(arguments: list[str], option: str) -> str:
    """The value given to ``option`` in ``arguments``."""
    return arguments[arguments.index(option) + 1]


def without_option(arguments: list[str], option: str) -> list[str]:
    """``arguments`` without ``option`` and its value."""
    index = arguments.index(option)
    return arguments[:index] + arguments[index + 2 :]


def run_quietly(arguments: list[str]) -> tuple[int, str]:
    """Run ``lenetish ARGUMENTS`` in this process; return its status and its stdout."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        status = main(arguments)
    return status, printed.getvalue()


@contextlib.contextmanager
def working_directory(folder: Path) -> Iterator[None]:
    """Run the block with ``folder`` as the current directory."""
    previous = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


# --- the quickstart's commands --------------------------------------------------------------


@dataclass
class QuickstartRun:
    """What the quickstart's commands printed and wrote, run on tiny data in ``folder``."""

    folder: Path
    out: Path
    printed: dict[str, str]


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory: pytest.TempPathFactory) -> QuickstartRun:
    """The quickstart's first command block, run on synthetic data (train: one epoch)."""
    folder = tmp_path_factory.mktemp("quickstart")
    data = write_fake_mnist(folder / "data")
    small = {
        "train": ["--data", str(data), *SMALL_TRAINING],
        "predict": ["--data", str(data)],
        "img": ["--data", str(data)],
    }
    printed: dict[str, str] = {}
    commands = lenetish_commands(code_blocks(QUICKSTART, "bash")[0])
    assert [arguments[0] for arguments in commands] == ["train", "predict", "img"]
    with working_directory(folder):
        for arguments in commands:
            status, printed[arguments[0]] = run_quietly([*arguments, *small[arguments[0]]])
            assert status == 0, arguments
    out = folder / option_value(commands[0], "--out")
    return QuickstartRun(folder, out, printed)


@pytest.mark.slow
def test_quickstart_out_folder_holds_the_files_the_page_names(
    quickstart_run: QuickstartRun,
) -> None:
    """`lenetish train --out D` writes exactly the files the quickstart says D receives."""
    sentence = re.search(r"``--out`` receives (.*?)\.\s", QUICKSTART, re.DOTALL)
    assert sentence is not None
    named = set(re.findall(r"``([\w.]+\.\w+)``", sentence.group(1)))
    written = {path.name for path in quickstart_run.out.iterdir() if not path.name.startswith(".")}
    assert named == written


@pytest.mark.slow
def test_quickstart_train_uses_the_default_recipe_and_names_the_data(
    quickstart_run: QuickstartRun,
) -> None:
    """The first line of `lenetish train` names the default recipe and the data, as shown."""
    assert "``lenetish train`` trains the ``default`` recipe" in QUICKSTART
    shown = code_blocks(QUICKSTART, "text")[0][0]
    first = quickstart_run.printed["train"].splitlines()[0]
    assert shown.startswith("recipe default: ") and first.startswith("recipe default: ")
    assert "; data: " in shown and "; data: " in first


@pytest.mark.slow
def test_quickstart_train_prints_epochs_then_the_test_accuracy(
    quickstart_run: QuickstartRun,
) -> None:
    """After the first line come one line per epoch and the test accuracy, in the page's form."""
    shown = code_blocks(QUICKSTART, "text")[0]
    lines = quickstart_run.printed["train"].splitlines()[1:]
    assert shown[1].startswith("epoch=1 loss=") and lines[0].startswith("epoch=1 loss=")
    assert [line.split("=")[0] for line in lines[0].split()] == [
        part.split("=")[0] for part in shown[1].split()
    ]
    assert shown[-1] == "test accuracy NN.NN% (CORRECT/10000)"
    assert re.fullmatch(r"test accuracy \d+\.\d\d% \(\d+/20\)", lines[-1])


@pytest.mark.slow
def test_quickstart_predict_prints_and_draws_as_shown(quickstart_run: QuickstartRun) -> None:
    """`lenetish predict` prints actual and predicted labels and writes predictions.png."""
    shown = code_blocks(QUICKSTART, "text")[1]
    lines = quickstart_run.printed["predict"].splitlines()
    assert [line.split("[")[0] for line in lines] == [line.split("[")[0] for line in shown]
    assert re.fullmatch(r"actual: +\[\d, \d, \d, \d\]", lines[0])
    assert (quickstart_run.folder / "predictions.png").stat().st_size > 0


@pytest.mark.slow
def test_quickstart_img_draws_digits_png(quickstart_run: QuickstartRun) -> None:
    """`lenetish img` prints the sentence the page quotes and writes digits.png."""
    line = quickstart_run.printed["img"].strip()
    assert f"``{line}``" in QUICKSTART
    assert (quickstart_run.folder / "digits.png").stat().st_size > 0


@pytest.mark.slow
def test_readme_python_snippet_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's Python code runs (on synthetic data, one epoch) and writes its checkpoint."""
    data = write_fake_mnist(tmp_path / "data")
    code = "\n".join(markdown_blocks(README, "python")[0])
    for old, new in (
        ("make_loaders(val_size=5_000)", f"make_loaders({str(data)!r}, val_size=10)"),
        ("Trainer(model, epochs=5,", "Trainer(model, epochs=1, device='cpu', progress=False,"),
    ):
        assert old in code
        code = code.replace(old, new)
    with working_directory(tmp_path):
        exec(compile(code, "README.md", "exec"), {})
    assert 0 <= float(capsys.readouterr().out) <= 1
    assert load_checkpoint(tmp_path / "runs" / "a" / "last.pt")["epoch"] == 1


# --- the command-line page against the argument parser --------------------------------------


def page_sections(rst: str) -> dict[str, str]:
    """The text of each ``----``-underlined section of ``rst``, by title."""
    sections: dict[str, str] = {}
    lines = rst.splitlines()
    title, body = "", []
    for index, line in enumerate(lines):
        underline = lines[index + 1] if index + 1 < len(lines) else ""
        if line.strip() and re.fullmatch(r"-{3,}", underline) and len(underline) >= len(line):
            sections[title] = "\n".join(body)
            title, body = line.strip(), []
        elif not re.fullmatch(r"-{3,}", line):
            body.append(line)
    sections[title] = "\n".join(body)
    return sections


def definitions(section: str) -> dict[str, str]:
    """The entries of the definition lists in ``section``: term line -> term and body."""
    entries: dict[str, str] = {}
    lines = section.splitlines()
    for index, line in enumerate(lines):
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if line.startswith("``") and following.startswith("   "):
            body = [line]
            for more in lines[index + 1 :]:
                if more and not more.startswith("   "):
                    break
                body.append(more)
            entries[line] = "\n".join(body)
    return entries


def documented(command: str) -> dict[str, str]:
    """What the CLI page documents for ``command``: option or argument name -> its entry."""
    sections = page_sections(CLI_PAGE)
    section = sections[f"``lenetish {command}``"]
    entries = dict(definitions(section))
    if "`data options`_" in section:
        entries.update(definitions(sections[DATA_OPTIONS_SECTION]))
    named: dict[str, str] = {}
    for term, entry in entries.items():
        for name in re.findall(r"--[a-z-]+|\b[A-Z]{2,}\b", term):
            named.setdefault(name, entry)
    return named


def parser_names(command: str) -> dict[str, argparse.Action]:
    """The options (and positional argument names) of ``command``: name -> its action."""
    names: dict[str, argparse.Action] = {}
    for action in subparsers()[command]._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            names.update((option, action) for option in action.option_strings)
        else:
            for name in re.findall(r"[A-Z]{2,}", str(action.metavar or action.dest)):
                names[name] = action
    return names


@pytest.mark.parametrize("command", COMMANDS)
def test_cli_page_documents_every_option(command: str) -> None:
    """Every option and argument of the command has an entry in its section of the CLI page."""
    missing = set(parser_names(command)) - set(documented(command))
    assert not missing, f"docs/cli.rst does not document {command} {sorted(missing)}"


@pytest.mark.parametrize("command", COMMANDS)
def test_cli_page_names_no_option_the_command_lacks(command: str) -> None:
    """Every option the CLI page documents for the command exists in its parser."""
    options = {name for name in documented(command) if name.startswith("--")}
    extra = options - set(parser_names(command))
    assert not extra, f"docs/cli.rst documents {command} {sorted(extra)}, which it lacks"


@pytest.mark.parametrize("command", COMMANDS)
def test_cli_page_lists_every_choice(command: str) -> None:
    """For an option with fixed choices, its CLI page entry names each of them."""
    entries = documented(command)
    for name, action in parser_names(command).items():
        for choice in action.choices or ():
            pattern = rf"(?<![\w-]){re.escape(str(choice))}(?![\w-])"
            assert re.search(pattern, entries[name]), f"{command} {name}: {choice} not named"


def test_cli_page_documents_the_global_debug_option() -> None:
    """The one option before the command, --debug, is on the CLI page."""
    options = {o for a in build_parser()._actions for o in a.option_strings} - {"-h", "--help"}
    assert options == {"--debug"}
    assert "``lenetish --debug COMMAND ...``" in CLI_PAGE


# --- every documented command line parses ---------------------------------------------------


def documented_command_lines() -> list[tuple[str, list[str]]]:
    """Each ``lenetish`` command in the help epilogs and the README.

    The pages' shell blocks are checked by tests/test_docs_snippets.py.
    """
    found: list[tuple[str, list[str]]] = []
    for command in COMMANDS:
        found += [(f"{command} --help", c) for c in lenetish_commands(epilog_lines(command))]
    for block in markdown_blocks(README, "bash"):
        found += [("README.md", arguments) for arguments in lenetish_commands(block)]
    return found


@pytest.mark.parametrize(
    ("where", "arguments"),
    documented_command_lines(),
    ids=[f"{where}: {' '.join(arguments)}" for where, arguments in documented_command_lines()],
)
def test_documented_command_line_parses(where: str, arguments: list[str]) -> None:
    """Each documented `lenetish ...` command line is accepted by the argument parser."""
    parsed = build_parser().parse_args(arguments)
    assert parsed.command == arguments[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_examples(command: str) -> None:
    """Every command's --help ends with at least one example of that command."""
    examples = lenetish_commands(epilog_lines(command))
    assert examples and all(arguments[0] == command for arguments in examples)


# --- the resume examples resume --------------------------------------------------------------


def resume_examples() -> list[tuple[str, list[str]]]:
    """The `train --resume` examples of `lenetish train --help` and the CLI page, by source."""
    found = [("help", c) for c in lenetish_commands(epilog_lines("train")) if "--resume" in c]
    section = page_sections(CLI_PAGE)["Resuming"]
    for block in code_blocks(section, "bash"):
        found += [("cli.rst", c) for c in lenetish_commands(block) if "--resume" in c]
    return found


def test_resume_examples_are_found() -> None:
    """Both sources show a resume after an interrupt and an extension of a seed-adam run."""
    examples = resume_examples()
    for source in ("help", "cli.rst"):
        kinds = sorted("--recipe" in c for s, c in examples if s == source)
        assert kinds == [False, True], source


def distinct_resume_examples(*, recipe: bool) -> list[list[str]]:
    """The different resume examples, with (``recipe``) or without a ``--recipe``."""
    chosen = {tuple(c): c for _, c in resume_examples() if ("--recipe" in c) == recipe}
    return list(chosen.values())


@pytest.mark.slow
@pytest.mark.parametrize("example", distinct_resume_examples(recipe=True), ids=" ".join)
def test_seed_adam_resume_example_extends_a_finished_run(
    example: list[str], tmp_path: Path
) -> None:
    """A finished seed-adam run resumed with more --epochs, as the example does, trains on."""
    data = write_fake_mnist(tmp_path / "data")
    small = ["--data", str(data), "--batch-size", "20", "--device", "cpu"]
    first = without_option(without_option(example, "--resume"), "--epochs")
    with working_directory(tmp_path):
        assert run_quietly([*first, *small, "--epochs", "1"])[0] == 0
        assert run_quietly([*example, *small, "--epochs", "2"])[0] == 0
        history = json.loads(Path(option_value(example, "--out"), "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]


@pytest.mark.slow
@pytest.mark.parametrize("example", distinct_resume_examples(recipe=False), ids=" ".join)
def test_resume_example_finishes_an_interrupted_run(example: list[str], tmp_path: Path) -> None:
    """A default-recipe run stopped by Ctrl-C after its first epoch, resumed as shown, ends."""
    data = write_fake_mnist(tmp_path / "data", num_train=400)
    small = ["--data", str(data), "--batch-size", "20", "--device", "cpu", "--quiet"]
    out = tmp_path / option_value(example, "--out")
    first = [sys.executable, "-m", "lenetish", *without_option(example, "--resume"), *small]
    process = subprocess.Popen(
        first, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 300
        while not (out / "last.pt").exists():
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 130, "the run ended before it was interrupted"
    finally:
        process.kill()
    given = "--epochs" in example  # else the recipe's, which the resumed run takes over
    epochs = int(option_value(example, "--epochs")) if given else get_recipe("default").epochs
    assert load_checkpoint(out / "last.pt")["epoch"] < epochs
    with working_directory(tmp_path):
        assert run_quietly([*example, *small])[0] == 0
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == list(range(1, epochs + 1))
