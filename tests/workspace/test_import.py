"""`import_workspace` / ``holdall workspace import``: nirs4all 0.7.x workspaces into holdall.

The source workspaces are written by nirs4all 0.7.1 itself (``n4a07_writer.py``): the one in
``fixtures/nirs4all-0.7.1-workspace`` (its ``store.duckdb`` gzipped: DuckDB files are mostly
empty blocks) always, and a fresh one too when nirs4all 0.7.1's environment is built
(``benchmarks/.envs/n4a071``: ``make test`` builds it, as does ``python -m
benchmarks.peer_envs n4a071``). The all-or-nothing and read-only checks also run on a 0.7.x layout created
here from nirs4all's documented DDL.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from holdall.errors import (
    ArchiveExistsError,
    CorruptedFileError,
    IntegrityError,
    KeyNotFoundError,
    SchemaVersionError,
    UnsupportedTypeError,
    UntrustedArtifactError,
)
from holdall.workspace import WorkspaceStore, import_workspace, replay_chain
from holdall.workspace._cli import add_workspace_parser
from tests.workspace.conftest import REPO, nirs4all_env, unpack_workspace

NIRS4ALL_071, needs_nirs4all = nirs4all_env("n4a071")
WRITER = Path(__file__).with_name("n4a07_writer.py")

_TABLES = ("runs", "pipelines", "chains", "predictions", "prediction_arrays", "artifacts", "logs")


def _tree_digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every file below `folder` (and the names present): what must not change."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


FIXTURE = Path(__file__).with_name("fixtures") / "nirs4all-0.7.1-workspace"


@pytest.fixture(scope="module", params=["checked-in", pytest.param("fresh", marks=needs_nirs4all)])
def nirs4all_workspace(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """A workspace, a bundle and nirs4all's own replay, written by nirs4all 0.7.1."""
    root = tmp_path_factory.mktemp("n4a")
    if request.param == "checked-in":
        shutil.copytree(FIXTURE, root, dirs_exist_ok=True)
        return unpack_workspace(root / "ws"), root
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # the tests' models, not holdall
    done = subprocess.run(
        [str(NIRS4ALL_071), str(WRITER), str(root / "ws"), str(root)],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return root / "ws", root


def _source_rows(db: Path, table: str) -> list[dict[str, Any]]:
    conn = duckdb.connect(str(db), read_only=True)
    try:
        cursor = conn.execute(f"SELECT * FROM {table}")
        names = [d[0] for d in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    finally:
        conn.close()


def test_a_nirs4all_workspace_comes_across_record_by_record(
    nirs4all_workspace: tuple[Path, Path], tmp_path: Path
) -> None:
    source, out = nirs4all_workspace
    before = _tree_digest(source)
    report = import_workspace(source, tmp_path / "holdall", trust=True)
    assert _tree_digest(source) == before  # the source is never modified
    ids = json.loads((out / "ids.json").read_text())
    db = tmp_path / "source-copy.duckdb"
    db.write_bytes((source / "store.duckdb").read_bytes())  # read the source through a copy
    with WorkspaceStore(tmp_path / "holdall", read_only=True) as store:
        for table in _TABLES:
            assert report.rows[table] == len(_source_rows(db, table))
        for row in _source_rows(db, "runs"):
            got = store.get_run(row["run_id"])
            assert got is not None
            assert (got["name"], got["status"], got["error"]) == (
                row["name"], row["status"], row["error"],
            )  # fmt: skip
            assert got["config"] == json.loads(row["config"])
        for row in _source_rows(db, "pipelines"):
            got = store.get_pipeline(row["pipeline_id"])
            assert got is not None
            for name in ("run_id", "name", "dataset_name", "status", "best_val", "error"):
                assert got[name] == row[name], name
        for row in _source_rows(db, "chains"):
            got = store.get_chain(row["chain_id"])
            assert got is not None
            assert got["fold_artifacts"] == json.loads(row["fold_artifacts"])
            assert got["steps"] == json.loads(row["steps"])
        arrays = {r["prediction_id"]: r for r in _source_rows(db, "prediction_arrays")}
        for row in _source_rows(db, "predictions"):
            got = store.get_prediction(row["prediction_id"], load_arrays=True)
            assert got is not None
            for name in ("pipeline_id", "chain_id", "fold_id", "partition", "val_score",
                         "test_score", "model_name", "branch_id", "refit_context"):  # fmt: skip
                assert got[name] == row[name], name
            source_arrays = arrays[row["prediction_id"]]
            np.testing.assert_array_equal(got["y_true"], source_arrays["y_true"])
            np.testing.assert_array_equal(got["y_pred"], source_arrays["y_pred"])
            if source_arrays["y_proba"] is not None:  # 0.7.1 flattened it; the shape is back
                assert got["y_proba"].shape == (row["n_samples"], 2)
                np.testing.assert_array_equal(got["y_proba"].ravel(), source_arrays["y_proba"])
        assert sorted(store.query_predictions()["prediction_id"]) == sorted(ids["predictions"])
        assert store.get_pipeline_log(ids["pipelines"][0]).height == 2
        X = np.load(out / "X.npy")
        np.testing.assert_allclose(
            store.replay_chain(ids["chains"][0], X), np.load(out / "replay.npy")
        )  # the predictions nirs4all's own replay gives


def test_a_nirs4all_bundle_says_how_to_replay_it(nirs4all_workspace: tuple[Path, Path]) -> None:
    _source, out = nirs4all_workspace
    ids = json.loads((out / "ids.json").read_text())
    with pytest.raises(UnsupportedTypeError, match=r"nirs4all 0\.7 chain bundle") as info:
        replay_chain(out / "bundle.n4a", X=np.load(out / "X.npy"))
    assert ids["chains"][0] in str(info.value)
    assert "holdall workspace import" in str(info.value)


def test_imported_pickles_need_trust_unless_the_import_was_trusted(
    nirs4all_workspace: tuple[Path, Path], tmp_path: Path
) -> None:
    source, out = nirs4all_workspace
    import_workspace(source, tmp_path / "plain")
    ids = json.loads((out / "ids.json").read_text())
    with WorkspaceStore(tmp_path / "plain") as store:
        with pytest.raises(UntrustedArtifactError):
            store.load_artifact(ids["artifacts"][0])
        X = np.load(out / "X.npy")
        np.testing.assert_allclose(
            store.replay_chain(ids["chains"][0], X, trust=True), np.load(out / "replay.npy")
        )
        # The imported workspace is a working holdall workspace.
        run_id = store.begin_run("after-import", {}, [])
        assert store.delete_run(run_id) == 1
        assert store.gc_artifacts() == 0


def test_the_command_line_import(nirs4all_workspace: tuple[Path, Path], tmp_path: Path) -> None:
    source, _out = nirs4all_workspace
    parser = argparse.ArgumentParser(prog="holdall")
    add_workspace_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["workspace", "import", str(source), str(tmp_path / "cli")])
    assert args.run(args) == 0
    with WorkspaceStore(tmp_path / "cli", read_only=True) as store:
        assert store.list_runs().height == 2


# ---------------------------------------------------------------- without nirs4all


def _minimal_07(folder: Path, *, artifact: bytes | None = b"payload") -> None:
    """A 0.7.x workspace by nirs4all's schema (its DDL, restated), one record per table."""
    (folder / "artifacts" / "ab").mkdir(parents=True)
    conn = duckdb.connect(str(folder / "store.duckdb"))
    for table, columns in {
        "runs": "run_id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, config JSON, datasets JSON, "
        "status VARCHAR DEFAULT 'running', created_at TIMESTAMP DEFAULT current_timestamp, "
        "completed_at TIMESTAMP, summary JSON, error VARCHAR",
        "pipelines": "pipeline_id VARCHAR PRIMARY KEY, run_id VARCHAR NOT NULL, name VARCHAR, "
        "expanded_config JSON, generator_choices JSON, dataset_name VARCHAR NOT NULL, "
        "dataset_hash VARCHAR, status VARCHAR DEFAULT 'running', created_at TIMESTAMP DEFAULT "
        "current_timestamp, completed_at TIMESTAMP, best_val DOUBLE, best_test DOUBLE, "
        "metric VARCHAR, duration_ms INTEGER, error VARCHAR",
        "chains": "chain_id VARCHAR PRIMARY KEY, pipeline_id VARCHAR NOT NULL, steps JSON, "
        "model_step_idx INTEGER, model_class VARCHAR, preprocessings VARCHAR, fold_strategy "
        "VARCHAR, fold_artifacts JSON, shared_artifacts JSON, branch_path JSON, source_index "
        "INTEGER, created_at TIMESTAMP DEFAULT current_timestamp",
        "predictions": "prediction_id VARCHAR PRIMARY KEY, pipeline_id VARCHAR, chain_id VARCHAR, "
        "dataset_name VARCHAR, model_name VARCHAR, model_class VARCHAR, fold_id VARCHAR, "
        "partition VARCHAR, val_score DOUBLE, test_score DOUBLE, train_score DOUBLE, metric "
        "VARCHAR, task_type VARCHAR, n_samples INTEGER, n_features INTEGER, scores JSON, "
        "best_params JSON, preprocessings VARCHAR, branch_id INTEGER, branch_name VARCHAR, "
        "exclusion_count INTEGER, exclusion_rate DOUBLE, refit_context VARCHAR, created_at "
        "TIMESTAMP DEFAULT current_timestamp",
        "prediction_arrays": "prediction_id VARCHAR PRIMARY KEY, y_true DOUBLE[], y_pred DOUBLE[], "
        "y_proba DOUBLE[], sample_indices INTEGER[], weights DOUBLE[]",
        "artifacts": "artifact_id VARCHAR PRIMARY KEY, artifact_path VARCHAR, content_hash "
        "VARCHAR, operator_class VARCHAR, artifact_type VARCHAR, format VARCHAR, size_bytes "
        "BIGINT, ref_count INTEGER, chain_path_hash VARCHAR, input_data_hash VARCHAR, "
        "dataset_hash VARCHAR, created_at TIMESTAMP DEFAULT current_timestamp",
        "logs": "log_id VARCHAR PRIMARY KEY, pipeline_id VARCHAR, step_idx INTEGER, operator_class "
        "VARCHAR, event VARCHAR, duration_ms INTEGER, message VARCHAR, details JSON, level "
        "VARCHAR DEFAULT 'info', created_at TIMESTAMP DEFAULT current_timestamp",
    }.items():
        conn.execute(f"CREATE TABLE {table} ({columns})")
    digest = hashlib.sha256(b"payload").hexdigest()
    conn.execute("INSERT INTO runs (run_id, name) VALUES ('r', 'run')")
    conn.execute("INSERT INTO pipelines (pipeline_id, run_id, name, dataset_name) "
                 "VALUES ('p', 'r', 'pipe', 'wheat')")  # fmt: skip
    conn.execute(
        "INSERT INTO chains (chain_id, pipeline_id, steps, model_step_idx, model_class, "
        "fold_artifacts, shared_artifacts) VALUES ('c', 'p', '[]', 0, 'M', "
        "'{\"fold_0\": \"a1\"}', '{}')"
    )
    conn.execute(
        "INSERT INTO predictions (prediction_id, pipeline_id, chain_id, dataset_name, model_name, "
        "model_class, fold_id, partition, metric, task_type, n_samples) "
        "VALUES ('x', 'p', '', 'wheat', 'm', 'M', '0', 'val', 'rmse', 'regression', 2)"
    )
    conn.execute("INSERT INTO prediction_arrays VALUES "
                 "('x', [1.0, 2.0], [1.5, 2.5], [0.1, 0.9, 0.2, 0.8], [4, 5], NULL)")  # fmt: skip
    conn.execute("INSERT INTO artifacts (artifact_id, artifact_path, content_hash, format, "
                 f"ref_count) VALUES ('a1', 'ab/{digest}.pkl', 'sha256:{digest}', 'pickle', 1)")  # fmt: skip
    conn.execute("INSERT INTO logs (log_id, pipeline_id, step_idx, event) "
                 "VALUES ('l', 'p', 0, 'fit')")  # fmt: skip
    conn.close()
    if artifact is not None:
        (folder / "artifacts" / "ab" / f"{digest}.pkl").write_bytes(artifact)


def test_the_0_7_layout_imports_and_the_source_is_untouched(tmp_path: Path) -> None:
    _minimal_07(tmp_path / "src")
    before = _tree_digest(tmp_path / "src")
    report = import_workspace(tmp_path / "src", tmp_path / "dst")
    assert _tree_digest(tmp_path / "src") == before
    assert report.rows == {t: 1 for t in _TABLES}
    with WorkspaceStore(tmp_path / "dst", read_only=True) as store:
        row = store.get_prediction("x", load_arrays=True)
        assert row is not None
        assert row["chain_id"] is None  # nirs4all's "" for no chain
        assert row["y_proba"].shape == (2, 2)
        assert row["sample_indices"].dtype == np.int64
        assert store.get_artifact_path("a1").read_bytes() == b"payload"


@pytest.mark.parametrize("damage", ["missing", "altered"])
def test_a_bad_artifact_imports_nothing(tmp_path: Path, damage: str) -> None:
    _minimal_07(tmp_path / "src", artifact=None if damage == "missing" else b"altered")
    with pytest.raises(CorruptedFileError if damage == "missing" else IntegrityError):
        import_workspace(tmp_path / "src", tmp_path / "dst")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no destination, no leftover


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(KeyNotFoundError):
        import_workspace(tmp_path / "nothing", tmp_path / "dst")
    _minimal_07(tmp_path / "src")
    (tmp_path / "taken").mkdir()
    with pytest.raises(ArchiveExistsError):
        import_workspace(tmp_path / "src", tmp_path / "taken")
    with WorkspaceStore(tmp_path / "holdall") as store:
        store.begin_run("r", {}, [])
    with pytest.raises(SchemaVersionError, match=r"not a nirs4all 0\.7"):
        import_workspace(tmp_path / "holdall", tmp_path / "dst")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "store.duckdb").write_bytes(b"not a database")
    with pytest.raises(SchemaVersionError):
        import_workspace(tmp_path / "junk", tmp_path / "dst")
    assert not (tmp_path / "dst").exists()


def test_a_file_with_the_0_7_tables_but_other_columns_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    with duckdb.connect(str(tmp_path / "src" / "store.duckdb")) as conn:
        for table in ("runs", "pipelines", "chains", "predictions", "prediction_arrays",
                      "artifacts", "logs"):  # fmt: skip
            conn.execute(f"CREATE TABLE {table} (x INTEGER)")
    # the copy fails inside its transaction: the error says why, not "transaction is aborted"
    with pytest.raises(
        SchemaVersionError, match=r"tables of a nirs4all 0\.7\.x .* not their columns"
    ):
        import_workspace(tmp_path / "src", tmp_path / "dst")
    assert not (tmp_path / "dst").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
