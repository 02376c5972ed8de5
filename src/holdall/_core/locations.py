"""Where stores live: local folders or fsspec URLs (``s3://bucket/prefix``), behind one small API.

A `Location` names a file or folder. Local locations use the OS directly (fast, atomic
renames); remote ones go through fsspec, where a single ``put`` of a whole object is atomic
(the object appears complete or not at all), so an atomic write is one upload.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from holdall._core.atomic import atomic_write_bytes
from holdall._core.optional import import_optional

if TYPE_CHECKING:
    import fsspec

__all__ = ["FsspecLocation", "LocalLocation", "Location", "parse_location"]


class Location(ABC):
    """A file or folder, local or remote. Paths below it are joined with `child`."""

    @property
    @abstractmethod
    def url(self) -> str:
        """The location as a user would write it (a path or a URL)."""

    @property
    def is_local(self) -> bool:
        """True when the location is on the local filesystem."""
        return False

    @property
    def name(self) -> str:
        """The last path segment."""
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    @abstractmethod
    def child(self, relative: str) -> Location:
        """The location `relative` (``/``-separated, already validated) below this one."""

    @abstractmethod
    def sibling(self, name: str) -> Location:
        """The location `name` in the same folder as this one."""

    @abstractmethod
    def parent(self) -> Location:
        """The folder holding this location."""

    @abstractmethod
    def exists(self) -> bool:
        """True when a file or folder is here."""

    @abstractmethod
    def is_dir(self) -> bool:
        """True when a folder is here."""

    @abstractmethod
    def read_bytes(self) -> bytes:
        """The whole file; `FileNotFoundError` when it is missing."""

    @abstractmethod
    def write_bytes(self, data: bytes | bytearray | memoryview, *, fsync: bool = False) -> None:
        """Replace the file atomically with `data`, creating parent folders."""

    @abstractmethod
    def open_read(self) -> BinaryIO:
        """A seekable binary file object for reading."""

    @abstractmethod
    def put_file(self, local_file: Path, *, fsync: bool = False) -> None:
        """Move or upload the finished local file `local_file` here, atomically."""

    @abstractmethod
    def list_files(self) -> Iterator[tuple[str, int]]:
        """Every file below this folder as (``/``-separated relative path, size in bytes)."""

    @abstractmethod
    def size(self) -> int:
        """Size of the file in bytes."""

    @abstractmethod
    def remove(self) -> None:
        """Delete the file or the whole folder; a missing target is not an error."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Location) and type(other) is type(self) and other.url == self.url

    def __hash__(self) -> int:
        return hash((type(self), self.url))


class LocalLocation(Location):
    """A path on the local filesystem."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @property
    def url(self) -> str:
        return str(self.path)

    @property
    def is_local(self) -> bool:
        return True

    def child(self, relative: str) -> LocalLocation:
        return LocalLocation(self.path.joinpath(*relative.split("/")))

    def sibling(self, name: str) -> LocalLocation:
        return LocalLocation(self.path.with_name(name))

    def parent(self) -> LocalLocation:
        return LocalLocation(self.path.parent)

    def exists(self) -> bool:
        return self.path.exists()

    def is_dir(self) -> bool:
        return self.path.is_dir()

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()

    def write_bytes(self, data: bytes | bytearray | memoryview, *, fsync: bool = False) -> None:
        atomic_write_bytes(self.path, data, fsync=fsync)

    def open_read(self) -> BinaryIO:
        return open(self.path, "rb")

    def put_file(self, local_file: Path, *, fsync: bool = False) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(local_file, self.path)
        if fsync:
            from holdall._core.atomic import fsync_dir

            fsync_dir(self.path.parent)

    def list_files(self) -> Iterator[tuple[str, int]]:
        root = str(self.path)
        for folder, _dirs, files in os.walk(root):
            rel_folder = os.path.relpath(folder, root)
            for name in files:
                full = os.path.join(folder, name)
                rel = name if rel_folder == "." else f"{rel_folder}/{name}".replace(os.sep, "/")
                yield rel, os.path.getsize(full)

    def size(self) -> int:
        return self.path.stat().st_size

    def remove(self) -> None:
        if self.path.is_dir() and not self.path.is_symlink():
            shutil.rmtree(self.path, ignore_errors=False)
        else:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


class FsspecLocation(Location):
    """A path on an fsspec filesystem, such as ``s3://bucket/prefix``."""

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str, protocol: str) -> None:
        self.fs = fs
        self.path = path.rstrip("/")
        self.protocol = protocol

    @property
    def url(self) -> str:
        return f"{self.protocol}://{self.path}"

    def child(self, relative: str) -> FsspecLocation:
        return FsspecLocation(self.fs, f"{self.path}/{relative}", self.protocol)

    def sibling(self, name: str) -> FsspecLocation:
        return self.parent().child(name)

    def parent(self) -> FsspecLocation:
        return FsspecLocation(self.fs, self.path.rsplit("/", 1)[0], self.protocol)

    def exists(self) -> bool:
        self.fs.invalidate_cache(self.path)
        return bool(self.fs.exists(self.path))

    def is_dir(self) -> bool:
        self.fs.invalidate_cache(self.path)
        return bool(self.fs.isdir(self.path))

    def read_bytes(self) -> bytes:
        return bytes(self.fs.cat_file(self.path))

    def write_bytes(self, data: bytes | bytearray | memoryview, *, fsync: bool = False) -> None:
        # One PUT: the object store makes it visible whole or not at all.
        self.fs.pipe_file(self.path, bytes(data))

    def open_read(self) -> BinaryIO:
        return self.fs.open(self.path, "rb")  # type: ignore[no-any-return]

    def put_file(self, local_file: Path, *, fsync: bool = False) -> None:
        self.fs.put_file(str(local_file), self.path)
        local_file.unlink()

    def list_files(self) -> Iterator[tuple[str, int]]:
        prefix = self.path + "/"
        with contextlib.suppress(FileNotFoundError):
            for full, info in self.fs.find(self.path, detail=True).items():
                rel = full[len(prefix) :] if full.startswith(prefix) else full
                yield rel, int(info.get("size", 0))

    def size(self) -> int:
        return int(self.fs.size(self.path))

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.fs.isdir(self.path):
                self.fs.rm(self.path, recursive=True)
            else:
                self.fs.rm_file(self.path)
        # Listings of every parent are cached by fsspec; forget them all.
        self.fs.invalidate_cache()


def parse_location(
    where: str | os.PathLike[str] | Location,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> Location:
    """Turn a path or URL into a `Location`.

    ``file://`` URLs and plain paths are local; any other ``scheme://`` goes through fsspec
    with `storage_options` (for S3: ``key``, ``secret``, ``client_kwargs={"endpoint_url": ...}``).
    """
    if isinstance(where, Location):
        return where
    text = os.fspath(where)
    if "://" not in text:
        return LocalLocation(text)
    scheme, rest = text.split("://", 1)
    if scheme == "file":
        return LocalLocation(rest)
    fsspec_module = import_optional("fsspec", extra="s3", purpose=f"opening {scheme}:// locations")
    if scheme in ("s3", "s3a"):
        import_optional("s3fs", extra="s3", purpose="opening s3:// locations")
    fs = fsspec_module.filesystem(scheme, **dict(storage_options or {}))
    return FsspecLocation(fs, rest, scheme)
