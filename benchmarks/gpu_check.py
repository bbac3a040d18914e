"""GPU check for any CUDA machine: gpu tests, speed, time to 99%, predict, stack, environment.

On a machine with CUDA, each step below runs as its own process with its own time budget (6
minutes in all); each step's output goes to ``<out>/<step>.log``, and ``<out>/summary.json``
holds every step's status, exit status, output tail and JSON lines, and the issue's four
targets, met or not. A failed step is recorded and the next one runs; the exit status is 1 if
any step failed. ``<out>`` is ``--out``, else ``$OUT``, else a new temporary folder. Eight
files in all, small enough to copy off a remote machine in one go.

    python3 benchmarks/gpu_check.py                    # on the GPU machine
    python3 benchmarks/gpu_check.py --dry-run          # CPU, tiny sizes, outputs checked (CI)
    python3 benchmarks/gpu_check.py --plan [--dry-run] # print the commands, run nothing

``--dry-run`` runs the same steps on the CPU with tiny sizes (a few batches, one round, one
seed, k=2) and checks that each one's output is well formed, so a renamed test, a removed flag
or a changed output format fails in CI rather than on the GPU. Nothing is built or downloaded:
this checkout's ``src`` goes first on each step's PYTHONPATH (so the steps test this tree with
the torch of the python that runs the script) and the data is the MNIST bundled in it. Wheels
for packages that python lacks may travel in ``.whl`` (``--wheels``): they are installed with
``pip --no-index`` into a temporary folder first.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TOTAL_SECONDS = {"gpu": 360.0, "dry-run": 300.0}
# What the steps import; lenetish itself comes from this checkout's src.
NEEDED = (
    *("torch", "torchvision", "numpy", "safetensors", "tqdm", "typing_extensions"),
    *("pytest", "hypothesis"),
)
Row = dict[str, Any]
Check = Callable[[str, list[Row]], list[str]]  # (output, its JSON lines) -> problems found


@dataclass(frozen=True)
class Step:
    """One command of the check: its log's name, argv, seconds allowed, and output check.

    ``optional``: skipped, not failed, where its program is missing (nvidia-smi in a dry run).
    """

    name: str
    command: list[str]
    budget: float
    check: Check
    optional: bool = False


@dataclass
class Outcome:
    """What one step did: status ok, failed, timed out, not run (no time left) or skipped."""

    name: str
    command: str
    status: str
    exit_status: int | None = None
    seconds: float = 0.0
    budget: float = 0.0
    problems: list[str] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)
    results: list[Row] = field(default_factory=list)


def json_rows(text: str) -> list[Row]:
    """The JSON objects printed one per line in ``text`` (other lines ignored)."""
    rows = []
    for line in text.splitlines():
        if line.startswith("{") and line.rstrip().endswith("}"):
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def value_at(row: Row, key: str) -> Any:
    """``row[key]``, where a dotted key reaches into nested objects (``a.b``: ``row[a][b]``)."""
    node: Any = row
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def is_number(value: object) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def rows_of(rows: list[Row], benchmark: str, **match: object) -> list[Row]:
    """The rows of one benchmark whose fields equal ``match``."""
    return [
        row
        for row in rows
        if row.get("benchmark") == benchmark and all(row.get(k) == v for k, v in match.items())
    ]


Wanted = tuple[str, Mapping[str, object], tuple[str, ...]]  # benchmark, fields, numeric keys


def expect(*wanted: Wanted) -> Check:
    """A check that each (benchmark, fields, keys) has a JSON line with numbers under keys."""

    def check(text: str, rows: list[Row]) -> list[str]:
        problems = []
        for benchmark, fields, keys in wanted:
            found = rows_of(rows, benchmark, **fields)
            if not found:
                problems.append(f"no JSON line of {benchmark!r} with {fields}")
            problems += [
                f"{benchmark} {fields}: {key} is {value_at(row, key)!r}, not a number"
                for row in found
                for key in keys
                if not is_number(value_at(row, key))
            ]
        return problems

    return check


def check_environment(gpu: bool) -> Check:
    """The environment line names this checkout's lenetish (and, on a GPU, sees CUDA)."""
    fields: dict[str, object] = {"lenetish_path": str(ROOT / "src" / "lenetish")}
    return expect(("environment", fields | ({"cuda_available": True} if gpu else {}), ()))


def check_nvidia_smi(text: str, rows: list[Row]) -> list[str]:
    """nvidia-smi printed its table."""
    return [] if "NVIDIA-SMI" in text else ["no 'NVIDIA-SMI' header in the output"]


def pytest_counts(text: str) -> dict[str, int]:
    """Counts from pytest's last summary line: passed, failed, skipped, deselected, error."""
    lines = [line for line in text.splitlines() if re.search(r"\d+ (passed|skipped|desel)", line)]
    pairs = re.findall(r"(\d+) (\w+)", lines[-1]) if lines else []
    return {word.removesuffix("s") if word == "errors" else word: int(n) for n, word in pairs}


def check_gpu_tests(gpu: bool) -> Check:
    """Some ``gpu``-marked tests were selected; on a GPU, some passed and none failed."""

    def check(text: str, rows: list[Row]) -> list[str]:
        counts = pytest_counts(text)
        ran = sum(counts.get(k, 0) for k in ("passed", "failed", "skipped", "error", "xfailed"))
        if ran == 0:
            return ["pytest selected no gpu-marked test"]
        if gpu and (counts.get("passed", 0) == 0 or counts.get("failed") or counts.get("error")):
            return [f"gpu tests: {counts}"]
        return []

    return check


def plan(*, dry_run: bool) -> list[Step]:
    """The steps, in order: full sizes on CUDA, or tiny ones on the CPU for ``dry_run``."""
    python = sys.executable
    device = "cpu" if dry_run else "cuda"

    def bench(script: str, *arguments: str) -> list[str]:
        return [python, f"benchmarks/{script}", "--device", device, *arguments]

    seeds = ["0"] if dry_run else ["0", "1", "2", "3", "4"]
    batch_sizes = ["256"] if dry_run else ["1024", "16384"]
    k = 2 if dry_run else 8
    tiny = ["--subset", "400", "--rounds", "1"]
    speed_size = tiny if dry_run else ["--subset", "0"]
    fast_size = ["--subset", "1000"] if dry_run else []
    predict_size = ["--rounds", "1", "--images", "1000"] if dry_run else []
    stack_size = tiny if dry_run else []
    # A test module that cannot be imported there (a package the GPU machine lacks) still fails
    # the step, but the gpu tests elsewhere run.
    pytest = [python, "-m", "pytest", "-m", "gpu", "tests", "-v", "-p", "no:cacheprovider"]
    pytest.append("--continue-on-collection-errors")
    budgets = [60, 30, 120, 90, 90, 45, 60] if dry_run else [30, 15, 90, 100, 75, 40, 60]
    epoch = ("seconds_per_full_epoch", "speedup_median_of_rounds")
    variants = ["plain fp32 loop", "predict precision=auto", "predict precision=32"]
    variants += [f"predict auto, batch {size}" for size in batch_sizes]
    speed = [*speed_size, "--precision", "32", "auto", "--cuda-graphs", "both", "--log"]
    steps = [
        ("environment", bench("machine_info.py"), check_environment(not dry_run)),
        ("nvidia-smi", ["nvidia-smi"], check_nvidia_smi),
        ("gpu_tests", pytest, check_gpu_tests(not dry_run)),
        (
            "speed",
            bench("speed.py", *speed),
            expect(
                ("speed", {"loop": "reference", "precision": "32"}, epoch),
                *(
                    ("speed", {"loop": "lenetish", "precision": name}, epoch)
                    for name in ("32", "32+graphs", "auto", "auto+graphs")
                ),
                ("predict", {}, ("images_per_second",)),
            ),
        ),
        (
            "fast_recipe",
            bench("fast_recipe.py", "--seeds", *seeds, "--warm-up", *fast_size),
            expect(
                *(("fast_recipe_seed", {"seed": int(s)}, ("test_accuracy",)) for s in seeds),
                ("fast_recipe", {}, ("mean_test_accuracy", "mean_train_seconds", "speedup")),
            ),
        ),
        (
            "predict_speed",
            bench("predict_speed.py", "--batch-sizes", *batch_sizes, *predict_size),
            expect(
                *(("predict_speed", {"variant": v}, ("images_per_second",)) for v in variants),
                ("predict_agreement", {}, ("auto_vs_32",)),
            ),
        ),
        (
            "stack_speed",
            bench("stack_speed.py", "--k", str(k), *stack_size),
            expect(("stack_speed", {"k": k}, ("median_of_round_ratios.stack_auto",))),
        ),
    ]
    return [
        Step(name, command, budget, check, optional=dry_run and name == "nvidia-smi")
        for (name, command, check), budget in zip(steps, budgets, strict=True)
    ]


def run_step(step: Step, out: Path, env: dict[str, str], seconds_left: float) -> Outcome:
    """Run one step within its budget (and the time left), its output to ``<out>/<name>.log``."""
    outcome = Outcome(step.name, shlex.join(step.command), "ok", budget=step.budget)
    if shutil.which(step.command[0]) is None:
        outcome.status = "skipped" if step.optional else "failed"
        outcome.problems = [f"{step.command[0]} is not on the PATH"]
        return outcome
    budget = min(step.budget, seconds_left)
    if budget < 1:
        outcome.status, outcome.problems = "not run", ["the total time budget is spent"]
        return outcome
    log = out / f"{step.name}.log"
    started = time.monotonic()
    with log.open("w") as handle:
        handle.write(f"$ {outcome.command}\n")
        handle.flush()
        process = subprocess.Popen(
            step.command,
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a timeout ends its children too
        )
        try:
            outcome.exit_status = process.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    outcome.seconds = round(time.monotonic() - started, 1)
    text = log.read_text(errors="replace")
    outcome.tail = text.splitlines()[-25:]
    outcome.results = json_rows(text)
    if outcome.exit_status is None:
        outcome.status, outcome.problems = "timed out", [f"stopped after {budget:.0f} s"]
    elif outcome.exit_status != 0:
        outcome.status, outcome.problems = "failed", [f"exit status {outcome.exit_status}"]
    else:
        outcome.problems = step.check(text, outcome.results)
        outcome.status = "failed" if outcome.problems else "ok"
    return outcome


def install(wheels: Path) -> tuple[Outcome, list[str]]:
    """Find what the steps import; install carried wheels offline when something is missing.

    Returns the setup's outcome and folders to put on the steps' PYTHONPATH.
    """
    outcome = Outcome("setup", f"{sys.executable} (lenetish from {ROOT / 'src'})", "ok")
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    paths: list[str] = []
    files = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    if missing and files:
        target = tempfile.mkdtemp(prefix="gpu_check_site_")
        command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
        command += ["--no-compile", "--target", target, *map(str, files)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        outcome.tail = (done.stdout + done.stderr).splitlines()[-25:]
        outcome.exit_status, paths = done.returncode, [target]
        sys.path.insert(0, target)
        importlib.invalidate_caches()
        missing = [name for name in missing if importlib.util.find_spec(name) is None]
        outcome.results = [{"installed": [f.name for f in files], "into": target}]
    if missing:
        outcome.status = "failed"
        outcome.problems = [f"missing: {', '.join(missing)} (carry wheels: benchmarks/README.md)"]
    return outcome, paths


def step_environment(paths: list[str]) -> dict[str, str]:
    """The steps' environment: this tree's src first, the bundled MNIST, unbuffered output."""
    env = dict(os.environ)
    env.pop("LENETISH_DATA", None)  # the data is the MNIST bundled in this tree
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *paths, env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("MPLBACKEND", "Agg")
    return env


def targets(outcomes: list[Outcome]) -> list[Row]:
    """The issue's four targets: what was measured, and met or not (None: not measured)."""
    rows = [row for outcome in outcomes for row in outcome.results]
    epochs = rows_of(rows, "speed", loop="lenetish")
    best = min(epochs, key=lambda row: row["seconds_per_full_epoch"], default={})
    fast = (rows_of(rows, "fast_recipe") or [{}])[0]
    predict = (rows_of(rows, "predict_speed", variant="predict precision=auto") or [{}])[0]
    stack = (rows_of(rows, "stack_speed") or [{}])[0]
    table: list[tuple[str, Row, Callable[[Row], bool]]] = [
        (
            "seed network <= 0.10 s per 60k-image epoch, >= 70x the reference",
            {k: best.get(k) for k in ("precision", "seconds_per_full_epoch")}
            | {"x_reference": best.get("speedup_median_of_rounds")},
            lambda m: m["seconds_per_full_epoch"] <= 0.10 and m["x_reference"] >= 70,
        ),
        (
            "fast recipe: 99.0% mean of 5 seeds in <= 0.5 s of warm training",
            {k: fast.get(k) for k in ("mean_test_accuracy", "mean_train_seconds")}
            | {"seeds": len(fast.get("seeds", []))},
            lambda m: (
                m["seeds"] >= 5
                and m["mean_test_accuracy"] >= 0.99
                and m["mean_train_seconds"] <= 0.5
            ),
        ),
        (
            "predict >= 200,000 images/s",
            {"images_per_second": predict.get("images_per_second")},
            lambda m: m["images_per_second"] >= 200_000,
        ),
        (
            "8 models as one stack >= 4x sequential",
            {"k": stack.get("k"), "ratio": value_at(stack, "median_of_round_ratios.stack_auto")},
            lambda m: m["k"] == 8 and m["ratio"] >= 4,
        ),
    ]
    return [
        {"target": text, "measured": found, "met": None if None in found.values() else met(found)}
        for text, found, met in table
    ]


def run(steps: list[Step], out: Path, *, total_seconds: float, wheels: Path) -> list[Outcome]:
    """Set up, then run each step in turn (a failure does not stop the next); write summary.json."""
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    setup, paths = install(wheels)
    outcomes, env = [setup], step_environment(paths)
    for step in steps:
        left = total_seconds - (time.monotonic() - started)
        outcome = run_step(step, out, env, left)
        print(f"== {step.name}: {outcome.status} ({outcome.seconds} s)", flush=True)
        outcomes.append(outcome)
    summary = {
        "ok": all(o.status in ("ok", "skipped") for o in outcomes),
        "seconds": round(time.monotonic() - started, 1),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "steps": [asdict(outcome) for outcome in outcomes],
        "targets": targets(outcomes),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return outcomes


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the check (or print its plan); 0 if every step passed, else 1."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes (what CI runs)")
    parser.add_argument("--plan", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--out", type=Path, default=None, help="default: $OUT, else a temp dir")
    parser.add_argument("--only", nargs="+", default=None, help="run only these steps (by name)")
    parser.add_argument("--wheels", type=Path, default=ROOT / ".whl", help="carried wheels")
    args = parser.parse_args(argv)
    steps = plan(dry_run=args.dry_run)
    unknown = set(args.only or []) - {step.name for step in steps}
    if unknown:
        parser.error(f"unknown step {sorted(unknown)}: choose from {[s.name for s in steps]}")
    steps = [step for step in steps if args.only is None or step.name in args.only]
    if args.plan:
        for step in steps:
            print(f"{step.name} ({step.budget:.0f} s): {shlex.join(step.command)}")
        return 0
    mode = "dry-run" if args.dry_run else "gpu"
    out = args.out or Path(os.environ.get("OUT") or tempfile.mkdtemp(prefix="gpu_check_"))
    print(f"gpu_check ({mode}) writing to {out}", flush=True)
    outcomes = run(steps, out, total_seconds=TOTAL_SECONDS[mode], wheels=args.wheels)
    for outcome in outcomes:
        if outcome.status not in ("ok", "skipped"):
            print(f"\n== {outcome.name} {outcome.status}: {'; '.join(outcome.problems)}")
            tail = [line for line in outcome.tail[-12:] if line != f"$ {outcome.command}"]
            print(f"$ {outcome.command}", *tail, sep="\n")
    failed = [o.name for o in outcomes if o.status not in ("ok", "skipped")]
    print(
        f"\n{len(outcomes) - len(failed)} of {len(outcomes)} steps passed; see {out}/summary.json"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
