"""Golden bytes: CRC-64/XZ values and GenericIO headers computed by hand from the layout."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from holdall.errors import CorruptedFileError, IntegrityError
from holdall.scratch import genericio
from holdall.scratch._crc import CHECK_RESIDUE, RunningCrc, crc64, crc_from_trailer, crc_trailer

CHECK = 0x995DC9BBDF1939FA  # CRC-64/XZ of b"123456789"


def test_crc64_xz_check_value() -> None:
    assert crc64(b"123456789") == CHECK
    assert crc64(b"") == 0


def test_trailer_is_inverted_crc_little_endian_and_closes_to_all_ones() -> None:
    trailer = crc_trailer(CHECK)
    assert trailer == bytes.fromhex("05c6e6204436a266")  # ~0x995DC9BBDF1939FA, little-endian
    assert crc64(b"123456789" + trailer) == CHECK_RESIDUE
    assert crc_from_trailer(trailer) == CHECK


def test_crc_of_numpy_buffers_reads_bytes() -> None:
    values = np.arange(4, dtype="<u2")
    assert crc64(values.data) == crc64(b"\x00\x00\x01\x00\x02\x00\x03\x00")


def _one_rank_file(
    order: str,
    columns: dict[str, list[int]],
    *,
    scale: float = 0.0,
    blocks: bool = False,
) -> bytes:
    """A one-rank file of int32 columns (rows `n`), laid out field by field by hand."""
    q = order + "Q"
    magic = b"HACC01L\x00" if order == "<" else b"HACC01B\x00"
    nvars = len(columns)
    n = len(next(iter(columns.values())))
    ranks_start = 168 + nvars * 280
    header_size = ranks_start + 48 + (nvars * 48 if blocks else 0)
    fields = (header_size, n, 1, 1, 1, nvars, 280, 168, 1, 48, ranks_start, 168)
    glob = magic + b"".join(struct.pack(q, v) for v in fields)
    glob += struct.pack(order + "3d", 0.0, 0.0, 0.0) + struct.pack(order + "3d", *[scale] * 3)
    glob += struct.pack(q, 48 if blocks else 0) + struct.pack(q, ranks_start + 48 if blocks else 0)
    var = b"".join(
        name.encode().ljust(256, b"\x00") + struct.pack(order + "3Q", 2, 4, 4)  # signed int32
        for name in columns
    )
    rank = struct.pack(order + "6Q", 0, 0, 0, n, header_size + 8, 0)
    table = b""
    if blocks:  # no filter: blosc cannot shrink a few int32
        table = b"".join(
            bytes(32) + struct.pack(order + "2Q", header_size + 8 + i * (4 * n + 8), 4 * n)
            for i in range(nvars)
        )
    header = glob + var + rank + table
    data = b""
    for values in columns.values():
        block = struct.pack(f"{order}{n}i", *values)
        data += block + crc_trailer(crc64(block))
    return header + crc_trailer(crc64(header)) + data


def _hand_made_file(order: str) -> bytes:
    """A one-rank file with an int32 column 'a' = [1, 2] and a unit box."""
    return _one_rank_file(order, {"a": [1, 2]}, scale=1.0)


@pytest.mark.parametrize(("order", "name"), [("<", "little"), (">", "big")])
def test_written_file_matches_hand_made_bytes(tmp_path: Path, order: str, name: str) -> None:
    path = tmp_path / "a.gio"
    genericio.write(
        path, {"a": np.array([1, 2], dtype="i4")}, byteorder=name, phys_scale=(1.0, 1.0, 1.0)
    )
    expected = _hand_made_file(order)
    assert path.read_bytes() == expected
    assert len(expected) == 496 + 8 + 8 + 8
    assert crc64(expected[: 496 + 8]) == CHECK_RESIDUE


def test_reads_hand_made_file_of_either_byte_order(tmp_path: Path) -> None:
    for order in "<>":
        path = tmp_path / f"{order == '<'}.gio"
        path.write_bytes(_hand_made_file(order))
        got = genericio.read(path)["a"]
        assert got.tolist() == [1, 2]
        assert got.dtype == np.dtype("i4")


def test_reads_older_shorter_headers(tmp_path: Path) -> None:
    """Global header without origin/scale/blocks, variables without ElementSize, ranks
    without GlobalRank: the first writers' layout."""
    glob_size, var_size, rank_size = 104, 272, 40
    header_size = glob_size + var_size + rank_size
    glob = b"HACC01L\x00" + struct.pack(
        "<12Q",
        header_size,
        3,
        1,
        1,
        1,
        1,
        var_size,
        glob_size,
        1,
        rank_size,
        glob_size + var_size,
        glob_size,
    )
    var = b"mass".ljust(256, b"\x00") + struct.pack("<2Q", 3, 8)  # float | signed, 8 bytes
    rank = struct.pack("<5Q", 0, 0, 0, 3, header_size + 8)
    header = glob + var + rank
    data = np.array([1.5, 2.5, 3.5]).tobytes()
    path = tmp_path / "old.gio"
    path.write_bytes(header + crc_trailer(crc64(header)) + data + crc_trailer(crc64(data)))
    gio = genericio.GenericIOFile(path)
    assert gio.header.phys_origin == (0.0, 0.0, 0.0)
    assert gio.header.phys_scale == (0.0, 0.0, 0.0)
    assert gio.variables[0].element_size == 8
    assert gio.header.ranks[0].global_rank == 0
    assert gio.read()["mass"].tolist() == [1.5, 2.5, 3.5]


def test_header_bit_flip_is_an_integrity_error(tmp_path: Path) -> None:
    raw = bytearray(_hand_made_file("<"))
    raw[300] ^= 0x01  # inside the variable name padding
    path = tmp_path / "bad.gio"
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="header CRC"):
        genericio.GenericIOFile(path)


def test_not_a_genericio_file(tmp_path: Path) -> None:
    path = tmp_path / "x.gio"
    path.write_bytes(b"PK\x03\x04" + bytes(200))
    with pytest.raises(CorruptedFileError, match="not a GenericIO file"):
        genericio.read(path)


NATIVE = "<" if np.little_endian else ">"

SPLIT = """
import numpy as np
from mpi4py import MPI
import mpipartition
from holdall.scratch import genericio

partition = mpipartition.Partition()  # a 3-D Cartesian communicator: (2, 1, 1) here
rank = partition.rank
data = {"v": np.arange(3, dtype="i8") + 10 * rank}
genericio.write("cart.gio", data, partition=partition, file_partition=rank, compress=True)
genericio.write("line.gio", data, partition=MPI.COMM_WORLD, file_partition=rank)
genericio.write("same.gio", data, partition=MPI.COMM_WORLD, file_partition=7)
print("ok", rank, flush=True)
"""


@pytest.mark.mpi
def test_rank_map_bytes_match_the_reference_layout(tmp_path: Path, mpi_run: object) -> None:
    """On 2 ranks: a Cartesian map carries $x $y $z, a compressed one has block headers,
    and one partition for all ranks is a plain file, as the reference writes them."""
    lines = mpi_run(SPLIT, 2, tmp_path)  # type: ignore[operator]
    assert sorted(line for line in lines if line.startswith("ok")) == ["ok 0", "ok 1"]
    cart = {"$rank": [0, 1], "$partition": [0, 1], "$x": [0, 1], "$y": [0, 0], "$z": [0, 0]}
    assert (tmp_path / "cart.gio").read_bytes() == _one_rank_file(NATIVE, cart, blocks=True)
    line = {"$rank": [0, 1], "$partition": [0, 1]}
    assert (tmp_path / "line.gio").read_bytes() == _one_rank_file(NATIVE, line)
    assert not (tmp_path / "same.gio#7").exists()
    plain = genericio.GenericIOFile(tmp_path / "same.gio")
    assert not plain.is_rank_map
    assert plain.header.dims == (2, 1, 1)
    assert plain.read()["v"].tolist() == [0, 1, 2, 10, 11, 12]
    for name in ("cart.gio", "line.gio"):
        split = genericio.GenericIOFile(tmp_path / name)
        assert split.is_rank_map
        assert split.read(ranks=1)["v"].tolist() == [10, 11, 12]
        part = genericio.GenericIOFile(tmp_path / f"{name}#1")
        assert [r.global_rank for r in part.header.ranks] == [1]
    assert genericio.GenericIOFile(tmp_path / "cart.gio#1").header.blocks is not None


def test_one_partition_on_one_process_is_a_plain_file(tmp_path: Path) -> None:
    path = tmp_path / "p.gio"
    genericio.write(
        path, {"a": np.array([1, 2], dtype="i4")}, file_partition=5, phys_scale=(1.0, 1.0, 1.0)
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.gio"]
    assert path.read_bytes() == _hand_made_file(NATIVE)


def test_running_crc_equals_the_crc_of_the_whole() -> None:
    data = np.random.default_rng(3).bytes(20 << 20)
    running = RunningCrc()
    for start, stop in [(0, 7), (7, 3 << 20), (3 << 20, 3 << 20), (3 << 20, len(data))]:
        running.feed(memoryview(data)[start:stop])
    assert running.value() == crc64(data)
    small = RunningCrc()
    small.feed(b"12345")
    small.feed(b"6789")
    assert small.value() == CHECK
    assert RunningCrc().value() == crc64(b"") == 0
