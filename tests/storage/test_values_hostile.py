"""Values outside the model get a holdall error on every backend, and nothing is stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from holdall import DataStorage, JsonStorageHandler, MemoryStorage, OptStorage
from holdall._core.jsoncodec import to_json
from holdall._core.values import MAX_NESTING_DEPTH, encode_value
from holdall.errors import InvalidValueError, UnsupportedTypeError


@pytest.fixture(params=["memory", "json", "zarr"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DataStorage]:
    makers = {
        "memory": MemoryStorage,
        "json": lambda: JsonStorageHandler(tmp_path / "json"),
        "zarr": lambda: OptStorage(tmp_path / "s.zarr"),
    }
    storage: DataStorage = makers[request.param]()
    yield storage
    storage.close()


def _nested_dict(depth: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    node = root
    for _ in range(depth - 1):
        node["a"] = {}
        node = node["a"]
    return root


def _self_referencing() -> list[Any]:
    looped: list[Any] = [1]
    looped.append(looped)
    return looped


def _dict_cycle() -> dict[str, Any]:
    inner: dict[str, Any] = {}
    outer = {"inner": inner}
    inner["back"] = outer
    return outer


EXTENDED = [
    pytest.param(np.zeros(3, dtype=np.longdouble), "float64", id="longdouble-array"),
    pytest.param(np.clongdouble(1 + 2j), "complex128", id="clongdouble-scalar"),
    pytest.param({"x": [np.longdouble(1.5)]}, "float64", id="longdouble-in-a-list"),
]


@pytest.mark.skipif(
    np.dtype(np.longdouble).itemsize <= 8, reason="longdouble is float64 on this platform"
)
@pytest.mark.parametrize(("value", "cast"), EXTENDED)
def test_extended_precision_is_refused_with_a_cast_to_suggest(
    store: DataStorage, value: Any, cast: str
) -> None:
    with pytest.raises(UnsupportedTypeError, match=rf"'ext.*astype\(np\.{cast}\)"):
        store.save_data("ext", value)
    assert store.get_keys() == []
    with pytest.raises(UnsupportedTypeError, match=rf"astype\(np\.{cast}\)"):
        store.save_metadata("ext", value)


def test_masked_arrays_are_refused_not_stripped(store: DataStorage) -> None:
    masked = np.ma.array([1.0, 2.0, 3.0], mask=[False, True, False])
    for value in (masked, {"grid": masked}, [masked, masked], np.ma.masked):
        with pytest.raises(UnsupportedTypeError, match=r"mask.*filled"):
            store.save_data("m", value)
    with pytest.raises(UnsupportedTypeError, match="mask"):
        store.save_metadata("m", masked)
    assert store.get_keys() == []
    # What the message suggests works and keeps everything.
    store.save_data("m/data", masked.filled(0.0))
    store.save_data("m/mask", np.ma.getmaskarray(masked))
    back = np.ma.array(store.load_data("m/data"), mask=store.load_data("m/mask"))
    np.testing.assert_array_equal(back.mask, masked.mask)
    np.testing.assert_array_equal(back.filled(0.0), masked.filled(0.0))


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: _nested_dict(3000), id="dict-3000-deep"),
        pytest.param(lambda: _nested_dict(MAX_NESTING_DEPTH + 1), id="dict-one-too-deep"),
        pytest.param(_self_referencing, id="list-holding-itself"),
        pytest.param(_dict_cycle, id="dict-cycle"),
        pytest.param(lambda: [[1]] * 2 + [_self_referencing()], id="cycle-below-lists"),
    ],
)
def test_deep_or_cyclic_values_raise_a_holdall_error(store: DataStorage, make: Any) -> None:
    value = make()
    with pytest.raises(InvalidValueError, match=r"contains itself|nest more than 100") as info:
        store.save_data("deep", value)
    assert info.value.key is not None
    assert info.value.key.startswith("deep")
    assert store.get_keys() == []
    with pytest.raises(InvalidValueError, match=r"contains itself|nest more than 100"):
        store.save_metadata("deep", value)
    assert store.load_metadata() == {}


def test_the_depth_limit_itself_is_stored(store: DataStorage) -> None:
    deep = _nested_dict(MAX_NESTING_DEPTH)
    store.save_data("deep", deep)
    assert store.load_data("deep") == deep
    store.save_metadata("deep", deep)
    assert store.load_metadata("deep") == deep


def test_a_shared_item_is_not_a_cycle(store: DataStorage) -> None:
    shared = [1.5, 2.5]
    store.save_data("twice", {"a": shared, "b": [shared, shared]})
    assert store.load_data("twice") == {"a": shared, "b": [shared, shared]}


NAN = np.array([1.0, np.nan])
NAN_INSIDE = [
    pytest.param((NAN, np.zeros(2)), id="tuple-of-arrays"),
    pytest.param([1, "x", NAN], id="mixed-list"),
    pytest.param([[np.float32("nan")]], id="numpy-scalar-in-nested-list"),
    pytest.param({"a": [1, (2, float("nan"))]}, id="float-in-tuple-in-dict"),
]


@pytest.mark.parametrize("value", NAN_INSIDE)
def test_nan_inside_sequences_is_checked(value: Any, tmp_path: Path) -> None:
    with pytest.raises(InvalidValueError, match="NaN"):
        encode_value(value, key="v", reject_nan=True)
    with OptStorage(tmp_path / "s.zarr") as store:
        with pytest.raises(InvalidValueError, match=r"'v.*NaN"):
            store.save_data("v", value)
        assert store.get_keys() == []
    with OptStorage(tmp_path / "nan.zarr", allow_nan=True) as store:
        store.save_data("v", value)
        assert "v" in store


def test_to_json_reports_cycles_by_key() -> None:
    with pytest.raises(InvalidValueError, match=r"'meta/inner/back'.*contains itself"):
        to_json(_dict_cycle(), key="meta")


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((600_000,), np.float32), ((3_000_000,), np.float64), ((1_500_000,), np.complex64)],
    ids=["one_chunk", "many_chunks", "complex_many_chunks"],
)
def test_nan_in_the_last_chunk_of_a_large_array_keeps_the_old_value(
    tmp_path: Path, shape: tuple[int, ...], dtype: Any
) -> None:
    """OptStorage scans large arrays for NaN while compressing them: the refusal is the same."""
    path = tmp_path / "s.zarr"
    old = np.arange(shape[0], dtype=dtype)
    bad = old.copy()
    bad[-1] = np.nan if np.dtype(dtype).kind == "f" else complex(0, np.nan)
    with OptStorage(path) as store:
        store.save_data("a", old)
        store.flush()
        with pytest.raises(InvalidValueError, match=r"'a'.* 1 NaN value\(s\) out of"):
            store.save_data("a", bad)
        staged = [p for p in (path / ".holdall").rglob("*") if p.is_file()]
        assert not [p for p in staged if p.parent.name == "c"], "a refused chunk was left staged"
        np.testing.assert_array_equal(store.load_data("a"), old)
    with OptStorage(path, mode="r") as store:
        np.testing.assert_array_equal(store.load_data("a"), old)
