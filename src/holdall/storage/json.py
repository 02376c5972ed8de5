"""`JsonStorageHandler`: one human-readable JSON file per key, for debugging and interchange.

Layout of ``json_dir_path``::

    metadata.json          the metadata (never clobbered by a data key)
    data/face_areas.json   data key "face_areas"
    data/face/areas.json   data key "face/areas" (a folder per group, so no collisions)
    .holdall/tmp/          temporary files of writes in progress, named after their owner

Arrays are written as plain nested lists with their ``dtype`` and ``shape`` beside them, so
they load back exactly (see `holdall._core.jsoncodec`). Segments are percent-encoded where
they hold anything but letters, digits, ``_`` and ``-``, which keeps file and folder names
distinct (key ``a.json`` is file ``a%2Ejson.json``).

A store takes its writer lock (``.holdall/lock``) at its first write and holds it until
``close()``: a second process writing the same folder waits for it (``lock_timeout``, then
`StorageLockedError`), and on taking the lock re-reads ``metadata.json``, so it never writes
back a stale copy over what the first one saved. Reading takes no lock.

What holdall writes here is ``metadata.json``, the ``.json`` files and folders under ``data/``
and ``.holdall/``; anything else (a ``README.txt``) is never removed, and a symbolic link below
the root is never written through or removed (`UnsafePathError`). A write builds the new value
completely (a single file, or a group's folder staged under ``.holdall/tmp/``) before the old one
is removed, so a write that fails stores nothing.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from holdall._core.atomic import atomic_output, fsync_dir
from holdall._core.jsoncodec import dump_json, load_json, read_value
from holdall._core.keys import check_name_lengths
from holdall._core.locks import InterProcessLock
from holdall._core.owners import owner_is_dead, owner_tag
from holdall._core.values import Group, Leaf, Node, decode_leaf, end_paths
from holdall.errors import CorruptedFileError, StorageLockedError, UnsafePathError
from holdall.storage.base import DataStorage, LeafSizes, NodeKind

__all__ = ["JsonStorageHandler"]

_SAFE = "_-"
_SUFFIX = ".json"
#: holdall's own folder in the store root (never a key: keys live under ``data/``).
_OWN_DIR = ".holdall"


def _encode_segment(segment: str) -> str:
    return quote(segment, safe=_SAFE).replace(".", "%2E")


def _is_link(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):  # nothing there, so no link either
        return False


class JsonStorageHandler(DataStorage):
    """Stores each data key as a readable JSON file under `json_dir_path` (created if missing).

    Raises
    ------
    CorruptedFileError
        ``metadata.json`` is not a JSON object in UTF-8.
    UnsafePathError
        ``data/``, ``metadata.json`` or holdall's ``.holdall/`` folder is a symbolic link.
    """

    def __init__(
        self,
        json_dir_path: str | os.PathLike[str],
        *,
        fsync: bool = False,
        lock_timeout: float = 30.0,
    ) -> None:
        super().__init__()
        self._root = Path(json_dir_path)
        self._data = self._root / "data"
        self._metadata_file = self._root / "metadata.json"
        self._tmp = self._root / _OWN_DIR / "tmp"
        self._fsync = fsync
        self._lock_timeout = lock_timeout
        self._refuse_links(self._data, self._metadata_file, self._tmp, self._root / _OWN_DIR)
        self._writer = InterProcessLock(
            self._root / _OWN_DIR / "lock",
            what=f"JSON store {self._root}",
            error=StorageLockedError,
        )
        self._data.mkdir(parents=True, exist_ok=True)
        self._remove_dead_temporaries()
        if self._metadata_file.exists():
            self._metadata = self._read_metadata()
        else:
            self._write_metadata()

    def _read_metadata(self) -> dict[str, Any]:
        loaded = load_json(self._metadata_file)
        if not isinstance(loaded, dict):
            raise CorruptedFileError(
                f"{self._metadata_file} must hold a JSON object, found {type(loaded).__name__}",
                path=str(self._metadata_file),
            )
        return loaded

    def _ensure_writable(self) -> None:
        """Take the writer lock at the first write, then see what earlier writers saved."""
        super()._ensure_writable()
        if not self._writer.is_held:
            self._writer.acquire(shared=False, timeout_s=self._lock_timeout)
            if self._metadata_file.exists():
                self._metadata = self._read_metadata()

    def _close(self) -> None:
        self._writer.release()

    # docstring inherited
    def format(self) -> str:
        return "json"

    def _describe(self) -> str:
        return str(self._root)

    # ----------------------------------------------------------------- paths

    def _folder(self, parts: tuple[str, ...]) -> Path:
        return self._data.joinpath(*(_encode_segment(part) for part in parts))

    def _file(self, parts: tuple[str, ...]) -> Path:
        return self._folder(parts[:-1]) / (_encode_segment(parts[-1]) + _SUFFIX)

    def _refuse_links(self, *paths: Path) -> None:
        """Raise `UnsafePathError` if a component of a path below the root is a symlink."""
        for path in paths:
            relative = path.relative_to(self._root)
            current = self._root
            for name in relative.parts:
                current = current / name
                if _is_link(current):
                    raise UnsafePathError(
                        f"{current} is a symbolic link inside the JSON store {self._root}; "
                        "holdall never writes or deletes through links: remove the link, or "
                        "move the store",
                        path=str(current),
                    )

    def _check_names(self, parts: tuple[str, ...], node: Node) -> None:
        """`InvalidKeyError` before anything is written if a file of `node` cannot exist."""
        for relative, is_leaf in end_paths(node):
            full = (*parts, *relative)
            check_name_lengths(
                "/".join(full),
                full,
                root=str(self._data),
                encode=_encode_segment,
                last_suffix=_SUFFIX if is_leaf else "",
            )

    def _is_group_folder(self, folder: Path) -> bool:
        """Whether `folder` (under ``data/``) is a group: empty, or holding a key of holdall's.

        A folder left holding only files holdall did not write (a ``README.txt`` that stayed
        when its group was deleted) is not a key.
        """
        if _is_link(folder) or not folder.is_dir():
            return False
        with os.scandir(folder) as scan:
            entries = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in scan]
        return not entries or any(
            self._is_group_folder(folder / name) if is_dir else name.endswith(_SUFFIX)
            for name, is_dir in entries
        )

    def _kind_at(self, parts: tuple[str, ...]) -> NodeKind | None:
        try:
            if self._file(parts).is_file():
                return "leaf"
            return "group" if self._is_group_folder(self._folder(parts)) else None
        except OSError as err:
            if err.errno == errno.ENAMETOOLONG:  # a name no file here can have
                return None
            raise

    # ----------------------------------------------------------------- writing

    def _write_node(self, parts: tuple[str, ...], node: Node) -> LeafSizes:
        self._check_names(parts, node)
        file, folder = self._file(parts), self._folder(parts)
        self._refuse_links(file, folder, self._tmp)
        self._refuse_links_below(folder)
        sizes: LeafSizes = {}
        if isinstance(node, Leaf):
            with atomic_output(file, fsync=self._fsync, temp_dir=self._tmp) as handle:
                sizes[()] = self._dump_leaf(handle, parts, node)
            self._remove_owned_folder(folder)
            return sizes
        staging = self._tmp / f"{owner_tag()}-{os.urandom(4).hex()}.stage"
        try:
            self._stage_group(staging, parts, node, (), sizes)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        file.unlink(missing_ok=True)
        self._remove_owned_folder(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        _merge_into(staging, folder)
        if self._fsync:
            fsync_dir(folder.parent)
        return sizes

    def _stage_group(
        self,
        folder: Path,
        parts: tuple[str, ...],
        node: Group,
        relative: tuple[str, ...],
        sizes: LeafSizes,
    ) -> None:
        folder.mkdir(parents=True)
        for name, child in node.children.items():
            encoded = _encode_segment(name)
            if isinstance(child, Group):
                self._stage_group(folder / encoded, (*parts, name), child, (*relative, name), sizes)
                continue
            with open(folder / (encoded + _SUFFIX), "wb") as handle:
                sizes[(*relative, name)] = self._dump_leaf(handle, (*parts, name), child)
                if self._fsync:
                    handle.flush()
                    os.fsync(handle.fileno())

    def _dump_leaf(self, handle: Any, parts: tuple[str, ...], leaf: Leaf) -> int:
        """Write `leaf`'s JSON document to `handle`; return the bytes written."""
        return dump_json(decode_leaf(leaf), handle, key="/".join(parts))

    # ----------------------------------------------------------------- removing

    def _refuse_links_below(self, folder: Path) -> None:
        """`UnsafePathError` if a symlink sits anywhere inside `folder` (checked before removal)."""
        if not folder.is_dir() or _is_link(folder):
            return
        for current, dirs, files in os.walk(folder):
            for name in (*dirs, *files):
                if _is_link(Path(current) / name):
                    self._refuse_links(Path(current) / name)

    def _remove_owned_folder(self, folder: Path) -> None:
        """Remove the ``.json`` files and emptied folders holdall wrote in `folder`, nothing else."""
        if _is_link(folder) or not folder.is_dir():
            return
        with os.scandir(folder) as scan:
            entries = list(scan)
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                self._remove_owned_folder(Path(entry.path))
            elif entry.is_file(follow_symlinks=False) and entry.name.endswith(_SUFFIX):
                os.unlink(entry.path)
        with contextlib.suppress(OSError):  # not empty: it holds files holdall did not write
            folder.rmdir()

    def _delete_node(self, parts: tuple[str, ...]) -> None:
        file, folder = self._file(parts), self._folder(parts)
        self._refuse_links(file, folder)
        self._refuse_links_below(folder)
        file.unlink(missing_ok=True)
        self._remove_owned_folder(folder)

    def _remove_dead_temporaries(self) -> None:
        """Remove what writers that died left in ``.holdall/tmp/`` (only theirs)."""
        if not self._tmp.is_dir():
            return
        for entry in self._tmp.iterdir():
            if not owner_is_dead(entry.name) or _is_link(entry):
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    # ----------------------------------------------------------------- reading

    def _read_node(self, parts: tuple[str, ...]) -> Any:
        file = self._file(parts)
        if file.is_file():
            return read_value(file)
        folder = self._folder(parts)
        value: dict[str, Any] = {}
        for entry in sorted(folder.iterdir()):
            if entry.is_dir():
                if not self._is_group_folder(entry):
                    continue
                name = unquote(entry.name)
            elif entry.name.endswith(_SUFFIX):
                name = unquote(entry.name[: -len(_SUFFIX)])
            else:
                continue  # not holdall's
            value[name] = self._read_node((*parts, name))
        return value

    def _top_level_names(self) -> list[str]:
        names = []
        for entry in self._data.iterdir():
            if entry.is_dir():
                if self._is_group_folder(entry):
                    names.append(unquote(entry.name))
            elif entry.name.endswith(_SUFFIX) and not entry.name.startswith("."):
                names.append(unquote(entry.name[: -len(_SUFFIX)]))
        return names

    def _get_file_path(self, parts: tuple[str, ...]) -> str:
        if not parts:
            return str(self._root)
        if self._kind_at(parts) == "group":
            return str(self._folder(parts))
        return str(self._file(parts))

    # ----------------------------------------------------------------- metadata

    def _metadata_changed(self) -> None:
        self._write_metadata()

    def _write_metadata(self) -> None:
        self._refuse_links(self._metadata_file, self._tmp)
        text = json.dumps(self._metadata, indent=2, allow_nan=False) + "\n"
        with atomic_output(self._metadata_file, fsync=self._fsync, temp_dir=self._tmp) as handle:
            handle.write(text.encode())


def _merge_into(source: Path, target: Path) -> None:
    """Move the staged folder `source` to `target`, merging into what is left there.

    `target` may still exist when it holds files holdall did not write; holdall's own entries
    were removed from it before, so the names of `source` are free there (or are folders,
    merged in turn).
    """
    try:
        os.rename(source, target)
        return
    except OSError:
        if not target.is_dir():
            raise
    for entry in source.iterdir():
        destination = target / entry.name
        if entry.is_dir() and destination.is_dir():
            _merge_into(entry, destination)
        else:
            os.replace(entry, destination)
    source.rmdir()
