"""The DuckDB files holdall creates open in every DuckDB it supports (``duckdb >= 1.3``).

DuckDB 2 writes new files in a format DuckDB 1.x refuses; holdall asks for DuckDB 1.2's
(`holdall._core.duckdb_files`). Checked on the file itself; by holdall running on the oldest
supported DuckDB (installed with pip beside the checkout on first use), which reads what this
one wrote and writes what this one then reads; and, where the nirs4all 0.7.1 environment
exists, by its DuckDB 1.5 reading each kind of file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest

from holdall._core.duckdb_files import OLDEST_STORAGE
from holdall.errors import WorkspaceLockedError
from holdall.objects import DataStore, create_session, options
from holdall.workspace import WorkspaceStore, import_workspace
from tests.workspace.conftest import REPO, prediction_fields, unpack_workspace
from tests.workspace.test_import import FIXTURE, NIRS4ALL_071, needs_nirs4all


def storage_version(path: Path) -> str:
    """The storage format DuckDB reports for the file at `path`."""
    conn = duckdb.connect()
    try:
        conn.execute(f"ATTACH '{path}' AS probe (READ_ONLY)")
        tags = conn.execute(
            "SELECT tags FROM duckdb_databases() WHERE database_name = 'probe'"
        ).fetchall()[0][0]
        return str(tags["storage_version"])
    finally:
        conn.close()


def old_duckdb_count(path: Path, table: str) -> int:
    """Rows of `table` as DuckDB 1.5 (nirs4all 0.7.1's environment) reads them."""
    done = subprocess.run(
        [str(NIRS4ALL_071), "-c",
         "import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True); "
         "print(c.execute(f'SELECT count(*) FROM {sys.argv[2]}').fetchall()[0][0])",
         str(path), table],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


def written_workspace(folder: Path) -> Path:
    with WorkspaceStore(folder) as store:
        run = store.begin_run("r", {}, [{"name": "wheat"}])
        pipeline = store.begin_pipeline(run, "p", {}, [], "wheat", "h")
        for _ in range(3):
            store.save_prediction(**prediction_fields(pipeline, None))
    return folder / "store.duckdb"


def vacuumed_workspace(folder: Path) -> Path:
    path = written_workspace(folder)
    with WorkspaceStore(folder) as store:
        store.vacuum()
    return path


def written_experiments(folder: Path) -> Path:
    folder.mkdir()
    path = folder / "experiments.duckdb"
    session = create_session(f"duckdb:///{path}")
    with options().ctx({"datastore.url": str(folder / "holdall.datastore")}):
        experiment = session.create_experiment("e")
        with experiment.run() as run:
            run.fields.ds = DataStore()
            run.fields.ds.a = np.arange(3)
        experiment.persist()
    session.close()
    return path


def imported_workspace(folder: Path) -> Path:
    copy = folder.with_name(folder.name + "-source")
    shutil.copytree(FIXTURE, copy)
    import_workspace(unpack_workspace(copy / "ws"), folder)
    return folder / "store.duckdb"


CASES = {
    "workspace": (written_workspace, "predictions", 3),
    "vacuumed": (vacuumed_workspace, "predictions", 3),
    "experiments": (written_experiments, "runs", 1),
    "import": (imported_workspace, "predictions", None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_new_file_is_in_the_oldest_supported_format(case: str, tmp_path: Path) -> None:
    write, _table, _rows = CASES[case]
    path = write(tmp_path / case)
    assert storage_version(path).rstrip("+") == OLDEST_STORAGE


@needs_nirs4all
@pytest.mark.parametrize("case", sorted(CASES))
def test_duckdb_1_5_reads_what_holdall_wrote(case: str, tmp_path: Path) -> None:
    write, table, rows = CASES[case]
    path = write(tmp_path / case)
    with duckdb.connect(str(path), read_only=True) as conn:
        expected = conn.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    assert expected > 0
    if rows is not None:
        assert expected == rows
    assert old_duckdb_count(path, table) == expected


def test_a_file_in_a_newer_format_keeps_it_and_stays_usable(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    duckdb.connect(str(workspace / "store.duckdb")).close()  # DuckDB 2's own format, empty
    before = storage_version(workspace / "store.duckdb")
    assert before.rstrip("+") != OLDEST_STORAGE
    written_workspace(workspace)
    assert storage_version(workspace / "store.duckdb") == before
    with WorkspaceStore(workspace, read_only=True) as store:
        assert len(store.query_predictions()) == 3


OLDEST_DUCKDB = "1.3.0"
"""The oldest DuckDB pyproject.toml accepts (``duckdb>=1.3``)."""
OLDEST_DUCKDB_DIR = REPO / "benchmarks" / ".envs" / f"duckdb-{OLDEST_DUCKDB}"

CROSS_VERSION_WORKER = r"""
import json, sys
from pathlib import Path
import duckdb
from holdall.objects import DataStore, create_session, options
from holdall.workspace import WorkspaceStore
from tests.workspace.conftest import prediction_fields
theirs, ours = Path(sys.argv[1]), Path(sys.argv[2])
out = {"duckdb": duckdb.__version__}
with WorkspaceStore(theirs / "ws", read_only=True) as store:
    out["read_predictions"] = len(store.query_predictions())
session = create_session(f"duckdb:///{theirs / 'experiments' / 'experiments.duckdb'}")
with options().ctx({"datastore.url": str(theirs / "experiments" / "holdall.datastore")}):
    out["read_array"] = session.load_experiment("e").runs.first().fields.ds.a.tolist()
session.close()
with WorkspaceStore(ours) as store:
    run = store.begin_run("r", {}, [{"name": "wheat"}])
    pipeline = store.begin_pipeline(run, "p", {}, [], "wheat", "h")
    for _ in range(2):
        store.save_prediction(**prediction_fields(pipeline, None))
print(json.dumps(out))
"""


def oldest_duckdb() -> Path:
    """A folder holding DuckDB `OLDEST_DUCKDB`, installed with pip on first use."""
    if not (OLDEST_DUCKDB_DIR / ".complete").exists():
        done = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
             str(OLDEST_DUCKDB_DIR), f"duckdb=={OLDEST_DUCKDB}"],
            check=False, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, f"pip could not install duckdb {OLDEST_DUCKDB}: {done.stderr}"
        (OLDEST_DUCKDB_DIR / ".complete").touch()
    return OLDEST_DUCKDB_DIR


def test_the_oldest_supported_duckdb_and_this_one_read_each_other_s_files(tmp_path: Path) -> None:
    written_workspace(tmp_path / "ws")
    written_experiments(tmp_path / "experiments")
    ours = tmp_path / "written-by-old"
    path = os.pathsep.join([str(oldest_duckdb()), str(REPO / "src"), str(REPO)])
    done = subprocess.run(
        [sys.executable, "-c", CROSS_VERSION_WORKER, str(tmp_path), str(ours)],
        capture_output=True, text=True, check=False, timeout=300,
        env={**os.environ, "PYTHONPATH": path}, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"duckdb": OLDEST_DUCKDB, "read_predictions": 3, "read_array": [0, 1, 2]}
    assert duckdb.__version__ != OLDEST_DUCKDB
    with WorkspaceStore(ours, read_only=True) as store:
        assert len(store.query_predictions()) == 2


def test_duckdb_spills_beside_the_workspace_not_into_the_working_directory(tmp_path: Path) -> None:
    written_workspace(tmp_path / "ws")
    for read_only in (False, True):
        with WorkspaceStore(tmp_path / "ws", read_only=read_only) as store:
            with store._session.connection() as conn:
                setting = conn.execute("SELECT current_setting('temp_directory')").fetchall()
            assert setting == [(str(tmp_path / "ws" / "store.duckdb.tmp"),)]


def test_a_store_opened_while_the_user_s_own_connection_holds_the_file_says_so(
    tmp_path: Path,
) -> None:
    path = written_workspace(tmp_path / "ws")
    with (
        duckdb.connect(str(path)),
        pytest.raises(WorkspaceLockedError, match="open in this process through another"),
    ):
        WorkspaceStore(tmp_path / "ws")
    with WorkspaceStore(tmp_path / "ws") as store:  # closed: the store opens it again
        assert len(store.query_predictions()) == 3
