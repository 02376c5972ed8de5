"""Experiment records in their own DuckDB file (or in memory), with a small versioned schema.

Tables: ``holdall_objects_schema`` (one row: the schema version), ``experiments`` (id, name,
fields as JSON, run count, when persisted) and ``runs`` (experiment id, position, run id,
fields as JSON). DuckDB lets only one process open a file read-write, and opening it costs
tens of milliseconds, so a session takes an inter-process lock beside it (``<file>.lock``)
and keeps the lock and the connection between operations (a lease); a watcher thread hands
both back within ~20 ms when another process announces it is waiting (``<file>.waiters``),
or after a second without use.
A killed holder's lock is freed by the kernel, and DuckDB's write-ahead log keeps every
committed persist. An in-memory database lives as long as its `RecordStore`.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa

from holdall._core import duckdb_files
from holdall._core.closing import close_at_exit, forget_at_exit
from holdall._core.locks import InterProcessLock, WaiterSignal
from holdall.errors import (
    ClosedStorageError,
    CorruptedFileError,
    InvalidValueError,
    SchemaVersionError,
    WorkspaceLockedError,
)

__all__ = ["ExperimentRow", "RecordStore", "RunRow", "parse_database_url"]

SCHEMA_VERSION = 1
_WATCH_INTERVAL_S = 0.02
#: A lease unused for this long is handed back, so other tools (the DuckDB CLI) can open the
#: file, and an abandoned session holds nothing.
_IDLE_RELEASE_S = 1.0

_CREATE = [
    "CREATE TABLE IF NOT EXISTS holdall_objects_schema (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS experiments (
        id_experiment UUID NOT NULL, name VARCHAR NOT NULL, fields JSON NOT NULL,
        run_count INTEGER NOT NULL, persisted_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS runs (
        id_experiment UUID NOT NULL, position INTEGER NOT NULL, id_run UUID NOT NULL,
        fields JSON NOT NULL)""",
]


@dataclass(frozen=True, slots=True)
class ExperimentRow:
    """One row of ``experiments``."""

    id_experiment: uuid.UUID
    """The experiment's id."""
    name: str
    """Its name (unique in a database)."""
    fields: Any
    """Its fields, in the JSON form of `holdall.objects._fields`."""


@dataclass(frozen=True, slots=True)
class RunRow:
    """One row of ``runs``."""

    id_run: uuid.UUID
    """The run's id."""
    fields: Any
    """Its fields, in JSON form."""


def parse_database_url(url: object) -> Path | None:
    """The DuckDB file a session URL names, or None for ``:memory:``.

    Accepted: ``duckdb:///relative.duckdb``, ``duckdb:////absolute/path.duckdb``,
    ``duckdb:///:memory:`` (and ``:memory:``), or a plain path.
    """
    if isinstance(url, os.PathLike):
        url = os.fspath(url)
    if not isinstance(url, str) or not url or "\x00" in url:
        raise InvalidValueError(
            f"session URL must be like 'duckdb:///experiments.duckdb', got {url!r}",
            expected="duckdb:///<path>",
            got=url,
        )
    if url.startswith("duckdb:///"):
        url = url[len("duckdb:///") :]
    elif "://" in url:
        raise InvalidValueError(
            f"session URL {url!r}: holdall keeps experiments in DuckDB; write "
            "'duckdb:///<path>' (or ':memory:')",
            expected="duckdb:///<path>",
            got=url,
        )
    if url in (":memory:", ""):
        return None
    return Path(url).absolute()


class RecordStore:
    """The experiments database: a DuckDB file, or one in memory."""

    def __init__(self, url: object, *, lock_timeout_s: float) -> None:
        self.path = parse_database_url(url)
        self.lock_timeout_s = lock_timeout_s
        self._memory: duckdb.DuckDBPyConnection | None = None
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._closed = False
        self._mutex = threading.RLock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._last_used = time.monotonic()
        if self.path is not None:
            self._lock = InterProcessLock(
                self.path.with_name(self.path.name + ".lock"),
                what=f"experiment database {self.path}",
                error=WorkspaceLockedError,
            )
            self._waiters = WaiterSignal(self.path.with_name(self.path.name + ".waiters"))
        else:
            self._memory = duckdb_files.connect()
            self._create(self._memory)

    @property
    def url(self) -> str:
        """The database as a session URL."""
        return "duckdb:///:memory:" if self.path is None else f"duckdb:///{self.path}"

    def _create(self, conn: duckdb.DuckDBPyConnection) -> None:
        for statement in _CREATE:
            conn.execute(statement)
        found = conn.execute("SELECT version FROM holdall_objects_schema").fetchall()
        if not found:
            conn.execute("INSERT INTO holdall_objects_schema VALUES (?)", [SCHEMA_VERSION])

    def _check_version(self, conn: duckdb.DuckDBPyConnection) -> None:
        try:
            found = conn.execute("SELECT version FROM holdall_objects_schema").fetchall()
        except duckdb.CatalogException as err:
            raise SchemaVersionError(
                f"{self.path} is a DuckDB file without holdall's experiment tables; use "
                "another file for experiments",
                path=str(self.path),
                expected=SCHEMA_VERSION,
                got=None,
            ) from err
        if [row[0] for row in found] != [SCHEMA_VERSION]:
            raise SchemaVersionError(
                f"experiment database {self.path} has schema version {found}, this holdall uses "
                f"{SCHEMA_VERSION}; open it with the holdall version that wrote it",
                path=str(self.path),
                expected=SCHEMA_VERSION,
                got=found,
            )

    @contextlib.contextmanager
    def connect_write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The connection for one writing operation, holding the lease for the whole block.

        Everything done inside (writing objects, then committing the record) is one step for
        other processes.
        """
        with self._connect(write=True) as conn:
            if conn is None:
                raise RuntimeError("a writable connection was not opened")
            yield conn

    @contextlib.contextmanager
    def connect_read(self) -> Iterator[duckdb.DuckDBPyConnection | None]:
        """The connection for reading (None when the database file does not exist yet)."""
        with self._connect(write=False) as conn:
            yield conn

    @contextlib.contextmanager
    def _connect(self, *, write: bool) -> Iterator[duckdb.DuckDBPyConnection | None]:
        with self._mutex:
            if self._memory is not None:
                yield self._memory
                return
            if self._closed or self.path is None:
                raise ClosedStorageError(
                    f"experiment session on {self.url} was closed; create a new session",
                    path=self.url,
                )
            if self._conn is None and not write and not self.path.exists():
                yield None
                return
            try:
                yield self._lease()
            finally:
                self._last_used = time.monotonic()

    def _lease(self) -> duckdb.DuckDBPyConnection:
        """The open connection, taking the lock and opening the file if needed."""
        if self._conn is not None:
            return self._conn
        if self.path is None:
            raise RuntimeError("an in-memory database has no lease")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._waiters.waiting():
            self._lock.acquire(shared=False, timeout_s=self.lock_timeout_s)
        try:
            try:
                conn = duckdb_files.connect(str(self.path))
            except duckdb.Error as err:
                raise CorruptedFileError(
                    f"experiment database {self.path} cannot be opened by DuckDB: {err}",
                    path=str(self.path),
                ) from err
            try:
                self._create_or_check(conn)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            self._lock.release()
            raise
        self._conn = conn
        if self._watcher is None:
            self._watcher = threading.Thread(
                target=self._watch, name=f"holdall-experiments-lease:{self.path}", daemon=True
            )
            self._watcher.start()
        close_at_exit(self)
        return conn

    def _release(self) -> None:
        """Close the file connection and hand the lock to whoever waits."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            finally:
                self._lock.release()

    def _watch(self) -> None:
        """Hand the lease back when someone waits or it was idle for a while; then stop."""
        while not self._stop.wait(_WATCH_INTERVAL_S):
            if not self._mutex.acquire(blocking=False):
                continue  # an operation is running; look again later
            try:
                idle = time.monotonic() - self._last_used > _IDLE_RELEASE_S
                if self._conn is None or idle or self._waiters.anyone_waiting():
                    with contextlib.suppress(Exception):  # the next operation reopens, reports
                        self._release()
                    self._watcher = None
                    forget_at_exit(self)
                    return
            finally:
                self._mutex.release()

    def _create_or_check(self, conn: duckdb.DuckDBPyConnection) -> None:
        tables = {
            row[0] for row in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()
        }
        if "holdall_objects_schema" in tables or not tables:
            if not tables:
                self._create(conn)
            self._check_version(conn)
            return
        self._check_version(conn)

    def find(
        self,
        conn: duckdb.DuckDBPyConnection | None,
        *,
        name: str | None,
        id_experiment: uuid.UUID | None,
    ) -> list[tuple[uuid.UUID, str]]:
        """(id, name) of the experiments with this name or this id."""
        if conn is None:
            return []
        rows = conn.execute(
            "SELECT id_experiment, name FROM experiments WHERE name = ? OR id_experiment = ?",
            [name, id_experiment],
        ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def replace(
        self,
        conn: duckdb.DuckDBPyConnection,
        experiment: ExperimentRow,
        runs: list[RunRow],
        *,
        remove: list[uuid.UUID],
    ) -> None:
        """In one transaction: drop the experiments `remove`, insert `experiment` and its `runs`."""
        table = pa.table(
            {
                "id_experiment": pa.array([str(experiment.id_experiment)] * len(runs), pa.string()),
                "position": pa.array(range(len(runs)), pa.int32()),
                "id_run": pa.array([str(run.id_run) for run in runs], pa.string()),
                "fields": pa.array([_dumps(run.fields) for run in runs], pa.string()),
            }
        )
        with duckdb_files.transaction(conn):
            for old in remove:
                conn.execute("DELETE FROM runs WHERE id_experiment = ?", [old])
                conn.execute("DELETE FROM experiments WHERE id_experiment = ?", [old])
            conn.execute(
                "INSERT INTO experiments VALUES (?, ?, ?, ?, ?)",
                [
                    experiment.id_experiment,
                    experiment.name,
                    _dumps(experiment.fields),
                    len(runs),
                    datetime.datetime.now(datetime.UTC).replace(tzinfo=None),
                ],
            )
            conn.register("holdall_new_runs", table)
            conn.execute(
                "INSERT INTO runs SELECT CAST(id_experiment AS UUID), position, "
                "CAST(id_run AS UUID), CAST(fields AS JSON) FROM holdall_new_runs"
            )
            conn.unregister("holdall_new_runs")

    def delete(self, conn: duckdb.DuckDBPyConnection, id_experiment: uuid.UUID) -> None:
        """Drop an experiment and its runs, in one transaction."""
        with duckdb_files.transaction(conn):
            conn.execute("DELETE FROM runs WHERE id_experiment = ?", [id_experiment])
            conn.execute("DELETE FROM experiments WHERE id_experiment = ?", [id_experiment])

    def load(
        self,
        conn: duckdb.DuckDBPyConnection | None,
        *,
        name: str | None,
        id_experiment: uuid.UUID | None,
    ) -> tuple[ExperimentRow, list[RunRow]] | None:
        """The experiment with this id (or else this name) and its runs in order, or None."""
        if conn is None:
            return None
        if id_experiment is not None:
            found = conn.execute(
                "SELECT id_experiment, name, fields FROM experiments WHERE id_experiment = ?",
                [id_experiment],
            ).fetchone()
        else:
            found = conn.execute(
                "SELECT id_experiment, name, fields FROM experiments WHERE name = ?", [name]
            ).fetchone()
        if found is None:
            return None
        runs = conn.execute(
            "SELECT id_run, fields FROM runs WHERE id_experiment = ? ORDER BY position", [found[0]]
        ).fetchall()
        return (
            ExperimentRow(found[0], found[1], _loads(found[2], self.url)),
            [RunRow(row[0], _loads(row[1], self.url)) for row in runs],
        )

    def ls(self, conn: duckdb.DuckDBPyConnection | None) -> pl.DataFrame:
        """One row per persisted experiment: id, name, run count, when persisted."""
        schema: dict[str, pl.DataType | type[pl.DataType]] = {
            "id_experiment": pl.String,
            "name": pl.String,
            "run_count": pl.Int32,
            "persisted_at": pl.Datetime("us"),
        }
        if conn is None:
            return pl.DataFrame(schema=schema)
        rows = conn.execute(
            "SELECT CAST(id_experiment AS VARCHAR), name, run_count, persisted_at "
            "FROM experiments ORDER BY persisted_at, name"
        ).fetchall()
        return pl.DataFrame(rows, schema=schema, orient="row")

    def close(self) -> None:
        """Close the database (an in-memory one, and its experiments, are gone); idempotent."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            if self._memory is not None:
                self._memory.close()
                self._memory = None
            self._release()
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join()
        forget_at_exit(self)


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))


def _loads(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as err:
        raise CorruptedFileError(
            f"experiment database {where}: a fields value is not JSON", path=where
        ) from err
