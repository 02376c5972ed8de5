"""`import_workspace`: bring a nirs4all workspace into holdall, all or nothing.

The destination is built in a temporary folder beside it and renamed into place only once
everything is copied and committed, so an interrupted or failed import leaves no
destination at all; the next import into the same destination removes the folders that
killed imports left. The source is opened read-only (its database attached with
``READ_ONLY``, or opened immutable, its files only read) and nothing in it changes. One module
per source layout does the copying: `_import_n4a07` for nirs4all 0.7.x's DuckDB workspace,
`_import_n4a14` for the SQLite + Parquet workspace of nirs4all 1.4.x. This module refuses a
source it cannot open or whose tables are not that layout's; each layout's module turns what
goes wrong while copying its content into `holdall.errors`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import sqlite3
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb

from holdall._core import duckdb_files
from holdall._core.owners import owner_is_dead, owner_tag
from holdall._core.progress import progress as progress_bar
from holdall.errors import (
    ArchiveExistsError,
    HoldallWarning,
    KeyNotFoundError,
    SchemaVersionError,
)
from holdall.workspace import _import_n4a07, _import_n4a14
from holdall.workspace._schema import ensure_schema
from holdall.workspace._session import connect_database

__all__ = ["ImportReport", "import_workspace"]


@dataclass(frozen=True)
class ImportReport:
    """What `import_workspace` copied."""

    source: Path
    destination: Path
    layout: str
    """``"nirs4all-0.7"`` (DuckDB ``store.duckdb``) or ``"nirs4all-1.4"`` (``store.sqlite``)."""
    rows: dict[str, int]
    """Rows copied per table (``artifacts``: rows, each with its file)."""
    extras: int = 0
    """Source files copied unchanged into ``nirs4all/`` (1.4.x: what holdall's tables lack)."""
    labels_left_out: tuple[str, ...] = ()
    """1.4.x predictions with string class labels, which holdall's numeric arrays cannot hold:
    their ``y_true``/``y_pred`` are not in holdall's tables, only in ``nirs4all/arrays/``."""


def import_workspace(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    trust: bool = False,
    progress: bool = False,
) -> ImportReport:
    """Copy a nirs4all workspace into a new holdall workspace at `destination`.

    Every run, pipeline, chain, prediction (with its arrays), artifact (row and file, its
    SHA-256 checked) and log comes across with its id. The source is never modified. From a
    1.4.x workspace, the source's own files (but ``artifacts/``) are also copied unchanged
    into ``DST/nirs4all/``: they keep what holdall's tables have no column for.

    Parameters
    ----------
    source
        The nirs4all workspace folder: ``store.duckdb`` and ``artifacts/`` (0.7.x), or
        ``store.sqlite``, ``arrays/`` and ``artifacts/`` (1.4.x).
    destination
        Where the holdall workspace is created; it must not exist yet.
    trust
        Sign the imported artifacts with this user's key, so they load without
        ``trust=True`` later. Only for workspaces you trust: nirs4all's artifacts are
        pickles. Without it every pickled artifact needs ``trust=True`` to load.
    progress
        Draw a progress bar (tables, then artifact files).

    Raises
    ------
    KeyNotFoundError
        When `source` holds neither ``store.duckdb`` nor ``store.sqlite``.
    ArchiveExistsError
        When `destination` exists.
    SchemaVersionError
        When the source is not a workspace layout holdall imports.
    CorruptedFileError, IntegrityError
        For an artifact file that is missing or does not match its row, a 1.4.x array file
        that cannot be read, or a 1.4.x value not of its column's type (nothing is created).
    WorkspaceLockedError
        When a 1.4.x ``store.sqlite-wal`` holds changes (nirs4all has it open).
    """
    src = Path(source)
    dst = Path(destination)
    db = src / "store.duckdb"
    lite = src / "store.sqlite"
    if not db.is_file() and not lite.is_file():
        raise KeyNotFoundError(
            f"no nirs4all workspace at {src} (neither store.duckdb, nirs4all 0.7.x, nor "
            "store.sqlite, nirs4all 1.4.x, is there)",
            key=str(src),
        )
    if dst.exists() or dst.is_symlink():
        raise ArchiveExistsError(
            f"{dst} exists; import into a new folder (nothing was changed)", path=str(dst)
        )
    dst.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_builds(dst)
    building = Path(tempfile.mkdtemp(prefix=f".{dst.name}.{owner_tag()}-", dir=dst.parent))
    try:
        left_out: list[str] = []
        if db.is_file():
            layout, rows, extras = "nirs4all-0.7", _build(db, building, trust, progress), 0
        else:
            layout = "nirs4all-1.4"
            rows, left_out = _build_14(lite, building, trust, progress)
            extras = _import_n4a14.copy_extras(src, building / _import_n4a14.EXTRAS)
        os.rename(building, dst)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    if left_out:
        warnings.warn(
            f"{len(left_out)} imported prediction(s) have string class labels, which holdall's "
            f"numeric prediction arrays cannot hold: their y_true/y_pred are left out of "
            f"{dst} and stay in {dst / _import_n4a14.EXTRAS / 'arrays'} "
            "(report.labels_left_out lists them)",
            HoldallWarning,
            stacklevel=2,
        )
    return ImportReport(src, dst, layout, rows, extras, tuple(left_out))


def _build_14(
    db: Path, building: Path, trust: bool, progress: bool
) -> tuple[dict[str, int], list[str]]:
    """Create the workspace in `building` from a 1.4.x ``store.sqlite``, in one transaction."""
    source = _import_n4a14.open_source(db)
    try:
        if not _import_n4a14.is_nirs4all_14(source):
            raise _not_the_layout(db, "1.4.x", _import_n4a14.TABLES)
        n_files = int(source.execute("SELECT count(*) FROM artifacts").fetchone()[0])
        bar = _steps(5 + n_files, f"import {db.parent.name}", progress)
        with _destination(building) as conn:
            return _import_n4a14.copy_workspace(
                conn, source, db, building / "artifacts", sign=trust, step=bar
            )
    except sqlite3.DatabaseError as err:
        raise SchemaVersionError(
            f"{db} cannot be read as a nirs4all SQLite workspace ({err}); nothing was imported",
            path=str(db),
        ) from err
    finally:
        source.close()


@contextlib.contextmanager
def _destination(building: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the new workspace's database, inside one transaction.

    The folder is the import's own (a temporary name): no other process opens it meanwhile,
    so no lock is taken. Detaching the file at the end checkpoints it, so a failure to write
    it surfaces here, before the folder is renamed into place.
    """
    db = building / "store.duckdb"
    conn = connect_database(db, read_only=False)
    try:
        ensure_schema(conn, db, writable=True)
        with duckdb_files.transaction(conn):
            yield conn
        conn.execute("USE memory")
        conn.execute("DETACH workspace")
    finally:
        conn.close()


def _remove_dead_builds(dst: Path) -> None:
    """Remove the temporary folders that killed imports into `dst` left beside it.

    Only folders named as this module names them, tagged with a process of this host that
    no longer exists; never through a link.
    """
    for entry in dst.parent.glob(f".{glob.escape(dst.name)}.*"):
        tag = entry.name[len(dst.name) + 2 :]
        if entry.is_dir() and not entry.is_symlink() and owner_is_dead(tag):
            shutil.rmtree(entry, ignore_errors=True)


def _not_the_layout(db: Path, version: str, tables: tuple[str, ...]) -> SchemaVersionError:
    return SchemaVersionError(
        f"{db} is not a nirs4all {version} workspace (it lacks the tables "
        f"{', '.join(tables)}); nothing was imported",
        path=str(db),
    )


def _steps(total: int, label: str, enabled: bool) -> Callable[[str], None]:
    """A progress bar of `total` steps; the returned function advances it by one."""
    bar = progress_bar(iter(range(total)), total=total, label=label, enabled=enabled)
    next(bar, None)  # tqdm counts an item when the next is asked for: the last step ends it

    def step(_what: str) -> None:
        next(bar, None)

    return step


def _build(db: Path, building: Path, trust: bool, progress: bool) -> dict[str, int]:
    """Create the workspace in `building` and copy everything in one transaction."""
    with _destination(building) as conn:
        try:
            conn.execute(f"ATTACH {duckdb_files.sql_string(db)} AS src (READ_ONLY)")
        except Exception as err:  # DuckDB's error for a file it cannot read
            raise SchemaVersionError(
                f"{db} cannot be opened as a DuckDB database ({err}); holdall imports "
                "nirs4all 0.7.x workspaces",
                path=str(db),
            ) from err
        if not _import_n4a07.is_nirs4all_07(conn):
            raise _not_the_layout(db, "0.7.x", _import_n4a07.TABLES)
        n_files = conn.execute("SELECT count(*) FROM src.artifacts").fetchall()[0][0]
        step = _steps(
            len(_import_n4a07.TABLES) - 1 + int(n_files), f"import {db.parent.name}", progress
        )
        rows = _import_n4a07.copy_workspace(conn, db, building / "artifacts", sign=trust, step=step)
        # Only on success: in a failed transaction DETACH itself fails and hides the error;
        # the rollback and the connection's close let go of the source then.
        conn.execute("DETACH src")
    return rows
