"""Benchmark: how fast the ``lenetish`` command answers, and what ``import lenetish`` costs.

Each figure is the median wall-clock time of ``--repeats`` fresh processes (so nothing is
cached in the interpreter): ``lenetish --help`` and ``lenetish CMD --help`` for every command,
``python -c "import lenetish"`` (which loads its names on first use), and ``python -c "import
torch"`` and ``python -c "import lenetish; lenetish.Trainer"`` for comparison.

    python benchmarks/startup.py
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time

from machine_info import describe_machine

COMMANDS = ("train", "evaluate", "predict", "img", "export")


def median_seconds(command: list[str], repeats: int) -> float:
    """The median wall-clock time of ``repeats`` runs of ``command`` (each must succeed)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    """Time every case and print one JSON line each, then a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    lenetish = shutil.which("lenetish") or f"{sys.prefix}/bin/lenetish"
    python = sys.executable
    cases = {
        "lenetish --help": [lenetish, "--help"],
        **{f"lenetish {name} --help": [lenetish, name, "--help"] for name in COMMANDS},
        "python (nothing imported)": [python, "-c", "pass"],
        "import torch": [python, "-c", "import torch"],
        "import lenetish": [python, "-c", "import lenetish"],
        "import lenetish; lenetish.Trainer": [python, "-c", "import lenetish; lenetish.Trainer"],
    }
    common = {
        "machine": describe_machine(),
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
        "repeats": args.repeats,
    }
    results = {name: median_seconds(command, args.repeats) for name, command in cases.items()}
    for name, seconds in results.items():
        row = {"benchmark": "startup", "case": name, "seconds": round(seconds, 3), **common}
        print(json.dumps(row))
    extra = results["import lenetish"] / results["import torch"]
    print(f"\n{'case':<38}{'seconds':>8}")
    for name, seconds in results.items():
        print(f"{name:<38}{seconds:>8.3f}")
    print(f"\nimport lenetish costs {extra:.0%} of import torch")


if __name__ == "__main__":
    main()
