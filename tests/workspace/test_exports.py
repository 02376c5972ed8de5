"""Exports (bundle, script, JSON, YAML, Parquet), replay without a workspace, and vacuum."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import yaml

from holdall.errors import (
    ClosedWorkspaceError,
    CorruptedFileError,
    IntegrityError,
    InvalidValueError,
    KeyNotFoundError,
)
from holdall.workspace import WorkspaceStore, replay_chain
from tests.workspace.conftest import REPO, Trained, prediction_fields, run_worker
from tests.workspace.ws_models import WavelengthShift


def test_replay_in_workspace_averages_fold_models(store: WorkspaceStore, trained: Trained) -> None:
    X = trained.X[:5]
    np.testing.assert_allclose(replay_chain(store, trained.chain_id, X), trained.expected(X))
    assert store.replay_chain(trained.chain_id, X).shape == (5,)
    with pytest.raises(InvalidValueError):
        replay_chain(store, None, X)
    with pytest.raises(InvalidValueError):
        replay_chain(store, trained.chain_id)


def test_wavelength_aware_steps_receive_wavelengths(
    store: WorkspaceStore, trained: Trained
) -> None:
    shift = store.save_artifact(
        WavelengthShift(), "ws_models.WavelengthShift", "transformer", "cloudpickle"
    )
    chain = store.get_chain(trained.chain_id)
    assert chain is not None
    steps = [{"step_idx": 0, "operator_class": "Shift", "params": {}, "artifact_id": shift, "stateless": False},
             {**chain["steps"][0], "step_idx": 1}, {**chain["steps"][1], "step_idx": 2}]  # fmt: skip
    chain_id = store.save_chain(trained.pipeline_id, steps, 2, "Ridge", "Shift>Scaler", "per_fold",
                                trained.fold_ids, {"1": trained.scaler_id})  # fmt: skip
    wavelengths = np.array([1.0, 2.0, 3.0])
    got = store.replay_chain(chain_id, trained.X, wavelengths=wavelengths)
    np.testing.assert_allclose(got, trained.expected(trained.X + wavelengths))


def test_bundle_replays_in_another_process_without_workspace(
    store: WorkspaceStore, trained: Trained, tmp_path: Path
) -> None:
    bundle = store.export_chain(trained.chain_id, tmp_path / "out" / "best")
    assert bundle.name == "best.n4a"
    with zipfile.ZipFile(bundle) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert set(manifest["artifacts"]) == {trained.scaler_id, *trained.fold_ids.values()}
    x_file, out_file = tmp_path / "out" / "X.npy", tmp_path / "out" / "y.npy"
    np.save(x_file, trained.X)
    result = run_worker("replay", str(bundle), str(x_file), str(out_file))
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(out_file), trained.expected(trained.X))
    np.testing.assert_allclose(
        replay_chain(bundle, trained.chain_id, trained.X), trained.expected(trained.X)
    )
    with pytest.raises(KeyNotFoundError):
        replay_chain(bundle, "another-chain", trained.X)


def test_tampered_or_foreign_bundle_is_refused(
    store: WorkspaceStore, trained: Trained, tmp_path: Path
) -> None:
    bundle = store.export_chain(trained.chain_id, tmp_path / "b.n4a")
    tampered = tmp_path / "t.n4a"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(tampered, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(
                item,
                data[:-1] + bytes([data[-1] ^ 1])
                if item.filename.startswith("artifacts/")
                else data,
            )
    with pytest.raises(IntegrityError):
        replay_chain(tampered, X=trained.X)
    (tmp_path / "junk.n4a").write_bytes(b"not a zip")
    with pytest.raises(CorruptedFileError):
        replay_chain(tmp_path / "junk.n4a", X=trained.X)


def test_script_export_runs_standalone(
    store: WorkspaceStore, trained: Trained, tmp_path: Path
) -> None:
    script = store.export_chain(trained.chain_id, tmp_path / "model", format="n4a.py")
    assert script.name == "model.n4a.py"
    assert "holdall" not in "".join(
        line for line in script.read_text().splitlines() if line.startswith(("import", "from"))
    )
    np.save(tmp_path / "X.npy", trained.X)
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "X.npy"), str(tmp_path / "y.npy")],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},  # for the test's model classes only
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), trained.expected(trained.X))
    with pytest.raises(InvalidValueError):
        store.export_chain(trained.chain_id, tmp_path / "m", format="zip")


def test_pipeline_config_and_run_exports(
    store: WorkspaceStore, trained: Trained, tmp_path: Path
) -> None:
    config = store.export_pipeline_config(trained.pipeline_id, tmp_path / "config")
    assert config.suffix == ".json"
    assert json.loads(config.read_text()) == {"steps": ["Scaler", "Ridge"]}
    store.complete_run(trained.run_id, {"best": 1.5})
    run_file = store.export_run(trained.run_id, tmp_path / "run.yaml")
    document = yaml.safe_load(run_file.read_text())
    assert document["run_id"] == trained.run_id
    assert document["summary"] == {"best": 1.5}
    assert document["pipelines"][0]["chains"][0]["chain_id"] == trained.chain_id
    assert document["pipelines"][0]["chains"][0]["fold_artifacts"] == trained.fold_ids


def test_parquet_export_uses_query_filters(
    store: WorkspaceStore, trained: Trained, tmp_path: Path
) -> None:
    for i, fold in enumerate(("0", "1", "1")):
        store.save_prediction(
            **prediction_fields(
                trained.pipeline_id, trained.chain_id, fold_id=fold, model_name=f"m{i}"
            )
        )
    path = store.export_predictions_parquet(tmp_path / "preds", fold_id="1", run_id=trained.run_id)
    assert path.suffix == ".parquet"
    frame = pl.read_parquet(path)
    assert frame.height == 2
    assert set(frame["fold_id"]) == {"1"}
    assert frame.columns == store.query_predictions().columns


def test_vacuum_shrinks_the_file_and_keeps_data(tmp_path: Path) -> None:
    with WorkspaceStore(tmp_path) as store:
        trained = Trained(store)
        keep = store.save_prediction(
            **prediction_fields(trained.pipeline_id, trained.chain_id, n_samples=2000)
        )
        store.save_prediction_arrays(keep, np.arange(2000.0), np.arange(2000.0))
        run2 = store.begin_run("big", {}, [])
        pipeline2 = store.begin_pipeline(run2, "p", {}, [], "wheat", "h")
        rng = np.random.default_rng(0)
        store.save_predictions([{**prediction_fields(pipeline2, None, n_samples=2000),
                                 "y_true": rng.random(2000), "y_pred": rng.random(2000)} for _ in range(300)])  # fmt: skip
        store._session.release()  # checkpoint into the file
        store.delete_run(run2)
        store._session.release()
        db = tmp_path / "store.duckdb"
        before = db.stat().st_size
        store.vacuum()
        after = db.stat().st_size
        assert after < before / 2
        record = store.get_prediction(keep, load_arrays=True)
        assert record is not None
        np.testing.assert_array_equal(record["y_true"], np.arange(2000.0))
        store.begin_run("after-vacuum", {}, [])
        assert store.list_runs().height == 2
        assert not list(tmp_path.glob(".store.vacuum*"))


def test_bulk_arrays_stream_in_batches(store: WorkspaceStore, trained: Trained) -> None:
    from holdall.errors import InvalidValueError

    records = [
        {**prediction_fields(trained.pipeline_id, None), "y_true": np.arange(4.0) + i,
         "y_pred": np.arange(4, dtype=np.int16)}
        for i in range(25)
    ]  # fmt: skip
    ids = store.save_predictions(records)
    batches = list(store.iter_prediction_arrays(batch_size=10))
    assert [len(b) for b in batches] == [10, 10, 5]
    streamed = {pid: arrays for batch in batches for pid, arrays in batch.items()}
    whole = store.load_prediction_arrays()
    assert streamed.keys() == whole.keys() == set(ids)
    for pid in ids:
        for name in ("y_true", "y_pred"):
            np.testing.assert_array_equal(streamed[pid][name], whole[pid][name])
            assert streamed[pid][name].dtype == whole[pid][name].dtype
    some = list(store.iter_prediction_arrays(ids[:3], batch_size=2))
    assert {pid for batch in some for pid in batch} == set(ids[:3])
    with pytest.raises(InvalidValueError):
        next(store.iter_prediction_arrays(batch_size=0))


def _six_predictions_streamed(
    store: WorkspaceStore, trained: Trained
) -> tuple[list[dict[str, Any]], Iterator[dict[str, dict[str, np.ndarray | None]]]]:
    """Six stored predictions (their records) and a stream of their arrays in batches of 2."""
    records = [
        {**prediction_fields(trained.pipeline_id, None), "y_true": np.arange(4.0) + i}
        for i in range(6)
    ]
    store.save_predictions(records)
    return records, store.iter_prediction_arrays(batch_size=2)


def test_the_iterating_thread_uses_the_store_while_a_stream_is_open(
    store: WorkspaceStore, trained: Trained
) -> None:
    """Reads and writes between two batches (a query on the stream's connection ended it)."""
    from holdall.errors import InvalidValueError

    records, stream = _six_predictions_streamed(store, trained)
    seen = dict(next(stream))
    assert store.query_predictions().height == 6
    added = store.save_predictions(records[:1])[0]
    with pytest.raises(InvalidValueError, match="stream is still being read"):
        store.vacuum()
    for batch in stream:
        seen.update(batch)
    assert len(seen) == 6  # the stream reads what was stored when it began
    assert added not in seen
    store.vacuum()  # the stream is done
    assert store.query_predictions().height == 7


def test_other_threads_use_the_store_while_a_stream_is_paused(
    store: WorkspaceStore, trained: Trained
) -> None:
    """A paused stream holds no lock of its thread: other threads' calls, close included, run."""
    records, stream = _six_predictions_streamed(store, trained)
    seen = dict(next(stream))
    outcome: list[object] = []

    def other_thread() -> None:
        try:
            outcome.append(store.save_predictions(records[:1])[0])
            outcome.append(store.query_predictions().height)
        except Exception as err:  # reported by the assertion below
            outcome.append(err)

    worker = threading.Thread(target=other_thread)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "the other thread waited for the paused stream"
    assert outcome[1:] == [7], outcome
    for batch in stream:
        seen.update(batch)
    assert len(seen) == 6
    stream = store.iter_prediction_arrays(batch_size=2)
    next(stream)
    closer = threading.Thread(target=store.close)
    closer.start()
    closer.join(timeout=30)
    assert not closer.is_alive(), "close() from another thread waited for the paused stream"
    with pytest.raises(ClosedWorkspaceError):
        next(stream)


def test_closing_the_store_ends_a_half_read_stream(
    store: WorkspaceStore, trained: Trained, tmp_path: Path
) -> None:
    """A stream left half read does not keep the file open after close(), nor read on."""
    _records, stream = _six_predictions_streamed(store, trained)
    assert len(next(stream)) == 2
    store.close()
    # The paused stream, still referenced, no longer holds the file: this process and
    # another open it.
    other = run_worker("count", str(tmp_path / "ws"))
    assert other.returncode == 0, other.stderr
    assert other.stdout.split()[-1] == "6"
    with WorkspaceStore(tmp_path / "ws") as again:
        assert again.query_predictions().height == 6
    with pytest.raises(ClosedWorkspaceError):
        next(stream)
