"""Copy a nirs4all 0.7.x workspace (``store.duckdb`` + ``artifacts/``) into a holdall one.

The source database is attached read-only to the destination's connection, and each table
goes across in one ``INSERT ... SELECT`` (DuckDB moves the rows, Python never sees them),
mapped onto holdall's columns: ``chain_id = ''`` becomes NULL, ``INTEGER[]`` sample indices
become ``BIGINT[]``, each array row gets its layout (0.7.x flattened a 2-D ``y_proba``; its
shape is restored from ``n_samples``), and chains get their list of referenced artifacts.
Artifact files are copied (never moved) and checked against their recorded SHA-256.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb

from holdall._core.hashing import sha256_bytes
from holdall.errors import CorruptedFileError, IntegrityError
from holdall.workspace import _signing
from holdall.workspace._artifacts import check_relative, parse_content_hash
from holdall.workspace._tables import chain_artifact_ids

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
    "a.y_pred, a.y_proba, a.sample_indices::BIGINT[], a.weights, ('{' || concat_ws(', ', "
    + ", ".join(
        f"CASE WHEN a.{name} IS NULL THEN NULL ELSE '\"{name}\": {{\"dtype\": "
        f"\"{'<i8' if name == 'sample_indices' else '<f8'}\", \"shape\": ' || "
        f"to_json({shape}) || '}}' END"
        for name, shape in (
            ("y_true", "[len(a.y_true)]"),
            ("y_pred", "[len(a.y_pred)]"),
            ("y_proba", "CASE WHEN p.n_samples > 0 AND len(a.y_proba) > p.n_samples AND "
             "len(a.y_proba) % p.n_samples = 0 THEN [p.n_samples, len(a.y_proba) // p.n_samples] "
             "ELSE [len(a.y_proba)] END"),
            ("sample_indices", "[len(a.sample_indices)]"),
            ("weights", "[len(a.weights)]"),
        )
    )
    + ") || '}')::JSON FROM src.prediction_arrays a JOIN src.predictions p USING (prediction_id)",
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
    source: Path,
    artifacts_dir: Path,
    *,
    sign: bool,
    step: Callable[[str], None],
) -> dict[str, int]:
    """Copy every table and artifact of the attached ``src`` (checked with `is_nirs4all_07`).

    Runs inside the caller's transaction. Returns the rows copied per table. `step` is
    called after each table and each artifact file (for a progress bar).
    """
    counts: dict[str, int] = {}
    for table in ("runs", "pipelines"):
        counts[table] = len(conn.execute(_COPY[table] + " RETURNING 1").fetchall())
        step(table)
    counts["chains"] = _copy_chains(conn)
    step("chains")
    for table in ("predictions", "prediction_arrays", "logs"):
        counts[table] = len(conn.execute(_COPY[table] + " RETURNING 1").fetchall())
        step(table)
    counts["artifacts"] = _copy_artifacts(conn, source, artifacts_dir, sign=sign, step=step)
    return counts


def _copy_chains(conn: duckdb.DuckDBPyConnection) -> int:
    rows = conn.execute(
        "SELECT chain_id, pipeline_id, steps, model_step_idx, model_class, "
        "coalesce(preprocessings, ''), coalesce(fold_strategy, 'per_fold'), fold_artifacts, "
        "shared_artifacts, branch_path, source_index, coalesce(created_at, current_timestamp) "
        "FROM src.chains"
    ).fetchall()
    for row in rows:
        steps = json.loads(row[2]) if row[2] else []
        fold = json.loads(row[7]) if row[7] else {}
        shared = json.loads(row[8]) if row[8] else {}
        shared_ids = {k: v for k, v in shared.items() if not str(k).startswith("_")}
        referenced = sorted(chain_artifact_ids(steps, fold, shared_ids))
        conn.execute(
            "INSERT INTO chains VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [*row[:11], referenced, row[11]],
        )
    return len(rows)


def _copy_artifacts(
    conn: duckdb.DuckDBPyConnection,
    source: Path,
    artifacts_dir: Path,
    *,
    sign: bool,
    step: Callable[[str], None],
) -> int:
    rows = conn.execute(
        "SELECT artifact_id, artifact_path, content_hash, operator_class, artifact_type, "
        "coalesce(format, 'joblib'), size_bytes, coalesce(ref_count, 1), "
        "coalesce(created_at, current_timestamp), chain_path_hash, input_data_hash, dataset_hash "
        "FROM src.artifacts ORDER BY artifact_path"
    ).fetchall()
    for row in rows:
        relative = check_relative(row[1])
        digest = parse_content_hash(row[2])
        origin = source / "artifacts" / relative
        if not origin.is_file() or origin.is_symlink():
            raise CorruptedFileError(
                f"nirs4all artifact {row[0]!r} is recorded at {origin}, but no file is there; "
                "nothing was imported (restore the file, or run nirs4all's gc_artifacts first)",
                path=str(origin),
            )
        target = artifacts_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(origin, target)
        got = sha256_bytes(target.read_bytes())
        if got != digest:
            raise IntegrityError(
                f"nirs4all artifact {origin} hashes to {got}, its row records {digest}; nothing "
                "was imported",
                path=str(origin),
                expected=digest,
                got=got,
            )
        signature = _signing.sign(digest, row[5]) if sign else None
        conn.execute(
            "INSERT INTO artifacts (artifact_id, artifact_path, content_hash, operator_class, "
            "artifact_type, format, size_bytes, ref_count, created_at, chain_path_hash, "
            "input_data_hash, dataset_hash, signature) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [row[0], relative, digest, *row[3:6], row[6] or target.stat().st_size, *row[7:],
             signature],
        )  # fmt: skip
        step(relative)
    return len(rows)
