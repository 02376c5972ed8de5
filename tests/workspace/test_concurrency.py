"""Several real processes on one workspace: no corruption, no lost write, bounded waits, crashes."""

from __future__ import annotations

import gc
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from holdall.errors import WorkspaceLockedError
from holdall.workspace import WorkspaceStore
from tests.start_line import go_when_ready
from tests.workspace.conftest import Trained, prediction_fields, run_worker, start_worker


def _setup(path: Path) -> tuple[str, str]:
    with WorkspaceStore(path) as store:
        trained = Trained(store)
        return trained.run_id, trained.pipeline_id


def test_two_writer_processes_lose_nothing(tmp_path: Path) -> None:
    _run_id, pipeline_id = _setup(tmp_path)
    writers = [start_worker("write", str(tmp_path), pipeline_id, tag, "40") for tag in ("a", "b")]
    for writer in writers:
        _out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    with WorkspaceStore(tmp_path, read_only=True) as store:
        frame = store.query_predictions(pipeline_id=pipeline_id)
        assert sorted(frame.group_by("model_name").len().rows()) == [("a", 40), ("b", 40)]
        arrays = store.load_prediction_arrays()
        assert len(arrays) == 80
        assert all(a["y_true"].dtype == np.int32 for a in arrays.values())


def test_readers_read_while_a_writer_works(tmp_path: Path) -> None:
    _run_id, pipeline_id = _setup(tmp_path)
    writer = start_worker("write", str(tmp_path), pipeline_id, "w", "60")
    readers = [start_worker("read", str(tmp_path), "3") for _ in range(2)]
    for reader in readers:
        out, err = reader.communicate(timeout=120)
        assert reader.returncode == 0, err
        assert int(out.split()[-1]) >= 1
    _out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err
    with WorkspaceStore(tmp_path, read_only=True) as store:
        assert store.query_predictions().height == 60


def test_shared_store_hands_over_to_another_process(tmp_path: Path) -> None:
    _run_id, pipeline_id = _setup(tmp_path)
    with WorkspaceStore(tmp_path) as store:
        store.begin_run("held", {}, [])  # this process now holds the lease
        result = run_worker("write", str(tmp_path), pipeline_id, "other", "10")
        assert result.returncode == 0, result.stderr
        assert store.query_predictions(pipeline_id=pipeline_id).height == 10


def test_hand_over_commits_the_buffer_first(tmp_path: Path) -> None:
    _run_id, pipeline_id = _setup(tmp_path)
    with WorkspaceStore(tmp_path, flush_every=1000, flush_interval=3600) as store:
        paired = store.save_prediction(**prediction_fields(pipeline_id, None))  # buffered
        store.save_prediction_arrays(paired, np.zeros(4), np.zeros(4))
        # The last prediction awaits its arrays: a hand-over keeps it back, so the pair
        # always commits together.
        store.save_prediction(**prediction_fields(pipeline_id, None))
        result = run_worker("count", str(tmp_path))
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["1"]
        store.flush()  # an explicit flush commits everything
        result = run_worker("count", str(tmp_path))
        assert result.stdout.split() == ["2"]


def test_exclusive_holder_makes_others_wait_then_fail(tmp_path: Path) -> None:
    _setup(tmp_path)
    holder = start_worker("hold", str(tmp_path), "30")
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "holding"
    try:
        started = time.monotonic()
        with pytest.raises(WorkspaceLockedError) as info:
            WorkspaceStore(tmp_path, lock_timeout=0.3)
        assert time.monotonic() - started < 20
        assert f"pid {holder.pid}" in str(info.value)
        assert "alive" in str(info.value)
        assert info.value.waited_s is not None
        assert info.value.waited_s >= 0.3
    finally:
        holder.kill()
        holder.communicate()
    # The kernel released the dead holder's lock: the stale lock does not block.
    with WorkspaceStore(tmp_path, lock_timeout=10) as store:
        assert store.list_runs().height == 1


def test_sigkill_mid_transaction_leaves_a_consistent_workspace(tmp_path: Path) -> None:
    run_id, pipeline_id = _setup(tmp_path)
    crasher = start_worker("crash_loop", str(tmp_path), pipeline_id)
    assert crasher.stdout is not None
    for _ in range(3):  # let a few batches commit, then kill it wherever it is
        crasher.stdout.readline()
    time.sleep(0.05)
    crasher.send_signal(signal.SIGKILL)
    crasher.communicate()
    assert crasher.returncode == -signal.SIGKILL

    with WorkspaceStore(tmp_path, lock_timeout=10) as store:
        frame = store.query_predictions(pipeline_id=pipeline_id)
        counts = dict(frame.group_by("model_name").len().rows())
        assert len(counts) >= 3
        assert set(counts.values()) == {50}
        arrays = store.load_prediction_arrays()
        assert set(arrays) == set(frame["prediction_id"].to_list())  # every committed array kept
        # No row points to a missing file; every chain reference has a row.
        with store._session.connection() as conn:
            paths = [r[0] for r in conn.execute("SELECT artifact_path FROM artifacts").fetchall()]
            refs = conn.execute("SELECT DISTINCT unnest(artifact_ids) FROM chains").fetchall()
            ids = {r[0] for r in conn.execute("SELECT artifact_id FROM artifacts").fetchall()}
        assert all((tmp_path / "artifacts" / p).is_file() for p in paths)
        assert {r[0] for r in refs} <= ids
        for artifact_id in ids:
            store.load_artifact(artifact_id)  # checksums hold
        files_before = sum(1 for p in (tmp_path / "artifacts").rglob("*") if p.is_file())
        removed = store.gc_artifacts()
        files_after = sum(1 for p in (tmp_path / "artifacts").rglob("*") if p.is_file())
        assert files_after == len(paths)
        assert files_before - files_after == removed
        assert store.get_run(run_id) is not None
        store.begin_run("after-crash", {}, [])  # still writable


def test_a_store_never_closed_commits_its_buffer_at_interpreter_exit(tmp_path: Path) -> None:
    _run_id, pipeline_id = _setup(tmp_path)
    result = run_worker("exit_unclosed", str(tmp_path), pipeline_id, "works")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    with WorkspaceStore(tmp_path, read_only=True) as store:
        assert (
            store.query_predictions(pipeline_id=pipeline_id)["model_name"].to_list()
            == ["unclosed"] * 5
        )
        assert len(store.load_prediction_arrays()) == 5


def test_a_store_never_closed_commits_its_buffer_when_collected(tmp_path: Path) -> None:
    """Once another process has taken the workspace over, nothing keeps such a store alive."""
    _run_id, pipeline_id = _setup(tmp_path)

    def save_and_forget() -> None:
        store = WorkspaceStore(tmp_path, flush_interval=3600)
        # Without its arrays yet, the prediction stays buffered through the hand-over.
        store.save_prediction(**prediction_fields(pipeline_id, None))
        other = run_worker("count", str(tmp_path))
        assert other.returncode == 0, other.stderr
        assert other.stdout.split()[-1] == "0"

    save_and_forget()
    gc.collect()
    with WorkspaceStore(tmp_path, read_only=True) as store:
        assert store.query_predictions(pipeline_id=pipeline_id).height == 1


def test_a_commit_failing_at_interpreter_exit_is_reported(tmp_path: Path) -> None:
    _run_id, pipeline_id = _setup(tmp_path)
    result = run_worker("exit_unclosed", str(tmp_path), pipeline_id, "fails")
    assert "holdall could not close WorkspaceStore(" in result.stderr, result.stderr
    assert "No space left on device" in result.stderr
    with WorkspaceStore(tmp_path, read_only=True) as store:  # nothing half-written
        assert store.query_predictions(pipeline_id=pipeline_id).height == 0
        assert store.load_prediction_arrays() == {}


def test_two_stores_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    with WorkspaceStore(tmp_path, exclusive=True) as first:
        first.begin_run("r", {}, [])
        with pytest.raises(WorkspaceLockedError):
            WorkspaceStore(tmp_path, lock_timeout=0.1)
    with WorkspaceStore(tmp_path, lock_timeout=1) as second:
        assert second.list_runs().height == 1


def test_writers_get_fair_shares_of_the_lock(tmp_path: Path) -> None:
    """With flock alone one of six writers saved 50x fewer records than another."""
    _run_id, pipeline_id = _setup(tmp_path)
    start = tmp_path.parent / f"{tmp_path.name}-start"
    start.mkdir()
    tags = [f"w{i}" for i in range(4)]
    writers = [
        start_worker("share", str(tmp_path), pipeline_id, tag, "3", str(start)) for tag in tags
    ]
    go_when_ready(start, tags, writers)
    counts = []
    for writer in writers:
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
        counts.append(int(out.split()[-1]))
    with WorkspaceStore(tmp_path, read_only=True) as store:
        assert store.query_predictions(pipeline_id=pipeline_id).height == sum(counts)
    # Turns go round in arrival order: nobody gets a small fraction of the busiest one.
    assert min(counts) >= max(counts) / 4, counts


def test_a_killed_waiter_does_not_block_the_queue(tmp_path: Path) -> None:
    _setup(tmp_path)
    holder = start_worker("hold", str(tmp_path), "30")
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "holding"
    waiter = start_worker("count", str(tmp_path))  # queues behind the exclusive holder
    queue = tmp_path / "store.duckdb.queue"
    for _ in range(500):
        if any(p.name.isdigit() for p in queue.iterdir()):
            break
        time.sleep(0.01)
    waiter.kill()
    waiter.communicate()
    holder.kill()
    holder.communicate()
    assert any(p.name.isdigit() for p in queue.iterdir())  # the dead waiter's ticket is left
    with WorkspaceStore(tmp_path, lock_timeout=5) as store:  # ...and skipped, then removed
        assert store.list_runs().height == 1
    assert not any(p.name.isdigit() for p in queue.iterdir())


def test_a_repeated_top_n_never_serves_a_stale_answer(tmp_path: Path) -> None:
    _run_id, pipeline_id = _setup(tmp_path)
    with WorkspaceStore(tmp_path) as store:
        assert store.top_predictions(3).height == 0
        best = store.save_prediction(**prediction_fields(pipeline_id, None, val_score=0.01))
        assert store.top_predictions(3)["prediction_id"].to_list() == [best]  # own buffer
        first = store.top_predictions(3)
        first.drop_in_place("val_score")  # a caller changing its frame changes no later answer
        assert "val_score" in store.top_predictions(3).columns
        assert store.delete_prediction(best)
        assert store.top_predictions(3).height == 0  # own delete
        result = run_worker("write", str(tmp_path), pipeline_id, "other", "10")  # hand-over
        assert result.returncode == 0, result.stderr
        top = store.top_predictions(3)
        assert top["model_name"].to_list() == ["other"] * 3  # the other process's rows
        assert top["val_score"].to_list() == [0.0, 1.0, 2.0]
