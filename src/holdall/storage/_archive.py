"""The ``<store>.data`` archive: a zip of a Zarr hierarchy, entries stored (not deflated).

Chunks are already compressed, so deflating them again only costs time. The archive is
written to a temporary file and moved into place in one step (`Location.put_file`), so a
reader never sees half an archive; `open_archive` rejects truncated or damaged files with
`CorruptedFileError` instead of a zipfile traceback.
"""

from __future__ import annotations

import contextlib
import mmap
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
from holdall.errors import CorruptedFileError, UnsafePathError

__all__ = ["ArchiveReader", "EntryContent", "write_archive"]

_COPY_BLOCK = 8 * 1024 * 1024


_POPULATE_BELOW = 64 * 1024 * 1024
"""Archives up to this size are mapped with ``MAP_POPULATE`` (where the OS has it)."""


class ArchiveReader:
    """Read entries of an archive, local or remote, by name. Thread-safe.

    A local archive without Zip64 records (what `write_archive` makes below 2 GiB) is memory-
    mapped and its central directory parsed once, so reading an entry is a slice; others go
    through zipfile. Either way a damaged archive or entry is a `CorruptedFileError`.
    """

    def __init__(self, location: Location) -> None:
        self.location = location
        self._handle: BinaryIO | None = None
        self._map: mmap.mmap | None = None
        self._zip: zipfile.ZipFile | None = None
        self._entries: dict[str, tuple[int, int, int]] = {}
        try:
            self._handle = location.open_read()
            if (location.is_local and not self._open_mapped()) or not location.is_local:
                self._zip = zipfile.ZipFile(self._handle, "r")
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, struct.error) as err:
            self.close()
            raise CorruptedFileError(
                f"{location.url} is not a readable archive (truncated or damaged?): {err}; "
                "re-create it with compress_store()",
                path=location.url,
            ) from err
        if self._zip is not None:
            self._entries = {
                info.filename: (info.header_offset, info.compress_size, info.CRC)
                for info in self._zip.infolist()
            }

    def _open_mapped(self) -> bool:
        """Map the file and index a plain zip's central directory; False for a Zip64 one."""
        assert self._handle is not None
        size = os.fstat(self._handle.fileno()).st_size
        if size < 22:
            raise zipfile.BadZipFile("shorter than a zip end record")
        # A small archive (a per-part store) is usually read whole: its pages are mapped in
        # one call instead of one page fault each (docs/benchmarks.md, merge).
        populate = getattr(mmap, "MAP_POPULATE", 0) if size <= _POPULATE_BELOW else 0
        view = mmap.mmap(
            self._handle.fileno(), 0, flags=mmap.MAP_SHARED | populate, prot=mmap.PROT_READ
        )
        end = view.rfind(b"PK\x05\x06", max(0, size - 22 - 0xFFFF))
        if end < 0:
            view.close()
            raise zipfile.BadZipFile("no zip end record")
        _sig, _disk, _cd_disk, _here, count, cd_size, cd_offset, _comment = struct.unpack_from(
            "<4s4H2LH", view, end
        )
        if (
            count == 0xFFFF
            or cd_offset == 0xFFFFFFFF
            or (end >= 20 and view[end - 20 : end - 16] == b"PK\x06\x07")
        ):
            view.close()
            return False
        if cd_offset + cd_size > end:
            view.close()
            raise zipfile.BadZipFile("central directory runs past the end record")
        position = cd_offset
        for _ in range(count):
            if view[position : position + 4] != b"PK\x01\x02":
                view.close()
                raise zipfile.BadZipFile(f"bad central directory entry at byte {position}")
            (method, crc, compressed, _size, name_len, extra_len, comment_len, offset) = (
                struct.unpack_from("<10xH4xLLL HHH8xL", view, position)
            )
            name = view[position + 46 : position + 46 + name_len].decode()
            if method != 0:
                view.close()
                return False  # deflated entries: let zipfile decompress them
            self._entries[name] = (offset, compressed, crc)
            position += 46 + name_len + extra_len + comment_len
        self._map = view
        return True

    def names(self) -> set[str]:
        """Every entry name."""
        return set(self._entries)

    def sizes(self) -> dict[str, int]:
        """Stored size of every entry."""
        return {name: entry[1] for name, entry in self._entries.items()}

    def read(self, name: str, *, verify: bool = True) -> bytes | None:
        """The bytes of entry `name`, or None when there is no such entry.

        The zip's CRC-32 is checked unless `verify` is False (for entries that carry a
        checksum of their own).
        """
        entry = self._entries.get(name)
        if entry is None:
            return None
        try:
            if self._map is None:
                assert self._zip is not None
                return self._zip.read(name)
            offset, size, crc = entry
            if self._map[offset : offset + 4] != b"PK\x03\x04":
                raise zipfile.BadZipFile("bad local header")
            name_len, extra_len = struct.unpack_from("<HH", self._map, offset + 26)
            start = offset + 30 + name_len + extra_len
            data = self._map[start : start + size]
            if len(data) != size or (verify and zlib.crc32(data) != crc):
                raise zipfile.BadZipFile("truncated, or its CRC-32 does not match")
            return data
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, struct.error) as err:
            raise CorruptedFileError(
                f"entry {name!r} of {self.location.url} cannot be read (truncated or damaged?): {err}",
                path=f"{self.location.url}/{name}",
            ) from err

    def close(self) -> None:
        """Close the file handle; safe to call twice."""
        if self._zip is not None:
            self._zip.close()
            self._zip = None
        if self._map is not None:
            with contextlib.suppress(BufferError):
                self._map.close()
            self._map = None
        if self._handle is not None:
            self._handle.close()
            self._handle = None


#: What an archive entry holds: bytes in memory, or a local file streamed from disk.
EntryContent = bytes | Path


def write_archive(
    target: Location,
    entries: Iterable[tuple[str, EntryContent]],
    *,
    fsync: bool = False,
    temp_dir: Path | None = None,
) -> int:
    """Write `entries` (name, bytes or a local file) as a stored zip at `target`; its size.

    The zip is built in a temporary file (for a local target in `temp_dir`, or beside it, so
    the final rename stays on one filesystem; the name carries its owner, so the next writer
    can remove what a killed one left) and moved into place only when complete. Files are
    streamed one block at a time, never followed through a symbolic link, so memory stays
    bounded by a block whatever the archive's size.
    """
    if target.is_local:
        tmp = temporary_sibling(Path(target.url), temp_dir=temp_dir)
    else:
        fd, name = tempfile.mkstemp(prefix="holdall-archive-", suffix=".zip")
        os.close(fd)
        tmp = Path(name)
    try:
        listed = list(entries)
        total = sum(len(c) if isinstance(c, bytes) else _file_size(c) for _, c in listed)
        if total < _SMALL_ARCHIVE_LIMIT and len(listed) < 0xFFFF:
            _write_plain_zip(tmp, listed, fsync=fsync)
        else:
            _write_zip64(tmp, listed, fsync=fsync)
        size = tmp.stat().st_size
        target.put_file(tmp, fsync=fsync)
        return size
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _file_size(path: Path) -> int:
    stat = os.lstat(path)
    if not os.path.isfile(path) or os.path.islink(path):
        raise UnsafePathError(
            f"{path} is not a regular file (a symbolic link?); holdall never packs through a link",
            path=str(path),
        )
    return stat.st_size


def _read_entry(path: Path) -> Iterator[bytes]:
    """The blocks of a local file, opened without following a final symbolic link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        raise UnsafePathError(
            f"{path} cannot be packed without following a symbolic link: {err}", path=str(path)
        ) from err
    with os.fdopen(fd, "rb") as handle:
        while block := handle.read(_COPY_BLOCK):
            yield block


def _write_zip64(path: Path, entries: list[tuple[str, EntryContent]], *, fsync: bool) -> None:
    """Large archives (over 2 GiB or 65,535 entries): zipfile with Zip64 records."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, content in entries:
            if isinstance(content, bytes):
                archive.writestr(_entry(name), content)
            else:
                with archive.open(_entry(name), "w", force_zip64=True) as stream:
                    for block in _read_entry(content):
                        stream.write(block)
        if fsync:
            archive.fp.flush()  # type: ignore[union-attr]
            os.fsync(archive.fp.fileno())  # type: ignore[union-attr]


#: Archives below this size and entry count are written by `_write_plain_zip`.
_SMALL_ARCHIVE_LIMIT = 1 << 31
_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01, the same fixed date as `_entry`
_UTF8_FLAG = 0x800


def _write_plain_zip(path: Path, entries: list[tuple[str, EntryContent]], *, fsync: bool) -> None:
    """Write a stored (uncompressed) zip in one pass, without Zip64 records.

    zipfile spends tens of microseconds per entry on bookkeeping, which dominates archives of
    many tiny chunks; this writes the same standard records (local headers, central
    directory, end record) directly. Only for archives under 2 GiB and 65,535 entries.
    """
    central = bytearray()
    offset = 0
    with open(path, "wb") as handle:
        for name, content in entries:
            data = content if isinstance(content, bytes) else b"".join(_read_entry(content))
            encoded = name.encode()
            crc = zlib.crc32(data)
            # Flags, method (stored), time, date, CRC, sizes and name length: the same in the
            # local header and in the central directory entry.
            shared = (_UTF8_FLAG, 0, 0, _DOS_DATE, crc, len(data), len(data), len(encoded))
            header = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, *shared, 0) + encoded
            handle.write(header)
            handle.write(data)
            central += struct.pack(
                "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, *shared, 0, 0, 0, 0, 0o644 << 16, offset
            )
            central += encoded
            offset += len(header) + len(data)
        handle.write(central)
        handle.write(
            struct.pack(
                "<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), offset, 0
            )
        )
        if fsync:
            handle.flush()
            os.fsync(handle.fileno())


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info
