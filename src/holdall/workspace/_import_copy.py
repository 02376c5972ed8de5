"""What the importers of both nirs4all layouts share: chains, artifact files, array layouts.

Each function reads a relation holding nirs4all's columns (an attached table, or a batch
registered from SQLite) and inserts into the destination's tables inside the caller's
transaction.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb

from holdall._core.hashing import sha256_bytes
from holdall.errors import CorruptedFileError, IntegrityError
from holdall.workspace import _signing
from holdall.workspace._artifacts import check_relative, parse_content_hash
from holdall.workspace._tables import chain_artifact_ids

__all__ = ["copy_artifacts", "copy_chains", "layout_sql"]


def layout_sql(arrays: Sequence[tuple[str, str, str]]) -> str:
    """A SQL expression building the ``layout`` JSON of a prediction_arrays row.

    `arrays` holds ``(column, dtype expression, shape expression)``; the entry is named
    after the column's last part, and a NULL column has none.
    """
    entries = ", ".join(
        f'CASE WHEN {column} IS NULL THEN NULL ELSE \'"{column.rsplit(".", 1)[-1]}": '
        f"{{\"dtype\": ' || to_json({dtype}) || ', \"shape\": ' || to_json({shape}) || '}}' END"
        for column, dtype, shape in arrays
    )
    return f"('{{' || concat_ws(', ', {entries}) || '}}')::JSON"


def copy_chains(conn: duckdb.DuckDBPyConnection, source: str) -> int:
    """Insert the chains of relation `source` (nirs4all's columns) with their artifact ids."""
    rows = conn.execute(
        "SELECT chain_id, pipeline_id, steps, model_step_idx, model_class, "
        "coalesce(preprocessings, ''), coalesce(fold_strategy, 'per_fold'), fold_artifacts, "
        "shared_artifacts, branch_path, source_index, coalesce(created_at, current_timestamp) "
        f"FROM {source}"
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


def copy_artifacts(
    conn: duckdb.DuckDBPyConnection,
    relation: str,
    source: Path,
    artifacts_dir: Path,
    *,
    sign: bool,
    step: Callable[[str], None],
) -> int:
    """Copy each artifact row of `relation` and its file (``source/artifacts/...``).

    A file that is missing, a link, or whose SHA-256 differs from its row stops the import.
    With `sign`, each file is signed with this user's key. `step` is called per file.
    """
    rows = conn.execute(
        "SELECT artifact_id, artifact_path, content_hash, operator_class, artifact_type, "
        "coalesce(format, 'joblib'), size_bytes, coalesce(ref_count, 1), "
        "coalesce(created_at, current_timestamp), chain_path_hash, input_data_hash, dataset_hash "
        f"FROM {relation} ORDER BY artifact_path"
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
