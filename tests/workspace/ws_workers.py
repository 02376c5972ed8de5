"""Worker processes for the multi-process workspace tests: ``python ws_workers.py COMMAND ...``.

Each command opens the workspace given as first argument in this (separate) process, so
the tests exercise the real inter-process lock and DuckDB's one-writer-process rule.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from holdall.workspace import ChainBuilder, WorkspaceStore, replay_chain
from tests.start_line import ready_and_wait


def _fields(pipeline_id: str, i: int, tag: str) -> dict[str, object]:
    return {
        "pipeline_id": pipeline_id, "chain_id": None, "dataset_name": "wheat", "model_name": tag,
        "model_class": "Ridge", "fold_id": str(i), "partition": "val", "val_score": float(i),
        "test_score": None, "train_score": None, "metric": "rmse", "task_type": "regression",
        "n_samples": 8, "n_features": 2, "scores": {}, "best_params": {}, "branch_id": None,
        "branch_name": None, "exclusion_count": 0, "exclusion_rate": 0.0,
    }  # fmt: skip


def write(path: str, pipeline_id: str, tag: str, count: str) -> None:
    """Save `count` predictions one at a time, reopening between batches to interleave."""
    n = int(count)
    for start in range(0, n, 10):
        with WorkspaceStore(path, lock_timeout=60, flush_every=5) as store:
            for i in range(start, min(start + 10, n)):
                pid = store.save_prediction(**_fields(pipeline_id, i, tag))  # type: ignore[arg-type]
                store.save_prediction_arrays(pid, np.full(8, i, dtype=np.int32), np.full(8, i / 2))


def read(path: str, seconds: str) -> None:
    """Read counts repeatedly in read-only mode; print how many reads succeeded."""
    deadline = time.monotonic() + float(seconds)
    reads = 0
    while time.monotonic() < deadline:
        with WorkspaceStore(path, read_only=True, lock_timeout=60) as store:
            frame = store.query_predictions()
            if frame.height and not (frame["n_samples"] == 8).all():
                raise SystemExit("inconsistent read")
            reads += 1
    print(reads)


def count(path: str) -> None:
    """Print how many predictions a read-only store sees."""
    with WorkspaceStore(path, read_only=True, lock_timeout=30) as store:
        print(store.query_predictions().height)


def hold(path: str, seconds: str) -> None:
    """Hold the workspace in exclusive mode for `seconds`, then close."""
    with WorkspaceStore(path, exclusive=True):
        print("holding", flush=True)
        time.sleep(float(seconds))


def crash_loop(path: str, pipeline_id: str) -> None:
    """Write batches and artifacts forever (exclusive mode) until killed with SIGKILL."""
    with WorkspaceStore(path, exclusive=True) as store:
        batch = 0
        while True:
            records = [{**_fields(pipeline_id, i, f"b{batch}"), "y_true": np.arange(8.0),
                        "y_pred": np.arange(8.0)} for i in range(50)]  # fmt: skip
            store.save_predictions(records)
            store.save_artifact(np.full(50_000, batch, dtype=np.float64), "np", "array", "npy")
            print(batch, flush=True)
            batch += 1


def gc_crash(path: str) -> None:
    """Make three artifacts collectable, then die by SIGKILL just after gc removes a file."""
    from holdall.workspace import ChainBuilder
    from holdall.workspace._artifacts import ArtifactFiles

    with WorkspaceStore(path, exclusive=True) as store:
        run_id = store.begin_run("doomed", {}, [])
        pipeline_id = store.begin_pipeline(run_id, "p", {}, [], "wheat", "h")
        ids = [store.save_artifact(np.full(10, k), "np", "array", "npy") for k in range(3)]
        store.save_chain(pipeline_id, **ChainBuilder().add_model("M", dict(enumerate(ids))).build())
        store.delete_run(run_id, delete_artifacts=False)  # rows at ref_count 0, files kept
        remove = ArtifactFiles.remove

        def remove_then_die(self: ArtifactFiles, relative: str) -> bool:
            removed = remove(self, relative)
            os.kill(os.getpid(), signal.SIGKILL)
            return removed

        ArtifactFiles.remove = remove_then_die  # type: ignore[method-assign]
        print(" ".join(ids), flush=True)
        store.gc_artifacts()


def unpaired(path: str, pipeline_id: str) -> None:
    """Save a flushed pair, then a prediction whose arrays never come; wait to be killed."""
    with WorkspaceStore(path, flush_interval=0.02) as store:
        first = store.save_prediction(**_fields(pipeline_id, 0, "paired"))  # type: ignore[arg-type]
        store.save_prediction_arrays(first, np.arange(8), np.arange(8.0))
        store.flush()
        store.save_prediction(**_fields(pipeline_id, 1, "unpaired"))  # type: ignore[arg-type]
        print(first, flush=True)
        time.sleep(60)


def chain_first(path: str, pipeline_id: str) -> None:
    """Save a chain before its artifact (nirs4all's executor order), then wait to be killed."""
    with WorkspaceStore(path, flush_interval=0.02) as store:
        chain_id = store.save_chain(
            pipeline_id, **ChainBuilder().add_model("Ridge", {"0": "fold:0"}).build()
        )
        print(chain_id, flush=True)
        time.sleep(60)


def exit_unclosed(path: str, pipeline_id: str, commit: str) -> None:
    """Buffer five predictions and exit without closing the store; `commit` ``fails`` makes
    the commit at exit fail (as on a full disk)."""
    store = WorkspaceStore(path, flush_every=1000, flush_interval=3600)
    for i in range(5):
        pid = store.save_prediction(**_fields(pipeline_id, i, "unclosed"))  # type: ignore[arg-type]
        store.save_prediction_arrays(pid, np.arange(8), np.arange(8.0))
    if commit == "fails":

        def full_disk(self: WorkspaceStore) -> None:
            raise OSError(28, "No space left on device")

        WorkspaceStore.flush = full_disk  # type: ignore[method-assign]


def share(path: str, pipeline_id: str, tag: str, seconds: str, start_line: str) -> None:
    """Write acknowledged pairs for `seconds` (each a commit that needs the lock) from the
    common start (`tests.start_line` in folder `start_line`); print how many."""
    done = 0
    with WorkspaceStore(path, lock_timeout=60) as store:
        store.list_runs()  # warm up: modules loaded, the schema checked
        deadline = ready_and_wait(Path(start_line), tag) + float(seconds)
        while time.time() < deadline:
            pid = store.save_prediction(**_fields(pipeline_id, done, tag))  # type: ignore[arg-type]
            store.save_prediction_arrays(pid, np.zeros(8), np.zeros(8))
            store.flush()
            done += 1
    print(done)


def replay(bundle: str, x_file: str, out_file: str) -> None:
    """Replay a bundle with no workspace at all and save the predictions."""
    np.save(out_file, replay_chain(bundle, X=np.load(x_file)))
    if any(p.name == "store.duckdb" for p in Path(bundle).parent.rglob("*")):
        raise SystemExit("a workspace was created")


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    {
        "write": write,
        "read": read,
        "count": count,
        "hold": hold,
        "crash_loop": crash_loop,
        "replay": replay,
        "gc_crash": gc_crash,
        "unpaired": unpaired,
        "chain_first": chain_first,
        "share": share,
        "exit_unclosed": exit_unclosed,
    }[command](*arguments)
