"""Run nirs4all 0.7.1's own pipeline code on a store: ``<nirs4all python> n4a07_runner.py WS STORE``.

STORE is ``nirs4all`` (its own WorkspaceStore) or ``holdall`` (holdall's, the one change being
the class nirs4all's orchestrator instantiates; holdall and its dependencies must be on
``PYTHONPATH``). It trains a pipeline with ``nirs4all.run``, then ranks, replays the best
chain and exports and predicts a bundle with nirs4all's own calls, and prints what each gave
as JSON, so that the two stores can be compared.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nirs4all
import nirs4all.pipeline.execution.orchestrator as orchestrator
import numpy as np
from nirs4all.pipeline.bundle import BundleLoader
from sklearn.cross_decomposition import PLSRegression
from sklearn.model_selection import KFold
from sklearn.preprocessing import MinMaxScaler


def main(workspace: str, store_kind: str) -> None:
    replay_options = {}
    if store_kind == "holdall":
        from holdall.workspace import WorkspaceStore

        orchestrator.WorkspaceStore = WorkspaceStore
        replay_options = {"trust": True}  # nirs4all's registry wrote these pickles, unsigned
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 30)).cumsum(axis=1)
    y = 2 + X[:, 5] - 0.5 * X[:, 20] + rng.normal(scale=0.1, size=60)
    pipeline = [MinMaxScaler(), KFold(n_splits=3), {"model": PLSRegression(n_components=4)}]
    result = nirs4all.run(pipeline=pipeline, dataset=(X, y), workspace_path=workspace, verbose=0)
    store = result._runner.store
    X_new = rng.normal(size=(5, 30)).cumsum(axis=1)
    chain_id = next(c for c in store.query_predictions()["chain_id"].to_list() if c)
    bundle = result.export(Path(workspace) / "best.n4a")
    print(
        json.dumps(
            {
                "store": type(store).__module__,
                "num_predictions": result.num_predictions,
                "stored_predictions": store.query_predictions().height,
                "top": [[p["fold_id"], p["partition"], p["val_score"]] for p in result.top(5)],
                "replay": store.replay_chain(chain_id, X_new, **replay_options).tolist(),
                "bundle": np.asarray(BundleLoader(bundle).predict(X_new)).tolist(),
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
