"""The read side of `WorkspaceStore`: getters and queries, all returning dicts or polars frames.

`WorkspaceReads` is the base class of `WorkspaceStore`; it needs only a `Session` and a way to
commit what the store buffered (`_commit_buffer`), so every read sees the store's own writes.

Reads are shaped by what DuckDB 2.0's Python client costs on small results (measured on the
benchmark machine, see docs/benchmarks.md): every statement pays a fixed cost for parsing,
binding and planning that dwarfs a primary-key lookup, so each read runs as few statements as
it can, each handed over already parsed (`_statement`), and small results are built into
polars from Python rows rather than through Arrow (`_rows_frame`). Nothing is cached but
parsed SQL: every call reads the database.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from holdall.errors import InvalidValueError
from holdall.workspace import _aggregates, _records
from holdall.workspace._queries import (
    COUNT_PREDICTIONS,
    NEWEST_FIRST,
    fence_pays,
    prediction_query,
    top_query,
    validate_page,
)
from holdall.workspace._session import Session
from holdall.workspace._tables import decode_array_table

__all__ = ["WorkspaceReads"]

_STATEMENTS: dict[str, duckdb.Statement] = {}
# The SQL texts come from a bounded set (filter combinations); the cap is only a guard.
_MAX_STATEMENTS = 1024


_SMALL_RESULT = 100
_TOP_ANSWERS_KEPT = 32
"""Distinct top-N queries whose answers a store keeps (each at most `_SMALL_RESULT` rows)."""
"""Results of at most this many rows are built from Python rows (see `_rows_frame`)."""

_POLARS_TYPES: dict[str, pl.DataType] = {
    "VARCHAR": pl.String(),
    "JSON": pl.String(),
    "DOUBLE": pl.Float64(),
    "INTEGER": pl.Int32(),
    "BIGINT": pl.Int64(),
    "BOOLEAN": pl.Boolean(),
    "TIMESTAMP": pl.Datetime("us"),
}
"""The polars dtype Arrow conversion gives each DuckDB column type `_rows_frame` handles."""

_GET_PREDICTION = "SELECT * FROM predictions WHERE prediction_id = ?"
_GET_ARRAYS = "SELECT * FROM prediction_arrays WHERE prediction_id = ?"


def _statement(conn: duckdb.DuckDBPyConnection, sql: str) -> duckdb.Statement:
    """`sql` parsed once per process, for `execute` or `sql`.

    DuckDB 2.0's ``execute`` of a SQL string costs 0.1-0.8 ms more than of the parsed
    statement (measured: a primary-key lookup 1.36 -> 1.12 ms, a top-10 query 5.1 -> 4.3 ms).
    A parsed statement holds neither data nor a connection, so every connection shares it.
    """
    statement = _STATEMENTS.get(sql)
    if statement is None:
        (statement,) = conn.extract_statements(sql)
        if len(_STATEMENTS) < _MAX_STATEMENTS:
            _STATEMENTS[sql] = statement
    return statement


def _one_row(conn: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> dict[str, Any] | None:
    """The first row of `sql` as a dict, or None when it returns no row."""
    cursor = conn.execute(_statement(conn, sql), params)
    rows = cursor.fetchall()
    if not rows:
        return None
    return dict(zip([d[0] for d in cursor.description or ()], rows[0], strict=True))


def _rows_frame(conn: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> pl.DataFrame:
    """The result of `sql` as a polars frame built from Python rows, for small results.

    Through Arrow (``sql(...).to_arrow_table()``) the Python client binds the statement a
    second time and converts every column, a fixed cost of about 1 ms; Python rows cost
    about 10 us a row instead (measured with the 23 prediction columns: 10 rows 5.0 vs
    6.2 ms, 100 rows 4.6 vs 5.1 ms, 400 rows 7.5 vs 5.8 ms). The dtypes are the ones Arrow
    conversion gives; a result with a column type outside `_POLARS_TYPES` goes through Arrow.
    """
    cursor = conn.execute(_statement(conn, sql), params)
    schema = {d[0]: _POLARS_TYPES.get(str(d[1])) for d in cursor.description or ()}
    if None in schema.values():
        return _arrow_frame(conn, sql, params)
    # orient="row" with a schema: 0.2 ms for 10 rows of 23 columns, where one pl.Series per
    # column costs 0.6 ms and an Arrow table from the columns 0.5 ms.
    return pl.DataFrame(cursor.fetchall(), schema=schema, orient="row")


def _arrow_frame(conn: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> pl.DataFrame:
    """The result of `sql` as a polars frame, through Arrow (for results of any size)."""
    table = conn.sql(_statement(conn, sql), params=params).to_arrow_table()
    frame = pl.from_arrow(table)
    if not isinstance(frame, pl.DataFrame):  # pragma: no cover - a table always gives a frame
        raise TypeError(f"expected a polars DataFrame, got {type(frame).__name__}")
    return frame


class WorkspaceReads:
    """Getters (dict or None for an unknown id) and queries (polars DataFrames)."""

    _root: Path
    _session: Session
    _top_answers: dict[tuple[str, tuple[Any, ...]], tuple[tuple[int, int], pl.DataFrame]]
    """`top_predictions` answers by query, with the (lease, generation) they hold for."""

    @property
    def workspace_path(self) -> Path:
        """The workspace root folder."""
        return self._root

    def _commit_buffer(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Commit what the store buffered (a read-only store has nothing to commit)."""

    @contextlib.contextmanager
    def _read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for reading, after committing what this store buffered."""
        with self._session.connection() as conn:
            self._commit_buffer(conn)
            yield conn

    def _fetch_dict(self, sql: str, params: Sequence[Any]) -> dict[str, Any] | None:
        with self._read() as conn:
            return _one_row(conn, sql, list(params))

    def _fetch_pl(self, sql: str, params: Sequence[Any], *, small: bool = False) -> pl.DataFrame:
        """The result as a polars frame; `small`: at most `_SMALL_RESULT` rows expected."""
        with self._read() as conn:
            return (_rows_frame if small else _arrow_frame)(conn, sql, list(params))

    def get_chain(self, chain_id: str) -> dict[str, Any] | None:
        """The chain as a dict (JSON fields decoded), or None for an unknown id."""
        row = self._fetch_dict(
            "SELECT * EXCLUDE (artifact_ids) FROM chains WHERE chain_id = ?", [chain_id]
        )
        if row is not None:
            for name in ("steps", "fold_artifacts", "shared_artifacts", "branch_path"):
                row[name] = _records.load_json(row[name])
        return row

    def get_chains_for_pipeline(self, pipeline_id: str) -> pl.DataFrame:
        """All chains of a pipeline (JSON fields as text), oldest first."""
        return self._fetch_pl(
            "SELECT * EXCLUDE (artifact_ids) FROM chains WHERE pipeline_id = ? ORDER BY created_at, chain_id",
            [pipeline_id],
        )

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """One run as a dict (JSON fields decoded), or None for an unknown id."""
        row = self._fetch_dict("SELECT * FROM runs WHERE run_id = ?", [run_id])
        if row is not None:
            for name in ("config", "datasets", "summary"):
                row[name] = _records.load_json(row[name])
        return row

    def list_runs(
        self,
        status: str | None = None,
        dataset: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> pl.DataFrame:
        """Runs, newest first, optionally with a given status or using a dataset (by name)."""
        conditions, params = [], []
        if status is not None:
            conditions.append("status = ?")
            params.append(status)
        if dataset is not None:
            conditions.append(
                "(list_contains(CAST(json_extract_string(datasets, '$[*].name') AS VARCHAR[]), ?) "
                "OR run_id IN (SELECT run_id FROM pipelines WHERE dataset_name = ?))"
            )
            params += [dataset, dataset]
        where = (" WHERE " + " AND ".join(conditions)) if conditions else ""
        validate_page(limit, offset)
        return self._fetch_pl(
            f"SELECT * FROM runs{where} ORDER BY created_at DESC, run_id LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )

    def get_pipeline(self, pipeline_id: str) -> dict[str, Any] | None:
        """One pipeline as a dict (JSON fields decoded), or None for an unknown id."""
        row = self._fetch_dict("SELECT * FROM pipelines WHERE pipeline_id = ?", [pipeline_id])
        if row is not None:
            for name in ("expanded_config", "generator_choices"):
                row[name] = _records.load_json(row[name])
        return row

    def list_pipelines(
        self, run_id: str | None = None, dataset_name: str | None = None
    ) -> pl.DataFrame:
        """Pipelines, oldest first, optionally of one run and/or one dataset."""
        conditions, params = [], []
        for column, value in (("run_id", run_id), ("dataset_name", dataset_name)):
            if value is not None:
                conditions.append(f"{column} = ?")
                params.append(value)
        where = (" WHERE " + " AND ".join(conditions)) if conditions else ""
        return self._fetch_pl(
            f"SELECT * FROM pipelines{where} ORDER BY created_at, pipeline_id", params
        )

    def get_prediction(
        self, prediction_id: str, load_arrays: bool = False
    ) -> dict[str, Any] | None:
        """One prediction as a dict, or None for an unknown id.

        With `load_arrays`, adds ``y_true``, ``y_pred``, ``y_proba``, ``sample_indices`` and
        ``weights`` as numpy arrays with the dtype and shape they were saved with (None
        where not saved).
        """
        arrays = None
        with self._read() as conn:
            # Two primary-key lookups. Measured slower: one joined statement (it plans two
            # scans), UNION ALL or a cross join of the two, a row packed into one STRUCT or
            # JSON value; and the second lookup on a worker thread was faster when idle
            # (2.0 -> 1.4 ms) but several times slower when the other core was busy.
            row = _one_row(conn, _GET_PREDICTION, [prediction_id])
            if row is not None and load_arrays:
                arrays = _one_row(conn, _GET_ARRAYS, [prediction_id])
        if row is not None and load_arrays:
            decoded = _records.decode_arrays(arrays["layout"], arrays) if arrays else {}
            row.update({name: decoded.get(name) for name in _records.ARRAY_NAMES})
        if row is not None:
            for name in ("scores", "best_params"):
                row[name] = _records.load_json(row[name])
        return row

    def _fetch_arrays(
        self, prediction_ids: list[str] | None
    ) -> dict[str, dict[str, np.ndarray | None]]:
        """Arrays of the given predictions (all when None), decoded, keyed by prediction id."""
        sql = "SELECT * FROM prediction_arrays"
        params: list[Any] = []
        if prediction_ids is not None:
            sql += " WHERE list_contains(?, prediction_id)"
            params = [prediction_ids]
        with self._read() as conn:
            table = conn.sql(sql, params=params).to_arrow_table()
        return decode_array_table(table)

    def load_prediction_arrays(
        self, prediction_ids: list[str] | None = None
    ) -> dict[str, dict[str, np.ndarray | None]]:
        """Bulk read: the arrays of many predictions (all when None) in one query.

        Returns ``{prediction_id: {"y_true": array, ...}}``; predictions without arrays are absent.
        """
        return self._fetch_arrays(None if prediction_ids is None else list(prediction_ids))

    def iter_prediction_arrays(
        self, prediction_ids: list[str] | None = None, *, batch_size: int = 10_000
    ) -> Iterator[dict[str, dict[str, np.ndarray | None]]]:
        """Streaming bulk read: `load_prediction_arrays` in batches of `batch_size` predictions.

        Memory stays bounded by a batch whatever the number of predictions; the batches hold
        what was stored when the iteration began. The store keeps the workspace until the
        iteration ends, paused or not: other processes wait for it (bounded by their
        ``lock_timeout``), so consume it, or close it, promptly. The store's calls go ahead
        meanwhile, from any thread, except `vacuum`. Closing the store ends it: reading on
        raises `ClosedWorkspaceError`.
        """
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InvalidValueError(
                f"batch_size must be an int >= 1, got {batch_size!r}", key="batch_size"
            )
        sql = "SELECT * FROM prediction_arrays"
        params: list[Any] = []
        if prediction_ids is not None:
            sql += " WHERE list_contains(?, prediction_id)"
            params = [list(prediction_ids)]
        # Read through a cursor: the store's other calls meanwhile, from any thread, use its
        # connection, where a query would end a result still open. No lock is held between
        # two batches; the cursor keeps the workspace from being handed over until it ends.
        with self._read():
            cursor = self._session.open_cursor()
        try:
            reader = cursor.read(
                lambda: cursor.cursor.sql(sql, params=params).to_arrow_reader(batch_size)
            )
            cursor.attach(reader)  # close() ends the stream even while it is paused
            while True:
                try:
                    batch = cursor.read(reader.read_next_batch)
                except StopIteration:
                    return
                yield decode_array_table(pa.Table.from_batches([batch]))
        finally:
            self._session.close_cursor(cursor)

    def query_predictions(
        self,
        dataset_name: str | None = None,
        model_class: str | None = None,
        partition: str | None = None,
        fold_id: str | None = None,
        branch_id: int | None = None,
        pipeline_id: str | None = None,
        run_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> pl.DataFrame:
        """Predictions matching every given filter (AND), newest first, without arrays.

        A str filter containing ``%`` is a SQL LIKE pattern (``model_class="PLS%"``), as in
        nirs4all; other values match exactly.
        """
        filters = {"dataset_name": dataset_name, "model_class": model_class, "partition": partition,
                   "fold_id": fold_id, "branch_id": branch_id, "pipeline_id": pipeline_id,
                   "run_id": run_id}  # fmt: skip
        if limit is None and not offset:
            # Everything: sorted here, where polars is faster than DuckDB (see prediction_query).
            frame = self._fetch_pl(*prediction_query(filters, limit=None, offset=0, ordered=False))
            return frame.sort(
                [column for column, _ in NEWEST_FIRST], descending=[d for _, d in NEWEST_FIRST]
            )
        sql, params = prediction_query(filters, limit=limit, offset=offset)
        return self._fetch_pl(sql, params, small=limit is not None and limit <= _SMALL_RESULT)

    def top_predictions(
        self,
        n: int,
        metric: str = "val_score",
        ascending: bool = True,
        partition: str = "val",
        dataset_name: str | None = None,
        group_by: str | None = None,
    ) -> pl.DataFrame:
        """The best `n` predictions by the score column `metric` (lowest first when `ascending`).

        With `group_by`, the best `n` of each group (``n=1``: the best per group).
        NULL scores rank last; ties are broken by prediction id.
        """
        query = functools.partial(top_query, n, metric=metric, ascending=ascending,
                                  partition=partition, dataset_name=dataset_name,
                                  group_by=group_by)  # fmt: skip
        sql, params = query()  # checks the arguments before any statement runs
        # Without group_by there are at most n rows; with it, n per group (unknown here).
        small = group_by is None and n <= _SMALL_RESULT
        key = (sql, tuple(params))
        with self._read() as conn:  # commits what this store buffered first
            # While this store holds its lease no other process writes, and each of its own
            # write transactions bumps the generation: an answer computed under the same
            # (lease, generation) is still the answer, and costs no statement.
            stamp = (self._session.lease, self._session.generation)
            cached = self._top_answers.get(key)
            if cached is not None and cached[0] == stamp:
                return cached[1].clone()
            if fence_pays(n, group_by, 0):  # only then is the count worth taking
                n_predictions = conn.execute(_statement(conn, COUNT_PREDICTIONS)).fetchall()[0][0]
                if fence_pays(n, group_by, n_predictions):
                    sql, params = query(fence=True)
            frame = (_rows_frame if small else _arrow_frame)(conn, sql, params)
            if any(entry[0] != stamp for entry in self._top_answers.values()):
                self._top_answers.clear()  # stale answers go as soon as anything changed
            if len(self._top_answers) < _TOP_ANSWERS_KEPT and frame.height <= _SMALL_RESULT:
                self._top_answers[key] = (stamp, frame)
            return frame.clone()

    def get_pipeline_log(self, pipeline_id: str) -> pl.DataFrame:
        """All log entries of a pipeline, in the order they were recorded."""
        return self._fetch_pl(
            "SELECT * FROM logs WHERE pipeline_id = ? ORDER BY created_at, step_idx", [pipeline_id]
        )

    def get_run_log_summary(self, run_id: str) -> pl.DataFrame:
        """Log entries of a run aggregated per pipeline and level (count, total duration).

        A pipeline that logged nothing has one row too, with ``level`` null and
        ``n_entries`` 0 (a dashboard lists every pipeline of the run).
        """
        return self._fetch_pl(
            "SELECT pl.pipeline_id, pl.name AS pipeline_name, pl.status AS pipeline_status, "
            "l.level, count(l.log_id) AS n_entries, "
            "sum(l.duration_ms)::BIGINT AS total_duration_ms, min(l.created_at) AS first_at, "
            "max(l.created_at) AS last_at FROM pipelines pl LEFT JOIN logs l USING (pipeline_id) "
            "WHERE pl.run_id = ? GROUP BY pl.pipeline_id, pl.name, pl.status, pl.created_at, "
            "l.level ORDER BY pl.created_at, pl.pipeline_id, first_at, l.level",
            [run_id],
        )

    # ---------------------------------------------------------- nirs4all 0.7.1's extra reads

    def get_prediction_arrays(self, prediction_id: str) -> dict[str, np.ndarray | None] | None:
        """The arrays of one prediction (``y_true``, ..., None for those not saved).

        None when the prediction has no arrays. Unlike nirs4all 0.7.1 (always float64 /
        int64), arrays come back with the dtype and shape they were saved with.
        """
        return self._fetch_arrays([prediction_id]).get(prediction_id)

    def get_chain_predictions(
        self, chain_id: str, partition: str | None = None, fold_id: str | None = None
    ) -> pl.DataFrame:
        """The predictions of one chain (optionally one partition / fold), by partition, fold."""
        sql, params = _aggregates.chain_predictions_query(chain_id, partition, fold_id)
        return self._fetch_pl(sql, params)

    def query_aggregated_predictions(
        self,
        run_id: str | None = None,
        pipeline_id: str | None = None,
        chain_id: str | None = None,
        dataset_name: str | None = None,
        model_class: str | None = None,
        metric: str | None = None,
    ) -> pl.DataFrame:
        """One row per chain, model, metric and dataset: fold and partition counts, score
        aggregates (min/max/avg per partition type), prediction and fold id lists.

        Refit entries (``refit_context`` set) are left out, as in nirs4all 0.7.1. A string
        filter with ``%`` is a LIKE pattern.
        """
        sql, params = _aggregates.aggregated_query(
            {"run_id": run_id, "pipeline_id": pipeline_id, "chain_id": chain_id,
             "dataset_name": dataset_name, "model_class": model_class, "metric": metric},
        )  # fmt: skip
        return self._fetch_pl(sql, params)

    def query_top_aggregated_predictions(
        self,
        metric: str,
        n: int = 10,
        score_column: str = "avg_val_score",
        ascending: bool | None = None,
        **filters: Any,
    ) -> pl.DataFrame:
        """The `n` best aggregated rows of `metric` by `score_column`.

        `ascending` defaults to the metric's direction (higher is better for r2, accuracy,
        f1, ... ; lower for errors). `filters`: ``run_id``, ``pipeline_id``,
        ``dataset_name``, ``model_class`` (exact values).
        """
        sql, params = _aggregates.top_aggregated_query(metric, n, score_column, ascending, filters)
        return self._fetch_pl(sql, params)
