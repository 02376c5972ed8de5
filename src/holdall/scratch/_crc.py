"""CRC-64/XZ, the checksum GenericIO puts after every header and data block.

GenericIO uses the reflected ECMA-182 polynomial with all-ones initial value and final XOR,
the variant catalogued as CRC-64/XZ (check value ``0x995DC9BBDF1939FA`` for ``b"123456789"``).
Each protected region is followed by eight bytes chosen so that the CRC of the region plus
those bytes is all ones; for a reflected CRC those bytes are the bit-inverted CRC in
little-endian order, whatever the byte order of the file.

The checksum runs at several GB/s through the compiled `anycrc` package (the ``genericio``
extra). A pure-Python fallback would run at a few MB/s and make every spill CRC-bound, so
holdall raises `BackendUnavailableError` instead of degrading silently.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from holdall._core.optional import import_optional

__all__ = ["CHECK_RESIDUE", "crc64", "crc_from_trailer", "crc_trailer"]

#: CRC of any region followed by its trailer.
CHECK_RESIDUE = 0xFFFF_FFFF_FFFF_FFFF
_MASK = CHECK_RESIDUE


@cache
def _model() -> Any:
    anycrc = import_optional(
        "anycrc", extra="genericio", purpose="checksumming GenericIO headers and blocks"
    )
    return anycrc.Model("CRC64-XZ")


def crc64(data: bytes | bytearray | memoryview) -> int:
    """Return the CRC-64/XZ of `data` (any C-contiguous buffer, read as bytes)."""
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return int(_model().calc(view))


def crc_trailer(crc: int) -> bytes:
    """The eight bytes GenericIO writes after a region whose CRC is `crc`."""
    return ((~crc) & _MASK).to_bytes(8, "little")


def crc_from_trailer(trailer: bytes | bytearray | memoryview) -> int:
    """The CRC a region must have for `trailer` to be its valid trailer."""
    return (~int.from_bytes(bytes(trailer), "little")) & _MASK
