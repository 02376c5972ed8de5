"""A minimal progress bar for long operations, written to stderr only when asked for."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["progress"]

T = TypeVar("T")


def progress(items: Iterable[T], *, total: int | None, label: str, enabled: bool) -> Iterator[T]:
    """Yield `items`, drawing ``label [#####.....] i/total`` on stderr when `enabled`.

    Kept dependency-free so every long operation (convert, merge, export, gc) can use it.
    """
    if not enabled:
        yield from items
        return
    start = time.perf_counter()
    width = 30
    done = 0
    stream = sys.stderr

    def draw(final: bool = False) -> None:
        elapsed = time.perf_counter() - start
        if total:
            filled = int(width * done / total)
            bar = "#" * filled + "." * (width - filled)
            text = f"\r{label} [{bar}] {done}/{total} {elapsed:.1f}s"
        else:
            text = f"\r{label} {done} {elapsed:.1f}s"
        stream.write(text + ("\n" if final else ""))
        stream.flush()

    draw()
    for item in items:
        yield item
        done += 1
        draw()
    draw(final=True)
