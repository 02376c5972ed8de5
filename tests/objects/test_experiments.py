"""Experiments: runs and fields, persist and reload through DuckDB, lifecycle of the folders."""

from __future__ import annotations

import datetime
import os
import uuid
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pytest

from holdall.errors import (
    CorruptedFileError,
    ExperimentExistsError,
    InvalidValueError,
    KeyNotFoundError,
    SchemaVersionError,
    UnsupportedTypeError,
)
from holdall.objects import (
    DataStore,
    DataStoreIO,
    create_experiment,
    create_session,
    load_experiment,
    options,
)
from tests.objects.test_values import ARRAYS, SCALARS, same


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"duckdb:///{tmp_path / 'experiments.duckdb'}"


def files_in(folder: Path) -> list[str]:
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_every_value_kind_round_trips_through_persist_and_reload(db_url: str) -> None:
    experiment = create_experiment("kinds", url=db_url)
    values: dict[str, Any] = {f"a_{k}": v for k, v in ARRAYS.items()} | {
        f"s_{k}": v for k, v in SCALARS.items()
    }
    with experiment.run() as run:
        run.fields.ds = DataStore(values)
        run.fields.frames = DataStore(
            pd=pd.DataFrame({"x": [1, 2]}), pl=pl.DataFrame({"y": ["a", None]})
        )
    experiment.persist()
    loaded = load_experiment("kinds", url=db_url)
    ds = loaded.runs.first().fields.ds
    assert type(ds) is DataStore
    for key, value in values.items():
        same(ds[key], value)
    frames = loaded.runs.first().fields.frames
    pd.testing.assert_frame_equal(frames.pd, pd.DataFrame({"x": [1, 2]}))
    assert frames.pl.equals(pl.DataFrame({"y": ["a", None]}))


def test_fields_keep_their_types_in_the_record(db_url: str) -> None:
    fields: dict[str, Any] = {
        "int": 3,
        "big": 2**80,
        "float": 0.25,
        "nan": float("nan"),
        "str": "x\x00y",
        "none": None,
        "bool": False,
        "list": [1, [2, "3"]],
        "tuple": (1, 2),
        "set": {1, 2},
        "dict": {"a": {"b": 1}},
        "odd_keys": {1: "one", "$x": 2},
        "np": np.float32(0.5),
        "array": np.arange(4, dtype=">i2"),
        "uuid": uuid.UUID(int=5),
        "when": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        "day": datetime.date(2024, 1, 2),
        "complex": 1 - 1j,
        "io": DataStoreIO.write(b"raw", relative_path_prefix="self_managed"),
    }
    experiment = create_experiment("fields", url=db_url, **fields)
    experiment.add_run(**fields)
    experiment.persist()
    loaded = load_experiment("fields", url=db_url)
    for got in (loaded.fields, loaded.runs[0].fields):
        assert list(got) == list(fields)
        for key, value in fields.items():
            if key == "set":
                assert got[key] == value
                assert type(got[key]) is set
            elif key == "io":
                assert got[key] == value
                assert got[key].read() == b"raw"
            else:
                same(got[key], value)


def test_fields_that_belong_in_a_datastore_are_refused(db_url: str) -> None:
    experiment = create_experiment("big", url=db_url)
    with experiment.run() as run:
        run.fields.table = pd.DataFrame({"x": [1]})
    with pytest.raises(UnsupportedTypeError, match=r"put other values .* in a DataStore"):
        experiment.persist()
    experiment.runs.first().fields.table = np.zeros(1 << 18)
    with pytest.raises(UnsupportedTypeError, match="put it in a DataStore"):
        experiment.persist()
    assert create_session(db_url).ls().height == 0


def test_runs_first_iteration_indexing_and_dataframe() -> None:
    experiment = create_experiment()
    for i in range(3):
        with experiment.run() as run:
            run.fields.i = i
            run.fields.loss = 1.0 / (i + 1)
            run.fields.mixed = i if i else "zero"
            run.fields.ds = DataStore(x=i)
    runs = experiment.runs
    assert len(runs) == 3
    assert runs.first() is runs[0]
    assert [run.fields.i for run in runs] == [0, 1, 2]
    assert runs[-1].fields.i == 2
    assert runs[str(runs[1].id_run)] is runs[1]
    assert runs[runs[1].id_run] is runs[1]
    assert runs.keys() == [run.id_run for run in runs.values()]
    assert runs[1].id_run in runs
    assert "nope" not in runs
    with pytest.raises(KeyNotFoundError):
        runs[5]
    with pytest.raises(KeyNotFoundError):
        runs["not-a-run"]
    frame = runs.df()
    assert frame.columns == ["id_run", "i", "loss", "mixed"]
    assert frame["i"].to_list() == [0, 1, 2]
    assert frame["loss"].dtype == pl.Float64
    assert frame["mixed"].to_list() == ["zero", "1", "2"]


def test_run_is_kept_when_its_block_raises() -> None:
    experiment = create_experiment()

    def fail() -> None:
        with experiment.run() as run:
            run.fields.partial = 1
            raise RuntimeError

    with pytest.raises(RuntimeError):
        fail()
    assert experiment.runs.first().fields.partial == 1


def test_load_by_name_or_id_and_list(db_url: str) -> None:
    session = create_session(db_url)
    first = session.create_experiment("first", lr=0.1)
    first.persist()
    second = session.create_experiment()
    second.persist()
    assert len(second.name) == 6
    listing = session.ls()
    assert sorted(listing["name"].to_list()) == sorted(["first", second.name])
    assert session.load_experiment(id_experiment=first.id_experiment).name == "first"
    assert session.load_experiment(id_experiment=str(second.id_experiment)).name == second.name
    assert load_experiment("first", url=db_url).fields == {"lr": 0.1}
    assert load_experiment("first", url=db_url).runs.first().fields == {}  # mltraq's default run
    with pytest.raises(KeyNotFoundError, match="no experiment with name 'third'"):
        session.load_experiment("third")
    with pytest.raises(KeyNotFoundError, match="not an experiment id"):
        session.load_experiment(id_experiment="xyz")
    with pytest.raises(InvalidValueError, match="either a name or an id"):
        session.load_experiment()
    # The file opens in DuckDB itself once the session hands it back.
    session.close()
    with duckdb.connect(db_url[len("duckdb:///") :], read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM experiments").fetchone() == (2,)
        assert conn.execute(
            "SELECT fields->>'$.lr' FROM experiments WHERE name='first'"
        ).fetchone() == ("0.1",)


def test_persist_twice_fails_unless_replace(db_url: str, root: Path) -> None:
    experiment = create_experiment("twice", url=db_url)
    with experiment.run() as run:
        run.fields.ds = DataStore(v=1)
    experiment.persist()
    folder = root / str(experiment.id_experiment)
    before = files_in(folder)
    assert len(before) == 1
    with pytest.raises(ExperimentExistsError, match="if_exists='replace'"):
        experiment.persist()
    assert files_in(folder) == before
    experiment.runs.first().fields.ds.v = 2
    experiment.persist(if_exists="replace")
    after = files_in(folder)
    assert len(after) == 1
    assert after != before
    assert experiment.reload().runs.first().fields.ds.v == 2
    with pytest.raises(InvalidValueError, match="if_exists"):
        experiment.persist(if_exists="append")  # type: ignore[arg-type]


def test_replace_by_name_removes_the_other_experiments_folder(db_url: str, root: Path) -> None:
    session = create_session(db_url)
    old = session.create_experiment("same")
    old.add_run(ds=DataStore(v="old"))
    old.persist()
    new = session.create_experiment("same")
    new.add_run(ds=DataStore(v="new"))
    with pytest.raises(ExperimentExistsError):
        new.persist()
    new.persist(if_exists="replace")
    assert not (root / str(old.id_experiment)).exists()
    assert session.load_experiment("same").runs.first().fields.ds.v == "new"
    assert session.ls().height == 1


def test_delete_removes_record_and_folder_but_not_foreign_files(db_url: str, root: Path) -> None:
    session = create_session(db_url)
    experiment = session.create_experiment("doomed")
    experiment.add_run(ds=DataStore(v=1), ds2=DataStore(w=2))
    experiment.persist()
    folder = root / str(experiment.id_experiment)
    assert len(files_in(folder)) == 1  # both DataStores in the persist's one object
    experiment.delete()
    assert not folder.exists()
    assert session.ls().height == 0
    with pytest.raises(KeyNotFoundError):
        session.load_experiment("doomed")
    experiment.persist()
    (folder / "notes.txt").write_text("mine")
    experiment.persist(if_exists="replace")
    assert "notes.txt" in files_in(folder)
    experiment.delete()
    assert files_in(folder) == ["notes.txt"]


def test_reload_reads_the_record_again(db_url: str) -> None:
    experiment = create_experiment("r", url=db_url)
    experiment.add_run(x=1)
    experiment.persist()
    experiment.runs.first().fields.x = 99
    experiment.add_run(x=2)
    assert experiment.reload() is experiment
    assert [run.fields.x for run in experiment.runs] == [1]


def test_in_memory_session_and_its_default(root: Path) -> None:
    experiment = create_experiment()
    with experiment.run() as run:
        run.fields.ds = DataStore(a=np.ones(3))
    experiment.persist()
    assert experiment.session.url == "duckdb:///:memory:"
    np.testing.assert_array_equal(experiment.reload().runs.first().fields.ds.a, np.ones(3))
    assert files_in(root) == [str(experiment.id_experiment)]
    experiment.session.close()
    from holdall.errors import ClosedStorageError

    with pytest.raises(ClosedStorageError):
        experiment.reload()


def test_session_urls(tmp_path: Path) -> None:
    relative = create_session("duckdb:///rel.duckdb")
    relative.create_experiment("x").persist()
    assert Path("rel.duckdb").exists()
    plain = create_session(tmp_path / "plain.duckdb")
    plain.create_experiment("y").persist()
    assert (tmp_path / "plain.duckdb").exists()
    with options().ctx({"database.url": f"duckdb:///{tmp_path / 'opt.duckdb'}"}):
        create_experiment("z").persist()
        assert load_experiment("z").name == "z"
    for bad in ["sqlite:///x.db", "", "postgresql://host/db"]:
        with pytest.raises(InvalidValueError, match="duckdb"):
            create_session(bad)


def test_foreign_or_newer_database_files_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.duckdb"
    with duckdb.connect(str(foreign)) as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(SchemaVersionError, match="without holdall's experiment tables"):
        create_session(foreign).ls()
    with pytest.raises(SchemaVersionError):
        create_session(foreign).create_experiment("x").persist()
    newer = tmp_path / "newer.duckdb"
    create_session(newer).create_experiment("x").persist()
    with duckdb.connect(str(newer)) as conn:
        conn.execute("UPDATE holdall_objects_schema SET version = 99")
    with pytest.raises(SchemaVersionError, match="schema version"):
        create_session(newer).load_experiment("x")
    missing = create_session(tmp_path / "never.duckdb")
    assert missing.ls().height == 0
    assert not (tmp_path / "never.duckdb").exists()


def test_bad_names_are_refused() -> None:
    for bad in ["", "a\x00b", 5]:
        with pytest.raises(InvalidValueError, match="experiment name"):
            create_experiment(bad)  # type: ignore[arg-type]


def test_a_closed_file_session_refuses_use_and_hands_the_file_back(db_url: str) -> None:
    from holdall.errors import ClosedStorageError

    session = create_session(db_url)
    experiment = session.create_experiment("c")
    experiment.persist()
    session.close()
    session.close()  # idempotent
    with pytest.raises(ClosedStorageError, match="closed"):
        experiment.reload()
    with pytest.raises(ClosedStorageError):
        session.ls()
    # Nothing holds the file any more: DuckDB itself opens it read-write.
    with duckdb.connect(db_url[len("duckdb:///") :]) as conn:
        assert conn.execute("SELECT name FROM experiments").fetchall() == [("c",)]


def test_replacing_keeps_memory_mapped_values_of_the_old_version_valid(
    db_url: str, root: Path
) -> None:
    session = create_session(db_url)
    experiment = session.create_experiment("mapped")
    experiment.add_run(
        ds=DataStore(a=np.arange(1 << 18, dtype=np.float64))
    )  # 2 MiB: mapped on read
    experiment.persist()
    loaded = session.load_experiment("mapped")
    array = loaded.runs.first().fields.ds.a
    old_files = files_in(root / str(experiment.id_experiment))
    loaded.runs.first().fields.ds.b = 1
    loaded.persist(if_exists="replace")  # writes from the mapped old file, then removes it
    assert not set(old_files) & set(files_in(root / str(experiment.id_experiment)))
    np.testing.assert_array_equal(array, np.arange(1 << 18, dtype=np.float64))
    again = session.load_experiment("mapped").runs.first().fields.ds
    np.testing.assert_array_equal(again.a, array)
    assert again.b == 1


def test_many_runs_share_one_object_and_each_reads_back_its_own(db_url: str, root: Path) -> None:
    session = create_session(db_url)
    experiment = session.create_experiment("many")
    for index in range(300):
        with experiment.run() as run:
            run.fields.ds = DataStore(a=np.full(8, index), tag=f"run {index}")
    experiment.persist()
    assert len(files_in(root / str(experiment.id_experiment))) == 1
    loaded = session.load_experiment("many").runs
    assert [run.fields.ds.tag for run in loaded.values()] == [f"run {i}" for i in range(300)]
    assert [int(run.fields.ds.a[3]) for run in loaded.values()] == list(range(300))


@pytest.mark.parametrize("count", [1, 16, 17])
def test_runs_keep_their_order_and_ids_on_both_insert_paths(db_url: str, count: int) -> None:
    """Up to 16 runs go in as one VALUES statement, more as an Arrow table: same rows."""
    session = create_session(db_url)
    experiment = session.create_experiment(f"runs-{count}")
    for index in range(count):
        experiment.add_run(index=index, label=f"run {index}")
    ids = [run.id_run for run in experiment.runs.values()]
    experiment.persist()
    loaded = session.load_experiment(f"runs-{count}").runs.values()
    assert [run.id_run for run in loaded] == ids
    assert [(run.fields.index, run.fields.label) for run in loaded] == [
        (i, f"run {i}") for i in range(count)
    ]


def test_a_record_naming_an_item_the_pack_lacks_is_a_corrupted_file(
    db_url: str, root: Path
) -> None:
    session = create_session(db_url)
    experiment = session.create_experiment("bad")
    experiment.add_run(ds=DataStore(v=1))
    experiment.persist()
    session.close()
    with duckdb.connect(db_url.removeprefix("duckdb:///")) as conn:
        conn.execute("UPDATE runs SET fields = replace(fields::VARCHAR, ',0]', ',7]')::JSON")
    with pytest.raises(CorruptedFileError, match="no packed item 7"):
        create_session(db_url).load_experiment("bad")
