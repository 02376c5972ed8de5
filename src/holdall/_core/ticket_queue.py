"""Arrival-order turns for a lock shared by processes, so that no waiter starves.

``flock`` is not fair: under contention the process that released the lock often takes it
straight back, and one writer of six saved 50 times fewer records than another. So a
process first takes a *ticket* and waits until every earlier ticket has been served, and
only then waits for the lock itself (which the holder hands over as soon as it sees a
waiter, see `holdall._core.lease`). A holder that wants the lock again takes a new ticket, behind
everyone already waiting: turns go round in arrival order, and a waiter's wait is bounded by
the work queued ahead of it.

Tickets are files ``<n>`` (a 20-digit number from a counter file) in a folder beside the
locked file (``store.duckdb.queue/`` for a workspace).
Each holds an ``flock`` of its owner for as long as the owner waits, so a ticket whose
``flock`` can be taken belongs to a dead process and is removed by whoever finds it (a
``SIGKILL``-ed waiter never blocks the queue). A ticket is created under a temporary name,
locked, then renamed, so nobody sees a live ticket without its lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

from holdall._core.locks import Backoff
from holdall.errors import WorkspaceLockedError

__all__ = ["TicketQueue"]

_DIGITS = 20
_POLL_S = 0.002
_MAX_POLL_S = 0.01


def _open(path: Path, flags: int = 0) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | flags, 0o644)


class TicketQueue:
    """The queue of processes waiting for one lock.

    Parameters
    ----------
    folder
        The queue folder (``store.duckdb.queue``), created when missing.
    what
        How to name the locked thing in error messages.
    """

    def __init__(self, folder: Path, *, what: str) -> None:
        self.folder = folder
        self.what = what

    def _next_number(self) -> int:
        """The next ticket number, from the counter file (read and bumped under its flock)."""
        fd = _open(self.folder / "counter")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.pread(fd, 32, 0)
            number = int(raw) if raw.strip() else 0
            os.pwrite(fd, str(number + 1).encode().ljust(32), 0)
            return number
        finally:
            os.close(fd)

    def _take(self) -> tuple[int, Path]:
        """A live ticket: its file descriptor (holding the flock) and its path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self.folder / f".{secrets.token_hex(8)}.tmp"
        fd = _open(temporary, os.O_EXCL)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            path = self.folder / f"{self._next_number():0{_DIGITS}d}"
            os.rename(temporary, path)
        except BaseException:
            os.close(fd)
            temporary.unlink(missing_ok=True)
            raise
        return fd, path

    def _ahead(self, mine: str) -> int:
        """How many live tickets precede `mine`; dead ones found on the way are removed."""
        live = 0
        for name in sorted(os.listdir(self.folder)):
            if name >= mine:
                break
            if len(name) != _DIGITS or not name.isdigit():
                continue
            path = self.folder / name
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # served meanwhile
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                live += 1  # its owner holds it: alive and waiting
            else:
                path.unlink(missing_ok=True)  # its owner died waiting
            finally:
                os.close(fd)
        return live

    @contextlib.contextmanager
    def turn(self, timeout_s: float, describe: Callable[[], str]) -> Iterator[float]:
        """Wait until every earlier ticket is served; yield the seconds left of `timeout_s`.

        The ticket is given up when the block ends (the lock taken, or the wait failed).

        Raises
        ------
        WorkspaceLockedError
            When earlier tickets are still waiting after `timeout_s`; `describe` names the
            holder of the lock.
        """
        backoff = Backoff(timeout_s, first_s=_POLL_S, max_s=_MAX_POLL_S)
        fd, path = self._take()
        try:
            while (ahead := self._ahead(path.name)) > 0:
                if backoff.expired:
                    raise WorkspaceLockedError(
                        f"{self.what}: {ahead} process(es) were still queued ahead of this one "
                        f"for its lock after {timeout_s:g} s; {describe()}. Raise the lock "
                        "timeout, or run fewer writers at once.",
                        path=str(self.folder),
                        waited_s=backoff.waited,
                    )
                backoff.sleep()
            yield max(timeout_s - backoff.waited, 0.0)
        finally:
            path.unlink(missing_ok=True)
            os.close(fd)
