"""OptStorage's open modes, as zarr and h5py users know them, and a re-runnable README example."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from holdall import OptStorage
from holdall.errors import (
    ArchiveExistsError,
    InvalidValueError,
    NotAStoreError,
    ReadOnlyStorageError,
    StoreNotFoundError,
)


def _packed(path: Path) -> None:
    with OptStorage(path) as store:
        store.save_data("a", np.arange(3))
        store.save_metadata("m", 1)
        store.compress_store()


def test_read_mode_needs_an_existing_store_and_never_writes(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError):
        OptStorage(tmp_path / "missing.zarr", mode="r")
    assert not (tmp_path / "missing.zarr").exists()
    path = tmp_path / "s.zarr"
    with OptStorage(path) as store:
        store.save_data("a", 1)
    with OptStorage(path, mode="r") as reader:
        assert reader.read_only
        with pytest.raises(ReadOnlyStorageError):
            reader.save_data("b", 2)


def test_append_mode_opens_an_archive_read_only_as_the_seed_says(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    _packed(path)
    with OptStorage(path) as store:
        assert store.read_only
        assert store.load_data("a").tolist() == [0, 1, 2]


def test_r_plus_reopens_an_archive_to_append_and_repacks_it(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    _packed(path)
    with OptStorage(path, mode="r+") as store:
        assert not store.read_only
        store.save_data("b", np.ones(2))
        store.delete_data("a")
        assert store.get_keys() == ["b"]
    assert not path.exists(), "the working folder is gone once the archive holds everything"
    with OptStorage(path) as store:
        assert store.get_keys() == ["b"]
        assert store.load_metadata("m") == 1
    with pytest.raises(StoreNotFoundError):
        OptStorage(tmp_path / "missing.zarr", mode="r+")


def test_w_replaces_what_holdall_wrote_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    _packed(path)
    with OptStorage(path, mode="w") as store:
        assert store.get_keys() == []
        store.save_data("fresh", 1)
        store.compress_store()
    with OptStorage(path) as store:
        assert store.get_keys() == ["fresh"]
    foreign = tmp_path / "foreign.zarr"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(NotAStoreError):
        OptStorage(foreign, mode="w")
    assert (foreign / "notes.txt").read_text() == "mine"


def test_w_minus_creates_only(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    with OptStorage(path, mode="w-") as store:
        store.save_data("a", 1)
    with pytest.raises(ArchiveExistsError):
        OptStorage(path, mode="w-")


def test_a_bad_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidValueError, match="mode must be"):
        OptStorage(tmp_path / "s.zarr", mode="x")  # type: ignore[arg-type]


def test_the_readme_example_runs_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    example = readme.split("```python", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        exec(compile(example, "README.md", "exec"), {})
    with OptStorage(tmp_path / "parts" / "part_001.zarr") as archive:
        assert archive.get_keys() == ["faces", "graph"]
