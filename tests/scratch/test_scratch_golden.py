"""Golden bytes: CRC-64/XZ values and GenericIO headers computed by hand from the layout."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from holdall.errors import CorruptedFileError, IntegrityError
from holdall.scratch import genericio
from holdall.scratch._crc import CHECK_RESIDUE, crc64, crc_from_trailer, crc_trailer

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


def _hand_made_file(order: str) -> bytes:
    """A one-rank file with an int32 column 'a' = [1, 2], laid out field by field."""
    q = order + "Q"
    magic = b"HACC01L\x00" if order == "<" else b"HACC01B\x00"
    header_size = 168 + 280 + 48  # global + one variable + one rank header
    glob = magic + b"".join(
        struct.pack(q, v) for v in (header_size, 2, 1, 1, 1, 1, 280, 168, 1, 48, 168 + 280, 168)
    )
    glob += struct.pack(order + "3d", 0.0, 0.0, 0.0) + struct.pack(order + "3d", 1.0, 1.0, 1.0)
    glob += struct.pack(q, 0) + struct.pack(q, 0)  # no block headers
    var = b"a".ljust(256, b"\x00") + struct.pack(order + "3Q", 2, 4, 4)  # signed, 4 bytes
    rank = struct.pack(order + "6Q", 0, 0, 0, 2, header_size + 8, 0)
    header = glob + var + rank
    data = struct.pack(order + "2i", 1, 2)
    return header + crc_trailer(crc64(header)) + data + crc_trailer(crc64(data))


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
