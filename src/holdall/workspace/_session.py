"""One process's access to the workspace database: a lease on a DuckDB connection.

The lease (`holdall._core.lease`) holds the inter-process lock, exclusive for a read-write
store and shared for a read-only one, with the connection, and hands both over to other
processes in arrival order. This module adds what is the workspace's own: its schema, its
errors for a damaged or doubly opened file, read-only refusals, and the counters its read
caches depend on. In ``exclusive`` mode the lease is taken at once and kept until `close`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb

from holdall._core import duckdb_files
from holdall._core.lease import ConnectionLease, LeasedCursor
from holdall.errors import (
    ClosedWorkspaceError,
    CorruptedFileError,
    InvalidValueError,
    ReadOnlyStorageError,
    WorkspaceLockedError,
)
from holdall.workspace._schema import ensure_schema

__all__ = ["Session", "connect_database"]

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
    """The workspace's lease on its DuckDB file, shared by a store's threads.

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
        self._lease = ConnectionLease(
            db_path,
            what=str(db_path),
            open_connection=self._open,
            closed_error=self._closed_error,
            lock_timeout_s=lock_timeout_s,
            shared=read_only,
            exclusive=exclusive,
            before_release=None if read_only else before_release,
            flush_interval_s=flush_interval_s,
            translate_error=self._corruption,
        )
        self.generation = 0
        """Bumped by every write transaction of this store: with `lease`, what a cached read
        depends on (no other process writes during a lease, this one bumps it)."""
        with self.connection():
            pass  # create or check the schema now, so a bad file fails at construction

    @property
    def lease(self) -> int:
        """Changes whenever the lease is taken or handed back: while it keeps its value no
        other process can have written, so what the store learnt meanwhile still holds."""
        return self._lease.number

    @property
    def closed(self) -> bool:
        """True after `close`."""
        return self._lease.closed

    def _closed_error(self) -> ClosedWorkspaceError:
        return ClosedWorkspaceError(
            f"workspace {self.db_path.parent} is closed; open a new WorkspaceStore",
            path=str(self.db_path.parent),
        )

    def check_open(self) -> None:
        """Raise `ClosedWorkspaceError` (a `ValueError` and a `RuntimeError`) after `close`."""
        self._lease.check_open()

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
        return self._lease.mutex

    def connection(self) -> contextlib.AbstractContextManager[duckdb.DuckDBPyConnection]:
        """Hold the lease (taking it if needed) and yield the connection; a damaged block
        found meanwhile raises `CorruptedFileError` (`ConnectionLease.connection`)."""
        return self._lease.connection()

    def open_cursor(self) -> LeasedCursor:
        """A cursor on the workspace for a stream (`ConnectionLease.open_cursor`); end it with
        `close_cursor`."""
        cursor = self._lease.open_cursor()
        try:
            cursor.read(lambda: cursor.cursor.execute("USE workspace"))
        except BaseException:
            self._lease.close_cursor(cursor)
            raise
        return cursor

    def close_cursor(self, cursor: LeasedCursor) -> None:
        """Close a cursor of `open_cursor` (idempotent)."""
        self._lease.close_cursor(cursor)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Yield the connection inside ``BEGIN``; commit on success, roll back and re-raise."""
        self.check_writable()
        with self.connection() as conn:
            self.generation += 1
            with duckdb_files.transaction(conn):
                yield conn

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
        with self.mutex:
            self.check_replaceable()
            self.generation += 1
            self._lease.reopen(replace)

    def check_replaceable(self) -> None:
        """Raise `InvalidValueError` while a stream reads the file `replace_file` would swap."""
        if self._lease.cursors_open:
            raise InvalidValueError(
                f"workspace {self.db_path.parent}: a prediction-array stream is still being "
                "read; finish or close it before vacuum() replaces the database file",
                key=str(self.db_path),
            )

    def release(self) -> None:
        """End the lease now: flush through `before_release`, close, unlock."""
        self._lease.release()

    def close(self) -> None:
        """End the lease (committing through `before_release`) and stop the watcher (idempotent)."""
        self._lease.close()
