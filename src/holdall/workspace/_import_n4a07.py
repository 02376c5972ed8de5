"""Copy a nirs4all 0.7.x workspace (``store.duckdb`` + ``artifacts/``) into a holdall one.

The source database is attached read-only to the destination's connection, and each table
goes across in one ``INSERT ... SELECT`` (DuckDB moves the rows, Python never sees them),
mapped onto holdall's columns: ``chain_id = ''`` becomes NULL, ``INTEGER[]`` sample indices
become ``BIGINT[]``, each array row gets its layout (0.7.x flattened a 2-D ``y_proba``; its
shape is restored from ``n_samples``), and chains get their list of referenced artifacts.
Artifact files are copied (never moved) and checked against their recorded SHA-256.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb

from holdall.errors import SchemaVersionError
from holdall.workspace._import_copy import copy_artifacts, copy_chains, layout_sql

__all__ = ["TABLES", "copy_workspace", "is_nirs4all_07"]

TABLES = ("runs", "pipelines", "chains", "predictions", "prediction_arrays", "artifacts", "logs")
"""The tables of a 0.7.x ``store.duckdb``, in the order they are copied (parents first)."""

_COPY = {
    "runs": "INSERT INTO runs SELECT run_id, name, config, datasets, coalesce(status, 'running'), "
    "coalesce(created_at, current_timestamp), completed_at, summary, error FROM src.runs",
    "pipelines": "INSERT INTO pipelines SELECT pipeline_id, run_id, name, expanded_config, "
    "generator_choices, dataset_name, dataset_hash, coalesce(status, 'running'), "
    "coalesce(created_at, current_timestamp), completed_at, best_val, best_test, metric, "
    "duration_ms, error FROM src.pipelines",
    "predictions": "INSERT INTO predictions BY NAME SELECT prediction_id, pipeline_id, "
    "nullif(chain_id, '') AS chain_id, dataset_name, model_name, model_class, fold_id, partition, "
    "val_score, test_score, train_score, metric, task_type, coalesce(n_samples, 0) AS n_samples, "
    "coalesce(n_features, 0) AS n_features, scores, best_params, preprocessings, branch_id, "
    "branch_name, coalesce(exclusion_count, 0) AS exclusion_count, "
    "coalesce(exclusion_rate, 0.0) AS exclusion_rate, refit_context, "
    "coalesce(created_at, current_timestamp) AS created_at FROM src.predictions",
    "prediction_arrays": "INSERT INTO prediction_arrays SELECT a.prediction_id, a.y_true, "
    "a.y_pred, a.y_proba, a.sample_indices::BIGINT[], a.weights, "
    + layout_sql([
        ("a.y_true", "'<f8'", "[len(a.y_true)]"),
        ("a.y_pred", "'<f8'", "[len(a.y_pred)]"),
        ("a.y_proba", "'<f8'", "CASE WHEN p.n_samples > 0 AND len(a.y_proba) > p.n_samples AND "
         "len(a.y_proba) % p.n_samples = 0 THEN [p.n_samples, len(a.y_proba) // p.n_samples] "
         "ELSE [len(a.y_proba)] END"),
        ("a.sample_indices", "'<i8'", "[len(a.sample_indices)]"),
        ("a.weights", "'<f8'", "[len(a.weights)]"),
    ])
    + " FROM src.prediction_arrays a JOIN src.predictions p USING (prediction_id)",
    "logs": "INSERT INTO logs SELECT log_id, pipeline_id, step_idx, operator_class, event, "
    "duration_ms, message, details, coalesce(level, 'info'), "
    "coalesce(created_at, current_timestamp) FROM src.logs",
}  # fmt: skip


def is_nirs4all_07(conn: duckdb.DuckDBPyConnection) -> bool:
    """True when the attached ``src`` database has the seven tables of nirs4all 0.7.x."""
    names = {
        r[0]
        for r in conn.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'src'"
        ).fetchall()
    }
    return set(TABLES) <= names and "holdall_schema" not in names


def copy_workspace(
    conn: duckdb.DuckDBPyConnection,
    db: Path,
    artifacts_dir: Path,
    *,
    sign: bool,
    step: Callable[[str], None],
) -> dict[str, int]:
    """Copy every table and artifact of ``src``, the attached `db` (see `is_nirs4all_07`).

    Runs inside the caller's transaction. Returns the rows copied per table. `step` is
    called after each table and each artifact file (for a progress bar).

    Raises
    ------
    SchemaVersionError
        When the tables lack the columns nirs4all 0.7.x writes.
    """
    try:
        return _copy_workspace(conn, db.parent, artifacts_dir, sign=sign, step=step)
    except (duckdb.BinderException, duckdb.CatalogException) as err:
        raise SchemaVersionError(
            f"{db} has the tables of a nirs4all 0.7.x workspace but not their columns "
            f"({err}); nothing was imported",
            path=str(db),
        ) from err


def _copy_workspace(
    conn: duckdb.DuckDBPyConnection,
    source: Path,
    artifacts_dir: Path,
    *,
    sign: bool,
    step: Callable[[str], None],
) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in ("runs", "pipelines"):
        counts[table] = len(conn.execute(_COPY[table] + " RETURNING 1").fetchall())
        step(table)
    counts["chains"] = copy_chains(conn, "src.chains")
    step("chains")
    for table in ("predictions", "prediction_arrays", "logs"):
        counts[table] = len(conn.execute(_COPY[table] + " RETURNING 1").fetchall())
        step(table)
    counts["artifacts"] = copy_artifacts(
        conn, "src.artifacts", source, artifacts_dir, sign=sign, step=step
    )
    return counts
