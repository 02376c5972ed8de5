"""What the scratch stores share: the mapping API, key handling, files and their cleanup.

A scratch store is a dictionary of Structure-of-Arrays (``{field: array}``) per key, held in
memory or spilled to files under a directory of its own, and removed on `close`. Subclasses
say how one key's arrays are checked, written, read and deleted.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, KeysView, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from holdall._core.closing import Closing, close_at_exit, close_quietly, forget_at_exit
from holdall._core.keys import parse_key
from holdall._core.owners import owner_tag
from holdall.errors import ClosedStorageError, KeyNotFoundError, UnsupportedTypeError
from holdall.scratch._folders import folder_name, prune_empty, remove_abandoned
from holdall.scratch._partition import Group, resolve_group

__all__ = ["SoA", "ScratchStore"]

SoA = dict[str, np.ndarray[Any, Any]]
"""A Structure-of-Arrays: field name to array."""

_MISSING: Any = object()


class ScratchStore(Closing, ABC):
    """A dictionary of Structure-of-Arrays kept in memory or spilled to per-store files.

    Parameters
    ----------
    partition
        An `mpipartition.Partition`, an mpi4py communicator, or None (one process).
    temporary_path
        Folder under which the store makes its own subfolder
        ``holdall-scratch-<owner tag>-<id>`` for its files (created when needed, removed
        once empty and by `close`); None keeps data in memory. Creating a store removes
        the folders that stores of dead processes left there.
    mmap
        Memory-map spilled arrays when reading them back instead of copying them.
    """

    def __init__(
        self,
        partition: object = None,
        temporary_path: str | os.PathLike[str] | None = None,
        *,
        mmap: bool = False,
    ) -> None:
        self._group: Group = resolve_group(partition)
        self._mmap = mmap
        self._entries: dict[str, SoA | Path] = {}
        self._closed = False
        self._root: Path | None = None
        self._made_base = False
        if temporary_path is not None:
            base = Path(temporary_path)
            # Rank 0 clears what dead stores left and names this store's folder, tagged with
            # its own owner tag, so that every rank agrees on it (one broadcast).
            proposal = ("", False)
            if self._group.rank == 0:
                remove_abandoned(base)
                proposal = (folder_name(owner_tag(), uuid.uuid4().hex[:12]), not base.exists())
            name, made = self._group.bcast(proposal)
            self._root = base / name
            self._made_base = made
            if not self._collective_close or self._group.size == 1:
                close_at_exit(self)

    # ------------------------------------------------------------------ subclass hooks

    @abstractmethod
    def _prepare(self, key: str, data: Mapping[str, Any]) -> SoA:
        """Check one key's data (collectively where the store needs to) and return it."""

    @abstractmethod
    def _file_for(self, key_path: Path) -> Path:
        """The file this rank writes for a key, from the key's path under the store folder."""

    @abstractmethod
    def _spill(self, path: Path, data: SoA) -> None:
        """Write checked data to `path` (atomically: a temporary name, then a rename)."""

    @abstractmethod
    def _load(self, path: Path, fields: list[str] | None) -> SoA:
        """Read back the given fields (all when None) of a spilled key."""

    @abstractmethod
    def _delete(self, paths: Sequence[Path]) -> None:
        """Delete the files of removed keys, then call `_prune` for them."""

    _collective_close: bool = False
    """Whether `close` must be called by every rank together (then it never runs by itself
    at exit or garbage collection under MPI: one rank alone would wait for the others)."""

    # ------------------------------------------------------------------ mapping API

    def __setitem__(self, key: str, data: Mapping[str, Any]) -> None:
        """Store the Structure-of-Arrays `data` under `key`, replacing any previous value.

        Raises
        ------
        InvalidKeyError
            `key` is not a valid relative path (empty, absolute, ``..``, NUL...).
        UnsupportedTypeError, InvalidValueError
            `data` is not a mapping of field name to array the store can hold.
        ClosedStorageError
            The store was closed.
        """
        self._check_open()
        segments = parse_key(key)
        prepared = self._prepare(key, data)
        if self._root is None:
            self._entries[key] = prepared
            return
        path = self._file_for(self._root.joinpath(*segments))
        self._spill(path, prepared)
        self._entries[key] = path

    def __getitem__(self, key: str) -> SoA:
        """The Structure-of-Arrays stored under `key`.

        Raises
        ------
        KeyNotFoundError
            Nothing is stored under `key` (also a `KeyError`).
        """
        return self._fetch(key, None)

    def get_field(self, key: str, field: str | Sequence[str]) -> SoA:
        """Only the named field(s) of the Structure-of-Arrays under `key`.

        Parameters
        ----------
        key
            The storage key.
        field
            One field name, or a list of them; the result keeps this order.

        Raises
        ------
        KeyNotFoundError
            No such key, or no such field under it.
        """
        fields = [field] if isinstance(field, str) else list(field)
        for name in fields:
            if not isinstance(name, str):
                raise UnsupportedTypeError(
                    f"field names are str, got {type(name).__name__} {name!r}", got=name
                )
        return self._fetch(key, fields)

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        """Return the Structure-of-Arrays under `key` and remove it (memory and files).

        With `default`, a missing key returns it instead of raising `KeyNotFoundError`.
        """
        if default is not _MISSING and key not in self:
            self._check_open()
            return default
        value = self[key]
        self.remove(key)
        return value

    def remove(self, key: str) -> None:
        """Delete what is stored under `key`, in memory or on disk.

        Raises
        ------
        KeyNotFoundError
            Nothing is stored under `key`.
        """
        entry = self._lookup(key)
        del self._entries[key]
        if isinstance(entry, Path):
            self._delete([entry])

    def __delitem__(self, key: str) -> None:
        self.remove(key)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def keys(self) -> KeysView[str]:
        """The stored keys, in insertion order."""
        return self._entries.keys()

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    @property
    def temporary_path(self) -> Path | None:
        """The store's own folder for spilled files, or None in memory mode."""
        return self._root

    def close(self) -> None:
        """Forget every key and delete every file and folder the store made. Idempotent."""
        if self._closed:
            return
        self._closed = True
        forget_at_exit(self)
        paths = [entry for entry in self._entries.values() if isinstance(entry, Path)]
        self._entries.clear()
        if self._root is not None:
            self._delete(paths)

    def __del__(self) -> None:
        # A store dropped without close: delete its files now where that needs no other rank.
        if getattr(self, "_closed", True) or getattr(self, "_root", None) is None:
            return
        if not self._collective_close or self._group.size == 1:
            close_quietly(self, when="at garbage collection")

    def __repr__(self) -> str:
        where = "memory" if self._root is None else str(self._root)
        state = "closed" if self._closed else f"{len(self)} keys"
        return (
            f"{type(self).__name__}(rank {self._group.rank} of {self._group.size}, "
            f"{where}, {state})"
        )

    # ------------------------------------------------------------------ helpers

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedStorageError(
                f"this {type(self).__name__} is closed; create a new one",
                path=None if self._root is None else str(self._root),
            )

    def _lookup(self, key: str) -> SoA | Path:
        self._check_open()
        try:
            return self._entries[key]
        except (KeyError, TypeError):
            pass
        parse_key(key)  # a hostile key gets InvalidKeyError, not a plain miss
        raise KeyNotFoundError(
            f"no data stored under key {key!r} (keys: {sorted(self._entries)[:10]})", key=key
        )

    def _fetch(self, key: str, fields: list[str] | None) -> SoA:
        entry = self._lookup(key)
        if isinstance(entry, Path):
            return self._load(entry, fields)
        if fields is None:
            return dict(entry)
        missing = [name for name in fields if name not in entry]
        if missing:
            raise KeyNotFoundError(
                f"key {key!r} has no field(s) {missing}; it has {list(entry)}", key=missing[0]
            )
        return {name: entry[name] for name in fields}

    def _prune(self, paths: Sequence[Path]) -> None:
        """Remove the folders that deleting `paths` left empty, up to the store's own.

        Once no key is spilled any more, the store's folder goes too, and `temporary_path`
        if the store created it and nothing else is in it: a store leaves nothing behind.
        Only empty folders are removed, so another rank's or another tool's files keep
        theirs.
        """
        if self._root is None:
            return
        prune_empty({path.parent for path in paths}, self._root)
        if any(isinstance(entry, Path) for entry in self._entries.values()):
            return
        with contextlib.suppress(OSError):  # another rank's files may still be there
            self._root.rmdir()
        if self._made_base:
            with contextlib.suppress(OSError):
                self._root.parent.rmdir()
