"""Fixtures for the workspace tests: stores on real DuckDB files, and record factories."""

from __future__ import annotations

import gzip
import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from holdall.workspace import ChainBuilder, WorkspaceStore
from tests.workspace.ws_models import Ridge, Scaler

REPO = Path(__file__).resolve().parents[2]
WORKERS = Path(__file__).with_name("ws_workers.py")
WORKER_PATH = os.pathsep.join([str(REPO / "src"), str(REPO)])


def unpack_workspace(workspace: Path) -> Path:
    """Restore a checked-in nirs4all 0.7.x workspace: its ``store.duckdb`` is kept gzipped
    (DuckDB files are mostly empty blocks). Returns `workspace`."""
    packed = workspace / "store.duckdb.gz"
    with gzip.open(packed) as data, (workspace / "store.duckdb").open("wb") as out:
        shutil.copyfileobj(data, out)
    packed.unlink()
    return workspace


def nirs4all_env(name: str) -> tuple[Path, pytest.MarkDecorator]:
    """(python, skip marker) of the nirs4all environment ``benchmarks/.envs/<name>``.

    Tests that run nirs4all itself need it; ``make test`` builds it (`benchmarks.peer_envs`),
    so they run in CI. A bare ``pytest`` without it skips them, saying how to build it.
    """
    python = REPO / "benchmarks" / ".envs" / name / "bin" / "python"
    missing = (
        not python.exists()
        or subprocess.run(
            [str(python), "-c", "import nirs4all.pipeline.storage"],
            capture_output=True,
            check=False,
        ).returncode
        != 0
    )
    reason = (
        f"nirs4all's environment benchmarks/.envs/{name} is not built: `make test` builds it, "
        f"as does `python -m benchmarks.peer_envs {name}`"
    )
    return python, pytest.mark.skipif(missing, reason=reason)


"""A worker imports this checkout's holdall (not whichever one is installed) and the tests."""


_FOLDS = itertools.count()


def prediction_fields(pipeline_id: str, chain_id: str | None, **overrides: Any) -> dict[str, Any]:
    """The keyword arguments of save_prediction, with plausible defaults.

    Each call gets a fold id of its own, so that records are distinct predictions (saving
    one natural key twice replaces the first, as in nirs4all 0.7.1).
    """
    fields: dict[str, Any] = {
        "pipeline_id": pipeline_id, "chain_id": chain_id, "dataset_name": "wheat",
        "model_name": "PLS-5", "model_class": "sklearn.cross_decomposition.PLSRegression",
        "fold_id": str(next(_FOLDS)), "partition": "val", "val_score": 0.5, "test_score": 0.6,
        "train_score": 0.4, "metric": "rmse", "task_type": "regression", "n_samples": 4,
        "n_features": 3, "scores": {"val": {"rmse": 0.5}}, "best_params": {"n_components": 5},
        "branch_id": None, "branch_name": None, "exclusion_count": 0, "exclusion_rate": 0.0,
        "preprocessings": "SNV>MinMax",
    }  # fmt: skip
    fields.update(overrides)
    return fields


@pytest.fixture
def store(tmp_path: Path) -> Iterator[WorkspaceStore]:
    """A fresh read-write workspace, closed after the test."""
    with WorkspaceStore(tmp_path / "ws", lock_timeout=20) as opened:
        yield opened


class Trained:
    """A run with one pipeline and one fitted chain (scaler + two fold models)."""

    def __init__(self, store: WorkspaceStore, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.X = rng.normal(size=(40, 3))
        self.y = self.X @ np.array([1.0, -2.0, 0.5]) + 3.0
        self.run_id = store.begin_run("run-a", {"cv": 2}, [{"name": "wheat", "hash": "h1"}])
        self.pipeline_id = store.begin_pipeline(
            self.run_id, "0001_pls_abc", {"steps": ["Scaler", "Ridge"]}, [{"n": 1}], "wheat", "h1"
        )
        scaler = Scaler(self.X)
        Xs = scaler.transform(self.X)
        self.scaler_id = store.save_artifact(
            scaler, "ws_models.Scaler", "transformer", "cloudpickle"
        )
        self.fold_ids = {
            str(k): store.save_artifact(
                Ridge(Xs[k::2], self.y[k::2]), "ws_models.Ridge", "model", "joblib"
            )
            for k in range(2)
        }
        chain = ChainBuilder().add_step("ws_models.Scaler", artifact_id=self.scaler_id)
        self.chain_id = store.save_chain(
            self.pipeline_id, **chain.add_model("ws_models.Ridge", self.fold_ids).build()
        )
        self.scaler = scaler
        self.models = [Ridge(Xs[k::2], self.y[k::2]) for k in range(2)]

    def expected(self, X: np.ndarray) -> np.ndarray:
        """What replaying the chain must give: the fold models' mean on scaled X."""
        Xs = self.scaler.transform(X)
        return np.mean([m.predict(Xs) for m in self.models], axis=0)


@pytest.fixture
def trained(store: WorkspaceStore) -> Trained:
    """The store with one trained chain."""
    return Trained(store)


def run_worker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ws_workers.py in a fresh interpreter (a real second process) and wait for it."""
    return subprocess.run(
        [sys.executable, str(WORKERS), *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHONPATH": WORKER_PATH}, check=False,
    )  # fmt: skip


def start_worker(*args: str) -> subprocess.Popen[str]:
    """Start ws_workers.py in a fresh interpreter without waiting."""
    return subprocess.Popen(
        [sys.executable, str(WORKERS), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "PYTHONPATH": WORKER_PATH},
    )  # fmt: skip
