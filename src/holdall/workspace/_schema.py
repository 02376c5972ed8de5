"""The workspace database schema: DDL, version stamp, and the migration runner.

The schema version lives in the one-row table ``holdall_schema``. Opening a file whose
version differs from `SCHEMA_VERSION` never alters it: the store raises
`SchemaVersionError` with the version found, the version expected and how to migrate.
`migrate` applies the registered steps (`MIGRATIONS`) in one transaction, so a failed
migration leaves the file as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb

from holdall._core import duckdb_files
from holdall.errors import SchemaVersionError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "TABLES", "ensure_schema", "migrate", "read_version"]

SCHEMA_VERSION = 2
"""Version of the schema this holdall writes. Bump it, and add a `MIGRATIONS` step, on change."""

TABLES = ("runs", "pipelines", "chains", "predictions", "prediction_arrays", "artifacts", "logs")
"""The seven tables of the seed, in dependency order (parents first)."""


def _to_version_2(conn: duckdb.DuckDBPyConnection) -> None:
    """Version 1 -> 2: artifacts gain ``signature`` (NULL: unsigned, loading needs trust)
    and nirs4all's cache key (``chain_path_hash``, ``input_data_hash``, ``dataset_hash``);
    predictions gain nirs4all's ``refit_context`` (NULL: a cross-validation entry)."""
    for column in ("signature", "chain_path_hash", "input_data_hash", "dataset_hash"):
        conn.execute(f"ALTER TABLE artifacts ADD COLUMN {column} VARCHAR")
    conn.execute("ALTER TABLE predictions ADD COLUMN refit_context VARCHAR")


MIGRATIONS: dict[int, Callable[[duckdb.DuckDBPyConnection], None]] = {1: _to_version_2}
"""``{from_version: step}``: each step upgrades a file from `from_version` to the next one."""

_DDL = """
CREATE TABLE holdall_schema (version INTEGER NOT NULL, created_at TIMESTAMP NOT NULL);
CREATE TABLE runs (
    run_id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, config JSON, datasets JSON,
    status VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL, completed_at TIMESTAMP,
    summary JSON, error VARCHAR
);
CREATE TABLE pipelines (
    pipeline_id VARCHAR PRIMARY KEY, run_id VARCHAR NOT NULL, name VARCHAR NOT NULL,
    expanded_config JSON, generator_choices JSON, dataset_name VARCHAR NOT NULL,
    dataset_hash VARCHAR, status VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL,
    completed_at TIMESTAMP, best_val DOUBLE, best_test DOUBLE, metric VARCHAR,
    duration_ms BIGINT, error VARCHAR
);
CREATE TABLE chains (
    chain_id VARCHAR PRIMARY KEY, pipeline_id VARCHAR NOT NULL, steps JSON NOT NULL,
    model_step_idx INTEGER NOT NULL, model_class VARCHAR NOT NULL, preprocessings VARCHAR,
    fold_strategy VARCHAR, fold_artifacts JSON, shared_artifacts JSON, branch_path JSON,
    source_index INTEGER, artifact_ids VARCHAR[] NOT NULL, created_at TIMESTAMP NOT NULL
);
CREATE TABLE predictions (
    prediction_id VARCHAR PRIMARY KEY, pipeline_id VARCHAR NOT NULL, chain_id VARCHAR,
    dataset_name VARCHAR NOT NULL, model_name VARCHAR NOT NULL, model_class VARCHAR NOT NULL,
    fold_id VARCHAR NOT NULL, partition VARCHAR NOT NULL, val_score DOUBLE,
    test_score DOUBLE, train_score DOUBLE, metric VARCHAR NOT NULL, task_type VARCHAR NOT NULL,
    n_samples INTEGER NOT NULL, n_features INTEGER NOT NULL, scores JSON, best_params JSON,
    preprocessings VARCHAR, branch_id INTEGER, branch_name VARCHAR,
    exclusion_count INTEGER NOT NULL, exclusion_rate DOUBLE NOT NULL,
    created_at TIMESTAMP NOT NULL, refit_context VARCHAR
);
CREATE TABLE prediction_arrays (
    prediction_id VARCHAR PRIMARY KEY, y_true DOUBLE[], y_pred DOUBLE[], y_proba DOUBLE[],
    sample_indices BIGINT[], weights DOUBLE[], layout JSON NOT NULL
);
CREATE TABLE artifacts (
    artifact_id VARCHAR PRIMARY KEY, artifact_path VARCHAR NOT NULL,
    content_hash VARCHAR NOT NULL, operator_class VARCHAR, artifact_type VARCHAR,
    format VARCHAR NOT NULL, size_bytes BIGINT NOT NULL, ref_count INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL, signature VARCHAR, chain_path_hash VARCHAR,
    input_data_hash VARCHAR, dataset_hash VARCHAR
);
CREATE TABLE logs (
    log_id VARCHAR NOT NULL, pipeline_id VARCHAR NOT NULL, step_idx INTEGER NOT NULL,
    operator_class VARCHAR, event VARCHAR NOT NULL, duration_ms BIGINT, message VARCHAR,
    details JSON, level VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL
);
CREATE INDEX idx_pipelines_run ON pipelines(run_id);
CREATE INDEX idx_chains_pipeline ON chains(pipeline_id);
CREATE INDEX idx_predictions_pipeline ON predictions(pipeline_id);
CREATE INDEX idx_logs_pipeline ON logs(pipeline_id);
"""


def _is_empty(conn: duckdb.DuckDBPyConnection) -> bool:
    return not conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()


def read_version(conn: duckdb.DuckDBPyConnection) -> int | None:
    """The version stamped in the file, or None for a file holdall did not stamp."""
    if not conn.execute(
        "SELECT 1 FROM duckdb_tables() WHERE table_name = 'holdall_schema'"
    ).fetchall():
        return None
    rows = conn.execute("SELECT max(version) FROM holdall_schema").fetchall()
    return None if not rows or rows[0][0] is None else int(rows[0][0])


def _mismatch(path: Path, found: int | None) -> SchemaVersionError:
    if found is None:
        return SchemaVersionError(
            f"{path} is a DuckDB file without a holdall schema version (for example a "
            f"nirs4all store.duckdb); holdall expects schema version {SCHEMA_VERSION}. "
            "For a nirs4all 0.7.x workspace, copy it into a new holdall workspace with "
            f"`holdall workspace import {path.parent} NEW_FOLDER` (import_workspace); "
            "otherwise open it with the tool that wrote it, or start a new workspace.",
            path=str(path),
            expected=SCHEMA_VERSION,
            got=None,
        )
    if found > SCHEMA_VERSION:
        how = "upgrade holdall to a release that knows this version"
    else:
        how = f"run WorkspaceStore.migrate({str(path.parent)!r}) (or `holdall workspace PATH migrate`)"
    return SchemaVersionError(
        f"{path} has workspace schema version {found}, this holdall expects {SCHEMA_VERSION}; "
        f"nothing was changed. To use it, {how}.",
        path=str(path),
        expected=SCHEMA_VERSION,
        got=found,
    )


def ensure_schema(conn: duckdb.DuckDBPyConnection, path: Path, *, writable: bool) -> None:
    """Create the schema in an empty file, or check the version of an existing one.

    Raises
    ------
    SchemaVersionError
        When the file has another version (or none): it is reported, never altered.
    """
    if _is_empty(conn):
        if writable:
            _create(conn)
        return  # an empty file opened read-only: queries report missing tables
    found = read_version(conn)
    if found != SCHEMA_VERSION:
        raise _mismatch(path, found)


def _create(conn: duckdb.DuckDBPyConnection) -> None:
    """Create every table and stamp the version, in one transaction."""
    with duckdb_files.transaction(conn):
        conn.execute(_DDL)
        conn.execute("INSERT INTO holdall_schema VALUES (?, current_timestamp)", [SCHEMA_VERSION])


def migrate(conn: duckdb.DuckDBPyConnection, path: Path) -> int:
    """Upgrade the file to `SCHEMA_VERSION` in one transaction; return the version found.

    Raises
    ------
    SchemaVersionError
        When the file is newer than this holdall, has no version, or no migration path exists.
    """
    found = read_version(conn)
    if found is None or found > SCHEMA_VERSION:
        raise _mismatch(path, found)
    if found == SCHEMA_VERSION:
        return found
    missing = [v for v in range(found, SCHEMA_VERSION) if v not in MIGRATIONS]
    if missing:
        raise SchemaVersionError(
            f"{path} has workspace schema version {found} and this holdall has no migration "
            f"from version {missing[0]}; expected {SCHEMA_VERSION}. Nothing was changed.",
            path=str(path),
            expected=SCHEMA_VERSION,
            got=found,
        )
    with duckdb_files.transaction(conn):
        for version in range(found, SCHEMA_VERSION):
            MIGRATIONS[version](conn)
        conn.execute("UPDATE holdall_schema SET version = ?", [SCHEMA_VERSION])
    return found
