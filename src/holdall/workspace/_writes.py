"""The write plumbing of `WorkspaceStore`: the buffer of one-at-a-time records, transactions.

`WorkspaceWrites` sits between the read side (`_reads`) and the store: every write runs in
`_write` (one transaction holding whatever was buffered plus the caller's own statements),
and buffered records are committed by `flush`, by any other call, or automatically
(`_commit_paired`, which keeps a prediction awaiting its arrays back).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import duckdb

from holdall._core import duckdb_files
from holdall.errors import KeyNotFoundError
from holdall.workspace._reads import WorkspaceReads
from holdall.workspace._tables import Buffer, insert_buffer

__all__ = ["WorkspaceWrites"]

_BUFFER_BYTES = 256 * 2**20
"""Buffered arrays beyond this many bytes are committed without waiting for `flush_every`."""


class WorkspaceWrites(WorkspaceReads):
    """Buffering and transactions shared by every write of a store."""

    _buffer: Buffer
    _flush_every: int

    def flush(self) -> None:
        """Commit every buffered record now; once this returns they are acknowledged.

        A read-only store buffers nothing, so flushing it does nothing.
        """
        self._session.check_open()
        if self._session.read_only:
            return
        with self._session.connection() as conn:
            self._commit_buffer(conn)

    @contextlib.contextmanager
    def _write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction holding the buffered records and the caller's writes."""
        with self._session.transaction() as conn:
            pending = self._take_buffer()
            try:
                insert_buffer(conn, pending)
                yield conn
            except BaseException:
                self._restore_buffer(pending)
                raise

    def _take_buffer(self, *, hold_unpaired: bool = False) -> Buffer:
        """Everything buffered; with `hold_unpaired`, all but a last prediction with no arrays.

        Automatic commits (the watcher's timer, a hand-over, the size trigger) hold that
        prediction back until its arrays arrive, so a crash between `save_prediction` and
        `save_prediction_arrays` never leaves a committed prediction without its arrays.
        """
        pending, self._buffer = self._buffer, Buffer()
        if hold_unpaired and pending.predictions:
            last = pending.predictions[-1][0]
            if last not in pending.arrays:
                self._buffer.predictions.append(pending.predictions.pop())
                self._buffer.n_samples[last] = pending.n_samples.pop(last)
        return pending

    def _restore_buffer(self, pending: Buffer) -> None:
        newer, self._buffer = self._buffer, pending
        self._buffer.merge(newer)

    def _commit_paired(self, conn: duckdb.DuckDBPyConnection) -> None:
        """The automatic commit: what is buffered, but a prediction still awaiting arrays."""
        self._commit_buffer(conn, hold_unpaired=True)

    def _commit_buffer(
        self, conn: duckdb.DuckDBPyConnection, *, hold_unpaired: bool = False
    ) -> None:
        if self._session.read_only or not len(self._buffer):
            return
        pending = self._take_buffer(hold_unpaired=hold_unpaired)
        if not len(pending):
            self._restore_buffer(pending)
            return
        self._session.generation += 1
        try:
            with duckdb_files.transaction(conn):
                insert_buffer(conn, pending)
        except BaseException:
            self._restore_buffer(pending)
            raise

    def _maybe_flush(self) -> None:
        if len(self._buffer) >= self._flush_every or self._buffer.array_bytes >= _BUFFER_BYTES:
            self._session.check_open()
            with self._session.connection() as conn:
                self._commit_paired(conn)

    def _require(
        self, conn: duckdb.DuckDBPyConnection, table: str, column: str, value: object
    ) -> None:
        """Raise `KeyNotFoundError` unless a row of `table` has `column` = `value`."""
        if (
            not isinstance(value, str)
            or not conn.execute(f"SELECT 1 FROM {table} WHERE {column} = ?", [value]).fetchall()
        ):
            raise KeyNotFoundError(
                f"no {column[:-3]} with id {value!r} in workspace {self._root}", key=str(value)
            )

    def _update(
        self,
        conn: duckdb.DuckDBPyConnection | None,
        table: str,
        column: str,
        key: str,
        assignments: dict[str, Any],
    ) -> None:
        """``UPDATE table SET ... WHERE column = key`` (columns from code, never from callers).

        Runs in its own transaction unless given the connection of one already open.
        """
        if conn is None:
            with self._write() as conn:
                self._require(conn, table, column, key)
                self._update(conn, table, column, key, assignments)
            return
        sets = ", ".join(f"{name} = ?" for name in assignments)
        conn.execute(f"UPDATE {table} SET {sets} WHERE {column} = ?", [*assignments.values(), key])
