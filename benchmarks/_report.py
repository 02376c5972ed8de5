"""Shared helpers for the benchmarks: timing with medians, and writing docs/benchmarks.md.

Each benchmark script owns one section of docs/benchmarks.md, delimited by
``<!-- BEGIN name -->`` / ``<!-- END name -->`` markers, and rewrites only that section, so
scripts can be re-run independently.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPORT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def median_seconds(
    run: Callable[[], object], *, repeats: int, setup: Callable[[], object] | None = None
) -> float:
    """Median wall time of `run` over `repeats` calls, each after an untimed `setup`."""
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine_line() -> str:
    """One line describing the machine the figures were measured on."""
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}"
    )


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section `name` of docs/benchmarks.md with `body`."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    text = REPORT.read_text() if REPORT.exists() else "# Benchmarks\n"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    tmp = REPORT.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, REPORT)
