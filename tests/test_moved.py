"""Tests of lenetish._moved: module paths from before the packages warn once and still work."""

from __future__ import annotations

import subprocess
import sys

from lenetish._moved import MOVED


def _run(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (modules import afresh there)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_an_old_path_is_the_new_module_after_one_warning() -> None:
    """Import lenetish.parallel is lenetish.distributed.strategies, after one warning."""
    result = _run(
        "import warnings\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    import lenetish.parallel as old\n"
        "    from lenetish.parallel import SingleProcess\n"
        "    import lenetish.parallel\n"
        "import lenetish.distributed.strategies as new\n"
        "print(old is new, SingleProcess is new.SingleProcess, len(caught))\n"
        "print(caught[0].category.__name__, caught[0].message)\n"
        "print(new.__spec__.name)\n"
    )
    lines = result.stdout.splitlines()
    assert lines[0] == "True True 1", result.stderr
    assert lines[1].startswith("FutureWarning lenetish.parallel moved to lenetish.distributed")
    assert lines[2] == "lenetish.distributed.strategies"  # the module itself is untouched


def test_the_warning_points_at_the_importing_line() -> None:
    """The FutureWarning is attributed to the user's file, not to lenetish or importlib."""
    result = _run("import warnings\nwarnings.simplefilter('default')\nimport lenetish.parallel\n")
    assert result.stderr.startswith("<string>:3: FutureWarning: lenetish.parallel moved to")


def test_every_old_path_still_imports() -> None:
    """Each old module path imports (with its warning) and offers its new module's names."""
    result = _run(
        f"import importlib, warnings\n"
        f"warnings.simplefilter('ignore')\n"
        f"for old, new in {sorted(MOVED.items())!r}:\n"
        f"    old_module, new_module = importlib.import_module(old), importlib.import_module(new)\n"
        f"    names = getattr(new_module, '__all__', [])\n"
        f"    same = all(getattr(old_module, n) is getattr(new_module, n) for n in names)\n"
        f"    print(old, same and len(names) > 0)\n"
    )
    assert result.stdout.split() == [word for old in sorted(MOVED) for word in (old, "True")], (
        result.stderr
    )


def test_the_old_checkpoint_module_still_offers_the_weight_file_functions() -> None:
    """lenetish.checkpoint.load_weights, as before 0.2, is lenetish.load_weights."""
    result = _run(
        "import warnings\nwarnings.simplefilter('ignore')\n"
        "import lenetish, lenetish.checkpoint as old\n"
        "print(old.load_weights is lenetish.load_weights, old.save_checkpoint is not None)\n"
    )
    assert result.stdout.strip() == "True True", result.stderr


def test_the_old_step_module_still_offers_the_captured_step() -> None:
    """lenetish.step.capture_blockers, documented before 0.2, still resolves."""
    result = _run(
        "import warnings\nwarnings.simplefilter('ignore')\n"
        "import lenetish.step as old, lenetish.training.cuda_graph as new\n"
        "print(old.capture_blockers is new.capture_blockers)\n"
    )
    assert result.stdout.strip() == "True", result.stderr
