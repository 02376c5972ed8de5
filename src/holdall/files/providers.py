"""Where input files come from: a local folder, a text file listing paths, or an fsspec URL.

A `StorageProvider` yields every file it can see as a `FileEntry` (the path to open, and the
path relative to the provider's root that patterns are matched against). `list_files` is the
seed's "list files with given extensions", written once here for every provider.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from holdall._core.locations import FsspecLocation, parse_location
from holdall.errors import InvalidValueError, PathNotFoundError

__all__ = [
    "FileEntry",
    "FsspecStorageProvider",
    "LocalStorageProvider",
    "StorageProvider",
    "parse_extensions",
]


class FileEntry(NamedTuple):
    """One file a provider sees."""

    #: What to open: a local path, or a URL such as ``s3://bucket/prefix/part.step``.
    path: str
    #: The path below the provider's root, ``/``-separated (``sub/part.step``).
    relative: str


def parse_extensions(formats: Iterable[str] | str | None) -> tuple[str, ...] | None:
    """`formats` as lower-case suffixes with their dot (``"STEP"`` -> ``".step"``); None for all.

    Raises `InvalidValueError` for an empty suffix or one holding ``/``, a backslash or NUL.
    """
    if formats is None:
        return None
    items = [formats] if isinstance(formats, str) else list(formats)
    suffixes = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidValueError(
                f"formats must be file extensions like '.step' or 'iges', got {item!r}", got=item
            )
        suffix = item.strip().lower()
        suffix = suffix if suffix.startswith(".") else "." + suffix
        if suffix == "." or any(c in suffix for c in "/\\\x00") or suffix.endswith("."):
            raise InvalidValueError(
                f"{item!r} is not a file extension; give extensions like '.step' or 'stp'",
                expected="an extension such as '.step'", got=item,
            )  # fmt: skip
        suffixes.append(suffix)
    return tuple(dict.fromkeys(suffixes))


def has_extension(name: str, suffixes: tuple[str, ...] | None) -> bool:
    """Whether `name` ends with one of `suffixes` (case-insensitive); always True for None."""
    return suffixes is None or name.lower().endswith(suffixes)


class StorageProvider(ABC):
    """Abstract source of input files."""

    @abstractmethod
    def iter_files(self, suffixes: tuple[str, ...] | None = None) -> Iterator[FileEntry]:
        """Every file this provider sees, in no particular order, each once.

        With `suffixes` (lower case, with their dot, as `parse_extensions` gives them) only
        files whose name ends with one of them in any case; providers filter as early as they
        can, before building entries.
        """

    def list_files(self, extensions: Iterable[str] | str | None = None) -> list[str]:
        """Paths of the files whose name ends with one of `extensions` (any case), sorted."""
        return sorted(entry.path for entry in self.iter_files(parse_extensions(extensions)))


class LocalStorageProvider(StorageProvider):
    """Files of a local folder and all its sub-folders, or those a text file lists.

    Parameters
    ----------
    directory_path
        A folder, scanned recursively; or a text file with one path per line (blank lines
        and lines starting with ``#`` skipped, relative paths taken from the list's folder).
    follow_symlinks
        Descend into linked folders. Each folder is visited once (by device and inode), so
        a link loop or two links to one folder never repeat or hang the scan.

    Raises
    ------
    PathNotFoundError
        `directory_path`, or a path the list names, does not exist.
    """

    def __init__(
        self, directory_path: str | os.PathLike[str], *, follow_symlinks: bool = True
    ) -> None:
        self.directory_path = os.path.abspath(os.fspath(directory_path))
        self.follow_symlinks = follow_symlinks
        if not os.path.exists(self.directory_path):
            raise PathNotFoundError(
                f"{self.directory_path} does not exist; give a folder to scan or a text file "
                "listing paths",
                path=self.directory_path,
            )

    def iter_files(self, suffixes: tuple[str, ...] | None = None) -> Iterator[FileEntry]:
        # docstring inherited
        if os.path.isdir(self.directory_path):
            return self._scan(suffixes)
        return (e for e in self._listed() if has_extension(e.relative, suffixes))

    def _scan(self, suffixes: tuple[str, ...] | None) -> Iterator[FileEntry]:
        root = self.directory_path
        start = os.stat(root)
        seen = {(start.st_dev, start.st_ino)}
        pending = [(root, "")]
        while pending:
            folder, prefix = pending.pop()
            try:
                entries = list(os.scandir(folder))
            except PermissionError:
                continue  # an unreadable folder holds nothing we can open either
            for entry in entries:
                name = entry.name
                try:
                    if entry.is_dir(follow_symlinks=self.follow_symlinks):
                        info = entry.stat(follow_symlinks=True)
                        if (info.st_dev, info.st_ino) not in seen:
                            seen.add((info.st_dev, info.st_ino))
                            pending.append((entry.path, prefix + name + "/"))
                    elif (suffixes is None or name.lower().endswith(suffixes)) and entry.is_file(
                        follow_symlinks=True
                    ):
                        yield FileEntry(entry.path, prefix + name)
                except OSError:
                    continue  # a link to nothing, or a file removed while scanning

    def _listed(self) -> Iterator[FileEntry]:
        base = os.path.dirname(self.directory_path)
        try:
            with open(self.directory_path, encoding="utf-8") as listing:
                lines = listing.read().splitlines()
        except UnicodeDecodeError as err:
            raise InvalidValueError(
                f"{self.directory_path} is neither a folder nor a UTF-8 text file listing "
                f"paths ({err.reason} at byte {err.start})",
                got=self.directory_path,
            ) from err
        seen: set[str] = set()
        for number, line in enumerate(lines, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if "\x00" in text:
                raise InvalidValueError(
                    f"line {number} of {self.directory_path} contains NUL", got=text
                )
            path = os.path.normpath(os.path.join(base, os.path.expanduser(text)))
            if not os.path.isfile(path):
                raise PathNotFoundError(
                    f"line {number} of {self.directory_path} names {text!r}, which is not a file "
                    f"({path})",
                    path=path,
                )
            if path not in seen:
                seen.add(path)
                yield FileEntry(path, os.path.relpath(path, base).replace(os.sep, "/"))


class FsspecStorageProvider(StorageProvider):
    """Every object below an fsspec URL (``s3://bucket/prefix``), extra ``s3`` for S3.

    Parameters
    ----------
    url
        The prefix to list, recursively.
    storage_options
        fsspec options (credentials, ``client_kwargs={"endpoint_url": ...}``).
    """

    def __init__(self, url: str, *, storage_options: Mapping[str, Any] | None = None) -> None:
        location = parse_location(url, storage_options=storage_options)
        if not isinstance(location, FsspecLocation):
            raise InvalidValueError(
                f"{url!r} is a local path; use LocalStorageProvider for local folders",
                expected="a URL such as s3://bucket/prefix", got=url,
            )  # fmt: skip
        self.url = location.url
        self._location = location

    def iter_files(self, suffixes: tuple[str, ...] | None = None) -> Iterator[FileEntry]:
        # docstring inherited
        self._location.fs.invalidate_cache(self._location.path)
        for relative, _size in self._location.list_files():
            if has_extension(relative, suffixes):
                yield FileEntry(self._location.child(relative).url, relative)
