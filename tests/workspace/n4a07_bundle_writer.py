"""Write nirs4all 0.7.1 prediction bundles with nirs4all itself, for the replay tests.

Run in nirs4all's own environment (no holdall import), from the repository root::

    benchmarks/.envs/n4a071/bin/python tests/workspace/n4a07_bundle_writer.py OUT

It trains a pipeline with ``nirs4all.run`` (scikit-learn operators only, so that replaying
needs no nirs4all), exports its best prediction with ``RunResult.export`` (the ``.n4a``
bundle a nirs4all user has: ``manifest.json``, ``pipeline.json``, ``fold_weights.json``,
``artifacts/step_*.joblib``), and records nirs4all's own predictions from each bundle:
``BundleLoader(bundle).predict(X)`` and ``nirs4all.predict(model=bundle, data=X)``. It keeps
each run's workspace too (``<name>-ws``, for the import tests) with the chain of the exported
prediction in ``bundles.json``. The files in ``fixtures/nirs4all-0.7.1-bundles`` were written
by this script.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import nirs4all
import numpy as np
from nirs4all.pipeline.bundle import BundleLoader
from sklearn.cross_decomposition import PLSRegression
from sklearn.linear_model import Ridge
from sklearn.model_selection import KFold
from sklearn.preprocessing import MinMaxScaler, StandardScaler

PIPELINES = {
    "cv_pls": [MinMaxScaler(), {"y_processing": StandardScaler()}, KFold(n_splits=3),
               {"model": PLSRegression(n_components=4)}],
    "ridge": [StandardScaler(), KFold(n_splits=2), {"model": Ridge(alpha=0.5)}],
}  # fmt: skip


def _keep_workspace(workspace: Path) -> None:
    """Keep only what an import reads: ``store.duckdb`` (gzipped: mostly empty blocks) and
    ``artifacts/``."""
    with (workspace / "store.duckdb").open("rb") as raw, gzip.open(
        workspace / "store.duckdb.gz", "wb", compresslevel=9
    ) as packed:  # fmt: skip
        shutil.copyfileobj(raw, packed)
    for entry in workspace.iterdir():
        if entry.name not in ("store.duckdb.gz", "artifacts"):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def main(out: str) -> None:
    target = Path(out).resolve()
    target.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.TemporaryDirectory()
    os.chdir(scratch.name)  # nirs4all also writes a workspace/ in the working directory
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 30)).cumsum(axis=1)
    y = 2.0 + X[:, 5] - 0.5 * X[:, 20] + rng.normal(scale=0.1, size=60)
    X_new = rng.normal(size=(15, 30)).cumsum(axis=1)
    np.save(target / "X_new.npy", X_new)
    expected = {}
    for name, pipeline in PIPELINES.items():
        workspace = target / f"{name}-ws"
        shutil.rmtree(workspace, ignore_errors=True)
        result = nirs4all.run(pipeline=pipeline, dataset=(X, y), workspace_path=str(workspace),
                              verbose=0)  # fmt: skip
        bundle = result.export(target / f"{name}.n4a")
        chain_id = result.best["chain_id"]
        result._runner.store.close()
        _keep_workspace(workspace)
        loader = np.asarray(BundleLoader(bundle).predict(X_new), dtype=float)
        api = np.asarray(nirs4all.predict(model=str(bundle), data=X_new, verbose=0).y_pred)
        np.save(target / f"{name}.loader.npy", loader)
        np.save(target / f"{name}.predict.npy", api)
        expected[name] = {"shape": list(loader.shape), "chain_id": chain_id}
    (target / "bundles.json").write_text(
        json.dumps({"nirs4all": nirs4all.__version__, "bundles": expected}, indent=1)
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
