"""`import_workspace` of a nirs4all 1.4.x workspace (``store.sqlite`` + ``arrays/`` Parquet).

The workspace in ``fixtures/nirs4all-1.4-workspace`` and the records and replays beside it
were written by nirs4all 1.4.10 itself (``n4a14_writer.py``, scikit-learn 1.9.1): two
``nirs4all.run`` pipelines, a pipeline written call by call as nirs4all's executor does,
a log, a project and a deleted prediction. When that nirs4all's environment is built
(``benchmarks/.envs/n4alatest``, which ``make test`` builds), a freshly written workspace is imported too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from holdall.errors import (
    CorruptedFileError,
    HoldallWarning,
    KeyNotFoundError,
    SchemaVersionError,
    UnsupportedTypeError,
    WorkspaceLockedError,
)
from holdall.workspace import WorkspaceStore, import_workspace, replay_chain
from tests.workspace.conftest import REPO, nirs4all_env
from tests.workspace.test_import import _tree_digest

FIXTURE = Path(__file__).with_name("fixtures") / "nirs4all-1.4-workspace"
NIRS4ALL_LATEST, needs_nirs4all_14 = nirs4all_env("n4alatest")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A private copy of the fixture workspace (tests may damage it)."""
    return Path(shutil.copytree(FIXTURE / "ws", tmp_path / "n4a14"))


def _same(ours: Any, theirs: Any) -> bool:
    """Equal after JSON text is parsed, arrays are listed and timestamps are printed."""
    if isinstance(theirs, str) and not isinstance(ours, str):
        try:
            theirs = json.loads(theirs)
        except json.JSONDecodeError:
            return str(ours) == theirs
    if isinstance(ours, np.ndarray):
        return theirs is not None and np.array_equal(ours, np.asarray(theirs))
    return bool(ours == theirs)


def _assert_record(ours: dict[str, Any] | None, theirs: dict[str, Any], skip: set[str]) -> None:
    assert ours is not None
    common = (set(ours) & set(theirs)) - skip
    assert len(common) >= 6
    differ = {k: (ours[k], theirs[k]) for k in common if not _same(ours[k], theirs[k])}
    assert not differ


def _assert_imported(folder: Path, destination: Path) -> None:
    """Every record nirs4all returns comes back from holdall, field by field."""
    records = json.loads((folder / "records.json").read_text())
    report = import_workspace(folder / "ws", destination)
    assert report.layout == "nirs4all-1.4"
    assert report.rows["predictions"] == len(records["predictions"])
    with WorkspaceStore(destination, read_only=True) as store:
        for run in records["runs"]:
            _assert_record(store.get_run(run["run_id"]), run, set())
        for pipeline in records["pipelines"]:
            _assert_record(store.get_pipeline(pipeline["pipeline_id"]), pipeline, set())
        for chain in records["chains"]:
            _assert_record(store.get_chain(chain["chain_id"]), chain, set())
        for prediction in records["predictions"]:
            ours = store.get_prediction(prediction["prediction_id"], load_arrays=True)
            _assert_record(ours, prediction, set())
            assert ours is not None
            for name in ("y_true", "y_pred", "y_proba", "sample_indices", "weights"):
                if prediction[name] is None:
                    assert ours.get(name) is None, name
                else:
                    np.testing.assert_array_equal(ours[name], np.asarray(prediction[name]))
        logs = pl.concat([store.get_pipeline_log(p["pipeline_id"]) for p in records["pipelines"]])
        assert sorted(logs["log_id"]) == sorted(r["log_id"] for r in records["logs"])
        for log in records["logs"]:
            _assert_record(logs.filter(pl.col("log_id") == log["log_id"]).row(0, named=True),
                           log, set())  # fmt: skip
        assert store.get_prediction(records["deleted_prediction"]) is None  # tombstoned
        X = np.load(folder / "X_new.npy")
        for chain_id, expected in json.loads((folder / "replay.json").read_text()).items():
            if isinstance(expected, dict):  # nirs4all 1.4.10 cannot replay it either
                with pytest.raises(UnsupportedTypeError, match="no predict"):
                    replay_chain(store, chain_id, X, trust=True)
            else:
                np.testing.assert_array_equal(replay_chain(store, chain_id, X, trust=True),
                                              np.asarray(expected))  # fmt: skip
    # what holdall's tables lack stays in the source's own files, unchanged
    copied = _tree_digest(destination / "nirs4all")
    original = _tree_digest(folder / "ws")
    assert copied == {k: v for k, v in original.items() if not k.startswith("artifacts/")
                      and not k.endswith(".lock")}  # fmt: skip
    with sqlite3.connect(destination / "nirs4all" / "store.sqlite") as conn:
        assert conn.execute("SELECT name FROM projects").fetchall() == [("wheat study",)]


def test_a_nirs4all_14_workspace_comes_across_record_by_record(tmp_path: Path) -> None:
    before = _tree_digest(FIXTURE)
    _assert_imported(FIXTURE, tmp_path / "holdall")
    assert _tree_digest(FIXTURE) == before  # the source is never modified


@needs_nirs4all_14
def test_a_workspace_nirs4all_14_writes_now_comes_across(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(NIRS4ALL_LATEST), str(Path(__file__).with_name("n4a14_writer.py")), str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    _assert_imported(tmp_path, tmp_path / "holdall")


def test_an_open_nirs4all_workspace_is_refused(source: Path, tmp_path: Path) -> None:
    (source / "store.sqlite-wal").write_bytes(b"pending pages")
    with pytest.raises(WorkspaceLockedError, match=r"store\.sqlite-wal"):
        import_workspace(source, tmp_path / "dst")
    assert not (tmp_path / "dst").exists()


def _relabel_as_strings(source: Path) -> None:
    """Give the classification prediction string labels, as nirs4all 1.4 encodes them."""
    path = source / "arrays" / "wheat.parquet"
    table = pl.read_parquet(path)
    payload = json.dumps({"schema_version": 1, "label_type": "str", "vocabulary": ["a", "b"],
                          "indices": [0, 1] * 5, "shape": [10]})  # fmt: skip
    labelled = pl.when(pl.col("model_name") == "Logit")
    table = table.with_columns(
        labelled.then(pl.lit(payload)).otherwise(None).alias("y_true_labels"),
        labelled.then(None).otherwise(pl.col("y_true")).alias("y_true"),
    )
    table.write_parquet(path)


def test_string_class_labels_stay_in_the_kept_files_and_are_reported(
    source: Path, tmp_path: Path
) -> None:
    _relabel_as_strings(source)
    logit = pl.read_parquet(source / "arrays" / "wheat.parquet").filter(
        pl.col("model_name") == "Logit"
    )["prediction_id"][0]
    with pytest.warns(HoldallWarning, match=r"1 imported prediction\(s\) have string class labels"):
        report = import_workspace(source, tmp_path / "dst")
    assert report.labels_left_out == (logit,)
    with WorkspaceStore(tmp_path / "dst", read_only=True) as store:
        arrays = store.get_prediction_arrays(logit)
        assert arrays is not None
        assert arrays["y_true"] is None  # not a number: left out of holdall's arrays
        records = json.loads((FIXTURE / "records.json").read_text())["predictions"]
        expected = next(r for r in records if r["prediction_id"] == logit)
        np.testing.assert_array_equal(arrays["y_pred"], expected["y_pred"])  # int labels: kept
        assert arrays["y_proba"].shape == (10, 2)
    kept = pl.read_parquet(tmp_path / "dst" / "nirs4all" / "arrays" / "wheat.parquet")
    assert json.loads(kept.filter(pl.col("prediction_id") == logit)["y_true_labels"][0])[
        "vocabulary"
    ] == ["a", "b"]


def test_a_missing_artifact_file_imports_nothing(source: Path, tmp_path: Path) -> None:
    victim = next((source / "artifacts").rglob("*.joblib"))
    victim.unlink()
    with pytest.raises(CorruptedFileError, match="no file is there"):
        import_workspace(source, tmp_path / "dst")
    assert not (tmp_path / "dst").exists()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _zero_a_page(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 3
    data[middle : middle + 2000] = bytes(2000)  # the footer stays: only the data is damaged
    path.write_bytes(bytes(data))


def _drop_the_targets(path: Path) -> None:
    pl.read_parquet(path).drop("y_true", "y_pred").write_parquet(path)


@pytest.mark.parametrize(
    ("damage", "error", "match"),
    [
        (_truncate, CorruptedFileError, r"array_dataset\.parquet cannot be read"),
        (_zero_a_page, CorruptedFileError, r"array file in .*arrays cannot be read"),
        (_drop_the_targets, SchemaVersionError, "lack the columns"),
    ],
)
def test_damaged_array_files_import_nothing_and_say_which(
    source: Path, tmp_path: Path, damage: Any, error: type[Exception], match: str
) -> None:
    """A damaged array file is named (or its folder, when DuckDB does not say which), and the
    import leaves nothing behind: no destination, no build folder, the source unchanged."""
    files = sorted((source / "arrays").glob("*.parquet"))
    for path in files if damage is _drop_the_targets else files[:1]:
        damage(path)
    before = _tree_digest(source)
    with pytest.raises(error, match=match):
        import_workspace(source, tmp_path / "dst")
    assert not (tmp_path / "dst").exists()
    assert not list(tmp_path.glob(".dst.*"))  # the folder it was built in is gone too
    assert _tree_digest(source) == before


@pytest.mark.parametrize(
    ("update", "match"),
    [
        ("UPDATE runs SET config = '{not json' WHERE rowid = 1", r"table runs .*Malformed JSON"),
        ("UPDATE logs SET created_at = 'yesterday'", r"table logs .*timestamp"),
        (  # SQLite keeps text in an INTEGER column; the predictions are read by a thread
            "UPDATE predictions SET n_samples = 'many' WHERE rowid = 2",
            r"table predictions .*'many'",
        ),
    ],
)
def test_a_value_of_the_wrong_type_in_the_sqlite_file_imports_nothing(
    source: Path, tmp_path: Path, update: str, match: str
) -> None:
    """SQLite stores any value in any column: one that is not of its column's type is named
    with its table, and the import leaves nothing behind."""
    with sqlite3.connect(source / "store.sqlite") as conn:
        conn.execute(update)
    conn.close()
    before = _tree_digest(source)
    with pytest.raises(CorruptedFileError, match=match) as raised:
        import_workspace(source, tmp_path / "dst")
    assert raised.value.path == str(source / "store.sqlite")
    assert not (tmp_path / "dst").exists()
    assert not list(tmp_path.glob(".dst.*"))
    assert _tree_digest(source) == before


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"not a database at all" * 100, "cannot be read"), (None, "not a nirs4all 1.4")],
)
def test_an_sqlite_file_that_is_not_a_nirs4all_workspace_is_refused(
    tmp_path: Path, content: bytes | None, match: str
) -> None:
    folder = tmp_path / "other"
    folder.mkdir()
    if content is None:
        with sqlite3.connect(folder / "store.sqlite") as conn:
            conn.execute("CREATE TABLE notes (text TEXT)")
        conn.close()
    else:
        (folder / "store.sqlite").write_bytes(content)
    with pytest.raises(SchemaVersionError, match=match):
        import_workspace(folder, tmp_path / "dst")
    assert not (tmp_path / "dst").exists()


def test_a_folder_without_either_store_names_both(tmp_path: Path) -> None:
    with pytest.raises(KeyNotFoundError, match=r"store\.duckdb.*store\.sqlite"):
        import_workspace(tmp_path, tmp_path / "dst")


def test_the_command_line_imports_a_14_workspace(source: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("holdall")), "workspace", "import", str(source),
         str(tmp_path / "dst")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "nirs4all-1.4" in done.stdout
    assert "nirs4all files kept in nirs4all/" in done.stdout
    with WorkspaceStore(tmp_path / "dst", read_only=True) as store:
        assert len(store.query_predictions()) == 24


def test_a_prediction_written_twice_keeps_its_last_row(source: Path, tmp_path: Path) -> None:
    path = source / "arrays" / "wheat.parquet"
    table = pl.read_parquet(path)
    again = table.filter(pl.col("model_name") == "Ridge").head(1)
    rewritten = again.with_columns(pl.col("y_pred").list.eval(pl.element() * 10))
    pl.concat([table, rewritten]).write_parquet(path)  # what nirs4all's upsert appends
    import_workspace(source, tmp_path / "dst")
    with WorkspaceStore(tmp_path / "dst", read_only=True) as store:
        arrays = store.get_prediction_arrays(again["prediction_id"][0])
    assert arrays is not None
    np.testing.assert_array_equal(arrays["y_pred"], np.asarray(rewritten["y_pred"][0]))


def test_arrays_whose_prediction_is_gone_are_not_imported(source: Path, tmp_path: Path) -> None:
    with sqlite3.connect(source / "store.sqlite") as conn:
        gone = conn.execute("SELECT prediction_id FROM predictions LIMIT 1").fetchone()[0]
        conn.execute("DELETE FROM predictions WHERE prediction_id = ?", [gone])
    conn.close()
    report = import_workspace(source, tmp_path / "dst")
    assert report.rows["prediction_arrays"] == report.rows["predictions"] == 23
    with WorkspaceStore(tmp_path / "dst", read_only=True) as store:
        assert store.get_prediction_arrays(gone) is None


def test_what_a_killed_import_left_is_removed_by_the_next(source: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    killed = subprocess.run(
        [sys.executable, "-c",
         "import os, signal, sys, tempfile\nfrom holdall._core.owners import owner_tag\n"
         "d = tempfile.mkdtemp(prefix=f'.dst.{owner_tag()}-', dir=sys.argv[1])\n"
         "open(os.path.join(d, 'store.duckdb'), 'wb').write(b'half')\n"
         "os.kill(os.getpid(), signal.SIGKILL)", str(tmp_path)],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL
    (left,) = tmp_path.glob(".dst.*")
    (tmp_path / ".dst.notes").mkdir()  # not named as an import names its folder: kept
    import_workspace(source, dst)
    assert not left.exists()
    assert (tmp_path / ".dst.notes").is_dir()
    with WorkspaceStore(dst, read_only=True) as store:
        assert store.query_predictions().height == 24
