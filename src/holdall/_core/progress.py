"""Progress bars for long operations (convert, merge, export, gc), drawn by tqdm on stderr.

On a terminal the bar redraws in place. Anywhere else (a pipe, a log file, CI) the bar is
off unless the caller asked for it; when asked, each update is a line of its own, at most
one every `PIPE_INTERVAL_S` seconds, so a log never shows states run together by carriage
returns.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

from tqdm import tqdm

__all__ = ["PIPE_INTERVAL_S", "progress"]

T = TypeVar("T")

#: Seconds between two progress lines when stderr is not a terminal.
PIPE_INTERVAL_S = 5.0


class _Lines:
    """A text stream for tqdm that turns each in-place redraw into one line (for pipes)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._line = ""
        self._last = ""

    def write(self, text: str) -> None:
        first, *rest = text.replace("\n", "\r").split("\r")
        self._line += first
        for piece in rest:
            self._emit()
            self._line = piece

    def flush(self) -> None:
        self._emit()
        self._stream.flush()

    def _emit(self) -> None:
        line, self._line = self._line.rstrip(), ""
        state = line.split(" [", 1)[0]  # the count, without the timings that always change
        if line and state != self._last:
            self._stream.write(line + "\n")
            self._last = state


def progress(
    items: Iterable[T], *, total: int | None, label: str, enabled: bool | None
) -> Iterator[T]:
    """Yield `items`, showing ``label`` with a progress bar on stderr.

    Parameters
    ----------
    items
        What to iterate over.
    total
        How many items there are, when known (for the bar and the time left).
    label
        What is being done, shown before the bar (``"convert"``).
    enabled
        True: show progress (a bar on a terminal, one line per update elsewhere); False: none;
        None: a bar only when stderr is a terminal (what a command-line tool wants).
    """
    stream = sys.stderr
    is_terminal = stream.isatty()
    if enabled is False or (enabled is None and not is_terminal):
        yield from items
        return
    if is_terminal:
        # A terminal that reports no size (a bare pseudo-terminal) counts as 80x24: tqdm hides
        # a bar below the last row, and a 0-row terminal has none.
        try:
            size = os.get_terminal_size(stream.fileno())
            width, height = size.columns or 80, size.lines or 24
        except (OSError, ValueError):
            width, height = 80, 24
        bar = tqdm(
            items, total=total, desc=label, file=stream, leave=True, ncols=width, nrows=height
        )
    else:
        lines = _Lines(stream)
        bar = tqdm(
            items,
            total=total,
            desc=label,
            file=lines,
            ncols=80,
            ascii=True,
            mininterval=PIPE_INTERVAL_S,
            maxinterval=PIPE_INTERVAL_S,
            leave=True,
        )
    with bar:
        yield from bar
    if not is_terminal:
        lines.flush()
