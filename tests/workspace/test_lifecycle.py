"""The seed's API in the order a nirs4all training run calls it, read back through every getter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from holdall.errors import ArchiveExistsError, InvalidValueError, KeyNotFoundError
from holdall.workspace import ChainBuilder, PipelineLibrary, WorkspaceStore
from tests.workspace.conftest import Trained, prediction_fields


def test_first_use_creates_database_and_artifact_folder(tmp_path: Path) -> None:
    with WorkspaceStore(tmp_path / "new") as store:
        assert store.workspace_path == tmp_path / "new"
    assert (tmp_path / "new" / "store.duckdb").is_file()
    assert (tmp_path / "new" / "artifacts").is_dir()


def test_run_lifecycle(store: WorkspaceStore) -> None:
    run_id = store.begin_run("exp1", {"seed": 3, "grid": [1, 2]}, [{"name": "wheat", "hash": "h"}])
    run = store.get_run(run_id)
    assert run is not None
    assert (run["status"], run["config"], run["datasets"]) == (
        "running",
        {"seed": 3, "grid": [1, 2]},
        [{"name": "wheat", "hash": "h"}],
    )
    store.complete_run(run_id, {"best": 0.1})
    run = store.get_run(run_id)
    assert run is not None
    assert run["status"] == "completed"
    assert run["summary"] == {"best": 0.1}
    assert run["completed_at"] is not None
    failed = store.begin_run("exp2", None, [])
    store.fail_run(failed, "out of memory")
    failed_run = store.get_run(failed)
    assert failed_run is not None
    assert (failed_run["status"], failed_run["error"]) == (
        "failed",
        "out of memory",
    )
    assert store.list_runs(status="failed")["run_id"].to_list() == [failed]
    assert store.list_runs(dataset="wheat")["run_id"].to_list() == [run_id]
    assert store.list_runs(limit=1).height == 1
    assert store.list_runs(offset=1).height == 1


def test_pipeline_lifecycle_and_listing(store: WorkspaceStore) -> None:
    run_id = store.begin_run("exp", {}, [])
    first = store.begin_pipeline(run_id, "0001_pls", {"model": "PLS"}, [{"n": 5}], "wheat", "h1")
    second = store.begin_pipeline(run_id, "0002_rf", {"model": "RF"}, [], "corn", "h2")
    store.complete_pipeline(first, best_val=0.12, best_test=0.2, metric="rmse", duration_ms=1500)
    pipeline = store.get_pipeline(first)
    assert pipeline is not None
    assert (pipeline["status"], pipeline["best_val"], pipeline["duration_ms"]) == (
        "completed",
        0.12,
        1500,
    )
    assert pipeline["expanded_config"] == {"model": "PLS"}
    assert pipeline["generator_choices"] == [{"n": 5}]
    assert store.list_pipelines(run_id=run_id)["pipeline_id"].to_list() == [first, second]
    assert store.list_pipelines(dataset_name="corn")["pipeline_id"].to_list() == [second]


def test_fail_pipeline_rolls_back_its_data_but_keeps_logs(
    store: WorkspaceStore, trained: Trained
) -> None:
    prediction = store.save_prediction(**prediction_fields(trained.pipeline_id, trained.chain_id))
    store.log_step(trained.pipeline_id, 1, "Ridge", "error", message="diverged", level="error")
    store.fail_pipeline(trained.pipeline_id, "diverged")
    pipeline = store.get_pipeline(trained.pipeline_id)
    assert pipeline is not None
    assert (pipeline["status"], pipeline["error"]) == (
        "failed",
        "diverged",
    )
    assert store.get_prediction(prediction) is None
    assert store.get_chain(trained.chain_id) is None
    assert store.get_pipeline_log(trained.pipeline_id)["message"].to_list() == ["diverged"]
    # The chain's artifacts are no longer referenced: gc collects all three files.
    assert store.gc_artifacts() == 3


def test_chain_round_trip(store: WorkspaceStore, trained: Trained) -> None:
    chain = store.get_chain(trained.chain_id)
    assert chain is not None
    assert chain["model_step_idx"] == 1
    assert chain["model_class"] == "ws_models.Ridge"
    assert chain["preprocessings"] == "Scaler"
    assert chain["fold_artifacts"] == trained.fold_ids
    assert chain["shared_artifacts"] == {"0": trained.scaler_id}
    assert [s["operator_class"] for s in chain["steps"]] == ["ws_models.Scaler", "ws_models.Ridge"]
    frame = store.get_chains_for_pipeline(trained.pipeline_id)
    assert frame["chain_id"].to_list() == [trained.chain_id]
    assert store.get_chains_for_pipeline("nope").height == 0


def test_chain_builder_records_branch_and_rejects_incomplete_chains() -> None:
    chain = (
        ChainBuilder(fold_strategy="shared")
        .add_step("a.SNV")
        .add_model("b.PLS", {0: "x"})
        .on_branch([0, 1], 2)
        .build()
    )
    assert chain["steps"][0]["stateless"] is True
    assert (chain["branch_path"], chain["source_index"], chain["fold_strategy"]) == (
        [0, 1],
        2,
        "shared",
    )
    assert chain["fold_artifacts"] == {"0": "x"}
    assert ChainBuilder().add_model("m", {"f": "a"}).build_all()[0]["preprocessings"] == ""
    with pytest.raises(InvalidValueError):
        ChainBuilder().add_step("a").build()
    with pytest.raises(InvalidValueError):
        ChainBuilder().add_model("m", {})


def test_predictions_with_arrays_keep_dtypes_and_shapes(
    store: WorkspaceStore, trained: Trained
) -> None:
    pid = store.save_prediction(
        **prediction_fields(trained.pipeline_id, trained.chain_id, task_type="classification")
    )
    y_true = np.array([0, 1, 2, 1], dtype=np.int32)
    y_pred = np.array([0.0, 1.0, 2.0, 2.0], dtype=np.float32)
    y_proba = np.random.default_rng(0).random((4, 3))
    indices = np.array([10, 11, 12, 13], dtype=np.int64)
    weights = np.array([True, False, True, True])
    store.save_prediction_arrays(pid, y_true, y_pred, y_proba, indices, weights)
    record = store.get_prediction(pid, load_arrays=True)
    assert record is not None
    for name, expected in (("y_true", y_true), ("y_pred", y_pred), ("y_proba", y_proba),
                           ("sample_indices", indices), ("weights", weights)):  # fmt: skip
        assert record[name].dtype == expected.dtype, name
        np.testing.assert_array_equal(record[name], expected)
    assert record["scores"] == {"val": {"rmse": 0.5}}
    assert record["best_params"] == {"n_components": 5}
    assert "y_true" not in (store.get_prediction(pid) or {})


def test_prediction_without_arrays_loads_none_and_arrays_can_be_replaced(
    store: WorkspaceStore, trained: Trained
) -> None:
    pid = store.save_prediction(**prediction_fields(trained.pipeline_id, None))
    record = store.get_prediction(pid, load_arrays=True)
    assert record is not None
    assert record["y_true"] is None
    assert record["y_pred"] is None
    store.save_prediction_arrays(pid, np.zeros(4), np.ones(4))
    store.flush()
    store.save_prediction_arrays(pid, None, np.full(4, 7.0))
    record = store.get_prediction(pid, load_arrays=True)
    assert record is not None
    assert record["y_true"] is None
    np.testing.assert_array_equal(record["y_pred"], np.full(4, 7.0))


def test_bulk_save_from_dicts_arrow_and_polars(store: WorkspaceStore, trained: Trained) -> None:
    rows = [
        {**prediction_fields(trained.pipeline_id, trained.chain_id, fold_id=str(i), val_score=float(i)),
         "y_true": np.arange(4.0) + i, "y_pred": np.arange(4, dtype=np.int16)}
        for i in range(6)
    ]  # fmt: skip
    ids = store.save_predictions(rows[:2])
    frame = pl.DataFrame([{**r, "scores": None, "best_params": None,
                           "y_true": r["y_true"].tolist(), "y_pred": r["y_pred"].tolist()} for r in rows[2:]])  # fmt: skip
    ids += store.save_predictions(frame.slice(0, 2))
    ids += store.save_predictions(frame.slice(2, 2).to_arrow())
    assert len(set(ids)) == 6
    loaded = store.load_prediction_arrays(ids)
    for i, pid in enumerate(ids):
        np.testing.assert_array_equal(loaded[pid]["y_true"], np.arange(4.0) + i)
    assert loaded[ids[0]]["y_pred"].dtype == np.int16  # numpy input keeps its dtype
    assert store.query_predictions(pipeline_id=trained.pipeline_id).height == 6


def test_query_filters_pagination_and_run_join(store: WorkspaceStore, trained: Trained) -> None:
    other_run = store.begin_run("other", {}, [])
    other_pipeline = store.begin_pipeline(other_run, "p2", {}, [], "corn", "h")
    for i in range(5):
        store.save_prediction(
            **prediction_fields(
                trained.pipeline_id, None, fold_id=str(i % 2), branch_id=i % 2, model_name=f"m{i}"
            )
        )
    store.save_prediction(
        **prediction_fields(other_pipeline, None, dataset_name="corn", model_class="RF")
    )
    assert store.query_predictions().height == 6
    assert store.query_predictions(run_id=trained.run_id).height == 5
    assert store.query_predictions(dataset_name="corn")["model_class"].to_list() == ["RF"]
    assert store.query_predictions(fold_id="1", branch_id=1).height == 2
    assert store.query_predictions(model_class="sklearn.%").height == 5
    all_ids = store.query_predictions()["prediction_id"].to_list()
    assert store.query_predictions(limit=2, offset=1)["prediction_id"].to_list() == all_ids[1:3]


def test_top_predictions_rank_and_group(store: WorkspaceStore, trained: Trained) -> None:
    scores = [(0.3, "A"), (0.1, "B"), (0.2, "A"), (None, "B"), (0.5, "C")]
    ids = [
        store.save_prediction(
            **prediction_fields(trained.pipeline_id, None, val_score=v, model_class=m)
        )
        for v, m in scores
    ]
    store.save_prediction(
        **prediction_fields(trained.pipeline_id, None, val_score=0.0, partition="test")
    )
    assert store.top_predictions(2)["prediction_id"].to_list() == [ids[1], ids[2]]
    assert store.top_predictions(2, ascending=False)["val_score"].to_list() == [0.5, 0.3]
    assert store.top_predictions(10)["prediction_id"].to_list()[-1] == ids[3]  # NULL ranks last
    best = store.top_predictions(1, group_by="model_class")
    assert dict(zip(best["model_class"], best["val_score"], strict=True)) == {
        "A": 0.2,
        "B": 0.1,
        "C": 0.5,
    }
    assert best.columns == store.query_predictions().columns
    assert store.top_predictions(1, metric="test_score", partition="test")[
        "val_score"
    ].to_list() == [0.0]


def test_logs_and_run_summary(store: WorkspaceStore, trained: Trained) -> None:
    store.log_step(trained.pipeline_id, 0, "Scaler", "fit", duration_ms=12, details={"n": 40})
    store.log_step(
        trained.pipeline_id, 1, "Ridge", "fit", duration_ms=30, level="warning", message="slow"
    )
    log = store.get_pipeline_log(trained.pipeline_id)
    assert log["event"].to_list() == ["fit", "fit"]
    assert log["details"].to_list()[0] == '{"n": 40}'
    summary = store.get_run_log_summary(trained.run_id)
    assert sorted(zip(summary["level"], summary["total_duration_ms"], strict=True)) == [
        ("info", 12),
        ("warning", 30),
    ]
    assert summary["total_duration_ms"].dtype == pl.Int64  # not DuckDB's DECIMAL sum
    silent = store.begin_pipeline(trained.run_id, "silent", {}, [], "wheat", "h")
    summary = store.get_run_log_summary(trained.run_id)
    row = summary.filter(pl.col("pipeline_id") == silent).to_dicts()
    assert [(r["pipeline_name"], r["level"], r["n_entries"]) for r in row] == [("silent", None, 0)]
    assert summary.height == 3


def test_delete_prediction(store: WorkspaceStore, trained: Trained) -> None:
    pid = store.save_prediction(**prediction_fields(trained.pipeline_id, None))
    store.save_prediction_arrays(pid, np.zeros(4), np.zeros(4))
    assert store.delete_prediction(pid) is True
    assert store.get_prediction(pid, load_arrays=True) is None
    assert store.load_prediction_arrays([pid]) == {}


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    with WorkspaceStore(tmp_path) as store:
        trained = Trained(store)
        pid = store.save_prediction(**prediction_fields(trained.pipeline_id, trained.chain_id))
        store.save_prediction_arrays(pid, np.arange(4), np.arange(4.0))
    with WorkspaceStore(tmp_path, read_only=True) as reopened:
        record = reopened.get_prediction(pid, load_arrays=True)
        assert record is not None
        np.testing.assert_array_equal(record["y_true"], np.arange(4))
        np.testing.assert_allclose(
            reopened.replay_chain(trained.chain_id, trained.X), trained.expected(trained.X)
        )


def test_pipeline_library(tmp_path: Path) -> None:
    library = PipelineLibrary(tmp_path)
    library.save_template(
        {"steps": ["SNV", "PLS"]}, "pls_basic", category="modeling", tags=["regression"]
    )
    library.save_template({"steps": ["RF"]}, "rf", tags=["classification"])
    assert library.load_template("pls_basic") == {"steps": ["SNV", "PLS"]}
    assert library.get_template_metadata("rf", category="general")["tags"] == ["classification"]
    assert [m["name"] for m in library.list_templates(tags=["regression"])] == ["pls_basic"]
    assert [m["name"] for m in library.list_templates(category="general")] == ["rf"]
    with pytest.raises(ArchiveExistsError):
        library.save_template({}, "rf")
    library.save_template({"steps": []}, "rf", overwrite=True)
    library.delete_template("rf")
    with pytest.raises(KeyNotFoundError):
        library.load_template("rf")
