"""A common start for competing real processes (the fairness tests).

Each child warms up (its first call loads modules and opens files), says it is ready, and
waits for the parent's go; so every child runs for the same wall-clock window, and a share
measures turns, not who started first.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def ready_and_wait(folder: Path, tag: str) -> float:
    """In a child: announce `tag` ready, wait for the go; return the common start time."""
    (folder / f"ready-{tag}").touch()
    go = folder / "go"
    while not go.exists():
        time.sleep(0.01)
    return float(go.read_text())


def go_when_ready(
    folder: Path, tags: list[str], children: list[subprocess.Popen[str]], timeout_s: float = 120
) -> None:
    """In the parent: once every child is ready, give the go (fails if a child died first)."""
    deadline = time.monotonic() + timeout_s
    while not all((folder / f"ready-{tag}").exists() for tag in tags):
        assert time.monotonic() < deadline, "the children did not get ready"
        assert all(c.poll() is None for c in children), [c.communicate() for c in children]
        time.sleep(0.01)
    (folder / "go.tmp").write_text(str(time.time()))
    (folder / "go.tmp").rename(folder / "go")
