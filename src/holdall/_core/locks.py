"""Inter-process locks on a lock file (POSIX ``flock``), with a bounded wait.

`InterProcessLock` is a readers-writer lock between processes: shared holders read,
one exclusive holder writes. The kernel releases an ``flock`` when its holder dies, however
it dies (``SIGKILL`` included), so a lock left by a dead process never blocks anyone: stale
locks recover by construction. The exclusive holder writes its pid, host and start time
into the lock file so that a timeout can say who held the lock, and whether that process is
still alive.

`WaiterSignal` lets a holder that keeps a lock between operations (a lease) learn that
another process is waiting, so it can hand the lock over at the next safe point.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from holdall.errors import StorageLockedError, WorkspaceLockedError

__all__ = ["Backoff", "InterProcessLock", "WaiterSignal", "pid_is_alive"]

_FIRST_POLL_S = 0.001
_MAX_POLL_S = 0.02


class Backoff:
    """The waits of a bounded poll: sleeps doubling from `first_s` to `max_s`, none past
    `timeout_s` after the start (``flock`` has no timed wait, so lock waits poll)."""

    def __init__(self, timeout_s: float, *, first_s: float, max_s: float) -> None:
        self.timeout_s = timeout_s
        self._start = time.monotonic()
        self._poll = first_s
        self._max_s = max_s

    @property
    def waited(self) -> float:
        """Seconds since the start."""
        return time.monotonic() - self._start

    @property
    def expired(self) -> bool:
        """True once `timeout_s` has passed."""
        return self.waited >= self.timeout_s

    def sleep(self) -> None:
        """Sleep until the next poll (or the deadline, whichever comes first)."""
        time.sleep(min(self._poll, max(self.timeout_s - self.waited, 0.0)))
        self._poll = min(self._poll * 2, self._max_s)


def pid_is_alive(pid: int) -> bool:
    """True when a process with id `pid` exists on this host and is not a zombie.

    A process killed moments ago stays a zombie until its parent reaps it: it holds nothing
    any more (its files and locks are gone), so it counts as dead.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The state follows the parenthesised command name, which may itself hold spaces.
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _open_lock_file(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)


class InterProcessLock:
    """A shared/exclusive lock between processes on the file `path`.

    Parameters
    ----------
    path
        The lock file; created when missing and never deleted (deleting a lock file
        while another process waits on it would let two processes hold "the" lock).
    what
        How to name the locked thing in error messages.

    Notes
    -----
    Each instance holds its own file descriptor, so two instances in one process
    exclude each other exactly as two processes do.
    """

    def __init__(
        self,
        path: Path,
        *,
        what: str,
        error: type[WorkspaceLockedError | StorageLockedError] = WorkspaceLockedError,
    ) -> None:
        self.path = Path(path)
        self.what = what
        self.error = error
        self._fd: int | None = None
        self._shared = False

    @property
    def is_held(self) -> bool:
        """True while this instance holds the lock (shared or exclusive)."""
        return self._fd is not None

    def acquire(self, *, shared: bool, timeout_s: float) -> None:
        """Take the lock, waiting at most `timeout_s` seconds.

        Raises
        ------
        WorkspaceLockedError or StorageLockedError (the class given as `error`)
            When the lock is still held by another holder after `timeout_s`; the message
            names the holder's pid and host and says whether it is still alive.
        """
        if self._fd is not None:
            raise RuntimeError(f"{self.what}: lock {self.path} is already held by this instance")
        fd = _open_lock_file(self.path)
        operation = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
        backoff = Backoff(timeout_s, first_s=_FIRST_POLL_S, max_s=_MAX_POLL_S)
        while True:
            try:
                fcntl.flock(fd, operation)
                break
            except BlockingIOError:
                if backoff.expired:
                    os.close(fd)
                    raise self.error(
                        f"{self.what}: could not take the {'read' if shared else 'write'} lock "
                        f"{self.path} within {timeout_s:g} s; {self.describe_owner()}. "
                        "Wait for that process to finish, or raise lock_timeout.",
                        path=str(self.path),
                        waited_s=backoff.waited,
                    ) from None
                backoff.sleep()
        self._fd = fd
        self._shared = shared
        if not shared:
            owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
            payload = json.dumps(owner).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, payload, 0)

    def release(self) -> None:
        """Release the lock; releasing a lock that is not held does nothing."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if not self._shared:
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def describe_owner(self) -> str:
        """A sentence naming the last exclusive holder recorded in the lock file."""
        try:
            owner = json.loads(self.path.read_bytes() or b"null")
        except (OSError, ValueError):
            owner = None
        if not isinstance(owner, dict):
            return "it is held by one or more readers (shared lock)"
        pid, host = int(owner.get("pid", -1)), str(owner.get("host", "?"))
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(owner.get("since", 0))))
        state = ""
        if host == socket.gethostname():
            state = (
                " (alive)"
                if pid_is_alive(pid)
                else (
                    " (that process is dead: the lock file is stale, but the kernel already released "
                    "its lock, so the current holder is another process)"
                )
            )
        return f"last writer was pid {pid} on {host} since {since}{state}"


class WaiterSignal:
    """Tell a lock holder that someone is waiting, through a second lock file.

    Waiters hold a shared ``flock`` on the file while they wait; the holder probes with
    a non-blocking exclusive ``flock``, which fails exactly when at least one waiter is there.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Announce a waiter for the duration of the block."""
        fd = _open_lock_file(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def anyone_waiting(self) -> bool:
        """True when at least one other holder announced it is waiting."""
        fd = _open_lock_file(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False
