"""Every Zarr reader opens what OptStorage writes by default: zarr-python, xarray, tensorstore."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import zarr

from holdall import OptStorage
from tests.conformance.values import NUMERIC_DTYPES

tensorstore = pytest.importorskip("tensorstore", reason="tensorstore is in the test extra")

_DTYPES = [*NUMERIC_DTYPES, ">i4", ">f8"]


def _arrays() -> dict[str, np.ndarray[Any, Any]]:
    rng = np.random.default_rng(3)
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for dtype in _DTYPES:
        name = dtype.replace(">", "be_")
        values = rng.integers(0, 100, size=(40, 3)).astype(dtype)
        arrays[name] = values
        arrays[f"{name}_large"] = rng.integers(0, 100, size=300_000).astype(dtype)
    arrays["index_int32"] = np.arange(400_000, dtype=np.int32)
    arrays["scalar"] = np.array(2.5)
    return arrays


@pytest.mark.parametrize(
    ("zarr_format", "compression"), [(3, "default"), (2, "default"), (2, "zstd12"), (3, "none")]
)
def test_tensorstore_reads_every_numeric_array(
    tmp_path: Path, zarr_format: int, compression: str
) -> None:
    path = tmp_path / "s.zarr"
    arrays = _arrays()
    with OptStorage(path, zarr_format=zarr_format, compression=compression) as store:  # type: ignore[arg-type]
        for name, values in arrays.items():
            store.save_data(name, values)
    driver = "zarr3" if zarr_format == 3 else "zarr"
    for name, values in arrays.items():
        opened = tensorstore.open(
            {"driver": driver, "kvstore": {"driver": "file", "path": str(path / name)}}, open=True
        ).result()
        np.testing.assert_array_equal(opened.read().result(), values, err_msg=name)


def test_zarr_python_opens_a_default_store_without_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    arrays = _arrays()
    with OptStorage(path) as store:
        for name, values in arrays.items():
            store.save_data(name, values)
        store.save_data("labels", ["a", "bb"])
        store.compress_store()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        group = zarr.open_group(zarr.storage.ZipStore(f"{path}.data", mode="r"), mode="r")
        for name, values in arrays.items():
            np.testing.assert_array_equal(group[name][...], values, err_msg=name)
        dataset = xr.open_zarr(zarr.storage.ZipStore(f"{path}.data", mode="r"))
        np.testing.assert_array_equal(dataset["index_int32"].values, arrays["index_int32"])


def test_default_v3_chunks_carry_a_crc32c_and_no_codec_outside_the_core_spec(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.zarr"
    with OptStorage(path) as store:
        store.save_data("ints", np.arange(10**6, dtype=np.int64))
        store.save_data("floats", np.linspace(0, 1, 1000, dtype=np.float32))
    core = {
        "bytes",
        "transpose",
        "blosc",
        "zstd",
        "gzip",
        "crc32c",
        "sharding_indexed",
        "vlen-utf8",
    }
    for name in ("ints", "floats"):
        codecs = json.loads((path / name / "zarr.json").read_text())["codecs"]
        assert {codec["name"] for codec in codecs} <= core
        assert codecs[-1]["name"] == "crc32c"


def test_the_delta_filter_is_an_explicit_opt_in(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    values = np.arange(0, 3 * 10**5, 3, dtype=np.int32)
    with OptStorage(path, delta=True) as store:
        store.save_data("a", values)
    codecs = json.loads((path / "a" / "zarr.json").read_text())["codecs"]
    assert codecs[0]["name"] == "numcodecs.delta"
    with OptStorage(path, mode="r") as store:
        np.testing.assert_array_equal(store.load_data("a"), values)


def _surface_points(side: int) -> np.ndarray[Any, Any]:
    """Points of a cylinder on a UV grid, components last: the layout CAD tools export."""
    v = np.linspace(0, 2 * np.pi, side, dtype=np.float32)
    height = np.linspace(0, 10, side, dtype=np.float32)[:, None] * np.ones((1, side), np.float32)
    ring = np.broadcast_to(v, (side, side))
    return np.stack([np.cos(ring) * 2, np.sin(ring) * 2, height], axis=-1)


def test_points_are_stored_component_major_and_every_reader_gets_them_back(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.zarr"
    points = _surface_points(700)  # 5.6 MiB: sampled, two chunks
    with OptStorage(path) as store:
        store.save_data("points", points)
        info = next(i for i in store.inspect() if i.path == "points")
    codecs = json.loads((path / "points" / "zarr.json").read_text())["codecs"]
    assert codecs[0] == {"name": "transpose", "configuration": {"order": [2, 0, 1]}}
    assert info.codec.startswith("transpose>")
    with OptStorage(path, mode="r") as store:
        loaded = store.load_data("points")
    assert loaded.flags.c_contiguous
    np.testing.assert_array_equal(loaded, points)
    np.testing.assert_array_equal(zarr.open_array(path / "points", mode="r")[...], points)
    opened = tensorstore.open(
        {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path / "points")}},
        open=True,
    ).result()
    np.testing.assert_array_equal(opened.read().result(), points)
    np.testing.assert_array_equal(xr.open_zarr(path)["points"].values, points)


def test_a_single_transposed_chunk_reads_back_in_c_order(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    points = _surface_points(400)  # 1.8 MiB: one chunk, sampled
    with OptStorage(path) as store:
        store.save_data("points", points)
    assert json.loads((path / "points" / "zarr.json").read_text())["codecs"][0]["name"] == (
        "transpose"
    )
    with OptStorage(path, mode="r") as store:
        loaded = store.load_data("points")
    assert loaded.flags.c_contiguous
    assert loaded.flags.writeable
    np.testing.assert_array_equal(loaded, points)


def test_format_2_has_no_transpose_codec_and_keeps_c_order(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    points = _surface_points(700)
    with OptStorage(path, zarr_format=2) as store:
        store.save_data("points", points)
    zarray = json.loads((path / "points" / ".zarray").read_text())
    assert zarray["order"] == "C"
    assert zarray["filters"] is None
    np.testing.assert_array_equal(zarr.open_array(path / "points", mode="r")[...], points)


@pytest.mark.parametrize("order", [(2, 0, 1), (1, 0, 2), (2, 1, 0)])
def test_transposed_arrays_other_tools_write_read_back_in_c_order(
    tmp_path: Path, order: tuple[int, ...]
) -> None:
    from zarr.codecs import TransposeCodec

    path = tmp_path / "foreign.zarr"
    values = np.arange(6 * 5 * 3, dtype=np.float32).reshape(6, 5, 3)
    group = zarr.open_group(path, mode="w", zarr_format=3)
    array = group.create_array(
        "a", shape=values.shape, chunks=(4, 5, 3), dtype=values.dtype,
        filters=[TransposeCodec(order=order)],
    )  # fmt: skip
    array[...] = values
    with OptStorage(path, mode="r") as store:
        loaded = store.load_data("a")
    np.testing.assert_array_equal(loaded, values)
