"""Content-addressed artifacts: dedup, reference counts, formats, checksums, gc and cascades."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from holdall.errors import IntegrityError, InvalidValueError, KeyNotFoundError, UnsupportedTypeError
from holdall.workspace import ChainBuilder, WorkspaceStore
from tests.workspace.conftest import Trained, prediction_fields
from tests.workspace.ws_models import Scaler


def _ref_count(store: WorkspaceStore, artifact_id: str) -> int:
    with store._session.connection() as conn:
        return int(
            conn.execute(
                "SELECT ref_count FROM artifacts WHERE artifact_id = ?", [artifact_id]
            ).fetchall()[0][0]
        )


@pytest.mark.parametrize("fmt", ["joblib", "cloudpickle", "npy"])
def test_formats_round_trip_and_address_is_sha256(store: WorkspaceStore, fmt: str) -> None:
    value = np.arange(12, dtype=np.int16).reshape(3, 4)
    artifact_id = store.save_artifact(value, "numpy.ndarray", "array", fmt)
    path = store.get_artifact_path(artifact_id)
    assert artifact_id == hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.parent.name == artifact_id[:2]
    assert path.parent.parent == store.workspace_path / "artifacts"
    loaded = store.load_artifact(artifact_id)
    assert loaded.dtype == value.dtype
    np.testing.assert_array_equal(loaded, value)


def test_duplicate_content_is_stored_once_and_counted(store: WorkspaceStore) -> None:
    scaler = Scaler(np.arange(12.0).reshape(4, 3))
    first = store.save_artifact(scaler, "Scaler", "transformer", "cloudpickle")
    second = store.save_artifact(scaler, "Scaler", "transformer", "cloudpickle")
    assert first == second
    assert _ref_count(store, first) == 2
    assert len([p for p in (store.workspace_path / "artifacts").rglob("*") if p.is_file()]) == 1


def test_npy_refuses_objects_and_unknown_formats_are_refused(store: WorkspaceStore) -> None:
    with pytest.raises(UnsupportedTypeError):
        store.save_artifact({"a": 1}, "dict", "params", "npy")
    with pytest.raises(InvalidValueError):
        store.save_artifact(np.zeros(2), "x", "y", "pickle")


def test_corrupted_artifact_raises_integrity_error(store: WorkspaceStore) -> None:
    artifact_id = store.save_artifact(np.arange(100.0), "np", "array", "npy")
    path = store.get_artifact_path(artifact_id)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as info:
        store.load_artifact(artifact_id)
    assert info.value.expected == artifact_id


def test_unknown_artifact_ids(store: WorkspaceStore, trained: Trained) -> None:
    with pytest.raises(KeyNotFoundError):
        store.load_artifact("0" * 64)
    with pytest.raises(KeyNotFoundError):
        store.get_artifact_path("0" * 64)
    waiting = store.save_chain(
        trained.pipeline_id, **ChainBuilder().add_model("m", {"0": "f" * 64}).build()
    )
    assert store.get_chain(waiting) is None  # waits for its artifact, never stored dangling
    with pytest.raises(KeyNotFoundError, match="f" * 64):
        store.complete_pipeline(trained.pipeline_id, 0.1, 0.1, "rmse", 1)
    store.fail_pipeline(trained.pipeline_id, "gave up")  # drops the waiting chain


def test_delete_run_cascades_and_removes_unshared_artifacts(
    store: WorkspaceStore, trained: Trained
) -> None:
    pid = store.save_prediction(**prediction_fields(trained.pipeline_id, trained.chain_id))
    store.save_prediction_arrays(pid, np.zeros(4), np.zeros(4))
    store.log_step(trained.pipeline_id, 0, "Scaler", "fit")
    files = [store.get_artifact_path(a) for a in (trained.scaler_id, *trained.fold_ids.values())]
    # run + pipeline + chain + prediction + arrays + log + 3 artifacts
    assert store.delete_run(trained.run_id) == 9
    assert store.get_run(trained.run_id) is None
    assert store.get_pipeline(trained.pipeline_id) is None
    assert store.get_chain(trained.chain_id) is None
    assert store.get_prediction(pid) is None
    assert store.get_pipeline_log(trained.pipeline_id).height == 0
    assert not any(f.exists() for f in files)
    with pytest.raises(KeyNotFoundError):
        store.delete_run(trained.run_id)


def test_delete_run_keeps_artifacts_for_gc_when_asked(
    store: WorkspaceStore, trained: Trained
) -> None:
    store.delete_run(trained.run_id, delete_artifacts=False)
    assert store.get_artifact_path(trained.scaler_id).exists()
    assert store.gc_artifacts() == 3
    with pytest.raises(KeyNotFoundError):
        store.load_artifact(trained.scaler_id)


def test_artifact_shared_by_two_runs_survives_deleting_one(
    store: WorkspaceStore, trained: Trained
) -> None:
    # The second run reuses the same fitted scaler (same bytes) in its own chain.
    run2 = store.begin_run("run-b", {}, [])
    pipeline2 = store.begin_pipeline(run2, "p", {}, [], "wheat", "h")
    same = store.save_artifact(trained.scaler, "ws_models.Scaler", "transformer", "cloudpickle")
    assert same == trained.scaler_id
    store.save_chain(
        pipeline2,
        **ChainBuilder().add_step("S", artifact_id=same).add_model("M", trained.fold_ids).build(),
    )
    store.delete_run(trained.run_id)
    assert store.gc_artifacts() == 0
    np.testing.assert_array_equal(store.load_artifact(same).mean, trained.scaler.mean)
    store.delete_run(run2)
    assert store.gc_artifacts() == 0  # delete_artifacts=True already removed them
    assert [p for p in (store.workspace_path / "artifacts").rglob("*") if p.is_file()] == []


def test_gc_removes_orphan_files_and_temporaries(store: WorkspaceStore, trained: Trained) -> None:
    orphan = store.workspace_path / "artifacts" / "ff" / ("f" * 64 + ".joblib")
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"left by a crash between file and row")
    temporary = store.workspace_path / "artifacts" / "aa" / f".{'a' * 64}.joblib.k3_x9q.tmp"
    temporary.parent.mkdir(parents=True, exist_ok=True)
    temporary.write_bytes(b"half")
    foreign = store.workspace_path / "artifacts" / "aa" / "notes.txt"
    foreign.write_bytes(b"a user's file: not holdall's to delete")
    assert store.gc_artifacts() == 2
    assert not orphan.exists()
    assert not temporary.exists()
    assert foreign.read_bytes().startswith(b"a user's file")
    assert not orphan.parent.exists()  # an emptied fan-out folder goes too
    assert store.gc_artifacts() == 0
    np.testing.assert_allclose(
        store.replay_chain(trained.chain_id, trained.X), trained.expected(trained.X)
    )


def test_unattached_artifact_is_kept_by_gc(store: WorkspaceStore) -> None:
    artifact_id = store.save_artifact(np.ones(3), "np", "array", "npy")
    assert store.gc_artifacts() == 0
    np.testing.assert_array_equal(store.load_artifact(artifact_id), np.ones(3))


def test_artifact_row_pointing_outside_its_address_is_refused(store: WorkspaceStore) -> None:
    from holdall.errors import CorruptedFileError

    artifact_id = store.save_artifact(np.ones(3), "np", "array", "npy")
    with store._session.connection() as conn:
        conn.execute(
            "UPDATE artifacts SET artifact_path = '../../etc/passwd' WHERE artifact_id = ?",
            [artifact_id],
        )
    with pytest.raises(CorruptedFileError):
        store.load_artifact(artifact_id)


def test_artifacts_folder_is_per_workspace(tmp_path: Path) -> None:
    with WorkspaceStore(tmp_path / "a") as a, WorkspaceStore(tmp_path / "b") as b:
        artifact_id = a.save_artifact(np.ones(3), "np", "array", "npy")
        with pytest.raises(KeyNotFoundError):
            b.load_artifact(artifact_id)


def test_written_files_follow_the_umask(store: WorkspaceStore, trained: Trained) -> None:
    """A dashboard running as another user reads artifacts and exports like store.duckdb."""
    artifact = store.get_artifact_path(trained.scaler_id)
    bundle = store.export_chain(trained.chain_id, store.workspace_path / "best.n4a")
    expected = (store.workspace_path / "store.duckdb").stat().st_mode & 0o777
    assert artifact.stat().st_mode & 0o777 == expected
    assert Path(bundle).stat().st_mode & 0o777 == expected
