"""`import_workspace`: bring a nirs4all workspace into holdall, all or nothing.

The destination is built in a temporary folder beside it and renamed into place only once
everything is copied and committed, so an interrupted or failed import leaves no
destination at all. The source is opened read-only (its database attached with
``READ_ONLY``, its files only read) and nothing in it changes. One module per source layout
does the copying (`_import_n4a07` for nirs4all 0.7.x's DuckDB workspace).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from holdall._core.owners import owner_tag
from holdall._core.progress import progress as progress_bar
from holdall.errors import ArchiveExistsError, KeyNotFoundError, SchemaVersionError
from holdall.workspace import _import_n4a07
from holdall.workspace._store import WorkspaceStore

__all__ = ["ImportReport", "import_workspace"]


@dataclass(frozen=True)
class ImportReport:
    """What `import_workspace` copied."""

    source: Path
    destination: Path
    layout: str
    """``"nirs4all-0.7"`` (DuckDB ``store.duckdb``)."""
    rows: dict[str, int]
    """Rows copied per table (``artifacts``: rows, each with its file)."""


def import_workspace(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    trust: bool = False,
    progress: bool = False,
) -> ImportReport:
    """Copy a nirs4all workspace into a new holdall workspace at `destination`.

    Every run, pipeline, chain, prediction (with its arrays), artifact (row and file, its
    SHA-256 checked) and log comes across with its id. The source is never modified.

    Parameters
    ----------
    source
        The nirs4all workspace folder (holding ``store.duckdb`` and ``artifacts/``).
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
        When `source` holds no ``store.duckdb``.
    ArchiveExistsError
        When `destination` exists.
    SchemaVersionError
        When the source is not a workspace layout holdall imports.
    CorruptedFileError, IntegrityError
        For an artifact file that is missing or does not match its row (nothing is created).
    """
    src = Path(source)
    dst = Path(destination)
    db = src / "store.duckdb"
    if not db.is_file():
        raise KeyNotFoundError(
            f"no nirs4all workspace at {src} (store.duckdb is missing)", key=str(src)
        )
    if dst.exists() or dst.is_symlink():
        raise ArchiveExistsError(
            f"{dst} exists; import into a new folder (nothing was changed)", path=str(dst)
        )
    dst.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{dst.name}.{owner_tag()}-", dir=dst.parent))
    try:
        rows = _build(db, building, trust=trust, progress=progress)
        os.rename(building, dst)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return ImportReport(src, dst, "nirs4all-0.7", rows)


def _build(db: Path, building: Path, *, trust: bool, progress: bool) -> dict[str, int]:
    """Create the workspace in `building` and copy everything in one transaction."""
    with (
        WorkspaceStore(building, exclusive=True) as store,
        store._session.transaction() as conn,
    ):
        quoted = str(db).replace("'", "''")
        try:
            conn.execute(f"ATTACH '{quoted}' AS src (READ_ONLY)")
        except Exception as err:  # DuckDB's error for a file it cannot read
            raise SchemaVersionError(
                f"{db} cannot be opened as a DuckDB database ({err}); holdall imports "
                "nirs4all 0.7.x workspaces",
                path=str(db),
            ) from err
        try:
            if not _import_n4a07.is_nirs4all_07(conn):
                raise SchemaVersionError(
                    f"{db} is not a nirs4all 0.7.x workspace (it lacks the tables "
                    f"{', '.join(_import_n4a07.TABLES)}); nothing was imported",
                    path=str(db),
                )
            n_files = conn.execute("SELECT count(*) FROM src.artifacts").fetchall()[0][0]
            bar = progress_bar(
                iter(range(len(_import_n4a07.TABLES) - 1 + int(n_files))),
                total=len(_import_n4a07.TABLES) - 1 + int(n_files),
                label=f"import {db.parent.name}",
                enabled=progress,
            )

            def step(_what: str) -> None:
                next(bar, None)

            rows = _import_n4a07.copy_workspace(
                conn,
                db.parent,
                building / "artifacts",
                sign=trust,
                step=step,
            )
        finally:
            conn.execute("DETACH src")
    return rows
