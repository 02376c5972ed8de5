"""Property-based round trips: random dtypes, shapes, byte orders and nested values, every backend."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from holdall import DataStorage, JsonStorageHandler, MemoryStorage, OptStorage
from tests.conformance.values import assert_same

_DTYPES = st.one_of(
    hnp.boolean_dtypes(),
    hnp.integer_dtypes(endianness="="),
    hnp.unsigned_integer_dtypes(endianness="="),
    hnp.floating_dtypes(endianness="="),
    hnp.complex_number_dtypes(endianness="="),
    hnp.integer_dtypes(endianness=">"),
    hnp.floating_dtypes(endianness=">"),
    hnp.unicode_string_dtypes(min_len=1, max_len=6),
)
_ARRAYS = hnp.arrays(
    _DTYPES,
    hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
    elements={"allow_nan": False, "allow_subnormal": True},
)
_NAMES = st.text(alphabet="abcdefghij_-.0123456789", min_size=1, max_size=8).filter(
    lambda name: name not in (".", "..") and not name.startswith("__")
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=10),
    st.binary(max_size=10),
)
_VALUES = st.recursive(
    st.one_of(_SCALARS, _ARRAYS),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(_NAMES, children, max_size=4),
    ),
    max_leaves=8,
)

_BACKENDS: dict[str, Callable[[Path], DataStorage]] = {
    "memory": lambda _: MemoryStorage(),
    "json": lambda folder: JsonStorageHandler(folder / "json"),
    "zarr": lambda folder: OptStorage(folder / "s.zarr"),
    "zarr-v2": lambda folder: OptStorage(folder / "s.zarr", zarr_format=2),
}


def _reopen(store: DataStorage, folder: Path) -> DataStorage:
    if isinstance(store, OptStorage):
        store.compress_store()
        store.close()
        return OptStorage(folder / "s.zarr")
    if isinstance(store, JsonStorageHandler):
        return JsonStorageHandler(folder / "json")
    return store


@pytest.mark.slow
@pytest.mark.parametrize("backend", sorted(_BACKENDS))
@settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(value=_VALUES)
def test_any_value_roundtrips_exactly(backend: str, value: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = _BACKENDS[backend](folder)
        store.save_data("value", value)
        reader = _reopen(store, folder)
        try:
            assert_same(reader.load_data("value"), value)
        finally:
            reader.close()
            store.close()


def test_assert_same_is_strict() -> None:
    """The comparison the properties rely on tells apart what must not be confused."""
    for got, want in [
        (1, 1.0),
        (np.int32(1), np.int64(1)),
        ([1], (1,)),
        (np.zeros(2, ">f8"), np.zeros(2)),
    ]:
        with pytest.raises(AssertionError):
            assert_same(got, want)
