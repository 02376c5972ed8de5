"""Row-level work on the workspace tables: buffered inserts, cascading deletes, Arrow I/O.

Everything here runs on a connection the store already holds inside its lease (and, for
writes, inside its transaction); nothing here opens, locks or commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from holdall.errors import InvalidValueError
from holdall.workspace import _records

__all__ = [
    "LOG_COLUMNS",
    "PREDICTION_COLUMNS",
    "Buffer",
    "chain_artifact_ids",
    "count",
    "decode_array_table",
    "delete_pipeline_data",
    "insert_buffer",
    "insert_new_predictions",
]

PREDICTION_COLUMNS = (
    "prediction_id", "pipeline_id", "chain_id", "dataset_name", "model_name", "model_class",
    "fold_id", "partition", "val_score", "test_score", "train_score", "metric", "task_type",
    "n_samples", "n_features", "scores", "best_params", "preprocessings", "branch_id",
    "branch_name", "exclusion_count", "exclusion_rate", "refit_context", "created_at",
)  # fmt: skip
"""Columns of the ``predictions`` table (buffered rows are tuples in this order; rows are
inserted by name)."""

LOG_COLUMNS = (
    "log_id", "pipeline_id", "step_idx", "operator_class", "event", "duration_ms", "message",
    "details", "level", "created_at",
)  # fmt: skip
"""Columns of the ``logs`` table, in order."""


@dataclass
class Buffer:
    """What the one-at-a-time calls accepted and the next flush commits."""

    predictions: list[tuple[Any, ...]] = field(default_factory=list)
    n_samples: dict[str, int] = field(default_factory=dict)
    arrays: dict[str, _records.PreparedArrays] = field(default_factory=dict)
    logs: list[tuple[Any, ...]] = field(default_factory=list)
    array_bytes: int = 0
    replaces: set[str] = field(default_factory=set)
    """Ids of buffered predictions that may replace a committed one (same natural key, or
    an id the caller chose): their old row and arrays are deleted at commit."""

    def __len__(self) -> int:
        return len(self.predictions) + len(self.arrays) + len(self.logs)

    def merge(self, newer: Buffer) -> None:
        """Append what `newer` holds (used to put a failed commit's rows back, oldest first)."""
        self.predictions += newer.predictions
        self.n_samples |= newer.n_samples
        self.arrays |= newer.arrays
        self.logs += newer.logs
        self.array_bytes += newer.array_bytes
        self.replaces |= newer.replaces


_WITH_PARENT = "WHERE pipeline_id IN (SELECT pipeline_id FROM pipelines)"
_WITH_PARENTS = (
    f"{_WITH_PARENT} AND (chain_id IS NULL OR chain_id IN (SELECT chain_id FROM chains))"
)


def insert_buffer(conn: duckdb.DuckDBPyConnection, pending: Buffer) -> None:
    """Insert buffered rows; rows whose parent was deleted meanwhile are dropped.

    Dropping them is what would have happened had they been committed before the
    delete (the delete cascades), so the outcome is one of the serial orders.
    """
    fresh: list[_records.PreparedArrays] = []
    older = list(pending.arrays.values())
    if pending.replaces:
        replaced = pa.table({"prediction_id": pa.array(sorted(pending.replaces), pa.string())})
        conn.register("_holdall_replaced", replaced)
        try:
            for table in ("prediction_arrays", "predictions"):
                conn.execute(
                    f"DELETE FROM {table} WHERE prediction_id IN "
                    "(SELECT prediction_id FROM _holdall_replaced)"
                )
        finally:
            conn.unregister("_holdall_replaced")
    if pending.predictions:
        latest = {row[0]: row for row in pending.predictions}  # a key saved twice: last wins
        rows = rows_table(PREDICTION_COLUMNS, list(latest.values()))
        if _insert(conn, "predictions", rows, _WITH_PARENTS) == rows.num_rows:
            # Every new prediction went in: arrays of new ids need no delete and no check.
            fresh = [a for a in older if a.prediction_id in pending.n_samples]
            older = [a for a in older if a.prediction_id not in pending.n_samples]
    if fresh:
        _insert(conn, "prediction_arrays", _records.arrays_table(fresh))
    if older:
        _replace_arrays(conn, older)
    if pending.logs:
        _insert(conn, "logs", rows_table(LOG_COLUMNS, pending.logs), _WITH_PARENT)


def insert_new_predictions(
    conn: duckdb.DuckDBPyConnection, predictions: pa.Table, arrays: pa.Table | None
) -> None:
    """Insert the rows of a bulk save (new ids, parents checked in the same transaction).

    Nothing can already exist under a fresh id, so no delete or parent filter is needed:
    the rows go in as they are, which is most of what makes the bulk path fast.
    """
    _insert(conn, "predictions", predictions)
    if arrays is not None:
        _insert(conn, "prediction_arrays", arrays)


def _insert(conn: duckdb.DuckDBPyConnection, table: str, rows: pa.Table, where: str = "") -> int:
    """``INSERT INTO table SELECT * FROM rows [where]``; returns the rows inserted.

    Table names and conditions come from this module, never from callers.
    """
    conn.register("_holdall_rows", rows)
    try:
        return count(
            conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _holdall_rows {where}")
        )
    finally:
        conn.unregister("_holdall_rows")


def rows_table(names: Sequence[str], rows: list[tuple[Any, ...]]) -> pa.Table:
    """An Arrow table from row tuples, built column by column.

    ``created_at`` (the last column) holds microseconds since the epoch
    (`_records.utc_now_us`); it becomes a timestamp here, without pyarrow's datetime path
    (which imports pandas).
    """
    columns = dict(zip(names, zip(*rows, strict=True), strict=True))
    created_at = pa.array(columns.pop("created_at"), type=pa.int64()).cast(pa.timestamp("us"))
    return pa.table({**{n: pa.array(c) for n, c in columns.items()}, "created_at": created_at})


def count(result: duckdb.DuckDBPyConnection) -> int:
    rows = result.fetchall()
    return int(rows[0][0]) if rows else 0


def chain_artifact_ids(
    steps: list[dict[str, Any]], fold: dict[Any, Any], shared: dict[Any, Any]
) -> set[str]:
    """Distinct artifact ids a chain references (strings, or lists of strings, in any slot)."""
    found: set[str] = set()
    values: list[Any] = (
        [s.get("artifact_id") for s in steps] + list(fold.values()) + list(shared.values())
    )
    for value in values:
        for item in value if isinstance(value, list | tuple) else [value]:
            if item is None or item == "":
                continue
            if not isinstance(item, str):
                raise InvalidValueError(
                    f"artifact ids must be str, got {item!r}", key="artifact_id", got=item
                )
            found.add(item)
    return found


def delete_pipeline_data(
    conn: duckdb.DuckDBPyConnection,
    where: str,
    params: list[Any],
    *,
    with_logs: bool,
    delete_artifacts: bool = False,
) -> tuple[int, list[str]]:
    """Delete the arrays, predictions, chains (and logs) of the pipelines matching `where`.

    Each removed chain reference lowers its artifact's ``ref_count``, never below the
    references other chains still hold. Returns (rows deleted, artifact files to unlink
    after commit).
    """
    deleted = count(conn.execute(
        f"DELETE FROM prediction_arrays WHERE prediction_id IN (SELECT prediction_id FROM predictions WHERE {where})",
        params,
    ))  # fmt: skip
    deleted += count(conn.execute(f"DELETE FROM predictions WHERE {where}", params))
    if with_logs:
        deleted += count(conn.execute(f"DELETE FROM logs WHERE {where}", params))
    released = conn.execute(
        f"SELECT a, count(*) FROM (SELECT unnest(artifact_ids) AS a FROM chains WHERE {where}) GROUP BY a",
        params,
    ).fetchall()
    deleted += count(conn.execute(f"DELETE FROM chains WHERE {where}", params))
    for artifact_id, n_refs in released:
        conn.execute(
            "UPDATE artifacts SET ref_count = greatest(ref_count - ?, (SELECT count(*) FROM "
            "(SELECT unnest(artifact_ids) AS a FROM chains) WHERE a = ?)) WHERE artifact_id = ?",
            [n_refs, artifact_id, artifact_id],
        )
    freed: list[str] = []
    if delete_artifacts and released:
        rows = conn.execute(
            "DELETE FROM artifacts WHERE ref_count <= 0 AND list_contains(?, artifact_id) RETURNING artifact_path",
            [[r[0] for r in released]],
        ).fetchall()
        freed = [r[0] for r in rows]
        deleted += len(freed)
    return deleted, freed


def list_slices(column: pa.ChunkedArray) -> list[np.ndarray | None]:
    """Zero-copy numpy views of each row of an Arrow list column (None for nulls)."""
    out: list[np.ndarray | None] = []
    for chunk in column.chunks:
        if chunk.null_count == len(chunk):  # an array nobody saved (often y_proba, weights)
            out += [None] * len(chunk)
            continue
        offsets = chunk.offsets.to_numpy().tolist()  # Python ints slice faster than numpy's
        values = chunk.values.to_numpy(zero_copy_only=False)
        valid = chunk.is_valid().to_numpy(zero_copy_only=False).tolist()
        out += [
            values[offsets[i] : offsets[i + 1]] if valid[i] else None for i in range(len(chunk))
        ]
    return out


def _replace_arrays(conn: duckdb.DuckDBPyConnection, batch: list[_records.PreparedArrays]) -> None:
    """Arrays saved again for committed predictions: replace theirs (if still there)."""
    table = _records.arrays_table(batch)
    conn.register("_holdall_arrays", table)
    try:
        conn.execute(
            "DELETE FROM prediction_arrays WHERE prediction_id IN (SELECT prediction_id FROM _holdall_arrays)"
        )
        conn.execute(
            "INSERT INTO prediction_arrays SELECT * FROM _holdall_arrays "
            "WHERE prediction_id IN (SELECT prediction_id FROM predictions)"
        )
    finally:
        conn.unregister("_holdall_arrays")


def decode_array_table(table: pa.Table) -> dict[str, dict[str, np.ndarray | None]]:
    """Every row of a fetched ``prediction_arrays`` table, decoded, keyed by prediction id."""
    ids = table.column("prediction_id").to_pylist()
    layouts = table.column("layout").to_pylist()
    slices = {name: list_slices(table.column(name)) for name in _records.ARRAY_NAMES}
    return {
        pid: _records.decode_arrays(layouts[i], {n: s[i] for n, s in slices.items()})
        for i, pid in enumerate(ids)
    }
