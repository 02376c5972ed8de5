"""Write a nirs4all 1.4.x workspace (``store.sqlite`` + ``arrays/``) with nirs4all itself.

Run in the environment of nirs4all's latest release (no holdall import), from the
repository root::

    benchmarks/.envs/n4alatest/bin/python tests/workspace/n4a14_writer.py OUT

It trains a regression pipeline (with ``y_processing``) and a classification pipeline with
``nirs4all.run``; then, through nirs4all's own ``WorkspaceStore``, it adds a pipeline the
way nirs4all's executor API does (artifacts, a per-fold chain, predictions with int labels
and 2-D probabilities in ``arrays/``), logs a step, creates a project, deletes one
prediction (which leaves a tombstone in ``arrays/``) and replays every chain on new data.
It writes OUT/ws (the workspace), OUT/X_new.npy, OUT/replay.json (``{chain_id:
predictions}`` from nirs4all's ``replay_chain``, or the error it raised: 1.4.10 cannot
replay the chains its own dag-ml runner writes) and OUT/records.json (what nirs4all's
store returns for every record, to compare the import with). The files in
``fixtures/nirs4all-1.4-workspace`` were written by this script.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import nirs4all
import numpy as np
from nirs4all.pipeline.storage import WorkspaceStore
from sklearn.cross_decomposition import PLSRegression
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold
from sklearn.preprocessing import MinMaxScaler, StandardScaler


def _plain(value: Any) -> Any:
    """A JSON-able copy (arrays as lists, timestamps as text)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _replay(store: WorkspaceStore, chain_id: str, X: np.ndarray) -> Any:
    try:
        return store.replay_chain(chain_id, X).tolist()
    except Exception as err:  # recorded: what nirs4all itself does with this chain
        return {"error": f"{type(err).__name__}: {err}"}


def _executor_pipeline(store: WorkspaceStore, X: np.ndarray, y: np.ndarray,
                       labels: np.ndarray) -> None:  # fmt: skip
    """A run written call by call, as nirs4all's executor writes one."""
    run = store.begin_run("api-run", {"cv": 2}, [{"name": "wheat", "hash": "h1"}])
    pipeline = store.begin_pipeline(run, "0001_ridge", {"steps": ["StandardScaler", "Ridge"]},
                                    [{"alpha": 0.5}], "wheat", "h1")  # fmt: skip
    scaler = StandardScaler().fit(X)
    scaler_id = store.save_artifact(scaler, "sklearn.preprocessing.StandardScaler",
                                    "transformer", "joblib")  # fmt: skip
    Xs = scaler.transform(X)
    folds = {f"fold_{k}": store.save_artifact(Ridge(alpha=0.5).fit(Xs[k::2], y[k::2]),
                                              "sklearn.linear_model.Ridge", "model", "joblib")
             for k in range(2)}  # fmt: skip
    steps = [
        {"step_idx": 0, "operator_class": "StandardScaler", "params": {}, "artifact_id": scaler_id,
         "stateless": False},
        {"step_idx": 1, "operator_class": "Ridge", "params": {"alpha": 0.5}, "artifact_id": None,
         "stateless": False},
    ]  # fmt: skip
    chain = store.save_chain(pipeline, steps, 1, "sklearn.linear_model.Ridge", "StandardScaler",
                             "per_fold", folds, {"0": [scaler_id]}, dataset_name="wheat")  # fmt: skip
    batch = []
    for fold in ("fold_0", "fold_1"):
        for partition, score in (("val", 0.3), ("test", 0.4)):
            pid = store.save_prediction(
                pipeline, chain, "wheat", "Ridge", "sklearn.linear_model.Ridge", fold, partition,
                score, score + 0.1, 0.05, "rmse", "regression", 30, 20,
                {partition: {"rmse": score}}, {"alpha": 0.5}, None, None, 0, 0.0,
                preprocessings="StandardScaler",
            )  # fmt: skip
            batch.append({"prediction_id": pid, "dataset_name": "wheat", "model_name": "Ridge",
                          "fold_id": fold, "partition": partition, "metric": "rmse",
                          "val_score": score, "task_type": "regression", "y_true": y[:30],
                          "y_pred": y[:30] + 0.25, "sample_indices": np.arange(30),
                          "weights": np.ones(30)})  # fmt: skip
    pid = store.save_prediction(
        pipeline, chain, "wheat", "Logit", "sklearn.linear_model.LogisticRegression", "final",
        "test", None, 0.9, None, "accuracy", "classification", 10, 20, {}, {}, 1, "b1", 2, 0.1,
        preprocessings="StandardScaler", refit_context="standalone",
    )  # fmt: skip
    batch.append({"prediction_id": pid, "dataset_name": "wheat", "model_name": "Logit",
                  "fold_id": "final", "partition": "test", "metric": "accuracy", "val_score": None,
                  "task_type": "classification", "y_true": labels[:10], "y_pred": labels[:10][::-1],
                  "y_proba": np.linspace(0, 1, 20).reshape(10, 2)})  # fmt: skip
    store.array_store.save_batch(batch)
    store.log_step(pipeline, 1, "Ridge", "end", duration_ms=30, message="slow")
    store.complete_pipeline(pipeline, 0.3, 0.4, "rmse", 42)
    failed = store.begin_pipeline(run, "0002_broken", {}, [], "wheat", "h1")
    store.fail_pipeline(failed, "ValueError: bad")
    store.complete_run(run, {"best": 0.3})


def main(out: str) -> None:
    target = Path(out).resolve()
    target.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.TemporaryDirectory()
    os.chdir(scratch.name)  # nirs4all may also write a workspace/ in the working directory
    workspace = target / "ws"
    rng = np.random.default_rng(5)
    X = rng.normal(size=(60, 20)).cumsum(axis=1)
    y = 2.0 + X[:, 3] - 0.5 * X[:, 12] + rng.normal(scale=0.1, size=60)
    labels = (X[:, 3] > np.median(X[:, 3])).astype(np.int64)
    nirs4all.run(pipeline=[MinMaxScaler(), {"y_processing": StandardScaler()}, KFold(n_splits=3),
                           {"model": PLSRegression(n_components=3)}],
                 dataset=(X, y), workspace_path=str(workspace), verbose=0)  # fmt: skip
    nirs4all.run(pipeline=[StandardScaler(), KFold(n_splits=2),
                           {"model": LogisticRegression(max_iter=200)}],
                 dataset=(X, labels), workspace_path=str(workspace), verbose=0)  # fmt: skip
    X_new = rng.normal(size=(12, 20)).cumsum(axis=1)
    np.save(target / "X_new.npy", X_new)
    store = WorkspaceStore(workspace)
    _executor_pipeline(store, X, y, labels)
    runs = store.list_runs().to_dicts()
    pipelines = store.list_pipelines().to_dicts()
    store.log_step(pipelines[0]["pipeline_id"], 0, "MinMaxScaler", "fit", duration_ms=3,
                   message="fitted", details={"n": 60}, level="warning")  # fmt: skip
    store.set_run_project(runs[0]["run_id"], store.create_project("wheat study"))
    predictions = store.query_predictions().to_dicts()
    store.delete_prediction(predictions[-1]["prediction_id"])
    chains = [
        c for p in pipelines for c in store.get_chains_for_pipeline(p["pipeline_id"]).to_dicts()
    ]
    replay = {c["chain_id"]: _replay(store, c["chain_id"], X_new) for c in chains}
    records = {
        "runs": [_plain(store.get_run(r["run_id"])) for r in runs],
        "pipelines": [_plain(store.get_pipeline(p["pipeline_id"])) for p in pipelines],
        "chains": [_plain(store.get_chain(c["chain_id"])) for c in chains],
        "predictions": [_plain(store.get_prediction(p["prediction_id"], load_arrays=True))
                        for p in store.query_predictions().to_dicts()],
        "logs": [_plain(r) for p in pipelines
                 for r in store.get_pipeline_log(p["pipeline_id"]).to_dicts()],
        "deleted_prediction": predictions[-1]["prediction_id"],
    }  # fmt: skip
    store.close()
    (target / "replay.json").write_text(json.dumps(replay))
    (target / "records.json").write_text(json.dumps(records))


if __name__ == "__main__":
    main(*sys.argv[1:])
