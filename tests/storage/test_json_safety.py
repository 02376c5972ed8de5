"""JSON store hardening: damaged files, names the filesystem cannot hold, foreign files, links."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from holdall import DataStorage, JsonStorageHandler, MemoryStorage
from holdall._core.owners import owner_tag
from holdall.errors import CorruptedFileError, InvalidKeyError, UnsafePathError


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# ----------------------------------------------------------------- damaged files


def test_non_utf8_data_file_is_a_corrupted_file_naming_it(tmp_path: Path) -> None:
    store = JsonStorageHandler(tmp_path)
    store.save_data("group/x", [1, 2])
    target = tmp_path / "data" / "group" / "x.json"
    target.write_bytes(b'["caf\xe9"]\n')
    with pytest.raises(CorruptedFileError, match=r"group/x\.json.*not UTF-8") as info:
        store.load_data("group/x")
    assert info.value.path == str(target)
    with pytest.raises(CorruptedFileError, match=r"x\.json"):
        store.load_data("group")


def test_non_utf8_metadata_is_reported_at_open(tmp_path: Path) -> None:
    JsonStorageHandler(tmp_path).save_metadata("a", 1)
    (tmp_path / "metadata.json").write_bytes(b'{"a": "\xff"}')
    with pytest.raises(CorruptedFileError, match=r"metadata\.json.*not UTF-8"):
        JsonStorageHandler(tmp_path)


def test_deeply_nested_file_is_a_corrupted_file(tmp_path: Path) -> None:
    store = JsonStorageHandler(tmp_path)
    store.save_data("x", 1)
    (tmp_path / "data" / "x.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CorruptedFileError, match=r"x\.json"):
        store.load_data("x")


# ----------------------------------------------------------------- names


@pytest.fixture(params=["json", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> DataStorage:
    if request.param == "json":
        return JsonStorageHandler(tmp_path / "store")
    return MemoryStorage()


TOO_LONG = [
    pytest.param("k" * 300, 1, id="300-char-key"),
    pytest.param("é" * 130, 1, id="260-utf8-bytes"),
    pytest.param("/".join(["d" * 200] * 25), 1, id="path-over-path-max"),
    pytest.param("group", {"fine": 1, "x" * 300: 2}, id="long-name-inside-a-dict"),
    pytest.param("group", {"fine": 1, "deep": {"y" * 300: {}}}, id="long-empty-group"),
]


@pytest.mark.parametrize(("key", "value"), TOO_LONG)
def test_names_the_filesystem_cannot_hold_store_nothing(
    store: DataStorage, tmp_path: Path, key: str, value: object
) -> None:
    with pytest.raises(InvalidKeyError, match=r"bytes"):
        store.save_data(key, value)
    assert store.get_keys() == []
    assert "file_sizes_KB" not in store.load_metadata()
    if isinstance(store, JsonStorageHandler):
        assert _files(tmp_path / "store" / "data") == []
        store.close()
        reopened = JsonStorageHandler(tmp_path / "store")
        assert reopened.get_keys() == []
        reopened.close()
    else:
        store.close()


def test_the_json_suffix_counts(tmp_path: Path) -> None:
    """A 251-byte segment fits in memory (and Zarr) but not as ``<segment>.json``."""
    with MemoryStorage() as memory:
        memory.save_data("k" * 251, 1)
    with JsonStorageHandler(tmp_path) as store:
        with pytest.raises(InvalidKeyError, match=r"256 bytes as a file name"):
            store.save_data("k" * 251, np.arange(3))
        assert store.get_keys() == []
        assert _files(tmp_path / "data") == []


def test_segments_near_the_limit_are_stored(store: DataStorage, tmp_path: Path) -> None:
    """237-250-byte segments fit as files: the temporary name no longer adds to them."""
    keys = ["a" * 237, "b" * 250, "c" * 100 + "/" + "d" * 250]
    for key in keys:
        store.save_data(key, np.arange(4, dtype=np.int16))
    for key in keys:
        np.testing.assert_array_equal(store.load_data(key), np.arange(4, dtype=np.int16))
    if isinstance(store, JsonStorageHandler):
        store.close()
        with JsonStorageHandler(tmp_path / "store") as reopened:
            assert reopened.get_keys() == sorted(["a" * 237, "b" * 250, "c" * 100])
            group = reopened.load_data("c" * 100)
            assert list(group) == ["d" * 250]
            np.testing.assert_array_equal(group["d" * 250], np.arange(4, dtype=np.int16))


def test_lookups_of_overlong_keys_say_missing(tmp_path: Path) -> None:
    with JsonStorageHandler(tmp_path) as store:
        assert ("k" * 300) not in store
        with pytest.raises(KeyError):
            store.load_data("k" * 300)


# ----------------------------------------------------------------- temporary files


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temporaries_of_dead_writers_are_removed_at_open(tmp_path: Path) -> None:
    JsonStorageHandler(tmp_path).save_data("x", 1)
    tmp = tmp_path / ".holdall" / "tmp"
    dead_tag = owner_tag().replace(f"p{os.getpid()}", f"p{_dead_pid()}")
    (tmp / f"{dead_tag}-abc.tmp").write_bytes(b"half")
    (tmp / f"{dead_tag}-def.stage").mkdir()
    (tmp / f"{dead_tag}-def.stage" / "y.json").write_text("1")
    (tmp / f"{owner_tag()}-live.tmp").write_bytes(b"mine, still writing")
    (tmp / "notes.txt").write_text("not holdall's")
    with JsonStorageHandler(tmp_path) as store:
        assert sorted(p.name for p in tmp.iterdir()) == sorted(
            [f"{owner_tag()}-live.tmp", "notes.txt"]
        )
        assert store.get_keys() == ["x"]
        assert ".holdall" not in store


# ----------------------------------------------------------------- foreign files


def test_foreign_files_survive_overwrite_delete_and_close(tmp_path: Path) -> None:
    store = JsonStorageHandler(tmp_path)
    store.save_data("g", {"a": 1, "sub": {"b": np.arange(3)}})
    (tmp_path / "README.txt").write_text("root")
    (tmp_path / "data" / "README.txt").write_text("data")
    (tmp_path / "data" / "g" / "README.txt").write_text("group")
    (tmp_path / "data" / "g" / "sub" / "notes.md").write_text("sub")

    store.save_data("g", {"c": 2.5})  # a group over a group
    assert store.load_data("g") == {"c": 2.5}
    assert (tmp_path / "data" / "g" / "README.txt").read_text() == "group"
    assert (tmp_path / "data" / "g" / "sub" / "notes.md").read_text() == "sub"
    assert not (tmp_path / "data" / "g" / "a.json").exists()

    store.save_data("g", 7)  # a value over a group
    assert store.load_data("g") == 7
    assert (tmp_path / "data" / "g" / "README.txt").read_text() == "group"

    store.delete_data("g")
    assert store.get_keys() == []  # what is left of g is not holdall's, so g is gone
    store.save_data("h", [1, 2])
    store.close()
    assert _files(tmp_path) == sorted(
        [
            ".holdall/lock",  # holdall's writer lock (kept: see JsonStorageHandler)
            "README.txt",
            "data/README.txt",
            "data/g/README.txt",
            "data/g/sub/notes.md",
            "data/h.json",
            "metadata.json",
        ]
    )
    with JsonStorageHandler(tmp_path) as reopened:
        assert reopened.get_keys() == ["h"]


# ----------------------------------------------------------------- symbolic links


def test_a_linked_group_is_never_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    store = JsonStorageHandler(tmp_path / "store")
    (tmp_path / "store" / "data" / "g").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match=r"data/g is a symbolic link"):
        store.save_data("g/x", np.arange(3))
    with pytest.raises(UnsafePathError):
        store.save_data("g", {"x": 1})
    assert list(outside.iterdir()) == []
    assert "g" not in store.get_keys()


def test_a_linked_file_is_neither_overwritten_nor_deleted(tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text("1\n")
    store = JsonStorageHandler(tmp_path / "store")
    store.save_data("g", {"a": 1})
    (tmp_path / "store" / "data" / "x.json").symlink_to(secret)
    (tmp_path / "store" / "data" / "g" / "b.json").symlink_to(secret)
    with pytest.raises(UnsafePathError, match=r"x\.json"):
        store.save_data("x", 2)
    with pytest.raises(UnsafePathError, match=r"x\.json"):
        store.delete_data("x")
    with pytest.raises(UnsafePathError, match=r"b\.json"):
        store.delete_data("g")
    with pytest.raises(UnsafePathError, match=r"b\.json"):
        store.save_data("g", 3)
    assert secret.read_text() == "1\n"
    assert (tmp_path / "store" / "data" / "g" / "a.json").is_file()  # nothing removed


def test_linked_store_folders_are_refused_at_open(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "store"
    root.mkdir()
    (root / "data").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="data"):
        JsonStorageHandler(root)
    (root / "data").unlink()
    (root / "metadata.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(UnsafePathError, match=r"metadata\.json"):
        JsonStorageHandler(root)
    assert not (tmp_path / "elsewhere.json").exists()


# ----------------------------------------------------------------- two writers


def _in_child(code: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """Run `code` (with ``store``: a JsonStorageHandler on `folder`) in another process."""
    script = (
        "import sys\nfrom holdall.storage.datastorage import JsonStorageHandler\n"
        f"store = JsonStorageHandler(sys.argv[1], lock_timeout=0.3)\n{code}\nstore.close()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script, str(folder)], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


def test_a_second_writer_never_writes_back_a_stale_copy(tmp_path: Path) -> None:
    mine = JsonStorageHandler(tmp_path)  # opened (metadata read) before the other writer ran
    other = _in_child("store.save_metadata('theirs', 1)\nstore.save_data('t', [1])", tmp_path)
    assert other.returncode == 0, other.stderr
    mine.save_metadata("mine", 2)  # takes the lock, re-reads metadata.json first
    mine.save_data("m", [2])
    mine.close()
    with JsonStorageHandler(tmp_path) as again:
        assert again.load_metadata("theirs") == 1
        assert again.load_metadata("mine") == 2
        assert again.get_keys() == ["m", "t"]


def test_a_writer_waits_for_the_other_then_is_refused_naming_it(tmp_path: Path) -> None:
    mine = JsonStorageHandler(tmp_path)
    mine.save_data("a", 1)  # holds the writer lock until close
    refused = _in_child("store.save_data('b', 2)", tmp_path)
    assert refused.returncode != 0
    assert "StorageLockedError" in refused.stderr
    assert f"pid {os.getpid()}" in refused.stderr or str(os.getpid()) in refused.stderr
    readers = _in_child("print(store.load_data('a'))", tmp_path)  # reading takes no lock
    assert readers.returncode == 0, readers.stderr
    assert readers.stdout.strip() == "1"
    mine.close()
    assert _in_child("store.save_data('b', 2)", tmp_path).returncode == 0
    with JsonStorageHandler(tmp_path) as again:
        assert again.get_keys() == ["a", "b"]
