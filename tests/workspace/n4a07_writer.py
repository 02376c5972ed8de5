"""Write a workspace with nirs4all 0.7.1 itself: ``<nirs4all venv>/bin/python n4a07_writer.py WS OUT``.

Runs in nirs4all's own environment (no holdall import): the import tests read what this
leaves, exactly as a nirs4all user's workspace would be. It writes WS (the workspace),
OUT/X.npy, OUT/replay.npy (nirs4all's own replay of the chain), OUT/bundle.n4a (its
export) and OUT/ids.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from nirs4all.pipeline.storage import WorkspaceStore

# The fitted objects are the tests' numpy stand-ins for scikit-learn (the holdall side then
# needs no scikit-learn to load them); the caller puts the repository on sys.path.
from tests.workspace.ws_models import Ridge, Scaler


def main(workspace: str, out: str) -> None:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(40, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 3.0]) + 1.0
    store = WorkspaceStore(Path(workspace))
    run = store.begin_run("run-a", {"cv": 2}, [{"name": "wheat", "hash": "h1"}])
    pipeline = store.begin_pipeline(run, "0001_ridge_abc", {"steps": ["SNV", "Ridge"]},
                                    [{"n": 1}], "wheat", "h1")  # fmt: skip
    scaler = Scaler(X)
    scaler_id = store.save_artifact(scaler, "sklearn.preprocessing.StandardScaler",
                                    "transformer", "joblib")  # fmt: skip
    Xs = scaler.transform(X)
    fold_ids = {
        f"fold_{k}": store.save_artifact(Ridge(Xs[k::2], y[k::2], alpha=0.1),
                                         "sklearn.linear_model.Ridge", "model", "joblib")
        for k in range(2)
    }  # fmt: skip
    steps = [
        {"step_idx": 0, "operator_class": "StandardScaler", "params": {}, "artifact_id": scaler_id,
         "stateless": False},
        {"step_idx": 1, "operator_class": "Ridge", "params": {"alpha": 0.1}, "artifact_id": None,
         "stateless": False},
    ]  # fmt: skip
    chain = store.save_chain(pipeline, steps, 1, "sklearn.linear_model.Ridge", "StandardScaler",
                             "per_fold", fold_ids, {"0": scaler_id})  # fmt: skip
    predictions = []
    for k, partition in enumerate(("val", "test", "train")):
        for fold in ("fold_0", "fold_1"):
            pid = store.save_prediction(
                pipeline, chain, "wheat", "Ridge", "sklearn.linear_model.Ridge", fold, partition,
                0.1 + k, 0.2 + k, 0.05, "rmse", "regression", 20, 4, {partition: {"rmse": 0.1}},
                {"alpha": 0.1}, None, None, 0, 0.0, preprocessings="StandardScaler",
            )  # fmt: skip
            store.save_prediction_arrays(pid, y[:20], y[:20] + 0.5,
                                         sample_indices=np.arange(20), weights=np.ones(20))  # fmt: skip
            predictions.append(pid)
    classifier = Ridge(Xs, (y > 1).astype(float))
    cls_id = store.save_artifact(classifier, "sklearn.linear_model.LogisticRegression", "model",
                                 "cloudpickle")  # fmt: skip
    cls_chain = store.save_chain(pipeline, steps, 1, "sklearn.linear_model.LogisticRegression",
                                 "StandardScaler", "per_fold", {"fold_final": cls_id},
                                 {"0": scaler_id}, branch_path=[1], source_index=0)  # fmt: skip
    pid = store.save_prediction(
        pipeline, cls_chain, "wheat", "LogReg", "sklearn.linear_model.LogisticRegression",
        "final", "test", None, 0.9, None, "accuracy", "classification", 10, 4, {}, {}, 1, "b1", 2,
        0.1, preprocessings="StandardScaler", refit_context="standalone",
    )  # fmt: skip
    store.save_prediction_arrays(pid, np.arange(10) % 2, np.arange(10) % 2,
                                 y_proba=rng.random((10, 2)))  # fmt: skip
    predictions.append(pid)
    store.log_step(pipeline, 0, "StandardScaler", "fit", duration_ms=12, details={"n": 40})
    store.log_step(pipeline, 1, "Ridge", "end", duration_ms=30, level="warning", message="slow")
    store.complete_pipeline(pipeline, 0.1, 0.2, "rmse", 42)
    failed = store.begin_pipeline(run, "0002_broken", {}, [], "wheat", "h1")
    store.fail_pipeline(failed, "ValueError: bad")
    store.complete_run(run, {"best": 0.1})
    other = store.begin_run("run-b", {}, [])
    store.fail_run(other, "interrupted")
    np.save(Path(out) / "X.npy", X)
    np.save(Path(out) / "replay.npy", store.replay_chain(chain, X))
    store.export_chain(chain, Path(out) / "bundle.n4a")
    store.close()
    ids = {"runs": [run, other], "pipelines": [pipeline, failed], "chains": [chain, cls_chain],
           "predictions": predictions, "artifacts": [scaler_id, *fold_ids.values(), cls_id]}  # fmt: skip
    (Path(out) / "ids.json").write_text(json.dumps(ids))


if __name__ == "__main__":
    main(*sys.argv[1:])
