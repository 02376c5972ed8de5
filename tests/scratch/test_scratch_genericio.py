"""GenericIO reader and writer in one process: round-trips, selections, layouts, damage."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from holdall.errors import (
    CorruptedFileError,
    IntegrityError,
    InvalidValueError,
    KeyNotFoundError,
    UnsupportedTypeError,
)
from holdall.scratch import genericio

DTYPES = ["i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f4", "f8"]


def _column(dtype: str, n: int = 1000) -> np.ndarray:
    """Values spread over most of the dtype's range, extremes included."""
    info = np.iinfo(dtype) if dtype[0] in "iu" else np.finfo(dtype)
    values = np.linspace(float(info.min) / 4, float(info.max) / 4, n).astype(dtype)
    values[:2] = [info.min, info.max]
    return values


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("byteorder", ["little", "big"])
@pytest.mark.parametrize("mode", ["plain", "blocks", "blosc"])
def test_round_trip_every_dtype(tmp_path: Path, dtype: str, byteorder: str, mode: str) -> None:
    path = tmp_path / "t.gio"
    column = _column(dtype)
    data = {"v": column, "rep": np.repeat(column[:1], len(column))}  # the 2nd compresses well
    genericio.write(
        path,
        data,
        byteorder=byteorder,
        block_headers=mode == "blocks",
        compress=mode == "blosc",  # type: ignore[arg-type]
    )
    got = genericio.read(path)
    for name, array in data.items():
        np.testing.assert_array_equal(got[name], array)
        assert got[name].dtype == array.dtype
        assert got[name].dtype.isnative
    header = genericio.GenericIOFile(path).header
    assert header.byteorder == ("<" if byteorder == "little" else ">")
    if mode == "blosc":
        assert header.blocks is not None
        assert header.blocks[0][1].filters == ("BLOSC",)


def test_vector_columns_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "v.gio"
    pos = np.arange(12, dtype="f4").reshape(4, 3)
    genericio.write(
        path,
        {"pos": pos, "x": pos[:, 0], "id": np.arange(4, dtype="u8")},
        coordinates={"x": "x"},
        ghosts=["x"],
        phys_origin=(1.0, 2.0, 3.0),
        phys_scale=(4.0, 5.0, 6.0),
    )
    gio = genericio.GenericIOFile(path)
    by_name = {v.name: v for v in gio.variables}
    assert (by_name["pos"].size, by_name["pos"].element_size) == (12, 4)
    assert by_name["x"].phys_coord == "x"
    assert by_name["x"].maybe_ghost
    assert by_name["x"].is_float
    assert by_name["x"].is_signed
    assert not by_name["id"].is_signed
    assert by_name["id"].phys_coord is None
    assert gio.header.phys_origin == (1.0, 2.0, 3.0)
    assert gio.header.phys_scale == (4.0, 5.0, 6.0)
    np.testing.assert_array_equal(gio.read("pos")["pos"], pos)


def test_selected_variables_and_missing_ones(tmp_path: Path) -> None:
    path = tmp_path / "s.gio"
    genericio.write(path, {"a": np.arange(3), "b": np.ones(3), "c": np.zeros(3, "f4")})
    assert list(genericio.read(path, ["c", "a"])) == ["c", "a"]
    with pytest.raises(KeyNotFoundError, match="no variable 'zz'"):
        genericio.read(path, "zz")
    with pytest.raises(KeyNotFoundError):
        genericio.GenericIOFile(path).read(ranks=3)


def test_empty_file_and_zero_rows(tmp_path: Path) -> None:
    path = tmp_path / "e.gio"
    genericio.write(path, {"a": np.zeros(0, "f8")}, compress=True)
    got = genericio.read(path)["a"]
    assert got.shape == (0,)
    assert got.dtype == np.float64


def test_mmap_reads_one_rank_in_file_byte_order(tmp_path: Path) -> None:
    path = tmp_path / "m.gio"
    genericio.write(path, {"a": np.arange(5.0)}, byteorder="big")
    got = genericio.read(path, mmap=True)["a"]
    assert isinstance(got, np.memmap)
    assert got.dtype == np.dtype(">f8")
    assert got.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    genericio.write(path, {"a": np.zeros(1000)}, compress=True)
    with pytest.raises(InvalidValueError, match="compressed"):
        genericio.read(path, mmap=True)


def test_split_layout_rank_map_and_group_files(tmp_path: Path) -> None:
    """Reading a map plus group file in one process (MPI tests write real split jobs)."""
    from holdall.scratch.genericio import _write_rank_map, _WriteOptions

    path = tmp_path / "split.gio"
    _write_rank_map(path, [7], None, _WriteOptions("<", False, False, (0.0,) * 3, (0.0,) * 3))
    genericio.write(f"{path}#7", {"a": np.arange(4)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["split.gio", "split.gio#7"]
    gio = genericio.GenericIOFile(path)
    assert gio.is_rank_map
    assert gio.num_ranks == 1
    assert [v.name for v in genericio.GenericIOFile(tmp_path / "split.gio#7").variables] == ["a"]
    assert genericio.read(path)["a"].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("n_file", "n_ranks", "expected"),
    [
        (4, 2, [[0, 1], [2, 3]]),
        (5, 2, [[0, 1], [2, 3, 4]]),
        (1, 3, [[], [], [0]]),
        (2, 2, [[0], [1]]),
        (7, 3, [[0, 1], [2, 3], [4, 5, 6]]),
    ],
)
def test_source_ranks_cover_every_file_rank_once(
    n_file: int, n_ranks: int, expected: list[list[int]]
) -> None:
    got = [genericio.source_ranks(n_file, n_ranks, r) for r in range(n_ranks)]
    assert got == expected
    assert [r for run in got for r in run] == list(range(n_file))


def test_truncated_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "t.gio"
    genericio.write(path, {"a": np.arange(100.0)})
    raw = path.read_bytes()
    for cut in (len(raw) - 1, 600, 100, 10):
        path.write_bytes(raw[:cut])
        with pytest.raises(CorruptedFileError):
            genericio.read(path)


@pytest.mark.parametrize("compress", [False, True])
def test_bit_flip_in_data_is_an_integrity_error(tmp_path: Path, compress: bool) -> None:
    path = tmp_path / "f.gio"
    genericio.write(path, {"a": np.zeros(1000)}, compress=compress)
    raw = bytearray(path.read_bytes())
    raw[-20] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="CRC mismatch"):
        genericio.read(path)
    if not compress:  # without verification the damaged value comes back as it is
        assert genericio.read(path, verify=False)["a"].any()


def test_bad_inputs_are_rejected_clearly(tmp_path: Path) -> None:
    path = tmp_path / "b.gio"
    with pytest.raises(InvalidValueError, match="same length"):
        genericio.write(path, {"a": np.zeros(2), "b": np.zeros(3)})
    with pytest.raises(InvalidValueError, match="1-D or 2-D"):
        genericio.write(path, {"a": np.zeros((2, 2, 2))})
    with pytest.raises(UnsupportedTypeError, match="astype"):
        genericio.write(path, {"a": np.zeros(2, bool)})
    with pytest.raises(UnsupportedTypeError, match="NUL"):
        genericio.write(path, {"a\x00": np.zeros(2)})
    with pytest.raises(InvalidValueError, match="byteorder"):
        genericio.write(path, {"a": np.zeros(2)}, byteorder="middle")  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match="not in the data"):
        genericio.write(path, {"a": np.zeros(2)}, coordinates={"b": "x"})
    assert not path.exists()


@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_rank_map_of_a_large_job_is_compressed_like_its_data(
    tmp_path: Path, byteorder: str
) -> None:
    """A map of many ranks compresses (few ranks: see the golden bytes under MPI)."""
    from holdall.scratch._gio_io import read_columns, read_header
    from holdall.scratch.genericio import _write_rank_map, _WriteOptions

    order = "<" if byteorder == "little" else ">"
    colors = [rank // 250 for rank in range(1000)]
    grid = [(rank % 10, rank // 10 % 10, rank // 100) for rank in range(1000)]
    path = tmp_path / "map.gio"
    _write_rank_map(path, colors, grid, _WriteOptions(order, True, True, (0.0,) * 3, (1.0,) * 3))
    header = read_header(str(path))
    assert header.byteorder == order
    assert [v.name for v in header.variables] == ["$rank", "$partition", "$x", "$y", "$z"]
    assert header.blocks is not None
    assert all(block.filters == ("BLOSC",) for block in header.blocks[0])
    assert header.phys_scale == (0.0, 0.0, 0.0)
    got = read_columns(str(path), header, ["$partition", "$x", "$z"], [0], verify=True)
    assert got["$partition"].tolist() == colors
    assert got["$x"].tolist() == [g[0] for g in grid]
    assert got["$z"].dtype == np.int32


def _set_filters(path: Path, filters: list[bytes]) -> None:
    """Rewrite the first block header's filter names (and the header CRC), as another
    writer would have set them."""
    from holdall.scratch._crc import crc64, crc_trailer

    raw = bytearray(path.read_bytes())
    header_size, blocks_start = (
        struct.unpack_from("<Q", raw, 8)[0],
        struct.unpack_from("<Q", raw, 160)[0],
    )
    names = b"".join(name.ljust(8, b"\x00") for name in filters).ljust(32, b"\x00")
    raw[blocks_start : blocks_start + 32] = names
    raw[header_size : header_size + 8] = crc_trailer(crc64(bytes(raw[:header_size])))
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("filters", [[b"SZ", b"BLOSC"], [b"SZ"]])
@pytest.mark.parametrize("mmap", [False, True])
def test_sz_lossy_blocks_are_refused_clearly(
    tmp_path: Path, filters: list[bytes], mmap: bool
) -> None:
    path = tmp_path / "sz.gio"
    genericio.write(path, {"x": np.zeros(1000, "f4")}, byteorder="little", compress=True)
    _set_filters(path, filters)
    gio = genericio.GenericIOFile(path)  # headers are fine: only the data is out of reach
    assert gio.header.blocks is not None
    assert gio.header.blocks[0][0].filters == tuple(f.decode() for f in filters)
    with pytest.raises(UnsupportedTypeError, match="lossy SZ filter") as info:
        gio.read("x", mmap=mmap)
    assert str(path) in str(info.value)
    assert "'x'" in str(info.value)


def test_unknown_filter_is_corrupted(tmp_path: Path) -> None:
    path = tmp_path / "zz.gio"
    genericio.write(path, {"x": np.zeros(1000, "f4")}, byteorder="little", compress=True)
    _set_filters(path, [b"ZFP"])
    with pytest.raises(CorruptedFileError, match="unknown filters"):
        genericio.read(path)


@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_large_blocks_checked_on_the_worker_still_catch_damage(
    tmp_path: Path, byteorder: str
) -> None:
    """Blocks over a MiB are checksummed on the CRC thread while the next ones are read."""
    path = tmp_path / "big.gio"
    data = {"a": np.arange(600_000, dtype="f8"), "b": np.arange(600_000, dtype="i4")}
    genericio.write(path, data, byteorder=byteorder)  # type: ignore[arg-type]
    got = genericio.read(path)
    np.testing.assert_array_equal(got["a"], data["a"])
    np.testing.assert_array_equal(got["b"], data["b"])
    raw = bytearray(path.read_bytes())
    header = genericio.GenericIOFile(path).header
    offset, size, _ = header.extent(0, 0)
    raw[offset + size // 2] ^= 0x01  # in the middle of the first, larger block
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="variable 'a' of rank 0"):
        genericio.read(path)
    assert genericio.read(path, "b")["b"].tolist() == data["b"].tolist()
