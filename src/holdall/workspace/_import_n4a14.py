"""Copy a nirs4all 1.4.x workspace (``store.sqlite`` + ``arrays/*.parquet`` + ``artifacts/``).

The SQLite file is opened read-only and immutable (no lock, no ``-shm`` file created), so
it must hold everything: a non-empty ``store.sqlite-wal`` means a nirs4all process has the
workspace open, or was killed before its checkpoint, and the import is refused. Each
table is read in batches and inserted with holdall's types (JSON text becomes JSON, SQLite
timestamps become TIMESTAMP, ``chain_id = ''`` becomes NULL). Prediction arrays are read by
DuckDB straight from nirs4all's Parquet files, skipping the ids in ``_tombstones.json``
(nirs4all's pending deletes) and rows whose prediction is gone; shapes come from the
``*_shape`` columns, and typed integer class labels (``*_labels``) are decoded; string labels
are left out of holdall's (numeric) arrays and reported.

The columns and tables holdall's schema has no place for (run projects, the prediction
scope and unit columns, chain summaries, the ``X``/``spectra``/metadata arrays, conformal,
tuning and robustness results, ``native_results/``) are not dropped: `copy_extras` copies
the source's own files, byte for byte, into ``nirs4all/`` in the new workspace.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from urllib.parse import quote

import duckdb
import pyarrow as pa

from holdall._core import duckdb_files
from holdall.errors import CorruptedFileError, SchemaVersionError, WorkspaceLockedError
from holdall.workspace._import_copy import copy_artifacts, copy_chains, layout_sql

__all__ = ["EXTRAS", "TABLES", "copy_extras", "copy_workspace", "is_nirs4all_14", "open_source"]

TABLES = ("runs", "pipelines", "chains", "predictions", "artifacts", "logs")
"""The tables of a 1.4.x ``store.sqlite`` holdall maps onto its own (arrays: Parquet)."""

EXTRAS = "nirs4all"
"""The folder of the new workspace that receives the source's own files (see module doc)."""

_BATCH_ROWS = 50_000

_TIMESTAMP = "coalesce(CAST({0} AS TIMESTAMP), current_timestamp)"

_INSERT = {
    "runs": "INSERT INTO runs SELECT run_id, name, config::JSON, datasets::JSON, "
    f"coalesce(status, 'running'), {_TIMESTAMP.format('created_at')}, "
    "CAST(completed_at AS TIMESTAMP), summary::JSON, error FROM batch",
    "pipelines": "INSERT INTO pipelines SELECT pipeline_id, run_id, name, "
    "expanded_config::JSON, generator_choices::JSON, dataset_name, dataset_hash, "
    f"coalesce(status, 'running'), {_TIMESTAMP.format('created_at')}, "
    "CAST(completed_at AS TIMESTAMP), best_val, best_test, metric, duration_ms, error FROM batch",
    "chains": "INSERT INTO n4a_chains SELECT chain_id, pipeline_id, steps, model_step_idx, "
    "model_class, preprocessings, fold_strategy, fold_artifacts, shared_artifacts, branch_path, "
    f"source_index, {_TIMESTAMP.format('created_at')} AS created_at FROM batch",
    "predictions": "INSERT INTO predictions BY NAME SELECT prediction_id, pipeline_id, "
    "nullif(chain_id, '') AS chain_id, dataset_name, model_name, model_class, fold_id, partition, "
    "val_score, test_score, train_score, metric, task_type, coalesce(n_samples, 0) AS n_samples, "
    "coalesce(n_features, 0) AS n_features, scores::JSON AS scores, "
    "best_params::JSON AS best_params, preprocessings, branch_id, branch_name, "
    "coalesce(exclusion_count, 0) AS exclusion_count, "
    "coalesce(exclusion_rate, 0.0) AS exclusion_rate, refit_context, "
    f"{_TIMESTAMP.format('created_at')} AS created_at FROM batch",
    "artifacts": "INSERT INTO n4a_artifacts SELECT artifact_id, artifact_path, content_hash, "
    "operator_class, artifact_type, format, size_bytes, ref_count, "
    f"{_TIMESTAMP.format('created_at')} AS created_at, chain_path_hash, input_data_hash, "
    "dataset_hash FROM batch",
    "logs": "INSERT INTO logs SELECT log_id, pipeline_id, step_idx, operator_class, event, "
    "duration_ms, message, details::JSON, coalesce(level, 'info'), "
    f"{_TIMESTAMP.format('created_at')} FROM batch",
}  # fmt: skip

_STAGING = """
CREATE TEMP TABLE n4a_chains (chain_id VARCHAR, pipeline_id VARCHAR, steps VARCHAR,
    model_step_idx INTEGER, model_class VARCHAR, preprocessings VARCHAR, fold_strategy VARCHAR,
    fold_artifacts VARCHAR, shared_artifacts VARCHAR, branch_path VARCHAR, source_index INTEGER,
    created_at TIMESTAMP);
CREATE TEMP TABLE n4a_artifacts (artifact_id VARCHAR, artifact_path VARCHAR,
    content_hash VARCHAR, operator_class VARCHAR, artifact_type VARCHAR, format VARCHAR,
    size_bytes BIGINT, ref_count INTEGER, created_at TIMESTAMP, chain_path_hash VARCHAR,
    input_data_hash VARCHAR, dataset_hash VARCHAR);
"""
"""Chains and artifacts are staged: their shared copy steps read a relation, not batches."""


def open_source(db: Path) -> sqlite3.Connection:
    """Open a nirs4all ``store.sqlite`` read-only, without locking or writing beside it.

    Raises
    ------
    WorkspaceLockedError
        When ``store.sqlite-wal`` holds changes not yet in the file.
    """
    wal = db.with_name(db.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise WorkspaceLockedError(
            f"{wal} holds changes not yet written to {db.name}: a nirs4all process has this "
            "workspace open, or was killed before it checkpointed. Close it (or open and close "
            "it once with nirs4all), then import; nothing was imported",
            path=str(db),
        )
    return sqlite3.connect(f"file:{quote(str(db))}?mode=ro&immutable=1", uri=True)


def is_nirs4all_14(source: sqlite3.Connection) -> bool:
    """True when the SQLite file has the tables of a nirs4all 1.4.x workspace."""
    names = {r[0] for r in source.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    return set(TABLES) <= names


def _batches(source: sqlite3.Connection, table: str) -> Iterator[pa.Table]:
    """The rows of `table` as Arrow tables of at most `_BATCH_ROWS` rows."""
    cursor = source.execute(f'SELECT * FROM "{table}"')
    names = [d[0] for d in cursor.description]
    while rows := cursor.fetchmany(_BATCH_ROWS):
        columns = list(zip(*rows, strict=True))
        yield pa.table(
            {name: pa.array(column) for name, column in zip(names, columns, strict=True)}
        )


def _insert(
    conn: duckdb.DuckDBPyConnection, db: Path, table: str, batches: Iterable[pa.Table]
) -> int:
    """Insert the `batches` of `table` of the SQLite file `db`; return the rows inserted.

    Raises
    ------
    CorruptedFileError
        When a value is not what its column holds (SQLite keeps any value in any column): JSON
        text that does not parse, a timestamp or a number that is text, a column of mixed types.
    """
    count = 0
    try:
        for batch in batches:
            conn.register("batch", batch)
            conn.execute(_INSERT[table])
            # not in a `finally`: after a failed statement DuckDB refuses this too, hiding why
            conn.unregister("batch")
            count += batch.num_rows
    except (duckdb.ConversionException, pa.ArrowException) as err:
        reason = str(err).splitlines()[0]
        raise CorruptedFileError(
            f"{db}: table {table} holds a value that is not of its column's type ({reason}); "
            "nothing was imported",
            path=str(db),
        ) from err
    return count


def _copy_table(
    conn: duckdb.DuckDBPyConnection, source: sqlite3.Connection, db: Path, table: str
) -> int:
    return _insert(conn, db, table, _batches(source, table))


class _Prefetch:
    """`_batches` of a table, read by a thread of its own at most two batches ahead.

    The predictions are read from SQLite while DuckDB copies the arrays (DuckDB releases
    the GIL), which takes the SQLite read off the import's critical path. Used as a context
    manager: leaving it stops and joins the thread, consumed or not.
    """

    def __init__(self, db: Path, table: str) -> None:
        self._ready: queue.Queue[pa.Table | BaseException | None] = queue.Queue(maxsize=2)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._read, args=(db, table), name=f"holdall-import-{table}", daemon=True
        )

    def __enter__(self) -> _Prefetch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _put(self, item: pa.Table | BaseException | None) -> bool:
        """Queue `item` unless stopped meanwhile; False when stopped."""
        while not self._stop.is_set():
            try:
                self._ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self, db: Path, table: str) -> None:
        try:
            source = open_source(db)
            try:
                for batch in _batches(source, table):
                    if not self._put(batch):
                        return
            finally:
                source.close()
            self._put(None)
        except BaseException as err:  # handed to the consumer, which raises it
            self._put(err)

    def __iter__(self) -> Iterator[pa.Table]:
        while (item := self._ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item


def _labels(column: str) -> str:
    """Decode nirs4all's typed integer labels (``{"vocabulary", "indices", "shape"}``)."""
    payload = f"a.{column}_labels"
    return (
        f"list_transform(json_extract({payload}, '$.indices')::BIGINT[], "
        f"lambda i: (json_extract({payload}, '$.vocabulary')::BIGINT[])[i + 1])::DOUBLE[]"
    )


def _target(column: str, has_labels: bool) -> str:
    """SQL selecting ``y_true``/``y_pred`` with its dtype and shape, labelled or numeric.

    Integer labels are decoded; string labels, which holdall's numeric arrays cannot hold,
    give NULL (they stay in the copied source files, see `copy_workspace`).
    """
    numeric_shape = f"coalesce(a.{column}_shape::BIGINT[], [len(a.{column})])"
    if not has_labels:
        return f"a.{column}, '<f8' AS {column}_dtype, {numeric_shape} AS {column}_shape"
    integers = f"json_extract_string(a.{column}_labels, '$.label_type') = 'int64'"
    return (
        f"CASE WHEN {integers} THEN {_labels(column)} WHEN a.{column}_labels IS NOT NULL "
        f"THEN NULL ELSE a.{column} END AS {column}, "
        f"CASE WHEN {integers} THEN '<i8' ELSE '<f8' END AS {column}_dtype, "
        f"CASE WHEN {integers} THEN json_extract(a.{column}_labels, '$.shape')::BIGINT[] "
        f"ELSE {numeric_shape} END AS {column}_shape"
    )


def _string_labelled(conn: duckdb.DuckDBPyConnection, parquet: str) -> list[str]:
    """The ids of the predictions with string class labels (left out of the arrays)."""
    rows = conn.execute(
        f"SELECT DISTINCT prediction_id FROM {parquet} WHERE "
        "json_extract_string(y_true_labels, '$.label_type') = 'str' OR "
        "json_extract_string(y_pred_labels, '$.label_type') = 'str' ORDER BY 1"
    ).fetchall()
    return [str(r[0]) for r in rows]


def _copy_arrays(conn: duckdb.DuckDBPyConnection, arrays: Path) -> list[str]:
    """Insert the arrays of every ``arrays/*.parquet`` file but nirs4all's tombstoned ones.

    A prediction written twice (nirs4all appends on upsert) keeps its last row in a file,
    and the first file that has it wins, as nirs4all's reader does. Returns the ids of the
    predictions whose string class labels were left out.

    Raises
    ------
    CorruptedFileError
        When DuckDB cannot read one of the Parquet files (truncated, damaged): the file when
        DuckDB names it, else the folder.
    SchemaVersionError
        When the files lack the columns nirs4all 1.4.x writes.
    """
    files = sorted(p for p in arrays.glob("*.parquet") if p.is_file() and not p.is_symlink())
    try:
        return _copy_parquet_arrays(conn, arrays, files)
    except (duckdb.IOException, duckdb.OutOfMemoryException):
        raise  # the destination's disk or memory, not the source
    except duckdb.Error as err:
        reason = str(err).splitlines()[0]
        if isinstance(err, duckdb.BinderException | duckdb.CatalogException):
            raise SchemaVersionError(
                f"the nirs4all array files in {arrays} lack the columns of a 1.4.x workspace "
                f"({reason}); nothing was imported",
                path=str(arrays),
            ) from err
        named = [f for f in files if str(f) in str(err)]
        what = f"nirs4all array file {named[0]}" if named else f"a nirs4all array file in {arrays}"
        raise CorruptedFileError(
            f"{what} cannot be read ({reason}); nothing was imported",
            path=str(named[0] if named else arrays),
        ) from err


def _copy_parquet_arrays(
    conn: duckdb.DuckDBPyConnection, arrays: Path, files: list[Path]
) -> list[str]:
    """`_copy_arrays` of the Parquet `files` of folder `arrays`."""
    if not files:
        return []
    tombstones = arrays / "_tombstones.json"
    deleted = sorted(json.loads(tombstones.read_text())) if tombstones.is_file() else []
    listed = ", ".join(duckdb_files.sql_string(f) for f in files)
    parquet = (
        f"read_parquet([{listed}], union_by_name = true, filename = true, file_row_number = true)"
    )
    columns = {r[0] for r in conn.execute(f"DESCRIBE SELECT * FROM {parquet}").fetchall()}
    has_labels = "y_true_labels" in columns
    layout = layout_sql([
        ("y_true", "y_true_dtype", "y_true_shape"),
        ("y_pred", "y_pred_dtype", "y_pred_shape"),
        ("y_proba", "'<f8'", "coalesce(y_proba_shape::BIGINT[], [len(y_proba)])"),
        ("sample_indices", "'<i4'", "[len(sample_indices)]"),
        ("weights", "'<f8'", "[len(weights)]"),
    ])  # fmt: skip
    duplicated = conn.execute(
        f"SELECT count(*) > count(DISTINCT prediction_id) FROM {parquet}"
    ).fetchall()[0][0]
    # the window that keeps one row per prediction costs a quarter of the copy: only if needed
    latest = (
        "row_number() OVER (PARTITION BY a.prediction_id ORDER BY a.filename, "
        "a.file_row_number DESC)"
        if duplicated
        else "1"
    )
    conn.execute(
        "INSERT INTO prediction_arrays SELECT prediction_id, y_true, y_pred, y_proba, "
        f"sample_indices, weights, {layout} FROM ("
        f"SELECT a.prediction_id, {_target('y_true', has_labels)}, "
        f"{_target('y_pred', has_labels)}, a.y_proba, a.y_proba_shape, "
        f"a.sample_indices::BIGINT[] AS sample_indices, a.weights, {latest} AS copy "
        f"FROM {parquet} a WHERE a.prediction_id NOT IN (SELECT unnest(?::VARCHAR[]))) "
        "WHERE copy = 1",
        [deleted],
    )
    gone = set(deleted)
    return [i for i in _string_labelled(conn, parquet) if i not in gone] if has_labels else []


def copy_workspace(
    conn: duckdb.DuckDBPyConnection,
    source: sqlite3.Connection,
    db: Path,
    artifacts_dir: Path,
    *,
    sign: bool,
    step: Callable[[str], None],
) -> tuple[dict[str, int], list[str]]:
    """Copy every table, array and artifact of the nirs4all 1.4.x workspace of `db`.

    `source` is `db` opened with `open_source` (the predictions are read through a second
    connection of their own, see `_Prefetch`). Runs inside the caller's transaction on the
    destination. Returns the rows copied per
    table, and the ids of the predictions whose string class labels holdall's numeric
    arrays cannot hold (their ``y_true``/``y_pred`` are left out; the labels stay in the
    copied ``nirs4all/arrays/``); `step` is called after each table and each artifact file.
    """
    folder = db.parent
    conn.execute(_STAGING)  # temporary, and rolled back with the transaction on failure
    with _Prefetch(db, "predictions") as predictions:  # read while the arrays are copied
        counts = {t: _copy_table(conn, source, db, t) for t in ("runs", "pipelines")}
        step("pipelines")
        _copy_table(conn, source, db, "chains")
        counts["chains"] = copy_chains(conn, "n4a_chains")
        step("chains")
        string_labels = _copy_arrays(conn, folder / "arrays")
        step("prediction_arrays")
        counts["predictions"] = _insert(conn, db, "predictions", predictions)
        step("predictions")
    # arrays whose prediction is gone (deleted without a tombstone) are not imported
    conn.execute(
        "DELETE FROM prediction_arrays WHERE prediction_id NOT IN "
        "(SELECT prediction_id FROM predictions)"
    )
    (counts["prediction_arrays"],) = conn.execute(
        "SELECT count(*) FROM prediction_arrays"
    ).fetchall()[0]
    counts["logs"] = _copy_table(conn, source, db, "logs")
    step("logs")
    _copy_table(conn, source, db, "artifacts")
    counts["artifacts"] = copy_artifacts(
        conn, "n4a_artifacts", folder, artifacts_dir, sign=sign, step=step
    )
    conn.execute("DROP TABLE n4a_chains; DROP TABLE n4a_artifacts")
    kept = {r[0] for r in conn.execute(
        "SELECT prediction_id FROM predictions WHERE list_contains(?, prediction_id)",
        [string_labels],
    ).fetchall()}  # fmt: skip
    return counts, [i for i in string_labels if i in kept]


def copy_extras(folder: Path, destination: Path) -> int:
    """Copy the source's files, except ``artifacts/`` and lock files, into `destination`.

    Links are not followed (nor copied): nirs4all writes none. Returns the files copied.
    """
    copied = 0
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        if here == folder:
            dirs[:] = [d for d in dirs if d != "artifacts"]
        dirs[:] = [d for d in dirs if not (here / d).is_symlink()]
        for name in files:
            origin = here / name
            if origin.is_symlink() or name == ".lock" or name.endswith((".lock", "-shm")):
                continue
            target = destination / origin.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)
            copied += 1
    return copied
