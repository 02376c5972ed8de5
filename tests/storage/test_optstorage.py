"""OptStorage behaviour beyond the shared contract: archives, crashes, interop, options."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from holdall import OptStorage
from holdall.errors import (
    CorruptedFileError,
    InvalidKeyError,
    InvalidValueError,
    ReadOnlyStorageError,
)
from tests.conformance.values import assert_same


@contextlib.contextmanager
def _zarr_quietly() -> Iterator[None]:
    """zarr-python warns that numcodecs codecs are outside the v3 spec; that is expected here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_allow_nan_opt_out(tmp_path: Path) -> None:
    with OptStorage(tmp_path / "s.zarr", allow_nan=True) as store:
        store.save_data("x", np.array([np.nan, 1.0], dtype=np.float32))
        assert np.isnan(store.load_data("x")[0])


def test_compress_then_close_leaves_only_the_archive_and_companions(tmp_path: Path) -> None:
    store = OptStorage(tmp_path / "part_001.zarr")
    store.save_data("a", np.arange(5))
    store.save_metadata("file_label", 2)
    (tmp_path / "part_001.zarr" / "visu.scs").write_bytes(b"scene")
    size = store.compress_store()
    assert size == (tmp_path / "part_001.zarr.data").stat().st_size
    assert (tmp_path / "part_001.zarr").is_dir(), "the directory stays until close()"
    store.close()
    assert not (tmp_path / "part_001.zarr").exists()
    assert (tmp_path / "stream_cache" / "part_001" / "visu.scs").read_bytes() == b"scene"
    summary = (tmp_path / "files_summary" / "part_001.json").read_text()
    assert '"file_label": 2' in summary
    with zipfile.ZipFile(tmp_path / "part_001.zarr.data") as archive:
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
        assert {"zarr.json", "metadata.json", "a/zarr.json", "a/c/0"} <= set(archive.namelist())


def test_writes_after_compress_are_repacked_on_close(tmp_path: Path) -> None:
    store = OptStorage(tmp_path / "s.zarr")
    store.save_data("a", 1)
    store.compress_store()
    store.save_data("b", 2)
    store.close()
    with OptStorage(tmp_path / "s.zarr") as reader:
        assert reader.read_only
        assert reader.get_keys() == ["a", "b"]


def test_read_only_archive_refuses_compress(tmp_path: Path) -> None:
    with OptStorage(tmp_path / "s.zarr") as store:
        store.save_data("a", 1)
        store.compress_store()
    with (
        OptStorage(tmp_path / "s.zarr") as reader,
        pytest.raises(ReadOnlyStorageError, match="read-only"),
    ):
        reader.compress_store()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_archive_is_reported_on_open(tmp_path: Path, damage: str) -> None:
    with OptStorage(tmp_path / "s.zarr") as store:
        store.save_data("a", np.arange(1000))
        store.compress_store()
    archive = tmp_path / "s.zarr.data"
    data = archive.read_bytes()
    archive.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": b"not a zip" * 10, "empty": b""}[damage]
    )
    with pytest.raises(CorruptedFileError, match=r"s\.zarr\.data"):
        OptStorage(tmp_path / "s.zarr")


def test_corrupted_chunk_is_reported_on_read(tmp_path: Path) -> None:
    with OptStorage(tmp_path / "s.zarr") as store:
        store.save_data("a", np.arange(1000, dtype=np.float64))
        store.flush()
    chunk = tmp_path / "s.zarr" / "a" / "c" / "0"
    chunk.write_bytes(b"\x00" * 16)
    with (
        OptStorage(tmp_path / "s.zarr") as reader,
        pytest.raises(CorruptedFileError, match="a/c/0"),
    ):
        reader.load_data("a")


def test_reserved_names_are_refused(tmp_path: Path) -> None:
    with OptStorage(tmp_path / "s.zarr") as store:
        for key in ("zarr.json", "g/.zarray", "metadata.json", "__private"):
            with pytest.raises(InvalidKeyError, match="reserved"):
                store.save_data(key, 1)


def test_bad_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidValueError, match="zarr_format"):
        OptStorage(tmp_path / "a.zarr", zarr_format=4)  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match="compression"):
        OptStorage(tmp_path / "b.zarr", compression="lzma")  # type: ignore[arg-type]


@pytest.mark.parametrize("compression", ["default", "zstd12", "none"])
def test_large_multichunk_array_roundtrips(tmp_path: Path, compression: str) -> None:
    rng = np.random.default_rng(1)
    value = rng.normal(size=(3001, 7)).astype(np.float32)
    with OptStorage(tmp_path / "s.zarr", compression=compression, chunk_bytes=16 * 1024) as store:  # type: ignore[arg-type]
        store.save_data("x", value)
        store.compress_store()
    with OptStorage(tmp_path / "s.zarr") as reader:
        assert_same(reader.load_data("x"), value)
        (info,) = reader.inspect()
        assert info.shape == (3001, 7)
        assert info.stored_bytes > 0


def test_zarr_and_xarray_read_what_optstorage_wrote(tmp_path: Path) -> None:
    import xarray as xr
    import zarr

    for zarr_format in (2, 3):
        path = tmp_path / f"v{zarr_format}.zarr"
        with OptStorage(path, zarr_format=zarr_format) as store:  # type: ignore[arg-type]
            store.save_data("face_areas", np.array([1.5, 2.5], dtype=np.float32))
            store.save_data("edge_index", np.arange(6, dtype=np.int32).reshape(3, 2))
            store.save_data("names", np.array(["a", "bb"]))
            store.save_data("graph", {"src": np.array([0, 1])})
            store.compress_store()
            store.flush()
            with _zarr_quietly():
                group = zarr.open_group(str(path), mode="r")
                np.testing.assert_array_equal(group["edge_index"][:], np.arange(6).reshape(3, 2))
                np.testing.assert_array_equal(group["graph/src"][:], [0, 1])
                dataset = xr.open_zarr(str(path))
                assert dataset["face_areas"].dims == ("face_areas_dim_0",)
                np.testing.assert_array_equal(dataset["face_areas"].values, [1.5, 2.5])
                assert list(dataset["names"].values) == ["a", "bb"]
                archive = zarr.storage.ZipStore(f"{path}.data", mode="r")
                np.testing.assert_array_equal(
                    zarr.open_group(archive, mode="r")["face_areas"][:], [1.5, 2.5]
                )
                np.testing.assert_array_equal(
                    xr.open_zarr(archive)["edge_index"].values, np.arange(6).reshape(3, 2)
                )
                archive.close()


def test_reads_zarr_v2_directory_and_zip_written_by_zarr(tmp_path: Path) -> None:
    import zarr

    with _zarr_quietly():
        group = zarr.open_group(str(tmp_path / "foreign.zarr"), mode="w", zarr_format=2)
        group.create_array("ints", data=np.arange(10, dtype=">i4"), chunks=(3,))
        group.create_array("text", data=np.array(["x", "yz"]))
        sub = group.create_group("sub")
        sub.create_array("f", data=np.ones((2, 2), dtype=np.float64))
        zip_store = zarr.storage.ZipStore(tmp_path / "foreign3.zarr.zip", mode="w")
        group3 = zarr.open_group(zip_store, mode="w")
        group3.create_array("v", data=np.arange(4, dtype=np.int16), chunks=(2,))
        zip_store.close()
    with OptStorage(tmp_path / "foreign.zarr") as store:
        assert store.zarr_format == 2
        assert_same(store.load_data("ints"), np.arange(10, dtype=">i4"))
        assert list(store.load_data("text")) == ["x", "yz"]
        assert_same(store.load_data("sub"), {"f": np.ones((2, 2))})
    with OptStorage(tmp_path / "foreign3.zarr", compress_extension=".zip") as archive:
        assert archive.read_only
        assert_same(archive.load_data("v"), np.arange(4, dtype=np.int16))


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np
    from holdall import OptStorage
    from holdall.storage import _archive
    path, phase = sys.argv[1], sys.argv[2]
    store = OptStorage(path, chunk_bytes=1 << 20)
    rng = np.random.default_rng(0)
    store.save_data("big", rng.random(8_000_000))
    if phase == "second":
        store.compress_store()
        store.save_data("more", np.arange(10))
    original = _archive._read_entry
    def slow_read(path):
        if path.as_posix().endswith("/c/3"):
            print("packing", flush=True)
            import time; time.sleep(60)
        return original(path)
    _archive._read_entry = slow_read
    store.compress_store()
    """
)


@pytest.mark.parametrize("phase", ["first", "second"])
def test_process_killed_during_compress_leaves_no_partial_archive(
    tmp_path: Path, phase: str
) -> None:
    path = tmp_path / "s.zarr"
    with subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT, str(path), phase], stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "packing"
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    archive = tmp_path / "s.zarr.data"
    if phase == "first":
        assert not archive.exists(), "a killed first compress must not leave an archive"
    else:
        # The archive of the first compress_store is intact and complete.
        with zipfile.ZipFile(archive) as zf:
            assert zf.testzip() is None
        with OptStorage(path) as reader:
            assert reader.read_only
            assert reader.get_keys() == ["big"]
            assert reader.load_data("big").shape == (8_000_000,)
    with OptStorage(path, mode="r+" if phase == "second" else "a"):
        pass  # the next writer removes the killed writer's temporary archive
    assert not (path / ".holdall").exists()
