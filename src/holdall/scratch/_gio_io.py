"""Block-level reads and writes of GenericIO files: positioned I/O, CRC checks, blosc.

These helpers know offsets and checksums but nothing of ranks or partitions; `genericio`
decides which blocks to read and where they go.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from holdall._core.optional import import_optional
from holdall.errors import (
    CorruptedFileError,
    IntegrityError,
    InvalidValueError,
    UnsupportedTypeError,
)
from holdall.scratch._crc import RunningCrc, crc64, crc_from_trailer
from holdall.scratch._gio_format import (
    BLOSC_FILTER,
    CRC_SIZE,
    GLOBAL_HEADER_SIZE,
    SZ_FILTER,
    Header,
    Variable,
    decode_header,
)

__all__ = [
    "NATIVE",
    "check_filters",
    "map_columns",
    "pread_into",
    "pwrite_all",
    "read_columns",
    "read_header",
]

NATIVE = "<" if np.little_endian else ">"
_WRITE_CHUNK = 1 << 30  # bytes per pwrite: the GIL stays released for the whole call
# Bytes per preadv: each piece is checksummed on the CRC thread while the next is read. The
# reading thread needs the GIL back after every piece, and may wait a switch interval
# (5 ms) for it while the CRC thread holds it: large pieces make that rare.
_READ_CHUNK = 128 << 20


def pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data.nbytes:
        written = os.pwrite(fd, data[:_WRITE_CHUNK], offset)
        data, offset = data[written:], offset + written


def read_header(path: str) -> Header:
    with open(path, "rb") as handle:
        start = handle.read(GLOBAL_HEADER_SIZE)
        if len(start) < 16:
            raise CorruptedFileError(f"{path} is too short to be a GenericIO file", path=path)
        order = ">" if start[6:7] == b"B" else "<"
        (header_size,) = struct.unpack_from(order + "Q", start, 8)
        size = os.fstat(handle.fileno()).st_size
        handle.seek(0)
        buffer = handle.read(min(size, header_size + CRC_SIZE))
    header = decode_header(buffer, path)
    end = header.data_end()
    if size < end:
        raise CorruptedFileError(
            f"{path} is truncated: its header describes {end} bytes, the file has {size}",
            path=path,
        )
    return header


def _selection(
    header: Header, names: Sequence[str], indices: Sequence[int]
) -> Iterator[tuple[str, int, Variable, int]]:
    """For each column: its name, index, description and total rows over `indices`."""
    total = sum(header.ranks[i].nelems for i in indices)
    for name in names:
        index = header.variable_index(name)
        yield name, index, header.variables[index], total


def read_columns(
    path: str, header: Header, names: Sequence[str], indices: Sequence[int], *, verify: bool
) -> dict[str, np.ndarray[Any, Any]]:
    out: dict[str, np.ndarray[Any, Any]] = {}
    checks: list[_PendingCheck] = []  # verified once everything is read: CRCs run meanwhile
    with open(path, "rb", buffering=0) as handle:
        fd = handle.fileno()
        for name, var_index, variable, total in _selection(header, names, indices):
            dtype = variable.dtype(header.byteorder)
            shape = (total,) if variable.per_row == 1 else (total, variable.per_row)
            array = np.empty(shape, dtype=dtype)
            flat = array.reshape(-1).view(np.uint8).data if array.size else None
            row = 0
            for rank_index in indices:
                nelems = header.ranks[rank_index].nelems
                nbytes = nelems * variable.size
                dest = flat[row : row + nbytes] if flat is not None else memoryview(b"")
                _read_block(fd, path, header, rank_index, var_index, dest, checks, verify=verify)
                row += nbytes
            out[name] = array
    for running, expected, what in checks:
        _check_crc(running.value(), expected, what, path)
    if header.byteorder != NATIVE:  # after the checks: they cover the bytes as stored
        for name, array in out.items():
            out[name] = array.byteswap(inplace=True).view(array.dtype.newbyteorder("="))
    return out


_PendingCheck = tuple[RunningCrc, int, str]
"""A block's running CRC, the CRC its trailer records, and what to call it in an error."""


def _read_block(
    fd: int,
    path: str,
    header: Header,
    rank_index: int,
    var_index: int,
    dest: memoryview,
    checks: list[_PendingCheck],
    *,
    verify: bool,
) -> None:
    """Read one rank's block of one column into `dest`, decompressing it.

    An uncompressed block's CRC runs on the worker while later blocks are read: it is
    appended to `checks` for the caller to compare once all are read.
    """
    offset, size, filters = header.extent(rank_index, var_index)
    what = f"{path}: variable {header.variables[var_index].name!r} of rank {rank_index}"
    trailer = _pread_exact(fd, CRC_SIZE, offset + size, what)
    if not filters:
        if size != dest.nbytes:
            raise CorruptedFileError(
                f"{what} has a {size}-byte block, expected {dest.nbytes}", path=path
            )
        running = RunningCrc() if verify else None
        pread_into(fd, dest, offset, what, running)
        if running is not None:
            checks.append((running, crc_from_trailer(trailer), what))
        return
    check_filters(filters, what, path)
    block = _pread_exact(fd, size, offset, what)
    if verify:
        _check_crc(crc64(block), crc_from_trailer(trailer), what, path)
    blosc = import_optional("blosc", extra="genericio", purpose="reading compressed GenericIO")
    (original_crc,) = struct.unpack_from(header.byteorder + "Q", block, 0)
    try:
        raw = blosc.decompress(memoryview(block)[CRC_SIZE:])
    except Exception as err:  # blosc raises a bare RuntimeError/ValueError on bad input
        raise CorruptedFileError(
            f"{what}: cannot decompress its blosc block: {err}", path=path
        ) from err
    if len(raw) != dest.nbytes:
        raise CorruptedFileError(
            f"{what} decompresses to {len(raw)} bytes, expected {dest.nbytes}", path=path
        )
    dest[:] = raw
    if verify:
        _check_crc(crc64(dest), original_crc, f"{what} (after decompression)", path)


def map_columns(
    path: str, header: Header, names: Sequence[str], rank_index: int, *, verify: bool
) -> dict[str, np.ndarray[Any, Any]]:
    out: dict[str, np.ndarray[Any, Any]] = {}
    with open(path, "rb", buffering=0) as handle:
        for name, var_index, variable, total in _selection(header, names, [rank_index]):
            offset, size, filters = header.extent(rank_index, var_index)
            what = f"{path}: variable {name!r} of rank {rank_index}"
            check_filters(filters, what, path)
            if filters:
                raise InvalidValueError(
                    f"{what} is compressed ({filters}); read it without mmap", got=filters
                )
            dtype = variable.dtype(header.byteorder)
            shape = (total,) if variable.per_row == 1 else (total, variable.per_row)
            if size == 0:
                out[name] = np.empty(shape, dtype=dtype)
                continue
            array = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
            if verify:
                trailer = _pread_exact(handle.fileno(), CRC_SIZE, offset + size, what)
                _check_crc(crc64(array.data.cast("B")), crc_from_trailer(trailer), what, path)
            out[name] = array
    return out


def check_filters(filters: tuple[str, ...], what: str, path: str) -> None:
    """Accept no filter or ``BLOSC``; refuse SZ clearly, and anything else as damage."""
    if filters[:1] == (SZ_FILTER,):
        raise UnsupportedTypeError(
            f"{what} is stored with the reference GenericIO's lossy SZ filter (filters "
            f"{filters}); holdall does not decode SZ: the reference writes SZ 2 streams, and "
            f"the SZ binding on PyPI (pysz) reads SZ3's different format. Read it with the "
            f"reference library built with SZ, or have it rewrite the file without lossy "
            f"compression",
            got=filters,
        )
    if filters not in ((), (BLOSC_FILTER,)):
        raise CorruptedFileError(f"{what} uses unknown filters {filters}", path=path)


def _check_crc(got: int, expected: int, what: str, path: str) -> None:
    if got != expected:
        raise IntegrityError(
            f"{what}: CRC mismatch (stored {expected:#018x}, computed {got:#018x}); "
            f"the file is damaged",
            path=path,
            expected=expected,
            got=got,
        )


def pread_into(
    fd: int, dest: memoryview, offset: int, what: str, running: RunningCrc | None = None
) -> None:
    """Fill `dest` from `offset`; feed each piece read to `running` as it arrives."""
    done = 0
    while done < dest.nbytes:
        count = os.preadv(fd, [dest[done : done + _READ_CHUNK]], offset + done)
        if count == 0:
            raise CorruptedFileError(f"{what} is cut short by the end of the file")
        if running is not None:
            running.feed(dest[done : done + count])
        done += count


def _pread_exact(fd: int, size: int, offset: int, what: str) -> bytearray:
    buffer = bytearray(size)
    pread_into(fd, memoryview(buffer), offset, what)
    return buffer
