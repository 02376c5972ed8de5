"""`WorkspaceStore`: runs, pipelines, chains, predictions, artifacts and logs of a workspace.

A workspace is a folder holding ``store.duckdb`` (seven tables, see `_schema`) and the
content-addressed ``artifacts/`` folder (see `_artifacts`). Access to the database goes
through a `Session` (lock + connection lease, see `_session`); record validation lives in
`_records`, query building in `_queries`, exports in `_export` and chain replay in `_replay`.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import uuid
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from holdall._core.hashing import sha256_bytes
from holdall.errors import CorruptedFileError, InvalidValueError, KeyNotFoundError
from holdall.workspace import _export, _records
from holdall.workspace._artifacts import ArtifactFiles, deserialize, parse_format, serialize
from holdall.workspace._queries import prediction_query, top_query, validate_page
from holdall.workspace._schema import migrate as _migrate_schema
from holdall.workspace._session import Session

if TYPE_CHECKING:
    from holdall.workspace._artifacts import ArtifactFormat

__all__ = ["WorkspaceStore"]

_OPEN_STORES: weakref.WeakSet[WorkspaceStore] = weakref.WeakSet()

_PREDICTION_COLUMNS = (
    "prediction_id", "pipeline_id", "chain_id", "dataset_name", "model_name", "model_class",
    "fold_id", "partition", "val_score", "test_score", "train_score", "metric", "task_type",
    "n_samples", "n_features", "scores", "best_params", "preprocessings", "branch_id",
    "branch_name", "exclusion_count", "exclusion_rate", "created_at",
)  # fmt: skip
_LOG_COLUMNS = (
    "log_id", "pipeline_id", "step_idx", "operator_class", "event", "duration_ms", "message",
    "details", "level", "created_at",
)  # fmt: skip
_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_BUFFER_BYTES = 256 * 2**20  # flush buffered arrays beyond this many bytes


@atexit.register
def _close_open_stores() -> None:
    """Commit what open stores buffered when the interpreter exits without `close`."""
    for store in list(_OPEN_STORES):
        with contextlib.suppress(Exception):
            store.close()


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class _Buffer:
    """What the one-at-a-time calls accepted and the next flush commits."""

    predictions: list[tuple[Any, ...]] = field(default_factory=list)
    n_samples: dict[str, int] = field(default_factory=dict)
    arrays: dict[str, _records.PreparedArrays] = field(default_factory=dict)
    logs: list[tuple[Any, ...]] = field(default_factory=list)
    array_bytes: int = 0

    def __len__(self) -> int:
        return len(self.predictions) + len(self.arrays) + len(self.logs)


class WorkspaceStore:
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
        self._root.mkdir(parents=True, exist_ok=True)
        self._files = ArtifactFiles(self._root / "artifacts")
        self._flush_every = int(flush_every)
        self._buffer = _Buffer()
        self._known_pipelines: set[str] = set()
        self._known_chains: set[str] = set()
        self._session = Session(
            self._root / "store.duckdb",
            read_only=read_only,
            exclusive=exclusive,
            lock_timeout_s=float(lock_timeout),
            before_release=self._flush_into,
            flush_interval_s=float(flush_interval),
        )
        _OPEN_STORES.add(self)

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
            conn = duckdb.connect(str(db_path))
            try:
                return _migrate_schema(conn, db_path)
            finally:
                conn.close()
        finally:
            lock.release()

    # ------------------------------------------------------------------ plumbing

    @property
    def workspace_path(self) -> Path:
        """The workspace root folder."""
        return self._root

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

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Commit buffered records, close the connection and release the lock (idempotent).

        With nothing buffered, closing never waits for the lock. When the buffer cannot be
        committed (`WorkspaceLockedError` after `lock_timeout`, a disk error), the error is
        raised and the store stays open, buffer included, so `close` can be retried.
        """
        if len(self._buffer) and not self._session.closed:
            self.flush()
        self._session.close()
        _OPEN_STORES.discard(self)

    def flush(self) -> None:
        """Commit every buffered record now; once this returns they are acknowledged."""
        self._session.check_writable()
        with self._session.connection() as conn:
            self._flush_into(conn)

    @contextlib.contextmanager
    def _read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for reading, after committing what this store buffered."""
        with self._session.connection() as conn:
            if not self.read_only:
                self._flush_into(conn)
            yield conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction holding the buffered records and the caller's writes."""
        with self._session.transaction() as conn:
            pending = self._take_buffer()
            try:
                self._insert_buffer(conn, pending)
                yield conn
            except BaseException:
                self._restore_buffer(pending)
                raise

    def _take_buffer(self) -> _Buffer:
        pending, self._buffer = self._buffer, _Buffer()
        return pending

    def _restore_buffer(self, pending: _Buffer) -> None:
        newer, self._buffer = self._buffer, pending
        self._buffer.predictions += newer.predictions
        self._buffer.n_samples |= newer.n_samples
        self._buffer.arrays |= newer.arrays
        self._buffer.logs += newer.logs
        self._buffer.array_bytes += newer.array_bytes

    def _flush_into(self, conn: duckdb.DuckDBPyConnection) -> None:
        if not len(self._buffer):
            return
        pending = self._take_buffer()
        try:
            conn.execute("BEGIN TRANSACTION")
            try:
                self._insert_buffer(conn, pending)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except BaseException:
            self._restore_buffer(pending)
            raise

    def _maybe_flush(self) -> None:
        if len(self._buffer) >= self._flush_every or self._buffer.array_bytes >= _BUFFER_BYTES:
            self.flush()

    @staticmethod
    def _insert_buffer(conn: duckdb.DuckDBPyConnection, pending: _Buffer) -> None:
        """Insert buffered rows; rows whose parent was deleted meanwhile are dropped.

        Dropping them is what would have happened had they been committed before the
        delete (the delete cascades), so the outcome is one of the serial orders.
        """
        if pending.predictions:
            table = _rows_table(_PREDICTION_COLUMNS, pending.predictions)
            conn.register("_holdall_rows", table)
            conn.execute(
                "INSERT INTO predictions SELECT * FROM _holdall_rows "
                "WHERE pipeline_id IN (SELECT pipeline_id FROM pipelines)"
            )
            conn.unregister("_holdall_rows")
        if pending.arrays:
            _insert_arrays(conn, list(pending.arrays.values()))
        if pending.logs:
            table = _rows_table(_LOG_COLUMNS, pending.logs)
            conn.register("_holdall_rows", table)
            conn.execute(
                "INSERT INTO logs SELECT * FROM _holdall_rows "
                "WHERE pipeline_id IN (SELECT pipeline_id FROM pipelines)"
            )
            conn.unregister("_holdall_rows")

    def _fetch_dict(self, sql: str, params: Sequence[Any]) -> dict[str, Any] | None:
        with self._read() as conn:
            return _first_dict(conn.execute(sql, list(params)))

    def _fetch_pl(self, sql: str, params: Sequence[Any]) -> pl.DataFrame:
        with self._read() as conn:
            table = conn.sql(sql, params=list(params)).to_arrow_table()
        frame = pl.from_arrow(table)
        if not isinstance(frame, pl.DataFrame):  # pragma: no cover - a table always gives a frame
            raise TypeError(f"expected a polars DataFrame, got {type(frame).__name__}")
        return frame

    def _require(
        self, conn: duckdb.DuckDBPyConnection, table: str, column: str, value: object
    ) -> None:
        """Raise `KeyNotFoundError` unless a row of `table` has `column` = `value`."""
        if (
            not isinstance(value, str)
            or not conn.execute(f"SELECT 1 FROM {table} WHERE {column} = ?", [value]).fetchall()
        ):
            raise KeyNotFoundError(
                f"no {column[:-3]} with id {value!r} in workspace {self._root}", key=str(value)
            )

    def _update(self, table: str, column: str, key: str, assignments: dict[str, Any]) -> None:
        """``UPDATE table SET ... WHERE column = key`` (columns from code, never from callers)."""
        sets = ", ".join(f"{name} = ?" for name in assignments)
        with self._write() as conn:
            self._require(conn, table, column, key)
            conn.execute(
                f"UPDATE {table} SET {sets} WHERE {column} = ?", [*assignments.values(), key]
            )

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
            _new_id(),
            _records.parse_name(name, what="run name"),
            _records.dump_json(config, what="config"),
            _records.dump_json(list(datasets), what="datasets"),
            "running",
            _now(),
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
            "completed_at": _now(),
            "summary": _records.dump_json(summary, what="summary"),
        }
        self._update("runs", "run_id", run_id, values)

    def fail_run(self, run_id: str, error: str) -> None:
        """Mark a run failed with an error message; unknown `run_id` raises `KeyNotFoundError`."""
        self._session.check_writable()
        values = {
            "status": "failed",
            "completed_at": _now(),
            "error": _records.parse_text(error, what="error"),
        }
        self._update("runs", "run_id", run_id, values)

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
        pipeline_id = _new_id()
        row = [
            pipeline_id,
            run_id,
            _records.parse_name(name, what="pipeline name"),
            _records.dump_json(expanded_config, what="expanded_config"),
            _records.dump_json(list(generator_choices), what="generator_choices"),
            _records.parse_name(dataset_name, what="dataset_name"),
            _records.parse_text(dataset_hash, what="dataset_hash", optional=True),
            "running",
            _now(),
        ]
        with self._write() as conn:
            self._require(conn, "runs", "run_id", run_id)
            conn.execute(
                "INSERT INTO pipelines (pipeline_id, run_id, name, expanded_config, "
                "generator_choices, dataset_name, dataset_hash, status, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        self._known_pipelines.add(pipeline_id)
        return pipeline_id

    def complete_pipeline(
        self, pipeline_id: str, best_val: float, best_test: float, metric: str, duration_ms: int
    ) -> None:
        """Mark a pipeline completed with its best scores (NaN refused) and duration."""
        self._session.check_writable()
        values = {
            "status": "completed",
            "completed_at": _now(),
            "best_val": _records.parse_score(best_val, what="best_val"),
            "best_test": _records.parse_score(best_test, what="best_test"),
            "metric": _records.parse_text(metric, what="metric"),
            "duration_ms": _records.parse_int(duration_ms, what="duration_ms", minimum=0),
        }
        self._update("pipelines", "pipeline_id", pipeline_id, values)

    def fail_pipeline(self, pipeline_id: str, error: str) -> None:
        """Mark a pipeline failed and roll back its chains, predictions and arrays.

        Its logs are kept (they explain the failure). Artifacts only its chains used lose
        those references and become collectable by `gc_artifacts`.
        """
        self._session.check_writable()
        message = _records.parse_text(error, what="error")
        with self._write() as conn:
            self._require(conn, "pipelines", "pipeline_id", pipeline_id)
            _delete_pipeline_data(conn, "pipeline_id = ?", [pipeline_id], with_logs=False)
            conn.execute(
                "UPDATE pipelines SET status = 'failed', completed_at = ?, error = ? WHERE pipeline_id = ?",
                [_now(), message, pipeline_id],
            )
        self._known_chains.clear()

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
        `shared_artifacts` values, strings or lists of strings) must exist in this store.

        Raises
        ------
        KeyNotFoundError
            For an unknown pipeline or artifact id.
        """
        self._session.check_writable()
        if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
            raise InvalidValueError("steps must be a list of dicts", key="steps", got=steps)
        referenced = sorted(_chain_artifact_ids(steps, fold_artifacts, shared_artifacts))
        chain_id = _new_id()
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
            _now(),
        ]
        with self._write() as conn:
            self._require(conn, "pipelines", "pipeline_id", pipeline_id)
            if referenced:
                found = {r[0] for r in conn.execute(
                    "SELECT artifact_id FROM artifacts WHERE list_contains(?, artifact_id)", [referenced]
                ).fetchall()}  # fmt: skip
                missing = [a for a in referenced if a not in found]
                if missing:
                    raise KeyNotFoundError(
                        f"chain references unknown artifact id(s) {', '.join(missing)}; "
                        "save them with save_artifact first",
                        key=missing[0],
                    )
            conn.execute("INSERT INTO chains VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        self._known_chains.add(chain_id)
        return chain_id

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

    # ------------------------------------------------------------------ predictions

    def _check_parents(
        self, conn: duckdb.DuckDBPyConnection, pipeline_ids: set[str], chain_ids: set[str]
    ) -> None:
        for ids, known, table, column in (
            (pipeline_ids, self._known_pipelines, "pipelines", "pipeline_id"),
            (chain_ids, self._known_chains, "chains", "chain_id"),
        ):
            unknown = sorted(ids - known)
            if not unknown:
                continue
            found = {r[0] for r in conn.execute(
                f"SELECT {column} FROM {table} WHERE list_contains(?, {column})", [unknown]
            ).fetchall()}  # fmt: skip
            missing = [i for i in unknown if i not in found]
            if missing:
                raise KeyNotFoundError(
                    f"no {column[:-3]} with id {missing[0]!r} in workspace {self._root}",
                    key=missing[0],
                )
            known.update(found)

    def _prediction_row(self, fields: dict[str, Any]) -> tuple[Any, ...]:
        """Validate one prediction record (as save_prediction takes it) into a table row."""
        r = _records
        try:
            row = (
                _new_id(),
                r.parse_text(fields["pipeline_id"], what="pipeline_id"),
                r.parse_text(fields["chain_id"], what="chain_id", optional=True),
                r.parse_name(fields["dataset_name"], what="dataset_name"),
                r.parse_text(fields["model_name"], what="model_name"),
                r.parse_text(fields["model_class"], what="model_class"),
                r.parse_text(fields["fold_id"], what="fold_id"),
                r.parse_text(fields["partition"], what="partition"),
                r.parse_score(fields["val_score"], what="val_score"),
                r.parse_score(fields["test_score"], what="test_score"),
                r.parse_score(fields["train_score"], what="train_score"),
                r.parse_text(fields["metric"], what="metric"),
                r.parse_text(fields["task_type"], what="task_type"),
                r.parse_int(fields["n_samples"], what="n_samples", minimum=0),
                r.parse_int(fields["n_features"], what="n_features", minimum=0),
                r.dump_json(fields["scores"], what="scores"),
                r.dump_json(fields["best_params"], what="best_params"),
                r.parse_text(
                    fields.get("preprocessings", ""), what="preprocessings", optional=True
                ),
                r.parse_int(fields["branch_id"], what="branch_id", optional=True),
                r.parse_text(fields["branch_name"], what="branch_name", optional=True),
                r.parse_int(fields["exclusion_count"], what="exclusion_count", minimum=0),
                r.parse_score(fields["exclusion_rate"], what="exclusion_rate"),
                _now(),
            )
        except KeyError as err:
            raise InvalidValueError(
                f"prediction record lacks the field {err.args[0]!r}", key=str(err.args[0])
            ) from err
        if row[21] is None:
            raise InvalidValueError(
                "exclusion_rate must be a float, got None", key="exclusion_rate"
            )
        return row

    def save_prediction(
        self,
        pipeline_id: str,
        chain_id: str,
        dataset_name: str,
        model_name: str,
        model_class: str,
        fold_id: str,
        partition: str,
        val_score: float,
        test_score: float,
        train_score: float,
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
    ) -> str:
        """Record one prediction and return its id (a UUID string).

        The record is buffered (see the class Notes for when it is acknowledged); it is
        validated now, so bad input raises here: NaN or infinite scores, a name with a path
        separator, an unknown pipeline or chain id (`KeyNotFoundError`).
        """
        self._session.check_writable()
        fields = dict(locals())
        del fields["self"]
        row = self._prediction_row(fields)
        if row[1] not in self._known_pipelines or (
            row[2] is not None and row[2] not in self._known_chains
        ):
            with self._session.connection() as conn:
                self._check_parents(conn, {row[1]}, set() if row[2] is None else {row[2]})
        with self._session.guard():
            self._buffer.predictions.append(row)
            self._buffer.n_samples[row[0]] = row[13]
        self._maybe_flush()
        return str(row[0])

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
        with self._session.guard():
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
        rows: list[tuple[Any, ...]] = []
        prepared: list[_records.PreparedArrays] = []
        for fields in _iter_records(records):
            row = self._prediction_row(fields)
            rows.append(row)
            arrays = {name: fields.get(name) for name in _records.ARRAY_NAMES}
            if any(value is not None for value in arrays.values()):
                prepared.append(_records.prepare_arrays(row[0], row[13], arrays))
        with self._write() as conn:
            self._check_parents(
                conn, {r[1] for r in rows}, {r[2] for r in rows if r[2] is not None}
            )
            self._insert_buffer(
                conn, _Buffer(predictions=rows, arrays={p.prediction_id: p for p in prepared})
            )
        return [str(r[0]) for r in rows]

    # ------------------------------------------------------------------ artifacts

    def save_artifact(self, obj: Any, operator_class: str, artifact_type: str, format: str) -> str:
        """Persist an object content-addressed; the same content is stored once.

        The id is the SHA-256 of the serialized bytes: saving equal content again returns
        the same id and bumps the artifact's reference count. The file is written
        atomically before its row is committed, under the workspace lock.
        """
        self._session.check_writable()
        fmt = parse_format(format)
        data = serialize(obj, fmt)
        digest = sha256_bytes(data)
        relative = ArtifactFiles.relative_path(digest, fmt)
        with self._write() as conn:
            bumped = conn.execute(
                "UPDATE artifacts SET ref_count = ref_count + 1 WHERE artifact_id = ? RETURNING 1",
                [digest],
            ).fetchall()
            if not bumped:
                self._files.write(relative, data)
                conn.execute(
                    "INSERT INTO artifacts VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)",
                    [digest, relative, digest,
                     _records.parse_text(operator_class, what="operator_class", optional=True),
                     _records.parse_text(artifact_type, what="artifact_type", optional=True),
                     fmt, len(data), _now()],
                )  # fmt: skip
        return digest

    def _artifact_location(self, artifact_id: str) -> tuple[str, str, ArtifactFormat]:
        row = self._fetch_dict(
            "SELECT artifact_path, content_hash, format FROM artifacts WHERE artifact_id = ?",
            [artifact_id],
        )
        if row is None:
            raise KeyNotFoundError(
                f"no artifact with id {artifact_id!r} in workspace {self._root}", key=artifact_id
            )
        fmt = parse_format(row["format"])
        if row["artifact_path"] != ArtifactFiles.relative_path(row["content_hash"], fmt):
            raise CorruptedFileError(
                f"artifact {artifact_id!r} points to {row['artifact_path']!r}, outside its content "
                f"address; refusing to load it", path=str(self._root / "store.duckdb"),
            )  # fmt: skip
        return row["artifact_path"], row["content_hash"], fmt

    def load_artifact(self, artifact_id: str) -> Any:
        """Load an artifact, checking its SHA-256 first (`IntegrityError` on mismatch)."""
        with self._session.connection():  # hold the lock: no gc can remove the file meanwhile
            relative, digest, fmt = self._artifact_location(artifact_id)
            data = self._files.read_verified(relative, digest)
        return deserialize(data, fmt)

    def get_artifact_path(self, artifact_id: str) -> Path:
        """The file of a stored artifact; unknown id raises `KeyNotFoundError`."""
        return self._files.absolute(self._artifact_location(artifact_id)[0])

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
            _new_id(), pipeline_id, _records.parse_int(step_idx, what="step_idx"),
            _records.parse_text(operator_class, what="operator_class", optional=True),
            _records.parse_text(event, what="event"),
            _records.parse_int(duration_ms, what="duration_ms", optional=True, minimum=0),
            _records.parse_text(message, what="message", optional=True),
            _records.dump_json(details, what="details"), level, _now(),
        )  # fmt: skip
        with self._session.connection() as conn:
            self._check_parents(conn, {pipeline_id}, set())
            self._buffer.logs.append(row)
        self._maybe_flush()

    # ------------------------------------------------------------------ queries

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
            row = _first_dict(
                conn.execute("SELECT * FROM predictions WHERE prediction_id = ?", [prediction_id])
            )
            if row is not None and load_arrays:
                arrays = _first_dict(
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
        return _decode_array_table(table)

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
        sql, params = prediction_query(filters, limit=None, offset=0)
        with self._read() as conn:
            table = conn.sql(sql, params=params).to_arrow_table()
        return _export.write_parquet(table, Path(output_path))

    def replay_chain(
        self, chain_id: str, X: np.ndarray, wavelengths: np.ndarray | None = None
    ) -> np.ndarray:
        """Apply a stored chain to new `X`: transforms in order, then the fold models' mean."""
        from holdall.workspace._replay import replay_chain

        return replay_chain(self, chain_id, X, wavelengths)

    # ------------------------------------------------------------------ deletion and cleanup

    def delete_run(self, run_id: str, delete_artifacts: bool = True) -> int:
        """Delete a run and everything below it; return the number of rows deleted.

        Cascades to pipelines, chains, predictions, arrays and logs in one transaction.
        With `delete_artifacts`, artifacts no longer referenced are deleted too (rows, then
        files after commit); otherwise they stay for `gc_artifacts`.
        """
        self._session.check_writable()
        with self._write() as conn:
            self._require(conn, "runs", "run_id", run_id)
            where = "pipeline_id IN (SELECT pipeline_id FROM pipelines WHERE run_id = ?)"
            deleted, freed = _delete_pipeline_data(
                conn, where, [run_id], with_logs=True, delete_artifacts=delete_artifacts
            )
            deleted += _count(conn.execute("DELETE FROM pipelines WHERE run_id = ?", [run_id]))
            deleted += _count(conn.execute("DELETE FROM runs WHERE run_id = ?", [run_id]))
        self._known_pipelines.clear()
        self._known_chains.clear()
        for relative in freed:
            self._files.remove(relative)
        return deleted

    def delete_prediction(self, prediction_id: str) -> bool:
        """Delete one prediction and its arrays; unknown id raises `KeyNotFoundError`."""
        self._session.check_writable()
        with self._write() as conn:
            self._require(conn, "predictions", "prediction_id", prediction_id)
            conn.execute("DELETE FROM prediction_arrays WHERE prediction_id = ?", [prediction_id])
            conn.execute("DELETE FROM predictions WHERE prediction_id = ?", [prediction_id])
        return True

    def gc_artifacts(self) -> int:
        """Remove unreferenced artifacts; return how many files were removed.

        Removes rows with ``ref_count == 0`` that no chain references, files without a row
        (left by a crash between file and row, or after a delete), and temporary files of
        killed writers. Runs under the write lock, so no writer is mid-way.
        """
        self._session.check_writable()
        with self._write() as conn:
            conn.execute(
                "UPDATE artifacts SET ref_count = r.n FROM (SELECT a, count(*) AS n FROM "
                "(SELECT unnest(artifact_ids) AS a FROM chains) GROUP BY a) r "
                "WHERE artifacts.artifact_id = r.a AND artifacts.ref_count < r.n"
            )
            conn.execute("DELETE FROM artifacts WHERE ref_count <= 0")
            live = {r[0] for r in conn.execute("SELECT artifact_path FROM artifacts").fetchall()}
            removed = sum(
                self._files.remove(rel) for rel in list(self._files.files()) if rel not in live
            )
        return removed

    def vacuum(self) -> None:
        """Shrink ``store.duckdb``: copy the live data into a fresh file and swap it in atomically.

        DuckDB does not return freed blocks to the OS, so the file is rebuilt with
        ``COPY FROM DATABASE`` into a temporary file beside it, then renamed over it.
        """
        self._session.check_writable()
        db_path = self._root / "store.duckdb"
        fresh = db_path.with_name(".store.vacuum.duckdb")
        with self._session.connection() as conn:
            self._flush_into(conn)
            for leftover in (fresh, fresh.with_name(fresh.name + ".wal")):
                leftover.unlink(missing_ok=True)
            conn.execute("CHECKPOINT")
            quoted = str(fresh).replace("'", "''")
            conn.execute(f"ATTACH '{quoted}' AS holdall_fresh")
            try:
                db_name = conn.execute("SELECT current_database()").fetchall()[0]
                conn.execute(
                    f'COPY FROM DATABASE "{db_name[0] if db_name else "store"}" TO holdall_fresh'
                )
            finally:
                conn.execute("DETACH holdall_fresh")
        self._session.replace_file(lambda: os.replace(fresh, db_path))


def _rows_table(names: Sequence[str], rows: list[tuple[Any, ...]]) -> pa.Table:
    """An Arrow table from row tuples, built column by column."""
    return pa.table(
        dict(zip(names, (pa.array(column) for column in zip(*rows, strict=True)), strict=True))
    )


def _first_dict(cursor: duckdb.DuckDBPyConnection) -> dict[str, Any] | None:
    """The first row of an executed statement as a dict (the result is consumed), or None."""
    rows = cursor.fetchall()
    if not rows:
        return None
    return dict(zip([d[0] for d in cursor.description or ()], rows[0], strict=True))


def _count(result: duckdb.DuckDBPyConnection) -> int:
    rows = result.fetchall()
    return int(rows[0][0]) if rows else 0


def _chain_artifact_ids(
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


def _delete_pipeline_data(
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
    deleted = _count(conn.execute(
        f"DELETE FROM prediction_arrays WHERE prediction_id IN (SELECT prediction_id FROM predictions WHERE {where})",
        params,
    ))  # fmt: skip
    deleted += _count(conn.execute(f"DELETE FROM predictions WHERE {where}", params))
    if with_logs:
        deleted += _count(conn.execute(f"DELETE FROM logs WHERE {where}", params))
    released = conn.execute(
        f"SELECT a, count(*) FROM (SELECT unnest(artifact_ids) AS a FROM chains WHERE {where}) GROUP BY a",
        params,
    ).fetchall()
    deleted += _count(conn.execute(f"DELETE FROM chains WHERE {where}", params))
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


def _iter_records(
    records: Iterable[dict[str, Any]] | pa.Table | pl.DataFrame,
) -> Iterator[dict[str, Any]]:
    """Rows of a list of dicts, an Arrow table or a polars frame; list columns become numpy."""
    if isinstance(records, pl.DataFrame):
        records = records.to_arrow()
    if not isinstance(records, pa.Table):
        yield from records
        return
    array_names = [n for n in _records.ARRAY_NAMES if n in records.column_names]
    meta = records.drop_columns(array_names).to_pylist()
    columns = {name: _list_slices(records.column(name)) for name in array_names}
    for i, fields in enumerate(meta):
        fields.update({name: slices[i] for name, slices in columns.items()})
        yield fields


def _list_slices(column: pa.ChunkedArray) -> list[np.ndarray | None]:
    """Zero-copy numpy views of each row of an Arrow list column (None for nulls)."""
    out: list[np.ndarray | None] = []
    for chunk in column.chunks:
        offsets = chunk.offsets.to_numpy()
        values = chunk.values.to_numpy(zero_copy_only=False)
        valid = chunk.is_valid().to_numpy(zero_copy_only=False)
        out += [
            values[offsets[i] : offsets[i + 1]] if valid[i] else None for i in range(len(chunk))
        ]
    return out


def _insert_arrays(conn: duckdb.DuckDBPyConnection, batch: list[_records.PreparedArrays]) -> None:
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


def _decode_array_table(table: pa.Table) -> dict[str, dict[str, np.ndarray | None]]:
    ids = table.column("prediction_id").to_pylist()
    layouts = table.column("layout").to_pylist()
    slices = {name: _list_slices(table.column(name)) for name in _records.ARRAY_NAMES}
    return {
        pid: _records.decode_arrays({"layout": layouts[i], **{n: s[i] for n, s in slices.items()}})
        for i, pid in enumerate(ids)
    }
