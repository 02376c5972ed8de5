"""The on-disk structures of a GenericIO file: headers, variable descriptions, offsets.

A file is a header followed by data blocks. The header is a global header, a table of
variable headers, a table of rank headers and, when blocks are used, a table of block
headers (one per rank and variable), closed by a CRC trailer. All integers and floats are in
the byte order named by the magic (``HACC01L`` little, ``HACC01B`` big). Every table records
its own entry size, so older writers' shorter entries are read by treating the missing
trailing fields as absent. docs/formats/genericio.md describes every field and offset.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from holdall.errors import CorruptedFileError, IntegrityError, UnsupportedTypeError
from holdall.scratch._crc import crc64, crc_from_trailer, crc_trailer

__all__ = [
    "BLOCK_HEADER_SIZE",
    "BLOSC_FILTER",
    "CRC_SIZE",
    "GLOBAL_HEADER_SIZE",
    "RANK_HEADER_SIZE",
    "SZ_FILTER",
    "VARIABLE_HEADER_SIZE",
    "Block",
    "Header",
    "RankEntry",
    "Variable",
    "decode_header",
    "encode_header",
    "layout_header",
    "variable_for",
]

ByteOrder = Literal["<", ">"]
Axis = Literal["x", "y", "z"]

MAGIC = {"<": b"HACC01L\x00", ">": b"HACC01B\x00"}
CRC_SIZE = 8
NAME_SIZE = 256
FILTER_NAME_SIZE = 8
MAX_FILTERS = 4
BLOSC_FILTER = "BLOSC"
SZ_FILTER = "SZ"  # the reference's lossy filter, applied before BLOSC; not decoded here

# Field layouts after the byte-order prefix. Sizes: 168, 280, 48 and 48 bytes.
_GLOBAL = "8s12Q3d3d2Q"
_VARIABLE = f"{NAME_SIZE}s3Q"
_RANK = "6Q"
_BLOCK = f"{FILTER_NAME_SIZE * MAX_FILTERS}s2Q"
GLOBAL_HEADER_SIZE = struct.calcsize("<" + _GLOBAL)
VARIABLE_HEADER_SIZE = struct.calcsize("<" + _VARIABLE)
RANK_HEADER_SIZE = struct.calcsize("<" + _RANK)
BLOCK_HEADER_SIZE = struct.calcsize("<" + _BLOCK)

# Offsets of the global header fields that older files may lack.
_PHYS_ORIGIN_AT = 104
_PHYS_SCALE_AT = 128
_BLOCKS_AT = 152
_MIN_GLOBAL_HEADER = _PHYS_ORIGIN_AT  # magic .. GlobalHeaderSize

FLOAT_VALUE = 1 << 0
SIGNED_VALUE = 1 << 1
PHYS_COORD = {"x": 1 << 2, "y": 1 << 3, "z": 1 << 4}
MAYBE_PHYS_GHOST = 1 << 5

_INT_SIZES = (1, 2, 4, 8)
_FLOAT_SIZES = (4, 8)


@dataclass(frozen=True, slots=True)
class Variable:
    """One column of a GenericIO file, as its variable header describes it."""

    name: str
    """Column name (at most 256 bytes of UTF-8, no NUL)."""
    size: int
    """Bytes per row: the element size times the number of elements per row."""
    element_size: int
    """Bytes per element; smaller than `size` for fixed-length vectors per row."""
    flags: int
    """Bit set: float, signed, physical coordinate x/y/z, may be a ghost."""

    @property
    def is_float(self) -> bool:
        """Whether elements are IEEE floats (else integers)."""
        return bool(self.flags & FLOAT_VALUE)

    @property
    def is_signed(self) -> bool:
        """Whether elements are signed (always set for floats by the reference writer)."""
        return bool(self.flags & SIGNED_VALUE)

    @property
    def phys_coord(self) -> Axis | None:
        """The physical axis this column holds positions along, if any."""
        for axis, bit in PHYS_COORD.items():
            if self.flags & bit:
                return axis  # type: ignore[return-value]
        return None

    @property
    def maybe_ghost(self) -> bool:
        """Whether rows may be ghost copies from a neighbouring rank's volume."""
        return bool(self.flags & MAYBE_PHYS_GHOST)

    @property
    def per_row(self) -> int:
        """Elements per row (1 for plain columns)."""
        return self.size // self.element_size

    def dtype(self, byteorder: ByteOrder) -> np.dtype[np.generic]:
        """The numpy element type in the given byte order."""
        kind = "f" if self.is_float else ("i" if self.is_signed else "u")
        sizes = _FLOAT_SIZES if self.is_float else _INT_SIZES
        if self.element_size not in sizes or self.size % self.element_size:
            raise UnsupportedTypeError(
                f"GenericIO variable {self.name!r} has {self.element_size}-byte "
                f"{'float' if self.is_float else 'integer'} elements in {self.size}-byte rows; "
                f"holdall reads floats of {_FLOAT_SIZES} and integers of {_INT_SIZES} bytes",
                got=(self.size, self.element_size, self.flags),
            )
        return np.dtype(f"{byteorder}{kind}{self.element_size}")


@dataclass(frozen=True, slots=True)
class RankEntry:
    """Where one writer rank's rows are, as its rank header records it."""

    coords: tuple[int, int, int]
    """The rank's position in the writer's 3-D process grid."""
    nelems: int
    """Number of rows this rank wrote."""
    start: int
    """File offset of this rank's first data block."""
    global_rank: int
    """The rank's number in the whole writer job (differs from its index in split files)."""


@dataclass(frozen=True, slots=True)
class Block:
    """One data block of one rank and variable, when the file has block headers."""

    filters: tuple[str, ...]
    """Names of the filters applied, in order (``"BLOSC"`` or none)."""
    start: int
    """File offset of the block."""
    size: int
    """Bytes in the block, not counting its CRC trailer."""


@dataclass(frozen=True, slots=True)
class Header:
    """Everything the header of a GenericIO file says."""

    byteorder: ByteOrder
    """``"<"`` for ``HACC01L`` files, ``">"`` for ``HACC01B``."""
    nelems: int
    """Total rows over all ranks in this file."""
    dims: tuple[int, int, int]
    """The writer's 3-D process grid."""
    variables: tuple[Variable, ...]
    """The columns, in file order."""
    ranks: tuple[RankEntry, ...]
    """One entry per rank stored in this file, in file order."""
    blocks: tuple[tuple[Block, ...], ...] | None
    """Per rank, per variable block headers; None when data is laid out contiguously."""
    phys_origin: tuple[float, float, float]
    """Origin of the simulated volume (0 when the header predates the field)."""
    phys_scale: tuple[float, float, float]
    """Extent of the simulated volume (0 when the header predates the field)."""
    header_size: int
    """Bytes of header before its CRC trailer."""

    def variable_index(self, name: str) -> int:
        """Position of the variable `name`; raises `KeyError` when absent."""
        for index, variable in enumerate(self.variables):
            if variable.name == name:
                return index
        raise KeyError(name)

    def extent(self, rank_index: int, var_index: int) -> tuple[int, int, tuple[str, ...]]:
        """File offset, size (without CRC) and filters of one rank's block of one variable."""
        if self.blocks is not None:
            block = self.blocks[rank_index][var_index]
            return block.start, block.size, block.filters
        rank = self.ranks[rank_index]
        offset = rank.start
        for variable in self.variables[:var_index]:
            offset += rank.nelems * variable.size + CRC_SIZE
        return offset, rank.nelems * self.variables[var_index].size, ()

    def data_end(self) -> int:
        """Smallest file size that holds every data block and its CRC."""
        end = self.header_size + CRC_SIZE
        for rank_index in range(len(self.ranks)):
            for var_index in range(len(self.variables)):
                offset, size, _ = self.extent(rank_index, var_index)
                end = max(end, offset + size + CRC_SIZE)
        return end


def variable_for(
    name: str, dtype: np.dtype[np.generic], per_row: int, *, phys_coord: Axis | None, ghost: bool
) -> Variable:
    """Describe a column of `dtype` elements, `per_row` per row, as a GenericIO variable."""
    encoded = name.encode()
    if not name or "\x00" in name or len(encoded) > NAME_SIZE:
        raise UnsupportedTypeError(
            f"GenericIO variable names must be 1 to {NAME_SIZE} bytes of UTF-8 without NUL, "
            f"got {name!r} ({len(encoded)} bytes)",
            got=name,
        )
    if dtype.kind == "f" and dtype.itemsize in _FLOAT_SIZES:
        flags = FLOAT_VALUE | SIGNED_VALUE  # the reference writer marks floats as signed
    elif dtype.kind in "iu" and dtype.itemsize in _INT_SIZES:
        flags = SIGNED_VALUE if dtype.kind == "i" else 0
    else:
        raise UnsupportedTypeError(
            f"GenericIO cannot store variable {name!r} of dtype {dtype}; it holds float32, "
            f"float64 and 8- to 64-bit signed or unsigned integers (convert bools with "
            f".astype(np.uint8))",
            got=dtype,
        )
    if phys_coord is not None:
        flags |= PHYS_COORD[phys_coord]
    if ghost:
        flags |= MAYBE_PHYS_GHOST
    return Variable(name, dtype.itemsize * per_row, dtype.itemsize, flags)


def layout_header(
    *,
    byteorder: ByteOrder,
    variables: Sequence[Variable],
    nelems: Sequence[int],
    coords: Sequence[tuple[int, int, int]],
    global_ranks: Sequence[int],
    dims: tuple[int, int, int],
    phys_origin: tuple[float, float, float],
    phys_scale: tuple[float, float, float],
    block_sizes: Sequence[Sequence[int]] | None = None,
    block_filters: Sequence[Sequence[tuple[str, ...]]] | None = None,
) -> Header:
    """Place every rank's data after the header, the way the reference writer does.

    Without `block_sizes`, each rank's variables follow one another (rows times size, then a
    CRC), rank after rank. With them, one block header per rank and variable records each
    block's offset, size and filters, blocks again packed in rank-then-variable order.
    """
    nvars, nranks = len(variables), len(nelems)
    header_size = GLOBAL_HEADER_SIZE + nvars * VARIABLE_HEADER_SIZE + nranks * RANK_HEADER_SIZE
    if block_sizes is not None:
        header_size += nranks * nvars * BLOCK_HEADER_SIZE
    offset = header_size + CRC_SIZE
    ranks: list[RankEntry] = []
    blocks: list[tuple[Block, ...]] = []
    for rank in range(nranks):
        ranks.append(RankEntry(coords[rank], nelems[rank], offset, global_ranks[rank]))
        row: list[Block] = []
        for var in range(nvars):
            size = (
                block_sizes[rank][var]
                if block_sizes is not None
                else nelems[rank] * variables[var].size
            )
            filters = block_filters[rank][var] if block_filters is not None else ()
            row.append(Block(filters, offset, size))
            offset += size + CRC_SIZE
        blocks.append(tuple(row))
    return Header(
        byteorder=byteorder,
        nelems=sum(nelems),
        dims=dims,
        variables=tuple(variables),
        ranks=tuple(ranks),
        blocks=tuple(blocks) if block_sizes is not None else None,
        phys_origin=phys_origin,
        phys_scale=phys_scale,
        header_size=header_size,
    )


def encode_header(header: Header) -> bytes:
    """The header's bytes in the current format, including its CRC trailer."""
    order = header.byteorder
    nvars, nranks = len(header.variables), len(header.ranks)
    vars_start = GLOBAL_HEADER_SIZE
    ranks_start = vars_start + nvars * VARIABLE_HEADER_SIZE
    blocks_start = ranks_start + nranks * RANK_HEADER_SIZE
    has_blocks = header.blocks is not None
    parts = [
        struct.pack(
            order + _GLOBAL,
            MAGIC[order],
            header.header_size,
            header.nelems,
            *header.dims,
            nvars,
            VARIABLE_HEADER_SIZE,
            vars_start,
            nranks,
            RANK_HEADER_SIZE,
            ranks_start,
            GLOBAL_HEADER_SIZE,
            *header.phys_origin,
            *header.phys_scale,
            BLOCK_HEADER_SIZE if has_blocks else 0,
            blocks_start if has_blocks else 0,
        )
    ]
    for var in header.variables:
        parts.append(
            struct.pack(order + _VARIABLE, var.name.encode(), var.flags, var.size, var.element_size)
        )
    for rank in header.ranks:
        parts.append(
            struct.pack(order + _RANK, *rank.coords, rank.nelems, rank.start, rank.global_rank)
        )
    for row in header.blocks or ():
        for block in row:
            names = b"".join(
                name.encode().ljust(FILTER_NAME_SIZE, b"\x00")[:FILTER_NAME_SIZE]
                for name in block.filters
            )
            parts.append(struct.pack(order + _BLOCK, names, block.start, block.size))
    body = b"".join(parts)
    return body + crc_trailer(crc64(body))


def decode_header(buffer: bytes, path: str) -> Header:
    """Parse and check the header at the start of `buffer` (the header bytes and its CRC).

    Raises `CorruptedFileError` when the bytes are not a GenericIO header or are cut short,
    and `IntegrityError` when the header CRC does not match.
    """
    magic = buffer[:8]
    orders = [order for order, known in MAGIC.items() if magic[:7] == known[:7]]
    if not orders:
        raise CorruptedFileError(
            f"{path} is not a GenericIO file: it starts with {magic!r}, "
            f"expected b'HACC01L' or b'HACC01B'",
            path=path,
        )
    order: ByteOrder = orders[0]  # type: ignore[assignment]
    if len(buffer) < _MIN_GLOBAL_HEADER:
        raise CorruptedFileError(f"{path} is truncated inside its global header", path=path)
    fields = struct.unpack_from(order + "12Q", buffer, 8)
    header_size, nelems = fields[0], fields[1]
    dims = (fields[2], fields[3], fields[4])
    nvars, vars_size, vars_start, nranks, ranks_size, ranks_start, global_size = fields[5:12]
    if len(buffer) < header_size + CRC_SIZE:
        raise CorruptedFileError(
            f"{path} is truncated: its header needs {header_size + CRC_SIZE} bytes, "
            f"the file has {len(buffer)}",
            path=path,
        )
    region = memoryview(buffer)[:header_size]
    expected = crc_from_trailer(buffer[header_size : header_size + CRC_SIZE])
    got = crc64(region)
    if got != expected:
        raise IntegrityError(
            f"{path}: the header CRC does not match (stored {expected:#018x}, computed "
            f"{got:#018x}); the file is damaged",
            path=path,
            expected=expected,
            got=got,
        )

    def present(at: int, width: int) -> bool:
        return at + width <= int(global_size)

    origin = (
        struct.unpack_from(order + "3d", buffer, _PHYS_ORIGIN_AT)
        if present(_PHYS_ORIGIN_AT, 24)
        else (0.0, 0.0, 0.0)
    )
    scale = (
        struct.unpack_from(order + "3d", buffer, _PHYS_SCALE_AT)
        if present(_PHYS_SCALE_AT, 24)
        else (0.0, 0.0, 0.0)
    )
    blocks_size, blocks_start = (
        struct.unpack_from(order + "2Q", buffer, _BLOCKS_AT) if present(_BLOCKS_AT, 16) else (0, 0)
    )
    _check_table(path, "variable", vars_start, nvars, vars_size, 2 * 8 + NAME_SIZE, header_size)
    _check_table(path, "rank", ranks_start, nranks, ranks_size, 5 * 8, header_size)
    variables = tuple(
        _decode_variable(buffer, order, vars_start + i * vars_size, vars_size) for i in range(nvars)
    )
    ranks = tuple(
        _decode_rank(buffer, order, ranks_start + i * ranks_size, ranks_size, i)
        for i in range(nranks)
    )
    blocks = None
    if blocks_size > 0:
        _check_table(
            path, "block", blocks_start, nranks * nvars, blocks_size, BLOCK_HEADER_SIZE, header_size
        )
        blocks = tuple(
            tuple(
                _decode_block(buffer, order, blocks_start + (r * nvars + v) * blocks_size)
                for v in range(nvars)
            )
            for r in range(nranks)
        )
    return Header(
        byteorder=order,
        nelems=nelems,
        dims=dims,
        variables=variables,
        ranks=ranks,
        blocks=blocks,
        phys_origin=origin,
        phys_scale=scale,
        header_size=header_size,
    )


def _check_table(
    path: str, what: str, start: int, count: int, entry: int, minimum: int, end: int
) -> None:
    if count and (entry < minimum or start + count * entry > end):
        raise CorruptedFileError(
            f"{path}: the {what} header table ({count} entries of {entry} bytes at {start}) "
            f"does not fit a {end}-byte header with entries of at least {minimum} bytes",
            path=path,
        )


def _decode_variable(buffer: bytes, order: ByteOrder, at: int, entry: int) -> Variable:
    raw_name, flags, size = struct.unpack_from(order + f"{NAME_SIZE}s2Q", buffer, at)
    element_size = size
    if entry >= VARIABLE_HEADER_SIZE:
        (element_size,) = struct.unpack_from(order + "Q", buffer, at + NAME_SIZE + 16)
    name = raw_name.split(b"\x00", 1)[0].decode(errors="replace")
    return Variable(name, size, element_size or size, flags)


def _decode_rank(buffer: bytes, order: ByteOrder, at: int, entry: int, index: int) -> RankEntry:
    x, y, z, nelems, start = struct.unpack_from(order + "5Q", buffer, at)
    global_rank = index
    if entry >= RANK_HEADER_SIZE:
        (global_rank,) = struct.unpack_from(order + "Q", buffer, at + 40)
    return RankEntry((x, y, z), nelems, start, global_rank)


def _decode_block(buffer: bytes, order: ByteOrder, at: int) -> Block:
    names, start, size = struct.unpack_from(order + _BLOCK, buffer, at)
    filters = tuple(
        chunk.split(b"\x00", 1)[0].decode(errors="replace")
        for chunk in (
            names[i : i + FILTER_NAME_SIZE] for i in range(0, len(names), FILTER_NAME_SIZE)
        )
        if chunk[:1] != b"\x00"
    )
    return Block(filters, start, size)
