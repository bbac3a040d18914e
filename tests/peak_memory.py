"""Test helper: run a snippet in a fresh Python; report its peak memory and the error it named."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass

_WRAPPER = """
import json, resource
from lenetish.errors import LenetishError
outcome = "ok"
try:
{body}
except LenetishError as exc:
    outcome = f"{{type(exc).__name__}}: {{exc}}"
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
print(json.dumps({{"peak_mb": peak_mb, "outcome": outcome}}))
"""

# Linux carries the peak RSS over fork and exec (a child's count starts at its parent's size
# at the fork), so the snippet runs as the grandchild of a small launcher: it then counts from
# the launcher's ~10 MB, not from the size of the process that asked for the measurement.
_LAUNCHER = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"


def _run_in_group(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` in a new session; on timeout the whole group (grandchild too) dies."""
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@dataclass
class Measured:
    """What one snippet did: its peak resident memory (MiB) and ``ok`` or the named error."""

    peak_mb: float
    outcome: str


def run_measured(body: str, *, timeout: float = 120) -> Measured:
    """Run ``body`` (statements) in a new interpreter; return its peak RSS and its outcome.

    An error that is not a :class:`~lenetish.errors.LenetishError` makes the child fail, and
    so this raises ``AssertionError`` with its output.
    """
    code = _WRAPPER.format(body=textwrap.indent(textwrap.dedent(body), "    "))
    done = _run_in_group([sys.executable, "-c", _LAUNCHER, sys.executable, "-c", code], timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return Measured(report["peak_mb"], report["outcome"])
