"""OptStorage never deletes, changes or follows what holdall did not write."""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr

from holdall import JsonStorageHandler, OptStorage
from holdall.errors import HoldallWarning, InvalidValueError, NotAStoreError, UnsafePathError


def _snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file below `folder` with its content hash and modification time."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            found[str(path.relative_to(folder))] = (
                hashlib.sha256(path.read_bytes()).hexdigest(),
                stat.st_mtime_ns,
            )
    return found


def test_a_json_store_is_refused_and_left_intact(tmp_path: Path) -> None:
    folder = tmp_path / "p_json"
    with JsonStorageHandler(folder) as json_store:
        json_store.save_data("a", np.arange(3))
    before = _snapshot(folder)
    with pytest.raises(NotAStoreError, match="JsonStorageHandler store"):
        OptStorage(folder)
    assert _snapshot(folder) == before


def test_a_folder_of_other_files_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "notes.zarr"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(NotAStoreError, match=r"notes\.txt"):
        OptStorage(folder)
    assert (folder / "notes.txt").read_text() == "mine"


def test_files_placed_inside_a_store_survive_overwrites_compress_and_close(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    with OptStorage(path) as store:
        store.save_data("a", np.arange(3))
        store.save_data("g/x", np.ones(2))
    (path / "README.txt").write_text("read me")
    (path / "g" / "x" / "notes.txt").write_text("about x")
    with OptStorage(path) as store:
        store.save_data("g/x", np.zeros(4))
        store.flush()
        assert (path / "g" / "x" / "notes.txt").read_text() == "about x"
        store.compress_store()
        with pytest.warns(HoldallWarning, match="did not write"):
            store.close()
    assert (path / "README.txt").read_text() == "read me"
    assert (path / "g" / "x" / "notes.txt").read_text() == "about x"
    assert not (path / "a").exists(), "holdall's own files went into the archive"
    with OptStorage(path) as archive:
        assert archive.read_only
        np.testing.assert_array_equal(archive.load_data("g/x"), np.zeros(4))


def test_reading_another_tools_store_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "foreign.zarr"
    group = zarr.open_group(path, mode="w")
    group.create_array("temperature", data=np.arange(12, dtype="f4").reshape(3, 4))
    group.attrs["origin"] = "zarr-python"
    before = _snapshot(path)
    with OptStorage(path) as store:
        np.testing.assert_array_equal(store.load_data("temperature"), np.arange(12).reshape(3, 4))
        store.load_metadata()
    assert _snapshot(path) == before
    assert not (tmp_path / "files_summary").exists()


def test_a_symlinked_folder_inside_a_store_is_never_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("precious")
    path = tmp_path / "s.zarr"
    with OptStorage(path) as store:
        store.save_data("g/x", np.arange(3))
    (path / "link").symlink_to(outside)
    with OptStorage(path) as store:
        store.save_data("link/victim", np.arange(2))
        with pytest.raises(UnsafePathError, match="symbolic link"):
            store.flush()
        store.delete_data("link")
    assert (outside / "victim").read_text() == "precious"
    assert sorted(p.name for p in outside.iterdir()) == ["victim"]


def test_a_symlinked_chunk_is_never_packed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"do not pack me")
    path = tmp_path / "s.zarr"
    with OptStorage(path) as store:
        store.save_data("a", np.arange(3))
    chunk = path / "a" / "c" / "0"
    chunk.unlink()
    chunk.symlink_to(secret)
    with OptStorage(path) as store, pytest.raises(UnsafePathError):
        store.compress_store()
    assert not Path(f"{path}.data").exists()
    assert secret.read_bytes() == b"do not pack me"


def test_overwriting_a_key_whose_folder_is_a_symlink_deletes_nothing_outside(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "zarr.json").write_text("{}")
    (outside / "data.bin").write_text("precious")
    path = tmp_path / "s.zarr"
    with OptStorage(path) as store:
        store.save_data("a", np.arange(3))
    os.rename(path / "a", tmp_path / "a-moved")
    (path / "a").symlink_to(outside)
    store = OptStorage(path)
    store.save_data("a", np.arange(5))
    with pytest.raises(UnsafePathError, match="symbolic link"):
        store.close()
    assert (path / "a").is_symlink()
    assert sorted(p.name for p in outside.iterdir()) == ["data.bin", "zarr.json"]
    assert (outside / "data.bin").read_text() == "precious"


def test_asking_for_another_zarr_format_than_the_stored_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    with OptStorage(path) as store:
        store.save_data("a", np.arange(3))
    with pytest.raises(InvalidValueError, match="format 3 store"):
        OptStorage(path, zarr_format=2)
    with OptStorage(path) as store:
        assert store.zarr_format == 3
        np.testing.assert_array_equal(store.load_data("a"), np.arange(3))


def test_opening_an_empty_store_and_closing_it_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        OptStorage(path).close()
    assert not path.exists()
