"""`MemoryStorage`: the dict-backed backend for tests and prototyping (seeds 000, 001)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

from holdall._core.keys import check_name_lengths, validate_name
from holdall._core.values import Group, Leaf, Node, decode_node, end_paths
from holdall.errors import InvalidKeyError, KeyNotFoundError
from holdall.storage.base import DataStorage, LeafSizes, NodeKind, leaf_sizes

__all__ = ["MemoryStorage", "StoreGroup"]


def _leaf_nbytes(leaf: Leaf) -> int:
    own = leaf.array.nbytes if leaf.array is not None else 0
    return own + sum(sum(leaf_sizes(item, _leaf_nbytes).values()) for item in leaf.items)


class StoreGroup(Mapping[str, "MemoryStorage"]):
    """Named in-memory stores created together with `MemoryStorage.create_store_in_group`."""

    def __init__(self) -> None:
        self._stores: dict[str, MemoryStorage] = {}

    def __getitem__(self, name: str) -> MemoryStorage:
        try:
            return self._stores[name]
        except KeyError:
            raise KeyNotFoundError(
                f"no store named {name!r} in this group (stores: {sorted(self._stores)})", key=name
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._stores)

    def __len__(self) -> int:
        return len(self._stores)

    def _add(self, name: str, store: MemoryStorage) -> None:
        if name in self._stores:
            raise InvalidKeyError(f"a store named {name!r} already exists in this group", key=name)
        self._stores[name] = store

    def __repr__(self) -> str:
        return f"StoreGroup({sorted(self._stores)})"


class MemoryStorage(DataStorage):
    """Keeps data and metadata in memory. Values are copied on save and on load.

    `close` clears everything (seed 001). Sizes in ``file_sizes_KB`` are the in-memory bytes of
    the arrays held. Keys are held to Linux's name and path limits (255 bytes a segment, 4096 a
    path), so that what a MemoryStorage accepts can be copied to disk.
    """

    keeps_arrays = True

    def __init__(self) -> None:
        super().__init__()
        self._root = Group()
        self._group: StoreGroup | None = None
        self._tempdir: str | None = None

    # docstring inherited
    def format(self) -> str:
        return "memory"

    def create_store_in_group(self, store_path: str = "") -> MemoryStorage:
        """Create a new `MemoryStorage`, register it under `store_path` in this store's group.

        An empty `store_path` picks the next free name ``store_<n>``.
        """
        self._check_open()
        group = self.get_store_group()
        name = store_path or f"store_{len(group)}"
        validate_name(name, what="store name")
        store = MemoryStorage()
        store._group = group
        group._add(name, store)
        return store

    def get_store_group(self) -> StoreGroup:
        """The `StoreGroup` this store belongs to (created on first use)."""
        self._check_open()
        if self._group is None:
            self._group = StoreGroup()
        return self._group

    def _describe(self) -> str:
        return f"in memory ({len(self._root.children)} top-level keys)"

    def _find(self, parts: tuple[str, ...]) -> Node | None:
        node: Node = self._root
        for part in parts:
            if not isinstance(node, Group) or part not in node.children:
                return None
            node = node.children[part]
        return node

    def _kind_at(self, parts: tuple[str, ...]) -> NodeKind | None:
        node = self._find(parts)
        if node is None:
            return None
        return "group" if isinstance(node, Group) else "leaf"

    def _write_node(self, parts: tuple[str, ...], node: Node) -> LeafSizes:
        # The limits of a Linux filesystem, so that what is accepted here can be saved to disk.
        for relative, _ in end_paths(node):
            full = (*parts, *relative)
            check_name_lengths("/".join(full), full, root=None)
        parent = self._root
        for part in parts[:-1]:
            child = parent.children.get(part)
            if not isinstance(child, Group):
                child = parent.children[part] = Group()
            parent = child
        parent.children[parts[-1]] = node
        return leaf_sizes(node, _leaf_nbytes)

    def _read_node(self, parts: tuple[str, ...]) -> Any:
        node = self._find(parts)
        if node is None:
            raise self._missing("/".join(parts))
        return decode_node(node)

    def _delete_node(self, parts: tuple[str, ...]) -> None:
        parent = self._find(parts[:-1])
        if isinstance(parent, Group):
            del parent.children[parts[-1]]

    def _top_level_names(self) -> list[str]:
        return list(self._root.children)

    def _get_file_path(self, parts: tuple[str, ...]) -> str:
        if parts:
            return f"In-memory storage: No file path for key '{'/'.join(parts)}'"
        if self._tempdir is None:
            self._tempdir = tempfile.mkdtemp(prefix="holdall-memory-")
        return self._tempdir

    def _close(self) -> None:
        self._root = Group()
        self._metadata.clear()
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None
