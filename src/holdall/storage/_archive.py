"""The ``<store>.data`` archive: a zip of a Zarr hierarchy, entries stored (not deflated).

Chunks are already compressed, so deflating them again only costs time. The archive is
written to a temporary file and moved into place in one step (`Location.put_file`), so a
reader never sees half an archive; `open_archive` rejects truncated or damaged files with
`CorruptedFileError` instead of a zipfile traceback.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from holdall._core.atomic import temporary_sibling
from holdall._core.locations import Location
from holdall.errors import CorruptedFileError

__all__ = ["ArchiveReader", "write_archive"]

_COPY_BLOCK = 8 * 1024 * 1024


class ArchiveReader:
    """Read entries of an archive, local or remote, by name. Thread-safe (zipfile locks reads)."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self._handle: BinaryIO | None = None
        try:
            self._handle = location.open_read()
            self._zip = zipfile.ZipFile(self._handle, "r")
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
            self.close()
            raise CorruptedFileError(
                f"{location.url} is not a readable archive (truncated or damaged?): {err}; "
                "re-create it with compress_store()",
                path=location.url,
            ) from err
        self._names = set(self._zip.namelist())

    def names(self) -> set[str]:
        """Every entry name."""
        return self._names

    def sizes(self) -> dict[str, int]:
        """Stored size of every entry."""
        return {info.filename: info.compress_size for info in self._zip.infolist()}

    def read(self, name: str) -> bytes | None:
        """The bytes of entry `name`, or None when there is no such entry."""
        if name not in self._names:
            return None
        try:
            return self._zip.read(name)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
            raise CorruptedFileError(
                f"entry {name!r} of {self.location.url} cannot be read (truncated or damaged?): {err}",
                path=self.location.url,
            ) from err

    def close(self) -> None:
        """Close the file handle; safe to call twice."""
        with contextlib.suppress(AttributeError):
            self._zip.close()
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def write_archive(
    target: Location, entries: Iterable[tuple[str, bytes | Iterator[bytes]]], *, fsync: bool = False
) -> int:
    """Write `entries` (name, bytes or an iterator of byte blocks) as a stored zip at `target`.

    The zip is built in a temporary file (beside the target when it is local, so the final
    rename stays on one filesystem) and moved into place only when complete. Returns its size.
    """
    if target.is_local:
        tmp = temporary_sibling(Path(target.url))
    else:
        fd, name = tempfile.mkstemp(prefix="holdall-archive-", suffix=".zip")
        os.close(fd)
        tmp = Path(name)
    try:
        materialized = list(entries)
        in_memory = [
            (name, content) for name, content in materialized if isinstance(content, bytes)
        ]
        small = (
            len(in_memory) == len(materialized)
            and sum(len(content) for _, content in in_memory) < _SMALL_ARCHIVE_LIMIT
            and len(in_memory) < 0xFFFF
        )
        if small:
            _write_small_zip(tmp, in_memory, fsync=fsync)
            size = tmp.stat().st_size
            target.put_file(tmp, fsync=fsync)
            return size
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name, content in materialized:
                if isinstance(content, bytes | bytearray | memoryview):
                    archive.writestr(_entry(name), content)
                else:
                    with archive.open(_entry(name), "w", force_zip64=True) as stream:
                        for block in content:
                            stream.write(block)
            if fsync:
                archive.fp.flush()  # type: ignore[union-attr]
                os.fsync(archive.fp.fileno())  # type: ignore[union-attr]
        size = tmp.stat().st_size
        target.put_file(tmp, fsync=fsync)
        return size
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


#: Archives below this size whose entries are all in memory are written by `_write_small_zip`.
_SMALL_ARCHIVE_LIMIT = 1 << 31
_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01, the same fixed date as `_entry`
_UTF8_FLAG = 0x800


def _write_small_zip(path: Path, entries: list[tuple[str, bytes]], *, fsync: bool) -> None:
    """Write a stored (uncompressed) zip of in-memory entries in one pass.

    zipfile spends tens of microseconds per entry on bookkeeping, which dominates archives of
    many tiny chunks; this writes the same standard records (local headers, central
    directory, end record) directly. Only for archives under 2 GiB and 65,535 entries, which
    need no Zip64 records.
    """
    out = bytearray()
    central = bytearray()
    for name, data in entries:
        encoded = name.encode()
        crc = zlib.crc32(data)
        offset = len(out)
        # Flags, method (stored), time, date, CRC, sizes and name length: the same in the
        # local header and in the central directory entry.
        shared = (_UTF8_FLAG, 0, 0, _DOS_DATE, crc, len(data), len(data), len(encoded))
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, *shared, 0)
        out += encoded
        out += data
        central += struct.pack(
            "<4s6H3L5H2L",
            b"PK\x01\x02",
            20,
            20,
            *shared,
            0,
            0,
            0,
            0,
            0o644 << 16,
            offset,
        )
        central += encoded
    end = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), len(out), 0
    )
    with open(path, "wb") as handle:
        handle.write(out)
        handle.write(central)
        handle.write(end)
        if fsync:
            handle.flush()
            os.fsync(handle.fileno())


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


def read_blocks(location: Location) -> Iterator[bytes]:
    """The content of `location` in blocks of 8 MiB (bounded memory for large chunks)."""
    with location.open_read() as handle:
        while block := handle.read(_COPY_BLOCK):
            yield block
