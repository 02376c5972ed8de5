"""One process's access to the workspace database: a lease on a DuckDB connection.

DuckDB lets one process open a file read-write, and then no other process may open it at
all. So every access first takes the inter-process lock (`holdall._core.locks`): exclusive
for a read-write store, shared for a read-only one (DuckDB lets many processes read a
file together as long as none writes). The connection and the lock are then kept (a lease)
so that consecutive operations cost no reconnect (about 25 ms on DuckDB 2.0), and a
watcher thread hands them back as soon as another process announces it is waiting.
Waiters are served in arrival order (`_queue`), so none starves.
In ``exclusive`` mode the lease is taken at once and kept until `close`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb

from holdall._core import duckdb_files
from holdall._core.locks import InterProcessLock, WaiterSignal
from holdall.errors import (
    ClosedWorkspaceError,
    CorruptedFileError,
    ReadOnlyStorageError,
    WorkspaceLockedError,
)
from holdall.workspace._queue import TicketQueue
from holdall.workspace._schema import ensure_schema

__all__ = ["Session", "connect_database"]

_WATCH_INTERVAL_S = 0.02
_TURN_S = 0.1
"""A holder with waiters behind it keeps the lease this long at most before handing over at
its next operation: long enough that the reconnect a hand-over costs stays a small share,
short enough that every waiter's turn comes soon."""

_CORRUPTION_SIGNS = (
    "not a valid DuckDB database file",
    "Could not read enough bytes",
    "Corrupt database file",
    "checksum",
)
"""Parts of DuckDB's messages for a damaged or foreign file (its exception classes also
cover lock conflicts and full disks, which are not corruption)."""
_IN_USE_SIGN = "Unique file handle conflict"
"""DuckDB's message when another connection of this process has the file attached."""


_ROW_GROUP_ROWS = 2048
"""Rows per row group that workspace connections write. DuckDB writes a transaction's rows
straight into the file once they fill a row group and logs smaller inserts in its
write-ahead log, to copy them into the file again at the next checkpoint: at its default of
122,880 rows, every bulk write or import of a few thousand predictions was written twice
(docs/benchmarks.md)."""


def connect_database(db_path: Path, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    """A connection whose default database is the workspace file `db_path`.

    The file is attached rather than opened, since only ``ATTACH`` takes a row group size
    (`_ROW_GROUP_ROWS`); it is the connection's default database, so queries name its tables
    unqualified. Spill files go beside it (``store.duckdb.tmp``, as for a connection to the
    file itself), not into the working directory. A new file is created in the storage format
    every supported DuckDB reads (`holdall._core.duckdb_files`). While the connection is open,
    a ``duckdb.connect`` of the same file in the same process fails (`Session` reports it).
    """
    if not read_only:
        duckdb_files.create_if_missing(db_path)
    conn = duckdb_files.connect()
    try:
        conn.execute(f"SET temp_directory = {duckdb_files.sql_string(f'{db_path}.tmp')}")
        mode = "READ_ONLY" if read_only else f"ROW_GROUP_SIZE {_ROW_GROUP_ROWS}"
        conn.execute(f"ATTACH {duckdb_files.sql_string(db_path)} AS workspace ({mode})")
        conn.execute("USE workspace")
    except BaseException:
        conn.close()
        raise
    return conn


class Session:
    """A lock-guarded, lazily (re)opened DuckDB connection shared by a store's threads.

    Parameters
    ----------
    db_path
        The ``store.duckdb`` file.
    read_only
        Open read-only connections under a shared lock; writes raise `ReadOnlyStorageError`.
    exclusive
        Take the lock now and keep it until `close` (no hand-over to other processes).
    lock_timeout_s
        Longest wait for the lock before `WorkspaceLockedError`.
    before_release
        Called with the open connection (inside the lease) just before the lease ends, so
        the store can flush what it buffered.
    flush_interval_s
        How often the watcher calls `before_release` on an idle lease (bounds how long a
        buffered record waits before it is committed).
    """

    def __init__(
        self,
        db_path: Path,
        *,
        read_only: bool,
        exclusive: bool,
        lock_timeout_s: float,
        before_release: Callable[[duckdb.DuckDBPyConnection], None],
        flush_interval_s: float,
    ) -> None:
        self.db_path = db_path
        self.read_only = read_only
        self.exclusive = exclusive
        self.lock_timeout_s = lock_timeout_s
        self._before_release = before_release
        self._flush_interval_s = flush_interval_s
        self._lock = InterProcessLock(db_path.with_name(db_path.name + ".lock"), what=str(db_path))
        self._waiters = WaiterSignal(db_path.with_name(db_path.name + ".waiters"))
        self._queue = TicketQueue(db_path.with_name(db_path.name + ".queue"))
        self._mutex = threading.RLock()
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._depth = 0  # nesting of `connection` blocks in the thread holding the mutex
        self._leased_at = 0.0
        self._closed = False
        self.lease = 0
        self.generation = 0
        """Bumped by every write transaction of this store: with `lease`, what a cached read
        depends on (no other process writes during a lease, this one bumps it)."""
        """Changes whenever the lease is taken or handed back: while it keeps its value no
        other process can have written, so what the store learnt meanwhile still holds."""
        self._last_flush = time.monotonic()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        with self.connection():
            pass  # create or check the schema now, so a bad file fails at construction
        if not exclusive:
            self._watcher = threading.Thread(
                target=self._watch, name=f"holdall-workspace-lease:{db_path}", daemon=True
            )
            self._watcher.start()

    @property
    def closed(self) -> bool:
        """True after `close`."""
        return self._closed

    def check_open(self) -> None:
        """Raise `ClosedWorkspaceError` (a `ValueError` and a `RuntimeError`) after `close`."""
        if self._closed:
            raise ClosedWorkspaceError(
                f"workspace {self.db_path.parent} is closed; open a new WorkspaceStore",
                path=str(self.db_path.parent),
            )

    def check_writable(self) -> None:
        """Raise `ClosedWorkspaceError` after `close`, `ReadOnlyStorageError` when read-only."""
        self.check_open()
        if self.read_only:
            raise ReadOnlyStorageError(
                f"workspace {self.db_path.parent} was opened read-only; "
                "open it with WorkspaceStore(path) to write",
                path=str(self.db_path.parent),
            )

    @property
    def mutex(self) -> threading.RLock:
        """Held to exclude the watcher and other threads without taking the lease.

        Buffering calls hold it directly (and call `check_open` inside): on the
        one-at-a-time save path a context-manager wrapper costs more than the work.
        """
        return self._mutex

    @contextlib.contextmanager
    def connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Hold the lease (taking it if needed) and yield the connection.

        An operation that starts while another process waits, once this store has held the
        lease for `_TURN_S`, first hands the lease over and queues again behind it (the
        watcher alone rarely finds a busy store idle), so turns go round; nested uses inside
        one operation keep the lease.
        """
        with self._mutex:
            self.check_open()
            if (
                self._depth == 0
                and self._conn is not None
                and not self.exclusive
                and time.monotonic() - self._leased_at >= _TURN_S
                and self._waiters.anyone_waiting()
            ):
                self.release()
            self._depth += 1
            try:
                yield self._ensure_connection()
            except duckdb.Error as err:  # a damaged block is found when it is read
                error = self._corruption(err)
                if error is err:
                    raise
                raise error from err
            finally:
                self._depth -= 1

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Yield the connection inside ``BEGIN``; commit on success, roll back and re-raise."""
        self.check_writable()
        with self.connection() as conn:
            self.generation += 1
            with duckdb_files.transaction(conn):
                yield conn

    def _ensure_connection(self) -> duckdb.DuckDBPyConnection:
        if self._conn is not None:
            return self._conn
        start = time.monotonic()
        with (
            self._waiters.waiting(),
            self._queue.turn(self.lock_timeout_s, self._lock.describe_owner) as left,
        ):
            try:
                self._lock.acquire(shared=self.read_only, timeout_s=left)
            except WorkspaceLockedError as err:
                err.waited_s = time.monotonic() - start  # the queue's wait included
                raise
        try:
            self._conn = self._open()
        except BaseException:
            self._lock.release()
            raise
        self.lease += 1
        self._leased_at = time.monotonic()
        return self._conn

    def _open(self) -> duckdb.DuckDBPyConnection:
        """Connect and check the schema; a damaged file raises `CorruptedFileError`."""
        try:
            conn = connect_database(self.db_path, read_only=self.read_only)
            try:
                ensure_schema(conn, self.db_path, writable=not self.read_only)
            except BaseException:
                conn.close()
                raise
        except duckdb.Error as err:
            if _IN_USE_SIGN in str(err):
                raise WorkspaceLockedError(
                    f"{self.db_path} is open in this process through another DuckDB connection "
                    "(a duckdb.connect of the file, or a reader still open on it); close it "
                    "first: DuckDB lets one connection hold a file",
                    path=str(self.db_path),
                ) from err
            raise self._corruption(err) from err
        return conn

    def _corruption(self, err: duckdb.Error) -> Exception:
        """`CorruptedFileError` for DuckDB's report of a damaged file; other errors as they are."""
        if not any(sign in str(err) for sign in _CORRUPTION_SIGNS):
            return err
        return CorruptedFileError(
            f"{self.db_path} is damaged ({err}); nothing was changed. Restore it from a "
            "backup, or move it away to start a new workspace (artifacts/ can be kept).",
            path=str(self.db_path),
        )

    def replace_file(self, replace: Callable[[], None]) -> None:
        """Close the connection, run `replace` (which swaps the database file), reopen.

        The lock is held throughout, so no other process sees the file mid-swap.
        """
        with self._mutex:
            self.generation += 1
            self._ensure_connection().close()
            self._conn = None
            try:
                replace()
            finally:
                self._conn = self._open()

    def release(self) -> None:
        """End the lease now: flush through `before_release`, close, unlock."""
        with self._mutex:
            conn, self._conn = self._conn, None
            self.lease += 1
            try:
                if conn is not None and not self.read_only:
                    self._before_release(conn)
            finally:
                if conn is not None:
                    conn.close()
                self._lock.release()

    def _watch(self) -> None:
        while not self._stop.wait(_WATCH_INTERVAL_S):
            if not self._mutex.acquire(blocking=False):
                continue  # an operation is running; look again later
            try:
                if self._conn is None:
                    continue
                if self._waiters.anyone_waiting():
                    self.release()
                elif time.monotonic() - self._last_flush >= self._flush_interval_s:
                    self._last_flush = time.monotonic()
                    if not self.read_only:
                        self._before_release(self._conn)
            except Exception:  # a failed flush is retried, and reported, by the next operation
                continue
            finally:
                self._mutex.release()

    def close(self) -> None:
        """End the lease (committing through `before_release`) and stop the watcher (idempotent)."""
        with self._mutex:
            if self._closed:
                return
            self._stop.set()
            try:
                self.release()
            finally:
                self._closed = True
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join()
