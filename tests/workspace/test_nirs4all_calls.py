"""The 0.7.1 store calls nirs4all's executor and orchestrator make beyond the seed."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest

from holdall.errors import (
    HoldallWarning,
    IntegrityError,
    InvalidValueError,
    KeyNotFoundError,
    UnsafePathError,
    UnsupportedTypeError,
    UntrustedArtifactError,
)
from holdall.workspace import ChainBuilder, WorkspaceStore
from tests.workspace.conftest import Trained, prediction_fields


def _registry_file(store: WorkspaceStore, name: str, payload: bytes) -> tuple[str, str]:
    """Write a file the way nirs4all's ArtifactRegistry does: ``<shard>/<name>``."""
    digest = hashlib.sha256(payload).hexdigest()
    relative = f"{digest[:2]}/{name}"
    path = store.workspace_path / "artifacts" / relative
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(payload)
    return relative, digest


def test_register_existing_artifact_loads_and_is_idempotent(store: WorkspaceStore) -> None:
    payload = pickle.dumps({"coef": [1.0, 2.0]})
    relative, digest = _registry_file(store, "Ridge_abc.pkl", payload)
    aid = "0001:3:all"  # nirs4all's V3 ids are not hashes
    assert store.register_existing_artifact(
        aid, relative, f"sha256:{digest}", "Ridge", "model", "sklearn_pickle", len(payload)
    ) == aid  # fmt: skip
    assert store.load_artifact(aid) == {"coef": [1.0, 2.0]}  # registered by this user: signed
    assert store.get_artifact_path(aid).name == "Ridge_abc.pkl"
    # Idempotent: a second registration (even with other values) changes nothing.
    store.register_existing_artifact(aid, "elsewhere.pkl", "0" * 64, "X", "y", "joblib", 1)
    assert store.get_artifact_path(aid).name == "Ridge_abc.pkl"
    run_id = store.begin_run("r", {}, [])
    pipeline_id = store.begin_pipeline(run_id, "p", {}, [], "wheat", "h")
    store.save_chain(pipeline_id, **ChainBuilder().add_model("M", {"0": aid}).build())
    store.delete_run(run_id)  # its last reference: the registered file goes with it
    assert not (store.workspace_path / "artifacts" / relative).exists()


def test_register_refuses_bad_paths_hashes_and_missing_files(
    store: WorkspaceStore, tmp_path: Path
) -> None:
    payload = b"abc"
    relative, digest = _registry_file(store, "a.pkl", payload)
    args = ("Ridge", "model", "pickle", 3)
    with pytest.raises(IntegrityError):
        store.register_existing_artifact("a", relative, "f" * 64, *args)
    for bad in ("../outside.pkl", "/abs.pkl", "", "a//b.pkl"):
        with pytest.raises(UnsafePathError):
            store.register_existing_artifact("b", bad, digest, *args)
    with pytest.raises(KeyNotFoundError):
        store.register_existing_artifact("c", "ab/missing.pkl", digest, *args)
    with pytest.raises(InvalidValueError):
        store.register_existing_artifact("d", relative, "not-a-hash", *args)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x.pkl").write_bytes(payload)
    (store.workspace_path / "artifacts" / "ln").symlink_to(tmp_path / "outside")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        store.register_existing_artifact("e", "ln/x.pkl", digest, *args)
    with pytest.raises(KeyNotFoundError):
        store.load_artifact("a")


def test_framework_formats_are_registered_but_not_loaded(store: WorkspaceStore) -> None:
    relative, digest = _registry_file(store, "model.keras", b"keras bytes")
    store.register_existing_artifact(
        "k", relative, digest, "Keras", "model", "tensorflow_keras", 11
    )
    with pytest.raises(UnsupportedTypeError, match="tensorflow_keras"):
        store.load_artifact("k")
    assert store.get_artifact_path("k").read_bytes() == b"keras bytes"


def test_a_planted_registration_row_still_needs_trust(store: WorkspaceStore) -> None:
    payload = pickle.dumps([1, 2])
    relative, digest = _registry_file(store, "planted.pkl", payload)
    with store._session.connection() as conn:
        conn.execute(
            "INSERT INTO artifacts (artifact_id, artifact_path, content_hash, format, size_bytes, "
            "ref_count, created_at) VALUES ('p', ?, ?, 'pickle', 1, 1, current_timestamp)",
            [relative, digest],
        )
    with pytest.raises(UntrustedArtifactError):
        store.load_artifact("p")
    assert store.load_artifact("p", trust=True) == [1, 2]


def test_cache_keys(store: WorkspaceStore) -> None:
    a = store.save_artifact_with_cache_key(np.ones(3), "S", "transformer", "npy", "c1", "i1", "d1")
    b = store.save_artifact(np.zeros(3), "S", "transformer", "npy")
    assert store.find_cached_artifact("c1", "i1") == a
    assert store.find_cached_artifact("c1", "other") is None
    store.update_artifact_cache_key(b, "c2", "i2", "d1")
    assert store.find_cached_artifact("c2", "i2") == b
    with pytest.raises(KeyNotFoundError):
        store.update_artifact_cache_key("0" * 64, "c", "i", "d")
    assert store.invalidate_dataset_cache("d1") == 2
    assert store.find_cached_artifact("c1", "i1") is None
    assert store.invalidate_dataset_cache("d1") == 0
    np.testing.assert_array_equal(store.load_artifact(a), np.ones(3))  # the artifact stays


def _trained_pipeline(store: WorkspaceStore, run_id: str, seed: int) -> tuple[str, dict[str, str]]:
    pipeline_id = store.begin_pipeline(run_id, f"p{seed}", {}, [], "wheat", "h")
    ids = {
        name: store.save_artifact(np.full(4, seed * 10 + k), "np", "model", "npy")
        for k, name in enumerate(("scaler", "fold_0", "fold_1", "final"))
    }
    chain = ChainBuilder().add_step("Scaler", artifact_id=ids["scaler"])
    chain.add_model("M", {"fold_0": ids["fold_0"], "fold_1": ids["fold_1"], "final": ids["final"]})
    store.save_chain(pipeline_id, **chain.build())
    return pipeline_id, ids


def test_cleanup_transient_artifacts_keeps_the_refit_and_what_predictions_need(
    store: WorkspaceStore,
) -> None:
    run_id = store.begin_run("r", {}, [])
    winner, won = _trained_pipeline(store, run_id, 1)
    loser, lost = _trained_pipeline(store, run_id, 2)
    kept_loser, kept = _trained_pipeline(store, run_id, 3)
    chain_of_kept = store.get_chains_for_pipeline(kept_loser)["chain_id"][0]
    store.save_prediction(**prediction_fields(kept_loser, chain_of_kept, fold_id="avg"))
    removed = store.cleanup_transient_artifacts(run_id, "wheat", [winner])
    assert removed == 2 + 4  # the winner's two fold models, everything of the plain loser

    def alive(artifact_id: str) -> bool:
        try:
            store.load_artifact(artifact_id)
        except KeyNotFoundError:
            return False
        return True

    assert [alive(won[k]) for k in ("scaler", "fold_0", "fold_1", "final")] == [
        True, False, False, True,
    ]  # fmt: skip
    assert not any(alive(a) for a in lost.values())
    assert all(alive(a) for a in kept.values())  # an averaged prediction needs all of them
    assert store.get_chains_for_pipeline(loser).height == 1  # chains and predictions stay
    assert store.gc_artifacts() == 0  # the released references do not come back


def test_prediction_arrays_and_chain_drill_down(store: WorkspaceStore, trained: Trained) -> None:
    ids = []
    for partition in ("val", "test"):
        for fold in ("1", "0"):
            pid = store.save_prediction(**prediction_fields(
                trained.pipeline_id, trained.chain_id, partition=partition, fold_id=fold,
                val_score=float(fold), test_score=2.0,
            ))  # fmt: skip
            ids.append(pid)
    store.save_prediction_arrays(ids[0], np.arange(4, dtype=np.int32), np.ones(4))
    arrays = store.get_prediction_arrays(ids[0])
    assert arrays is not None
    assert arrays["y_true"].dtype == np.int32
    assert arrays["y_proba"] is None
    assert store.get_prediction_arrays(ids[1]) is None
    frame = store.get_chain_predictions(trained.chain_id)
    assert list(zip(frame["partition"], frame["fold_id"], strict=True)) == [
        ("test", "0"), ("test", "1"), ("val", "0"), ("val", "1"),
    ]  # fmt: skip
    assert store.get_chain_predictions(trained.chain_id, partition="val", fold_id="1").height == 1


def test_aggregated_queries(store: WorkspaceStore, trained: Trained) -> None:
    for fold, score in (("0", 0.2), ("1", 0.4)):
        store.save_prediction(**prediction_fields(
            trained.pipeline_id, trained.chain_id, fold_id=fold, val_score=score, metric="rmse",
        ))  # fmt: skip
    store.save_prediction(**prediction_fields(
        trained.pipeline_id, trained.chain_id, fold_id="final", val_score=9.0, metric="rmse",
    ), refit_context="standalone")  # fmt: skip
    other = store.save_chain(
        trained.pipeline_id, **ChainBuilder().add_model("RF", trained.fold_ids).build()
    )
    store.save_prediction(**prediction_fields(
        trained.pipeline_id, other, val_score=0.1, metric="rmse", model_name="RF",
    ))  # fmt: skip
    frame = store.query_aggregated_predictions(run_id=trained.run_id)
    assert frame.height == 2
    mine = frame.filter(frame["chain_id"] == trained.chain_id).to_dicts()[0]
    assert mine["fold_count"] == 2  # the refit entry is left out
    assert mine["avg_val_score"] == pytest.approx(0.3)
    assert (mine["min_val_score"], mine["max_val_score"]) == (0.2, 0.4)
    assert sorted(mine["fold_ids"]) == ["0", "1"]
    assert store.query_aggregated_predictions(model_class="ws_%").height == 1
    top = store.query_top_aggregated_predictions("rmse", n=1)
    assert top["chain_id"].to_list() == [other]  # rmse: lower is better
    top = store.query_top_aggregated_predictions("rmse", n=2, ascending=False)
    assert top["chain_id"].to_list() == [trained.chain_id, other]
    assert store.query_top_aggregated_predictions("r2").height == 0
    with pytest.raises(InvalidValueError):
        store.query_top_aggregated_predictions("rmse", score_column="val_score; DROP TABLE x")
    with pytest.raises(InvalidValueError):
        store.query_top_aggregated_predictions("rmse", colour="red")


def test_a_chain_of_registered_artifacts_exports_and_replays(
    store: WorkspaceStore, trained: Trained, tmp_path: Path
) -> None:
    from holdall.workspace import replay_chain

    ids = {}
    for name, obj in (
        ("scaler", trained.scaler),
        *((f"m{k}", m) for k, m in enumerate(trained.models)),
    ):
        relative, digest = _registry_file(store, f"{name}.pkl", pickle.dumps(obj))
        ids[name] = store.register_existing_artifact(
            f"0001:{name}", relative, digest, "x", "model", "sklearn_pickle", 1
        )
    same, digest = _registry_file(store, "m0-copy.pkl", pickle.dumps(trained.models[0]))
    ids["copy"] = store.register_existing_artifact(
        "0001:copy", same, digest, "x", "model", "pickle", 1
    )
    chain = ChainBuilder().add_step("Scaler", artifact_id=ids["scaler"])
    chain.add_model("Ridge", {"0": ids["m0"], "1": ids["m1"], "2": ids["copy"]})
    chain_id = store.save_chain(trained.pipeline_id, **chain.build())
    expected = np.mean(
        [
            m.predict(trained.scaler.transform(trained.X))
            for m in (*trained.models, trained.models[0])
        ],
        axis=0,
    )
    np.testing.assert_allclose(store.replay_chain(chain_id, trained.X), expected)
    bundle = store.export_chain(chain_id, tmp_path / "registered.n4a")
    np.testing.assert_allclose(replay_chain(bundle, X=trained.X), expected)


def _register(store: WorkspaceStore, aid: str, payload: bytes) -> None:
    relative, digest = _registry_file(store, f"{aid}.pkl", payload)
    store.register_existing_artifact(aid, relative, digest, "M", "model", "pickle", len(payload))


def test_a_chain_saved_before_its_artifacts_is_stored_with_the_last_of_them(
    store: WorkspaceStore,
) -> None:
    run_id = store.begin_run("r", {}, [])
    pipeline_id = store.begin_pipeline(run_id, "p", {}, [], "wheat", "h")
    # nirs4all 0.7.1's executor order: the chain first, its artifacts right after
    chain_id = store.save_chain(
        pipeline_id, **ChainBuilder().add_model("M", {"0": "a:0", "1": "a:1"}).build()
    )
    assert store.get_chain(chain_id) is None  # never stored pointing to nothing
    _register(store, "a:0", b"fold 0")
    assert store.get_chain(chain_id) is None  # still waits for a:1
    with pytest.raises(KeyNotFoundError, match=r"chain .* a:1"):
        store.complete_pipeline(pipeline_id, 0.1, 0.1, "rmse", 1)
    assert store.get_pipeline(pipeline_id)["status"] == "running"  # type: ignore[index]
    _register(store, "a:1", b"fold 1")
    chain = store.get_chain(chain_id)
    assert chain is not None
    assert chain["fold_artifacts"] == {"0": "a:0", "1": "a:1"}
    store.complete_pipeline(pipeline_id, 0.1, 0.1, "rmse", 1)


def test_a_waiting_chain_goes_with_a_failed_pipeline_and_is_reported_at_close(
    tmp_path: Path,
) -> None:
    store = WorkspaceStore(tmp_path / "ws")
    run_id = store.begin_run("r", {}, [])
    failed = store.begin_pipeline(run_id, "p", {}, [], "wheat", "h")
    dropped = store.save_chain(failed, **ChainBuilder().add_model("M", {"0": "b:0"}).build())
    store.fail_pipeline(failed, "ValueError")
    _register(store, "b:0", b"late")
    assert store.get_chain(dropped) is None  # its pipeline failed: not stored
    other = store.begin_pipeline(run_id, "q", {}, [], "wheat", "h")
    left = store.save_chain(other, **ChainBuilder().add_model("M", {"0": "never"}).build())
    with pytest.warns(HoldallWarning, match=f"{left}.*never saved or registered"):
        store.close()
    with WorkspaceStore(tmp_path / "ws", read_only=True) as again:
        assert again.get_chain(left) is None


def test_weights_may_hold_one_value_per_fold(store: WorkspaceStore, trained: Trained) -> None:
    # nirs4all 0.7.1 stores the fold weights of an averaged prediction in `weights`
    pid = store.save_prediction(**prediction_fields(trained.pipeline_id, trained.chain_id))
    store.save_prediction_arrays(pid, np.zeros(4), np.ones(4), weights=np.array([0.5, 0.5]))
    bulk = store.save_predictions(
        [{**prediction_fields(trained.pipeline_id, trained.chain_id, fold_id="9"),
          "y_true": np.zeros(4), "y_pred": np.ones(4), "weights": np.ones(3)}]
    )  # fmt: skip
    arrays = store.load_prediction_arrays([pid, *bulk])
    np.testing.assert_array_equal(arrays[pid]["weights"], [0.5, 0.5])
    np.testing.assert_array_equal(arrays[bulk[0]]["weights"], np.ones(3))
    with pytest.raises(InvalidValueError, match="y_true must have one row per sample"):
        store.save_prediction_arrays(pid, np.zeros(3), np.ones(4))
