"""Schemas on stores: opt-in enforcement, rules, and metadata routing recorded with the store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from holdall.errors import SchemaError
from holdall.schema import SchemaBuilder
from holdall.storage import DataStorage, JsonStorageHandler, MemoryStorage, OptStorage
from holdall.storage.base import ROUTING_METADATA_KEY
from tests.schema.test_builder import seed_builder


@pytest.fixture(params=["memory", "json", "zarr"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DataStorage]:
    made: DataStorage
    if request.param == "memory":
        made = MemoryStorage()
    elif request.param == "json":
        made = JsonStorageHandler(tmp_path / "part_json")
    else:
        made = OptStorage(tmp_path / "part.zarr")
    yield made
    made.close()


def test_default_saves_what_is_given(store: DataStorage) -> None:
    """HOOPS AI's tutorial saves an int64 label under an int32 declaration."""
    builder = seed_builder()
    builder.get_group("faces").create_array("face_labels", ["face"], "int32")
    store.set_schema(builder.build())
    labels = np.array([3, 1], dtype=np.int64)
    assert not store.validate_data_against_schema("face_labels", labels)
    store.save_data("face_labels", labels)
    assert store.load_data("face_labels").dtype == np.int64
    store.save_metadata("size_cadfile", "not a number")
    assert store.load_metadata("size_cadfile") == "not a number"


def test_strict_refuses_and_keeps_what_was_there(store: DataStorage) -> None:
    store.set_schema(seed_builder().build(), strict=True)
    store.save_data("face_areas", np.array([1.0, 2.0], dtype=np.float32))
    with pytest.raises(SchemaError, match=r"face_areas.*min_value"):
        store.save_data("face_areas", np.array([-1.0], dtype=np.float32))
    assert not store.validate_data_against_schema("face_areas", np.array([np.nan], np.float32))
    np.testing.assert_array_equal(store.load_data("face_areas"), [1.0, 2.0])
    with pytest.raises(SchemaError, match=r"size_cadfile.*min_value"):
        store.save_metadata("size_cadfile", -5)
    with pytest.raises(SchemaError, match="file_label"):
        store.save_metadata("file_label", 9)
    with pytest.raises(SchemaError, match="file_label"):
        store.save_metadata("file_label", "zero")
    assert "size_cadfile" not in store.load_metadata()
    assert ROUTING_METADATA_KEY not in store.load_metadata()
    store.save_metadata("file_label", 1)
    assert store.load_metadata("file_label") == 1


def test_validate_checks_dims_dtype_and_rules(store: DataStorage) -> None:
    store.set_schema(seed_builder().build())
    assert store.validate_data_against_schema("face_areas", np.array([0.5], dtype=np.float32))
    assert store.validate_data_against_schema("face_areas", np.array([0.5], dtype=np.float16))
    assert not store.validate_data_against_schema("face_areas", np.array([-0.5], dtype=np.float32))
    assert not store.validate_data_against_schema("face_areas", np.ones((2, 2), dtype=np.float32))
    assert store.validate_data_against_schema("faces/face_areas", np.ones(2, dtype=np.float32))


def test_routing_is_recorded_with_the_store(tmp_path: Path) -> None:
    storage = OptStorage(tmp_path / "part_0001.zarr")
    storage.set_schema(seed_builder().build())
    storage.save_metadata("size_cadfile", 1024)  # explicit definition
    storage.save_metadata("file_label", 2)  # explicit definition
    storage.save_metadata("SIZE_step", 77)  # pattern, any case
    storage.save_metadata(
        "processing_stats", {"duration": 1.5, "host": "node1"}
    )  # pattern on section
    storage.save_metadata("colour", "red")  # string default
    storage.save_metadata("weight", 3.25)  # numeric default
    storage.save_metadata("is_valid", True)  # bool default
    storage.save_data("face_areas", np.ones(3, dtype=np.float32))
    storage.compress_store()
    storage.close()
    routes = {
        "size_cadfile": "file_level",
        "file_label": "categorical",
        "SIZE_step": "file_level",
        "processing_stats/duration": "file_level",
        "processing_stats/host": "file_level",
        "colour": "categorical",
        "weight": "file_level",
        "is_valid": "categorical",
    }
    with OptStorage(tmp_path / "part_0001.zarr") as reopened:
        assert reopened.load_metadata(ROUTING_METADATA_KEY) == routes
    summary = json.loads((tmp_path / "files_summary" / "part_0001.json").read_text())
    assert summary[ROUTING_METADATA_KEY] == routes


def test_no_schema_no_routing(store: DataStorage) -> None:
    store.save_metadata("weight", 3.0)
    assert ROUTING_METADATA_KEY not in store.load_metadata()


def test_set_schema_honours_a_nested_metadata_block(store: DataStorage) -> None:
    schema = seed_builder().build()
    schema["metadata"] = {"metadata": schema["metadata"]}
    store.set_schema(schema, strict=True)
    with pytest.raises(SchemaError, match="file_label"):
        store.save_metadata("file_label", 5)
    store.save_metadata("size_anything", 3)
    assert store.load_metadata(ROUTING_METADATA_KEY) == {"size_anything": "file_level"}


def test_template_schema_round_trips_through_a_store(tmp_path: Path) -> None:
    schema = SchemaBuilder.from_template("cad_advanced").build()
    with OptStorage(tmp_path / "p.zarr") as storage:
        storage.set_schema(schema)
        assert storage.get_group_for_array("face_uv_grids") == "faces"
        assert storage.get_schema() == schema
