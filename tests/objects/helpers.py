"""Running Python snippets in real child processes (crash and multi-process tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import holdall

SRC = str(Path(holdall.__file__).resolve().parent.parent)


def child_env() -> dict[str, str]:
    """The environment for a child that imports this checkout's holdall."""
    env = dict(os.environ)
    # The checkout's src, and its root for the tests' own helpers (tests.start_line).
    env["PYTHONPATH"] = os.pathsep.join([SRC, str(Path(SRC).parent), env.get("PYTHONPATH", "")])
    return env


def run_child(code: str, cwd: Path, *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter in `cwd`; fail the test with its stderr if it fails."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return done


def start_child(code: str, cwd: Path) -> subprocess.Popen[str]:
    """Start `code` in a fresh interpreter in `cwd` without waiting."""
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
