"""The read side of `WorkspaceStore`: getters and queries, all returning dicts or polars frames.

`WorkspaceReads` is the base class of `WorkspaceStore`; it needs only a `Session` and a way to
commit what the store buffered (`_commit_buffer`), so every read sees the store's own writes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl

from holdall.workspace import _records
from holdall.workspace._queries import prediction_query, top_query, validate_page
from holdall.workspace._session import Session
from holdall.workspace._tables import decode_array_table, first_dict

__all__ = ["WorkspaceReads"]


class WorkspaceReads:
    """Getters (dict or None for an unknown id) and queries (polars DataFrames)."""

    _root: Path
    _session: Session

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
            return first_dict(conn.execute(sql, list(params)))

    def _fetch_pl(self, sql: str, params: Sequence[Any]) -> pl.DataFrame:
        with self._read() as conn:
            table = conn.sql(sql, params=list(params)).to_arrow_table()
        frame = pl.from_arrow(table)
        if not isinstance(frame, pl.DataFrame):  # pragma: no cover - a table always gives a frame
            raise TypeError(f"expected a polars DataFrame, got {type(frame).__name__}")
        return frame

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
        with self._read() as conn:
            # Two statements, each an index lookup; one joined statement plans two scans.
            row = first_dict(
                conn.execute("SELECT * FROM predictions WHERE prediction_id = ?", [prediction_id])
            )
            if row is not None and load_arrays:
                arrays = first_dict(
                    conn.execute(
                        "SELECT * FROM prediction_arrays WHERE prediction_id = ?", [prediction_id]
                    )
                )
                decoded = _records.decode_arrays(arrays) if arrays else {}
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
        return self._fetch_pl(*prediction_query(filters, limit=limit, offset=offset))

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
        sql, params = top_query(n, metric=metric, ascending=ascending, partition=partition,
                                dataset_name=dataset_name, group_by=group_by)  # fmt: skip
        return self._fetch_pl(sql, params)

    def get_pipeline_log(self, pipeline_id: str) -> pl.DataFrame:
        """All log entries of a pipeline, in the order they were recorded."""
        return self._fetch_pl(
            "SELECT * FROM logs WHERE pipeline_id = ? ORDER BY created_at, step_idx", [pipeline_id]
        )

    def get_run_log_summary(self, run_id: str) -> pl.DataFrame:
        """Log entries of a run aggregated per pipeline and level (count, total duration)."""
        return self._fetch_pl(
            "SELECT l.pipeline_id, pl.name AS pipeline_name, l.level, count(*) AS n_entries, "
            "sum(l.duration_ms) AS total_duration_ms, min(l.created_at) AS first_at, "
            "max(l.created_at) AS last_at FROM logs l JOIN pipelines pl USING (pipeline_id) "
            "WHERE pl.run_id = ? GROUP BY ALL ORDER BY first_at, l.level",
            [run_id],
        )
