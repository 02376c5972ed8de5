"""One process's lease on a DuckDB file that several processes share.

DuckDB lets one process open a file read-write, and then no other process may open it at
all. So every access first takes an inter-process lock (`holdall._core.locks`): exclusive
for a writer, shared for a reader (DuckDB lets many processes read a file together as long
as none writes). The connection and the lock are then kept (a lease), so that consecutive
operations cost no reconnect (about 25 ms on DuckDB 2.0), and a watcher thread hands them
back as soon as another process announces it is waiting. Waiters are served in arrival
order (`TicketQueue`), and a holder running operations back to back hands over at its next
one once it has had its turn (`turn_s`), so no waiter starves. The workspace store and the
experiment sessions both hold their database this way.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import duckdb

from holdall._core.locks import InterProcessLock, WaiterSignal
from holdall._core.ticket_queue import TicketQueue
from holdall.errors import WorkspaceLockedError

__all__ = ["ConnectionLease", "LeasedCursor"]

_WATCH_INTERVAL_S = 0.02

Connection = duckdb.DuckDBPyConnection
T = TypeVar("T")


class _Closable(Protocol):
    def close(self) -> None: ...


class LeasedCursor:
    """A second connection to a leased database, for a result read across calls and threads.

    A query on the leased connection would end a result still open on it, so a stream reads
    through a cursor. `read` runs one step of the reading under the cursor's own lock, which
    `close` takes too, so the lease never closes a result in the middle of a step. `close`
    closes the readers `attach`-ed to it, then the cursor (each keeps the file open).
    """

    def __init__(self, cursor: Connection, closed_error: Callable[[], Exception]) -> None:
        self.cursor = cursor
        self._closed_error = closed_error
        self._lock = threading.Lock()
        self._resources: list[_Closable] = [cursor]
        self.closed = False

    def attach(self, reader: _Closable) -> None:
        """Close `reader` (of a result of this cursor) before the cursor; at once if it was."""
        with self._lock:
            if not self.closed:
                self._resources.append(reader)
                return
        reader.close()

    def read(self, step: Callable[[], T]) -> T:
        """Run `step` unless the cursor was closed (then raise the lease's `closed_error`)."""
        with self._lock:
            if self.closed:
                raise self._closed_error()
            return step()

    def close(self) -> None:
        """Close the attached readers, newest first, then the cursor; idempotent."""
        with self._lock:
            resources, self._resources = self._resources, []
            self.closed = True
        for resource in reversed(resources):
            resource.close()


class ConnectionLease:
    """A lock-guarded, lazily (re)opened DuckDB connection shared by one object's threads.

    Parameters
    ----------
    db_path
        The database file. The lock (``<file>.lock``), the waiter signal (``<file>.waiters``)
        and the queue (``<file>.queue/``) go beside it.
    what
        How error messages name the database.
    open_connection
        Opens (and checks) the connection; called with the lock held.
    closed_error
        Builds the error that use after `close` raises.
    lock_timeout_s
        Longest wait for the queue and the lock before `WorkspaceLockedError`.
    shared
        Take the lock shared, for read-only connections.
    exclusive
        Keep the lease, once taken, until `close`: no hand-over, no watcher.
    turn_s
        A holder with waiters behind it keeps the lease this long at most before handing
        over at its next operation. Long enough that the reconnect a hand-over costs (50-80
        ms: closing, opening and checking the file) stays a small share of the turn, short
        enough that every waiter's turn comes soon.
    before_release
        Called with the open connection just before the lease ends, so the owner can commit
        what it buffered; also every `flush_interval_s` while the lease is held.
    flush_interval_s
        How often the watcher calls `before_release` on a held lease (None: never).
    idle_release_s
        Hand an unused lease back after this long, so other tools can open the file
        (None: keep it until another process waits).
    translate_error
        Maps a `duckdb.Error` raised inside a `connection` block to the error raised instead.
    """

    def __init__(
        self,
        db_path: Path,
        *,
        what: str,
        open_connection: Callable[[], Connection],
        closed_error: Callable[[], Exception],
        lock_timeout_s: float,
        shared: bool = False,
        exclusive: bool = False,
        turn_s: float = 0.1,
        before_release: Callable[[Connection], None] | None = None,
        flush_interval_s: float | None = None,
        idle_release_s: float | None = None,
        translate_error: Callable[[duckdb.Error], Exception] | None = None,
    ) -> None:
        self.db_path = db_path
        self.lock_timeout_s = lock_timeout_s
        self.exclusive = exclusive
        self._turn_s = turn_s
        self._shared = shared
        self._open = open_connection
        self._closed_error = closed_error
        self._before_release = before_release
        self._flush_interval_s = flush_interval_s
        self._idle_release_s = idle_release_s
        self._translate_error = translate_error
        self._lock = InterProcessLock(db_path.with_name(db_path.name + ".lock"), what=what)
        self._waiters = WaiterSignal(db_path.with_name(db_path.name + ".waiters"))
        self._queue = TicketQueue(db_path.with_name(db_path.name + ".queue"), what=what)
        self._mutex = threading.RLock()
        self._conn: Connection | None = None
        self._depth = 0  # nesting of `connection` blocks in the thread holding the mutex
        self._number = 0
        self._leased_at = self._last_used = self._last_flush = 0.0
        self._closed = False
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._cursors: list[LeasedCursor] = []
        """Open cursors (`open_cursor`): while any is open the lease is not handed over, and
        each is closed before the lease's connection closes (it would keep the file open)."""

    @property
    def mutex(self) -> threading.RLock:
        """Held to exclude the watcher and other threads without taking the lease."""
        return self._mutex

    @property
    def closed(self) -> bool:
        """True after `close`."""
        return self._closed

    @property
    def held(self) -> bool:
        """True while this process holds the lease (the connection is open)."""
        return self._conn is not None

    @property
    def number(self) -> int:
        """Changes whenever the lease is taken or handed back: while it keeps its value no
        other process can have written, so what the owner learnt meanwhile still holds."""
        return self._number

    def check_open(self) -> None:
        """Raise the owner's `closed_error` after `close`."""
        if self._closed:
            raise self._closed_error()

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        """Hold the lease (taking it if needed) and yield the connection.

        An operation that starts while another process waits, once this process has held the
        lease for `turn_s`, first hands the lease over and queues again behind it (the
        watcher alone rarely finds a busy holder idle), so turns go round; nested uses inside
        one operation keep the lease.
        """
        with self._mutex:
            self.check_open()
            if (
                self._depth == 0
                and self._conn is not None
                and not self.exclusive
                and not self._cursors
                and time.monotonic() - self._leased_at >= self._turn_s
                and self._waiters.anyone_waiting()
            ):
                self.release()
            self._depth += 1
            try:
                yield self._ensure_connection()
            except duckdb.Error as err:
                error = err if self._translate_error is None else self._translate_error(err)
                if error is err:
                    raise
                raise error from err
            finally:
                self._depth -= 1
                self._last_used = time.monotonic()

    def open_cursor(self) -> LeasedCursor:
        """Take the lease and open a cursor on its connection; end it with `close_cursor`.

        The caller holds no lock between two reads, so other threads go on using the lease;
        other processes wait until the cursor is closed.
        """
        with self.connection() as conn:
            cursor = LeasedCursor(conn.cursor(), self._closed_error)
            self._cursors.append(cursor)
            return cursor

    def close_cursor(self, cursor: LeasedCursor) -> None:
        """Close `cursor` and let the lease be handed over again (idempotent)."""
        with self._mutex:
            if cursor in self._cursors:
                self._cursors.remove(cursor)
        cursor.close()

    @property
    def cursors_open(self) -> int:
        """How many cursors are open."""
        return len(self._cursors)

    def _close_cursors(self) -> None:
        cursors, self._cursors = self._cursors, []
        for cursor in cursors:
            cursor.close()

    def _ensure_connection(self) -> Connection:
        if self._conn is not None:
            return self._conn
        start = time.monotonic()
        try:
            with (
                self._waiters.waiting(),
                self._queue.turn(self.lock_timeout_s, self._lock.describe_owner) as left,
            ):
                self._lock.acquire(shared=self._shared, timeout_s=left)
            self._conn = self._open()
        except WorkspaceLockedError as err:
            err.waited_s = time.monotonic() - start  # the queue's wait included
            self._lock.release()
            raise
        except BaseException:
            # Anything after the lock was taken (leaving the queue, opening the file, Ctrl-C)
            # gives it back: a lock held without a connection would block the next lease.
            self._lock.release()
            raise
        self._number += 1
        self._leased_at = self._last_used = self._last_flush = time.monotonic()
        if not self.exclusive:
            watcher = threading.Thread(
                target=self._watch,
                args=(self._number,),
                name=f"holdall-lease:{self.db_path}",
                daemon=True,
            )
            try:
                watcher.start()
            except RuntimeError:
                # Interpreter shutdown (Python 3.12 starts no thread then), while closing at exit
                # commits a buffer: the lease works without hand-overs, and ends at `close`.
                pass
            else:
                self._watcher = watcher
        return self._conn

    def reopen(self, between: Callable[[], None]) -> None:
        """Close the connection, run `between` (which may swap the file), open it again.

        The lock is held throughout, so no other process sees the file in between.
        """
        with self._mutex:
            conn = self._ensure_connection()
            self._close_cursors()
            conn.close()
            self._conn = None
            try:
                between()
            finally:
                try:
                    self._conn = self._open()
                except BaseException:
                    self._number += 1
                    self._lock.release()
                    raise

    def release(self) -> None:
        """End the lease now: `before_release`, close the connection, unlock."""
        with self._mutex:
            conn, self._conn = self._conn, None
            self._number += 1
            try:
                if conn is not None and self._before_release is not None:
                    self._before_release(conn)
            finally:
                self._close_cursors()
                if conn is not None:
                    conn.close()
                self._lock.release()

    def _watch(self, number: int) -> None:
        """While lease `number` lasts: hand it over when someone waits or it idles, flush."""
        while not self._stop.wait(_WATCH_INTERVAL_S):
            if not self._mutex.acquire(blocking=False):
                continue  # an operation is running; look again later
            try:
                if self._conn is None or self._number != number:
                    return  # handed back; a new lease has its own watcher
                now = time.monotonic()
                # An open stream (a cursor) keeps the lease until it ends, or until `close`.
                if not self._cursors and self._should_hand_over(now, now - self._last_used):
                    self.release()
                    return
                if (
                    self._flush_interval_s is not None
                    and now - self._last_flush >= self._flush_interval_s
                ):
                    self._last_flush = now
                    if self._before_release is not None:
                        self._before_release(self._conn)
            except Exception:  # a failed flush is retried, and reported, by the next operation
                continue
            finally:
                self._mutex.release()

    def _should_hand_over(self, now: float, unused: float) -> bool:
        if self._idle_release_s is not None and unused > self._idle_release_s:
            return True
        # A waiter gets the lease of a holder that is idle or has had its turn, not in the gap
        # between two operations of a busy one: that would cut its turn to one operation and
        # spend every turn on reconnecting.
        idle_or_done = unused >= _WATCH_INTERVAL_S or now - self._leased_at >= self._turn_s
        return idle_or_done and self._waiters.anyone_waiting()

    def close(self) -> None:
        """End the lease (through `before_release`) and stop the watcher; idempotent."""
        with self._mutex:
            if self._closed:
                return
            self._stop.set()
            try:
                self.release()
            finally:
                self._closed = True
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join()
