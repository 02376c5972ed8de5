"""Crashes (real processes killed with SIGKILL) and tampered workspaces.

Each test builds the state an attacker or a crash would leave, on real files, and checks
that holdall neither loses an acknowledged record, nor deletes outside the workspace, nor
unpickles what this user's workspaces did not write.
"""

from __future__ import annotations

import os
import pickle
import signal
import stat
from pathlib import Path

import duckdb
import numpy as np
import pytest

from holdall.errors import CorruptedFileError, UnsafePathError, UntrustedArtifactError
from holdall.workspace import WorkspaceStore, _schema, _signing, replay_chain
from tests.workspace.conftest import Trained, prediction_fields, run_worker, start_worker


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with WorkspaceStore(path, read_only=True) as store, store._session.connection() as conn:
        return conn.execute(sql).fetchall()


def _tamper(store: WorkspaceStore, sql: str, params: list[object]) -> None:
    with store._session.connection() as conn:
        conn.execute(sql, params)


# ---------------------------------------------------------------- gc and missing files


def test_gc_killed_after_removing_a_file_leaves_no_row_without_its_file(tmp_path: Path) -> None:
    result = run_worker("gc_crash", str(tmp_path))
    assert result.returncode == -signal.SIGKILL, result.stderr
    ids = result.stdout.split()
    assert len(ids) == 3
    # The rows were committed gone before any file went: no row points to a missing file.
    rows = _rows(tmp_path, "SELECT artifact_id, artifact_path FROM artifacts")
    assert all((tmp_path / "artifacts" / p).is_file() for _, p in rows)
    assert not {r[0] for r in rows} & set(ids)
    with WorkspaceStore(tmp_path) as store:
        assert store.gc_artifacts() == 2  # the files the crash left behind
        assert not [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file()]
        again = store.save_artifact(np.full(10, 0), "np", "array", "npy")
        assert again == ids[0]
        np.testing.assert_array_equal(store.load_artifact(again), np.full(10, 0))


def test_a_row_whose_file_is_missing_is_repaired_by_saving_the_content_again(
    store: WorkspaceStore, trained: Trained
) -> None:
    path = store.get_artifact_path(trained.scaler_id)
    path.unlink()  # what a crash of an older holdall, or a hand, left
    with pytest.raises(CorruptedFileError, match="missing"):
        store.load_artifact(trained.scaler_id)
    with pytest.raises(CorruptedFileError):
        store.replay_chain(trained.chain_id, trained.X)
    again = store.save_artifact(trained.scaler, "ws_models.Scaler", "transformer", "cloudpickle")
    assert again == trained.scaler_id
    assert path.is_file()
    np.testing.assert_allclose(
        store.replay_chain(trained.chain_id, trained.X), trained.expected(trained.X)
    )


def test_a_truncated_file_is_replaced_on_the_next_save(store: WorkspaceStore) -> None:
    value = np.arange(1000.0)
    artifact_id = store.save_artifact(value, "np", "array", "npy")
    path = store.get_artifact_path(artifact_id)
    path.write_bytes(path.read_bytes()[:100])
    assert store.save_artifact(value, "np", "array", "npy") == artifact_id
    np.testing.assert_array_equal(store.load_artifact(artifact_id), value)


# ---------------------------------------------------------------- tampered paths


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlinked folder", "symlinked file"])
def test_tampered_artifact_paths_never_delete_outside_the_workspace(
    tmp_path: Path, how: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    with WorkspaceStore(tmp_path / "ws") as store:
        trained = Trained(store)
        victim_id = trained.scaler_id
        relative = store.get_artifact_path(victim_id).relative_to(tmp_path / "ws" / "artifacts")
        victim = outside / relative.name
        victim.write_bytes(b"precious")
        if how == "dotdot":
            target = f"../../outside/{relative.name}"
        elif how == "absolute":
            target = str(victim)
        else:
            target = relative.as_posix()
            real = store.get_artifact_path(victim_id)
            if how == "symlinked folder":  # the fan-out folder now leads outside
                for item in real.parent.iterdir():
                    item.unlink()
                real.parent.rmdir()
                real.parent.symlink_to(outside, target_is_directory=True)
            else:
                real.unlink()
                real.symlink_to(victim)
        _tamper(store, "UPDATE artifacts SET artifact_path = ? WHERE artifact_id = ?",
                [target, victim_id])  # fmt: skip
        store.delete_run(trained.run_id)  # ref counts reach 0: rows deleted, files removed
        assert victim.read_bytes() == b"precious"
        store.gc_artifacts()
        assert victim.read_bytes() == b"precious"
    assert sorted(p.name for p in outside.iterdir()) == [relative.name]


def test_gc_does_not_walk_into_a_linked_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    orphan_name = "ab" + "c" * 62 + ".joblib"  # a name holdall would write
    (outside / orphan_name).write_bytes(b"not holdall's")
    with WorkspaceStore(tmp_path / "ws") as store:
        (tmp_path / "ws" / "artifacts" / "ab").symlink_to(outside, target_is_directory=True)
        assert store.gc_artifacts() == 0
    assert (outside / orphan_name).read_bytes() == b"not holdall's"


def test_an_artifacts_folder_that_is_a_link_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "ws" / "artifacts").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        WorkspaceStore(tmp_path / "ws")


# ---------------------------------------------------------------- prediction + arrays


def _workspace_with_a_pipeline(folder: Path) -> str:
    """Create a workspace in `folder` holding one run and one pipeline; return the pipeline id."""
    with WorkspaceStore(folder) as store:
        run_id = store.begin_run("r", {}, [])
        return store.begin_pipeline(run_id, "p", {}, [], "wheat", "h")


def _killed_after_its_first_line(command: str, *args: str) -> str:
    """Start worker `command`, read the line it prints, leave it running half a second (its
    store's watcher commits every 20 ms: many chances to commit what it must not), SIGKILL it.
    Returns the line."""
    worker = start_worker(command, *args)
    assert worker.stdout is not None
    line = worker.stdout.readline().strip()
    with pytest.raises(Exception, match="timed out"):
        worker.communicate(timeout=0.5)
    worker.send_signal(signal.SIGKILL)
    worker.communicate()
    assert worker.returncode == -signal.SIGKILL
    return line


def test_a_crash_between_prediction_and_arrays_never_commits_the_prediction_alone(
    tmp_path: Path,
) -> None:
    pipeline_id = _workspace_with_a_pipeline(tmp_path)
    flushed = _killed_after_its_first_line("unpaired", str(tmp_path), pipeline_id)
    with WorkspaceStore(tmp_path, read_only=True) as store:
        ids = store.query_predictions()["prediction_id"].to_list()
        assert ids == [flushed]  # the flushed pair survived the kill; the lone one never landed
        arrays = store.get_prediction(flushed, load_arrays=True)
        assert arrays is not None
        np.testing.assert_array_equal(arrays["y_true"], np.arange(8))


def test_a_crash_between_a_chain_and_its_artifacts_stores_no_dangling_chain(
    tmp_path: Path,
) -> None:
    pipeline_id = _workspace_with_a_pipeline(tmp_path)
    chain_id = _killed_after_its_first_line("chain_first", str(tmp_path), pipeline_id)
    with WorkspaceStore(tmp_path) as store:
        assert store.get_chain(chain_id) is None  # it waited for its artifact, which never came
        assert store.get_chains_for_pipeline(pipeline_id).height == 0
        store.complete_pipeline(pipeline_id, 0.1, 0.1, "rmse", 1)  # nothing of it is waiting


# ---------------------------------------------------------------- pickles and signatures


class _RunsCode:
    """Unpickling this creates a folder: a stand-in for any code a planted pickle runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


def _plant_pickle(store: WorkspaceStore, payload: bytes) -> str:
    """Write a pickle and a matching row, as someone with write access to the folder could."""
    import hashlib

    digest = hashlib.sha256(payload).hexdigest()
    relative = f"{digest[:2]}/{digest}.pkl"
    path = store.workspace_path / "artifacts" / relative
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(payload)
    _tamper(
        store,
        "INSERT INTO artifacts (artifact_id, artifact_path, content_hash, operator_class, "
        "artifact_type, format, size_bytes, ref_count, created_at) "
        "VALUES (?, ?, ?, 'x', 'model', 'cloudpickle', ?, 1, current_timestamp)",
        [digest, relative, digest, len(payload)],
    )
    return digest


def test_a_planted_pickle_is_not_unpickled_without_trust(
    store: WorkspaceStore, tmp_path: Path
) -> None:
    marker = tmp_path / "code-ran"
    planted = _plant_pickle(store, pickle.dumps(_RunsCode(marker)))
    with pytest.raises(UntrustedArtifactError, match="trust=True") as info:
        store.load_artifact(planted)
    assert info.value.key == planted
    assert isinstance(info.value, PermissionError)
    assert not marker.exists()
    assert store.artifact_is_signed(planted) is False
    store.load_artifact(planted, trust=True)  # the caller's informed choice
    assert marker.is_dir()


def test_a_forged_signature_is_refused(store: WorkspaceStore, tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    planted = _plant_pickle(store, pickle.dumps(_RunsCode(marker)))
    _tamper(store, "UPDATE artifacts SET signature = ? WHERE artifact_id = ?", ["0" * 64, planted])
    with pytest.raises(UntrustedArtifactError, match="another key"):
        store.load_artifact(planted)
    assert not marker.exists()


def test_what_this_user_saved_loads_and_npy_never_needs_trust(
    store: WorkspaceStore, trained: Trained
) -> None:
    assert store.artifact_is_signed(trained.scaler_id)
    np.testing.assert_allclose(
        store.replay_chain(trained.chain_id, trained.X), trained.expected(trained.X)
    )
    array_id = store.save_artifact(np.arange(3), "np", "array", "npy")
    _tamper(store, "UPDATE artifacts SET signature = NULL WHERE artifact_id = ?", [array_id])
    np.testing.assert_array_equal(store.load_artifact(array_id), np.arange(3))


def test_another_users_workspace_and_bundle_need_trust(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with WorkspaceStore(tmp_path / "ws") as store:
        trained = Trained(store)
        bundle = store.export_chain(trained.chain_id, tmp_path / "best.n4a")
    expected = trained.expected(trained.X)
    np.testing.assert_allclose(replay_chain(bundle, X=trained.X), expected)  # the author's key
    monkeypatch.setenv(_signing.KEY_ENV, str(tmp_path / "someone-else.key"))
    with WorkspaceStore(tmp_path / "ws") as store:
        with pytest.raises(UntrustedArtifactError):
            store.replay_chain(trained.chain_id, trained.X)
        with pytest.raises(UntrustedArtifactError):
            replay_chain(store, trained.chain_id, trained.X)
        np.testing.assert_allclose(
            store.replay_chain(trained.chain_id, trained.X, trust=True), expected
        )
        # Saving the same object again: this user produced these bytes, so they are signed.
        store.save_artifact(trained.scaler, "ws_models.Scaler", "transformer", "cloudpickle")
        assert store.artifact_is_signed(trained.scaler_id)
    with pytest.raises(UntrustedArtifactError, match="bundle"):
        replay_chain(bundle, X=trained.X)
    np.testing.assert_allclose(replay_chain(bundle, X=trained.X, trust=True), expected)


def test_the_key_is_private_and_a_bad_key_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "config" / "holdall" / "key"
    monkeypatch.setenv(_signing.KEY_ENV, str(key))
    first = _signing.sign("ab" * 32, "joblib")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert _signing.sign("ab" * 32, "joblib") == first
    assert _signing.sign("ab" * 32, "cloudpickle") != first
    short = tmp_path / "short.key"
    short.write_bytes(b"123")
    monkeypatch.setenv(_signing.KEY_ENV, str(short))
    with pytest.raises(UnsafePathError, match="3 bytes"):
        _signing.sign("ab" * 32, "joblib")
    link = tmp_path / "link.key"
    link.symlink_to(key)
    monkeypatch.setenv(_signing.KEY_ENV, str(link))
    with pytest.raises(UnsafePathError, match="symbolic link"):
        _signing.sign("ab" * 32, "joblib")


def test_migrated_workspace_artifacts_are_unsigned_until_saved_again(tmp_path: Path) -> None:
    with WorkspaceStore(tmp_path) as store:
        trained = Trained(store)
    conn = duckdb.connect(str(tmp_path / "store.duckdb"))  # make it a version 1 file
    for column in ("signature", "chain_path_hash", "input_data_hash", "dataset_hash"):
        conn.execute(f"ALTER TABLE artifacts DROP COLUMN {column}")
    conn.execute("DROP INDEX idx_predictions_pipeline")  # DuckDB drops no indexed table's column
    conn.execute("ALTER TABLE predictions DROP COLUMN refit_context")
    conn.execute("CREATE INDEX idx_predictions_pipeline ON predictions(pipeline_id)")
    conn.execute("UPDATE holdall_schema SET version = 1")
    conn.close()
    assert WorkspaceStore.migrate(tmp_path) == 1
    assert _rows(tmp_path, "SELECT max(version) FROM holdall_schema") == [(_schema.SCHEMA_VERSION,)]
    with WorkspaceStore(tmp_path) as store:
        with pytest.raises(UntrustedArtifactError):
            store.load_artifact(trained.scaler_id)
        assert store.load_artifact(trained.scaler_id, trust=True).mean.shape == (3,)
        pid = store.save_prediction(**prediction_fields(trained.pipeline_id, trained.chain_id))
        store.save_prediction_arrays(pid, np.zeros(4), np.zeros(4))
