"""`WorkspaceStore`: runs, pipelines, chains, predictions, artifacts and logs of a workspace.

A workspace is a folder holding ``store.duckdb`` (see `_schema`) and the content-addressed
``artifacts/`` folder (see `_artifacts`). The store is built in layers, each importing only
the ones below it: `_reads` (getters and queries) < `_writes` (the buffer and transactions)
< `_artifact_store` (artifacts) < this module (runs, pipelines, chains, predictions, logs,
deletion and the lifecycle). Row-level table work is in `_tables`, record validation in
`_records`, query building in `_queries`, exports in `_export`, chain replay in `_replay`;
database access goes through a `Session` (lock, turns and connection lease, see `_session`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from holdall._core import duckdb_files
from holdall._core.closing import Closing, close_at_exit, close_quietly, forget_at_exit
from holdall.errors import HoldallWarning, InvalidValueError, KeyNotFoundError
from holdall.workspace import _export, _records
from holdall.workspace._artifact_store import ArtifactStore
from holdall.workspace._artifacts import ArtifactFiles
from holdall.workspace._columns import prediction_batch
from holdall.workspace._known import KnownParents, NaturalKey, NaturalKeys, natural_key
from holdall.workspace._pending_chains import PendingChains
from holdall.workspace._queries import prediction_query
from holdall.workspace._replay import replay_chain
from holdall.workspace._schema import migrate as _migrate_schema
from holdall.workspace._session import Session
from holdall.workspace._tables import (
    Buffer,
    chain_artifact_ids,
    count,
    delete_pipeline_data,
    insert_new_predictions,
)

__all__ = ["WorkspaceStore"]

_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_EXPORT_BATCH_ROWS = 20_000  # rows per Arrow batch of a streamed Parquet export


class WorkspaceStore(Closing, ArtifactStore):
    """Database-backed workspace storage (runs, pipelines, chains, predictions, artifacts, logs).

    Parameters
    ----------
    workspace_path
        Root folder of the workspace; ``store.duckdb`` and ``artifacts/`` are created in it
        on first use.
    read_only
        Open for reading only: every write raises `ReadOnlyStorageError`; several read-only
        stores (in several processes) read at once.
    exclusive
        Keep the write lock from construction to `close` (fast mode for a single training
        process); other processes wait up to their `lock_timeout` and then fail.
    lock_timeout
        Longest wait, in seconds, for another process to hand over the workspace before
        `WorkspaceLockedError`.
    flush_every
        Buffered one-at-a-time records (`save_prediction`, `save_prediction_arrays`,
        `log_step`) are committed once this many are pending; 0 commits every call.
    flush_interval
        Seconds after which an idle buffer is committed by the background watcher.

    Notes
    -----
    Buffered records are *acknowledged* (durable, visible to other processes, kept by a
    crash) once `flush`, `close` or the ``with`` block's exit returns, or any other read or
    write of this store returns. Until then a crash of this process loses them.
    """

    def __init__(
        self,
        workspace_path: str | os.PathLike[str],
        *,
        read_only: bool = False,
        exclusive: bool = False,
        lock_timeout: float = 30.0,
        flush_every: int = 5000,
        flush_interval: float = 1.0,
    ) -> None:
        self._root = Path(workspace_path)
        if read_only and not (self._root / "store.duckdb").exists():
            raise KeyNotFoundError(
                f"no workspace at {self._root} (store.duckdb is missing); a read-only store "
                "cannot create one",
                key=str(self._root),
            )
        if self._root.exists() and not self._root.is_dir():
            raise InvalidValueError(
                f"{self._root} is a file; a workspace is a folder (it holds store.duckdb and "
                "artifacts/)",
                key=str(self._root),
            )
        self._root.mkdir(parents=True, exist_ok=True)
        self._files = ArtifactFiles(self._root / "artifacts")
        self._pending = PendingChains()
        self._flush_every = int(flush_every)
        self._buffer = Buffer()
        self._parents = KnownParents()
        self._keys = NaturalKeys()
        self._top_answers = {}
        self._last_keys: tuple[int, str, dict[NaturalKey, str]] = (-1, "", {})
        self._session = Session(
            self._root / "store.duckdb",
            read_only=read_only,
            exclusive=exclusive,
            lock_timeout_s=float(lock_timeout),
            before_release=self._commit_paired,
            flush_interval_s=float(flush_interval),
        )
        close_at_exit(self)  # what is buffered is committed when the caller never closes

    @classmethod
    def migrate(cls, workspace_path: str | os.PathLike[str], *, lock_timeout: float = 30.0) -> int:
        """Upgrade a workspace written by an older holdall to the current schema.

        Runs every migration step in one transaction. Returns the version found.
        """
        db_path = Path(workspace_path) / "store.duckdb"
        from holdall._core.locks import InterProcessLock

        lock = InterProcessLock(db_path.with_name(db_path.name + ".lock"), what=str(db_path))
        lock.acquire(shared=False, timeout_s=lock_timeout)
        try:
            conn = duckdb_files.connect(str(db_path))
            try:
                return _migrate_schema(conn, db_path)
            finally:
                conn.close()
        finally:
            lock.release()

    # ------------------------------------------------------------------ plumbing

    @property
    def read_only(self) -> bool:
        """True when the store was opened with ``read_only=True``."""
        return self._session.read_only

    def __repr__(self) -> str:
        mode = (
            "read-only"
            if self.read_only
            else ("exclusive" if self._session.exclusive else "shared")
        )
        state = "closed" if self._session.closed else mode
        return f"WorkspaceStore({str(self._root)!r}, {state})"

    def _check_open(self) -> None:
        self._session.check_open()

    def __del__(self) -> None:
        # A store never closed commits its buffer when it is collected, as at exit.
        session = getattr(self, "_session", None)
        if session is not None and not session.closed:
            close_quietly(self, when="when it was garbage-collected")

    def close(self) -> None:
        """Commit buffered records, close the connection and release the lock (idempotent).

        With nothing buffered, closing never waits for the lock. When the buffer cannot be
        committed (`WorkspaceLockedError` after `lock_timeout`, a disk error), the error is
        raised and the store stays open, buffer included, so `close` can be retried.
        """
        if len(self._buffer) and not self._session.closed:
            self.flush()
        if waiting := self._pending.ids():
            warnings.warn(
                f"workspace {self._root}: chain(s) {', '.join(waiting)} were not stored: "
                "they name artifacts that were never saved or registered",
                HoldallWarning,
                stacklevel=2,
            )
            self._pending.forget(waiting)
        self._session.close()
        forget_at_exit(self)

    # ------------------------------------------------------------------ runs

    def begin_run(self, name: str, config: Any, datasets: list[dict[str, Any]]) -> str:
        """Create a run (status ``running``) and return its id (a UUID string).

        Raises
        ------
        InvalidKeyError
            When `name` is empty or contains a path separator.
        InvalidValueError, UnsupportedTypeError
            When `config` or `datasets` cannot be stored as JSON.
        """
        self._session.check_writable()
        row = [
            _records.new_id(),
            _records.parse_name(name, what="run name"),
            _records.dump_json(config, what="config"),
            _records.dump_json(list(datasets), what="datasets"),
            "running",
            _records.utc_now(),
        ]
        with self._write() as conn:
            conn.execute(
                "INSERT INTO runs (run_id, name, config, datasets, status, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                row,
            )
        return str(row[0])

    def complete_run(self, run_id: str, summary: dict[str, Any]) -> None:
        """Mark a run completed with its `summary`; unknown `run_id` raises `KeyNotFoundError`."""
        self._session.check_writable()
        values = {
            "status": "completed",
            "completed_at": _records.utc_now(),
            "summary": _records.dump_json(summary, what="summary"),
        }
        self._update(None, "runs", "run_id", run_id, values)

    def fail_run(self, run_id: str, error: str) -> None:
        """Mark a run failed with an error message; unknown `run_id` raises `KeyNotFoundError`."""
        self._session.check_writable()
        values = {
            "status": "failed",
            "completed_at": _records.utc_now(),
            "error": _records.parse_text(error, what="error"),
        }
        self._update(None, "runs", "run_id", run_id, values)

    # ------------------------------------------------------------------ pipelines

    def begin_pipeline(
        self,
        run_id: str,
        name: str,
        expanded_config: Any,
        generator_choices: list[Any],
        dataset_name: str,
        dataset_hash: str,
    ) -> str:
        """Register a pipeline execution under a run and return its id (a UUID string)."""
        self._session.check_writable()
        pipeline_id = _records.new_id()
        row = [
            pipeline_id,
            run_id,
            _records.parse_name(name, what="pipeline name"),
            _records.dump_json(expanded_config, what="expanded_config"),
            _records.dump_json(list(generator_choices), what="generator_choices"),
            _records.parse_name(dataset_name, what="dataset_name"),
            _records.parse_text(dataset_hash, what="dataset_hash", optional=True),
            "running",
            _records.utc_now(),
        ]
        with self._write() as conn:
            self._require(conn, "runs", "run_id", run_id)
            conn.execute(
                "INSERT INTO pipelines (pipeline_id, run_id, name, expanded_config, "
                "generator_choices, dataset_name, dataset_hash, status, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            self._parents.remember(self._session.lease, pipeline_id)
        return pipeline_id

    def complete_pipeline(
        self, pipeline_id: str, best_val: float, best_test: float, metric: str, duration_ms: int
    ) -> None:
        """Mark a pipeline completed with its best scores (NaN refused) and duration."""
        self._session.check_writable()
        values = {
            "status": "completed",
            "completed_at": _records.utc_now(),
            "best_val": _records.parse_score(best_val, what="best_val"),
            "best_test": _records.parse_score(best_test, what="best_test"),
            "metric": _records.parse_text(metric, what="metric"),
            "duration_ms": _records.parse_int(duration_ms, what="duration_ms", minimum=0),
        }
        with self._write() as conn:
            self._require(conn, "pipelines", "pipeline_id", pipeline_id)
            (status,) = conn.execute(
                "SELECT status FROM pipelines WHERE pipeline_id = ?", [pipeline_id]
            ).fetchall()[0]
            if status == "failed":
                raise InvalidValueError(
                    f"pipeline {pipeline_id!r} failed and its chains and predictions were "
                    "removed; it cannot be completed (begin a new pipeline)",
                    key=pipeline_id,
                    got=status,
                )
            for chain_id in self._pending.of_pipeline(pipeline_id):
                missing = self._pending.missing(conn, chain_id)
                raise KeyNotFoundError(
                    f"pipeline {pipeline_id!r} cannot be completed: its chain {chain_id!r} "
                    f"names artifact id(s) never saved or registered: {', '.join(missing)}",
                    key=missing[0],
                )
            self._update(conn, "pipelines", "pipeline_id", pipeline_id, values)

    def fail_pipeline(self, pipeline_id: str, error: str) -> None:
        """Mark a pipeline failed and roll back its chains, predictions and arrays.

        Its logs are kept (they explain the failure). Artifacts only its chains used lose
        those references and become collectable by `gc_artifacts`.
        """
        self._session.check_writable()
        message = _records.parse_text(error, what="error")
        with self._write() as conn:
            self._require(conn, "pipelines", "pipeline_id", pipeline_id)
            delete_pipeline_data(conn, "pipeline_id = ?", [pipeline_id], with_logs=False)
            conn.execute(
                "UPDATE pipelines SET status = 'failed', completed_at = ?, error = ? WHERE pipeline_id = ?",
                [_records.utc_now(), message, pipeline_id],
            )
        self._pending.forget(self._pending.of_pipeline(pipeline_id))
        self._parents.forget()
        self._forget_keys()

    # ------------------------------------------------------------------ chains

    def save_chain(
        self,
        pipeline_id: str,
        steps: list[dict[str, Any]],
        model_step_idx: int,
        model_class: str,
        preprocessings: str,
        fold_strategy: str,
        fold_artifacts: dict[Any, Any],
        shared_artifacts: dict[Any, Any],
        branch_path: list[int] | None = None,
        source_index: int | None = None,
    ) -> str:
        """Store a preprocessing-to-model chain and return its id (a UUID string).

        Every artifact id it names (``steps[i]["artifact_id"]``, `fold_artifacts` values,
        `shared_artifacts` values, strings or lists of strings) must be an artifact of this
        store. A chain naming ids not registered yet (nirs4all 0.7.1's executor saves its
        chains first) waits, in this store object, and is stored in the transaction that
        registers the last of them; until then `get_chain` does not find it, and
        `complete_pipeline` refuses its pipeline.

        Raises
        ------
        KeyNotFoundError
            For an unknown pipeline.
        """
        self._session.check_writable()
        if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
            raise InvalidValueError("steps must be a list of dicts", key="steps", got=steps)
        referenced = sorted(chain_artifact_ids(steps, fold_artifacts, shared_artifacts))
        chain_id = _records.new_id()
        row = [
            chain_id,
            pipeline_id,
            _records.dump_json(steps, what="steps"),
            _records.parse_int(model_step_idx, what="model_step_idx"),
            _records.parse_text(model_class, what="model_class"),
            _records.parse_text(preprocessings, what="preprocessings"),
            _records.parse_text(fold_strategy, what="fold_strategy"),
            _records.dump_json(
                {str(k): v for k, v in fold_artifacts.items()}, what="fold_artifacts"
            ),
            _records.dump_json(
                {str(k): v for k, v in shared_artifacts.items()}, what="shared_artifacts"
            ),
            _records.dump_json(branch_path, what="branch_path"),
            _records.parse_int(source_index, what="source_index", optional=True),
            referenced,
            _records.utc_now(),
        ]
        with self._write() as conn:
            self._require(conn, "pipelines", "pipeline_id", pipeline_id)
            if referenced:
                found = {r[0] for r in conn.execute(
                    "SELECT artifact_id FROM artifacts WHERE list_contains(?, artifact_id)", [referenced]
                ).fetchall()}  # fmt: skip
                if len(found) < len(referenced):
                    self._pending.add(chain_id, pipeline_id, row, referenced)
                    return chain_id
            conn.execute("INSERT INTO chains VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            self._parents.remember(self._session.lease, pipeline_id, chain_id)
        return chain_id

    # ------------------------------------------------------------------ predictions

    def _check_parents(
        self, conn: duckdb.DuckDBPyConnection, pairs: set[tuple[str, str | None]]
    ) -> None:
        """Raise unless every (pipeline, chain) pair exists and the chain is the pipeline's.

        Runs inside the caller's lease, so what it learns holds until the lease ends.
        """
        known = self._parents.valid_for(self._session.lease)
        unknown_pipelines = sorted({p for p, _ in pairs} - known.pipelines)
        if unknown_pipelines:
            found = {r[0] for r in conn.execute(
                "SELECT pipeline_id FROM pipelines WHERE list_contains(?, pipeline_id)",
                [unknown_pipelines],
            ).fetchall()}  # fmt: skip
            for pipeline_id in unknown_pipelines:
                if pipeline_id not in found:
                    raise KeyNotFoundError(
                        f"no pipeline with id {pipeline_id!r} in workspace {self._root}",
                        key=pipeline_id,
                    )
                known.pipelines.add(pipeline_id)
        unknown_chains = sorted({c for _, c in pairs if c is not None} - known.chains.keys())
        if unknown_chains:
            known.chains.update(conn.execute(
                "SELECT chain_id, pipeline_id FROM chains WHERE list_contains(?, chain_id)",
                [unknown_chains],
            ).fetchall())  # fmt: skip
        for pipeline_id, chain_id in sorted(pairs, key=str):
            if chain_id is None:
                continue
            owner = known.chains.get(chain_id)
            if owner is None:
                raise KeyNotFoundError(
                    f"no chain with id {chain_id!r} in workspace {self._root}", key=chain_id
                )
            if owner != pipeline_id:
                raise InvalidValueError(
                    f"chain {chain_id!r} belongs to pipeline {owner!r}, not to {pipeline_id!r}",
                    key="chain_id",
                    got=chain_id,
                )

    def save_prediction(
        self,
        pipeline_id: str,
        chain_id: str,
        dataset_name: str,
        model_name: str,
        model_class: str,
        fold_id: str,
        partition: str,
        val_score: float | None,
        test_score: float | None,
        train_score: float | None,
        metric: str,
        task_type: str,
        n_samples: int,
        n_features: int,
        scores: dict[str, Any],
        best_params: dict[str, Any],
        branch_id: int | None,
        branch_name: str | None,
        exclusion_count: int,
        exclusion_rate: float,
        preprocessings: str = "",
        prediction_id: str | None = None,
        refit_context: str | None = None,
    ) -> str:
        """Record one prediction and return its id (a UUID string).

        As in nirs4all 0.7.1, a prediction with the same pipeline, chain, fold, partition,
        model name and branch as a stored one *replaces* it (its arrays are dropped too)
        and keeps its id; with ``chain_id=None`` it always adds (0.7.1's NULL never equals
        NULL), while ``chain_id=""`` (what nirs4all passes for an unresolved chain, stored
        as no chain) matches the stored predictions without a chain. Otherwise the id is
        `prediction_id` when given (replacing any prediction of that id), else a new UUID.
        `refit_context` is nirs4all's label for refit entries.

        The record is buffered (see the class Notes for when it is acknowledged); it is
        validated now, so bad input raises here: NaN or infinite scores, a name with a path
        separator, an unknown pipeline or chain id (`KeyNotFoundError`).
        """
        self._session.check_writable()
        keyed = chain_id is not None  # 0.7.1: a NULL chain never equals another (always adds)
        if chain_id == "":
            chain_id = None  # type: ignore[assignment]
        chosen = (
            None
            if prediction_id is None
            else _records.parse_text(prediction_id, what="prediction_id")
        )
        values = _records.prediction_values(
            (
                pipeline_id,
                chain_id,
                dataset_name,
                model_name,
                model_class,
                fold_id,
                partition,
                val_score,
                test_score,
                train_score,
                metric,
                task_type,
                n_samples,
                n_features,
                scores,
                best_params,
                preprocessings,
                branch_id,
                branch_name,
                exclusion_count,
                exclusion_rate,
                refit_context,
            )
        )  # fmt: skip  (the order of _records.PREDICTION_FIELDS)
        if not self._parents.knows(self._session.lease, values[0], values[1]):
            with self._session.connection() as conn:
                self._check_parents(conn, {(values[0], values[1])})
        key = (values[1] or "", values[5], values[6], values[3], values[17])  # see natural_key
        with self._session.mutex:
            self._session.check_open()
            keys = self._keys_of(values[0]) if keyed else None
            found = keys.get(key) if keys is not None else None
            new_id = found or chosen or _records.new_id()
            if found or chosen:
                self._buffer.replaces.add(new_id)
                self._buffer.arrays.pop(new_id, None)  # replaced: its old arrays go too
            if keys is not None:
                keys[key] = new_id
            self._buffer.predictions.append((new_id, *values, _records.utc_now_us()))
            self._buffer.n_samples[new_id] = values[12]
        self._maybe_flush()
        return new_id

    def _forget_keys(self) -> None:
        """Drop every learnt natural key (after a delete or a bulk save)."""
        self._keys.forget()
        self._last_keys = (-1, "", {})

    def _keys_of(self, pipeline_id: str) -> dict[NaturalKey, str]:
        """``{natural key: prediction id}`` of a pipeline, committed and buffered (lease-cached)."""
        last = self._last_keys
        if last[0] == self._session.lease and last[1] == pipeline_id:
            return last[2]  # the pipeline of the previous save: no lookup at all
        keys = self._keys.cached(self._session.lease, pipeline_id)
        if keys is not None:
            self._last_keys = (self._session.lease, pipeline_id, keys)
            return keys
        with self._session.connection() as conn:
            rows = conn.execute(
                "SELECT chain_id, fold_id, partition, model_name, branch_id, prediction_id "
                "FROM predictions WHERE pipeline_id = ?",
                [pipeline_id],
            ).fetchall()
            keys = self._keys.learn(
                self._session.lease,
                pipeline_id,
                ((natural_key(r[0], r[1], r[2], r[3], r[4]), r[5]) for r in rows),
            )
        for row in self._buffer.predictions:  # held back or not yet committed
            if row[1] == pipeline_id:
                keys[natural_key(row[2], row[6], row[7], row[4], row[18])] = row[0]
        self._last_keys = (self._session.lease, pipeline_id, keys)
        return keys

    def _n_samples_of(self, prediction_id: str) -> int:
        n = self._buffer.n_samples.get(prediction_id)
        if n is not None:
            return n
        with self._session.connection() as conn:
            found = conn.execute(
                "SELECT n_samples FROM predictions WHERE prediction_id = ?", [prediction_id]
            ).fetchall()
        if not found:
            raise KeyNotFoundError(
                f"no prediction with id {prediction_id!r} in workspace {self._root}",
                key=prediction_id,
            )
        return int(found[0][0])

    def save_prediction_arrays(
        self,
        prediction_id: str,
        y_true: np.ndarray | None,
        y_pred: np.ndarray | None,
        y_proba: np.ndarray | None = None,
        sample_indices: np.ndarray | None = None,
        weights: np.ndarray | None = None,
    ) -> None:
        """Store the arrays of a prediction as native DuckDB list columns (buffered).

        Each array's first dimension must equal the prediction's ``n_samples``; dtypes must
        be bool, integer or float (``sample_indices`` integer) and come back unchanged from
        `get_prediction`. Saving again replaces the previous arrays.
        """
        self._session.check_writable()
        arrays = {"y_true": y_true, "y_pred": y_pred, "y_proba": y_proba,
                  "sample_indices": sample_indices, "weights": weights}  # fmt: skip
        with self._session.mutex:
            self._session.check_open()
            n_samples = self._n_samples_of(prediction_id)
            prepared = _records.prepare_arrays(prediction_id, n_samples, arrays)
            self._buffer.arrays[prediction_id] = prepared
            self._buffer.array_bytes += sum(
                a.nbytes for a in prepared.flat.values() if a is not None
            )
        self._maybe_flush()

    def save_predictions(
        self, records: Iterable[dict[str, Any]] | pa.Table | pl.DataFrame
    ) -> list[str]:
        """Bulk API: record many predictions, each with its arrays, in one transaction.

        Parameters
        ----------
        records
            A list of dicts, a pyarrow Table or a polars DataFrame whose fields are the
            arguments of `save_prediction` plus, optionally, the arrays of
            `save_prediction_arrays` (numpy arrays, or list columns in a table).

        Returns
        -------
        list of str
            The new prediction ids, in input order. Nothing is written if any record is bad.
        """
        self._session.check_writable()
        batch = prediction_batch(records)
        if not batch.ids:
            return []
        pairs = batch.predictions.select(["pipeline_id", "chain_id"]).group_by(
            ["pipeline_id", "chain_id"]
        ).aggregate([])  # fmt: skip
        with self._write() as conn:
            self._check_parents(
                conn,
                set(
                    zip(
                        pairs["pipeline_id"].to_pylist(), pairs["chain_id"].to_pylist(), strict=True
                    )
                ),
            )
            insert_new_predictions(conn, batch.predictions, batch.arrays)
            self._forget_keys()  # the new rows' keys are not in the cache
        return batch.ids

    # ------------------------------------------------------------------ logs

    def log_step(
        self,
        pipeline_id: str,
        step_idx: int,
        operator_class: str,
        event: str,
        duration_ms: int | None = None,
        message: str | None = None,
        details: dict[str, Any] | None = None,
        level: str = "info",
    ) -> None:
        """Record a structured log entry for a pipeline step (buffered like predictions)."""
        self._session.check_writable()
        if level not in _LOG_LEVELS:
            raise InvalidValueError(f"level must be one of {', '.join(_LOG_LEVELS)}, got {level!r}",
                                    key="level", expected=_LOG_LEVELS, got=level)  # fmt: skip
        row = (
            _records.new_id(), _records.parse_text(pipeline_id, what="pipeline_id") or "",
            _records.parse_int(step_idx, what="step_idx"),
            _records.parse_text(operator_class, what="operator_class", optional=True),
            _records.parse_text(event, what="event"),
            _records.parse_int(duration_ms, what="duration_ms", optional=True, minimum=0),
            _records.parse_text(message, what="message", optional=True),
            _records.dump_json(details, what="details"), level, _records.utc_now_us(),
        )  # fmt: skip
        with self._session.connection() as conn:
            self._check_parents(conn, {(row[1], None)})
            self._buffer.logs.append(row)
        self._maybe_flush()

    # ------------------------------------------------------------------ exports and replay

    def export_chain(
        self, chain_id: str, output_path: str | os.PathLike[str], format: str = "n4a"
    ) -> Path:
        """Export a chain as a single-file bundle (``"n4a"``) or a standalone script (``"n4a.py"``).

        Both carry the chain and its artifacts and replay without a workspace
        (`replay_chain` on the bundle, or ``python file.n4a.py X.npy out.npy``).
        """
        return _export.export_chain(self, chain_id, Path(output_path), format)

    def export_pipeline_config(self, pipeline_id: str, output_path: str | os.PathLike[str]) -> Path:
        """Write a pipeline's expanded configuration as JSON (atomically)."""
        return _export.export_pipeline_config(self, pipeline_id, Path(output_path))

    def export_run(self, run_id: str, output_path: str | os.PathLike[str]) -> Path:
        """Write a run with its pipelines and chains as YAML (atomically)."""
        return _export.export_run(self, run_id, Path(output_path))

    def export_predictions_parquet(
        self, output_path: str | os.PathLike[str], **filters: Any
    ) -> Path:
        """Write the predictions matching `filters` (those of `query_predictions`) as Parquet."""
        sql, params = prediction_query(filters, limit=None, offset=0, ordered=False)
        with self._read() as conn:
            batches = conn.sql(sql, params=params).to_arrow_reader(_EXPORT_BATCH_ROWS)
            return _export.write_parquet(batches, Path(output_path))

    def replay_chain(
        self,
        chain_id: str,
        X: np.ndarray,
        wavelengths: np.ndarray | None = None,
        *,
        trust: bool = False,
    ) -> np.ndarray:
        """Apply a stored chain to new `X`: transforms in order, then the fold models' mean.

        With `trust`, pickled artifacts another user's key signed (or none did) load too.
        """
        return replay_chain(self, chain_id, X, wavelengths, trust=trust)

    # ------------------------------------------------------------------ deletion and cleanup

    def delete_run(self, run_id: str, delete_artifacts: bool = True) -> int:
        """Delete a run and everything below it; return the number of rows deleted.

        Cascades to pipelines, chains, predictions, arrays and logs in one transaction.
        With `delete_artifacts`, artifacts no longer referenced are deleted too (rows, then
        files after commit); otherwise they stay for `gc_artifacts`.
        """
        self._session.check_writable()
        # The lease is held until the files are gone: handed over between the commit and the
        # removal, another process could save the same content again and lose its file.
        with self._session.connection():
            with self._write() as conn:
                self._require(conn, "runs", "run_id", run_id)
                where = "pipeline_id IN (SELECT pipeline_id FROM pipelines WHERE run_id = ?)"
                deleted, freed = delete_pipeline_data(
                    conn, where, [run_id], with_logs=True, delete_artifacts=delete_artifacts
                )
                deleted += count(conn.execute("DELETE FROM pipelines WHERE run_id = ?", [run_id]))
                deleted += count(conn.execute("DELETE FROM runs WHERE run_id = ?", [run_id]))
            self._parents.forget()
            self._forget_keys()
            for relative in freed:
                self._files.remove(relative)
        return deleted

    def delete_prediction(self, prediction_id: str) -> bool:
        """Delete one prediction and its arrays; False when no prediction has this id."""
        self._session.check_writable()
        with self._write() as conn:
            conn.execute("DELETE FROM prediction_arrays WHERE prediction_id = ?", [prediction_id])
            deleted = count(
                conn.execute("DELETE FROM predictions WHERE prediction_id = ?", [prediction_id])
            )
            self._forget_keys()
        return deleted > 0

    def vacuum(self) -> None:
        """Shrink ``store.duckdb``: copy the live data into a fresh file and swap it in atomically.

        DuckDB does not return freed blocks to the OS, so the file is rebuilt with
        ``COPY FROM DATABASE`` into a temporary file beside it, then renamed over it.
        """
        self._session.check_writable()
        self._session.check_replaceable()
        db_path = self._root / "store.duckdb"
        fresh = db_path.with_name(".store.vacuum.duckdb")
        with self._session.connection() as conn:
            self._commit_buffer(conn)
            for leftover in (fresh, fresh.with_name(fresh.name + ".wal")):
                leftover.unlink(missing_ok=True)
            conn.execute("CHECKPOINT")
            duckdb_files.create_if_missing(fresh)  # in the format every supported DuckDB reads
            conn.execute(f"ATTACH {duckdb_files.sql_string(fresh)} AS holdall_fresh")
            try:
                db_name = conn.execute("SELECT current_database()").fetchall()[0]
                conn.execute(
                    f'COPY FROM DATABASE "{db_name[0] if db_name else "store"}" TO holdall_fresh'
                )
            finally:
                conn.execute("DETACH holdall_fresh")
            # Still inside the lease: handed over between the copy and the swap, another
            # process's writes would be replaced by the copy.
            self._session.replace_file(lambda: os.replace(fresh, db_path))
