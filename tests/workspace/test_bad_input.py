"""Bad input gets a clear holdall error and leaves nothing half-written."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from holdall.errors import (
    ClosedStorageError,
    ClosedWorkspaceError,
    CorruptedFileError,
    InvalidKeyError,
    InvalidValueError,
    KeyNotFoundError,
    ReadOnlyStorageError,
    SchemaVersionError,
)
from holdall.workspace import PipelineLibrary, WorkspaceStore, _schema
from tests.workspace.conftest import Trained, prediction_fields


@pytest.mark.parametrize("score", ["val_score", "test_score", "train_score"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_scores_are_refused(
    store: WorkspaceStore, trained: Trained, score: str, bad: float
) -> None:
    with pytest.raises(InvalidValueError) as info:
        store.save_prediction(**prediction_fields(trained.pipeline_id, None, **{score: bad}))
    assert info.value.key == score
    assert store.query_predictions().height == 0


def test_nan_inside_scores_dict_and_pipeline_scores(
    store: WorkspaceStore, trained: Trained
) -> None:
    with pytest.raises(InvalidValueError):
        store.save_prediction(
            **prediction_fields(trained.pipeline_id, None, scores={"val": {"r2": math.nan}})
        )
    with pytest.raises(InvalidValueError):
        store.complete_pipeline(trained.pipeline_id, math.nan, 0.1, "rmse", 10)
    pipeline = store.get_pipeline(trained.pipeline_id)
    assert pipeline is not None
    assert pipeline["status"] == "running"


@pytest.mark.parametrize(
    ("arrays", "key"),
    [
        ({"y_true": np.zeros(3), "y_pred": np.zeros(4)}, "y_true"),
        ({"y_true": np.zeros(4), "y_pred": np.zeros(5)}, "y_pred"),
        ({"y_true": np.zeros(4), "y_pred": np.zeros(4), "y_proba": np.zeros((2, 2))}, "y_proba"),
        ({"y_true": np.array(["a", "b", "c", "d"]), "y_pred": np.zeros(4)}, "y_true"),
        ({"y_true": np.zeros(4, dtype=complex), "y_pred": np.zeros(4)}, "y_true"),
        (
            {"y_true": np.zeros(4), "y_pred": np.zeros(4), "sample_indices": np.zeros(4)},
            "sample_indices",
        ),
        ({"y_true": np.full(4, 2**60), "y_pred": np.zeros(4)}, "y_true"),
        ({"y_true": np.float64(1.0), "y_pred": np.zeros(4)}, "y_true"),
    ],
)
def test_bad_arrays_are_refused_and_nothing_is_written(
    store: WorkspaceStore, trained: Trained, arrays: dict[str, Any], key: str
) -> None:
    pid = store.save_prediction(**prediction_fields(trained.pipeline_id, None))
    with pytest.raises(InvalidValueError) as info:
        store.save_prediction_arrays(pid, **arrays)
    assert info.value.key == key
    assert store.load_prediction_arrays([pid]) == {}
    with pytest.raises(InvalidValueError):
        store.save_predictions([{**prediction_fields(trained.pipeline_id, None), **arrays}])
    assert store.query_predictions().height == 1


def test_bulk_save_is_all_or_nothing(store: WorkspaceStore, trained: Trained) -> None:
    good = prediction_fields(trained.pipeline_id, None)
    with pytest.raises(InvalidValueError):
        store.save_predictions([good, {**good, "val_score": math.nan}])
    with pytest.raises(KeyNotFoundError):
        store.save_predictions([good, prediction_fields("no-such-pipeline", None)])
    with pytest.raises(InvalidValueError):
        store.save_predictions([{"pipeline_id": trained.pipeline_id}])
    assert store.query_predictions().height == 0


@pytest.mark.parametrize("name", ["a/b", "..", "a\\b", "", "x\x00y", "/abs"])
def test_names_with_path_separators_are_refused(
    store: WorkspaceStore, tmp_path: Path, name: str
) -> None:
    with pytest.raises(InvalidKeyError):
        store.begin_run(name, {}, [])
    run_id = store.begin_run("ok", {}, [])
    with pytest.raises(InvalidKeyError):
        store.begin_pipeline(run_id, name, {}, [], "wheat", "h")
    with pytest.raises(InvalidKeyError):
        store.begin_pipeline(run_id, "p", {}, [], name, "h")
    with pytest.raises(InvalidKeyError):
        PipelineLibrary(tmp_path).save_template({}, name)
    with pytest.raises(InvalidKeyError):
        PipelineLibrary(tmp_path).save_template({}, "t", category=name)
    assert store.list_pipelines().height == 0


class _Splitter:
    def __str__(self) -> str:
        return "<FullTrainFoldSplitter>"


def test_values_json_cannot_hold_are_stored_as_nirs4all_stores_them(store: WorkspaceStore) -> None:
    run_id = store.begin_run("r", {"arr": np.arange(2), "n": np.int64(3), "cv": _Splitter()}, [])
    run = store.get_run(run_id)
    assert run is not None
    assert run["config"] == {"arr": [0, 1], "n": 3, "cv": "<FullTrainFoldSplitter>"}  # str()
    with pytest.raises(InvalidValueError, match="NaN"):
        store.begin_run("r", {"score": float("nan")}, [])


def test_unknown_ids_on_getters_return_none(store: WorkspaceStore) -> None:
    assert store.get_run("x") is None
    assert store.get_pipeline("x") is None
    assert store.get_chain("x") is None
    assert store.get_prediction("x") is None
    assert store.get_prediction("x", load_arrays=True) is None


def test_unknown_ids_on_writes_and_deletes_raise(store: WorkspaceStore, trained: Trained) -> None:
    calls = [
        lambda: store.complete_run("x", {}),
        lambda: store.fail_run("x", "e"),
        lambda: store.begin_pipeline("x", "p", {}, [], "wheat", "h"),
        lambda: store.complete_pipeline("x", 0.1, 0.1, "rmse", 1),
        lambda: store.fail_pipeline("x", "e"),
        lambda: store.save_chain("x", [], 0, "M", "", "per_fold", {}, {}),
        lambda: store.save_prediction(**prediction_fields("x", None)),
        lambda: store.save_prediction(**prediction_fields(trained.pipeline_id, "no-chain")),
        lambda: store.save_prediction_arrays("x", np.zeros(4), np.zeros(4)),
        lambda: store.log_step("x", 0, "op", "fit"),
        lambda: store.delete_run("x"),
        lambda: store.export_chain("x", store.workspace_path / "out"),
        lambda: store.export_pipeline_config("x", store.workspace_path / "out"),
        lambda: store.export_run("x", store.workspace_path / "out"),
        lambda: store.replay_chain("x", np.zeros((1, 3))),
    ]
    for call in calls:
        with pytest.raises(KeyNotFoundError):
            call()
    assert store.delete_prediction("x") is False  # the seed's -> bool, as nirs4all returns


def test_delete_prediction_says_whether_it_deleted(store: WorkspaceStore, trained: Trained) -> None:
    pid = store.save_prediction(**prediction_fields(trained.pipeline_id, trained.chain_id))
    store.save_prediction_arrays(pid, np.zeros(4), np.zeros(4))
    assert store.delete_prediction(pid) is True
    assert store.get_prediction(pid, load_arrays=True) is None
    assert store.delete_prediction(pid) is False


def test_bad_query_arguments(store: WorkspaceStore) -> None:
    with pytest.raises(InvalidValueError):
        store.top_predictions(3, metric="val_score; DROP TABLE runs")
    with pytest.raises(InvalidValueError):
        store.top_predictions(3, group_by="nope")
    with pytest.raises(InvalidValueError):
        store.query_predictions(limit=-1)
    with pytest.raises(InvalidValueError):
        store.export_predictions_parquet(store.workspace_path / "x.parquet", colour="red")
    with pytest.raises(InvalidValueError):
        store.log_step("x", 0, "op", "fit", level="loud")
    assert store.query_predictions(dataset_name="'; DROP TABLE runs; --").height == 0
    assert store.list_runs().height == 0


def test_closed_store_refuses_everything(tmp_path: Path) -> None:
    store = WorkspaceStore(tmp_path)
    run_id = store.begin_run("r", {}, [])
    store.close()
    store.close()  # idempotent
    # Both a ValueError (like I/O on a closed file) and a RuntimeError (what nirs4all raised).
    for call in (lambda: store.get_run(run_id), lambda: store.begin_run("r2", {}, []),
                 store.flush, lambda: store.delete_prediction("x")):  # fmt: skip
        with pytest.raises(ClosedWorkspaceError) as info:
            call()
        assert isinstance(info.value, ClosedStorageError)
        assert isinstance(info.value, ValueError)
        assert isinstance(info.value, RuntimeError)
    assert "closed" in repr(store)


def test_read_only_store_refuses_writes(tmp_path: Path) -> None:
    with WorkspaceStore(tmp_path) as store:
        trained = Trained(store)
    with WorkspaceStore(tmp_path, read_only=True) as reader:
        writes = [
            lambda: reader.begin_run("r", {}, []),
            lambda: reader.save_prediction(**prediction_fields(trained.pipeline_id, None)),
            lambda: reader.save_artifact(np.ones(2), "np", "a", "npy"),
            lambda: reader.delete_run(trained.run_id),
            lambda: reader.gc_artifacts(),
            lambda: reader.vacuum(),
        ]
        for write in writes:
            with pytest.raises(ReadOnlyStorageError):
                write()
        reader.flush()  # nothing is buffered: a no-op, like flushing a file opened for reading
        assert reader.get_run(trained.run_id) is not None
    with pytest.raises(KeyNotFoundError):
        WorkspaceStore(tmp_path / "missing", read_only=True)


def _stamp(tmp_path: Path, version: int) -> Path:
    with WorkspaceStore(tmp_path) as store:
        store.begin_run("r", {}, [])
    conn = duckdb.connect(str(tmp_path / "store.duckdb"))
    conn.execute("UPDATE holdall_schema SET version = ?", [version])
    conn.close()
    return tmp_path / "store.duckdb"


@pytest.mark.parametrize("version", [_schema.SCHEMA_VERSION + 1, _schema.SCHEMA_VERSION - 1])
def test_other_schema_versions_are_reported_not_altered(tmp_path: Path, version: int) -> None:
    db = _stamp(tmp_path, version)
    before = db.read_bytes()
    for read_only in (False, True):
        with pytest.raises(SchemaVersionError) as info:
            WorkspaceStore(tmp_path, read_only=read_only)
        assert (info.value.got, info.value.expected) == (version, _schema.SCHEMA_VERSION)
        assert ("migrate" in str(info.value)) == (version < _schema.SCHEMA_VERSION)
    assert db.read_bytes() == before


def test_foreign_duckdb_file_is_reported(tmp_path: Path) -> None:
    conn = duckdb.connect(str(tmp_path / "store.duckdb"))
    conn.execute("CREATE TABLE runs (run_id VARCHAR)")
    conn.close()
    with pytest.raises(SchemaVersionError) as info:
        WorkspaceStore(tmp_path)
    assert info.value.got is None


def test_migration_runs_in_one_transaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = _schema.SCHEMA_VERSION - 1
    _stamp(tmp_path, old)

    def broken(conn: duckdb.DuckDBPyConnection) -> None:
        conn.execute("ALTER TABLE runs ADD COLUMN tag VARCHAR")
        raise RuntimeError("migration bug")

    monkeypatch.setitem(_schema.MIGRATIONS, old, broken)
    with pytest.raises(RuntimeError, match="migration bug"):
        WorkspaceStore.migrate(tmp_path)
    conn = duckdb.connect(str(tmp_path / "store.duckdb"))
    assert _schema.read_version(conn) == old  # rolled back: version and column unchanged
    assert "tag" not in [r[0] for r in conn.execute("DESCRIBE runs").fetchall()]
    conn.close()

    monkeypatch.setitem(
        _schema.MIGRATIONS,
        old,
        lambda conn: conn.execute("ALTER TABLE runs ADD COLUMN tag VARCHAR"),
    )
    assert WorkspaceStore.migrate(tmp_path) == old
    with WorkspaceStore(tmp_path) as store:
        assert store.list_runs().height == 1


def test_migration_without_a_path_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stamp(tmp_path, _schema.SCHEMA_VERSION - 1)
    monkeypatch.delitem(_schema.MIGRATIONS, _schema.SCHEMA_VERSION - 1)
    with pytest.raises(SchemaVersionError, match="no migration"):
        WorkspaceStore.migrate(tmp_path)


@pytest.mark.parametrize("damage", ["empty", "text", "truncated", "bad block"])
def test_a_damaged_database_file_is_reported_as_corrupted(tmp_path: Path, damage: str) -> None:
    with WorkspaceStore(tmp_path) as store:
        trained = Trained(store)
        rows = [
            {**prediction_fields(trained.pipeline_id, None, n_samples=500), "y_true": y_true}
            for y_true in np.random.default_rng(0).random((2000, 500))
        ]
        store.save_predictions(rows)
    path = tmp_path / "store.duckdb"
    data = path.read_bytes()
    middle = len(data) // 2
    path.write_bytes(
        {
            "empty": b"",
            "text": b"not a database\n" * 100,
            "truncated": data[:middle],
            "bad block": data[:middle]
            + np.random.default_rng(1).bytes(8192)
            + data[middle + 8192 :],
        }[damage]
    )
    for read_only in (False, True):
        with (
            pytest.raises(CorruptedFileError) as info,
            WorkspaceStore(tmp_path, read_only=read_only) as store,
        ):
            store.load_prediction_arrays()
        assert info.value.path == str(path)


def test_closed_store_and_a_file_as_workspace(tmp_path: Path) -> None:
    store = WorkspaceStore(tmp_path / "ws")
    store.close()
    with pytest.raises(ClosedStorageError), store:
        pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidValueError, match="is a file"):
        WorkspaceStore(tmp_path / "file")


def test_a_failed_pipeline_cannot_be_completed(store: WorkspaceStore, trained: Trained) -> None:
    store.fail_pipeline(trained.pipeline_id, "diverged")
    with pytest.raises(InvalidValueError):
        store.complete_pipeline(trained.pipeline_id, 0.1, 0.2, "rmse", 10)
    pipeline = store.get_pipeline(trained.pipeline_id)
    assert pipeline is not None
    assert pipeline["status"] == "failed"
