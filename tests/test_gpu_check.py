"""Tests of benchmarks/gpu_check.py: its plan, output checks, step runner and targets."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
STEPS = [
    "environment",
    "nvidia-smi",
    "gpu_tests",
    "speed",
    "fast_recipe",
    "predict_speed",
    "stack_speed",
]


def load_script() -> ModuleType:
    """Import benchmarks/gpu_check.py (a script, not a package module) as ``gpu_check``."""
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gpu_check = load_script()


def python_step(name: str, code: str, budget: float = 60, *wanted: object) -> object:
    """A step that runs ``code`` in a fresh Python and expects ``wanted`` JSON lines."""
    return gpu_check.Step(name, [sys.executable, "-c", code], budget, gpu_check.expect(*wanted))


def run_steps(steps: list[object], out: Path, total_seconds: float = 120) -> list[object]:
    """Run ``steps`` with no wheels folder; the outcomes (setup first)."""
    return gpu_check.run(steps, out, total_seconds=total_seconds, wheels=out / "no-wheels")


def test_the_gpu_plan_runs_every_step_on_cuda() -> None:
    """On a GPU the plan has the seven steps, and every benchmark runs with --device cuda."""
    steps = gpu_check.plan(dry_run=False)
    benchmarks = [step for step in steps if "benchmarks/" in " ".join(step.command)]
    assert [step.name for step in steps] == STEPS
    assert all("--device cuda" in " ".join(step.command) for step in benchmarks)


def test_the_gpu_tests_are_chosen_by_marker_over_the_whole_tests_folder() -> None:
    """The gpu_tests step runs `pytest -m gpu tests`, naming no test file that could move."""
    (step,) = [step for step in gpu_check.plan(dry_run=False) if step.name == "gpu_tests"]
    assert step.command[1:6] == ["-m", "pytest", "-m", "gpu", "tests"]
    assert not any(part.endswith(".py") for part in step.command)


def test_every_planned_script_exists() -> None:
    """Each benchmarks/*.py named by either plan is in the tree."""
    scripts = {
        part
        for dry_run in (False, True)
        for step in gpu_check.plan(dry_run=dry_run)
        for part in step.command
        if part.startswith("benchmarks/")
    }
    assert len(scripts) == 5
    assert all((SCRIPT.parents[1] / script).is_file() for script in scripts)


def test_the_dry_run_plan_is_tiny_and_on_the_cpu() -> None:
    """The dry run trains on the CPU with one round, one seed and a stack of two."""
    commands = {step.name: " ".join(step.command) for step in gpu_check.plan(dry_run=True)}
    assert "--device cpu --subset 400 --rounds 1" in commands["speed"]
    assert "--seeds 0 --warm-up --subset 1000" in commands["fast_recipe"]
    assert "--k 2 --subset 400 --rounds 1" in commands["stack_speed"]


def test_a_failed_step_is_recorded_and_the_next_step_still_runs(tmp_path: Path) -> None:
    """A step exiting 3 is recorded with its status and tail; the step after it runs."""
    bad = python_step("bad", "print('boom'); raise SystemExit(3)")
    good = python_step("good", 'print(\'{"benchmark": "x", "v": 1}\')', 60, ("x", {}, ("v",)))
    outcomes = run_steps([bad, good], tmp_path)[1:]  # after the setup
    assert [(o.status, o.exit_status) for o in outcomes] == [("failed", 3), ("ok", 0)]
    assert outcomes[0].tail[-1] == "boom"


def test_the_summary_lists_every_step_and_says_whether_all_passed(tmp_path: Path) -> None:
    """summary.json holds each step's outcome and ok: false when one failed."""
    run_steps([python_step("bad", "raise SystemExit(1)"), python_step("next", "")], tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [step["name"] for step in summary["steps"]] == ["setup", "bad", "next"]
    assert summary["ok"] is False


def test_a_step_past_its_budget_is_stopped(tmp_path: Path) -> None:
    """A step still running when its budget ends is killed and recorded as timed out."""
    (_, outcome) = run_steps([python_step("slow", "import time; time.sleep(60)", 1.5)], tmp_path)
    assert outcome.status == "timed out"


def test_a_step_left_no_time_is_not_run(tmp_path: Path) -> None:
    """When the total budget is spent, the remaining steps are recorded as not run."""
    (_, outcome) = run_steps([python_step("late", "")], tmp_path, total_seconds=0)
    assert (outcome.status, outcome.problems) == ("not run", ["the total time budget is spent"])


def test_a_missing_program_fails_a_step_unless_it_is_optional(tmp_path: Path) -> None:
    """A missing program fails a required step and skips an optional one."""
    check = gpu_check.expect()
    required = gpu_check.Step("smi", ["no-such-program-here"], 10, check)
    optional = gpu_check.Step("smi", ["no-such-program-here"], 10, check, optional=True)
    outcomes = run_steps([required, optional], tmp_path)[1:]
    assert [outcome.status for outcome in outcomes] == ["failed", "skipped"]


def test_a_missing_json_line_is_named() -> None:
    """expect() names the benchmark and fields of a JSON line that was not printed."""
    check = gpu_check.expect(("speed", {"loop": "reference"}, ()))
    assert check("", [{"benchmark": "speed", "loop": "lenetish"}]) == [
        "no JSON line of 'speed' with {'loop': 'reference'}"
    ]


def test_a_value_that_is_not_a_number_is_named() -> None:
    """expect() names a key whose value is missing, text, a bool or not finite."""
    check = gpu_check.expect(("x", {}, ("a", "b.c", "d", "e")))
    row = {"benchmark": "x", "a": "fast", "b": {"c": True}, "d": float("nan")}
    assert len(check("", [row])) == 4


def test_well_formed_lines_pass_the_check() -> None:
    """expect() finds no problem when each line is there with numbers (nested keys too)."""
    check = gpu_check.expect(("x", {"k": 8}, ("a", "b.c")))
    assert check("", [{"benchmark": "x", "k": 8, "a": 1, "b": {"c": 2.5}}]) == []


def test_json_lines_are_read_among_other_output() -> None:
    """json_rows keeps the JSON objects printed one per line and skips the rest."""
    text = 'a table\n{"benchmark": "x"}\n{not json}\n  {"indented": 1}\n'
    assert gpu_check.json_rows(text) == [{"benchmark": "x"}]


def test_pytest_counts_are_read_from_the_summary_line() -> None:
    """pytest_counts reads pytest's last summary line, errors counted as error."""
    text = "tests/test_step.py::test_a PASSED\n== 5 passed, 2 errors, 1698 deselected in 9.1s =="
    assert gpu_check.pytest_counts(text) == {"passed": 5, "error": 2, "deselected": 1698}


def test_selecting_no_gpu_test_fails_the_dry_run() -> None:
    """When the gpu marker selects nothing (all deselected), the gpu_tests check fails."""
    check = gpu_check.check_gpu_tests(False)
    assert check("1704 deselected in 3.1s", []) == ["pytest selected no gpu-marked test"]


def test_skipped_gpu_tests_pass_the_dry_run() -> None:
    """Without CUDA the selected gpu tests are skipped, and the dry run's check passes."""
    assert gpu_check.check_gpu_tests(False)("6 skipped, 1698 deselected in 3.37s", []) == []


def test_on_a_gpu_skipped_gpu_tests_fail_the_check() -> None:
    """On a GPU the gpu_tests check needs passed tests: all skipped is a failure."""
    assert gpu_check.check_gpu_tests(True)("6 skipped, 1698 deselected in 3.37s", []) != []


def test_targets_without_results_are_not_measured() -> None:
    """With no JSON lines, each of the four targets says met: None."""
    found = gpu_check.targets([])
    assert [target["met"] for target in found] == [None, None, None, None]


def test_targets_are_met_by_numbers_that_meet_them() -> None:
    """The four targets are met by rows that meet them."""
    rows = [
        {"benchmark": "speed", "loop": "lenetish", "precision": "auto"}
        | {"seconds_per_full_epoch": 0.08, "speedup_median_of_rounds": 75},
        {"benchmark": "fast_recipe", "seeds": [0, 1, 2, 3, 4]}
        | {"mean_test_accuracy": 0.991, "mean_train_seconds": 0.4},
        {"benchmark": "predict_speed", "variant": "predict precision=auto"}
        | {"images_per_second": 250_000},
        {"benchmark": "stack_speed", "k": 8, "median_of_round_ratios": {"stack_auto": 4.5}},
    ]
    outcome = gpu_check.Outcome("all", "", "ok", results=rows)
    assert [target["met"] for target in gpu_check.targets([outcome])] == [True] * 4


def test_an_unknown_step_name_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """--only with a name that is not a step exits 2 naming it and the steps there are."""
    with pytest.raises(SystemExit) as stopped:
        gpu_check.main(["--plan", "--only", "sped"])
    assert stopped.value.code == 2
    assert "unknown step ['sped']: choose from ['environment'," in capsys.readouterr().err


def test_the_plan_option_prints_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """--plan prints one line per step with its budget and command, and runs nothing."""
    assert gpu_check.main(["--plan", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ")[0] for line in lines] == STEPS


def test_the_environment_step_of_the_dry_run_passes(tmp_path: Path) -> None:
    """The dry run's environment step runs machine_info.py on this tree and passes."""
    assert gpu_check.main(["--dry-run", "--only", "environment", "--out", str(tmp_path)]) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["environment.log", "summary.json"]
