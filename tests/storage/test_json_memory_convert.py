"""JSON layout, MemoryStorage groups, and convert_storage between every pair of backends."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from holdall import DataStorage, JsonStorageHandler, MemoryStorage, OptStorage, convert_storage
from holdall.errors import ConversionError, CorruptedFileError, InvalidKeyError, KeyNotFoundError
from tests.conformance.values import ROUNDTRIP_VALUES, assert_same


def test_json_files_are_readable_and_never_collide(tmp_path: Path) -> None:
    store = JsonStorageHandler(tmp_path)
    store.save_data("face/areas", np.array([1.5, 2.3, 4.1], dtype=np.float32))
    store.save_data("face_areas", np.array([7.0]))
    store.save_data("metadata", {"version": "1.0", "author": "HOOPS AI"})
    store.save_data("a.json", 1)
    store.save_metadata("export_timestamp", "2025-10-30T10:30:00")
    document = json.loads((tmp_path / "data" / "face" / "areas.json").read_text())
    assert document["data"] == [1.5, 2.3, 4.1]
    assert document["dtype"] == "<f4"
    assert json.loads((tmp_path / "data" / "metadata" / "version.json").read_text()) == "1.0"
    assert (
        json.loads((tmp_path / "metadata.json").read_text())["export_timestamp"]
        == "2025-10-30T10:30:00"
    )
    assert (tmp_path / "data" / "a%2Ejson.json").is_file()
    assert store.load_data("metadata") == {"version": "1.0", "author": "HOOPS AI"}
    assert store.get_keys() == ["a.json", "face", "face_areas", "metadata"]


def test_json_corrupted_file_is_reported(tmp_path: Path) -> None:
    store = JsonStorageHandler(tmp_path)
    store.save_data("x", [1, 2])
    (tmp_path / "data" / "x.json").write_text("[1, 2")
    with pytest.raises(CorruptedFileError, match=r"x\.json"):
        store.load_data("x")
    (tmp_path / "metadata.json").write_text("[]")
    with pytest.raises(CorruptedFileError, match=r"metadata\.json"):
        JsonStorageHandler(tmp_path)


def test_memory_store_group() -> None:
    root = MemoryStorage()
    first = root.create_store_in_group("part_a")
    second = root.create_store_in_group()
    first.save_data("x", 1)
    group = root.get_store_group()
    assert set(group) == {"part_a", "store_1"}
    assert group["part_a"] is first
    assert group["store_1"] is second
    assert second.get_store_group() is group
    with pytest.raises(InvalidKeyError, match="already exists"):
        root.create_store_in_group("part_a")
    with pytest.raises(KeyNotFoundError):
        group["missing"]
    path = root.get_file_path("")
    assert Path(path).is_dir()
    assert "No file path" in root.get_file_path("face_areas")
    root.close()
    assert not Path(path).exists()


def _backends(tmp_path: Path) -> dict[str, DataStorage]:
    return {
        "memory": MemoryStorage(),
        "json": JsonStorageHandler(tmp_path / "json"),
        "zarr": OptStorage(tmp_path / "s.zarr"),
    }


@pytest.mark.parametrize(
    ("source", "dest"), list(itertools.permutations(["memory", "json", "zarr"], 2))
)
def test_convert_between_every_pair(tmp_path: Path, source: str, dest: str) -> None:
    stores = _backends(tmp_path)
    src, dst = stores[source], stores[dest]
    values = {name: value for name, value in ROUNDTRIP_VALUES.items() if "nan" not in name}
    for name, value in values.items():
        src.save_data(name, value)
    src.save_metadata("processing/duration", 1.5)
    convert_storage(src, dst, verbose=True)
    for name, value in values.items():
        assert_same(dst.load_data(name), value, name)
    assert dst.load_metadata("processing") == {"duration": 1.5}
    assert set(dst.load_metadata("file_sizes_KB")) == {
        name for name, value in values.items() if not (isinstance(value, dict) and not value)
    }
    for store in stores.values():
        store.close()


def test_convert_empty_source_raises_runtime_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no data keys") as info:
        convert_storage(MemoryStorage(), MemoryStorage())
    assert isinstance(info.value, ConversionError)


def test_convert_names_the_failing_key(tmp_path: Path) -> None:
    source = MemoryStorage()
    source.save_data("bad", np.array([np.nan]))
    with OptStorage(tmp_path / "s.zarr") as dest, pytest.raises(ConversionError, match="'bad'"):
        convert_storage(source, dest)
