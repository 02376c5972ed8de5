"""Real processes: SIGKILL during a persist, exits between calls, two writers on one file."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np

from holdall.objects import DataStore, create_session
from tests.objects.helpers import run_child, start_child
from tests.start_line import go_when_ready

# A strided 32 MiB view: the child writes it slab by slab, which leaves time to kill it mid-write.
PERSIST_BIG = """
import numpy as np
from holdall.objects import create_session
session = create_session("duckdb:///experiments.duckdb")
experiment = session.load_experiment("crash")
fields = experiment.runs.first().fields
fields.ds.v = "new"
fields.big = type(fields.ds)(a=np.ones((2048, 4096))[:, ::2])
experiment.persist(if_exists="replace")
print("persisted")
"""


def test_sigkill_during_persist_leaves_the_previous_version_readable(root: Path) -> None:
    session = create_session("duckdb:///experiments.duckdb")
    experiment = session.create_experiment("crash")
    experiment.add_run(ds=DataStore(v="old", a=np.arange(10)))
    experiment.persist()
    folder = root / str(experiment.id_experiment)
    before = sorted(os.listdir(folder))

    child = start_child(PERSIST_BIG, Path.cwd())
    deadline = time.monotonic() + 60
    while not any(name.endswith(".tmp") for name in os.listdir(folder)):
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the child never started writing"
        time.sleep(0.001)
    child.send_signal(signal.SIGKILL)
    child.communicate()
    assert child.returncode == -signal.SIGKILL

    # The writer died holding the lock and leaving partial files: the old version is intact.
    assert set(before) <= set(os.listdir(folder))
    loaded = session.load_experiment("crash")
    assert loaded.runs.first().fields.ds.v == "old"
    np.testing.assert_array_equal(loaded.runs.first().fields.ds.a, np.arange(10))
    assert "big" not in loaded.runs.first().fields

    # The next persist replaces the version and removes what the dead writer left behind.
    loaded.runs.first().fields.ds.v = "newer"
    loaded.persist(if_exists="replace")
    remaining = os.listdir(folder)
    assert len(remaining) == 1
    assert remaining[0] not in before
    assert session.load_experiment("crash").runs.first().fields.ds.v == "newer"


def test_a_persist_survives_abrupt_exits_after_it_returns() -> None:
    for ending in ("os._exit(0)", "os.kill(os.getpid(), signal.SIGKILL)"):
        run_child_code = f"""
import os, signal
import numpy as np
from holdall.objects import DataStore, create_session
session = create_session("duckdb:///exits.duckdb")
experiment = session.create_experiment({ending!r})
experiment.add_run(ds=DataStore(a=np.arange(5)))
experiment.persist()
{ending}
"""
        child = start_child(run_child_code, Path.cwd())
        child.communicate(timeout=120)
        loaded = create_session("duckdb:///exits.duckdb").load_experiment(ending)
        np.testing.assert_array_equal(loaded.runs.first().fields.ds.a, np.arange(5))


def test_two_processes_persisting_into_one_file_lose_nothing() -> None:
    code = """
import sys
from holdall.objects import DataStore, create_session
session = create_session("duckdb:///shared.duckdb")
for i in range(6):
    experiment = session.create_experiment(f"{sys.argv[1]}-{i}")
    experiment.add_run(i=i, ds=DataStore(owner=sys.argv[1]))
    experiment.persist()
"""
    children = [start_child(code.replace("sys.argv[1]", repr(tag)), Path.cwd()) for tag in "ab"]
    for child in children:
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
    session = create_session("duckdb:///shared.duckdb")
    names = sorted(session.ls()["name"].to_list())
    assert names == sorted(f"{tag}-{i}" for tag in "ab" for i in range(6))
    assert session.load_experiment("b-5").runs.first().fields.ds.owner == "b"


def test_reader_in_another_process_sees_committed_state() -> None:
    session = create_session("duckdb:///read.duckdb")
    experiment = session.create_experiment("seen")
    experiment.add_run(ds=DataStore(x=[1, 2]))
    experiment.persist()
    done = run_child(
        "from holdall.objects import load_experiment\n"
        "print(load_experiment('seen', url='duckdb:///read.duckdb').runs.first().fields.ds.x)",
        Path.cwd(),
    )
    assert done.stdout.strip() == "[1, 2]"


def test_writers_get_fair_shares_of_the_database() -> None:
    """Writers that persist back to back take turns: none waits while another goes again.

    Without turns, one of four writers persisted 251 experiments while each other one
    persisted 1. Each writer warms up (its first persist loads modules), then all persist
    for the same three seconds.
    """
    code = """
import pathlib, sys, time
from holdall.objects import DataStore, create_session
from tests.start_line import ready_and_wait
tag = sys.argv[1]
session = create_session("duckdb:///fair.duckdb", lock_timeout_s=60)
session.create_experiment(f"{tag}-warm-up").persist()
deadline, done = ready_and_wait(pathlib.Path.cwd(), tag) + 3, 0
while time.time() < deadline:
    experiment = session.create_experiment(f"{tag}-{done}")
    experiment.add_run(ds=DataStore(i=done))
    experiment.persist()
    done += 1
print(done)
"""
    tags = [f"w{i}" for i in range(4)]
    writers = [start_child(code.replace("sys.argv[1]", repr(tag)), Path.cwd()) for tag in tags]
    go_when_ready(Path.cwd(), tags, writers)
    counts = []
    for writer in writers:
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
        counts.append(int(out.split()[-1]))
    assert create_session("duckdb:///fair.duckdb").ls().height == sum(counts) + len(tags)
    assert min(counts) >= max(counts) / 4, counts
