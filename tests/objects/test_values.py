"""Every value kind goes through a datastore object and comes back with its exact type."""

from __future__ import annotations

import math
import mmap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

from holdall.errors import CorruptedFileError, InvalidValueError, UnsupportedTypeError
from holdall.objects import DataStore, DataStoreIO, options


def roundtrip(value: Any, **kwargs: Any) -> Any:
    url = DataStoreIO.serialize_write(value, relative_path_prefix="t", **kwargs).url
    return DataStoreIO(url).read_deserialize(**kwargs)


def same(a: Any, b: Any) -> None:
    """Assert equal values of the same type, recursively (NaN equal to NaN)."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype
        assert a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype
        assert a.tobytes() == b.tobytes()
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            same(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    elif isinstance(a, float):
        assert a == b
        assert math.copysign(1, a) == math.copysign(1, b)
    else:
        assert a == b


ARRAYS = {
    "float64": np.linspace(0, 1, 7),
    "big-endian": np.arange(6, dtype=">i4").reshape(2, 3),
    "little-endian-f4": np.arange(5, dtype="<f4"),
    "0-d": np.array(3.5),
    "empty": np.zeros((0, 4), dtype=np.int16),
    "bool": np.array([True, False, True]),
    "complex": np.array([1 + 2j, -3j], dtype=np.complex64),
    "unicode": np.array(["a", "héllo", ""]),
    "bytes": np.array([b"ab", b"\x00c"]),
    "datetime": np.array(["2024-01-01", "2025-06-30"], dtype="datetime64[D]"),
    "timedelta": np.array([1, 2], dtype="timedelta64[ms]"),
    "uint64-max": np.array([np.iinfo(np.uint64).max], dtype=np.uint64),
    "nan": np.array([np.nan, np.inf, -0.0]),
}


@pytest.mark.parametrize("name", list(ARRAYS))
def test_arrays_round_trip(name: str) -> None:
    same(roundtrip(ARRAYS[name]), ARRAYS[name])


def test_memory_order_and_strided_views() -> None:
    fortran = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    back = roundtrip(fortran)
    same(back, fortran)
    assert back.flags.f_contiguous
    strided = np.arange(100).reshape(10, 10)[::3, 1::2]
    same(roundtrip(strided), np.ascontiguousarray(strided))


SCALARS: dict[str, Any] = {
    "int": 7,
    "huge-int": 2**100,
    "negative": -(2**70),
    "float": 0.1,
    "nan": float("nan"),
    "inf": float("-inf"),
    "neg-zero": -0.0,
    "complex": complex(1.5, -2.0),
    "bool": True,
    "none": None,
    "str": "héllo\x00world",
    "long-str": "x" * 10_000 + "\udc80",
    "bytes": b"\x00\xff" * 3,
    "bytearray": bytearray(b"abc"),
    "np.float32": np.float32(1.25),
    "np.int8": np.int8(-3),
    "np.str_": np.str_("abc"),
    "np.datetime64": np.datetime64("2024-02-29T12:00"),
}


@pytest.mark.parametrize("name", list(SCALARS))
def test_scalars_round_trip(name: str) -> None:
    same(roundtrip(SCALARS[name]), SCALARS[name])


def test_nested_containers_keep_their_types() -> None:
    value = {
        "list": [1, "a", [2.5, None]],
        "tuple": (1, (2, 3)),
        1: "int key",
        (1, 2): "tuple key",
        "set": {1, 2, 3},
        "frozenset": frozenset({"a"}),
        "inner": {"array": np.arange(3), "ds": DataStore(x=1)},
    }
    back = roundtrip(value)
    assert back["set"] == {1, 2, 3}
    assert type(back["set"]) is set
    assert type(back["frozenset"]) is frozenset
    assert type(back["inner"]["ds"]) is DataStore
    assert back["inner"]["ds"].x == 1
    same(
        {k: v for k, v in back.items() if "set" not in str(k)},
        {k: v for k, v in value.items() if "set" not in str(k)},
    )


def test_pandas_objects_round_trip() -> None:
    frame = pd.DataFrame(
        {
            "i": [1, 2, 3],
            "f": [0.5, np.nan, 2.0],
            "s": ["a", "b", None],
            "cat": pd.Categorical(["x", "y", "x"]),
            "when": pd.date_range("2024-01-01", periods=3, tz="UTC"),
        },
        index=pd.Index([10, 20, 30], name="id"),
    )
    back = roundtrip(frame)
    pd.testing.assert_frame_equal(back, frame)
    series = pd.Series([1.0, 2.0], index=["a", "b"], name="loss")
    pd.testing.assert_series_equal(roundtrip(series), series)
    unnamed = pd.Series([1, 2, 3])
    pd.testing.assert_series_equal(roundtrip(unnamed), unnamed)


def test_polars_objects_round_trip() -> None:
    frame = pl.DataFrame({"a": [1, 2, None], "b": ["x", "y", "z"], "c": [[1], [], [2, 3]]})
    back = roundtrip(frame)
    assert back.equals(frame)
    assert back.schema == frame.schema
    series = pl.Series("loss", [0.1, 0.2], dtype=pl.Float32)
    back_series = roundtrip(series)
    assert isinstance(back_series, pl.Series)
    assert back_series.equals(series)
    assert back_series.name == "loss"


def test_large_local_arrays_are_memory_mapped_and_writable() -> None:
    array = np.arange(1 << 18, dtype=np.float64)  # 2 MiB, above the read-in threshold
    back = roundtrip(array)
    base = back
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    assert isinstance(base, memoryview)
    assert isinstance(base.obj, mmap.mmap)
    back[0] = -1.0  # copy-on-write: the file is not changed
    same(roundtrip(array), array)


class Opaque:
    def __init__(self, n: int) -> None:
        self.n = n

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.n == self.n

    __hash__ = None  # type: ignore[assignment]


@pytest.mark.parametrize(
    "value",
    [Opaque(1), np.array([1, "a"], dtype=object), np.zeros(2, dtype=[("a", "i4")]), [1, Opaque(2)]],
    ids=["object", "object-array", "structured", "nested-object"],
)
def test_values_without_encoding_are_refused_unless_pickle_is_allowed(value: Any) -> None:
    with pytest.raises(UnsupportedTypeError, match="allow_pickle"):
        DataStoreIO.serialize_write(value, relative_path_prefix="t")
    back = roundtrip(value, allow_pickle=True)
    if isinstance(value, np.ndarray):
        same(back, value)
    else:
        assert back == value


def test_pickled_objects_are_not_loaded_without_permission() -> None:
    url = DataStoreIO.serialize_write(Opaque(3), relative_path_prefix="t", allow_pickle=True).url
    with pytest.raises(UnsupportedTypeError, match="pickled"):
        DataStoreIO(url).read_deserialize()
    with options().ctx({"datastore.allow_pickle": True}):
        assert DataStoreIO(url).read_deserialize() == Opaque(3)


def test_expected_type_is_checked() -> None:
    url = DataStoreIO.serialize_write([1, 2], relative_path_prefix="t").url
    assert DataStoreIO(url).read_deserialize(expected_type=list) == [1, 2]
    with pytest.raises(InvalidValueError, match="expected dict"):
        DataStoreIO(url).read_deserialize(expected_type=dict)
    with pytest.raises(InvalidValueError, match="not a DataStore"):
        DataStore.from_url(url)


def test_damaged_objects_raise_corrupted_file_error(root: Path) -> None:
    url = DataStoreIO.serialize_write({"a": np.arange(1000)}, relative_path_prefix="t").url
    path = Path(DataStoreIO.get_filepath(url))
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(CorruptedFileError, match="truncated"):
        DataStoreIO(url).read_deserialize()
    damaged = bytearray(data)
    damaged[-40] ^= 0xFF  # inside the manifest
    path.write_bytes(bytes(damaged))
    with pytest.raises(CorruptedFileError, match="checksum"):
        DataStoreIO(url).read_deserialize()
    path.write_bytes(b"")
    with pytest.raises(CorruptedFileError, match="not a serialized"):
        DataStoreIO(url).read_deserialize()
    raw = DataStoreIO.write(b"plain bytes", relative_path_prefix="t")
    with pytest.raises(CorruptedFileError, match=r"\.read\(\)"):
        raw.read_deserialize()
    assert raw.read() == b"plain bytes"
