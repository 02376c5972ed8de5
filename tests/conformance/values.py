"""Values every backend must round-trip exactly, and an exact comparison."""

from __future__ import annotations

from typing import Any

import numpy as np

NUMERIC_DTYPES = [
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
]


def _array(dtype: str, shape: tuple[int, ...], *, big_endian: bool = False) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(abs(hash((dtype, shape))) % 2**32)
    base = (rng.random(shape) * 100).astype(dtype) if dtype != "bool" else rng.random(shape) > 0.5
    if dtype.startswith("complex"):
        base = base + 1j * base[::-1] if base.ndim else base
        base = base.astype(dtype)
    if big_endian:
        base = base.astype(np.dtype(dtype).newbyteorder(">"))
    return np.asarray(base)


ROUNDTRIP_VALUES: dict[str, Any] = {
    **{f"array_{d}": _array(d, (7, 3)) for d in NUMERIC_DTYPES},
    **{
        f"array_{d}_big_endian": _array(d, (5,), big_endian=True)
        for d in ("int32", "float64", "complex128", "uint16")
    },
    "array_0d": np.array(3.5, dtype=np.float32),
    "array_0d_int": np.array(7, dtype=np.int16),
    "array_empty": np.zeros((0,), dtype=np.float64),
    "array_empty_2d": np.zeros((0, 4), dtype=np.int32),
    "array_4d": np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5),
    "array_str": np.array(["alpha", "", "gamma δ"]),
    "array_str_2d": np.array([["a", "bb"], ["ccc", "d"]]),
    "array_object_str": np.array(["x", "yy"], dtype=object),
    "array_bytes": np.array([b"ab", b"c"]),
    "array_noncontiguous": np.arange(20, dtype=np.int64).reshape(4, 5)[:, ::2],
    "array_inf": np.array([np.inf, -np.inf, 1.0]),
    "py_int": 42,
    "py_negative_int": -(2**62),
    "py_float": 2.5,
    "py_bool": True,
    "py_complex": 1 - 2j,
    "py_str": "High-complexity CAD part ✓",
    "py_empty_str": "",
    "py_str_trailing_nul": "nul\x00",
    "list_str_trailing_nul": ["a\x00", "b"],
    "py_bytes": b"\x00\x01binary",
    "py_none": None,
    "np_float32": np.float32(1.25),
    "np_int64": np.int64(-3),
    "np_bool": np.bool_(False),
    "np_complex64": np.complex64(1 + 1j),
    "list_int": [1, 2, 3],
    "list_float": [0.5, 1.5],
    "list_mixed": [1, 2.5, "three", None, True],
    "list_nested": [[1, 2], [3, 4]],
    "list_ragged": [[1], [2, 3]],
    "list_leaf_beside_list": [False, []],
    "list_of_dicts": [{"a": 1}, {"b": [1.5]}],
    "list_empty": [],
    "list_str": ["a", "bb"],
    "tuple": (1, "two", 3.0),
    "dict_nested": {
        "edges_source": np.array([0, 1, 2]),
        "num_nodes": 4,
        "meta": {"name": "g", "ok": True},
    },
    "dict_empty": {},
}


def assert_same(got: Any, want: Any, path: str = "value") -> None:
    """Assert `got` equals `want` exactly: types, dtypes (with byte order), shapes and values."""
    assert type(got) is type(want), f"{path}: type {type(got).__name__} != {type(want).__name__}"
    if isinstance(want, np.ndarray):
        assert got.dtype == want.dtype, f"{path}: dtype {got.dtype} != {want.dtype}"
        assert got.shape == want.shape, f"{path}: shape {got.shape} != {want.shape}"
        assert np.array_equal(got, want, equal_nan=want.dtype.kind in "fc"), (
            f"{path}: values differ"
        )
    elif isinstance(want, np.generic):
        assert got.dtype == want.dtype, f"{path}: dtype {got.dtype} != {want.dtype}"
        assert got == want, f"{path}: {got!r} != {want!r}"
    elif isinstance(want, dict):
        assert set(got) == set(want), f"{path}: keys {sorted(got)} != {sorted(want)}"
        for name in want:
            assert_same(got[name], want[name], f"{path}/{name}")
    elif isinstance(want, list | tuple):
        assert len(got) == len(want), f"{path}: length {len(got)} != {len(want)}"
        for index, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{path}[{index}]")
    else:
        assert got == want, f"{path}: {got!r} != {want!r}"
