"""DuckDB connections as holdall makes them: new files every supported DuckDB opens, no bar.

DuckDB 2 writes new database files in its own storage format, which DuckDB 1.x refuses
("Trying to read a database file with version number 69"). holdall supports DuckDB from 1.3,
so a workspace or experiment database written by one user's DuckDB 2 could not be opened by a
colleague's DuckDB 1.5, nor by nirs4all 0.7.1's (``duckdb<2``). So a file holdall is about to
open that does not exist yet is first created, empty, in DuckDB 1.2's format; DuckDB keeps a
file's format from then on (and never lowers one). Measured: the same speed and size for
holdall's tables. The connections themselves keep DuckDB's default configuration, so a
user's own ``duckdb.connect`` of an experiment database in the same process shares holdall's
connection, as before (a workspace's file is attached instead, see `workspace._session`).
Nor does a connection draw DuckDB's progress bar: a library writes nothing on its user's
terminal.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import duckdb

__all__ = ["OLDEST_STORAGE", "connect", "create_if_missing", "sql_string", "transaction"]

OLDEST_STORAGE = "v1.2.0"
"""The storage format new files are written in: the oldest that holdall's DuckDBs (>= 1.3) read."""


def create_if_missing(path: str | os.PathLike[str]) -> None:
    """Create the empty database file `path` in `OLDEST_STORAGE` unless it exists."""
    if not Path(path).exists():
        duckdb.connect(
            os.fspath(path), config={"storage_compatibility_version": OLDEST_STORAGE}
        ).close()


def connect(
    database: str | os.PathLike[str] = ":memory:", *, read_only: bool = False
) -> duckdb.DuckDBPyConnection:
    """`duckdb.connect` without progress bar; a writable file is first made by `create_if_missing`."""
    database = os.fspath(database)
    if database != ":memory:" and not read_only:
        create_if_missing(database)
    conn = duckdb.connect(database, read_only=read_only)
    conn.execute("SET enable_progress_bar = false")  # a connection-level option only
    return conn


@contextlib.contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """``BEGIN``; ``COMMIT`` when the block succeeds, ``ROLLBACK`` and re-raise when it fails.

    A failing ``COMMIT`` is raised as it is (DuckDB has then rolled back already).
    """
    conn.execute("BEGIN TRANSACTION")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def sql_string(path: str | os.PathLike[str]) -> str:
    """`path` as a SQL string literal (quotes doubled), for statements that take no parameter
    (``ATTACH``, ``SET``, table functions' file lists)."""
    return "'" + os.fspath(path).replace("'", "''") + "'"
