"""SchemaBuilder: groups, arrays, metadata, routing, validation, files and templates (seed 001)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from holdall.errors import KeyNotFoundError, SchemaError
from holdall.schema import SchemaBuilder


def seed_builder() -> SchemaBuilder:
    """The schema of seed 001's CAD encoding workflow, written as its users write it."""
    builder = SchemaBuilder(domain="CAD_analysis", version="1.0")
    faces = builder.create_group("faces", "face", "Face data")
    faces.create_array("face_indices", ["face"], "int32")
    faces.create_array("face_areas", ["face"], "float32", min_value=0)
    edges = builder.create_group("edges", "edge", "Edge data")
    edges.create_array("edge_lengths", ["edge"], "float32")
    builder.define_file_metadata("size_cadfile", "int64", "File size", min_value=0)
    builder.define_file_metadata("processing_time", "float32", "Processing time")
    builder.define_categorical_metadata(
        "file_label", "int32", "Classification", values=[0, 1, 2], labels=["a", "b", "c"]
    )
    builder.set_metadata_routing_rules(
        file_level_patterns=["size_*", "processing_*"], categorical_patterns=["*_label"]
    )
    return builder


def test_build_is_plain_json_with_groups_arrays_and_metadata() -> None:
    schema = seed_builder().build()
    assert json.loads(json.dumps(schema)) == schema
    assert schema["groups"]["faces"]["primary_dimension"] == "face"
    assert schema["groups"]["faces"]["arrays"]["face_areas"] == {
        "dims": ["face"],
        "dtype": "float32",
        "min_value": 0,
    }
    assert schema["metadata"]["file_level"]["size_cadfile"]["dtype"] == "int64"
    assert schema["metadata"]["categorical"]["file_label"]["labels"] == ["a", "b", "c"]
    assert schema["metadata"]["routing_rules"]["categorical_patterns"] == ["*_label"]


def test_group_and_array_listing_and_removal() -> None:
    builder = seed_builder()
    faces = builder.get_group("faces")
    assert builder.list_groups() == ["faces", "edges"]
    assert faces.list_arrays() == ["face_indices", "face_areas"]
    assert faces.get_array("face_indices")["dtype"] == "int32"
    faces.remove_array("face_indices")
    assert faces.list_arrays() == ["face_areas"]
    with pytest.raises(KeyNotFoundError, match="face_indices"):
        faces.get_array("face_indices")
    builder.remove_group("edges")
    assert builder.list_groups() == ["faces"]
    with pytest.raises(KeyNotFoundError, match="edges"):
        builder.get_group("edges")


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda b: b.create_group("", "face"), "name"),
        (lambda b: b.create_group("a/b", "face"), "name"),
        (lambda b: b.create_group("g", ""), "primary_dimension"),
        (lambda b: b.create_group("g", "x", special_processing="explode"), "special_processing"),
        (lambda b: b.get_group("faces").create_array("x", "face", "float32"), "dimensions"),
        (lambda b: b.get_group("faces").create_array("x", ["face"], "floaty"), "dtype"),
        (lambda b: b.get_group("faces").create_array("x", ["face"], "f4", maximum=3), "rule"),
        (
            lambda b: b.get_group("faces").create_array("x", ["f"], "f4", min_value=3, max_value=1),
            "above",
        ),
        (lambda b: b.get_group("faces").create_array("x", ["f"], "f4", min_value="1"), "number"),
        (lambda b: b.define_categorical_metadata("c", labels=["a"]), "labels"),
        (lambda b: b.set_metadata_routing_rules(default_numeric="infoset"), "default_numeric"),
        (lambda b: b.set_metadata_routing_rules(file_level_patterns="size_*"), "list"),
    ],
)
def test_bad_definitions_raise_schema_error(call: Any, match: str) -> None:
    with pytest.raises(SchemaError, match=match) as info:
        call(seed_builder())
    assert isinstance(info.value, ValueError)


def test_build_refuses_an_inconsistent_schema() -> None:
    with pytest.raises(SchemaError, match="no groups"):
        SchemaBuilder().build()
    builder = seed_builder()
    builder.create_group("empty", "thing")
    with pytest.raises(SchemaError, match="'empty' declares no arrays"):
        builder.build()
    flat = seed_builder()
    flat.create_group("pairs", "pair", special_processing="matrix_flattening").create_array(
        "d", ["pair"], "float32"
    )
    with pytest.raises(ValueError, match="flattens matrices"):
        flat.build()
    bad_values = seed_builder()
    bad_values.define_categorical_metadata("kind", "int32", values=[1, "two"])
    assert not bad_values.validate_metadata_schema()
    with pytest.raises(SchemaError, match="'two'"):
        bad_values.build()


def test_routing_explicit_then_pattern_then_type_default() -> None:
    builder = seed_builder()
    assert builder.get_metadata_routing("file_label") == "categorical"
    assert builder.get_metadata_routing("size_cadfile") == "file_level"
    # Patterns match without regard to case, on the full name and its top-level section.
    assert builder.get_metadata_routing("SIZE_Step", "big") == "file_level"
    assert builder.get_metadata_routing("material_label", 3) == "categorical"
    assert builder.get_metadata_routing("processing_stats/duration", "slow") == "file_level"
    # Type defaults: numbers file-level, strings and bools categorical.
    assert builder.get_metadata_routing("weight", 2.5) == "file_level"
    assert builder.get_metadata_routing("weight", 2) == "file_level"
    assert builder.get_metadata_routing("colour", "red") == "categorical"
    assert builder.get_metadata_routing("is_valid", True) == "categorical"
    builder.set_metadata_routing_rules(default_string="file_level", default_numeric="categorical")
    assert builder.get_metadata_routing("colour", "red") == "file_level"
    assert builder.get_metadata_routing("weight", 2.5) == "categorical"
    assert builder.list_metadata_fields() == {
        "file_level": ["size_cadfile", "processing_time"],
        "categorical": ["file_label"],
    }


@pytest.mark.parametrize(
    ("name", "value", "valid"),
    [
        ("size_cadfile", 1024, True),
        ("size_cadfile", -1, False),
        ("size_cadfile", 2**70, False),
        ("size_cadfile", "big", False),
        ("size_cadfile", 1.5, False),
        ("size_cadfile", True, False),
        ("processing_time", float("nan"), True),
        ("file_label", 2, True),
        ("file_label", 7, False),
        ("undefined_field", object(), True),
    ],
)
def test_validate_metadata_field(name: str, value: Any, valid: bool) -> None:
    assert seed_builder().validate_metadata_field(name, value) is valid


def test_string_rules() -> None:
    builder = seed_builder()
    builder.define_file_metadata("part_id", "str", pattern=r"P-\d+", max_length=6)
    assert builder.validate_metadata_field("part_id", "P-12")
    assert not builder.validate_metadata_field("part_id", "X-12")
    assert not builder.validate_metadata_field("part_id", "P-12345")
    assert not builder.validate_metadata_field("part_id", 12)


def test_save_load_copy_round_trip(tmp_path: Path) -> None:
    builder = seed_builder()
    path = tmp_path / "schema.json"
    builder.save_to_file(path)
    loaded = SchemaBuilder.load_from_file(path)
    assert loaded.build() == builder.build()
    assert json.loads(builder.to_json()) == builder.build()
    twin = builder.copy()
    twin.get_group("faces").remove_array("face_areas")
    assert "face_areas" in builder.get_group("faces").list_arrays()
    with pytest.raises(SchemaError, match="cannot read"):
        SchemaBuilder.load_from_file(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(SchemaError, match=r"broken\.json"):
        SchemaBuilder.load_from_file(tmp_path / "broken.json")


def test_load_accepts_metadata_nested_one_level_deeper(tmp_path: Path) -> None:
    schema = seed_builder().build()
    nested = dict(schema)
    nested["metadata"] = {
        "metadata": {k: v for k, v in schema["metadata"].items() if k != "routing_rules"},
        "routing_rules": schema["metadata"]["routing_rules"],
    }
    path = tmp_path / "hoops.json"
    path.write_text(json.dumps(nested))
    assert SchemaBuilder.load_from_file(path).build() == schema


def test_templates() -> None:
    assert {"cad_basic", "cad_advanced"} <= set(SchemaBuilder.list_templates())
    for name in ("cad_basic", "cad_advanced"):
        schema = SchemaBuilder.from_template(name).build()
        assert set(schema["groups"]) == {"faces", "edges", "graph", "faceface"}
        assert schema["groups"]["faceface"]["special_processing"] == "matrix_flattening"
    advanced = SchemaBuilder.from_template("cad_advanced").get_group("faces").list_arrays()
    assert "face_uv_grids" in advanced
    assert (
        "face_uv_grids"
        not in SchemaBuilder.from_template("cad_basic").get_group("faces").list_arrays()
    )
    extended = SchemaBuilder.extend_template("cad_basic", domain="my_parts")
    extended.create_group("vertices", "vertex").create_array(
        "vertex_xyz", ["vertex", "xyz"], "float64"
    )
    assert extended.build()["domain"] == "my_parts"
    assert "vertices" not in SchemaBuilder.from_template("cad_basic").list_groups()
    with pytest.raises(KeyNotFoundError, match="cad_basic"):
        SchemaBuilder.from_template("cad_everything")


def test_seed_import_paths() -> None:
    from holdall.storage import datasetstorage, datastorage

    assert datasetstorage.SchemaBuilder is SchemaBuilder
    from holdall.dataset import DatasetInfo, DatasetMerger

    assert datasetstorage.DatasetMerger is DatasetMerger
    assert datasetstorage.DatasetInfo is DatasetInfo
    with pytest.raises(AttributeError, match="Nothing"):
        datasetstorage.Nothing  # noqa: B018
    from holdall.storage import JsonStorageHandler, MemoryStorage, OptStorage
    from holdall.storage.base import DataStorage

    assert datastorage.DataStorage is DataStorage
    assert datastorage.MemoryStorage is MemoryStorage
    assert datastorage.JsonStorageHandler is JsonStorageHandler
    assert datastorage.OptStorage is OptStorage
