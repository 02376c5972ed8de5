"""NumpyStore and GenericIOStore in one process: the mapping contract in memory and on disk.

Every contract test runs against both stores in both modes through the `store` fixture;
store-specific behaviour follows.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from holdall.errors import (
    ClosedStorageError,
    CollectiveMismatchError,
    CorruptedFileError,
    InvalidKeyError,
    InvalidValueError,
    KeyNotFoundError,
    UnsupportedTypeError,
)
from holdall.scratch import GenericIOStore, NumpyStore, ScratchStore, genericio
from holdall.scratch._partition import SingleProcess

KINDS = ["numpy-memory", "numpy-disk", "gio-memory", "gio-disk"]


def _make(kind: str, base: Path, **options: Any) -> ScratchStore:
    path = base / "spill" if kind.endswith("disk") else None
    if kind.startswith("numpy"):
        return NumpyStore(None, path, **options)
    return GenericIOStore(None, 2.0, path, **options)


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ScratchStore]:
    with _make(request.param, tmp_path) as made:
        yield made


def _soa(n: int = 5) -> dict[str, np.ndarray]:
    return {"x": np.linspace(0, 1, n), "id": np.arange(n, dtype=np.int64)}


def _files(base: Path) -> list[Path]:
    return sorted(p for p in base.rglob("*") if p.is_file())


def _assert_soa_equal(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert list(got) == list(expected)
    for name, array in expected.items():
        np.testing.assert_array_equal(got[name], array)
        assert got[name].dtype == array.dtype


def test_set_get_round_trip(store: ScratchStore) -> None:
    store["pos_0"] = _soa()
    _assert_soa_equal(store["pos_0"], _soa())


def test_mapping_api(store: ScratchStore) -> None:
    assert len(store) == 0
    assert "a" not in store
    store["a"] = _soa(3)
    store["nested/b"] = _soa(4)
    assert "a" in store
    assert "nested/b" in store
    assert 42 not in store
    assert len(store) == 2
    assert list(store) == ["a", "nested/b"] == list(store.keys())
    del store["a"]
    assert list(store) == ["nested/b"]


def test_overwrite_replaces_value(store: ScratchStore) -> None:
    store["k"] = _soa(3)
    store["k"] = _soa(6)
    assert len(store["k"]["x"]) == 6
    assert len(store) == 1


def test_get_field_with_str_or_list(store: ScratchStore) -> None:
    store["k"] = _soa()
    assert list(store.get_field("k", "id")) == ["id"]
    assert list(store.get_field("k", ["id", "x"])) == ["id", "x"]
    with pytest.raises(KeyNotFoundError):
        store.get_field("k", "nope")
    with pytest.raises(UnsupportedTypeError):
        store.get_field("k", [3])  # type: ignore[list-item]


def test_pop_and_remove(store: ScratchStore) -> None:
    store["k"] = _soa()
    _assert_soa_equal(store.pop("k"), _soa())
    assert "k" not in store
    assert store.pop("k", None) is None
    with pytest.raises(KeyNotFoundError):
        store.pop("k")
    store["k"] = _soa()
    store.remove("k")
    with pytest.raises(KeyNotFoundError):
        store.remove("k")


@pytest.mark.parametrize("key", ["missing", "a/b"])
def test_missing_key_is_key_not_found_and_key_error(store: ScratchStore, key: str) -> None:
    for action in (store.__getitem__, store.remove, lambda k: store.get_field(k, "x")):
        with pytest.raises(KeyNotFoundError, match="no data stored") as info:
            action(key)
        assert isinstance(info.value, KeyError)
        assert info.value.key == key


@pytest.mark.parametrize("key", ["../escape", "/abs", "", "a\x00b", "a//b", "a/./b", "a\\b", 5])
def test_hostile_keys_are_rejected(store: ScratchStore, key: Any, tmp_path: Path) -> None:
    with pytest.raises(InvalidKeyError):
        store[key] = _soa()
    with pytest.raises(InvalidKeyError):
        store[key]
    assert not (tmp_path / "escape").exists()
    assert len(store) == 0


def test_closed_store_refuses_use(store: ScratchStore) -> None:
    store["k"] = _soa()
    store.close()
    store.close()  # idempotent
    assert store.closed
    assert len(store) == 0
    with pytest.raises(ClosedStorageError):
        store["k"] = _soa()
    with pytest.raises(ClosedStorageError):
        store["k"]


@pytest.mark.parametrize("kind", ["numpy-disk", "gio-disk"])
def test_close_deletes_every_file_and_folder_it_made(tmp_path: Path, kind: str) -> None:
    with _make(kind, tmp_path) as store:
        store["a"] = _soa()
        store["deep/er/b"] = _soa()
        root = store.temporary_path
        assert root is not None
        assert root.parent == tmp_path / "spill"
        assert len(_files(tmp_path)) == 2
        store.remove("a")
        assert len(_files(tmp_path)) == 1
    assert list(tmp_path.iterdir()) == []  # the base folder too, since the store made it


@pytest.mark.parametrize("kind", ["numpy-disk", "gio-disk"])
def test_close_on_error_still_cleans_up(tmp_path: Path, kind: str) -> None:
    (tmp_path / "spill").mkdir()
    (tmp_path / "spill" / "mine.txt").write_text("kept")

    def fail_inside_store() -> None:
        with _make(kind, tmp_path) as store:
            store["a"] = _soa()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_inside_store()
    assert _files(tmp_path) == [tmp_path / "spill" / "mine.txt"]


@pytest.mark.parametrize("kind", ["numpy-disk", "gio-disk"])
def test_rejected_value_leaves_no_file(tmp_path: Path, kind: str) -> None:
    with _make(kind, tmp_path) as store:
        with pytest.raises((UnsupportedTypeError, InvalidValueError)):
            store["a"] = {"o": np.array([object(), 1])}
        with pytest.raises(UnsupportedTypeError):
            store["a"] = [1, 2]  # type: ignore[assignment]
        assert _files(tmp_path) == []
        assert "a" not in store


@pytest.mark.parametrize("kind", ["numpy-disk", "gio-disk"])
def test_mmap_mode_returns_file_backed_arrays(tmp_path: Path, kind: str) -> None:
    with _make(kind, tmp_path, mmap=True) as store:
        store["k"] = _soa(1000)
        got = store["k"]
        assert isinstance(got["x"], np.memmap)
        np.testing.assert_array_equal(got["x"], _soa(1000)["x"])


# ---------------------------------------------------------------- NumpyStore specifics


@pytest.mark.parametrize("kind", ["numpy-memory", "numpy-disk"])
def test_numpy_store_keeps_any_shape_and_dtype(tmp_path: Path, kind: str) -> None:
    data = {
        "scalar": np.float32(3.5),
        "matrix": np.arange(12, dtype=">i2").reshape(3, 4),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "text": np.array(["a", "bcd"]),
        "complex": np.array([1 + 2j]),
        "bools": np.array([True, False]),
        "empty": np.zeros((0, 3)),
        "record": np.zeros(2, dtype=[("a", "<f8"), ("b", "i1", (2,))]),
        "strided": np.arange(10)[::3],
        "list": [1, 2, 3],
    }
    with _make(kind, tmp_path) as store:
        store["k"] = data
        got = store["k"]
        for name, value in data.items():
            expected = np.asarray(value)
            np.testing.assert_array_equal(got[name], expected)
            assert got[name].dtype == expected.dtype
            assert got[name].shape == expected.shape


def test_numpy_store_truncated_file_is_corrupted(tmp_path: Path) -> None:
    with NumpyStore(None, tmp_path) as store:
        store["k"] = _soa(100)
        (path,) = _files(tmp_path)
        path.write_bytes(path.read_bytes()[:-10])
        with pytest.raises(CorruptedFileError, match="truncated"):
            store["k"]
        path.write_bytes(b"garbage")
        with pytest.raises(CorruptedFileError, match="not a NumpyStore file"):
            store["k"]


# ---------------------------------------------------------------- GenericIOStore specifics


@pytest.mark.parametrize("kind", ["gio-memory", "gio-disk"])
def test_gio_store_promotes_scalars_to_one_row(tmp_path: Path, kind: str) -> None:
    with _make(kind, tmp_path) as store:
        store["pos_0"] = {x: np.random.uniform(10) for x in "xyz"}  # the seed's example
        got = store["pos_0"]
        assert all(got[x].shape == (1,) and 0 <= got[x][0] <= 10 for x in "xyz")


@pytest.mark.parametrize("kind", ["gio-memory", "gio-disk"])
def test_gio_store_requires_equal_length_1d(tmp_path: Path, kind: str) -> None:
    with _make(kind, tmp_path) as store:
        with pytest.raises(InvalidValueError, match="same length"):
            store["k"] = {"a": np.zeros(2), "b": np.zeros(3)}
        with pytest.raises(InvalidValueError, match="1-D"):
            store["k"] = {"a": np.zeros((2, 2))}
        with pytest.raises(UnsupportedTypeError):
            store["k"] = {"a": np.array(["text"])}


def test_gio_store_file_is_genericio_with_box_and_coordinates(tmp_path: Path) -> None:
    with GenericIOStore(None, 250.0, tmp_path) as store:
        store["halos"] = {"x": np.ones(3, "f4"), "mass": np.ones(3)}
        (path,) = _files(tmp_path)
        assert path.name == "halos.gio"
        gio = genericio.GenericIOFile(path)
        assert gio.header.phys_scale == (250.0, 250.0, 250.0)
        assert [v.phys_coord for v in gio.variables] == ["x", None]


class _TwoRanks(SingleProcess):
    """Rank 0 of a pretend pair whose other rank sent `other` to the agreement step."""

    size = 2

    def __init__(self, other: object) -> None:
        self.other = other

    def allgather(self, value: Any) -> list[Any]:
        return [value, self.other]


@pytest.mark.parametrize(
    ("other", "match"),
    [
        (((genericio.Variable("x", 4, 4, 3),), 5), "same columns and dtypes"),
        (((genericio.Variable("y", 8, 8, 3),), 5), "same columns and dtypes"),
        (None, "rank 1 rejected its data"),
    ],
)
def test_gio_store_checks_ranks_agree(other: object, match: str) -> None:
    with GenericIOStore(_TwoRanks(other), 1.0) as store:
        with pytest.raises(CollectiveMismatchError, match=match):
            store["k"] = {"x": np.zeros(5)}
        assert "k" not in store


def test_partition_must_be_known_kind() -> None:
    with pytest.raises(UnsupportedTypeError, match="mpipartition"):
        NumpyStore(object())
    with pytest.raises(UnsupportedTypeError):
        GenericIOStore("comm", 1.0)


def _soa_file(index: object, payload: bytes = b"", *, length: int | None = None) -> bytes:
    """A NumpyStore file made by hand: magic, index length, JSON index, aligned payload."""
    raw = index if isinstance(index, bytes) else json.dumps(index).encode()
    head = b"HOLDSOA\x01" + struct.pack("<Q", len(raw) if length is None else length) + raw
    return head + b"\x00" * (-len(head) % 64) + payload


def _field(descr: str, shape: list[object], offset: object = 0) -> dict[str, object]:
    return {"fields": [{"name": "a", "descr": descr, "shape": shape, "offset": offset}]}


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (_soa_file(_field("'|O'", [4]), bytes(32)), "Python objects"),
        (_soa_file(_field("[('a', '<f8'), ('o', '|O')]", [1]), bytes(16)), "Python objects"),
        (_soa_file(_field("'|S0'", [1000])), "which no array has"),
        (_soa_file(_field("'<f8'", [1 << 40])), "truncated"),
        (_soa_file(_field("'<f8'", [4]), bytes(31)), "truncated"),
        (_soa_file(_field("'<f8'", [2], 1 << 50), bytes(16)), "truncated"),
        (_soa_file(_field("'<f8'", [-1]), bytes(16)), "damaged index"),
        (_soa_file(_field("'<f8'", [2.0]), bytes(16)), "damaged index"),
        (_soa_file(_field("'<f8'", [True]), bytes(16)), "damaged index"),
        (_soa_file(_field("'<f8'", [2], -8), bytes(16)), "damaged index"),
        (_soa_file(_field("__import__('os')", [2]), bytes(16)), "damaged index"),
        (_soa_file(_field("'<q9'", [2]), bytes(16)), "damaged index"),
        (_soa_file(_field("[" * 5000 + "]" * 5000, [2]), bytes(16)), "damaged index"),
        (_soa_file({"fields": {"a": 1}}), "damaged index"),
        (
            _soa_file({"fields": [{"name": 3, "descr": "'<f8'", "shape": [], "offset": 0}]}),
            "damaged index",
        ),
        (_soa_file(b"\xff{not json", bytes(8)), "damaged index"),
        (_soa_file(b'{"fields": []}', length=1 << 60), "truncated"),
        (b"HOLDSOA\x01\x05", "not a NumpyStore file"),
    ],
)
@pytest.mark.parametrize("mmap", [False, True])
def test_numpy_store_refuses_crafted_and_damaged_files(
    tmp_path: Path, content: bytes, match: str, mmap: bool
) -> None:
    with NumpyStore(None, tmp_path, mmap=mmap) as store:
        store["k"] = {"a": np.zeros(2)}
        (path,) = _files(tmp_path)
        path.write_bytes(content)
        with pytest.raises(CorruptedFileError, match=match) as info:
            store["k"]
        assert info.value.path == str(path)
        assert str(path) in str(info.value)


def test_numpy_store_hand_made_file_reads_back(tmp_path: Path) -> None:
    """The crafted-file helper above builds what the writer builds: the refusals test it."""
    with NumpyStore(None, tmp_path) as store:
        store["k"] = {"a": np.arange(4.0)}
        (path,) = _files(tmp_path)
        assert path.read_bytes() == _soa_file(_field("'<f8'", [4]), np.arange(4.0).tobytes())
