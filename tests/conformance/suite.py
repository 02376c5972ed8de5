"""`StorageTests`: the one suite every DataStorage backend runs (see test_backends.py).

A backend's test class sets `make_store` (a fresh writable store), `reopen` (the store as a
later reader sees it: same object for memory, a new handler for files, the read-only archive
for packed stores) and `read_raw` (the stored value read from the medium itself, not through
the store), then inherits every test.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest

from holdall import DataStorage
from holdall.errors import (
    ClosedStorageError,
    InvalidKeyError,
    InvalidValueError,
    KeyNotFoundError,
    ReadOnlyStorageError,
    SchemaError,
    UnsupportedTypeError,
)
from tests.conformance.values import ROUNDTRIP_VALUES, assert_same

HOSTILE_KEYS = [
    "",
    "/abs",
    "../x",
    "a/../../x",
    "a//b",
    "a/",
    ".",
    "a/./b",
    "nul\x00byte",
    "back\\slash",
]


class StorageTests:
    """Contract tests shared by every backend."""

    #: Whether this backend refuses NaN by default.
    rejects_nan: ClassVar[bool] = False
    #: Whether `reopen` gives a read-only store (a packed archive).
    reopens_read_only: ClassVar[bool] = False

    def make_store(self) -> DataStorage:
        raise NotImplementedError

    def reopen(self, store: DataStorage) -> DataStorage:
        raise NotImplementedError

    def read_raw(self, store: DataStorage, key: str) -> Any:
        """The value of an array `key` read from the medium directly, or skip."""
        pytest.skip("no raw reader for this backend")

    @pytest.fixture
    def store(self) -> Any:
        store = self.make_store()
        yield store
        store.close()

    # ---------------------------------------------------------------- round trips

    @pytest.mark.parametrize("name", sorted(ROUNDTRIP_VALUES))
    def test_roundtrip_every_value(self, store: DataStorage, name: str) -> None:
        value = ROUNDTRIP_VALUES[name]
        store.save_data(name, value)
        assert_same(store.load_data(name), value)
        reader = self.reopen(store)
        assert_same(reader.load_data(name), value)

    def test_roundtrip_nested_keys_and_groups(self, store: DataStorage) -> None:
        store.save_data("face/areas", np.array([1.5, 2.5], dtype=np.float32))
        store.save_data("face/types", np.array([1, 2], dtype=np.int32))
        store.save_data("face_areas", np.array([9.0]))
        reader = self.reopen(store)
        assert reader.get_keys() == ["face", "face_areas"]
        assert_same(reader.load_data("face/areas"), np.array([1.5, 2.5], dtype=np.float32))
        assert_same(reader.load_data("face_areas"), np.array([9.0]))
        assert_same(
            reader.load_data("face"),
            {
                "areas": np.array([1.5, 2.5], dtype=np.float32),
                "types": np.array([1, 2], dtype=np.int32),
            },
        )
        assert "face/types" in reader
        assert "face/missing" not in reader

    def test_raw_medium_holds_the_array(self, store: DataStorage) -> None:
        value = np.arange(12, dtype=np.int32).reshape(3, 4)
        store.save_data("raw/array", value)
        assert_same(self.read_raw(store, "raw/array"), value)

    def test_saved_value_is_a_copy(self, store: DataStorage) -> None:
        value = np.zeros(4)
        store.save_data("a", value)
        value[:] = 7
        assert_same(store.load_data("a"), np.zeros(4))

    # ---------------------------------------------------------------- keys and listing

    def test_overwrite_replaces_value_and_kind(self, store: DataStorage) -> None:
        store.save_data("x", {"a": np.arange(3), "b": 1})
        store.save_data("x", np.arange(2.0))
        assert_same(store.load_data("x"), np.arange(2.0))
        assert_same(self.reopen(store).load_data("x"), np.arange(2.0))

    def test_delete_and_listing(self, store: DataStorage) -> None:
        for key in ("b", "a", "g/x"):
            store.save_data(key, 1)
        assert store.get_keys() == ["a", "b", "g"]
        assert list(store) == ["a", "b", "g"]
        assert len(store) == 3
        store.delete_data("g/x")
        store.delete_data("b")
        assert "b" not in store
        assert "file_sizes_KB" not in store.load_metadata() or "b" not in store.load_metadata(
            "file_sizes_KB"
        )
        with pytest.raises(KeyNotFoundError):
            store.delete_data("b")

    def test_missing_key_is_a_keyerror_naming_the_key(self, store: DataStorage) -> None:
        store.save_data("present", 1)
        with pytest.raises(KeyError, match="'absent'") as info:
            store.load_data("absent")
        assert isinstance(info.value, KeyNotFoundError)
        assert info.value.key == "absent"
        with pytest.raises(KeyNotFoundError):
            self.reopen(store).load_data("present/below")

    @pytest.mark.parametrize("key", HOSTILE_KEYS)
    def test_hostile_keys_are_rejected(self, store: DataStorage, key: str) -> None:
        with pytest.raises(InvalidKeyError):
            store.save_data(key, 1)
        with pytest.raises(InvalidKeyError):
            store.load_data(key)
        with pytest.raises(InvalidKeyError):
            store.save_metadata(key, 1)
        assert store.get_keys() == []

    def test_non_string_key(self, store: DataStorage) -> None:
        with pytest.raises(InvalidKeyError, match="must be a str"):
            store.save_data(3, 1)  # type: ignore[arg-type]

    def test_value_below_a_leaf_is_refused(self, store: DataStorage) -> None:
        store.save_data("leaf", 1)
        with pytest.raises(InvalidKeyError, match="holds a value"):
            store.save_data("leaf/child", 2)
        assert store.load_data("leaf") == 1

    # ---------------------------------------------------------------- bad values

    @pytest.mark.parametrize(
        "value",
        [
            object(),
            {1, 2},
            np.array([object()], dtype=object),
            np.zeros(2, dtype="M8[s]"),
            {"a": lambda: 1},
            2**70,
        ],
        ids=["object", "set", "object_array", "datetime", "function_in_dict", "bigint"],
    )
    def test_unsupported_values_raise_and_store_nothing(
        self, store: DataStorage, value: Any
    ) -> None:
        with pytest.raises((UnsupportedTypeError, InvalidValueError)) as info:
            store.save_data("bad", value)
        assert "'bad" in str(info.value)
        assert "bad" not in store

    @pytest.mark.parametrize(
        "value",
        [
            np.array([1.0, np.nan]),
            np.array([np.inf, np.nan, -np.inf], dtype=np.float16),
            np.array([1 + 1j, complex(2.0, np.nan)]),
        ],
        ids=["float64", "float16_between_infinities", "complex_nan_imaginary"],
    )
    def test_nan(self, store: DataStorage, value: np.ndarray[Any, Any]) -> None:
        if self.rejects_nan:
            with pytest.raises(InvalidValueError, match="1 NaN"):
                store.save_data("nan", value)
            assert "nan" not in store
        else:
            store.save_data("nan", value)
            assert_same(self.reopen(store).load_data("nan"), value)

    def test_infinities_without_nan_are_stored(self, store: DataStorage) -> None:
        value = np.array([np.inf, -np.inf, 1.0], dtype=np.float32)
        store.save_data("inf", value)
        assert_same(self.reopen(store).load_data("inf"), value)

    def test_dict_with_bad_name_is_refused_whole(self, store: DataStorage) -> None:
        with pytest.raises(InvalidKeyError):
            store.save_data("d", {"ok": 1, "a/b": 2})
        assert "d" not in store

    # ---------------------------------------------------------------- metadata

    def test_nested_metadata_merges(self, store: DataStorage) -> None:
        store.save_metadata("size_cadfile", 1024000)
        store.save_metadata("processing/duration", 12.5)
        store.save_metadata("processing/timestamp", "2025-10-30T10:30:00")
        store.save_metadata("processing", {"extra": [1, 2]})
        store.save_metadata("array", np.arange(3, dtype=np.int16))
        reader = self.reopen(store)
        assert reader.load_metadata("size_cadfile") == 1024000
        assert reader.load_metadata("processing") == {
            "duration": 12.5,
            "timestamp": "2025-10-30T10:30:00",
            "extra": [1, 2],
        }
        assert_same(reader.load_metadata("array"), np.arange(3, dtype=np.int16))
        with pytest.raises(KeyNotFoundError):
            reader.load_metadata("processing/missing")
        writer = store if not store.closed else reader
        with pytest.raises(InvalidKeyError, match="holds a value"):
            writer.save_metadata("size_cadfile/x", 1)

    def test_size_tracking(self, store: DataStorage) -> None:
        store.save_data("face/areas", np.arange(1000, dtype=np.float64))
        store.save_data("graph", {"src": np.arange(10), "n": 3})
        sizes = self.reopen(store).load_metadata("file_sizes_KB")
        assert sizes["face"]["areas"] > 0
        assert set(sizes["graph"]) == {"src", "n"}

    # ---------------------------------------------------------------- schema

    def test_schema_methods(self, store: DataStorage) -> None:
        assert store.get_schema() == {}
        schema = {
            "domain": "CAD_analysis",
            "groups": {
                "faces": {
                    "primary_dimension": "face",
                    "arrays": {"face_areas": {"dims": ["face"], "dtype": "float32"}},
                },
                "edges": {
                    "primary_dimension": "edge",
                    "arrays": {"edge_lengths": {"dims": ["edge"], "dtype": "float32"}},
                },
            },
        }
        store.set_schema(schema)
        assert store.get_schema() == schema
        assert store.get_group_for_array("face_areas") == "faces"
        assert store.get_group_for_array("edge_lengths") == "edges"
        assert store.get_group_for_array("unknown_array") is None
        assert store.validate_data_against_schema("face_areas", np.array([1.5], dtype=np.float32))
        assert not store.validate_data_against_schema("face_areas", np.ones((2, 2)))
        assert not store.validate_data_against_schema(
            "face_areas", np.array([1, 2, 3], dtype=np.int32)
        )
        assert store.validate_data_against_schema("not_in_schema", np.ones((2, 2)))
        # Enforcement is opt-in (seed 001's users save int64 under int32 declarations).
        label = np.array([1, 2], dtype=np.int64)
        store.save_data("face_areas", label)
        np.testing.assert_array_equal(store.load_data("face_areas"), label)
        store.set_schema(schema, strict=True)
        with pytest.raises(SchemaError, match="face_areas"):
            store.save_data("face_areas", np.ones((2, 2), dtype=np.float32))
        assert store.load_data("face_areas").dtype == np.int64
        store.save_data("face_areas", np.ones(2, dtype=np.float32))
        assert self.reopen(store).get_schema() == schema

    def test_schema_must_be_a_dict(self, store: DataStorage) -> None:
        with pytest.raises(SchemaError):
            store.set_schema(["not", "a", "dict"])  # type: ignore[arg-type]

    # ---------------------------------------------------------------- lifecycle

    def test_use_after_close(self, store: DataStorage) -> None:
        store.save_data("a", 1)
        store.close()
        store.close()  # idempotent
        for call in (
            lambda: store.load_data("a"),
            lambda: store.save_data("b", 1),
            store.get_keys,
            lambda: store.load_metadata("x"),
            lambda: "a" in store,
        ):
            with pytest.raises(ClosedStorageError):
                call()
        assert "closed" in repr(store)

    def test_context_manager_closes(self) -> None:
        with self.make_store() as store:
            store.save_data("a", 1)
        assert store.closed

    def test_format_and_paths(self, store: DataStorage) -> None:
        assert store.format() in {"zarr", "memory", "json"}
        assert isinstance(store.get_file_path("face_areas"), str)
        assert isinstance(store.get_file_path(""), str)

    def test_reopened_store_is_read_only_when_packed(self, store: DataStorage) -> None:
        store.save_data("a", 1)
        reader = self.reopen(store)
        if not self.reopens_read_only:
            assert not reader.read_only
            return
        assert reader.read_only
        for call in (
            lambda: reader.save_data("b", 1),
            lambda: reader.delete_data("a"),
            lambda: reader.save_metadata("m", 1),
            lambda: reader.set_schema({}),
        ):
            with pytest.raises(ReadOnlyStorageError):
                call()
        assert reader.load_data("a") == 1
