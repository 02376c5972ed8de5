"""Experiment records in their own DuckDB file (or in memory), with a small versioned schema.

Tables: ``holdall_objects_schema`` (one row: the schema version), ``experiments`` (id, name,
fields as JSON, run count, when persisted) and ``runs`` (experiment id, position, run id,
fields as JSON). DuckDB lets only one process open a file read-write, and opening it costs
tens of milliseconds, so a session holds the file through a lease (`holdall._core.lease`,
as the workspace does): an inter-process lock beside it (``<file>.lock``) kept with the
connection between operations, handed over in arrival order when another process waits,
and after a second without use. A killed holder's lock is freed by the kernel, and
DuckDB's write-ahead log keeps every committed persist. An in-memory database lives as
long as its `RecordStore`.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from holdall._core import duckdb_files
from holdall._core.closing import close_at_exit, forget_at_exit
from holdall._core.lease import ConnectionLease
from holdall.errors import (
    ClosedStorageError,
    CorruptedFileError,
    InvalidValueError,
    SchemaVersionError,
)

__all__ = ["ExperimentRow", "RecordStore", "RunRow", "parse_database_url"]

SCHEMA_VERSION = 1
#: A writer with others waiting keeps the lease this long: a persist takes about 10 ms, so a
#: turn holds several, and the hand-over (tens of ms) stays a small share (docs/objects.md).
_TURN_S = 0.3
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
        self._memory: duckdb.DuckDBPyConnection | None = None
        self._memory_mutex = threading.RLock()  # one thread at a time on the in-memory connection
        self._lease: ConnectionLease | None = None
        if self.path is not None:
            self._lease = ConnectionLease(
                self.path,
                what=f"experiment database {self.path}",
                open_connection=self._open,
                closed_error=self._closed_error,
                lock_timeout_s=lock_timeout_s,
                turn_s=_TURN_S,
                idle_release_s=_IDLE_RELEASE_S,
            )
            close_at_exit(self)
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
        if self._lease is None:
            with self._memory_mutex:
                if self._memory is None:
                    raise self._closed_error()
                yield self._memory
            return
        if not self._lease.held and self.path is not None and not self.path.exists():
            self._lease.check_open()
            if not write:
                yield None
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lease.connection() as conn:
            yield conn

    def _closed_error(self) -> ClosedStorageError:
        return ClosedStorageError(
            f"experiment session on {self.url} was closed; create a new session", path=self.url
        )

    def _open(self) -> duckdb.DuckDBPyConnection:
        """Connect to the file (with the lock held) and create or check its tables."""
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
        return conn

    def _create_or_check(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Create the tables in an empty file, check a holdall file's version, refuse others.

        A holdall file costs one query: every hand-over between processes opens the file.
        """
        try:
            found = conn.execute("SELECT version FROM holdall_objects_schema").fetchall()
        except duckdb.CatalogException as err:
            if conn.execute("SELECT count(*) FROM duckdb_tables()").fetchall() != [(0,)]:
                raise SchemaVersionError(
                    f"{self.path} is a DuckDB file without holdall's experiment tables; use "
                    "another file for experiments",
                    path=str(self.path),
                    expected=SCHEMA_VERSION,
                    got=None,
                ) from err
            self._create(conn)
            return
        if [row[0] for row in found] != [SCHEMA_VERSION]:
            raise SchemaVersionError(
                f"experiment database {self.path} has schema version {found}, this holdall uses "
                f"{SCHEMA_VERSION}; open it with the holdall version that wrote it",
                path=str(self.path),
                expected=SCHEMA_VERSION,
                got=found,
            )

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
            _insert_runs(conn, experiment.id_experiment, runs)

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
        with self._memory_mutex:
            if self._memory is not None:
                self._memory.close()
                self._memory = None
        if self._lease is not None:
            self._lease.close()
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


def _insert_runs(
    conn: duckdb.DuckDBPyConnection, id_experiment: uuid.UUID, runs: list[RunRow]
) -> None:
    """Insert the rows of `runs` (in order) for the experiment `id_experiment`.

    The columns go in as list parameters, unnested by DuckDB: one statement for any number
    of runs (1 ms for one run, 9 ms for 1,000 here). An Arrow table would be 3 ms faster at
    1,000 runs, 1 ms slower at one, and building it imports pandas (0.3 s in a fresh process).
    """
    conn.execute(
        "INSERT INTO runs SELECT ?, unnest(range(?::INTEGER)), unnest(?::UUID[]), "
        "unnest(?::VARCHAR[])::JSON",
        [
            id_experiment,
            len(runs),
            [run.id_run for run in runs],
            [_dumps(run.fields) for run in runs],
        ],
    )
